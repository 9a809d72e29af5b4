// RUN: dsv3-opt %s -split-input-file --dsv3-fuse-moe | FileCheck %s

/// A layer's MoE on [batch, tokens, hidden]: flattened to [N, D], routed,
/// dispatched by expert, the shared expert (width 32 = one slot of the
/// experts' width 32) folded into both grouped GEMMs, then restored.
// CHECK-LABEL: func.func @moe_with_shared
// CHECK-SAME: (%[[X:[a-z0-9]+]]: tensor<1x?x128xf32>, %[[R:[a-z0-9]+]]: tensor<8x128xbf16>, %[[B:[a-z0-9]+]]: tensor<8xf32>, %[[G:[a-z0-9]+]]: tensor<8x32x128xbf16>, %[[U:[a-z0-9]+]]: tensor<8x32x128xbf16>, %[[D:[a-z0-9]+]]: tensor<8x128x32xbf16>, %[[SG:[a-z0-9]+]]: tensor<32x128xbf16>, %[[SU:[a-z0-9]+]]: tensor<32x128xbf16>, %[[SD:[a-z0-9]+]]: tensor<128x32xbf16>)
// CHECK: %[[X2:.*]] = tensor.collapse_shape %[[X]] {{\[}}[0, 1], [2]] : tensor<1x?x128xf32> into tensor<?x128xf32>
// CHECK: %[[IDX:.*]], %[[W:.*]] = dsv3.moe_route %[[X2]] router(%[[R]]) bias(%[[B]])
// CHECK-SAME: experts = 8 : i64, n_group = 4 : i64, norm_topk_prob = true, routed_scaling_factor = 2.500000e+00 : f64, scoring = #dsv3.scoring<sigmoid>, top_k = 2 : i64, topk_group = 2 : i64
// CHECK-SAME: -> (tensor<?x2xi64>, tensor<?x2xf32>)
// CHECK: %[[ORDER:.*]], %[[OFFSETS:.*]] = dsv3.moe_dispatch %[[IDX]] {experts = 8 : i64} : (tensor<?x2xi64>) -> (tensor<?xi64>, tensor<9xi64>)
// CHECK: %[[ACT:.*]] = dsv3.moe_gate_up %[[X2]], %[[ORDER]], %[[OFFSETS]] experts(%[[G]], %[[U]]) shared(%[[SG]], %[[SU]]) {top_k = 2 : i64}
// CHECK-SAME: -> tensor<?x32xf32>
// CHECK: %[[Y2:.*]] = dsv3.moe_down_combine %[[ACT]], %[[ORDER]], %[[OFFSETS]], %[[W]] experts(%[[D]]) shared(%[[SD]]) {top_k = 2 : i64}
// CHECK-SAME: -> tensor<?x128xf32>
// CHECK: %[[Y:.*]] = tensor.expand_shape %[[Y2]] {{\[}}[0, 1], [2]] output_shape [1, %{{.*}}, 128] : tensor<?x128xf32> into tensor<1x?x128xf32>
// CHECK-NOT: dsv3.moe {{.*}}router
// CHECK: return %[[Y]]
func.func @moe_with_shared(%x: tensor<1x?x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) -> tensor<1x?x128xf32> {
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<1x?x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<1x?x128xf32>
  return %0 : tensor<1x?x128xf32>
}

// -----

