// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg | FileCheck %s
// RUN: dsv3-opt %s -split-input-file --dsv3-cpu-pipeline > /dev/null

/// A bf16 latent cache (dsv3-compile --kv-cache-dtype=bf16): the call's
/// entries are rounded once (truncf) and scattered as bf16 rows; attention
/// reads the bf16 prefix with the same row-dot and axpy kernels, which widen
/// each chunk in registers (arith.extf of a vector<16xbf16>): no f32 copy of
/// the cache is made.
// CHECK-LABEL: func.func @mla_latent_bf16_cache
// CHECK-NOT: dsv3.
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x40xbf16> into tensor<1x64x40xbf16>
// CHECK: %[[PREFIX:.*]] = tensor.extract_slice {{.*}} : tensor<1x64x40xbf16> to tensor<1x?x40xbf16>
// CHECK-NOT: tensor<1x?x40xf32>
// CHECK: vector.transfer_read %[[PREFIX]]{{.*}} : tensor<1x?x40xbf16>, vector<16xbf16>
// CHECK-NEXT: arith.extf %{{.*}} : vector<16xbf16> to vector<16xf32>
// CHECK: math.exp
// CHECK: vector.transfer_read {{.*}} : tensor<1x?x32xbf16>, vector<16xbf16>
// CHECK: return {{.*}} : tensor<1x7x128xf32>, tensor<1x64x40xbf16>
func.func @mla_latent_bf16_cache(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x40xbf16>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x40xbf16>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xbf16>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xbf16>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x40xbf16>
}

// -----

/// The per-head cache of the naive form (fusion=none) in bf16: rounded when
/// written; its attention (the reference form, not the fast path) works on a
/// widened f32 copy of the prefix.
// CHECK-LABEL: func.func @mla_expanded_bf16_cache
// CHECK: arith.truncf %{{.*}} : f32 to bf16
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x160xbf16> into tensor<1x64x160xbf16>
// CHECK: tensor.extract_slice {{.*}} : tensor<1x64x160xbf16> to tensor<1x?x160xbf16>
// CHECK: arith.extf %{{.*}} : bf16 to f32
// CHECK: return {{.*}} : tensor<1x7x128xf32>, tensor<1x64x160xbf16>
func.func @mla_expanded_bf16_cache(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x160xbf16>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x160xbf16>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x160xbf16>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x160xbf16>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x160xbf16>
}
