// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg | FileCheck %s
// RUN: dsv3-opt %s -split-input-file --dsv3-cpu-pipeline > /dev/null
// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg=tensor-cores=true | FileCheck %s --check-prefix=TC

/// The packed FP8 latent cache (dsv3-compile --kv-cache-dtype=fp8): an i8
/// cache of 32 e4m3 codes, one f32 scale (kv_lora_rank 32 is one tile) and 8
/// bf16 rope values per token = 52 bytes. The call's entries are quantized
/// into packed rows (a power-of-two scale per tile from the amax, codes by
/// integer rounding) and scattered as i8 rows; attention reads the i8 prefix
/// directly: 16 codes decoded (their bits moved into f16s, widened: value /
/// 256) and multiplied by 256 times their tile's scale (read as 4 bytes
/// bitcast to f32), the rope key as 32 bytes bitcast to bf16, in a loop of
/// its own. No widened copy of the cache is made.
// CHECK-LABEL: func.func @mla_latent_fp8_cache
// CHECK-NOT: dsv3.
// CHECK: math.absf
// CHECK-NEXT: arith.maximumf
// CHECK: arith.trunci %{{.*}} : i32 to i8
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x52xi8> into tensor<1x64x52xi8>
// CHECK: %[[PREFIX:.*]] = tensor.extract_slice {{.*}} : tensor<1x64x52xi8> to tensor<1x?x52xi8>
// CHECK-NOT: tensor<1x?x40xf32>
// CHECK: vector.transfer_read %[[PREFIX]]{{.*}} : tensor<1x?x52xi8>, vector<16xi8>
// CHECK: vector.transfer_read %[[PREFIX]]{{.*}} : tensor<1x?x52xi8>, vector<4xi8>
// CHECK: vector.bitcast %{{.*}} : vector<4xi8> to vector<1xf32>
// CHECK: arith.bitcast %{{.*}} : vector<16xi16> to vector<16xf16>
// CHECK-NEXT: arith.extf %{{.*}} : vector<16xf16> to vector<16xf32>
// CHECK: vector.transfer_read %[[PREFIX]]{{.*}} : tensor<1x?x52xi8>, vector<32xi8>
// CHECK: vector.bitcast %{{.*}} : vector<32xi8> to vector<16xbf16>
// CHECK: math.exp
// CHECK: vector.transfer_read %[[PREFIX]]{{.*}} : tensor<1x?x52xi8>, vector<16xi8>
// CHECK: return {{.*}} : tensor<1x7x128xf32>, tensor<1x64x52xi8>

/// With tensor cores the attention tiles take bf16 operands: the packed
/// prefix is unpacked (exactly) into a bf16 copy that feeds them.
// TC-LABEL: func.func @mla_latent_fp8_cache
// TC: %[[BYTES:.*]] = tensor.extract_slice {{.*}} : tensor<1x64x52xi8> to tensor<1x?x52xi8>
// TC: %[[WIDE:.*]] = linalg.generic {{.*}} outs(%{{.*}} : tensor<1x?x40xf32>)
// TC: tensor.extract %[[BYTES]]
// TC: %[[TILES:.*]] = linalg.generic {{.*}} ins(%[[WIDE]] : tensor<1x?x40xf32>) outs(%{{.*}} : tensor<1x?x40xbf16>)
// TC: vector.transfer_read %[[TILES]]{{.*}} : tensor<1x?x40xbf16>, vector<8x16xbf16>
func.func @mla_latent_fp8_cache(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x52xi8>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x52xi8>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x52xi8>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x52xi8>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x52xi8>
}

// -----

/// The per-head cache of the naive form (fusion=none) packed the same way
/// without a bf16 part: 4 heads * (16 + 8 + 16) = 160 codes (one tile: 160 is
/// not a multiple of 128) and one f32 scale = 164 bytes. Its attention works
/// on an unpacked f32 copy of the prefix.
// CHECK-LABEL: func.func @mla_expanded_fp8_cache
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x164xi8> into tensor<1x64x164xi8>
// CHECK: tensor.extract_slice {{.*}} : tensor<1x64x164xi8> to tensor<1x?x164xi8>
// CHECK: linalg.generic
// CHECK-SAME: outs(%{{.*}} : tensor<1x?x160xf32>)
// CHECK: return {{.*}} : tensor<1x7x128xf32>, tensor<1x64x164xi8>
// TC-LABEL: func.func @mla_expanded_fp8_cache
// TC: tensor.insert_slice {{.*}} : tensor<1x1x164xi8> into tensor<1x64x164xi8>
func.func @mla_expanded_fp8_cache(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x164xi8>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x164xi8>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x164xi8>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x164xi8>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x164xi8>
}
