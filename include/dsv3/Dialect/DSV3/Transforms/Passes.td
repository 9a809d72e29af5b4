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

#endif // DSV3_TRANSFORMS_PASSES
