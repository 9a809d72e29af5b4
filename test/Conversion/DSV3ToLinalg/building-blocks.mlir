// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg -mlir-print-elementsattrs-with-hex-if-larger=1000 | FileCheck %s

/// Linear is a weight stream (one group of row dots): tiles of 8 output rows
/// are handed out by a parallel loop; per token m a 16-lane FMA loop over k
/// reads the 8 bf16 rows once, widens them in registers and keeps 8
/// independent accumulators; no f32 copy of the matrix is made.
// CHECK-LABEL: func.func @linear_bf16
// CHECK-NOT: dsv3.
// CHECK: %[[W:.*]] = tensor.expand_shape %arg1 {{.*}} into tensor<1x64x128xbf16>
// CHECK: %[[X:.*]] = tensor.expand_shape %arg0 {{.*}} into tensor<1x7x128xf32>
// CHECK: scf.forall (%[[G:.*]], %[[T:.*]]) in (1, %c8) shared_outs(%[[OUT:.*]] = %{{.*}}) -> (tensor<1x7x64xf32>)
// CHECK: %[[N0:.*]] = arith.muli %[[T]], %c8
// CHECK: scf.for %[[M:[a-z0-9_]+]] = %{{.*}} to %c7
// CHECK: scf.for %[[K:[a-z0-9_]+]] = %{{.*}} to %c128 step %c16 iter_args(%[[ACC:[a-z0-9_]+]] = %{{.*}}, {{.*}}) -> (vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>, vector<16xf32>)
// CHECK: %[[XV:.*]] = vector.transfer_read %[[X]][%[[G]], %[[M]], %[[K]]]{{.*}}{in_bounds = [true]} : tensor<1x7x128xf32>, vector<16xf32>
// CHECK: %[[WV:.*]] = vector.transfer_read %[[W]][%[[G]], %[[N0]], %[[K]]]{{.*}} : tensor<1x64x128xbf16>, vector<16xbf16>
// CHECK: %[[WF:.*]] = arith.extf %[[WV]] : vector<16xbf16> to vector<16xf32>
// CHECK: vector.fma %[[XV]], %[[WF]], %[[ACC]] : vector<16xf32>
// CHECK-COUNT-7: vector.fma
// CHECK: vector.reduction <add>
// CHECK: scf.forall.in_parallel
// CHECK: tensor.parallel_insert_slice %{{.*}} into %[[OUT]][%[[G]], 0, %[[N0]]] [1, 7, 8] [1, 1, 1]
func.func @linear_bf16(%x: tensor<7x128xf32>, %w: tensor<64x128xbf16>) -> tensor<7x64xf32> {
  %0 = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
  return %0 : tensor<7x64xf32>
}

// -----

/// A K that is not a multiple of 16 (V2-Lite's experts: 24) reads its tail
/// with masked transfers; leading dims are flattened to tokens and restored.
// CHECK-LABEL: func.func @linear_tail
// CHECK: tensor.collapse_shape %arg0 {{\[}}[0, 1], [2]] : tensor<2x?x24xf32> into tensor<?x24xf32>
// CHECK: vector.transfer_read {{.*}} : tensor<1x?x24xf32>, vector<16xf32>
// CHECK-NOT: in_bounds = [true]
// CHECK: tensor.expand_shape {{.*}} into tensor<2x?x96xf32>
func.func @linear_tail(%x: tensor<2x?x24xf32>, %w: tensor<96x24xbf16>) -> tensor<2x?x96xf32> {
  %0 = dsv3.linear %x, %w : (tensor<2x?x24xf32>, tensor<96x24xbf16>) -> tensor<2x?x96xf32>
  return %0 : tensor<2x?x96xf32>
}

// -----

