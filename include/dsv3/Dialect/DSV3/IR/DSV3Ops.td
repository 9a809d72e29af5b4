//===- DSV3Ops.td - dsv3 operations ------------------------*- tablegen -*-===//
//
// Import-level ops: what a DeepSeek-V3-architecture model computes. Every op
// verifies the shape and attribute relations it depends on (DSV3Ops.cpp);
// every verifier message has a case in test/Dialect/DSV3/invalid.mlir.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_OPS
#define DSV3_OPS

include "dsv3/Dialect/DSV3/IR/DSV3Dialect.td"
include "dsv3/Dialect/DSV3/IR/DSV3Attrs.td"
include "mlir/Interfaces/SideEffectInterfaces.td"
include "mlir/IR/BuiltinAttributes.td"

// Activations are f32 or bf16. Weights may also be f16 or FP8 e4m3 (the
// released DeepSeek-V3 checkpoint stores its projections as F8_E4M3 with an
// f32 128x128 block scale, `weight_scale_inv`).
def DSV3_ActivationTensor : TensorOf<[F32, BF16]>;
def DSV3_WeightTensor : TensorOf<[F32, BF16, F16, F8E4M3FN]>;
def DSV3_FloatWeightTensor : TensorOf<[F32, BF16, F16]>;
def DSV3_ScaleTensor : TensorOf<[F32]>;
def DSV3_IndexTensor : TensorOf<[I32, I64]>;
/// A KV cache: float elements, or the bytes of the packed FP8 latent layout.
def DSV3_CacheTensor : TensorOf<[F32, BF16, I8]>;

//===----------------------------------------------------------------------===//
// Building blocks
//===----------------------------------------------------------------------===//

