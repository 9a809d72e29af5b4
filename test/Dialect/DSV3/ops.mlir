// RUN: dsv3-opt %s | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --mlir-print-op-generic | dsv3-opt | FileCheck %s
// RUN: dsv3-opt %s --mlir-print-op-generic | FileCheck %s --check-prefix=GENERIC

/// Every dsv3 op round-trips through its custom form and its generic form.

// CHECK-LABEL: func.func @embedding
// CHECK: %[[E:.*]] = dsv3.embedding %arg0, %arg1 : (tensor<512x128xbf16>, tensor<2x7xi32>) -> tensor<2x7x128xf32>
// GENERIC: "dsv3.embedding"
func.func @embedding(%table: tensor<512x128xbf16>, %tokens: tensor<2x7xi32>) -> tensor<2x7x128xf32> {
  %0 = dsv3.embedding %table, %tokens : (tensor<512x128xbf16>, tensor<2x7xi32>) -> tensor<2x7x128xf32>
  return %0 : tensor<2x7x128xf32>
}

// CHECK-LABEL: func.func @rms_norm_dynamic_seq
// CHECK: dsv3.rms_norm %arg0, %arg1 {eps = 9.9999999999999995E-7 : f64} : (tensor<2x?x128xf32>, tensor<128xbf16>) -> tensor<2x?x128xf32>
func.func @rms_norm_dynamic_seq(%x: tensor<2x?x128xf32>, %w: tensor<128xbf16>) -> tensor<2x?x128xf32> {
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-06 : f64} : (tensor<2x?x128xf32>, tensor<128xbf16>) -> tensor<2x?x128xf32>
  return %0 : tensor<2x?x128xf32>
}

// CHECK-LABEL: func.func @linear_bf16
// CHECK: dsv3.linear %arg0, %arg1 : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
func.func @linear_bf16(%x: tensor<7x128xf32>, %w: tensor<64x128xbf16>) -> tensor<7x64xf32> {
  %0 = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
  return %0 : tensor<7x64xf32>
}

/// 160x320 in 128x128 blocks: 2x3 blocks, the last ones partial.
// CHECK-LABEL: func.func @linear_fp8_partial_blocks
// CHECK: dsv3.linear %arg0, %arg1 scale %arg2 : (tensor<7x320xf32>, tensor<160x320xf8E4M3FN>, tensor<2x3xf32>) -> tensor<7x160xf32>
func.func @linear_fp8_partial_blocks(%x: tensor<7x320xf32>, %w: tensor<160x320xf8E4M3FN>, %s: tensor<2x3xf32>) -> tensor<7x160xf32> {
  %0 = dsv3.linear %x, %w scale %s : (tensor<7x320xf32>, tensor<160x320xf8E4M3FN>, tensor<2x3xf32>) -> tensor<7x160xf32>
  return %0 : tensor<7x160xf32>
}

// CHECK-LABEL: func.func @rope_plain_and_yarn
// CHECK: dsv3.rope %arg0, %arg2 {rope = #dsv3.rope<theta = 1.000000e+04>}
// CHECK: dsv3.rope %arg1, %arg2 {rope = #dsv3.rope<theta = 1.000000e+04, factor = 4.000000e+01, original_max_positions = 4096, beta_fast = 3.200000e+01, beta_slow = 1.000000e+00>}
func.func @rope_plain_and_yarn(%q: tensor<2x7x4x8xf32>, %k: tensor<2x7x8xf32>, %pos: tensor<2x7xi64>) -> (tensor<2x7x4x8xf32>, tensor<2x7x8xf32>) {
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0>} : (tensor<2x7x4x8xf32>, tensor<2x7xi64>) -> tensor<2x7x4x8xf32>
  %1 = dsv3.rope %k, %pos {rope = #dsv3.rope<theta = 10000.0, factor = 40.0, original_max_positions = 4096, beta_fast = 32.0, beta_slow = 1.0>} : (tensor<2x7x8xf32>, tensor<2x7xi64>) -> tensor<2x7x8xf32>
  return %0, %1 : tensor<2x7x4x8xf32>, tensor<2x7x8xf32>
}

