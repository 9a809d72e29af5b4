//===- ExpectedTensorsTest.cpp - Tests of checkpoint-vs-config checks -----===//

#include "TestConfigs.h"
#include "TestUtil.h"

#include "dsv3/Model/Checkpoint.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdlib>
#include <functional>

using namespace dsv3;
using namespace dsv3::test;
using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

ModelConfig configFrom(const std::string &text) {
  ConfigParseResult r = parseModelConfig(text);
  EXPECT_TRUE(r) << r.error;
  return r ? *r.config : ModelConfig();
}

const ExpectedTensor *findExpected(const std::vector<ExpectedTensor> &list,
                                   const std::string &name) {
  for (const ExpectedTensor &e : list)
    if (e.name == name)
      return &e;
  return nullptr;
}

/// Writes a checkpoint holding exactly what `config` expects, after
/// `mutate` edits the tensor list, and opens it.
Checkpoint writeCheckpoint(
    const TempDir &dir, const ModelConfig &config,
    const std::function<void(std::vector<FakeTensor> &)> &mutate = nullptr) {
  std::vector<FakeTensor> tensors = fakeTensorsFor(expectedTensors(config));
  if (mutate)
    mutate(tensors);
  dir.write("model.safetensors", safetensorsBytes(tensors));
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  EXPECT_TRUE(r) << r.error;
  return std::move(*r.checkpoint);
}

FakeTensor &tensorNamed(std::vector<FakeTensor> &tensors,
                        const std::string &name) {
  auto it = std::find_if(tensors.begin(), tensors.end(),
                         [&](const FakeTensor &t) { return t.name == name; });
  EXPECT_NE(it, tensors.end()) << name;
  return *it;
}

void eraseTensor(std::vector<FakeTensor> &tensors, const std::string &name) {
  tensors.erase(
      std::find_if(tensors.begin(), tensors.end(),
                   [&](const FakeTensor &t) { return t.name == name; }));
}

//===----------------------------------------------------------------------===//
// expectedTensors
//===----------------------------------------------------------------------===//

TEST(ExpectedTensors, Full671BList) {
  ModelConfig c = configFrom(kConfig671B);
  std::vector<ExpectedTensor> list = expectedTensors(c);
  // [INV] counts 91,991 tensors including the 1,564 of MTP layer 61.
  EXPECT_EQ(list.size(), 91991u - 1564u);
  EXPECT_EQ(list.front().name, "model.embed_tokens.weight");
  EXPECT_EQ(list.back().name, "lm_head.weight");

  // Spec §3.1 / §5.1 / §8.2 shapes and scale shapes.
  struct Case {
    const char *name;
    std::vector<int64_t> shape;
    DType dtype;
  };
  for (const Case &k : std::vector<Case>{
           {"model.layers.0.self_attn.q_a_proj.weight",
            {1536, 7168},
            DType::F8E4M3},
           {"model.layers.0.self_attn.q_a_proj.weight_scale_inv",
            {12, 56},
            DType::F32},
           {"model.layers.0.self_attn.q_b_proj.weight_scale_inv",
            {192, 12},
            DType::F32},
           {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight",
            {576, 7168},
            DType::F8E4M3},
           {"model.layers.0.self_attn.kv_a_proj_with_mqa.weight_scale_inv",
            {5, 56},
            DType::F32},
           {"model.layers.0.self_attn.kv_b_proj.weight_scale_inv",
            {256, 4},
            DType::F32},
           {"model.layers.0.self_attn.o_proj.weight",
            {7168, 16384},
            DType::F8E4M3},
           {"model.layers.0.self_attn.o_proj.weight_scale_inv",
            {56, 128},
            DType::F32},
           {"model.layers.2.mlp.gate_proj.weight_scale_inv",
            {144, 56},
            DType::F32},
           {"model.layers.2.mlp.down_proj.weight",
            {7168, 18432},
            DType::F8E4M3},
           {"model.layers.3.mlp.gate.weight", {256, 7168}, DType::BF16},
           {"model.layers.3.mlp.gate.e_score_correction_bias",
            {256},
            DType::F32},
           {"model.layers.60.mlp.experts.255.down_proj.weight_scale_inv",
            {56, 16},
            DType::F32},
           {"model.layers.60.mlp.shared_experts.up_proj.weight",
            {2048, 7168},
            DType::F8E4M3},
           {"model.layers.60.self_attn.q_a_layernorm.weight",
            {1536},
            DType::BF16},
           {"model.norm.weight", {7168}, DType::BF16},
       }) {
    const ExpectedTensor *e = findExpected(list, k.name);
    ASSERT_NE(e, nullptr) << k.name;
    EXPECT_EQ(e->shape, k.shape) << k.name;
    EXPECT_NE(std::find(e->dtypes.begin(), e->dtypes.end(), k.dtype),
              e->dtypes.end())
        << k.name;
  }
  // Projections must be FP8; norms, router, embeddings, head stay float.
  EXPECT_THAT(
      findExpected(list, "model.layers.5.mlp.experts.3.up_proj.weight")->dtypes,
      ElementsAre(DType::F8E4M3));
  EXPECT_THAT(findExpected(list, "lm_head.weight")->dtypes,
              ElementsAre(DType::F32, DType::BF16, DType::F16));
  EXPECT_EQ(findExpected(list, "model.layers.3.mlp.gate_proj.weight"), nullptr);
  EXPECT_EQ(findExpected(list, "model.layers.2.mlp.gate.weight"), nullptr);
  EXPECT_EQ(findExpected(list, "model.layers.61.input_layernorm.weight"),
            nullptr);
}

