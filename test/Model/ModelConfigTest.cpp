//===- ModelConfigTest.cpp - Tests of config.json parsing -----------------===//

#include "TestConfigs.h"
#include "TestUtil.h"

#include "dsv3/Model/ModelConfig.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>

using namespace dsv3;
using namespace dsv3::test;
using nlohmann::json;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

/// Parses `text`; fails the test (and returns a default config) on error.
ModelConfig parseOk(const std::string &text) {
  ConfigParseResult r = parseModelConfig(text);
  EXPECT_TRUE(r) << r.error;
  return r ? *r.config : ModelConfig();
}

/// Parses `text` and returns the error (failing the test if it parsed).
/// The 671B config with `key` set to `value`.
std::string with(const std::string &key, json value,
                 const char *base = kConfig671B) {
  return configWith(base, key, std::move(value));
}

/// The 671B config without `key`.
std::string without(const std::string &key, const char *base = kConfig671B) {
  json j = json::parse(base);
  j.erase(key);
  return j.dump();
}

/// The smallest config of `modelType`: only the required fields.
json minimalConfig(const std::string &modelType) {
  return {{"model_type", modelType},
          {"vocab_size", 64},
          {"hidden_size", 32},
          {"intermediate_size", 48},
          {"num_hidden_layers", 4},
          {"num_attention_heads", 2},
          {"q_lora_rank", nullptr},
          {"kv_lora_rank", 16},
          {"qk_nope_head_dim", 8},
          {"qk_rope_head_dim", 4},
          {"v_head_dim", 8},
          {"n_routed_experts", 16},
          {"moe_intermediate_size", 8},
          {"num_experts_per_tok", 2}};
}

//===----------------------------------------------------------------------===//
// Valid configs
//===----------------------------------------------------------------------===//

TEST(ModelConfig, Parses671BConfig) {
  ModelConfig c = parseOk(kConfig671B);
  EXPECT_EQ(c.modelType, "deepseek_v3");
  EXPECT_EQ(c.vocabSize, 129280);
  EXPECT_EQ(c.hiddenSize, 7168);
  EXPECT_EQ(c.intermediateSize, 18432);
  EXPECT_EQ(c.moeIntermediateSize, 2048);
  EXPECT_EQ(c.numHiddenLayers, 61);
  EXPECT_EQ(c.firstKDenseReplace, 3);
  EXPECT_EQ(c.moeLayerFreq, 1);
  EXPECT_EQ(c.numAttentionHeads, 128);
  EXPECT_EQ(c.nRoutedExperts, 256);
  EXPECT_EQ(c.nSharedExperts, 1);
  EXPECT_EQ(c.numExpertsPerTok, 8);
  EXPECT_EQ(c.nGroup, 8);
  EXPECT_EQ(c.topkGroup, 4);
  EXPECT_DOUBLE_EQ(c.routedScalingFactor, 2.5);
  EXPECT_EQ(c.scoringFunc, ScoringFunc::Sigmoid);
  EXPECT_EQ(c.topkMethod, TopkMethod::NoauxTc);
  EXPECT_TRUE(c.hasSelectionBias());
  EXPECT_TRUE(c.normTopkProb);
  ASSERT_TRUE(c.qLoraRank.has_value());
  EXPECT_EQ(*c.qLoraRank, 1536);
  EXPECT_EQ(c.kvLoraRank, 512);
  EXPECT_EQ(c.qkNopeHeadDim, 128);
  EXPECT_EQ(c.qkRopeHeadDim, 64);
  EXPECT_EQ(c.qkHeadDim(), 192);
  EXPECT_EQ(c.vHeadDim, 128);
  EXPECT_DOUBLE_EQ(c.rmsNormEps, 1e-6);
  EXPECT_DOUBLE_EQ(c.ropeTheta, 10000.0);
  ASSERT_TRUE(c.yarn.has_value());
  EXPECT_DOUBLE_EQ(c.yarn->factor, 40.0);
  EXPECT_EQ(c.yarn->originalMaxPositionEmbeddings, 4096);
  EXPECT_DOUBLE_EQ(c.yarn->betaFast, 32.0);
  EXPECT_DOUBLE_EQ(c.yarn->betaSlow, 1.0);
  EXPECT_DOUBLE_EQ(c.yarn->mscale, 1.0);
  EXPECT_DOUBLE_EQ(c.yarn->mscaleAllDim, 1.0);
  EXPECT_EQ(c.maxPositionEmbeddings, 163840);
  EXPECT_FALSE(c.tieWordEmbeddings);
  EXPECT_EQ(c.numNextnPredictLayers, 1);
  EXPECT_EQ(c.bosTokenId, 0);
  EXPECT_EQ(c.eosTokenId, 1);
  ASSERT_TRUE(c.fp8.has_value());
  EXPECT_EQ(c.fp8->blockRows, 128);
  EXPECT_EQ(c.fp8->blockCols, 128);
  EXPECT_EQ(c.numDenseLayers(), 3);
  EXPECT_EQ(c.numMoeLayers(), 58);
  EXPECT_FALSE(c.isMoeLayer(2));
  EXPECT_TRUE(c.isMoeLayer(3));
  // Spec §3.6: 192^-0.5 * (0.1 * ln 40 + 1)^2.
  EXPECT_NEAR(c.softmaxScale(), 0.1352337788608801, 1e-15);
}

