//===- ModelConfig.cpp - Parse and validate an HF config.json -------------===//
//
// Reads the Hugging Face `config.json` of a DeepSeek-V3-architecture model
// into a ModelConfig (docs/dsv3-model-spec.md §1.2-1.3) and checks that it
// describes a model the compiler can build.
//
// Required vs. optional fields: HF's config classes give every field a
// default, but for the sizes that fix tensor shapes the default is the 671B
// value, which would silently describe the wrong model for any other
// checkpoint. Those fields are therefore required here. Fields that only
// select behaviour (routing, RoPE, token ids, ...) take HF's defaults, which
// differ between deepseek_v3 (DeepseekV3Config) and deepseek_v2
// (DeepseekV2Config).
//
// Errors are reported internally with a private exception type and turned
// into ConfigParseResult::error at the API boundary; nothing escapes.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Model/ModelConfig.h"

#include "Support.h"

#include <cmath>
#include <limits>
#include <set>
#include <sstream>
#include <sys/stat.h>

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

namespace dsv3 {

int64_t ModelConfig::numDenseLayers() const {
  return numHiddenLayers - numMoeLayers();
}

int64_t ModelConfig::numMoeLayers() const {
  int64_t count = 0;
  for (int64_t layer = 0; layer < numHiddenLayers; ++layer)
    count += isMoeLayer(layer) ? 1 : 0;
  return count;
}

double ModelConfig::softmaxScale() const {
  double scale = 1.0 / std::sqrt(static_cast<double>(qkHeadDim()));
  if (yarn && yarn->mscaleAllDim != 0.0 && yarn->factor > 1.0) {
    // yarn_get_mscale(factor, mscale_all_dim), squared: YaRN's attention
    // temperature applies to both q and k, and both the official code and HF
    // fold the two factors into the softmax scale (spec §3.6).
    double m = 0.1 * yarn->mscaleAllDim * std::log(yarn->factor) + 1.0;
    scale *= m * m;
  }
  return scale;
}

namespace {

/// Thrown inside this file only; caught in parseModelConfig.
struct ConfigError {
  std::string message;
};

/// Largest value accepted for any size: keeps every product of two sizes
/// (and the head products checked below) inside int64_t, and sizes inside
/// what 32-bit index arithmetic in generated code can address.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

/// A short description of a JSON value for "expected X, got Y" messages.
std::string describe(const json &value) {
  switch (value.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return value.get<bool>() ? "boolean true" : "boolean false";
  case json::value_t::string: {
    std::string s = value.get<std::string>();
    if (s.size() > 40)
      s = s.substr(0, 40) + "...";
    return "string \"" + s + "\"";
  }
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
    return "integer " + value.dump();
  case json::value_t::number_float:
    return "number " + value.dump();
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  case json::value_t::binary:
  case json::value_t::discarded:
    break;
  }
  return "an unsupported JSON value";
}

[[noreturn]] void failField(const std::string &source, const std::string &field,
                            const std::string &problem) {
  throw ConfigError{source + ": field '" + field + "': " + problem};
}

/// Field access with typed, field-named errors. `prefix` qualifies the names
/// of nested objects ("rope_scaling.").
class FieldReader {
public:
  FieldReader(const json &object, std::string source, std::string prefix = "")
      : object(object), source(std::move(source)), prefix(std::move(prefix)) {}

  [[noreturn]] void fail(const std::string &field,
                         const std::string &problem) const {
    failField(source, prefix + field, problem);
  }

  /// The value of `field`, or nullptr when absent.
  const json *find(const std::string &field) const {
    auto it = object.find(field);
    return it == object.end() ? nullptr : &*it;
  }
  /// Absent or JSON null.
  bool isUnset(const std::string &field) const {
    const json *v = find(field);
    return !v || v->is_null();
  }
  bool wasDefaulted(const std::string &field) const {
    return defaulted.count(field) != 0;
  }