// CHECK-LABEL: func.func @swiglu_mlp
// CHECK: dsv3.swiglu_mlp %arg0, %arg1, %arg2, %arg3 : (tensor<7x128xf32>, tensor<256x128xbf16>, tensor<256x128xbf16>, tensor<128x256xbf16>) -> tensor<7x128xf32>
func.func @swiglu_mlp(%x: tensor<7x128xf32>, %g: tensor<256x128xbf16>, %u: tensor<256x128xbf16>, %d: tensor<128x256xbf16>) -> tensor<7x128xf32> {
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<7x128xf32>, tensor<256x128xbf16>, tensor<256x128xbf16>, tensor<128x256xbf16>) -> tensor<7x128xf32>
  return %0 : tensor<7x128xf32>
}

// CHECK-LABEL: func.func @swiglu_mlp_fp8
// CHECK: dsv3.swiglu_mlp %arg0, %arg1, %arg2, %arg3 scales(%arg4, %arg5, %arg6)
func.func @swiglu_mlp_fp8(%x: tensor<7x320xf32>, %g: tensor<448x320xf8E4M3FN>, %u: tensor<448x320xf8E4M3FN>, %d: tensor<320x448xf8E4M3FN>,
                          %gs: tensor<4x3xf32>, %us: tensor<4x3xf32>, %ds: tensor<3x4xf32>) -> tensor<7x320xf32> {
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d scales(%gs, %us, %ds) : (tensor<7x320xf32>, tensor<448x320xf8E4M3FN>, tensor<448x320xf8E4M3FN>, tensor<320x448xf8E4M3FN>, tensor<4x3xf32>, tensor<4x3xf32>, tensor<3x4xf32>) -> tensor<7x320xf32>
  return %0 : tensor<7x320xf32>
}

/// tiny-v3 shapes: q_lora_rank 64, kv_lora_rank 32, 4 heads of 16+8 (v 16),
/// latent cache width 32 + 8 = 40.
// CHECK-LABEL: func.func @mla_low_rank_query_latent_cache
// CHECK: %[[OUT:.*]], %[[CACHE:.*]] = dsv3.mla %arg0, %arg1, %arg2 q_a(%arg3) q_norm(%arg4) q_b(%arg5) kv_a(%arg6) kv_norm(%arg7) kv_b(%arg8) o(%arg9)
// CHECK-SAME: heads = 4 : i64
// CHECK-SAME: q_lora_rank = 64 : i64
// CHECK-SAME: -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
// GENERIC: "dsv3.mla"
// GENERIC-SAME: operandSegmentSizes = array<i32: 1, 1, 1, 1, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 1, 1, 0, 1, 0>
func.func @mla_low_rank_query_latent_cache(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x40xf32>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.1352337788608801 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0, factor = 40.0, original_max_positions = 4096, beta_fast = 32.0, beta_slow = 1.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x40xf32>
}

/// tiny-v2lite shapes: plain q projection, 3 heads, expanded per-head K/V
/// cache of width 3 * (16 + 8 + 16) = 120, dynamic sequence length.
// CHECK-LABEL: func.func @mla_plain_query_expanded_cache
// CHECK: dsv3.mla %arg0, %arg1, %arg2 q(%arg3) kv_a(%arg4) kv_norm(%arg5) kv_b(%arg6) o(%arg7)
func.func @mla_plain_query_expanded_cache(%x: tensor<2x?x96xf32>, %pos: tensor<2x?xi32>, %cache: tensor<2x32x120xf32>,
    %wq: tensor<72x96xbf16>, %wkv_a: tensor<40x96xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<96x32xbf16>, %wo: tensor<96x48xbf16>)
    -> (tensor<2x?x96xf32>, tensor<2x32x120xf32>) {
  %out, %c = dsv3.mla %x, %pos, %cache q(%wq) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 3 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64,
       v_head_dim = 16 : i64, softmax_scale = 0.2041241452 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<2x?x96xf32>, tensor<2x?xi32>, tensor<2x32x120xf32>, tensor<72x96xbf16>, tensor<40x96xbf16>, tensor<32xbf16>,
         tensor<96x32xbf16>, tensor<96x48xbf16>) -> (tensor<2x?x96xf32>, tensor<2x32x120xf32>)
  return %out, %c : tensor<2x?x96xf32>, tensor<2x32x120xf32>
}

