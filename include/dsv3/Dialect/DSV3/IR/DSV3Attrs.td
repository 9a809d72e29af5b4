//===- DSV3Attrs.td - dsv3 attributes and enums ------------*- tablegen -*-===//

#ifndef DSV3_ATTRS
#define DSV3_ATTRS

include "dsv3/Dialect/DSV3/IR/DSV3Dialect.td"

def DSV3_ScoringSigmoid : I32EnumAttrCase<"Sigmoid", 0, "sigmoid">;
def DSV3_ScoringSoftmax : I32EnumAttrCase<"Softmax", 1, "softmax">;
def DSV3_ScoringFuncEnum : I32EnumAttr<"ScoringFunc",
    "how router logits become expert scores",
    [DSV3_ScoringSigmoid, DSV3_ScoringSoftmax]> {
  let cppNamespace = "::mlir::dsv3";
  let genSpecializedAttr = 0;
}
def DSV3_ScoringFuncAttr : EnumAttr<DSV3_Dialect, DSV3_ScoringFuncEnum, "scoring"> {
  let assemblyFormat = "`<` $value `>`";
}

def DSV3_RopeAttr : DSV3_Attr<"Rope", "rope"> {
  let summary = "rotary position embedding parameters (plain RoPE or YaRN)";
  let description = [{
    The parameters of RoPE as the official DeepSeek-V3 code applies it: pair
    `i` of a head's rotary dimensions is rotated by `p * freq[i]` with
    `freq[i] = theta^(-2i/dim)`. With `factor > 1` the YaRN correction blends
    each frequency between `freq` and `freq / factor` by a linear ramp between
    the correction dimensions of `beta_fast` and `beta_slow` over
    `original_max_positions` (docs/dsv3-model-spec.md §4.1).

    Examples:
    ```mlir
    #dsv3.rope<theta = 10000.0>
    #dsv3.rope<theta = 10000.0, factor = 40.0, original_max_positions = 4096,
               beta_fast = 32.0, beta_slow = 1.0>
    ```
  }];
  // APFloat rather than double: attribute storage needs hashable parameters.
  let parameters = (ins APFloatParameter<"">:$theta, APFloatParameter<"">:$factor,
                        "int64_t":$originalMaxPositions,
                        APFloatParameter<"">:$betaFast,
                        APFloatParameter<"">:$betaSlow);
  let builders = [
    AttrBuilder<(ins "double":$theta, "double":$factor,
                     "int64_t":$originalMaxPositions, "double":$betaFast,
                     "double":$betaSlow), [{
      return $_get($_ctxt, ::llvm::APFloat(theta), ::llvm::APFloat(factor),
                   originalMaxPositions, ::llvm::APFloat(betaFast),
                   ::llvm::APFloat(betaSlow));
    }]>
  ];
  let hasCustomAssemblyFormat = 1;
  let genVerifyDecl = 1;
  let extraClassDeclaration = [{
    /// True when the YaRN frequency correction applies.
    bool isYarn() const { return getFactor().convertToDouble() > 1.0; }
  }];
}

#endif // DSV3_ATTRS
