// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --dsv3-gpu-device-buffers | FileCheck %s

// Host allocations become device allocations; a scalar the host branches on
// is copied out by a one-thread kernel and gpu.memcpy; a constant the
// kernels read is re-created inside each kernel.

memref.global "private" constant @freqs : memref<4xf32> = dense<[1.0, 2.0, 3.0, 4.0]>

// CHECK-LABEL: func.func @host_and_kernels
// CHECK: %[[BUF:.*]] = gpu.alloc () : memref<8xf32>
// CHECK: gpu.launch
// CHECK: memref.get_global @freqs
// CHECK: %[[DEV:.*]] = gpu.alloc () : memref<i64>
// CHECK: gpu.launch
// CHECK: %[[V:.*]] = memref.load %arg0[%{{.*}}] : memref<4xi64>
// CHECK: memref.store %[[V]], %[[DEV]][]
// CHECK: %[[HOST:.*]] = memref.alloca() : memref<i64>
// CHECK: gpu.memcpy %[[HOST]], %[[DEV]]
// CHECK: gpu.dealloc %[[DEV]]
// CHECK: memref.load %[[HOST]][]
// CHECK: gpu.dealloc %[[BUF]]
// CHECK-NOT: memref.alloc(
// CHECK-NOT: memref.dealloc
func.func @host_and_kernels(%positions: memref<4xi64>) -> index {
  %c1 = arith.constant 1 : index
  %c3 = arith.constant 3 : index
  %table = memref.get_global @freqs : memref<4xf32>
  %buf = memref.alloc() : memref<8xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    %f = memref.load %table[%tx] : memref<4xf32>
    memref.store %f, %buf[%tx] : memref<8xf32>
    gpu.terminator
  }
  %last = memref.load %positions[%c3] : memref<4xi64>
  %n = arith.index_cast %last : i64 to index
  memref.dealloc %buf : memref<8xf32>
  return %n : index
}

// -----

// Anything else touching a buffer on the host is an error.

func.func @host_store(%x: memref<4xf32>) {
  %c0 = arith.constant 0 : index
  %one = arith.constant 1.0 : f32
  // expected-error @+1 {{accesses a buffer on the host; on the GPU every buffer is in device memory (run dsv3-wrap-serial-code-for-gpu first)}}
  memref.store %one, %x[%c0] : memref<4xf32>
  return
}

// -----

func.func @host_stack_in_kernel() {
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f32
  // expected-error @+1 {{is host stack memory used by a GPU kernel}}
  %scratch = memref.alloca() : memref<4xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    memref.store %one, %scratch[%tx] : memref<4xf32>
    gpu.terminator
  }
  return
}

// -----

// Vector values hoisted out of a kernel (a tile's column numbers:
// vector.step broadcast over the rows, a splat constant) are re-created in
// it, the step before its broadcast, so dsv3-gpu-warp-mma sees them.

// CHECK-LABEL: func.func @hoisted_vector_values
// CHECK-NOT: vector.step
// CHECK: gpu.launch
// CHECK: %[[STEP:.*]] = vector.step : vector<8xindex>
// CHECK: %[[COLS:.*]] = vector.broadcast %[[STEP]] : vector<8xindex> to vector<16x8xindex>
// CHECK: arith.constant dense<0.000000e+00> : vector<16x8xf32>
// CHECK: vector.transfer_write %[[COLS]]
// CHECK: gpu.terminator
func.func @hoisted_vector_values(%out: memref<16x8xindex>, %outf: memref<16x8xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %step = vector.step : vector<8xindex>
  %cols = vector.broadcast %step : vector<8xindex> to vector<16x8xindex>
  %zero = arith.constant dense<0.0> : vector<16x8xf32>
  gpu.launch blocks(%bx, %by, %bz) in (%gx = %c1, %gy = %c1, %gz = %c1)
             threads(%tx, %ty, %tz) in (%sx = %c1, %sy = %c1, %sz = %c1) {
    vector.transfer_write %cols, %out[%c0, %c0] {in_bounds = [true, true]} : vector<16x8xindex>, memref<16x8xindex>
    vector.transfer_write %zero, %outf[%c0, %c0] {in_bounds = [true, true]} : vector<16x8xf32>, memref<16x8xf32>
    gpu.terminator
  }
  return
}
