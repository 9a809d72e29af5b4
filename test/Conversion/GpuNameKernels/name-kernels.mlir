// RUN: dsv3-opt %s --dsv3-gpu-name-kernels --gpu-kernel-outlining | FileCheck %s

// Kernels are named after the dsv3 op tagged in their location (by
// convert-dsv3-to-linalg), numbered per op across the module; untagged
// launches are glue.

// CHECK: gpu.launch_func @mla_0::@mla_0
// CHECK: gpu.launch_func @mla_1::@mla_1
// CHECK: gpu.launch_func @glue_0::@glue_0
// CHECK: gpu.launch_func @moe_gate_up_0::@moe_gate_up_0
// CHECK-DAG: gpu.func @mla_0
// CHECK-DAG: gpu.func @mla_1
// CHECK-DAG: gpu.func @glue_0
// CHECK-DAG: gpu.func @moe_gate_up_0

#other = loc("model.mlir":3:4)
#mla = loc("dsv3.mla"(#other))
#moe = loc("dsv3.moe_gate_up"(#other))

func.func @f(%x: memref<4xf32>) {
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f32
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %one, %x[%tx] : memref<4xf32>
    gpu.terminator
  } loc(#mla)
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %one, %x[%tx] : memref<4xf32>
    gpu.terminator
  } loc(fused[#other, #mla])
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %one, %x[%tx] : memref<4xf32>
    gpu.terminator
  } loc(#other)
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %one, %x[%tx] : memref<4xf32>
    gpu.terminator
  } loc(#moe)
  return
}
