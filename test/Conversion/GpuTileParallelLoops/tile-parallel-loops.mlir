// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(func.func(dsv3-gpu-tile-parallel-loops{threads=128}))" | FileCheck %s

// The innermost dimension of an outermost loop becomes blocks of 128
// threads with a bounds guard; the other dimensions stay (blocks).

// CHECK-LABEL: func.func @rows_by_columns
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : index
// CHECK: %[[STEP:.*]] = arith.muli %{{.*}}, %[[C128]]
// CHECK: scf.parallel (%[[R:.*]], %[[CT:.*]]) = (%{{.*}}, %{{.*}}) to (%{{.*}}, %[[N:.*]]) step (%{{.*}}, %[[STEP]])
// CHECK: scf.parallel (%[[T:.*]]) = (%{{.*}}) to (%[[C128]])
// CHECK: %[[OFF:.*]] = arith.muli %[[T]]
// CHECK: %[[J:.*]] = arith.addi %[[CT]], %[[OFF]]
// CHECK: %[[IN:.*]] = arith.cmpi slt, %[[J]], %[[N]]
// CHECK: scf.if %[[IN]]
// CHECK: memref.store %{{.*}}, %{{.*}}[%[[R]], %[[J]]]
func.func @rows_by_columns(%out: memref<?x?xf32>, %m: index, %n: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %one = arith.constant 1.0 : f32
  scf.parallel (%i, %j) = (%c0, %c0) to (%m, %n) step (%c1, %c1) {
    memref.store %one, %out[%i, %j] : memref<?x?xf32>
    scf.reduce
  }
  return
}

// -----

// A dimension of static extent below the block size is the block: 40
// threads, one tile. A nested parallel loop becomes sequential (what one
// thread runs).

// CHECK-LABEL: func.func @small_static_with_nested
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%{{.*}}) step
// CHECK: scf.parallel (%{{.*}}) = (%{{.*}}) to (%c40{{(_[0-9]+)?}})
// CHECK: scf.if
// CHECK: scf.for
// CHECK-NOT: scf.parallel
// CHECK: return
func.func @small_static_with_nested(%out: memref<40x16xf32>) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c16 = arith.constant 16 : index
  %c40 = arith.constant 40 : index
  %one = arith.constant 1.0 : f32
  scf.parallel (%i) = (%c0) to (%c40) step (%c1) {
    scf.parallel (%k) = (%c0) to (%c16) step (%c1) {
      memref.store %one, %out[%i, %k] : memref<40x16xf32>
      scf.reduce
    }
    scf.reduce
  }
  return
}

// -----

func.func @reduction(%n: index) -> f32 {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %zero = arith.constant 0.0 : f32
  // expected-error @+1 {{has reductions; dsv3-gpu-tile-parallel-loops expects the reduction-free loops of convert-linalg-to-parallel-loops}}
  %r = scf.parallel (%i) = (%c0) to (%n) step (%c1) init (%zero) -> f32 {
    %one = arith.constant 1.0 : f32
    scf.reduce(%one : f32) {
    ^bb0(%a: f32, %b: f32):
      %s = arith.addf %a, %b : f32
      scf.reduce.return %s : f32
    }
  }
  return %r : f32
}