/// FP8: codes are decoded exactly with integer ops (sign | (exp + 120) << 23 |
/// mantissa << 20; subnormals mantissa * 2^-9; 0x7F NaN) and multiplied by
/// the scale of their 128x128 block, one scale per row and 16-lane chunk.
// CHECK-LABEL: func.func @linear_fp8
// CHECK-DAG: arith.constant dense<120> : vector<16xi32>
// CHECK-DAG: arith.constant dense<0.001953125> : vector<16xf32>
// CHECK: vector.transfer_read %{{.*}} : tensor<1x160x320xf8E4M3FN>, vector<16xf8E4M3FN>
// CHECK: arith.bitcast %{{.*}} : vector<16xf8E4M3FN> to vector<16xi8>
// CHECK: %[[N:.*]] = arith.divui %{{.*}}, %c128
// CHECK: %[[KB:.*]] = arith.divui %{{.*}}, %c128
// CHECK: %[[S:.*]] = tensor.extract %arg2[%[[N]], %[[KB]]] : tensor<2x3xf32>
// CHECK: %[[SV:.*]] = vector.broadcast %[[S]] : f32 to vector<16xf32>
// CHECK: arith.mulf %{{.*}}, %[[SV]] : vector<16xf32>
func.func @linear_fp8(%x: tensor<7x320xf32>, %w: tensor<160x320xf8E4M3FN>, %s: tensor<2x3xf32>) -> tensor<7x160xf32> {
  %0 = dsv3.linear %x, %w scale %s : (tensor<7x320xf32>, tensor<160x320xf8E4M3FN>, tensor<2x3xf32>) -> tensor<7x160xf32>
  return %0 : tensor<7x160xf32>
}

// -----

/// Sum of squares as a reduction, then x * rsqrt(mean + eps) * w.
// CHECK-LABEL: func.func @rms_norm
// CHECK-DAG: %[[D:.*]] = arith.constant 1.280000e+02 : f32
// CHECK-DAG: %[[EPS:.*]] = arith.constant 9.99999997E-7 : f32
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "reduction"]
// CHECK: linalg.generic {{.*}} iterator_types = ["parallel", "parallel", "parallel"]
// CHECK: %[[MEAN:.*]] = arith.divf %{{.*}}, %[[D]]
// CHECK: %[[SUM:.*]] = arith.addf %[[MEAN]], %[[EPS]]
// CHECK: math.rsqrt %[[SUM]]
func.func @rms_norm(%x: tensor<2x?x128xf32>, %w: tensor<128xbf16>) -> tensor<2x?x128xf32> {
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-06 : f64} : (tensor<2x?x128xf32>, tensor<128xbf16>) -> tensor<2x?x128xf32>
  return %0 : tensor<2x?x128xf32>
}

// -----

/// YaRN frequencies are folded into a constant at compile time: pairs 0-1 of
/// a 64-wide head keep theta^(-2i/64) = 1, 0.7498942; the last pair is divided
/// by the factor 40: 1.333521e-04 / 40 = 3.3338e-06 (spec §4.1).
// CHECK-LABEL: func.func @rope_yarn
// CHECK: arith.constant dense<[1.000000e+00, 0.749894201, {{.*}}, 3.33380{{[0-9]*}}E-6]> : tensor<32xf32>
// CHECK: linalg.generic
// CHECK: math.cos
// CHECK: math.sin
func.func @rope_yarn(%q: tensor<1x3x2x64xf32>, %pos: tensor<1x3xi64>) -> tensor<1x3x2x64xf32> {
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0, factor = 40.0, original_max_positions = 4096, beta_fast = 32.0, beta_slow = 1.0>} : (tensor<1x3x2x64xf32>, tensor<1x3xi64>) -> tensor<1x3x2x64xf32>
  return %0 : tensor<1x3x2x64xf32>
}

// -----

/// Embedding gathers table rows by token id.
// CHECK-LABEL: func.func @embedding
// CHECK: linalg.generic
// CHECK: arith.index_cast %{{.*}} : i32 to index
// CHECK: tensor.extract %arg0[
func.func @embedding(%table: tensor<512x128xbf16>, %tokens: tensor<2x?xi32>) -> tensor<2x?x128xf32> {
  %0 = dsv3.embedding %table, %tokens : (tensor<512x128xbf16>, tensor<2x?xi32>) -> tensor<2x?x128xf32>
  return %0 : tensor<2x?x128xf32>
}