  int64_t toInt(const std::string &field, const json &v) const {
    if (!v.is_number_integer())
      fail(field, "expected an integer, got " + describe(v));
    if (v.is_number_unsigned() &&
        v.get<uint64_t>() >
            static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(field, "integer " + v.dump() + " is out of range");
    return v.get<int64_t>();
  }

  int64_t requiredInt(const std::string &field) const {
    const json *v = find(field);
    if (!v)
      fail(field, "missing (required)");
    return toInt(field, *v);
  }
  /// Absent or null => `dflt`.
  int64_t optionalInt(const std::string &field, int64_t dflt) {
    if (isUnset(field)) {
      defaulted.insert(field);
      return dflt;
    }
    return toInt(field, *find(field));
  }
  /// Present (possibly null) is required; null => nullopt.
  std::optional<int64_t> requiredNullableInt(const std::string &field) const {
    const json *v = find(field);
    if (!v)
      fail(field, "missing (required; null is allowed)");
    if (v->is_null())
      return std::nullopt;
    return toInt(field, *v);
  }

  double optionalNumber(const std::string &field, double dflt) {
    if (isUnset(field)) {
      defaulted.insert(field);
      return dflt;
    }
    const json &v = *find(field);
    if (!v.is_number())
      fail(field, "expected a number, got " + describe(v));
    double d = v.get<double>();
    if (!std::isfinite(d))
      fail(field, "expected a finite number, got " + v.dump());
    return d;
  }

  bool optionalBool(const std::string &field, bool dflt) {
    if (isUnset(field)) {
      defaulted.insert(field);
      return dflt;
    }
    const json &v = *find(field);
    if (!v.is_boolean())
      fail(field, "expected a boolean, got " + describe(v));
    return v.get<bool>();
  }

  std::optional<std::string> optionalString(const std::string &field) {
    if (isUnset(field)) {
      defaulted.insert(field);
      return std::nullopt;
    }
    const json &v = *find(field);
    if (!v.is_string())
      fail(field, "expected a string, got " + describe(v));
    return v.get<std::string>();
  }

  /// Formats a value for a relation error, marking values that came from a
  /// default so that a user who never wrote the field sees why it matters.
  std::string got(const std::string &field, int64_t value) const {
    return "got " + std::to_string(value) +
           (wasDefaulted(field) ? " (the default; the field is absent)" : "");
  }

private:
  const json &object;
  std::string source;
  std::string prefix;
  std::set<std::string> defaulted;
};

/// `value` as JSON text cut at 100 characters, for messages.
std::string shortDump(const json &value) {
  std::string text = value.dump();
  return text.size() > 100 ? text.substr(0, 100) + "..." : text;
}

/// HF defaults for the behaviour-selecting fields, per model_type.
struct Defaults {
  int64_t firstKDenseReplace, nSharedExperts, nGroup, topkGroup;
  double routedScalingFactor;
  ScoringFunc scoringFunc;
  TopkMethod topkMethod;
  bool normTopkProb;
  int64_t maxPositionEmbeddings, bosTokenId, eosTokenId;
};

// DeepseekV3Config (HF transformers / remote code).
constexpr Defaults kV3Defaults = {
    3,    1,    8, 4, 2.5, ScoringFunc::Sigmoid, TopkMethod::NoauxTc,
    true, 4096, 0, 1};
// DeepseekV2Config (HF transformers): ungrouped softmax routing.
constexpr Defaults kV2Defaults = {
    0,     2,    1, 1, 1.0, ScoringFunc::Softmax, TopkMethod::Greedy,
    false, 2048, 1, 2};

void requirePositive(FieldReader &r, const std::string &field, int64_t v) {
  if (v <= 0)
    r.fail(field, "must be positive, " + r.got(field, v));
  if (v > kMaxSize)
    r.fail(field, "must be at most " + std::to_string(kMaxSize) + ", got " +
                      std::to_string(v));
}

void requireNonNegative(FieldReader &r, const std::string &field, int64_t v) {
  if (v < 0)
    r.fail(field, "must not be negative, " + r.got(field, v));
  if (v > kMaxSize)
    r.fail(field, "must be at most " + std::to_string(kMaxSize) + ", got " +
                      std::to_string(v));
}

std::string formatNumber(double v) {
  std::ostringstream os;
  os.precision(17);
  os << v;
  return os.str();
}

/// `rope_scaling` (or the transformers-v5 `rope_parameters`). Only YaRN is
/// supported; "default" and null mean plain RoPE.
std::optional<YarnConfig> parseRopeScaling(const json &value,
                                           const std::string &source,
                                           const std::string &field) {
  if (!value.is_object())
    failField(source, field,
              "expected null or an object, got " + describe(value));
  FieldReader r(value, source, field + ".");
  std::string kind;
  for (const char *key : {"type", "rope_type"}) {
    if (r.isUnset(key))
      continue;
    const json &v = *r.find(key);
    if (!v.is_string())
      r.fail(key, "expected a string, got " + describe(v));
    kind = v.get<std::string>();
    break;
  }
  if (kind.empty())
    failField(source, field, "missing 'type' (only \"yarn\" is supported)");
  if (kind == "default")
    return std::nullopt;
  if (kind != "yarn")
    failField(source, field,
              "unsupported RoPE scaling type '" + kind +
                  "' (only \"yarn\" or null is supported)");

  YarnConfig y;
  if (r.isUnset("factor"))
    r.fail("factor", "missing (required for yarn)");
  y.factor = r.optionalNumber("factor", 1.0);
  if (y.factor < 1.0)
    r.fail("factor", "must be at least 1, got " + formatNumber(y.factor));
  y.originalMaxPositionEmbeddings =
      r.optionalInt("original_max_position_embeddings", 4096);
  requirePositive(r, "original_max_position_embeddings",
                  y.originalMaxPositionEmbeddings);
  y.betaFast = r.optionalNumber("beta_fast", 32.0);
  y.betaSlow = r.optionalNumber("beta_slow", 1.0);
  if (y.betaFast <= y.betaSlow)
    r.fail("beta_fast", "must be greater than beta_slow (" +
                            formatNumber(y.betaSlow) + "), got " +
                            formatNumber(y.betaFast));
  y.mscale = r.optionalNumber("mscale", 1.0);
  // HF reads rope_scaling.get("mscale_all_dim", 0): absent => no softmax
  // mscale.
  y.mscaleAllDim = r.optionalNumber("mscale_all_dim", 0.0);
  if (!r.isUnset("attention_factor"))
    r.fail("attention_factor", "is not supported (derived from mscale and "
                               "mscale_all_dim instead)");
  return y;
}

std::optional<Fp8QuantConfig> parseQuantization(const json &value,
                                                const std::string &source) {
  if (value.is_null())
    return std::nullopt;
  if (!value.is_object())
    failField(source, "quantization_config",
              "expected null or an object, got " + describe(value));
  FieldReader r(value, source, "quantization_config.");
  std::optional<std::string> method = r.optionalString("quant_method");
  if (!method)
    r.fail("quant_method", "missing (required)");
  if (*method != "fp8")
    r.fail("quant_method",
           "unsupported quantisation '" + *method + "' (only \"fp8\")");
  std::optional<std::string> fmt = r.optionalString("fmt");
  if (fmt && *fmt != "e4m3")
    r.fail("fmt", "unsupported FP8 format '" + *fmt + "' (only \"e4m3\")");
  std::optional<std::string> scheme = r.optionalString("activation_scheme");
  if (scheme && *scheme != "dynamic")
    r.fail("activation_scheme", "unsupported activation scheme '" + *scheme +
                                    "' (only \"dynamic\")");

  Fp8QuantConfig q;
  if (!r.isUnset("weight_block_size")) {
    const json &bs = *r.find("weight_block_size");
    if (!bs.is_array() || bs.size() != 2 || !bs[0].is_number_integer() ||
        !bs[1].is_number_integer())
      r.fail("weight_block_size",
             "expected an array of two integers, got " +
                 (bs.is_array() ? shortDump(bs) : describe(bs)));
    q.blockRows = r.toInt("weight_block_size", bs[0]);
    q.blockCols = r.toInt("weight_block_size", bs[1]);
    if (q.blockRows != 128 || q.blockCols != 128)
      r.fail("weight_block_size",
             "unsupported block size " + bs.dump() + " (only [128, 128])");
  }
  return q;
}

/// Most weight tensors a config may describe: DeepSeek-V3 has ~91k (with its
/// FP8 scales). Every consumer lists the tensors (expectedTensors, the
/// importer, the manifest), so a config of 2^31 layers must fail here, not
/// after gigabytes of names.
constexpr uint64_t kMaxTensors = uint64_t(1) << 22;
/// Most parameters: 2^46 (70 T; DeepSeek-V3 has 0.67 T). Byte counts of the
/// whole model (at most 8 bytes a parameter) then stay far inside int64_t,
/// so no product or sum of tensor sizes downstream can overflow.
constexpr uint64_t kMaxParameters = uint64_t(1) << 46;

/// Counts the tensors and parameters expectedTensors() would list (in
/// closed form: nothing proportional to the sizes is allocated) and refuses
/// a model beyond kMaxTensors or kMaxParameters. Each size is at most
/// kMaxSize (2^31), so every product below is at most 2^93: unsigned
/// __int128 holds them exactly.
void checkModelSize(const ModelConfig &c, const std::string &source) {
  using u128 = unsigned __int128;
  const u128 d = c.hiddenSize, h = c.numAttentionHeads,
             qk = c.qkNopeHeadDim + c.qkRopeHeadDim;
  const u128 scaleFactor = c.fp8 ? 2 : 1; // FP8: a scale per projection
  // Attention and norms, every layer.
  u128 floats = 2 + 1, projections = 3; // norms, kv_a_layernorm; kv_a/b, o
  u128 params = 2 * d + c.kvLoraRank +
                u128(c.kvLoraRank + c.qkRopeHeadDim) * d +
                h * u128(c.qkNopeHeadDim + c.vHeadDim) * c.kvLoraRank +
                d * h * c.vHeadDim;
  if (c.qLoraRank) {
    const u128 q = *c.qLoraRank;
    floats += 1;
    projections += 2;
    params += q * d + q + h * qk * q;
  } else {
    projections += 1;
    params += h * qk * d;
  }
  const u128 layers = c.numHiddenLayers;
  // Layers are bounded first, so that counting MoE layers is cheap.
  if (layers * (floats + projections * scaleFactor) > kMaxTensors)
    failField(source, "num_hidden_layers",
              std::to_string(c.numHiddenLayers) +
                  " layers would hold more than " +
                  std::to_string(kMaxTensors) + " weight tensors");
  const u128 moeLayers = static_cast<uint64_t>(c.numMoeLayers());
  const u128 denseLayers = layers - moeLayers;
  u128 tensors = layers * (floats + projections * scaleFactor) +
                 denseLayers * 3 * scaleFactor + 3; // embed, norm, head
  params = layers * params + denseLayers * 3 * u128(c.intermediateSize) * d +
           2 * u128(c.vocabSize) * d + d;
  if (moeLayers > 0) {
    const u128 e = c.nRoutedExperts, w = c.moeIntermediateSize;
    tensors += moeLayers * (1 + (c.hasSelectionBias() ? 1 : 0) +
                            (e * 3 + (c.nSharedExperts > 0 ? 3 : 0)) *
                                scaleFactor);
    params += moeLayers * (e * d + e + e * 3 * w * d +
                           3 * u128(c.nSharedExperts) * w * d);
  }
  if (tensors > kMaxTensors)
    failField(source, "n_routed_experts",
              "the model would hold more than " + std::to_string(kMaxTensors) +
                  " weight tensors");
  if (params > kMaxParameters)
    throw ConfigError{source + ": the model would have more than 2^46 (" +
                      std::to_string(kMaxParameters) +
                      ") parameters; its sizes multiply past what this "
                      "compiler and runtime address"};
}

ModelConfig parseObject(const json &root, const std::string &source) {
  FieldReader r(root, source);
  ModelConfig c;

  std::optional<std::string> modelType = r.optionalString("model_type");
  if (!modelType)
    r.fail("model_type", "missing (required)");
  if (*modelType != "deepseek_v3" && *modelType != "deepseek_v2")
    r.fail("model_type", "unsupported model type '" + *modelType +
                             "' (expected \"deepseek_v3\" or \"deepseek_v2\")");
  c.modelType = *modelType;
  const Defaults &d = c.modelType == "deepseek_v2" ? kV2Defaults : kV3Defaults;

  // Shape-determining sizes: required.
  c.vocabSize = r.requiredInt("vocab_size");
  requirePositive(r, "vocab_size", c.vocabSize);
  c.hiddenSize = r.requiredInt("hidden_size");
  requirePositive(r, "hidden_size", c.hiddenSize);
  c.intermediateSize = r.requiredInt("intermediate_size");
  requirePositive(r, "intermediate_size", c.intermediateSize);
  c.numHiddenLayers = r.requiredInt("num_hidden_layers");
  requirePositive(r, "num_hidden_layers", c.numHiddenLayers);
  c.numAttentionHeads = r.requiredInt("num_attention_heads");
  requirePositive(r, "num_attention_heads", c.numAttentionHeads);

  // null (HF) and 0 (official ModelArgs) both mean a plain q projection.
  c.qLoraRank = r.requiredNullableInt("q_lora_rank");
  if (c.qLoraRank && *c.qLoraRank == 0)
    c.qLoraRank.reset();
  if (c.qLoraRank)
    requirePositive(r, "q_lora_rank", *c.qLoraRank);
  c.kvLoraRank = r.requiredInt("kv_lora_rank");
  requirePositive(r, "kv_lora_rank", c.kvLoraRank);
  c.qkNopeHeadDim = r.requiredInt("qk_nope_head_dim");
  requirePositive(r, "qk_nope_head_dim", c.qkNopeHeadDim);
  c.qkRopeHeadDim = r.requiredInt("qk_rope_head_dim");
  requirePositive(r, "qk_rope_head_dim", c.qkRopeHeadDim);
  if (c.qkRopeHeadDim % 2 != 0)
    r.fail("qk_rope_head_dim", "must be even (RoPE rotates pairs), got " +
                                   std::to_string(c.qkRopeHeadDim));
  c.vHeadDim = r.requiredInt("v_head_dim");
  requirePositive(r, "v_head_dim", c.vHeadDim);

  // Experts. n_routed_experts must be spelled out (null or 0 => all dense):
  // HF's default of 64/256 experts is never what a small model means.
  c.nRoutedExperts = r.requiredNullableInt("n_routed_experts").value_or(0);
  requireNonNegative(r, "n_routed_experts", c.nRoutedExperts);
  bool hasMoe = c.nRoutedExperts > 0;
  c.nSharedExperts = r.optionalInt("n_shared_experts", d.nSharedExperts);
  requireNonNegative(r, "n_shared_experts", c.nSharedExperts);
  c.firstKDenseReplace =
      r.optionalInt("first_k_dense_replace", d.firstKDenseReplace);
  requireNonNegative(r, "first_k_dense_replace", c.firstKDenseReplace);
  c.moeLayerFreq = r.optionalInt("moe_layer_freq", 1);
  requirePositive(r, "moe_layer_freq", c.moeLayerFreq);
  if (hasMoe) {
    c.moeIntermediateSize = r.requiredInt("moe_intermediate_size");
    requirePositive(r, "moe_intermediate_size", c.moeIntermediateSize);
    c.numExpertsPerTok = r.requiredInt("num_experts_per_tok");
    requirePositive(r, "num_experts_per_tok", c.numExpertsPerTok);
  } else {
    // Unused by a dense model, but still type-checked when present.
    c.moeIntermediateSize = r.optionalInt("moe_intermediate_size", 0);
    requireNonNegative(r, "moe_intermediate_size", c.moeIntermediateSize);
    c.numExpertsPerTok = r.optionalInt("num_experts_per_tok", 0);
    requireNonNegative(r, "num_experts_per_tok", c.numExpertsPerTok);
  }
  c.nGroup = r.optionalInt("n_group", d.nGroup);
  requirePositive(r, "n_group", c.nGroup);
  c.topkGroup = r.optionalInt("topk_group", d.topkGroup);
  requirePositive(r, "topk_group", c.topkGroup);
  c.routedScalingFactor =
      r.optionalNumber("routed_scaling_factor", d.routedScalingFactor);
  if (c.routedScalingFactor <= 0.0)
    r.fail("routed_scaling_factor",
           "must be positive, got " + formatNumber(c.routedScalingFactor));
  c.scoringFunc = d.scoringFunc;
  if (std::optional<std::string> s = r.optionalString("scoring_func")) {
    if (*s == "sigmoid")
      c.scoringFunc = ScoringFunc::Sigmoid;
    else if (*s == "softmax")
      c.scoringFunc = ScoringFunc::Softmax;
    else
      r.fail("scoring_func", "unsupported value '" + *s +
                                 "' (expected \"sigmoid\" or \"softmax\")");
  }
  c.topkMethod = d.topkMethod;
  if (std::optional<std::string> s = r.optionalString("topk_method")) {
    if (*s == "noaux_tc")
      c.topkMethod = TopkMethod::NoauxTc;
    else if (*s == "greedy")
      c.topkMethod = TopkMethod::Greedy;
    else if (*s == "group_limited_greedy")
      c.topkMethod = TopkMethod::GroupLimitedGreedy;
    else
      r.fail("topk_method",
             "unsupported value '" + *s +
                 "' (expected \"noaux_tc\", \"greedy\" or "
                 "\"group_limited_greedy\")");
  }
  c.normTopkProb = r.optionalBool("norm_topk_prob", d.normTopkProb);

  // Numerics and positions.
  c.rmsNormEps = r.optionalNumber("rms_norm_eps", 1e-6);
  if (c.rmsNormEps <= 0.0)
    r.fail("rms_norm_eps",
           "must be positive, got " + formatNumber(c.rmsNormEps));
  const json *ropeParams = r.find("rope_parameters");
  if (r.isUnset("rope_theta") && ropeParams && ropeParams->is_object() &&
      ropeParams->contains("rope_theta")) {
    FieldReader rp(*ropeParams, source, "rope_parameters.");
    c.ropeTheta = rp.optionalNumber("rope_theta", 10000.0);
  } else {
    c.ropeTheta = r.optionalNumber("rope_theta", 10000.0);
  }
  if (c.ropeTheta <= 0.0)
    r.fail("rope_theta", "must be positive, got " + formatNumber(c.ropeTheta));
  if (!r.isUnset("rope_scaling"))
    c.yarn = parseRopeScaling(*r.find("rope_scaling"), source, "rope_scaling");
  else if (ropeParams && !ropeParams->is_null())
    c.yarn = parseRopeScaling(*ropeParams, source, "rope_parameters");
  c.maxPositionEmbeddings =
      r.optionalInt("max_position_embeddings", d.maxPositionEmbeddings);
  requirePositive(r, "max_position_embeddings", c.maxPositionEmbeddings);

  // Odds and ends.
  c.tieWordEmbeddings = r.optionalBool("tie_word_embeddings", false);
  c.numNextnPredictLayers = r.optionalInt("num_nextn_predict_layers", 0);
  requireNonNegative(r, "num_nextn_predict_layers", c.numNextnPredictLayers);
  c.bosTokenId = r.optionalInt("bos_token_id", d.bosTokenId);
  c.eosTokenId = d.eosTokenId;
  if (!r.isUnset("eos_token_id")) {
    // generation configs list several stop tokens; the first is the primary.
    const json &eos = *r.find("eos_token_id");
    if (eos.is_array()) {
      if (eos.empty())
        r.fail("eos_token_id", "expected an integer or a non-empty list of "
                               "integers, got an empty list");
      for (const json &e : eos)
        r.toInt("eos_token_id", e);
      c.eosTokenId = r.toInt("eos_token_id", eos[0]);
    } else {
      c.eosTokenId = r.toInt("eos_token_id", eos);
    }
  }
  if (std::optional<std::string> act = r.optionalString("hidden_act"))
    if (*act != "silu")
      r.fail("hidden_act",
             "unsupported activation '" + *act + "' (only \"silu\")");
  for (const char *bias : {"attention_bias", "mlp_bias"})
    if (r.optionalBool(bias, false))
      r.fail(bias, "biases are not supported (DeepSeek-V3 has none)");
  if (const json *q = r.find("quantization_config"))
    c.fp8 = parseQuantization(*q, source);

  // Relations between fields.
  if (c.firstKDenseReplace > c.numHiddenLayers)
    r.fail("first_k_dense_replace",
           "must be at most num_hidden_layers (" +
               std::to_string(c.numHiddenLayers) + "), " +
               r.got("first_k_dense_replace", c.firstKDenseReplace));
  if (hasMoe) {
    if (c.topkGroup > c.nGroup)
      r.fail("topk_group", "must be at most n_group (" +
                               std::to_string(c.nGroup) + "), " +
                               r.got("topk_group", c.topkGroup));
    if (c.nRoutedExperts % c.nGroup != 0)
      r.fail("n_group", "must divide n_routed_experts (" +
                            std::to_string(c.nRoutedExperts) + "), " +
                            r.got("n_group", c.nGroup));
    if (c.numExpertsPerTok > c.nRoutedExperts)
      r.fail("num_experts_per_tok", "must be at most n_routed_experts (" +
                                        std::to_string(c.nRoutedExperts) +
                                        "), got " +
                                        std::to_string(c.numExpertsPerTok));
    int64_t reachable = c.topkGroup * (c.nRoutedExperts / c.nGroup);
    if (c.numExpertsPerTok > reachable)
      r.fail("num_experts_per_tok",
             "must be at most topk_group * n_routed_experts / n_group = " +
                 std::to_string(reachable) + ", got " +
                 std::to_string(c.numExpertsPerTok));
    // noaux_tc ranks a group by the sum of its two best experts.
    if (c.topkMethod == TopkMethod::NoauxTc && c.nGroup > 1 &&
        c.nRoutedExperts / c.nGroup < 2)
      r.fail("n_group", "noaux_tc ranks groups by their top-2 experts, so "
                        "each group needs at least 2 experts; n_routed_experts"
                        " (" +
                            std::to_string(c.nRoutedExperts) + ") / n_group (" +
                            std::to_string(c.nGroup) + ") = " +
                            std::to_string(c.nRoutedExperts / c.nGroup));
    if (c.nSharedExperts * c.moeIntermediateSize > kMaxSize)
      r.fail("n_shared_experts", "n_shared_experts * moe_intermediate_size "
                                 "exceeds " +
                                     std::to_string(kMaxSize));
  }
  // Widest projection dimensions must stay addressable (see kMaxSize).
  int64_t heads = c.numAttentionHeads;
  if (heads * (c.qkHeadDim() + c.vHeadDim) > kMaxSize ||
      c.kvLoraRank + c.qkRopeHeadDim > kMaxSize)
    r.fail("num_attention_heads",
           "the attention projection sizes exceed " + std::to_string(kMaxSize));
  checkModelSize(c, source);
  return c;
}

} // namespace

ConfigParseResult parseModelConfig(const std::string &jsonText,
                                   const std::string &sourceName) {
  ConfigParseResult result;
  try {
    json root;
    std::string jsonError = detail::parseJsonStrict(
        jsonText.data(), jsonText.data() + jsonText.size(), root);
    if (!jsonError.empty()) {
      result.error = sourceName + ": invalid JSON: " + jsonError;
      return result;
    }
    if (!root.is_object()) {
      result.error = sourceName + ": top level must be a JSON object, got " +
                     detail::jsonKind(root);
      return result;
    }
    result.config = parseObject(root, sourceName);
  } catch (const ConfigError &e) {
    result.error = e.message;
  } catch (const std::exception &e) {
    result.error = sourceName + ": " + e.what();
  } catch (...) {
    result.error = sourceName + ": unknown error while parsing";
  }
  // Values quoted from the input (model_type, ...) may hold control
  // characters; keep the error one line.
  result.error = escapeControlChars(result.error);
  return result;
}

ConfigParseResult loadModelConfig(const std::string &path) {
  ConfigParseResult result;
  try {
    std::string file = path;
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      file = path + (path.empty() || path.back() == '/' ? "" : "/") +
             "config.json";
    std::string text;
    std::string error = detail::readWholeFile(file, text);
    if (!error.empty()) {
      result.error = escapeControlChars(error);
      return result;
    }
    return parseModelConfig(text, file);
  } catch (const std::exception &e) {
    result.error = path + ": " + e.what();
  } catch (...) {
    result.error = path + ": unknown error while reading";
  }
  return result;
}

std::string modelConfigToJson(const ModelConfig &c) {
  try {
    ordered_json j;
    j["model_type"] = c.modelType;
    j["vocab_size"] = c.vocabSize;
    j["hidden_size"] = c.hiddenSize;
    j["intermediate_size"] = c.intermediateSize;
    j["moe_intermediate_size"] = c.moeIntermediateSize;
    j["num_hidden_layers"] = c.numHiddenLayers;
    j["first_k_dense_replace"] = c.firstKDenseReplace;
    j["moe_layer_freq"] = c.moeLayerFreq;
    j["num_attention_heads"] = c.numAttentionHeads;
    j["n_routed_experts"] = c.nRoutedExperts;
    j["n_shared_experts"] = c.nSharedExperts;
    j["num_experts_per_tok"] = c.numExpertsPerTok;
    j["n_group"] = c.nGroup;
    j["topk_group"] = c.topkGroup;
    j["routed_scaling_factor"] = c.routedScalingFactor;
    j["scoring_func"] =
        c.scoringFunc == ScoringFunc::Sigmoid ? "sigmoid" : "softmax";
    j["topk_method"] = c.topkMethod == TopkMethod::NoauxTc ? "noaux_tc"
                       : c.topkMethod == TopkMethod::Greedy
                           ? "greedy"
                           : "group_limited_greedy";
    j["norm_topk_prob"] = c.normTopkProb;
    j["q_lora_rank"] = c.qLoraRank ? ordered_json(*c.qLoraRank) : nullptr;
    j["kv_lora_rank"] = c.kvLoraRank;
    j["qk_nope_head_dim"] = c.qkNopeHeadDim;
    j["qk_rope_head_dim"] = c.qkRopeHeadDim;
    j["v_head_dim"] = c.vHeadDim;
    j["rms_norm_eps"] = c.rmsNormEps;
    j["rope_theta"] = c.ropeTheta;
    if (c.yarn) {
      ordered_json y;
      y["type"] = "yarn";
      y["factor"] = c.yarn->factor;
      y["original_max_position_embeddings"] =
          c.yarn->originalMaxPositionEmbeddings;
      y["beta_fast"] = c.yarn->betaFast;
      y["beta_slow"] = c.yarn->betaSlow;
      y["mscale"] = c.yarn->mscale;
      y["mscale_all_dim"] = c.yarn->mscaleAllDim;
      j["rope_scaling"] = std::move(y);
    } else {
      j["rope_scaling"] = nullptr;
    }
    j["max_position_embeddings"] = c.maxPositionEmbeddings;
    j["tie_word_embeddings"] = c.tieWordEmbeddings;
    j["num_nextn_predict_layers"] = c.numNextnPredictLayers;
    j["bos_token_id"] = c.bosTokenId;
    j["eos_token_id"] = c.eosTokenId;
    j["hidden_act"] = "silu";
    if (c.fp8) {
      ordered_json q;
      q["quant_method"] = "fp8";
      q["fmt"] = "e4m3";
      q["activation_scheme"] = "dynamic";
      q["weight_block_size"] = {c.fp8->blockRows, c.fp8->blockCols};
      j["quantization_config"] = std::move(q);
    }
    return j.dump(2);
  } catch (...) {
    // Only reachable on allocation failure or a non-UTF-8 model_type.
    return "{}";
  }
}

} // namespace dsv3