TEST(ModelConfig, ParsesTinyV3) {
  ModelConfig c = parseOk(kConfigTinyV3);
  EXPECT_EQ(c.vocabSize, 512);
  EXPECT_EQ(c.hiddenSize, 128);
  EXPECT_EQ(c.nGroup, 4);
  EXPECT_EQ(c.topkGroup, 2);
  EXPECT_EQ(c.qLoraRank, std::optional<int64_t>(64));
  EXPECT_TRUE(c.yarn.has_value());
  EXPECT_FALSE(c.fp8.has_value());
  EXPECT_EQ(c.numDenseLayers(), 1);
  EXPECT_EQ(c.numMoeLayers(), 2);
  double m = 0.1 * std::log(40.0) + 1.0;
  EXPECT_NEAR(c.softmaxScale(), m * m / std::sqrt(24.0), 1e-15);
}

TEST(ModelConfig, ParsesTinyV2Lite) {
  ModelConfig c = parseOk(kConfigTinyV2Lite);
  EXPECT_FALSE(c.qLoraRank.has_value());
  EXPECT_FALSE(c.yarn.has_value());
  EXPECT_EQ(c.scoringFunc, ScoringFunc::Softmax);
  EXPECT_EQ(c.topkMethod, TopkMethod::Greedy);
  EXPECT_FALSE(c.hasSelectionBias());
  EXPECT_FALSE(c.normTopkProb);
  EXPECT_EQ(c.nSharedExperts, 2);
  EXPECT_EQ(c.nRoutedExperts, 6);
  // No YaRN => plain qk_head_dim^-0.5.
  EXPECT_DOUBLE_EQ(c.softmaxScale(), 1.0 / std::sqrt(24.0));
}

TEST(ModelConfig, ParsesTinyV3Fp8) {
  ModelConfig c = parseOk(kConfigTinyV3Fp8);
  ASSERT_TRUE(c.fp8.has_value());
  EXPECT_EQ(c.fp8->blockRows, 128);
  EXPECT_EQ(c.hiddenSize, 320);
  EXPECT_EQ(c.nGroup, 2);
  EXPECT_EQ(c.topkGroup, 1);
}

TEST(ModelConfig, OptionalFieldsTakeHfDefaultsPerModelType) {
  ModelConfig v3 = parseOk(minimalConfig("deepseek_v3").dump());
  EXPECT_EQ(v3.scoringFunc, ScoringFunc::Sigmoid);
  EXPECT_EQ(v3.topkMethod, TopkMethod::NoauxTc);
  EXPECT_TRUE(v3.normTopkProb);
  EXPECT_EQ(v3.nGroup, 8);
  EXPECT_EQ(v3.topkGroup, 4);
  EXPECT_DOUBLE_EQ(v3.routedScalingFactor, 2.5);
  EXPECT_EQ(v3.firstKDenseReplace, 3);
  EXPECT_EQ(v3.moeLayerFreq, 1);
  EXPECT_EQ(v3.numNextnPredictLayers, 0);
  EXPECT_FALSE(v3.yarn.has_value());
  EXPECT_FALSE(v3.fp8.has_value());

  ModelConfig v2 = parseOk(minimalConfig("deepseek_v2").dump());
  EXPECT_EQ(v2.scoringFunc, ScoringFunc::Softmax);
  EXPECT_EQ(v2.topkMethod, TopkMethod::Greedy);
  EXPECT_FALSE(v2.normTopkProb);
  EXPECT_EQ(v2.nGroup, 1);
  EXPECT_EQ(v2.topkGroup, 1);
  EXPECT_EQ(v2.firstKDenseReplace, 0);
  EXPECT_EQ(v2.nSharedExperts, 2);
}

