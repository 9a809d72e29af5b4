// RUN: dsv3-opt %s -split-input-file --dsv3-fuse-latent-projection | FileCheck %s

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