/// Static tokens, no shared experts, FP8 experts with block scales, softmax
/// routing: a 2-D input needs no reshape, the pair and row counts are static
/// (7 tokens * top-2 = 14), the scales follow their weights.
// CHECK-LABEL: func.func @moe_fp8_static
// CHECK-NOT: tensor.collapse_shape
// CHECK: dsv3.moe_route %{{.*}} router(%{{.*}}) {{{.*}}scoring = #dsv3.scoring<softmax>{{.*}}} : (tensor<7x256xf32>, tensor<4x256xf32>) -> (tensor<7x2xi64>, tensor<7x2xf32>)
// CHECK: dsv3.moe_dispatch %{{.*}} : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<5xi64>)
// CHECK: dsv3.moe_gate_up {{.*}} experts(%{{.*}}, %{{.*}}) expert_scales(%{{.*}}, %{{.*}}) {top_k = 2 : i64}
// CHECK-NOT: shared
// CHECK-SAME: -> tensor<14x128xf32>
// CHECK: dsv3.moe_down_combine {{.*}} experts(%{{.*}}) expert_scale(%{{.*}}) {top_k = 2 : i64}
// CHECK-SAME: -> tensor<7x256xf32>
// CHECK-NOT: tensor.expand_shape
func.func @moe_fp8_static(%x: tensor<7x256xf32>, %r: tensor<4x256xf32>, %g: tensor<4x128x256xf8E4M3FN>, %u: tensor<4x128x256xf8E4M3FN>, %d: tensor<4x256x128xf8E4M3FN>, %gs: tensor<4x1x2xf32>, %us: tensor<4x1x2xf32>, %ds: tensor<4x2x1xf32>) -> tensor<7x256xf32> {
  %0 = dsv3.moe %x router(%r) experts(%g, %u, %d) expert_scales(%gs, %us, %ds)
      {experts = 4 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<softmax>, norm_topk_prob = false, routed_scaling_factor = 1.0 : f64}
      : (tensor<7x256xf32>, tensor<4x256xf32>, tensor<4x128x256xf8E4M3FN>, tensor<4x128x256xf8E4M3FN>, tensor<4x256x128xf8E4M3FN>, tensor<4x1x2xf32>, tensor<4x1x2xf32>, tensor<4x2x1xf32>) -> tensor<7x256xf32>
  return %0 : tensor<7x256xf32>
}

// -----

/// Negative: bf16 activations stay as they are (the fused ops compute in
/// f32).
// CHECK-LABEL: func.func @negative_bf16_activations
// CHECK: dsv3.moe %{{.*}} router
// CHECK-NOT: dsv3.moe_route
func.func @negative_bf16_activations(%x: tensor<7x128xbf16>, %r: tensor<8x128xbf16>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>) -> tensor<7x128xbf16> {
  %0 = dsv3.moe %x router(%r) experts(%g, %u, %d)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<softmax>, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64}
      : (tensor<7x128xbf16>, tensor<8x128xbf16>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>) -> tensor<7x128xbf16>
  return %0 : tensor<7x128xbf16>
}

// -----

/// Negative: a shared MLP of width 48 cannot be split into slots of the
/// experts' width 32, so the layer stays unfused.
// CHECK-LABEL: func.func @negative_shared_width_not_slots
// CHECK: dsv3.moe %{{.*}} router
// CHECK-NOT: dsv3.moe_route
func.func @negative_shared_width_not_slots(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<48x128xbf16>, %su: tensor<48x128xbf16>, %sd: tensor<128x48xbf16>) -> tensor<7x128xf32> {
  %0 = dsv3.moe %x router(%r) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<softmax>, norm_topk_prob = true, routed_scaling_factor = 1.0 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<48x128xbf16>, tensor<48x128xbf16>, tensor<128x48xbf16>) -> tensor<7x128xf32>
  return %0 : tensor<7x128xf32>
}

// -----

/// Negative: dense layers (dsv3.swiglu_mlp) are not MoE layers.
// CHECK-LABEL: func.func @negative_dense_layer
// CHECK: dsv3.swiglu_mlp
// CHECK-NOT: dsv3.moe
func.func @negative_dense_layer(%x: tensor<7x128xf32>, %g: tensor<32x128xbf16>, %u: tensor<32x128xbf16>, %d: tensor<128x32xbf16>) -> tensor<7x128xf32> {
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<7x128xf32>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return %0 : tensor<7x128xf32>
}
