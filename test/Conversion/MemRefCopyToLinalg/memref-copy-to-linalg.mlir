// RUN: dsv3-opt %s -split-input-file --pass-pipeline="builtin.module(func.func(dsv3-memref-copy-to-linalg))" | FileCheck %s --check-prefixes=CHECK,DEFAULT
// RUN: dsv3-opt %s -split-input-file --pass-pipeline="builtin.module(func.func(dsv3-memref-copy-to-linalg{all=false}))" | FileCheck %s --check-prefixes=CHECK,DEFAULT
// RUN: dsv3-opt %s -split-input-file --pass-pipeline="builtin.module(func.func(dsv3-memref-copy-to-linalg{all=true}))" | FileCheck %s --check-prefixes=CHECK,ALL

// A memref.copy with a non-identity layout on either side would lower to a
// call to the `memrefCopy` runtime library, so it becomes linalg.copy (later
// plain loops). Copies between identity-layout buffers stay memref.copy (a
// memcpy) unless `all` is set, as the GPU pipeline does.

/// The tile a parallel loop writes into its slice of the output: the target
/// is a strided subview, so the copy becomes linalg.copy (found inside the
/// loop body too), with the same operands, under every option value. The
/// identity-to-identity copy after the loop stays a memref.copy by default
/// and becomes linalg.copy with all=true.
// CHECK-LABEL: func.func @tile_into_slice(
// CHECK-SAME: %[[OUT:.*]]: memref<8x64xf32>, %[[FINAL:.*]]: memref<8x64xf32>)
// CHECK: scf.parallel
// CHECK: %[[TILE:.*]] = memref.alloc() : memref<8x16xf32>
// CHECK: %[[SLICE:.*]] = memref.subview %[[OUT]]
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%[[TILE]] : memref<8x16xf32>) outs(%[[SLICE]] : memref<8x16xf32, strided<[64, 1], offset: ?>>)
// CHECK-NOT: memref.copy
// CHECK: scf.reduce
// DEFAULT: memref.copy %[[OUT]], %[[FINAL]] : memref<8x64xf32> to memref<8x64xf32>
// ALL-NOT: memref.copy
// ALL: linalg.copy ins(%[[OUT]] : memref<8x64xf32>) outs(%[[FINAL]] : memref<8x64xf32>)
// CHECK-NEXT: return
func.func @tile_into_slice(%out: memref<8x64xf32>, %final: memref<8x64xf32>) {
  %c0 = arith.constant 0 : index
  %c16 = arith.constant 16 : index
  %c64 = arith.constant 64 : index
  %zero = arith.constant 0.0 : f32
  scf.parallel (%j) = (%c0) to (%c64) step (%c16) {
    %tile = memref.alloc() : memref<8x16xf32>
    linalg.fill ins(%zero : f32) outs(%tile : memref<8x16xf32>)
    %slice = memref.subview %out[0, %j] [8, 16] [1, 1]
        : memref<8x64xf32> to memref<8x16xf32, strided<[64, 1], offset: ?>>
    memref.copy %tile, %slice
        : memref<8x16xf32> to memref<8x16xf32, strided<[64, 1], offset: ?>>
    memref.dealloc %tile : memref<8x16xf32>
    scf.reduce
  }
  memref.copy %out, %final : memref<8x64xf32> to memref<8x64xf32>
  return
}

// -----

/// A strided source (a column block read out of a row-major matrix) into an
/// identity buffer is converted too: either side being non-identity counts.
// CHECK-LABEL: func.func @strided_source(
// CHECK-SAME: %[[SRC:.*]]: memref<4x8xf32>, %[[DST:.*]]: memref<4x2xf32>)
// CHECK: %[[BLOCK:.*]] = memref.subview %[[SRC]][0, 2] [4, 2] [1, 1]
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%[[BLOCK]] : memref<4x2xf32, strided<[8, 1], offset: 2>>) outs(%[[DST]] : memref<4x2xf32>)
// CHECK-NEXT: return
func.func @strided_source(%src: memref<4x8xf32>, %dst: memref<4x2xf32>) {
  %block = memref.subview %src[0, 2] [4, 2] [1, 1]
      : memref<4x8xf32> to memref<4x2xf32, strided<[8, 1], offset: 2>>
  memref.copy %block, %dst : memref<4x2xf32, strided<[8, 1], offset: 2>> to memref<4x2xf32>
  return
}

// -----

/// A non-identity affine-map layout (a transposed view) is not contiguous
/// either: converted under every option value.
// CHECK-LABEL: func.func @transposed(
// CHECK-SAME: %[[SRC:.*]]: memref<4x8xf32, #{{.*}}>, %[[DST:.*]]: memref<4x8xf32>)
// CHECK-NOT: memref.copy
// CHECK: linalg.copy ins(%[[SRC]] : memref<4x8xf32, #{{.*}}>) outs(%[[DST]] : memref<4x8xf32>)
// CHECK-NEXT: return
func.func @transposed(%src: memref<4x8xf32, affine_map<(d0, d1) -> (d1, d0)>>,
                      %dst: memref<4x8xf32>) {
  memref.copy %src, %dst : memref<4x8xf32, affine_map<(d0, d1) -> (d1, d0)>> to memref<4x8xf32>
  return
}

// -----

/// Dynamically shaped identity-layout buffers are still contiguous: kept as
/// memref.copy by default (memcpy), linalg.copy with all=true (the GPU
/// pipeline, where a host memcpy cannot reach device memory).
// CHECK-LABEL: func.func @dynamic_identity(
// CHECK-SAME: %[[A:.*]]: memref<?x?xbf16>, %[[B:.*]]: memref<?x?xbf16>)
// DEFAULT-NEXT: memref.copy %[[A]], %[[B]] : memref<?x?xbf16> to memref<?x?xbf16>
// DEFAULT-NOT: linalg.copy
// ALL-NOT: memref.copy
// ALL-NEXT: linalg.copy ins(%[[A]] : memref<?x?xbf16>) outs(%[[B]] : memref<?x?xbf16>)
// CHECK-NEXT: return
func.func @dynamic_identity(%a: memref<?x?xbf16>, %b: memref<?x?xbf16>) {
  memref.copy %a, %b : memref<?x?xbf16> to memref<?x?xbf16>
  return
}