TEST(ExpectedTensors, Fp8PartialEdgeBlocks) {
  ModelConfig c = configFrom(kConfigTinyV3Fp8);
  std::vector<ExpectedTensor> list = expectedTensors(c);
  // hidden 320 => 3 column blocks, the last one partial.
  EXPECT_THAT(findExpected(list, "model.layers.0.self_attn.kv_a_proj_with_mqa."
                                 "weight_scale_inv")
                  ->shape,
              ElementsAre(1, 3));
  EXPECT_THAT(
      findExpected(list, "model.layers.0.mlp.down_proj.weight_scale_inv")
          ->shape,
      ElementsAre(3, 4));
  EXPECT_THAT(
      findExpected(list, "model.layers.0.self_attn.q_b_proj.weight")->shape,
      ElementsAre(192, 160));
  // 164 tensors in the golden file: the same count.
  EXPECT_EQ(list.size(), 163u);
}

TEST(ExpectedTensors, PlainQProjectionWithoutBias) {
  ModelConfig c = configFrom(kConfigTinyV2Lite);
  std::vector<ExpectedTensor> list = expectedTensors(c);
  const ExpectedTensor *q =
      findExpected(list, "model.layers.0.self_attn.q_proj.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_THAT(q->shape, ElementsAre(3 * 24, 96));
  EXPECT_EQ(findExpected(list, "model.layers.0.self_attn.q_a_proj.weight"),
            nullptr);
  EXPECT_EQ(
      findExpected(list, "model.layers.1.mlp.gate.e_score_correction_bias"),
      nullptr);
  // Two shared experts of width 24.
  EXPECT_THAT(
      findExpected(list, "model.layers.1.mlp.shared_experts.gate_proj.weight")
          ->shape,
      ElementsAre(48, 96));
  EXPECT_EQ(list.size(), 71u); // the golden file's 72 entries less __metadata__
}

TEST(ExpectedTensors, TiedEmbeddingsHaveNoHead) {
  ModelConfig c = configFrom(kConfigTinyV3);
  c.tieWordEmbeddings = true;
  EXPECT_EQ(findExpected(expectedTensors(c), "lm_head.weight"), nullptr);
}

TEST(ExpectedTensors, MtpNames) {
  ModelConfig c = configFrom(kConfigTinyV3); // 3 layers
  EXPECT_TRUE(isMtpTensorName("model.layers.3.eh_proj.weight", c));
  EXPECT_TRUE(isMtpTensorName("model.layers.17.mlp.gate.weight", c));
  EXPECT_FALSE(isMtpTensorName("model.layers.2.eh_proj.weight", c));
  EXPECT_FALSE(isMtpTensorName("model.layers.x.weight", c));
  EXPECT_FALSE(isMtpTensorName("model.layers.3", c));
  EXPECT_FALSE(isMtpTensorName("lm_head.weight", c));
}

//===----------------------------------------------------------------------===//
// validateCheckpoint
//===----------------------------------------------------------------------===//

TEST(ValidateCheckpoint, CompleteCheckpointPasses) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3Fp8);
  Checkpoint ckpt = writeCheckpoint(dir, c);
  EXPECT_EQ(validateCheckpoint(ckpt, c), "");
  EXPECT_TRUE(unexpectedTensors(ckpt, c).empty());
}

TEST(ValidateCheckpoint, MissingTensor) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3);
  Checkpoint ckpt = writeCheckpoint(dir, c, [](std::vector<FakeTensor> &t) {
    eraseTensor(t, "model.layers.1.mlp.experts.7.up_proj.weight");
  });
  EXPECT_EQ(validateCheckpoint(ckpt, c),
            dir.path() + ": missing tensor "
                         "'model.layers.1.mlp.experts.7.up_proj.weight' "
                         "(expected F32, BF16 or F16 [32, 128])");
}

TEST(ValidateCheckpoint, WrongShape) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3);
  Checkpoint ckpt = writeCheckpoint(dir, c, [](std::vector<FakeTensor> &t) {
    tensorNamed(t, "model.layers.0.self_attn.kv_b_proj.weight").shape = {128,
                                                                         31};
  });
  EXPECT_EQ(validateCheckpoint(ckpt, c),
            dir.file("model.safetensors") +
                ": tensor 'model.layers.0.self_attn.kv_b_proj.weight': shape "
                "[128, 31] but the config requires [128, 32]");
}

