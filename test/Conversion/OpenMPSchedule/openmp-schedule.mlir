// RUN: dsv3-opt %s --convert-scf-to-openmp --dsv3-openmp-schedule=schedule=guided | FileCheck %s
// RUN: dsv3-opt %s --convert-scf-to-openmp --dsv3-openmp-schedule | FileCheck %s --check-prefix=STATIC
// RUN: not dsv3-opt %s --convert-scf-to-openmp --dsv3-openmp-schedule=schedule=fastest 2>&1 | FileCheck %s --check-prefix=BAD

/// Every parallel loop gets the schedule.
// CHECK: omp.wsloop schedule(guided)
// STATIC: omp.wsloop schedule(static)
// BAD: dsv3-openmp-schedule: unknown schedule 'fastest' (expected static, dynamic, guided, auto or runtime)
func.func @scale(%buf: memref<64xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c64 = arith.constant 64 : index
  scf.parallel (%i) = (%c0) to (%c64) step (%c1) {
    %v = memref.load %buf[%i] : memref<64xf32>
    %w = arith.addf %v, %v : f32
    memref.store %w, %buf[%i] : memref<64xf32>
    scf.reduce
  }
  return
}
