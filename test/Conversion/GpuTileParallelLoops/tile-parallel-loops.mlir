// RUN: dsv3-opt %s --split-input-file --verify-diagnostics --pass-pipeline="builtin.module(func.func(dsv3-gpu-tile-parallel-loops{threads=128}))" | FileCheck %s

// The innermost dimension of an outermost loop becomes tiles of 128 threads
// with a bounds guard; the tiles and the other dimensions become one linear
// block index (grid x), delinearized with the tile index fastest.

// CHECK-LABEL: func.func @rows_by_columns
// CHECK-DAG: %[[C128:.*]] = arith.constant 128 : index
// CHECK: %[[TSTEP:.*]] = arith.muli %{{.*}}, %[[C128]]
// CHECK: %[[ROWS:.*]] = arith.maxsi
// CHECK: %[[CSPAN:.*]] = arith.subi %[[N:.*]], %{{.*}}
// CHECK: %[[TILES0:.*]] = arith.ceildivsi %[[CSPAN]], %[[TSTEP]]
// CHECK: %[[TILES:.*]] = arith.maxsi %[[TILES0]]
// CHECK: %[[TOTAL:.*]] = arith.muli %[[ROWS]], %[[TILES]]
// CHECK: scf.parallel (%[[B:.*]]) = (%{{.*}}) to (%[[TOTAL]]) step
// CHECK: %[[T:.*]] = arith.remui %[[B]], %[[TILES]]
// CHECK: %[[REST:.*]] = arith.divui %[[B]], %[[TILES]]
// CHECK: %[[R:.*]] = arith.remui %[[REST]], %[[ROWS]]
// CHECK: %[[TOFF:.*]] = arith.muli %[[T]], %[[TSTEP]]
// CHECK: %[[BASE:.*]] = arith.addi %{{.*}}, %[[TOFF]]
// CHECK: scf.parallel (%[[TID:.*]]) = (%{{.*}}) to (%[[C128]])
// CHECK: %[[OFF:.*]] = arith.muli %[[TID]]
// CHECK: %[[J:.*]] = arith.addi %[[BASE]], %[[OFF]]
// CHECK: %[[IN:.*]] = arith.cmpi slt, %[[J]], %[[N]]
// CHECK: scf.if %[[IN]]
// CHECK: memref.store %{{.*}}, %{{.*}}[%{{.*}}, %[[J]]]
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

// -----

// A loop holding a vector.contract is warp-level code: every dimension goes
// into the block index (no column tiling) and the block is one warp of 32
// lanes that all run the whole body, without a guard.

// CHECK-LABEL: func.func @warp_tiles
// CHECK: scf.parallel (%[[B:.*]]) =
// CHECK: %[[C32:.*]] = arith.constant 32 : index
// CHECK-NEXT: scf.parallel (%{{.*}}) = (%{{.*}}) to (%[[C32]])
// CHECK-NOT: scf.if
// CHECK: vector.contract
#mk = affine_map<(m, n, k) -> (m, k)>
#nk = affine_map<(m, n, k) -> (n, k)>
#mn = affine_map<(m, n, k) -> (m, n)>
func.func @warp_tiles(%a: memref<?x16xf32>, %b: memref<?x16xf32>, %c: memref<?x?xf32>, %tiles: index) {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %pad = arith.constant 0.0 : f32
  %zero = arith.constant dense<0.0> : vector<16x8xf32>
  scf.parallel (%i, %j) = (%c0, %c0) to (%tiles, %c2) step (%c1, %c1) {
    %va = vector.transfer_read %a[%i, %c0], %pad {in_bounds = [true, true]} : memref<?x16xf32>, vector<16x16xf32>
    %vb = vector.transfer_read %b[%j, %c0], %pad {in_bounds = [true, true]} : memref<?x16xf32>, vector<8x16xf32>
    %r = vector.contract {indexing_maps = [#mk, #nk, #mn], iterator_types = ["parallel", "parallel", "reduction"], kind = #vector.kind<add>} %va, %vb, %zero : vector<16x16xf32>, vector<8x16xf32> into vector<16x8xf32>
    vector.transfer_write %r, %c[%i, %j] {in_bounds = [false, true]} : vector<16x8xf32>, memref<?x?xf32>
    scf.reduce
  }
  return
}
