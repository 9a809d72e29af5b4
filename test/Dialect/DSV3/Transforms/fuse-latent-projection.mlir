// RUN: dsv3-opt %s -split-input-file --dsv3-fuse-latent-projection | FileCheck %s
// RUN: dsv3-opt %s -split-input-file --dsv3-fuse-latent-projection=expand-from=256 | FileCheck %s --check-prefix=EXPAND
// RUN: not dsv3-opt %s -split-input-file --dsv3-fuse-latent-projection=expand-from=-1 2>&1 | FileCheck %s --check-prefix=NEGATIVE

/// expand-from sets the naive-prefill threshold on every dsv3.mla.
// EXPAND: dsv3.mla
// EXPAND-SAME: expand_from = 256 : i64
// NEGATIVE: expand-from must be >= 0, got -1

/// The stacked per-head K/V cache (4 heads * (16 + 8 + 16) = 160 per token)
/// becomes the latent cache (32 + 8 = 40) everywhere it flows: the entry's
/// argument and result, the call, the layer loop, its slices and dsv3.mla.
// CHECK-LABEL: func.func private @layers
// CHECK-SAME: %[[CACHE:[a-z0-9]+]]: tensor<2x1x64x40xf32>
// CHECK-SAME: -> tensor<2x1x64x40xf32>
// CHECK: scf.for {{.*}} iter_args(%[[C:[a-z0-9]+]] = %[[CACHE]]) -> (tensor<2x1x64x40xf32>)
// CHECK: %[[LAYER:[a-z0-9_]+]] = tensor.extract_slice %[[C]][%{{.*}}, 0, 0, 0] [1, 1, 64, 40] [1, 1, 1, 1] : tensor<2x1x64x40xf32> to tensor<1x64x40xf32>
// CHECK: dsv3.mla %{{.*}}, %{{.*}}, %[[LAYER]]
// CHECK-SAME: -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
// CHECK: tensor.insert_slice %{{.*}} into %[[C]][%{{.*}}, 0, 0, 0] [1, 1, 64, 40] [1, 1, 1, 1] : tensor<1x64x40xf32> into tensor<2x1x64x40xf32>
// CHECK-LABEL: func.func @entry
// CHECK-SAME: tensor<2x1x64x40xf32>
// CHECK: call @layers({{.*}}) : ({{.*}}tensor<2x1x64x40xf32>{{.*}}) -> tensor<2x1x64x40xf32>
func.func private @layers(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<2x1x64x160xf32>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> tensor<2x1x64x160xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %r = scf.for %l = %c0 to %c2 step %c1 iter_args(%c = %cache) -> (tensor<2x1x64x160xf32>) {
    %layer = tensor.extract_slice %c[%l, 0, 0, 0] [1, 1, 64, 160] [1, 1, 1, 1] : tensor<2x1x64x160xf32> to tensor<1x64x160xf32>
    %out, %updated = dsv3.mla %x, %pos, %layer q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
        {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
         qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
         rope = #dsv3.rope<theta = 10000.0>}
        : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x160xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
           tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x160xf32>)
    %next = tensor.insert_slice %updated into %c[%l, 0, 0, 0] [1, 1, 64, 160] [1, 1, 1, 1] : tensor<1x64x160xf32> into tensor<2x1x64x160xf32>
    scf.yield %next : tensor<2x1x64x160xf32>
  }
  return %r : tensor<2x1x64x160xf32>
}
func.func @entry(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<2x1x64x160xf32>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> tensor<2x1x64x160xf32> {
  %0 = call @layers(%x, %pos, %cache, %wq_a, %q_norm, %wq_b, %wkv_a, %kv_norm, %wkv_b, %wo)
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<2x1x64x160xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> tensor<2x1x64x160xf32>
  return %0 : tensor<2x1x64x160xf32>
}

// -----

/// A module already on the latent cache is left as it is.
// CHECK-LABEL: func.func @negative_already_latent
// CHECK: dsv3.mla
// CHECK-SAME: -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
func.func @negative_already_latent(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x40xf32>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x40xf32>
}

// -----

/// q_a and kv_a sliced per layer from stacked arguments: the stacks are
/// concatenated once at function entry (marked for the prepare entry), and
/// each layer slices the fused stack: one down-projection GEMM per layer.
// CHECK-LABEL: func.func @stacked_down_projections
// CHECK-SAME: (%{{.*}}: tensor<1x7x128xf32>, %{{.*}}: tensor<1x7xi64>, %{{.*}}: tensor<2x1x64x40xf32>, %[[QA:[a-z0-9]+]]: tensor<2x64x128xbf16>, %{{.*}}: tensor<2x64xbf16>, %{{.*}}: tensor<2x96x64xbf16>, %[[KVA:[a-z0-9]+]]: tensor<2x40x128xbf16>
// CHECK-NEXT: %[[CAT:.*]] = tensor.concat dim(1) %[[QA]], %[[KVA]] {dsv3.prepared_weight = "attn.wq_kv_a"} : (tensor<2x64x128xbf16>, tensor<2x40x128xbf16>) -> tensor<2x104x128xbf16>
// CHECK: scf.for %[[L:[a-z0-9]+]] =
// CHECK: %[[LAYER:.*]] = tensor.extract_slice %[[CAT]][%[[L]], 0, 0] [1, 104, 128] [1, 1, 1] : tensor<2x104x128xbf16> to tensor<104x128xbf16>
// CHECK: dsv3.mla {{.*}} q_kv_a(%[[LAYER]])
// CHECK-NOT: q_a(
// CHECK-NOT: kv_a(
func.func @stacked_down_projections(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<2x1x64x40xf32>,
    %wq_a: tensor<2x64x128xbf16>, %q_norm: tensor<2x64xbf16>, %wq_b: tensor<2x96x64xbf16>,
    %wkv_a: tensor<2x40x128xbf16>, %kv_norm: tensor<2x32xbf16>, %wkv_b: tensor<2x128x32xbf16>, %wo: tensor<2x128x64xbf16>)
    -> tensor<1x7x128xf32> {
  %c0 = arith.constant 0 : index
  %c1 = arith.constant 1 : index
  %c2 = arith.constant 2 : index
  %r:2 = scf.for %l = %c0 to %c2 step %c1 iter_args(%h = %x, %c = %cache) -> (tensor<1x7x128xf32>, tensor<2x1x64x40xf32>) {
    %layer = tensor.extract_slice %c[%l, 0, 0, 0] [1, 1, 64, 40] [1, 1, 1, 1] : tensor<2x1x64x40xf32> to tensor<1x64x40xf32>
    %qa = tensor.extract_slice %wq_a[%l, 0, 0] [1, 64, 128] [1, 1, 1] : tensor<2x64x128xbf16> to tensor<64x128xbf16>
    %qn = tensor.extract_slice %q_norm[%l, 0] [1, 64] [1, 1] : tensor<2x64xbf16> to tensor<64xbf16>
    %qb = tensor.extract_slice %wq_b[%l, 0, 0] [1, 96, 64] [1, 1, 1] : tensor<2x96x64xbf16> to tensor<96x64xbf16>
    %kva = tensor.extract_slice %wkv_a[%l, 0, 0] [1, 40, 128] [1, 1, 1] : tensor<2x40x128xbf16> to tensor<40x128xbf16>
    %kvn = tensor.extract_slice %kv_norm[%l, 0] [1, 32] [1, 1] : tensor<2x32xbf16> to tensor<32xbf16>
    %kvb = tensor.extract_slice %wkv_b[%l, 0, 0] [1, 128, 32] [1, 1, 1] : tensor<2x128x32xbf16> to tensor<128x32xbf16>
    %o = tensor.extract_slice %wo[%l, 0, 0] [1, 128, 64] [1, 1, 1] : tensor<2x128x64xbf16> to tensor<128x64xbf16>
    %out, %updated = dsv3.mla %h, %pos, %layer q_a(%qa) q_norm(%qn) q_b(%qb) kv_a(%kva) kv_norm(%kvn) kv_b(%kvb) o(%o)
        {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
         qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
         rope = #dsv3.rope<theta = 10000.0>}
        : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
           tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
    %next = tensor.insert_slice %updated into %c[%l, 0, 0, 0] [1, 1, 64, 40] [1, 1, 1, 1] : tensor<1x64x40xf32> into tensor<2x1x64x40xf32>
    scf.yield %out, %next : tensor<1x7x128xf32>, tensor<2x1x64x40xf32>
  }
  return %r#0 : tensor<1x7x128xf32>
}

// -----

/// Negative (down projections): FP8 q_a with q_lora_rank 64, not a multiple
/// of the 128-row scale blocks, keeps q_a and kv_a apart (the cache is
/// already latent, so nothing else changes either).
// CHECK-LABEL: func.func @negative_fp8_q_lora_64
// CHECK-NOT: tensor.concat
// CHECK: dsv3.mla {{.*}} q_a(%{{.*}}) q_a_scale(%{{.*}}) q_norm
// CHECK-SAME: kv_a(%{{.*}}) kv_a_scale(
func.func @negative_fp8_q_lora_64(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>,
    %qa: tensor<64x128xf8E4M3FN>, %qas: tensor<1x1xf32>, %qn: tensor<64xbf16>, %qb: tensor<96x64xbf16>,
    %kva: tensor<40x128xf8E4M3FN>, %kvas: tensor<1x1xf32>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>,
    %wo: tensor<128x64xbf16>) -> tensor<1x7x128xf32> {
  %out, %updated = dsv3.mla %x, %pos, %c q_a(%qa) q_a_scale(%qas) q_norm(%qn) q_b(%qb) kv_a(%kva) kv_a_scale(%kvas) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<64x128xf8E4M3FN>, tensor<1x1xf32>, tensor<64xbf16>,
         tensor<96x64xbf16>, tensor<40x128xf8E4M3FN>, tensor<1x1xf32>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>)
      -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return %out : tensor<1x7x128xf32>
}

// -----

/// Negative (down projections): a query without q_lora_rank has no q_a.
// CHECK-LABEL: func.func @negative_plain_query
// CHECK-NOT: tensor.concat
// CHECK: dsv3.mla {{.*}} q(%{{.*}}) kv_a(
func.func @negative_plain_query(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %c: tensor<1x64x40xf32>,
    %wq: tensor<96x128xbf16>, %kva: tensor<40x128xbf16>, %kvn: tensor<32xbf16>, %kvb: tensor<128x32xbf16>,
    %wo: tensor<128x64xbf16>) -> tensor<1x7x128xf32> {
  %out, %updated = dsv3.mla %x, %pos, %c q(%wq) kv_a(%kva) kv_norm(%kvn) kv_b(%kvb) o(%wo)
      {heads = 4 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>, tensor<96x128xbf16>, tensor<40x128xbf16>,
         tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
  return %out : tensor<1x7x128xf32>
}