TEST(ModelConfig, NullOrZeroRoutedExpertsMeansDense) {
  for (json experts : {json(nullptr), json(0)}) {
    json j = minimalConfig("deepseek_v3");
    j["n_routed_experts"] = experts;
    j.erase("moe_intermediate_size");
    j.erase("num_experts_per_tok");
    ModelConfig c = parseOk(j.dump());
    EXPECT_EQ(c.nRoutedExperts, 0);
    EXPECT_EQ(c.numMoeLayers(), 0);
    EXPECT_EQ(c.numDenseLayers(), 4);
  }
}

TEST(ModelConfig, QLoraRankZeroMeansPlainProjection) {
  ModelConfig c = parseOk(with("q_lora_rank", 0));
  EXPECT_FALSE(c.qLoraRank.has_value());
}

TEST(ModelConfig, EosTokenListTakesFirst) {
  EXPECT_EQ(parseOk(with("eos_token_id", {7, 8})).eosTokenId, 7);
  EXPECT_THAT(configParseError(with("eos_token_id", json::array())),
              HasSubstr("field 'eos_token_id'"));
  EXPECT_THAT(configParseError(with("eos_token_id", {7, "x"})),
              HasSubstr("field 'eos_token_id': expected an integer"));
}

TEST(ModelConfig, RopeTypeKeyAndDefaultType) {
  json j = json::parse(kConfig671B);
  j["rope_scaling"].erase("type");
  j["rope_scaling"]["rope_type"] = "yarn";
  EXPECT_TRUE(parseOk(j.dump()).yarn.has_value());
  ModelConfig c = parseOk(with("rope_scaling", {{"rope_type", "default"}}));
  EXPECT_FALSE(c.yarn.has_value());
  EXPECT_DOUBLE_EQ(c.softmaxScale(), 1.0 / std::sqrt(192.0));
}

TEST(ModelConfig, MscaleAllDimAbsentMeansNoSoftmaxMscale) {
  json j = json::parse(kConfig671B);
  j["rope_scaling"].erase("mscale_all_dim");
  ModelConfig c = parseOk(j.dump());
  EXPECT_DOUBLE_EQ(c.yarn->mscaleAllDim, 0.0);
  EXPECT_DOUBLE_EQ(c.softmaxScale(), 1.0 / std::sqrt(192.0));
}

TEST(ModelConfig, JsonRoundTrip) {
  for (const char *text :
       {kConfig671B, kConfigTinyV3, kConfigTinyV2Lite, kConfigTinyV3Fp8}) {
    ModelConfig c = parseOk(text);
    std::string once = modelConfigToJson(c);
    ModelConfig again = parseOk(once);
    EXPECT_EQ(modelConfigToJson(again), once);
    EXPECT_EQ(again.qLoraRank, c.qLoraRank);
    EXPECT_EQ(again.yarn.has_value(), c.yarn.has_value());
    EXPECT_EQ(again.fp8.has_value(), c.fp8.has_value());
    EXPECT_DOUBLE_EQ(again.softmaxScale(), c.softmaxScale());
  }
}

TEST(ModelConfig, LoadFromDirectoryAndFile) {
  TempDir dir;
  std::string file = dir.write("config.json", kConfigTinyV3);
  ConfigParseResult fromDir = loadModelConfig(dir.path());
  ASSERT_TRUE(fromDir) << fromDir.error;
  EXPECT_EQ(fromDir.config->hiddenSize, 128);
  ConfigParseResult fromFile = loadModelConfig(file);
  ASSERT_TRUE(fromFile) << fromFile.error;

  dir.write("config.json", R"({"model_type": "deepseek_v3"})");
  ConfigParseResult bad = loadModelConfig(dir.path());
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error, StartsWith(file + ": field 'vocab_size'"));

  ConfigParseResult missing = loadModelConfig(dir.file("nope.json"));
  ASSERT_FALSE(missing);
  EXPECT_THAT(missing.error, HasSubstr("nope.json: cannot open"));
}

//===----------------------------------------------------------------------===//
// Errors: one test per class
//===----------------------------------------------------------------------===//

TEST(ModelConfigError, MissingRequiredField) {
  EXPECT_EQ(configParseError(without("hidden_size")),
            "config.json: field 'hidden_size': missing (required)");
  EXPECT_THAT(configParseError(without("q_lora_rank")),
              HasSubstr("field 'q_lora_rank': missing"));
  EXPECT_THAT(configParseError(without("model_type")),
              HasSubstr("field 'model_type': missing"));
  // Needed only by MoE models.
  EXPECT_THAT(configParseError(without("num_experts_per_tok")),
              HasSubstr("field 'num_experts_per_tok': missing"));
  json j = json::parse(kConfig671B);
  j["rope_scaling"].erase("factor");
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'rope_scaling.factor': missing"));
}