TEST(ValidateCheckpoint, WrongDtype) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3Fp8);
  Checkpoint ckpt = writeCheckpoint(dir, c, [](std::vector<FakeTensor> &t) {
    tensorNamed(t, "model.layers.2.mlp.experts.0.down_proj.weight").dtype =
        "BF16";
    tensorNamed(t, "model.norm.weight").dtype = "F8_E4M3";
  });
  std::string e = validateCheckpoint(ckpt, c);
  EXPECT_EQ(e, dir.file("model.safetensors") +
                   ": tensor 'model.layers.2.mlp.experts.0.down_proj.weight': "
                   "dtype BF16 but the config requires F8_E4M3 (and 1 more "
                   "problem)");
}

TEST(ValidateCheckpoint, Fp8MissingScale) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3Fp8);
  Checkpoint ckpt = writeCheckpoint(dir, c, [](std::vector<FakeTensor> &t) {
    eraseTensor(t, "model.layers.0.self_attn.o_proj.weight_scale_inv");
  });
  EXPECT_EQ(validateCheckpoint(ckpt, c),
            dir.path() + ": missing tensor "
                         "'model.layers.0.self_attn.o_proj.weight_scale_inv' "
                         "(expected F32 [3, 1])");
}

TEST(ValidateCheckpoint, MtpLayerIgnoredOtherExtrasCounted) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV3);
  Checkpoint ckpt = writeCheckpoint(dir, c, [](std::vector<FakeTensor> &t) {
    // Layer 3 of a 3-layer model is the MTP block: any content is ignored.
    t.push_back({"model.layers.3.eh_proj.weight", "BF16", {128, 256}, ""});
    t.push_back(
        {"model.layers.3.self_attn.o_proj.weight", "F8_E4M3", {7, 7}, ""});
    t.push_back(
        {"model.layers.0.self_attn.rotary_emb.inv_freq", "F32", {4}, ""});
    t.push_back({"extra.thing", "U8", {1}, ""});
  });
  EXPECT_EQ(validateCheckpoint(ckpt, c), "");
  EXPECT_THAT(unexpectedTensors(ckpt, c),
              ElementsAre("extra.thing",
                          "model.layers.0.self_attn.rotary_emb.inv_freq"));
}

TEST(ValidateCheckpoint, ShardedCheckpointNamesTheShard) {
  TempDir dir;
  ModelConfig c = configFrom(kConfigTinyV2Lite);
  std::vector<FakeTensor> all = fakeTensorsFor(expectedTensors(c));
  tensorNamed(all, "lm_head.weight").dtype = "I32";
  std::vector<FakeTensor> first(all.begin(), all.begin() + all.size() / 2);
  std::vector<FakeTensor> second(all.begin() + all.size() / 2, all.end());
  dir.write("model-00001-of-00002.safetensors", safetensorsBytes(first));
  std::string secondPath =
      dir.write("model-00002-of-00002.safetensors", safetensorsBytes(second));
  json map = json::object();
  for (const FakeTensor &t : first)
    map[t.name] = "model-00001-of-00002.safetensors";
  for (const FakeTensor &t : second)
    map[t.name] = "model-00002-of-00002.safetensors";
  dir.write("model.safetensors.index.json", json{{"weight_map", map}}.dump());
  CheckpointOpenResult r = Checkpoint::open(dir.path());
  ASSERT_TRUE(r) << r.error;
  EXPECT_EQ(validateCheckpoint(*r.checkpoint, c),
            secondPath + ": tensor 'lm_head.weight': dtype I32 but the config "
                         "requires F32, BF16 or F16");
}

//===----------------------------------------------------------------------===//
// The golden checkpoints, when the test data is present
//===----------------------------------------------------------------------===//

TEST(GoldenCheckpoints, OpenAndValidate) {
  // DSV3_TEST_DATA_DIR in the environment overrides the source-tree default.
  const char *env = std::getenv("DSV3_TEST_DATA_DIR");
  std::string dataDir = env ? env : DSV3_TEST_DATA_DIR;
  int found = 0;
  for (const char *name : {"tiny-v3", "tiny-v2lite", "tiny-v3-fp8"}) {
    std::string dir = dataDir + "/golden/" + name;
    // The golden cases are part of the repository: a missing one is a
    // broken checkout, not a reason to skip.
    ASSERT_TRUE(std::filesystem::exists(dir + "/model.safetensors")) << dir;
    ++found;
    ConfigParseResult config = loadModelConfig(dir);
    ASSERT_TRUE(config) << config.error;
    CheckpointOpenResult ckpt = Checkpoint::open(dir);
    ASSERT_TRUE(ckpt) << ckpt.error;
    EXPECT_EQ(validateCheckpoint(*ckpt.checkpoint, *config.config), "") << name;
    EXPECT_TRUE(unexpectedTensors(*ckpt.checkpoint, *config.config).empty())
        << name;
    EXPECT_EQ(ckpt.checkpoint->files().at(0).metadata.at("format"), "pt");
  }
  EXPECT_EQ(found, 3);
}

} // namespace
