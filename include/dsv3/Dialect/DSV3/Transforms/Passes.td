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
  }];
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

#endif // DSV3_TRANSFORMS_PASSES