TEST(ModelConfigError, StringWhereIntegerExpected) {
  EXPECT_EQ(configParseError(with("hidden_size", "7168")),
            "config.json: field 'hidden_size': expected an integer, got "
            "string \"7168\"");
}

TEST(ModelConfigError, FloatWhereIntegerExpected) {
  EXPECT_EQ(configParseError(with("num_attention_heads", 12.5)),
            "config.json: field 'num_attention_heads': expected an integer, "
            "got number 12.5");
  EXPECT_THAT(configParseError(with("n_group", 8.0)),
              HasSubstr("field 'n_group': expected an integer"));
}

TEST(ModelConfigError, OtherIllTypedFields) {
  EXPECT_THAT(configParseError(with("norm_topk_prob", 1)),
              HasSubstr("field 'norm_topk_prob': expected a boolean, got "
                        "integer 1"));
  EXPECT_THAT(configParseError(with("rms_norm_eps", "1e-6")),
              HasSubstr("field 'rms_norm_eps': expected a number"));
  EXPECT_THAT(configParseError(with("rope_scaling", "yarn")),
              HasSubstr("field 'rope_scaling': expected null or an object"));
  EXPECT_THAT(configParseError(with("vocab_size", nullptr)),
              HasSubstr("field 'vocab_size': expected an integer, got null"));
  EXPECT_THAT(
      configParseError(with("hidden_size", json::parse("18446744073709551615"))),
      HasSubstr("field 'hidden_size': integer 18446744073709551615 is "
                "out of range"));
}

TEST(ModelConfigError, NonPositiveSize) {
  EXPECT_EQ(configParseError(with("kv_lora_rank", 0)),
            "config.json: field 'kv_lora_rank': must be positive, got 0");
  EXPECT_THAT(configParseError(with("vocab_size", -5)),
              HasSubstr("field 'vocab_size': must be positive, got -5"));
  EXPECT_THAT(configParseError(with("n_shared_experts", -1)),
              HasSubstr("field 'n_shared_experts': must not be negative"));
  EXPECT_THAT(configParseError(with("hidden_size", 1LL << 40)),
              HasSubstr("field 'hidden_size': must be at most 2147483647"));
}

TEST(ModelConfigError, OddRopeHeadDim) {
  EXPECT_EQ(configParseError(with("qk_rope_head_dim", 63)),
            "config.json: field 'qk_rope_head_dim': must be even (RoPE "
            "rotates pairs), got 63");
}

TEST(ModelConfigError, TopkGroupExceedsNGroup) {
  EXPECT_EQ(configParseError(with("topk_group", 9)),
            "config.json: field 'topk_group': must be at most n_group (8), "
            "got 9");
}

TEST(ModelConfigError, NGroupMustDivideExperts) {
  json j = json::parse(kConfig671B);
  j["n_group"] = 7;
  j["topk_group"] = 4;
  EXPECT_EQ(configParseError(j.dump()),
            "config.json: field 'n_group': must divide n_routed_experts "
            "(256), got 7");
}

TEST(ModelConfigError, DefaultedValueIsPointedOut) {
  // 6 experts with the deepseek_v3 default n_group = 8.
  json j = minimalConfig("deepseek_v3");
  j["n_routed_experts"] = 6;
  j["topk_group"] = 1;
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'n_group': must divide n_routed_experts (6), "
                        "got 8 (the default; the field is absent)"));
}

TEST(ModelConfigError, TooManyExpertsPerToken) {
  EXPECT_EQ(configParseError(with("num_experts_per_tok", 257)),
            "config.json: field 'num_experts_per_tok': must be at most "
            "n_routed_experts (256), got 257");
  // 4 groups of 32 experts reachable.
  EXPECT_EQ(configParseError(with("num_experts_per_tok", 129)),
            "config.json: field 'num_experts_per_tok': must be at most "
            "topk_group * n_routed_experts / n_group = 128, got 129");
}

TEST(ModelConfigError, NoauxTcNeedsTwoExpertsPerGroup) {
  json j = json::parse(kConfigTinyV3);
  j["n_group"] = 8;
  j["topk_group"] = 2;
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'n_group': noaux_tc ranks groups by their "
                        "top-2 experts"));
}

TEST(ModelConfigError, FirstKDenseBeyondLayers) {
  EXPECT_EQ(configParseError(with("first_k_dense_replace", 62)),
            "config.json: field 'first_k_dense_replace': must be at most "
            "num_hidden_layers (61), got 62");
}

