//===- ModelConfig.h - DeepSeek-V3-architecture model configuration -------===//
//
// The validated form of a Hugging Face `config.json` for a DeepSeek-V3-
// architecture model (DeepSeek-V3/R1, V2-style variants, and any smaller model
// built the same way). Field meanings follow docs/dsv3-model-spec.md §1.2-1.3.
//
// This library links neither MLIR nor LLVM: the runtime reuses it.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_MODEL_MODELCONFIG_H
#define DSV3_MODEL_MODELCONFIG_H

#include <cstdint>
#include <optional>
#include <string>

namespace dsv3 {

/// How router scores are computed from router logits.
enum class ScoringFunc { Sigmoid, Softmax };

/// `topk_method`: noaux_tc adds a per-expert selection bias
/// (`e_score_correction_bias`) used only to choose experts; greedy and
/// group_limited_greedy (DeepSeek-V2) have none. With n_group > 1 the experts
/// are chosen within the best topk_group groups, ranked by their best score.
enum class TopkMethod { NoauxTc, Greedy, GroupLimitedGreedy };

/// YaRN RoPE scaling parameters (`rope_scaling` with type "yarn").
struct YarnConfig {
  double factor = 1.0;
  int64_t originalMaxPositionEmbeddings = 4096;
  double betaFast = 32.0;
  double betaSlow = 1.0;
  double mscale = 1.0;       // cos/sin factor numerator (1.0 for V3)
  double mscaleAllDim = 0.0; // softmax-scale mscale; 0 means "not applied"
};

/// FP8 block quantisation of the projection weights (`quantization_config`).
struct Fp8QuantConfig {
  int64_t blockRows = 128;
  int64_t blockCols = 128;
};

struct ModelConfig {
  std::string modelType; // "deepseek_v3" (also accepted: "deepseek_v2")
  int64_t vocabSize = 0;
  int64_t hiddenSize = 0;
  int64_t intermediateSize = 0;    // dense FFN width
  int64_t moeIntermediateSize = 0; // width of one routed/shared expert
  int64_t numHiddenLayers = 0;     // main-model layers (MTP layers excluded)
  int64_t firstKDenseReplace = 0;  // layers [0, k) are dense
  int64_t moeLayerFreq = 1;
  int64_t numAttentionHeads = 0;
  int64_t nRoutedExperts = 0; // 0 => every layer dense
  int64_t nSharedExperts = 0;
  int64_t numExpertsPerTok = 0;
  int64_t nGroup = 1;
  int64_t topkGroup = 1;
  double routedScalingFactor = 1.0;
  ScoringFunc scoringFunc = ScoringFunc::Softmax;
  TopkMethod topkMethod = TopkMethod::Greedy;
  bool normTopkProb = false;
  std::optional<int64_t> qLoraRank; // nullopt => plain q projection
  int64_t kvLoraRank = 0;
  int64_t qkNopeHeadDim = 0;
  int64_t qkRopeHeadDim = 0;
  int64_t vHeadDim = 0;
  double rmsNormEps = 1e-6;
  double ropeTheta = 10000.0;
  std::optional<YarnConfig> yarn; // nullopt => plain RoPE
  int64_t maxPositionEmbeddings = 0;
  bool tieWordEmbeddings = false;
  int64_t numNextnPredictLayers = 0; // MTP layers, recognised and ignored
  int64_t bosTokenId = 0;
  int64_t eosTokenId = 1;
  std::optional<Fp8QuantConfig> fp8; // set => projections stored as F8_E4M3

  // Derived quantities.
  int64_t qkHeadDim() const { return qkNopeHeadDim + qkRopeHeadDim; }
  bool hasSelectionBias() const { return topkMethod == TopkMethod::NoauxTc; }
  bool isMoeLayer(int64_t layer) const {
    return nRoutedExperts > 0 && layer >= firstKDenseReplace &&
           layer % moeLayerFreq == 0;
  }
  int64_t numDenseLayers() const;
  int64_t numMoeLayers() const;
  /// The softmax scale of attention: qk_head_dim^-0.5, times mscale^2 when
  /// YaRN is active with a non-zero mscale_all_dim (spec §3.6).
  double softmaxScale() const;
};

/// Result of parsing: either a config or one error line naming the field and
/// the problem (e.g. "config.json: field 'n_group': must divide
/// n_routed_experts (256), got 7").
struct ConfigParseResult {
  std::optional<ModelConfig> config;
  std::string error;
  explicit operator bool() const { return config.has_value(); }
};

/// Parses and validates the text of a config.json. `sourceName` prefixes
/// error messages.
ConfigParseResult parseModelConfig(const std::string &jsonText,
                                   const std::string &sourceName = "config.json");

/// Reads `path` (a config.json file, or a checkpoint directory containing one)
/// and parses it.
ConfigParseResult loadModelConfig(const std::string &path);

/// Serialises a config back to HF-style JSON (used in artifact manifests).
std::string modelConfigToJson(const ModelConfig &config);

} // namespace dsv3

#endif // DSV3_MODEL_MODELCONFIG_H
