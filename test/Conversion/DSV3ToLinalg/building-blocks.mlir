// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg -mlir-print-elementsattrs-with-hex-if-larger=1000 | FileCheck %s

/// A bf16 weight is widened element by element inside the contraction: no f32
/// copy of the matrix is made.
// CHECK-LABEL: func.func @linear_bf16
// CHECK-NOT: dsv3.
// CHECK: %[[ZERO:.*]] = linalg.fill
// CHECK: linalg.generic
// CHECK-SAME: iterator_types = ["parallel", "parallel", "reduction"]
// CHECK-SAME: ins(%arg0, %arg1 : tensor<7x128xf32>, tensor<64x128xbf16>) outs(%[[ZERO]] : tensor<7x64xf32>)
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: arith.mulf
// CHECK: arith.addf
func.func @linear_bf16(%x: tensor<7x128xf32>, %w: tensor<64x128xbf16>) -> tensor<7x64xf32> {
  %0 = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
  return %0 : tensor<7x64xf32>
}

// -----

/// FP8: the code is looked up in the exact 256-entry e4m3fn table (0x7F is
/// NaN, 0x7E is 448) and multiplied by the scale of its 128x128 block.
// CHECK-LABEL: func.func @linear_fp8
// CHECK: %[[TABLE:.*]] = arith.constant dense<[0.000000e+00, 0.001953125, {{.*}}, 4.480000e+02, 0x7FC00000, -0.000000e+00, {{.*}}]> : tensor<256xf32>
// CHECK: linalg.generic
// CHECK: arith.bitcast %{{.*}} : f8E4M3FN to i8
// CHECK: arith.extui
// CHECK: tensor.extract %[[TABLE]]
// CHECK: %[[N:.*]] = linalg.index 1
// CHECK: %[[K:.*]] = linalg.index 2
// CHECK: %[[BN:.*]] = arith.divui %[[N]], %c128
// CHECK: %[[BK:.*]] = arith.divui %[[K]], %c128
// CHECK: tensor.extract %arg2[%[[BN]], %[[BK]]] : tensor<2x3xf32>
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
