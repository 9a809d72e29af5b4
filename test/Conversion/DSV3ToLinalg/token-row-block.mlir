// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg=token-row-block=4 | FileCheck %s
// RUN: not dsv3-opt %s -split-input-file --convert-dsv3-to-linalg=token-row-block=3 2>&1 | FileCheck %s --check-prefix=BAD

/// token-row-block=4 (the CPU pipeline's setting): a linear over 7 tokens takes
/// tokens 0-3 as one block, whose k loop reads each weight chunk once for 4
/// token rows (4 x 4 accumulators; the tile's 8 weight rows in two halves),
/// then tokens 4-6 one by one with the one-row loop over all 8 weight rows.
// CHECK-LABEL: func.func @linear_blocked
// CHECK: scf.forall
// CHECK: scf.for %{{.*}} = %c0 to %c4 step %c4
// CHECK: scf.for %{{.*}} = %c0 to %c128 step %c16 iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-4: vector.transfer_read {{.*}} : tensor<1x7x128xf32>, vector<16xf32>
// CHECK: vector.transfer_read {{.*}} : tensor<1x64x128xbf16>, vector<16xbf16>
// CHECK-COUNT-4: vector.fma
// CHECK: vector.transfer_read {{.*}} : tensor<1x64x128xbf16>, vector<16xbf16>
// CHECK-COUNT-4: vector.fma
// CHECK: scf.for %{{.*}} = %c4 to %c7 step %c1
// CHECK: scf.for %{{.*}} = %c0 to %c128 step %c16 iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-COUNT-8: vector.fma
// BAD: token-row-block must be 1, 2 or 4, not 3
func.func @linear_blocked(%x: tensor<7x128xf32>, %w: tensor<64x128xbf16>) -> tensor<7x64xf32> {
  %0 = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
  return %0 : tensor<7x64xf32>
}

// -----

/// Fewer static tokens than the block: 2 tokens take a block of 2 (8 weight
/// rows x 2 tokens = 16 accumulators) and no one-row tail.
// CHECK-LABEL: func.func @linear_two_tokens
// CHECK: scf.for %{{.*}} = %c0 to %c2 step %c2
// CHECK: scf.for %{{.*}} = %c0 to %c128 step %c16 iter_args({{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK-NOT: step %c1
// CHECK: scf.forall.in_parallel
func.func @linear_two_tokens(%x: tensor<2x128xf32>, %w: tensor<64x128xbf16>) -> tensor<2x64xf32> {
  %0 = dsv3.linear %x, %w : (tensor<2x128xf32>, tensor<64x128xbf16>) -> tensor<2x64xf32>
  return %0 : tensor<2x64xf32>
}