/// tiny-v3-fp8 shapes: every projection FP8 with its block scale.
// CHECK-LABEL: func.func @mla_fp8
// CHECK: q_a(%arg3) q_a_scale(%arg4) q_norm(%arg5) q_b(%arg6) q_b_scale(%arg7) kv_a(%arg8) kv_a_scale(%arg9) kv_norm(%arg10) kv_b(%arg11) kv_b_scale(%arg12) o(%arg13) o_scale(%arg14)
func.func @mla_fp8(%x: tensor<1x1x320xf32>, %pos: tensor<1x1xi64>, %cache: tensor<1x16x112xf32>,
    %wq_a: tensor<160x320xf8E4M3FN>, %sq_a: tensor<2x3xf32>, %q_norm: tensor<160xbf16>,
    %wq_b: tensor<192x160xf8E4M3FN>, %sq_b: tensor<2x2xf32>,
    %wkv_a: tensor<112x320xf8E4M3FN>, %skv_a: tensor<1x3xf32>, %kv_norm: tensor<96xbf16>,
    %wkv_b: tensor<256x96xf8E4M3FN>, %skv_b: tensor<2x1xf32>, %wo: tensor<320x128xf8E4M3FN>, %so: tensor<3x1xf32>)
    -> (tensor<1x1x320xf32>, tensor<1x16x112xf32>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_a_scale(%sq_a) q_norm(%q_norm) q_b(%wq_b) q_b_scale(%sq_b)
      kv_a(%wkv_a) kv_a_scale(%skv_a) kv_norm(%kv_norm) kv_b(%wkv_b) kv_b_scale(%skv_b) o(%wo) o_scale(%so)
      {heads = 4 : i64, q_lora_rank = 160 : i64, kv_lora_rank = 96 : i64, qk_nope_head_dim = 32 : i64,
       qk_rope_head_dim = 16 : i64, v_head_dim = 32 : i64, softmax_scale = 0.11 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x1x320xf32>, tensor<1x1xi64>, tensor<1x16x112xf32>, tensor<160x320xf8E4M3FN>, tensor<2x3xf32>, tensor<160xbf16>,
         tensor<192x160xf8E4M3FN>, tensor<2x2xf32>, tensor<112x320xf8E4M3FN>, tensor<1x3xf32>, tensor<96xbf16>,
         tensor<256x96xf8E4M3FN>, tensor<2x1xf32>, tensor<320x128xf8E4M3FN>, tensor<3x1xf32>) -> (tensor<1x1x320xf32>, tensor<1x16x112xf32>)
  return %out, %c : tensor<1x1x320xf32>, tensor<1x16x112xf32>
}

// CHECK-LABEL: func.func @moe_sigmoid_groups_bias_shared
// CHECK: dsv3.moe %arg0 router(%arg1) bias(%arg2) experts(%arg3, %arg4, %arg5) shared(%arg6, %arg7, %arg8)
// CHECK-SAME: scoring = #dsv3.scoring<sigmoid>
func.func @moe_sigmoid_groups_bias_shared(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>,
    %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>,
    %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) -> tensor<7x128xf32> {
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>,
         tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return %0 : tensor<7x128xf32>
}

/// tiny-v2lite routing: softmax, no groups, no bias, two shared experts (48 wide).
// CHECK-LABEL: func.func @moe_softmax_no_bias
// CHECK: dsv3.moe %arg0 router(%arg1) experts(%arg2, %arg3, %arg4) shared(%arg5, %arg6, %arg7)
// CHECK-SAME: scoring = #dsv3.scoring<softmax>
func.func @moe_softmax_no_bias(%x: tensor<2x?x96xf32>, %r: tensor<6x96xbf16>,
    %g: tensor<6x24x96xbf16>, %u: tensor<6x24x96xbf16>, %d: tensor<6x96x24xbf16>,
    %sg: tensor<48x96xbf16>, %su: tensor<48x96xbf16>, %sd: tensor<96x48xbf16>) -> tensor<2x?x96xf32> {
  %0 = dsv3.moe %x router(%r) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 6 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<softmax>,
       norm_topk_prob = false, routed_scaling_factor = 1.0 : f64}
      : (tensor<2x?x96xf32>, tensor<6x96xbf16>, tensor<6x24x96xbf16>, tensor<6x24x96xbf16>, tensor<6x96x24xbf16>,
         tensor<48x96xbf16>, tensor<48x96xbf16>, tensor<96x48xbf16>) -> tensor<2x?x96xf32>
  return %0 : tensor<2x?x96xf32>
}

