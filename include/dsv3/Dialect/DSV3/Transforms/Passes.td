//===- Passes.td - dsv3 transformation passes --------------*- tablegen -*-===//

#ifndef DSV3_TRANSFORMS_PASSES
#define DSV3_TRANSFORMS_PASSES

include "mlir/Pass/PassBase.td"

def DSV3FuseLatentProjection : Pass<"dsv3-fuse-latent-projection", "ModuleOp"> {
  let summary = "Run multi-head latent attention on the latent KV cache (absorbed MLA)";
  let description = [{
    Rewrites a module whose `dsv3.mla` ops keep the expanded per-head K/V
    cache (heads * (qk_nope + qk_rope + v) elements per token per layer) to
    the latent cache (kv_lora_rank + qk_rope: the normalised latent and the
    roped k_pe, 576 elements for DeepSeek-V3, 71x less). The cache type is
    changed everywhere the cache flows: the entry points' arguments and
    results, the calls, the layer loops and their slices.

    With the latent cache, `convert-dsv3-to-linalg` lowers each `dsv3.mla` in
    the absorbed form: W_UK (the k_nope rows of kv_b) is folded into the
    query, attention runs directly on the latent, and W_UV (the v rows) is
    applied to the attention output, both read straight from kv_b. Without
    this pass the naive form expands K and V per head.

    Before:
    ```mlir
    %o, %c = dsv3.mla %x, %pos, %cache ... : (..., tensor<1x64x160xf32>, ...)
    ```
    After (tiny-v3: 4 * (16 + 8 + 16) = 160 -> 32 + 8 = 40):
    ```mlir
    %o, %c = dsv3.mla %x, %pos, %cache ... : (..., tensor<1x64x40xf32>, ...)
    ```
    Modules already on the latent cache are left unchanged.

    The two down projections of the hidden state become one GEMM: where an
    op has `q_a` and `kv_a`, they are replaced by `q_kv_a`, their rows
    concatenated. For layer-stacked weights (slices of function arguments
    at the layer index) the whole stacks are concatenated once at function
    entry, marked `dsv3.prepared_weight`, so that
    `dsv3-outline-weight-preparation` moves the concatenation into the
    compiled prepare entry that runs once at load. Left unfused: queries
    without q_lora_rank (no q_a), and FP8 weights whose q_lora_rank is not a
    multiple of 128 (the scale blocks would straddle the two).

    `expand-from=N` sets `expand_from = N` on every dsv3.mla: prefill
    chunks of at least N tokens then run the naive form on K/V expanded from
    the latent (the policy of the serving systems: naive for long prefill,
    absorbed for decode). 0 keeps the absorbed form everywhere.
  }];
  let options = [
    Option<"expandFrom", "expand-from", "int64_t", /*default=*/"0",
           "Query tokens from which a call expands K/V from the latent and "
           "runs naive MLA (0: never)">
  ];
  let dependentDialects = ["mlir::tensor::TensorDialect", "mlir::scf::SCFDialect"];
}

def DSV3FuseMoe : Pass<"dsv3-fuse-moe", "ModuleOp"> {
  let summary = "Route -> dispatch -> grouped expert GEMMs -> combine (fused MoE)";
  let description = [{
    Rewrites each `dsv3.moe` into the fused form:

    1. `dsv3.moe_route`: scores, bias for selection only, group-limited
       top-k, normalisation and scaling -> experts and weights per token;
    2. `dsv3.moe_dispatch`: the (token, slot) pairs sorted by expert, with
       per-expert offsets;
    3. `dsv3.moe_gate_up`: one grouped GEMM for gate and up over all selected
       experts, SiLU(gate) * up fused in, tokens read through the permutation;
    4. `dsv3.moe_down_combine`: the grouped down GEMM with the
       routing-weighted scatter-add into the tokens fused in.

    The shared experts are folded into steps 3 and 4 as always-selected
    slots of the experts' width. Each selected expert's weights are then
    read once per call (the unfused `dsv3.moe` lowering reads them once per
    (token, slot) pair), and an MoE layer is two weight passes instead of
    the unfused form's eight.

    Before:
    ```mlir
    %y = dsv3.moe %x router(%r) bias(%b) experts(%g, %u, %d) shared(%sg, %su, %sd)
        {...} : (tensor<1x?x128xf32>, ...) -> tensor<1x?x128xf32>
    ```
    After:
    ```mlir
    %x2 = tensor.collapse_shape %x [[0, 1], [2]] : ... to tensor<?x128xf32>
    %idx, %w = dsv3.moe_route %x2 router(%r) bias(%b) {...}
    %order, %offsets = dsv3.moe_dispatch %idx {experts = 8 : i64}
    %act = dsv3.moe_gate_up %x2, %order, %offsets experts(%g, %u) shared(%sg, %su) {top_k = 2 : i64}
    %y2 = dsv3.moe_down_combine %act, %order, %offsets, %w experts(%d) shared(%sd) {top_k = 2 : i64}
    %y = tensor.expand_shape %y2 [[0, 1], [2]] ...
    ```
    Left unchanged: a `dsv3.moe` with bf16 activations (the fused ops compute
    in f32), or whose shared-expert width is not a multiple of the expert
    width (it cannot be split into slots).
  }];
  let dependentDialects = ["mlir::tensor::TensorDialect"];
}

def DSV3OutlineWeightPreparation
    : Pass<"dsv3-outline-weight-preparation", "ModuleOp"> {
  let summary = "Move computations on weights alone into a prepare entry run once at load";
  let description = [{
    A fusion may need the weights in another form (dsv3-fuse-latent-projection
    concatenates q_a and kv_a). Computed inside the forward function, that
    transformation would run on every call. This pass finds the operations
    of a function called by the entry points that depend only on weight
    arguments (and constants), and moves them into a new entry point
    `@prepare` (`dsv3.entry = "prepare"`): it takes those weights and
    returns the prepared ones. The forward function and the entry points
    take the prepared weights as new arguments (`dsv3.weight` = the name in
    the op's `dsv3.prepared_weight` attribute, `dsv3.prepared`), and weights
    that only the preparation used are dropped from them, so the runtime
    keeps just the prepared form after load.

    Before:
    ```mlir
    func.func private @forward(..., %qa: tensor<3x64x128xbf16>, %kva: tensor<3x40x128xbf16>) {
      %cat = tensor.concat dim(1) %qa, %kva {dsv3.prepared_weight = "attn.wq_kv_a"} : ...
      ... uses of %cat in the layer loop ...
    }
    ```
    After:
    ```mlir
    func.func @prepare(%qa: ... {dsv3.weight = "attn.wq_a", ...}, %kva: ...)
        -> (tensor<3x104x128xbf16> {dsv3.weight = "attn.wq_kv_a"}) attributes {dsv3.entry = "prepare", ...} {
      %cat = tensor.concat dim(1) %qa, %kva : ...
      return %cat : ...
    }
    func.func private @forward(..., %cat: tensor<3x104x128xbf16>) { ... }
    ```
    Modules without such computations are left unchanged.
  }];
}

#endif // DSV3_TRANSFORMS_PASSES
