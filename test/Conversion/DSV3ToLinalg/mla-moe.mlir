// RUN: dsv3-opt %s -split-input-file --convert-dsv3-to-linalg | FileCheck %s

/// Latent cache (width 32 + 8): the call's entries are scattered into the
/// cache at their positions (guarded against positions past the cache), and
/// attention reads only the prefix up to the largest position. W_UK and W_UV
/// are read straight from the bf16 kv_b viewed as [heads, nope + v, latent]:
/// q_lat is an axpy over W_UK rows, scores are row dots against the cache,
/// the output an axpy over cache rows, then row dots against W_UV.
// CHECK-LABEL: func.func @mla_latent
// CHECK-NOT: dsv3.
// CHECK: arith.maxsi
// CHECK: scf.for
// CHECK: scf.for
// CHECK: arith.cmpi ult
// CHECK: scf.if
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x40xf32> into tensor<1x64x40xf32>
// CHECK: tensor.extract_slice {{.*}} : tensor<1x64x40xf32> to tensor<1x?x40xf32>
// CHECK: %[[KVB:.*]] = tensor.expand_shape %arg8 {{.*}} : tensor<128x32xbf16> into tensor<4x32x32xbf16>
// CHECK: %[[WUK:.*]] = tensor.extract_slice %[[KVB]][0, 0, 0] [4, 16, 32] [1, 1, 1]
// CHECK: %[[WUV:.*]] = tensor.extract_slice %[[KVB]][0, 16, 0] [4, 16, 32] [1, 1, 1]
// CHECK: linalg.transpose
// CHECK: scf.forall ({{.*}}) in (4, %{{.*}})
// CHECK: vector.transfer_read %[[WUK]]
// CHECK: math.exp
// CHECK: vector.transfer_read %[[WUV]]
// CHECK: return
func.func @mla_latent(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x40xf32>,
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

/// Expanded cache (width 4 * (16 + 8 + 16) = 160): per-head K and V rows are
/// written; attention reads K and V back per head.
// CHECK-LABEL: func.func @mla_expanded
// CHECK-NOT: dsv3.
// CHECK: tensor.collapse_shape {{.*}} into tensor<1x7x160xf32>
// CHECK: tensor.insert_slice {{.*}} : tensor<1x1x160xf32> into tensor<1x64x160xf32>
// CHECK: tensor.expand_shape {{.*}} into tensor<1x?x4x40xf32>
// CHECK: linalg.transpose ins(%{{.*}} : tensor<1x?x4x40xf32>) {{.*}} permutation = [0, 2, 1, 3]
func.func @mla_expanded(%x: tensor<1x7x128xf32>, %pos: tensor<1x7xi64>, %cache: tensor<1x64x160xf32>,
    %wq_a: tensor<64x128xbf16>, %q_norm: tensor<64xbf16>, %wq_b: tensor<96x64xbf16>,
    %wkv_a: tensor<40x128xbf16>, %kv_norm: tensor<32xbf16>, %wkv_b: tensor<128x32xbf16>, %wo: tensor<128x64xbf16>)
    -> (tensor<1x7x128xf32>, tensor<1x64x160xf32>) {
  %out, %c = dsv3.mla %x, %pos, %cache q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b) kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
      {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64, qk_nope_head_dim = 16 : i64,
       qk_rope_head_dim = 8 : i64, v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
       rope = #dsv3.rope<theta = 10000.0>}
      : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x160xf32>, tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
         tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>, tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x160xf32>)
  return %out, %c : tensor<1x7x128xf32>, tensor<1x64x160xf32>
}

// -----

/// MoE: sigmoid scores, bias added for selection only, group scores (top-2
/// sums), groups and experts chosen by stable rank; then all (token, slot)
/// pairs at once: pair g reads only expert selected[g / top_k]'s weights
/// (gate, up, down as parallel row dots indexed by the pair's expert), and
/// the routing weights combine the slots.
// CHECK-LABEL: func.func @moe
// CHECK-DAG: arith.constant 2.500000e+00 : f32
// CHECK-NOT: dsv3.
// CHECK: math.exp
// CHECK: arith.cmpf ogt
// CHECK: arith.cmpi slt
// CHECK: %[[EXPERTS:.*]] = tensor.collapse_shape %{{.*}} {{\[}}[0, 1]] : tensor<7x2xi64> into tensor<14xi64>
// CHECK: scf.forall (%[[PAIR:.*]], %{{.*}}) in (%{{.*}}, %{{.*}})
// CHECK: %[[E:.*]] = tensor.extract %[[EXPERTS]][%[[PAIR]]] : tensor<14xi64>
// CHECK: %[[EI:.*]] = arith.index_cast %[[E]] : i64 to index
// CHECK: vector.transfer_read %arg3[%[[EI]], %{{.*}}, %{{.*}}]{{.*}} : tensor<8x32x128xbf16>, vector<16xbf16>
func.func @moe(%x: tensor<7x128xf32>, %r: tensor<8x128xbf16>, %b: tensor<8xf32>,
    %g: tensor<8x32x128xbf16>, %u: tensor<8x32x128xbf16>, %d: tensor<8x128x32xbf16>,
    %sg: tensor<32x128xbf16>, %su: tensor<32x128xbf16>, %sd: tensor<128x32xbf16>) -> tensor<7x128xf32> {
  %0 = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
      {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64, topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>,
       norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
      : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>, tensor<8x32x128xbf16>, tensor<8x32x128xbf16>,
         tensor<8x128x32xbf16>, tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
  return %0 : tensor<7x128xf32>
}
