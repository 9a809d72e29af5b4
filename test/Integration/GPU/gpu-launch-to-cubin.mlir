// REQUIRES: cuda-toolkit
// RUN: dsv3-opt %s --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=isa" | FileCheck %s --check-prefix=PTX
// RUN: dsv3-opt %s --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_90a cubin-features=+ptx80 cubin-format=bin" | FileCheck %s --check-prefix=CUBIN
// RUN: dsv3-opt %s --gpu-lower-to-nvvm-pipeline="cubin-chip=sm_80 cubin-features=+ptx80 cubin-format=bin" | FileCheck %s --check-prefix=SM80

/// Proves the GPU toolchain is wired into dsv3-opt: NVVM target models, the
/// LLVM/NVVM/GPU translations and ptxas from the CUDA toolkit turn a small
/// gpu.launch (y = a * x + y over 1024 elements) into PTX and into cubins.

// PTX: gpu.binary @scale_add_kernel [#gpu.object<#nvvm.target<chip = "sm_90a", features = "+ptx80">
// PTX-SAME: .target sm_90a
// PTX-SAME: .entry scale_add_kernel
// PTX-SAME: fma.rn.f32

// CUBIN: gpu.launch_func @scale_add_kernel::@scale_add_kernel
// CUBIN: gpu.binary @scale_add_kernel [#gpu.object<#nvvm.target<chip = "sm_90a", features = "+ptx80">
// CUBIN-SAME: bin = "\7FELF

// SM80: gpu.binary @scale_add_kernel [#gpu.object<#nvvm.target<chip = "sm_80", features = "+ptx80">
// SM80-SAME: bin = "\7FELF

func.func @scale_add(%a: f32, %x: memref<1024xf32>, %y: memref<1024xf32>) {
  %c1 = arith.constant 1 : index
  %c4 = arith.constant 4 : index
  %c256 = arith.constant 256 : index
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c4, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c256, %sy = %c1, %sz = %c1) {
    %base = arith.muli %bx, %c256 : index
    %i = arith.addi %base, %tx : index
    %xv = memref.load %x[%i] : memref<1024xf32>
    %yv = memref.load %y[%i] : memref<1024xf32>
    %r = math.fma %a, %xv, %yv : f32
    memref.store %r, %y[%i] : memref<1024xf32>
    gpu.terminator
  }
  return
}
