//===- DSV3Dialect.td - The dsv3 dialect definition --------*- tablegen -*-===//
//
// The dsv3 dialect: the blocks of a DeepSeek-V3-architecture forward pass at
// import level (value semantics on tensors).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_DIALECT
#define DSV3_DIALECT

include "mlir/IR/OpBase.td"
include "mlir/IR/AttrTypeBase.td"
include "mlir/IR/EnumAttr.td"
include "dsv3/Dialect/DSV3/IR/DSV3CostInterface.td"

def DSV3_Dialect : Dialect {
  let name = "dsv3";
  let cppNamespace = "::mlir::dsv3";
  let summary = "Operations of DeepSeek-V3-architecture models (MLA, MoE, and their building blocks)";
  let description = [{
    The `dsv3` dialect expresses what a DeepSeek-V3-architecture model computes:
    embedding, RMSNorm, linear projections (with optional FP8 e4m3 weights and
    128x128 block scales), RoPE with YaRN, the SwiGLU MLP, multi-head latent
    attention (`dsv3.mla`) and the mixture-of-experts block (`dsv3.moe`).

    Ops have value semantics on tensors. State (the KV cache) is passed in and
    returned explicitly, so a whole forward pass is a pure function from
    weights, tokens, positions and cache to logits and the updated cache.
    Numerics follow docs/dsv3-model-spec.md in the shared material.
  }];
  let useDefaultAttributePrinterParser = 1;
}

// Every dsv3 op implements CostOpInterface (its getCost in DSV3Cost.cpp): a
// new op without a cost formula fails to link instead of silently costing
// nothing in the cost report.
class DSV3_Op<string mnemonic, list<Trait> traits = []>
    : Op<DSV3_Dialect, mnemonic,
         !listconcat(traits, [DeclareOpInterfaceMethods<DSV3_CostOpInterface>])>;

class DSV3_Attr<string name, string attrMnemonic, list<Trait> traits = []>
    : AttrDef<DSV3_Dialect, name, traits> {
  let mnemonic = attrMnemonic;
}

#endif // DSV3_DIALECT