/// FP8 experts with stacked block scales, no shared expert.
// CHECK-LABEL: func.func @moe_fp8_experts
// CHECK: dsv3.moe %arg0 router(%arg1) bias(%arg2) experts(%arg3, %arg4, %arg5) expert_scales(%arg6, %arg7, %arg8)
func.func @moe_fp8_experts(%x: tensor<3x320xf32>, %r: tensor<8x320xbf16>, %b: tensor<8xf32>,
    %g: tensor<8x96x320xf8E4M3FN>, %u: tensor<8x96x320xf8E4M3FN>, %d: tensor<8x320x96xf8E4M3FN>,
    %gs: tensor<8x1x3xf32>, %us: tensor<8x1x3xf32>, %ds: tensor<8x3x1xf32>) -> tensor<3x320xf32> {
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) expert_scales(%gs, %us, %ds)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 2 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<sigmoid>,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<3x320xf32>, tensor<8x320xbf16>, tensor<8xf32>, tensor<8x96x320xf8E4M3FN>, tensor<8x96x320xf8E4M3FN>,
         tensor<8x320x96xf8E4M3FN>, tensor<8x1x3xf32>, tensor<8x1x3xf32>, tensor<8x3x1xf32>) -> tensor<3x320xf32>
  return %0 : tensor<3x320xf32>
}

/// The fused MoE ops dsv3-fuse-moe produces (a layer with one shared slot).
// CHECK-LABEL: func.func @fused_moe
// CHECK: %[[IDX:.*]], %[[W:.*]] = dsv3.moe_route %arg0 router(%arg1) bias(%arg2)
// CHECK: %[[ORDER:.*]], %[[OFFSETS:.*]] = dsv3.moe_dispatch %[[IDX]] {experts = 8 : i64} : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<9xi64>)
// CHECK: %[[ACT:.*]] = dsv3.moe_gate_up %arg0, %[[ORDER]], %[[OFFSETS]] experts(%arg3, %arg4) shared(%arg6, %arg7) {top_k = 2 : i64}
// CHECK: dsv3.moe_down_combine %[[ACT]], %[[ORDER]], %[[OFFSETS]], %[[W]] experts(%arg5) shared(%arg8) {top_k = 2 : i64}
func.func @fused_moe(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>,
    %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>,
    %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) -> tensor<7x128xf32> {
  %idx, %w = dsv3.moe_route %x router(%r) bias(%b)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>) -> (tensor<7x2xi64>, tensor<7x2xf32>)
  %order, %offsets = dsv3.moe_dispatch %idx {experts = 8 : i64} : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<9xi64>)
  %act = dsv3.moe_gate_up %x, %order, %offsets experts(%g, %u) shared(%sg, %su) {top_k = 2 : i64}
      : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>,
         tensor<32x128xbf16>, tensor<32x128xbf16>) -> tensor<21x32xf32>
  %y = dsv3.moe_down_combine %act, %order, %offsets, %w experts(%d) shared(%sd) {top_k = 2 : i64}
      : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<8x128x32xbf16>, tensor<128x32xbf16>)
      -> tensor<7x128xf32>
  return %y : tensor<7x128xf32>
}

/// The fused down projection and the naive-prefill threshold that
/// dsv3-fuse-latent-projection sets.
// CHECK-LABEL: func.func @mla_fused_down_projection
// CHECK: dsv3.mla %arg0, %arg1, %arg2 q_norm(%arg4) q_b(%arg5) q_kv_a(%arg3) kv_norm(%arg6) kv_b(%arg7) o(%arg8)
// CHECK-SAME: expand_from = 256 : i64
func.func @mla_fused_down_projection(%x: tensor<1x?x128xf32>, %pos: tensor<1x?xi64>, %c: tensor<1x64x40xf32>,
    %qkv: tensor<104x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>,
    %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) -> tensor<1x?x128xf32> {
  %o, %c2 = dsv3.mla %x, %pos, %c q_norm(%qn) q_b(%qb) q_kv_a(%qkv) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>, expand_from = 256 : i64}
      : (tensor<1x?x128xf32>, tensor<1x?xi64>, tensor<1x64x40xf32>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<104x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>)
      -> (tensor<1x?x128xf32>, tensor<1x64x40xf32>)
  return %o : tensor<1x?x128xf32>
}
