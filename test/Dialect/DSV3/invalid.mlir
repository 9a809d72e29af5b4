// RUN: dsv3-opt %s -split-input-file -verify-diagnostics

/// One case per verifier message of the dsv3 dialect (DSV3Ops.cpp, DSV3Attrs.cpp).

/// RoPE base below 1 is meaningless.
func.func @invalid_1(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{rope theta must be greater than 1, got 5.000000e-01}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 0.5>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// A YaRN factor below 1 would shrink positions.
func.func @invalid_2(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{rope factor must be at least 1}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0, factor = 0.5>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// YaRN needs the original context length.
func.func @invalid_3(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{YaRN (factor > 1) needs original_max_positions > 0, got 0}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0, factor = 40.0, beta_fast = 32.0, beta_slow = 1.0>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// The ramp runs from beta_fast down to beta_slow.
func.func @invalid_4(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{YaRN needs beta_fast > beta_slow > 0}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0, factor = 40.0, original_max_positions = 4096, beta_fast = 1.0, beta_slow = 32.0>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// Unknown fields are rejected, not ignored.
func.func @invalid_5(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{unknown #dsv3.rope field 'scale'}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<theta = 10000.0, scale = 2.0>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// theta has no default.
func.func @invalid_6(%q: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{#dsv3.rope needs 'theta'}}
  %0 = dsv3.rope %q, %pos {rope = #dsv3.rope<factor = 1.0>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// The table is [vocab, hidden].
func.func @invalid_7(%t: tensor<8xbf16>, %tok: tensor<1x2xi32>) {
  // expected-error @+1 {{table must be rank 2 [vocab, hidden], got rank 1}}
  %0 = dsv3.embedding %t, %tok : (tensor<8xbf16>, tensor<1x2xi32>) -> tensor<1x2x8xf32>
  return
}

// -----

/// The result must be tokens x hidden.
func.func @invalid_8(%t: tensor<16x8xbf16>, %tok: tensor<1x2xi32>) {
  // expected-error @+1 {{result must be tokens shape + [hidden] = [1, 2, 8], got [1, 2, 4]}}
  %0 = dsv3.embedding %t, %tok : (tensor<16x8xbf16>, tensor<1x2xi32>) -> tensor<1x2x4xf32>
  return
}

// -----

/// eps must be positive.
func.func @invalid_9(%x: tensor<2x8xf32>, %w: tensor<8xbf16>) {
  // expected-error @+1 {{eps must be positive, got 0}}
  %0 = dsv3.rms_norm %x, %w {eps = 0.0 : f64} : (tensor<2x8xf32>, tensor<8xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// A scalar has no dimension to normalise.
func.func @invalid_10(%x: tensor<f32>, %w: tensor<8xbf16>) {
  // expected-error @+1 {{input must have at least one dimension}}
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<f32>, tensor<8xbf16>) -> tensor<f32>
  return
}

// -----

/// The weight covers the normalised dimension.
func.func @invalid_11(%x: tensor<2x8xf32>, %w: tensor<4xbf16>) {
  // expected-error @+1 {{weight must be [input's last dimension] = [8], got [4]}}
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<2x8xf32>, tensor<4xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// The result has the input's type.
func.func @invalid_12(%x: tensor<2x8xf32>, %w: tensor<8xbf16>) {
  // expected-error @+1 {{result type 'tensor<2x8xbf16>' must equal 'tensor<2x8xf32>'}}
  %0 = dsv3.rms_norm %x, %w {eps = 1.0e-6 : f64} : (tensor<2x8xf32>, tensor<8xbf16>) -> tensor<2x8xbf16>
  return
}

// -----

/// Weights are [out, in].
func.func @invalid_13(%x: tensor<2x8xf32>, %w: tensor<8xbf16>) {
  // expected-error @+1 {{weight must be rank 2 [out, in], got rank 1}}
  %0 = dsv3.linear %x, %w : (tensor<2x8xf32>, tensor<8xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// A scalar input has no feature dimension.
func.func @invalid_14(%x: tensor<f32>, %w: tensor<4x8xbf16>) {
  // expected-error @+1 {{input must have at least one dimension}}
  %0 = dsv3.linear %x, %w : (tensor<f32>, tensor<4x8xbf16>) -> tensor<4xf32>
  return
}

// -----

/// The contraction dimensions must agree.
func.func @invalid_15(%x: tensor<2x6xf32>, %w: tensor<4x8xbf16>) {
  // expected-error @+1 {{input's last dimension (6) must equal the weight's in-dimension (8)}}
  %0 = dsv3.linear %x, %w : (tensor<2x6xf32>, tensor<4x8xbf16>) -> tensor<2x4xf32>
  return
}

// -----

/// The result's last dimension is out.
func.func @invalid_16(%x: tensor<2x8xf32>, %w: tensor<4x8xbf16>) {
  // expected-error @+1 {{result must be input shape with the last dimension = out = [2, 4], got [2, 8]}}
  %0 = dsv3.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// A scale only makes sense for FP8 weights.
func.func @invalid_17(%x: tensor<2x8xf32>, %w: tensor<4x8xbf16>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{weight: a block scale is only valid with an f8E4M3FN weight, not 'bf16'}}
  %0 = dsv3.linear %x, %w scale %s : (tensor<2x8xf32>, tensor<4x8xbf16>, tensor<1x1xf32>) -> tensor<2x4xf32>
  return
}

// -----

/// FP8 values mean nothing without their block scales.
func.func @invalid_18(%x: tensor<2x8xf32>, %w: tensor<4x8xf8E4M3FN>) {
  // expected-error @+1 {{weight: an f8E4M3FN weight needs its block scale}}
  %0 = dsv3.linear %x, %w : (tensor<2x8xf32>, tensor<4x8xf8E4M3FN>) -> tensor<2x4xf32>
  return
}

// -----

/// One scale per 128x128 block, edge blocks included: 576x7168 -> 5x56.
func.func @invalid_19(%x: tensor<2x7168xf32>, %w: tensor<576x7168xf8E4M3FN>, %s: tensor<4x56xf32>) {
  // expected-error @+1 {{weight scale must be [ceil(rows/128), ceil(cols/128)] = [5, 56], got [4, 56]}}
  %0 = dsv3.linear %x, %w scale %s : (tensor<2x7168xf32>, tensor<576x7168xf8E4M3FN>, tensor<4x56xf32>) -> tensor<2x576xf32>
  return
}

// -----

/// RoPE applies to [b, s, d] or [b, s, h, d].
func.func @invalid_20(%x: tensor<2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{input must be rank 3 [batch, seq, dim] or rank 4 [batch, seq, heads, dim], got rank 2}}
  %0 = dsv3.rope %x, %pos {rope = #dsv3.rope<theta = 10000.0>} : (tensor<2x8xf32>, tensor<1x2xi64>) -> tensor<2x8xf32>
  return
}

// -----

/// Interleaved pairs need an even dimension.
func.func @invalid_21(%x: tensor<1x2x7xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{rotary dimension must be even (interleaved pairs), got 7}}
  %0 = dsv3.rope %x, %pos {rope = #dsv3.rope<theta = 10000.0>} : (tensor<1x2x7xf32>, tensor<1x2xi64>) -> tensor<1x2x7xf32>
  return
}

// -----

/// One position per token.
func.func @invalid_22(%x: tensor<1x2x8xf32>, %pos: tensor<1x3xi64>) {
  // expected-error @+1 {{positions must be [batch, seq] = [1, 2], got [1, 3]}}
  %0 = dsv3.rope %x, %pos {rope = #dsv3.rope<theta = 10000.0>} : (tensor<1x2x8xf32>, tensor<1x3xi64>) -> tensor<1x2x8xf32>
  return
}

// -----

/// RoPE keeps the input's type.
func.func @invalid_23(%x: tensor<1x2x8xf32>, %pos: tensor<1x2xi64>) {
  // expected-error @+1 {{result type 'tensor<1x2x8xbf16>' must equal 'tensor<1x2x8xf32>'}}
  %0 = dsv3.rope %x, %pos {rope = #dsv3.rope<theta = 10000.0>} : (tensor<1x2x8xf32>, tensor<1x2xi64>) -> tensor<1x2x8xbf16>
  return
}

// -----

/// A scalar input has no hidden dimension.
func.func @invalid_24(%x: tensor<f32>, %g: tensor<16x8xbf16>, %u: tensor<16x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{input must have at least one dimension}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<f32>, tensor<16x8xbf16>, tensor<16x8xbf16>, tensor<8x16xbf16>) -> tensor<f32>
  return
}

// -----

/// gate is a matrix.
func.func @invalid_25(%x: tensor<2x8xf32>, %g: tensor<8xbf16>, %u: tensor<16x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{gate must be rank 2 [inter, hidden], got rank 1}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<8xbf16>, tensor<16x8xbf16>, tensor<8x16xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// gate reads the hidden dimension.
func.func @invalid_26(%x: tensor<2x8xf32>, %g: tensor<16x4xbf16>, %u: tensor<16x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{gate must be [inter, hidden] = [16, 8], got [16, 4]}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<16x4xbf16>, tensor<16x8xbf16>, tensor<8x16xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// up has gate's shape.
func.func @invalid_27(%x: tensor<2x8xf32>, %g: tensor<16x8xbf16>, %u: tensor<12x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{up must be [inter, hidden] = [16, 8], got [12, 8]}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<16x8xbf16>, tensor<12x8xbf16>, tensor<8x16xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// down maps inter back to hidden.
func.func @invalid_28(%x: tensor<2x8xf32>, %g: tensor<16x8xbf16>, %u: tensor<16x8xbf16>, %d: tensor<16x8xbf16>) {
  // expected-error @+1 {{down must be [hidden, inter] = [8, 16], got [16, 8]}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<16x8xbf16>, tensor<16x8xbf16>, tensor<16x8xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// Each FP8 weight needs its own scale.
func.func @invalid_29(%x: tensor<2x8xf32>, %g: tensor<16x8xf8E4M3FN>, %u: tensor<16x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{gate: an f8E4M3FN weight needs its block scale}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<16x8xf8E4M3FN>, tensor<16x8xbf16>, tensor<8x16xbf16>) -> tensor<2x8xf32>
  return
}

// -----

/// The MLP keeps the input's type.
func.func @invalid_30(%x: tensor<2x8xf32>, %g: tensor<16x8xbf16>, %u: tensor<16x8xbf16>, %d: tensor<8x16xbf16>) {
  // expected-error @+1 {{result type 'tensor<2x8xbf16>' must equal 'tensor<2x8xf32>'}}
  %0 = dsv3.swiglu_mlp %x, %g, %u, %d : (tensor<2x8xf32>, tensor<16x8xbf16>, tensor<16x8xbf16>, tensor<8x16xbf16>) -> tensor<2x8xbf16>
  return
}

// -----

/// Zero heads is not a model.
func.func @invalid_31(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{attribute 'heads' must be positive, got 0}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 0 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// RoPE rotates pairs.
func.func @invalid_32(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{qk_rope_head_dim must be even (interleaved RoPE pairs), got 7}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 7 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The softmax scale multiplies scores.
func.func @invalid_33(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{softmax_scale must be positive, got -1}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = -1.0 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The latent norms need a positive eps.
func.func @invalid_34(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{eps must be positive, got 0}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 0.0 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// hidden states are [batch, seq, hidden].
func.func @invalid_35(%x: tensor<7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{hidden must be rank 3 [batch, seq, hidden], got rank 2}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// One position per token.
func.func @invalid_36(%x: tensor<1x7x128xf32>, %pos: tensor<1x6xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{positions must be [batch, seq] = [1, 7], got [1, 6]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x6xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_lora_rank without the low-rank weights is contradictory.
func.func @invalid_37(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq: tensor<96x128xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{needs either q_a, q_norm and q_b with q_lora_rank, or q alone without q_lora_rank}}
  %o, %c2 = dsv3.mla %x, %pos, %c q(%wq) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<96x128xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_lora_rank must be positive.
func.func @invalid_38(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{attribute 'q_lora_rank' must be positive, got 0}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 0 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_a maps hidden to q_lora_rank.
func.func @invalid_39(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<32x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_a weight must be [q_lora_rank, hidden] = [64, 128], got [32, 128]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<32x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_norm normalises q_lora_rank values.
func.func @invalid_40(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<32xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_norm weight must be [q_lora_rank] = [64], got [32]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<32xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_b produces nope + rope rows per head.
func.func @invalid_41(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<64x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_b weight must be [heads * (qk_nope_head_dim + qk_rope_head_dim), q_lora_rank] = [96, 64], got [64, 64]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<64x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The plain q projection produces nope + rope rows per head.
func.func @invalid_42(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q weight must be [heads * (qk_nope_head_dim + qk_rope_head_dim), hidden] = [96, 128], got [96, 64]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q(%wq) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// A scale without its weight.
func.func @invalid_43(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq: tensor<96x128xbf16>, %s: tensor<1x1xf32>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_a_scale given without q_a}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a_scale(%s) q(%wq) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<1x1xf32>, tensor<96x128xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// A scale without its weight.
func.func @invalid_44(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq: tensor<96x128xbf16>, %s: tensor<1x1xf32>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_b_scale given without q_b}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_b_scale(%s) q(%wq) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<1x1xf32>, tensor<96x128xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// A scale without its weight.
func.func @invalid_45(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %s: tensor<1x1xf32>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_scale given without q}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) q_scale(%s) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<1x1xf32>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// kv_a yields the latent plus the shared rope key.
func.func @invalid_46(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<32x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{kv_a weight must be [kv_lora_rank + qk_rope_head_dim, hidden] = [40, 128], got [32, 128]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<32x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// kv_norm normalises the latent.
func.func @invalid_47(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<40xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{kv_norm weight must be [kv_lora_rank] = [32], got [40]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<40xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// kv_b yields nope + v rows per head.
func.func @invalid_48(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<96x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{kv_b weight must be [heads * (qk_nope_head_dim + v_head_dim), kv_lora_rank] = [128, 32], got [96, 32]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<96x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// o maps the heads' values back to hidden.
func.func @invalid_49(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x96xbf16>) {
  // expected-error @+1 {{o weight must be [hidden, heads * v_head_dim] = [128, 64], got [128, 96]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x96xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The cache is [batch, max_seq_len, width].
func.func @invalid_50(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{cache must be rank 3 [batch, max_seq_len, width], got rank 2}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<64x40xf32>)
  return
}

// -----

/// One cache row per sequence.
func.func @invalid_51(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<2x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{cache batch (2) must equal the hidden batch (1)}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<2x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<2x64x40xf32>)
  return
}

// -----

/// The cache holds either the latent or the expanded K and V.
func.func @invalid_52(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x48xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{cache width must be kv_lora_rank + qk_rope_head_dim = 40 (latent) or heads * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim) = 160 (expanded), got 48}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x48xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x48xf32>)
  return
}

// -----

/// Attention keeps the hidden type.
func.func @invalid_53(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{result type 'tensor<1x7x128xbf16>' must equal 'tensor<1x7x128xf32>'}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xbf16>, tensor<1x64x40xf32>)
  return
}

// -----

/// The updated cache has the cache's type.
func.func @invalid_54(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{updated cache type 'tensor<1x32x40xf32>' must equal 'tensor<1x64x40xf32>'}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x32x40xf32>)
  return
}

// -----

/// FP8 projections need their scales.
func.func @invalid_55(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xf8E4M3FN>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{kv_b: an f8E4M3FN weight needs its block scale}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xf8E4M3FN>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// At least one expert.
func.func @invalid_56(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{attribute 'experts' must be positive, got 0}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 0 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Cannot pick more experts than exist.
func.func @invalid_57(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{top_k (9) must not exceed experts (8)}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 9 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Cannot keep more groups than exist.
func.func @invalid_58(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{topk_group (5) must not exceed n_group (4)}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 5 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Groups split the experts evenly.
func.func @invalid_59(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{n_group (3) must divide experts (8)}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 3 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// The kept groups must hold top_k experts: 1 group of 2 experts cannot give 3.
func.func @invalid_60(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{top_k (3) must not exceed topk_group * (experts / n_group) = 2}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 3 : i64, n_group = 4 : i64, topk_group = 1 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// The routed scaling factor multiplies the weights.
func.func @invalid_61(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{routed_scaling_factor must be positive, got 0}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 0.0 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// A scalar input has no hidden dimension.
func.func @invalid_62(%x: tensor<f32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{input must have at least one dimension}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<f32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<f32>
  return
}

// -----

/// The router scores every expert.
func.func @invalid_63(%x: tensor<7x128xf32>, %r: tensor<6x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{router weight must be [experts, hidden] = [8, 128], got [6, 128]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<6x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// One selection bias per expert.
func.func @invalid_64(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<6xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{selection bias must be [experts] = [8], got [6]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<6xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Expert weights are stacked along a leading expert dimension.
func.func @invalid_65(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert gate must be rank 3 [experts, inter, hidden], got rank 2}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Each expert's gate reads the hidden dimension.
func.func @invalid_66(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x64xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert gate must be [experts, inter, hidden] = [8, 32, 128], got [8, 32, 64]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x64xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// up matches gate.
func.func @invalid_67(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x16x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert up must be [experts, inter, hidden] = [8, 32, 128], got [8, 16, 128]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x16x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// down maps inter back to hidden.
func.func @invalid_68(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x32x128xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert down must be [experts, hidden, inter] = [8, 128, 32], got [8, 32, 128]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// FP8 experts need stacked block scales.
func.func @invalid_69(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xf8E4M3FN>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert gate: an f8E4M3FN weight needs its block scale}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xf8E4M3FN>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// The shared MLP's down reads its own width.
func.func @invalid_70(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x64xbf16>) {
  // expected-error @+1 {{shared down must be [hidden, shared_inter] = [128, 32], got [128, 64]}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x64xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// The shared gate is a matrix.
func.func @invalid_71(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{shared gate must be rank 2 [shared_inter, hidden], got rank 1}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// The MoE keeps the input's type.
func.func @invalid_72(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) {
  // expected-error @+1 {{result type 'tensor<7x128xbf16>' must equal 'tensor<7x128xf32>'}}
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xbf16>
  return
}

// -----

/// Shared experts come as a gate/up/down triple.
func.func @invalid_73(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %sg: tensor<32x128xbf16>) {
  // expected-error @+1 {{shared experts need all of gate, up and down, or none}}
  %0 = "dsv3.moe"(%x, %r, %g, %u, %d, %sg) <{experts = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64,
      scoring = #dsv3.scoring<softmax>, norm_topk_prob = false, routed_scaling_factor = 1.0 : f64,
      operandSegmentSizes = array<i32: 1, 1, 0, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0>}>
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<32x128xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// Shared scales without shared experts.
func.func @invalid_74(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{shared expert scales given without shared experts}}
  %0 = "dsv3.moe"(%x, %r, %g, %u, %d, %s) <{experts = 8 : i64, top_k = 2 : i64, n_group = 1 : i64, topk_group = 1 : i64,
      scoring = #dsv3.scoring<softmax>, norm_topk_prob = false, routed_scaling_factor = 1.0 : f64,
      operandSegmentSizes = array<i32: 1, 1, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0>}>
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>, tensor<1x1xf32>) -> tensor<7x128xf32>
  return
}

// -----

/// moe_route takes flattened tokens [N, D].
func.func @invalid_75(%x: tensor<1x7x128xf32>, %r: tensor<8x128xbf16>) {
  // expected-error @+1 {{input must be rank 2 [tokens, hidden], got rank 3}}
  %i, %w = dsv3.moe_route %x router(%r) {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} : (tensor<1x7x128xf32>, tensor<8x128xbf16>) -> (tensor<7x2xi64>, tensor<7x2xf32>)
  return
}

// -----

/// moe_route: one expert id per token and slot.
func.func @invalid_76(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>) {
  // expected-error @+1 {{indices must be [tokens, top_k] = [7, 2], got [7, 3]}}
  %i, %w = dsv3.moe_route %x router(%r) {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} : (tensor<7x128xf32>, tensor<8x128xbf16>) -> (tensor<7x3xi64>, tensor<7x2xf32>)
  return
}

// -----

/// moe_route: one weight per token and slot.
func.func @invalid_77(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>) {
  // expected-error @+1 {{weights must be [tokens, top_k] = [7, 2], got [6, 2]}}
  %i, %w = dsv3.moe_route %x router(%r) {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>, norm_topk_prob = true, routed_scaling_factor = 2.5 : f64} : (tensor<7x128xf32>, tensor<8x128xbf16>) -> (tensor<7x2xi64>, tensor<6x2xf32>)
  return
}

// -----

/// moe_dispatch needs experts.
func.func @invalid_78(%i: tensor<7x2xi64>) {
  // expected-error @+1 {{attribute 'experts' must be positive, got 0}}
  %o, %f = dsv3.moe_dispatch %i {experts = 0 : i64} : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<1xi64>)
  return
}

// -----

/// moe_dispatch sorts [tokens, top_k] ids.
func.func @invalid_79(%i: tensor<14xi64>) {
  // expected-error @+1 {{indices must be rank 2 [tokens, top_k], got rank 1}}
  %o, %f = dsv3.moe_dispatch %i {experts = 8 : i64} : (tensor<14xi64>) -> (tensor<14xi64>, tensor<9xi64>)
  return
}

// -----

/// moe_dispatch: one order entry per pair.
func.func @invalid_80(%i: tensor<7x2xi64>) {
  // expected-error @+1 {{order must be [tokens * top_k] = [14], got [7]}}
  %o, %f = dsv3.moe_dispatch %i {experts = 8 : i64} : (tensor<7x2xi64>) -> (tensor<7xi64>, tensor<9xi64>)
  return
}

// -----

/// moe_dispatch: experts + 1 offsets.
func.func @invalid_81(%i: tensor<7x2xi64>) {
  // expected-error @+1 {{offsets must be [experts + 1] = [9], got [8]}}
  %o, %f = dsv3.moe_dispatch %i {experts = 8 : i64} : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<8xi64>)
  return
}

// -----

/// moe_gate_up: offsets per expert of the stacked gate.
func.func @invalid_82(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<5xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>) {
  // expected-error @+1 {{offsets must be [experts + 1] = [9], got [5]}}
  %a = dsv3.moe_gate_up %x, %o, %f experts(%g, %u) {top_k = 2 : i64} : (tensor<7x128xf32>, tensor<14xi64>, tensor<5xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>) -> tensor<21x32xf32>
  return
}

// -----

/// moe_gate_up: up matches gate.
func.func @invalid_83(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x16x128xbf16>) {
  // expected-error @+1 {{expert up must be [experts, inter, hidden] = [8, 32, 128], got [8, 16, 128]}}
  %a = dsv3.moe_gate_up %x, %o, %f experts(%g, %u) {top_k = 2 : i64} : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x16x128xbf16>) -> tensor<21x32xf32>
  return
}

// -----

/// moe_gate_up: shared experts come as gate and up.
func.func @invalid_84(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %sg: tensor<32x128xbf16>) {
  // expected-error @+1 {{shared experts need both gate and up, or neither}}
  %a = "dsv3.moe_gate_up"(%x, %o, %f, %g, %u, %sg) <{top_k = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 1, 0, 0, 0>}> : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<32x128xbf16>) -> tensor<21x32xf32>
  return
}

// -----

/// moe_gate_up: shared experts fold in as slots of the expert width.
func.func @invalid_85(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %sg: tensor<48x128xbf16>, %su: tensor<48x128xbf16>) {
  // expected-error @+1 {{shared expert width (48) must be a multiple of the expert width (32)}}
  %a = dsv3.moe_gate_up %x, %o, %f experts(%g, %u) shared(%sg, %su) {top_k = 2 : i64} : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<48x128xbf16>, tensor<48x128xbf16>) -> tensor<21x32xf32>
  return
}

// -----

/// moe_gate_up: one column per expert row.
func.func @invalid_86(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>) {
  // expected-error @+1 {{result must be [tokens * top_k + tokens * shared_slots, inter] = [?, 32], got [21, 16]}}
  %a = dsv3.moe_gate_up %x, %o, %f experts(%g, %u) {top_k = 2 : i64} : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>) -> tensor<21x16xf32>
  return
}

// -----

/// moe_gate_up: pairs need slots.
func.func @invalid_87(%x: tensor<7x128xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>) {
  // expected-error @+1 {{attribute 'top_k' must be positive, got 0}}
  %a = dsv3.moe_gate_up %x, %o, %f experts(%g, %u) {top_k = 0 : i64} : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>) -> tensor<21x32xf32>
  return
}

// -----

/// moe_down_combine: activations are expert rows of width inter.
func.func @invalid_88(%a: tensor<21x16xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x2xf32>, %d: tensor<8x128x32xbf16>) {
  // expected-error @+1 {{activations must be [rows, inter] = [?, 32], got [21, 16]}}
  %y = dsv3.moe_down_combine %a, %o, %f, %w experts(%d) {top_k = 2 : i64} : (tensor<21x16xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<8x128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// moe_down_combine: one routing weight per slot.
func.func @invalid_89(%a: tensor<21x32xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x3xf32>, %d: tensor<8x128x32xbf16>) {
  // expected-error @+1 {{weights must be [tokens, top_k] = [7, 2], got [7, 3]}}
  %y = dsv3.moe_down_combine %a, %o, %f, %w experts(%d) {top_k = 2 : i64} : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x3xf32>, tensor<8x128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// moe_down_combine: the stacked down projection is rank 3.
func.func @invalid_90(%a: tensor<21x32xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x2xf32>, %d: tensor<128x32xbf16>) {
  // expected-error @+1 {{expert down must be rank 3 [experts, hidden, inter], got rank 2}}
  %y = dsv3.moe_down_combine %a, %o, %f, %w experts(%d) {top_k = 2 : i64} : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// moe_down_combine: shared down is [hidden, shared_inter].
func.func @invalid_91(%a: tensor<21x32xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x2xf32>, %d: tensor<8x128x32xbf16>, %sd: tensor<64x32xbf16>) {
  // expected-error @+1 {{shared down must be [hidden, shared_inter] = [128, 32], got [64, 32]}}
  %y = dsv3.moe_down_combine %a, %o, %f, %w experts(%d) shared(%sd) {top_k = 2 : i64} : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<8x128x32xbf16>, tensor<64x32xbf16>) -> tensor<7x128xf32>
  return
}

// -----

/// moe_down_combine: the result is one row per token.
func.func @invalid_92(%a: tensor<21x32xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x2xf32>, %d: tensor<8x128x32xbf16>) {
  // expected-error @+1 {{result must be [tokens, hidden] = [7, 128], got [14, 128]}}
  %y = dsv3.moe_down_combine %a, %o, %f, %w experts(%d) {top_k = 2 : i64} : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<8x128x32xbf16>) -> tensor<14x128xf32>
  return
}

// -----

/// moe_down_combine: scales only with shared experts.
func.func @invalid_93(%a: tensor<21x32xf32>, %o: tensor<14xi64>, %f: tensor<9xi64>, %w: tensor<7x2xf32>, %d: tensor<8x128x32xbf16>, %s: tensor<1x1xf32>) {
  // expected-error @+1 {{shared expert scales given without shared experts}}
  %y = "dsv3.moe_down_combine"(%a, %o, %f, %w, %d, %s) <{top_k = 2 : i64, operandSegmentSizes = array<i32: 1, 1, 1, 1, 1, 0, 0, 1>}> : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>, tensor<8x128x32xbf16>, tensor<1x1xf32>) -> tensor<7x128xf32>
  return
}

// -----

/// q_kv_a replaces both down projections.
func.func @invalid_94(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %qkv: tensor<104x128xbf16>, %kva: tensor<40x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_kv_a replaces q_a and kv_a; give it alone}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_norm(%qn) q_b(%qb) q_kv_a(%qkv) kv_a(%kva) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<104x128xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The latent needs a down projection.
func.func @invalid_95(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %qa: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{needs kv_a (or q_kv_a, the fused q_a and kv_a)}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%qa) q_norm(%qn) q_b(%qb) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// q_kv_a holds q_lora + kv_lora + rope rows.
func.func @invalid_96(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %qkv: tensor<96x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{q_kv_a weight must be [q_lora_rank + kv_lora_rank + qk_rope_head_dim, hidden] = [104, 128], got [96, 128]}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_norm(%qn) q_b(%qb) q_kv_a(%qkv) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<96x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// FP8 scale blocks must not straddle q_a and kv_a.
func.func @invalid_97(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %qkv: tensor<104x128xf8E4M3FN>, %s: tensor<1x1xf32>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{an FP8 q_kv_a needs q_lora_rank to be a multiple of 128 (its scale blocks would straddle q_a and kv_a), got 64}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_norm(%qn) q_b(%qb) q_kv_a(%qkv) q_kv_a_scale(%s) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<104x128xf8E4M3FN>, tensor<1x1xf32>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// The naive-prefill threshold counts query tokens.
func.func @invalid_98(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>, %qa: tensor<64x128xbf16>, %kva: tensor<40x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{attribute 'expand_from' must be positive, got 0}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%qa) q_norm(%qn) q_b(%qb) kv_a(%kva) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>, expand_from = 0 : i64}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return
}

// -----

/// Expanding from the latent needs a latent cache.
func.func @invalid_99(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x160xf32>, %qa: tensor<64x128xbf16>, %kva: tensor<40x128xbf16>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{expand_from applies to the latent cache layout only}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%qa) q_norm(%qn) q_b(%qb) kv_a(%kva) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>, expand_from = 64 : i64}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x160xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x160xf32>)
  return
}

// -----

/// An i8 cache is a packed FP8 layout: 32 codes + one f32 scale + 8 bf16
/// rope values = 52 bytes per token here (latent), or 160 codes + one scale
/// (expanded).
func.func @invalid_packed_fp8_width(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xi8>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{an i8 cache holds a packed FP8 layout: width must be kv_lora_rank + 4 * 1 scale bytes + 2 * qk_rope_head_dim = 52 bytes (latent) or the expanded width + 4 * 1 scale bytes = 164 bytes (expanded), got 40}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xi8>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xi8>)
  return
}

// -----

/// The kernels read the packed rows 16 codes at a time.
func.func @invalid_packed_fp8_rank(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x44xi8>, %wq_a: tensor<64x128xbf16>, %qn: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>, %wkv_a: tensor<32x128xbf16>, %kvn: tensor<24xbf16>, %wkv_b: tensor<128x24xbf16>, %wo: tensor<128x64xbf16>) {
  // expected-error @+1 {{a packed FP8 latent cache needs kv_lora_rank to be a multiple of 16, got 24}}
  %o, %c2 = dsv3.mla %x, %pos, %c q_a(%wq_a) q_norm(%qn) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kvn) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 24 : i64, qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64, rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x44xi8>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>, tensor<32x128xbf16>, tensor<24xbf16>, tensor<128x24xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x44xi8>)
  return
}