TEST(ModelConfig, GroupLimitedGreedyHasNoSelectionBias) {
  // DeepSeek-V2's routing: groups ranked by their best score, no bias.
  ConfigParseResult r = parseModelConfig(
      with("topk_method", "group_limited_greedy"));
  ASSERT_TRUE(r) << r.error;
  EXPECT_EQ(r.config->topkMethod, TopkMethod::GroupLimitedGreedy);
  EXPECT_FALSE(r.config->hasSelectionBias());
  EXPECT_NE(modelConfigToJson(*r.config).find("\"group_limited_greedy\""),
            std::string::npos);
}

TEST(ModelConfigError, UnsupportedEnumValues) {
  EXPECT_THAT(configParseError(with("scoring_func", "relu")),
              HasSubstr("field 'scoring_func': unsupported value 'relu'"));
  EXPECT_THAT(configParseError(with("topk_method", "top1")),
              HasSubstr("field 'topk_method': unsupported value 'top1'"));
  EXPECT_THAT(configParseError(with("hidden_act", "gelu")),
              HasSubstr("field 'hidden_act': unsupported activation 'gelu'"));
  EXPECT_THAT(configParseError(with("attention_bias", true)),
              HasSubstr("field 'attention_bias': biases are not supported"));
}

TEST(ModelConfigError, UnsupportedRopeScaling) {
  json j = json::parse(kConfig671B);
  j["rope_scaling"]["type"] = "linear";
  EXPECT_EQ(configParseError(j.dump()),
            "config.json: field 'rope_scaling': unsupported RoPE scaling type "
            "'linear' (only \"yarn\" or null is supported)");
}

TEST(ModelConfigError, BadYarnParameters) {
  json j = json::parse(kConfig671B);
  j["rope_scaling"]["factor"] = 0.5;
  EXPECT_EQ(configParseError(j.dump()),
            "config.json: field 'rope_scaling.factor': must be at least 1, "
            "got 0.5");
  j = json::parse(kConfig671B);
  j["rope_scaling"]["beta_fast"] = 1;
  EXPECT_EQ(configParseError(j.dump()),
            "config.json: field 'rope_scaling.beta_fast': must be greater "
            "than beta_slow (1), got 1");
}

TEST(ModelConfigError, UnsupportedQuantization) {
  json j = json::parse(kConfig671B);
  j["quantization_config"]["quant_method"] = "gptq";
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'quantization_config.quant_method': "
                        "unsupported quantisation 'gptq'"));
  j = json::parse(kConfig671B);
  j["quantization_config"]["weight_block_size"] = {64, 64};
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'quantization_config.weight_block_size': "
                        "unsupported block size [64,64]"));
  j = json::parse(kConfig671B);
  j["quantization_config"]["fmt"] = "e5m2";
  EXPECT_THAT(configParseError(j.dump()),
              HasSubstr("field 'quantization_config.fmt'"));
}

TEST(ModelConfigError, UnsupportedModelType) {
  EXPECT_EQ(configParseError(with("model_type", "llama")),
            "config.json: field 'model_type': unsupported model type 'llama' "
            "(expected \"deepseek_v3\" or \"deepseek_v2\")");
}

TEST(ModelConfigError, InvalidJson) {
  std::string e = configParseError("{\n  \"hidden_size\": 7168,\n  oops\n}");
  EXPECT_THAT(e, StartsWith("config.json: invalid JSON: parse error at line "
                            "3, column"));
  EXPECT_THAT(configParseError(""), HasSubstr("invalid JSON"));
  EXPECT_EQ(configParseError(std::string("{}\0{", 4)),
            "config.json: invalid JSON: NUL byte at offset 2");
}

TEST(ModelConfigError, NonObjectTopLevel) {
  EXPECT_EQ(configParseError("[1, 2]"),
            "config.json: top level must be a JSON object, got an array");
  EXPECT_EQ(configParseError("42"),
            "config.json: top level must be a JSON object, got an integer");
}

TEST(ModelConfigError, TruncatedTextNeverCrashes) {
  std::string text = kConfigTinyV3Fp8;
  for (size_t len = 0; len + 1 < text.size(); ++len) {
    ConfigParseResult r = parseModelConfig(text.substr(0, len));
    EXPECT_FALSE(r);
    EXPECT_THAT(r.error, StartsWith("config.json: invalid JSON"));
  }
}

TEST(ModelConfigError, SourceNamePrefixesErrors) {
  ConfigParseResult r = parseModelConfig("[]", "/ckpt/config.json");
  EXPECT_THAT(r.error, StartsWith("/ckpt/config.json: "));
}

} // namespace