def DSV3_EmbeddingOp : DSV3_Op<"embedding", [Pure]> {
  let summary = "token embedding lookup";
  let description = [{
    Gathers rows of `table` ([vocab, hidden]) for each token id. The result has
    the shape of `tokens` followed by `hidden`. Token ids outside [0, vocab) are
    rejected by the runtime before the call.

    ```mlir
    %h = dsv3.embedding %table, %tokens
        : (tensor<512x128xbf16>, tensor<2x7xi32>) -> tensor<2x7x128xf32>
    ```
  }];
  let arguments = (ins DSV3_FloatWeightTensor:$table, DSV3_IndexTensor:$tokens);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $table `,` $tokens attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_RmsNormOp : DSV3_Op<"rms_norm", [Pure]> {
  let summary = "RMSNorm over the last dimension";
  let description = [{
    `y = x / sqrt(mean(x^2) + eps) * weight`, statistics in f32, over the last
    dimension of `x`. `weight` has that dimension's size.

    ```mlir
    %y = dsv3.rms_norm %x, %w {eps = 1.0e-06 : f64}
        : (tensor<2x7x128xf32>, tensor<128xbf16>) -> tensor<2x7x128xf32>
    ```
  }];
  let arguments = (ins DSV3_ActivationTensor:$input,
                       DSV3_FloatWeightTensor:$weight, F64Attr:$eps);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_LinearOp : DSV3_Op<"linear", [Pure]> {
  let summary = "x · Wᵀ, optionally with an FP8 weight and its block scale";
  let description = [{
    Multiplies the last dimension of `input` ([..., in]) by `weight`
    ([out, in], the checkpoint layout) transposed; the result is [..., out].

    An `f8E4M3FN` weight needs `scale`: an f32 tensor of shape
    [ceil(out/128), ceil(in/128)] holding, per 128x128 block, the factor the
    stored values are multiplied by (`weight_scale_inv` in the checkpoint;
    edge blocks may be partial). Other weight types take no scale.

    ```mlir
    %y = dsv3.linear %x, %w : (tensor<7x128xf32>, tensor<64x128xbf16>) -> tensor<7x64xf32>
    %z = dsv3.linear %x, %w8 scale %s
        : (tensor<7x320xf32>, tensor<160x320xf8E4M3FN>, tensor<2x3xf32>) -> tensor<7x160xf32>
    ```
  }];
  let arguments = (ins DSV3_ActivationTensor:$input, DSV3_WeightTensor:$weight,
                       Optional<DSV3_ScaleTensor>:$scale);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $input `,` $weight (`scale` $scale^)? attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_RopeOp : DSV3_Op<"rope", [Pure]> {
  let summary = "rotary position embedding on interleaved pairs (RoPE / YaRN)";
  let description = [{
    Rotates each interleaved pair `(x[2i], x[2i+1])` of the last dimension of
    `input` by the angle `positions[b, s] * freq[i]`, as the official
    DeepSeek-V3 code does (complex multiply in f32). `input` is
    [batch, seq, rope_dim] or [batch, seq, heads, rope_dim]; `positions` is
    [batch, seq]. The frequencies, with the optional YaRN correction, come from
    the `rope` attribute.

    ```mlir
    %y = dsv3.rope %q_pe, %pos {rope = #dsv3.rope<theta = 10000.0>}
        : (tensor<2x7x4x8xf32>, tensor<2x7xi64>) -> tensor<2x7x4x8xf32>
    ```
  }];
  let arguments = (ins DSV3_ActivationTensor:$input,
                       DSV3_IndexTensor:$positions, DSV3_RopeAttr:$rope);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $input `,` $positions attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_SwigluMlpOp : DSV3_Op<"swiglu_mlp", [Pure, AttrSizedOperandSegments]> {
  let summary = "SwiGLU feed-forward block: down(silu(gate x) * up x)";
  let description = [{
    The dense MLP of the first layers (and the shape of every expert):
    `down(silu(x · gateᵀ) * (x · upᵀ))` with `gate`, `up` of shape
    [inter, hidden] and `down` of shape [hidden, inter]. FP8 weights come with
    their three block scales in `scales(gate, up, down)`.

    ```mlir
    %y = dsv3.swiglu_mlp %x, %wg, %wu, %wd
        : (tensor<7x128xf32>, tensor<256x128xbf16>, tensor<256x128xbf16>,
           tensor<128x256xbf16>) -> tensor<7x128xf32>
    ```
  }];
  let arguments = (ins DSV3_ActivationTensor:$input,
                       DSV3_WeightTensor:$gate, DSV3_WeightTensor:$up,
                       DSV3_WeightTensor:$down,
                       Optional<DSV3_ScaleTensor>:$gate_scale,
                       Optional<DSV3_ScaleTensor>:$up_scale,
                       Optional<DSV3_ScaleTensor>:$down_scale);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $input `,` $gate `,` $up `,` $down
    (`scales` `(` $gate_scale^ `,` $up_scale `,` $down_scale `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Multi-head latent attention
//===----------------------------------------------------------------------===//

def DSV3_MlaOp : DSV3_Op<"mla", [Pure, AttrSizedOperandSegments]> {
  let summary = "multi-head latent attention of one layer, with its KV cache";
  let description = [{
    The whole attention of one DeepSeek-V3 layer (docs/dsv3-model-spec.md §3)
    for `hidden` [B, S, D] at absolute `positions` [B, S]:

    - query: `q_b(q_norm(q_a(x)))` (`q_lora_rank` set) or the plain `q(x)`;
      per head, the first `qk_nope_head_dim` rows are q_nope, the next
      `qk_rope_head_dim` are q_pe (roped);
    - `kv_a(x)` gives the latent c ([0, kv_lora_rank)) and one roped key k_pe
      shared by all heads; c is normalised by `kv_norm`;
    - `kv_b` expands the latent into per-head k_nope and v
      (rows `h*(nope+v) + [0,nope)` and `+ [nope, nope+v)`);
    - causal softmax attention with `softmax_scale`: the token at position p
      attends to the cache entries at positions <= p;
    - `o` projects the concatenated heads back to D.

    `cache` [B, T_max, W] is the layer's KV cache; the op writes the entries of
    this call at `positions` and returns the updated cache. Two layouts exist:
    the latent layout (W = kv_lora_rank + qk_rope_head_dim: normalised latent
    and roped k_pe, 576 elements for DeepSeek-V3) and the expanded layout
    (W = heads * (qk_nope_head_dim + qk_rope_head_dim + v_head_dim): per-head K
    then V). FP8 projections carry their block scales in `*_scale(...)`.

    A cache of i8 holds the latent layout packed as FlashMLA's FP8 cache
    (DeepSeek-V3.2's V32_FP8Sparse): per token, kv_lora_rank e4m3 codes of the
    latent, one f32 scale per tile of 128 latent columns (one tile of the
    whole latent when kv_lora_rank is not a multiple of 128), then the roped
    key as qk_rope_head_dim bf16 values, little-endian: W = 512 + 4 * 4 +
    64 * 2 = 656 bytes for DeepSeek-V3. A tile's scale is a power of two,
    2^ceil(log2(max(amax / 448, 1e-4))), so dividing by it is exact. The
    expanded layout packs the same way with no bf16 part: W' e4m3 codes of
    the per-head K and V row (W' = the expanded width) and one f32 scale per
    tile of 128 of them (one tile of the whole row when W' is not a multiple
    of 128).

    `q_kv_a` ([q_lora_rank + kv_lora_rank + qk_rope_head_dim, hidden]), set by
    dsv3-fuse-latent-projection, replaces `q_a` and `kv_a`: the two down
    projections of the hidden state as one GEMM over their concatenated rows
    (FP8 needs q_lora_rank to be a multiple of 128, so that no 128-row scale
    block straddles the two).

    `expand_from = N` (latent layout only): a call with at least N query
    tokens expands the cached latent into per-head K and V (kv_b) and runs
    the naive form, which does fewer FLOPs per (query, key) pair; shorter
    calls (decode) run the absorbed form on the latent.

    ```mlir
    %out, %cache2 = dsv3.mla %x, %pos, %cache
        q_a(%wq_a) q_norm(%q_norm) q_b(%wq_b)
        kv_a(%wkv_a) kv_norm(%kv_norm) kv_b(%wkv_b) o(%wo)
        {heads = 4 : i64, q_lora_rank = 64 : i64, kv_lora_rank = 32 : i64,
         qk_nope_head_dim = 16 : i64, qk_rope_head_dim = 8 : i64,
         v_head_dim = 16 : i64, softmax_scale = 0.25 : f64, eps = 1.0e-06 : f64,
         rope = #dsv3.rope<theta = 10000.0>}
        : (tensor<1x7x128xf32>, tensor<1x7xi64>, tensor<1x64x40xf32>,
           tensor<64x128xbf16>, tensor<64xbf16>, tensor<96x64xbf16>,
           tensor<40x128xbf16>, tensor<32xbf16>, tensor<128x32xbf16>,
           tensor<128x64xbf16>) -> (tensor<1x7x128xf32>, tensor<1x64x40xf32>)
    ```
  }];
  let arguments = (ins
      DSV3_ActivationTensor:$hidden, DSV3_IndexTensor:$positions,
      DSV3_CacheTensor:$cache,
      Optional<DSV3_WeightTensor>:$wq_a, Optional<DSV3_ScaleTensor>:$wq_a_scale,
      Optional<DSV3_FloatWeightTensor>:$q_norm,
      Optional<DSV3_WeightTensor>:$wq_b, Optional<DSV3_ScaleTensor>:$wq_b_scale,
      Optional<DSV3_WeightTensor>:$wq, Optional<DSV3_ScaleTensor>:$wq_scale,
      Optional<DSV3_WeightTensor>:$wq_kv_a,
      Optional<DSV3_ScaleTensor>:$wq_kv_a_scale,
      Optional<DSV3_WeightTensor>:$wkv_a, Optional<DSV3_ScaleTensor>:$wkv_a_scale,
      DSV3_FloatWeightTensor:$kv_norm,
      DSV3_WeightTensor:$wkv_b, Optional<DSV3_ScaleTensor>:$wkv_b_scale,
      DSV3_WeightTensor:$wo, Optional<DSV3_ScaleTensor>:$wo_scale,
      I64Attr:$heads, OptionalAttr<I64Attr>:$q_lora_rank, I64Attr:$kv_lora_rank,
      I64Attr:$qk_nope_head_dim, I64Attr:$qk_rope_head_dim, I64Attr:$v_head_dim,
      F64Attr:$softmax_scale, F64Attr:$eps, DSV3_RopeAttr:$rope,
      OptionalAttr<I64Attr>:$expand_from);
  let results = (outs DSV3_ActivationTensor:$result,
                      DSV3_CacheTensor:$updated_cache);
  let assemblyFormat = [{
    $hidden `,` $positions `,` $cache
    (`q_a` `(` $wq_a^ `)`)? (`q_a_scale` `(` $wq_a_scale^ `)`)?
    (`q_norm` `(` $q_norm^ `)`)?
    (`q_b` `(` $wq_b^ `)`)? (`q_b_scale` `(` $wq_b_scale^ `)`)?
    (`q` `(` $wq^ `)`)? (`q_scale` `(` $wq_scale^ `)`)?
    (`q_kv_a` `(` $wq_kv_a^ `)`)? (`q_kv_a_scale` `(` $wq_kv_a_scale^ `)`)?
    (`kv_a` `(` $wkv_a^ `)`)? (`kv_a_scale` `(` $wkv_a_scale^ `)`)?
    `kv_norm` `(` $kv_norm `)`
    `kv_b` `(` $wkv_b `)` (`kv_b_scale` `(` $wkv_b_scale^ `)`)?
    `o` `(` $wo `)` (`o_scale` `(` $wo_scale^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
  let extraClassDeclaration = [{
    /// Elements per token per layer of the latent cache layout.
    int64_t getLatentCacheWidth();
    /// Elements per token per layer of the expanded (per-head K, V) layout.
    int64_t getExpandedCacheWidth();
    /// Bytes per token per layer of the packed FP8 latent layout.
    int64_t getPackedFp8LatentCacheWidth();
    /// Bytes per token per layer of the packed FP8 expanded layout.
    int64_t getPackedFp8ExpandedCacheWidth();
    /// Codes per FP8 scale of the packed layout `cache` uses: 128 (FlashMLA's
    /// tile) when the codes of a row (kv_lora_rank, or the expanded width)
    /// are a multiple of it, else all of them.
    int64_t getPackedFp8CacheTile();
    /// True when `cache` uses the latent layout (float or packed FP8).
    bool hasLatentCache();
    /// True when `cache` is i8: a packed FP8 layout (latent or expanded).
    bool hasPackedFp8Cache();
  }];
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

def DSV3_MoeOp : DSV3_Op<"moe", [Pure, AttrSizedOperandSegments]> {
  let summary = "router + routed experts + shared experts of one MoE layer";
  let description = [{
    For each token of `input` [..., D]:

    1. router logits `x · routerᵀ` ([experts, D]) -> scores by `scoring`
       (sigmoid or softmax);
    2. selection: with `bias` present (DeepSeek-V3's noaux_tc), `scores + bias`
       is used to choose but never to weight. Experts form `n_group` groups;
       each group's score is the sum of its top-2 biased scores (max without a
       bias); the best `topk_group` groups are kept, and the `top_k` best
       experts of those are selected;
    3. weights: the unbiased scores of the selected experts, divided by their
       sum when `norm_topk_prob`, times `routed_scaling_factor`;
    4. output: `sum_k w_k * expert_{idx_k}(x) + shared(x)`, each expert a SwiGLU
       MLP whose stacked weights are `gate`/`up` [experts, I, D] and
       `down` [experts, D, I]; the shared experts (if any) are one SwiGLU MLP of
       width n_shared * I.

    FP8 expert weights carry stacked block scales [experts, ceil(rows/128),
    ceil(cols/128)].

    ```mlir
    %y = dsv3.moe %x router(%wr) bias(%b) experts(%g, %u, %d)
        shared(%sg, %su, %sd)
        {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64,
         topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>,
         norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
        : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>,
           tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<8x128x32xbf16>,
           tensor<32x128xbf16>, tensor<32x128xbf16>, tensor<128x32xbf16>)
          -> tensor<7x128xf32>
    ```
  }];
  let arguments = (ins
      DSV3_ActivationTensor:$input, DSV3_FloatWeightTensor:$router,
      Optional<DSV3_ScaleTensor>:$bias,
      DSV3_WeightTensor:$gate, DSV3_WeightTensor:$up, DSV3_WeightTensor:$down,
      Optional<DSV3_ScaleTensor>:$gate_scale,
      Optional<DSV3_ScaleTensor>:$up_scale,
      Optional<DSV3_ScaleTensor>:$down_scale,
      Optional<DSV3_WeightTensor>:$shared_gate,
      Optional<DSV3_WeightTensor>:$shared_up,
      Optional<DSV3_WeightTensor>:$shared_down,
      Optional<DSV3_ScaleTensor>:$shared_gate_scale,
      Optional<DSV3_ScaleTensor>:$shared_up_scale,
      Optional<DSV3_ScaleTensor>:$shared_down_scale,
      I64Attr:$experts, I64Attr:$top_k, I64Attr:$n_group, I64Attr:$topk_group,
      DSV3_ScoringFuncAttr:$scoring, BoolAttr:$norm_topk_prob,
      F64Attr:$routed_scaling_factor);
  let results = (outs DSV3_ActivationTensor:$result);
  let assemblyFormat = [{
    $input `router` `(` $router `)` (`bias` `(` $bias^ `)`)?
    `experts` `(` $gate `,` $up `,` $down `)`
    (`expert_scales` `(` $gate_scale^ `,` $up_scale `,` $down_scale `)`)?
    (`shared` `(` $shared_gate^ `,` $shared_up `,` $shared_down `)`)?
    (`shared_scales` `(` $shared_gate_scale^ `,` $shared_up_scale `,` $shared_down_scale `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

//===----------------------------------------------------------------------===//
// Fused mixture of experts (produced by dsv3-fuse-moe)
//===----------------------------------------------------------------------===//

def DSV3_I64Tensor : TensorOf<[I64]>;
def DSV3_F32Tensor : TensorOf<[F32]>;

def DSV3_MoeRouteOp : DSV3_Op<"moe_route", [Pure]> {
  let summary = "router of an MoE layer: the selected experts and their weights";
  let description = [{
    Steps 1-3 of `dsv3.moe` for tokens `input` [N, D]: `indices` [N, top_k]
    are the selected experts of each token (in the order of their biased
    score, ties to the lower index) and `weights` [N, top_k] their routing
    weights (unbiased scores, normalised when `norm_topk_prob`, times
    `routed_scaling_factor`). The attributes mean what they mean on
    `dsv3.moe`.

    ```mlir
    %idx, %w = dsv3.moe_route %x router(%wr) bias(%b)
        {experts = 8 : i64, top_k = 2 : i64, n_group = 4 : i64,
         topk_group = 2 : i64, scoring = #dsv3.scoring<sigmoid>,
         norm_topk_prob = true, routed_scaling_factor = 2.5 : f64}
        : (tensor<7x128xf32>, tensor<8x128xbf16>, tensor<8xf32>)
          -> (tensor<7x2xi64>, tensor<7x2xf32>)
    ```
  }];
  let arguments = (ins
      DSV3_ActivationTensor:$input, DSV3_FloatWeightTensor:$router,
      Optional<DSV3_ScaleTensor>:$bias,
      I64Attr:$experts, I64Attr:$top_k, I64Attr:$n_group, I64Attr:$topk_group,
      DSV3_ScoringFuncAttr:$scoring, BoolAttr:$norm_topk_prob,
      F64Attr:$routed_scaling_factor);
  let results = (outs DSV3_I64Tensor:$indices, DSV3_F32Tensor:$weights);
  let assemblyFormat = [{
    $input `router` `(` $router `)` (`bias` `(` $bias^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_MoeDispatchOp : DSV3_Op<"moe_dispatch", [Pure]> {
  let summary = "group (token, slot) pairs by expert";
  let description = [{
    A counting sort of the N * top_k (token, slot) pairs of `indices`
    [N, top_k] by expert: `order` [N * top_k] lists pair ids `n * top_k + k`,
    expert 0's first, each expert's in token order (stable), and expert `e`'s
    pairs are `order[offsets[e] .. offsets[e + 1])` (`offsets` [experts + 1],
    `offsets[0] = 0`). An expert nobody selected has an empty range, so the
    grouped GEMMs that follow never read its weights.

    ```mlir
    %order, %offsets = dsv3.moe_dispatch %idx {experts = 8 : i64}
        : (tensor<7x2xi64>) -> (tensor<14xi64>, tensor<9xi64>)
    ```
  }];
  let arguments = (ins DSV3_I64Tensor:$indices, I64Attr:$experts);
  let results = (outs DSV3_I64Tensor:$order, DSV3_I64Tensor:$offsets);
  let assemblyFormat = [{
    $indices attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_MoeGateUpOp : DSV3_Op<"moe_gate_up",
                               [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped gate and up GEMM of the experts, SiLU(gate) * up fused";
  let description = [{
    One grouped GEMM over the experts' gate and up projections. Row `r` of
    the result [P + N * S, I] (P = N * top_k pairs, S = shared slots):

    - `r < P`: pair `p = order[r]` of the expert `e` whose range of `order`
      holds `r`: `silu(x[p / top_k] · gate[e]ᵀ) * (x[p / top_k] · up[e]ᵀ)`;
      the token is read through the permutation, never copied;
    - `r = P + j * N + n`: the shared experts folded in as always-selected
      slots: slot `j` is rows `j*I .. (j+1)*I` of `shared_gate`/`shared_up`
      ([S * I, D]), for token `n`.

    Each expert's weights are read once per call, however many of the
    tokens chose it, and not at all when none did.

    ```mlir
    %act = dsv3.moe_gate_up %x, %order, %offsets experts(%g, %u)
        shared(%sg, %su) {top_k = 2 : i64}
        : (tensor<7x128xf32>, tensor<14xi64>, tensor<9xi64>,
           tensor<8x32x128xbf16>, tensor<8x32x128xbf16>, tensor<32x128xbf16>,
           tensor<32x128xbf16>) -> tensor<21x32xf32>
    ```
  }];
  let arguments = (ins
      DSV3_ActivationTensor:$input, DSV3_I64Tensor:$order,
      DSV3_I64Tensor:$offsets,
      DSV3_WeightTensor:$gate, DSV3_WeightTensor:$up,
      Optional<DSV3_ScaleTensor>:$gate_scale,
      Optional<DSV3_ScaleTensor>:$up_scale,
      Optional<DSV3_WeightTensor>:$shared_gate,
      Optional<DSV3_WeightTensor>:$shared_up,
      Optional<DSV3_ScaleTensor>:$shared_gate_scale,
      Optional<DSV3_ScaleTensor>:$shared_up_scale,
      I64Attr:$top_k);
  let results = (outs DSV3_F32Tensor:$result);
  let assemblyFormat = [{
    $input `,` $order `,` $offsets `experts` `(` $gate `,` $up `)`
    (`expert_scales` `(` $gate_scale^ `,` $up_scale `)`)?
    (`shared` `(` $shared_gate^ `,` $shared_up `)`)?
    (`shared_scales` `(` $shared_gate_scale^ `,` $shared_up_scale `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

def DSV3_MoeDownCombineOp : DSV3_Op<"moe_down_combine",
                                    [Pure, AttrSizedOperandSegments]> {
  let summary = "grouped down GEMM of the experts, weighted combine fused";
  let description = [{
    The grouped down projection of the rows of `activations` (as produced by
    `dsv3.moe_gate_up`) with the routing-weighted scatter-add into the
    tokens fused in:

      out[n] = sum over pairs p = n * top_k + k, routed to expert e,
                 of weights[n, k] * (activations[r(p)] · down[e]ᵀ)
             + sum over shared slots j of
                 activations[P + j * N + n] · shared_down[:, j*I .. (j+1)*I]ᵀ

    Each output column tile is owned by one thread, which adds every
    expert's contribution in expert order, so the sum is deterministic and
    needs no atomics.

    ```mlir
    %y = dsv3.moe_down_combine %act, %order, %offsets, %w experts(%d)
        shared(%sd) {top_k = 2 : i64}
        : (tensor<21x32xf32>, tensor<14xi64>, tensor<9xi64>, tensor<7x2xf32>,
           tensor<8x128x32xbf16>, tensor<128x32xbf16>) -> tensor<7x128xf32>
    ```
  }];
  let arguments = (ins
      DSV3_F32Tensor:$activations, DSV3_I64Tensor:$order,
      DSV3_I64Tensor:$offsets, DSV3_F32Tensor:$weights,
      DSV3_WeightTensor:$down, Optional<DSV3_ScaleTensor>:$down_scale,
      Optional<DSV3_WeightTensor>:$shared_down,
      Optional<DSV3_ScaleTensor>:$shared_down_scale,
      I64Attr:$top_k);
  let results = (outs DSV3_F32Tensor:$result);
  let assemblyFormat = [{
    $activations `,` $order `,` $offsets `,` $weights `experts` `(` $down `)`
    (`expert_scale` `(` $down_scale^ `)`)?
    (`shared` `(` $shared_down^ `)`)?
    (`shared_scale` `(` $shared_down_scale^ `)`)?
    attr-dict `:` functional-type(operands, results)
  }];
  let hasVerifier = 1;
}

#endif // DSV3_OPS
