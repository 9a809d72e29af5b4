//===- ManifestTest.cpp - manifest.json parsing and target checks ---------===//

#include "dsv3/Runtime/CpuFeatures.h"
#include "dsv3/Runtime/Manifest.h"
#include "dsv3/Runtime/Model.h"

#include "RuntimeTestUtil.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

using namespace dsv3::runtime;
using namespace dsv3test;
using ::testing::HasSubstr;

namespace {

json validManifest() {
  json weights = json::array(
      {weightEntry("embed", "model.embed_tokens.weight", "bf16", {32, 16}),
       weightEntry("attn.norm", "model.layers.{layer}.input_layernorm.weight",
                   "bf16", {3, 16}, json::array({0, 3})),
       weightEntry("moe.expert_gate",
                   "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight",
                   "f8e4m3", {2, 4, 8, 16}, json::array({1, 2}), 4)});
  return makeManifest(smallConfig(), weights, 2, 16);
}

std::string parseError(const json &manifest) {
  ManifestResult r = parseManifest(manifest.dump(), "/art", "m.json");
  EXPECT_FALSE(r) << "expected an error";
  return r.error;
}

TEST(ManifestTest, ParsesTheContract) {
  ManifestResult r = parseManifest(validManifest().dump(), "/art", "m.json");
  ASSERT_TRUE(r) << r.error;
  const Manifest &m = *r.manifest;
  EXPECT_EQ(m.libraryPath(), "/art/libdsv3model.so");
  EXPECT_EQ(m.maxBatch, 2);
  EXPECT_EQ(m.maxSeqLen, 16);
  EXPECT_EQ(m.vocabSize(), 32);
  EXPECT_EQ(m.prefill.symbol, "dsv3_prefill");
  EXPECT_EQ(m.decode.seqLen, 1);
  EXPECT_EQ(m.tokensInput, 0u);
  EXPECT_EQ(m.positionsInput, 1u);
  EXPECT_EQ(m.cacheInput, 2u);
  EXPECT_EQ(m.kvCacheBytes(), 3u * 2 * 16 * 12 * 4);
  ASSERT_EQ(m.weights.size(), 3u);

  const WeightSpec &embed = m.weights[0];
  EXPECT_FALSE(embed.isStacked());
  EXPECT_EQ(embed.numSlices(), 1);
  EXPECT_EQ(embed.sliceSource(0), "model.embed_tokens.weight");
  EXPECT_EQ(embed.numBytes(), 32u * 16 * 2);

  const WeightSpec &gate = m.weights[2];
  EXPECT_EQ(gate.numSlices(), 8);
  EXPECT_EQ(gate.sliceShape(), (std::vector<int64_t>{8, 16}));
  EXPECT_EQ(gate.sliceBytes(), 128u);
  EXPECT_EQ(gate.sliceSource(0),
            "model.layers.1.mlp.experts.0.gate_proj.weight");
  EXPECT_EQ(gate.sliceSource(5),
            "model.layers.2.mlp.experts.1.gate_proj.weight");
  EXPECT_EQ(gate.sliceLabel(5), "layer 2, expert 1");
  EXPECT_EQ(m.weightsBytes(), 32u * 16 * 2 + 3 * 16 * 2 + 8 * 128);
}

TEST(ManifestTest, InputsAreFoundByName) {
  json m = validManifest();
  std::swap(m["inputs"][0], m["inputs"][2]);
  ManifestResult r = parseManifest(m.dump(), "/art");
  ASSERT_TRUE(r) << r.error;
  EXPECT_EQ(r.manifest->cacheInput, 0u);
  EXPECT_EQ(r.manifest->tokensInput, 2u);
}

/// validManifest() with a prepare entry that turns "attn.norm" into the
/// prepared "attn.norm2", which prefill and decode take instead.
json preparedManifest() {
  json m = validManifest();
  m["prepared"] = json::array(
      {{{"name", "attn.norm2"}, {"dtype", "bf16"}, {"shape", {3, 32}}}});
  json forward = json::array({"embed", "moe.expert_gate", "attn.norm2"});
  m["entry_points"]["prefill"]["weights"] = forward;
  m["entry_points"]["decode"]["weights"] = forward;
  m["entry_points"]["prepare"] = {{"symbol", "dsv3_prepare"},
                                  {"weights", {"attn.norm"}},
                                  {"results", {"attn.norm2"}}};
  return m;
}

TEST(ManifestTest, ParsesThePrepareEntry) {
  ManifestResult r = parseManifest(preparedManifest().dump(), "/art", "m.json");
  ASSERT_TRUE(r) << r.error;
  const Manifest &m = *r.manifest;
  ASSERT_TRUE(m.prepare.has_value());
  EXPECT_EQ(m.prepare->symbol, "dsv3_prepare");
  EXPECT_EQ(m.prepare->weights, std::vector<std::string>{"attn.norm"});
  ASSERT_EQ(m.prepared.size(), 1u);
  EXPECT_EQ(m.prepared[0].shape, (std::vector<int64_t>{3, 32}));
  EXPECT_EQ(m.forwardWeights,
            (std::vector<std::string>{"embed", "moe.expert_gate",
                                      "attn.norm2"}));
  // Without per-entry lists the entries take every checkpoint weight.
  ManifestResult plain = parseManifest(validManifest().dump(), "/art");
  ASSERT_TRUE(plain) << plain.error;
  EXPECT_EQ(plain.manifest->forwardWeights,
            (std::vector<std::string>{"embed", "attn.norm",
                                      "moe.expert_gate"}));
  EXPECT_FALSE(plain.manifest->prepare.has_value());
}

TEST(ManifestTest, ThePrepareEntryIsChecked) {
  struct Case {
    std::function<void(json &)> edit;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](json &m) { m["entry_points"].erase("prepare"); },
       "m.json: field 'entry_points.prepare': \"prepared\" weights need a "
       "prepare entry point"},
      {[](json &m) { m["entry_points"]["prepare"]["results"] = {"other"}; },
       "m.json: field 'entry_points.prepare.results': must name the "
       "\"prepared\" weights in their order"},
      {[](json &m) { m["entry_points"]["prepare"]["weights"] = {"nope"}; },
       "m.json: field 'entry_points.prepare.weights': 'nope' is not a "
       "checkpoint weight of \"weights\""},
      {[](json &m) { m["entry_points"]["prefill"]["weights"][0] = "x"; },
       "m.json: field 'entry_points.prefill.weights': 'x' is neither in "
       "\"weights\" nor in \"prepared\""},
      {[](json &m) { m["entry_points"]["decode"]["weights"].erase(0); },
       "m.json: field 'entry_points.decode.weights': must equal "
       "entry_points.prefill.weights"},
      {[](json &m) { m["prepared"][0]["name"] = "embed"; },
       "m.json: field 'prepared[0].name': duplicate weight role 'embed'"},
      {[](json &m) { m["prepared"][0]["shape"] = {3, -1}; },
       "m.json: field 'prepared[0].shape[1]': must be >= 1, got -1"},
  };
  for (const Case &c : cases) {
    json m = preparedManifest();
    c.edit(m);
    EXPECT_THAT(parseError(m), HasSubstr(c.message));
  }
}

TEST(ManifestTest, EveryFieldIsChecked) {
  struct Case {
    std::function<void(json &)> edit;
    std::string message;
  };
  std::vector<Case> cases = {
      {[](json &m) { m["format"] = "other"; },
       "m.json: field 'format': must be \"dsv3-artifact\", got \"other\""},
      {[](json &m) { m["version"] = 2; },
       "m.json: field 'version': this runtime reads version 1, got 2"},
      {[](json &m) { m.erase("library"); },
       "m.json: field 'library': missing"},
      {[](json &m) { m["library"] = "../x.so"; },
       "m.json: field 'library': must be a file name inside the artifact "
       "directory, got \"../x.so\""},
      {[](json &m) { m["target"]["features"] = {1}; },
       "m.json: field 'target.features[0]': must be a string, got an "
       "integer"},
      {[](json &m) { m["config"]["hidden_size"] = -1; }, "config"},
      {[](json &m) { m["options"]["max_batch"] = 0; },
       "m.json: field 'options.max_batch': must be >= 1, got 0"},
      {[](json &m) { m["options"]["max_seq_len"] = "16"; },
       "m.json: field 'options.max_seq_len': must be an integer, got a "
       "string"},
      {[](json &m) { m["options"]["prefill_as_decode_below"] = -1; },
       "m.json: field 'options.prefill_as_decode_below': must be >= 0, got "
       "-1"},
      {[](json &m) { m["entry_points"]["decode"]["seq_len"] = 2; },
       "m.json: field 'entry_points.decode.seq_len': this runtime calls "
       "decode with seq_len 1, got 2"},
      {[](json &m) { m["entry_points"].erase("prefill"); },
       "m.json: field 'entry_points.prefill': missing"},
      {[](json &m) { m["inputs"][0]["dtype"] = "f32"; },
       "m.json: field 'inputs[0].dtype': must be i32 or i64, got f32"},
      {[](json &m) { m["inputs"][0]["shape"] = {3, -1}; },
       "m.json: field 'inputs[0].shape': must be [2, -1], got [3, -1]"},
      {[](json &m) { m["inputs"][2]["shape"][2] = 8; },
       "m.json: field 'inputs[2].shape': must be [layers, max_batch, "
       "max_seq_len, width] = [3, 2, 16, width], got [3, 2, 8, 12]"},
      {[](json &m) { m["inputs"][2]["shape"][3] = -1; },
       "m.json: field 'inputs[2].shape': must be static, got [3, 2, 16, -1]"},
      {[](json &m) { m["inputs"][1]["name"] = "pos"; },
       "m.json: field 'inputs[1].name': unknown input 'pos' (this runtime "
       "provides tokens, positions and kv_cache)"},
      {[](json &m) { m["inputs"].erase(1); },
       "m.json: field 'inputs': no input named 'positions'"},
      {[](json &m) { m["weights"][0]["dtype"] = "f64"; },
       "m.json: field 'weights[0].dtype': unknown dtype 'f64' (expected f32, "
       "bf16, f16, f8e4m3, i8, i32 or i64)"},
      {[](json &m) { m["weights"][0]["dtype"] = "i8"; },
       "m.json: field 'weights[0].dtype': a weight must be f32, bf16, f16 or "
       "f8e4m3, got i8"},
      {[](json &m) { m["inputs"][2]["dtype"] = "i32"; },
       "m.json: field 'inputs[2].dtype': must be f32, bf16, f16 or i8, got "
       "i32"},
      {[](json &m) { m["weights"][0]["dtype"] = "i32"; },
       "m.json: field 'weights[0].dtype': a weight must be f32, bf16, f16 or "
       "f8e4m3, got i32"},
      {[](json &m) { m["weights"][0]["shape"] = {32, 0}; },
       "m.json: field 'weights[0].shape[1]': must be >= 1, got 0"},
      {[](json &m) { m["weights"][0]["shape"] = {32, -1}; },
       "m.json: field 'weights[0].shape[1]': must be >= 1, got -1"},
      {[](json &m) { m["weights"][0]["shape"] = {1 << 30, 1 << 30}; },
       "m.json: field 'weights[0].shape': is too large"},
      {[](json &m) { m["weights"][1]["layers"] = {1, 3}; },
       "m.json: field 'weights[1].layers': [1, 3] is not a layer range of the "
       "model's 3 layers"},
      {[](json &m) { m["weights"][1]["layers"] = {0, 2}; },
       "m.json: field 'weights[1].shape': dim 0 must be the layer count 2, got "
       "[3, 16]"},
      {[](json &m) { m["weights"][1]["layers"] = 3; },
       "m.json: field 'weights[1].layers': must be null or [first, count], "
       "got 3"},
      {[](json &m) { m["weights"][2]["experts"] = 5; },
       "m.json: field 'weights[2].shape': dim 1 must be the expert count 5, "
       "got [2, 4, 8, 16]"},
      {[](json &m) { m["weights"][0]["experts"] = 4; },
       "m.json: field 'weights[0].experts': experts are stacked only inside "
       "layers (layers must not be null)"},
      {[](json &m) { m["weights"][1]["source"] = "model.norm.weight"; },
       "m.json: field 'weights[1].source': a layer-stacked weight needs "
       "{layer} in 'model.norm.weight'"},
      {[](json &m) { m["weights"][2]["source"] = "model.layers.{layer}.x"; },
       "m.json: field 'weights[2].source': an expert-stacked weight needs "
       "{expert} in 'model.layers.{layer}.x'"},
      {[](json &m) { m["weights"][0]["source"] = "model.layers.{layer}.x"; },
       "m.json: field 'weights[0].source': 'model.layers.{layer}.x' has "
       "{layer} but layers is null"},
      {[](json &m) { m["weights"][1]["role"] = "embed"; },
       "m.json: field 'weights[1].role': duplicate weight role 'embed'"},
      {[](json &m) { m["weights"][1]["shape"] = {3}; },
       "m.json: field 'weights[1].shape': must have the 1 stack dims and at "
       "least one more, got [3]"},
      {[](json &m) { m["outputs"][0]["shape"] = {2, 31}; },
       "m.json: field 'outputs[0].shape': must be [2, 32], got [2, 31]"},
      {[](json &m) { m["outputs"][0]["dtype"] = "bf16"; },
       "m.json: field 'outputs[0].dtype': must be f32, got bf16"},
      {[](json &m) { m["outputs"].push_back(m["outputs"][0]); },
       "m.json: field 'outputs': must hold exactly one output (logits), got "
       "2"},
      {[](json &m) { m = json::array(); },
       "m.json: must be a JSON object, got an array"},
  };
  for (const Case &c : cases) {
    json m = validManifest();
    c.edit(m);
    EXPECT_THAT(parseError(m), HasSubstr(c.message));
  }
  ManifestResult r = parseManifest("{\"a\": 1,}", "/art", "m.json");
  EXPECT_THAT(r.error, HasSubstr("m.json: invalid JSON: "));
  r = parseManifest(std::string("{}\0x", 4), "/art", "m.json");
  EXPECT_THAT(r.error, HasSubstr("NUL byte"));
}

//===----------------------------------------------------------------------===//
// Target checks
//===----------------------------------------------------------------------===//

TEST(CpuFeaturesTest, MapsLlvmNamesToCpuinfoFlags) {
  std::set<std::string> flags = {"sse2",   "pni",        "sse4_1", "sse4_2",
                                 "avx2",   "avx512f",    "fma",    "bmi1",
                                 "abm",    "avx512_bf16", "lm",    "avx512bw"};
  EXPECT_EQ(checkCpuFeatures({"sse2", "sse3", "sse4.1", "sse4.2", "crc32",
                              "avx2", "avx512f", "evex512", "fma", "bmi",
                              "lzcnt", "avx512bf16", "64bit", "avx512bw"},
                             flags),
            "");
  // LLVM feature-string syntax; tuning flags need no instructions.
  EXPECT_EQ(checkCpuFeatures({"+avx2", "-avx512fp16", "fast-gather",
                              "slow-3ops-lea", "prefer-256-bit",
                              "tuning-fast-imm-vector-shift"},
                             flags),
            "");
  EXPECT_EQ(checkCpuFeatures({"avx2", "avx512fp16", "+amx-tile", "sse4.1"},
                             flags),
            "the artifact needs CPU features this machine does not have: "
            "avx512fp16, amx-tile");
  // A name the runtime cannot check is refused, not ignored.
  EXPECT_EQ(checkCpuFeatures({"frobnicate"}, flags),
            "the artifact needs CPU features this machine does not have: "
            "frobnicate");
  EXPECT_THAT(checkCpuFeatures({"avx2"}, {}), HasSubstr("/proc/cpuinfo"));
}

TEST(CpuFeaturesTest, ChecksTheTriple) {
  TargetSpec t;
  t.kind = "cpu";
  t.triple = std::string(hostArch()) + "-unknown-linux-gnu";
  EXPECT_EQ(checkTarget(t), "");
  t.triple = std::string(hostArch()) + "-pc-linux-gnu";
  EXPECT_EQ(checkTarget(t), "");
  t.triple = "riscv64-unknown-linux-gnu";
  EXPECT_THAT(checkTarget(t), HasSubstr("built for riscv64-unknown-linux-gnu"));
  t.triple = std::string(hostArch()) + "-apple-darwin";
  EXPECT_THAT(checkTarget(t), HasSubstr("this runtime runs Linux artifacts"));
  t.triple = std::string(hostArch()) + "-unknown-linux-gnu";
  // A GPU artifact's host code runs on this CPU: the same checks apply.
  t.kind = "cuda";
  EXPECT_EQ(checkTarget(t), "");
  t.kind = "rocm";
  EXPECT_EQ(checkTarget(t), "the artifact targets 'rocm'; this runtime runs "
                            "CPU and CUDA artifacts");
}

TEST(CpuFeaturesTest, ThisMachineHasFlags) {
  std::set<std::string> flags = hostCpuFlags();
  EXPECT_FALSE(flags.empty());
#if defined(__x86_64__)
  EXPECT_TRUE(flags.count("sse2"));
#endif
}

//===----------------------------------------------------------------------===//
// Configs
//===----------------------------------------------------------------------===//

TEST(CompareConfigsTest, NamesTheFirstDifference) {
  dsv3::ConfigParseResult a = dsv3::parseModelConfig(smallConfig().dump());
  ASSERT_TRUE(a) << a.error;
  json other = smallConfig();
  other["num_hidden_layers"] = 4;
  dsv3::ConfigParseResult b = dsv3::parseModelConfig(other.dump());
  ASSERT_TRUE(b) << b.error;
  EXPECT_EQ(compareConfigs(*a.config, *a.config, "c.json"), "");
  EXPECT_EQ(compareConfigs(*a.config, *b.config, "c.json"),
            "checkpoint does not match the artifact: config field "
            "'num_hidden_layers' is 3 in the artifact but 4 in c.json");
  // Same values spelled differently are the same config.
  other = smallConfig();
  other["rope_theta"] = 10000.0;
  other["some_hf_field"] = "ignored";
  b = dsv3::parseModelConfig(other.dump());
  EXPECT_EQ(compareConfigs(*a.config, *b.config, "c.json"), "");
  // FP8 vs not is a difference (the weights' dtypes follow from it).
  other = smallConfig();
  other["quantization_config"] = {{"quant_method", "fp8"},
                                  {"fmt", "e4m3"},
                                  {"activation_scheme", "dynamic"},
                                  {"weight_block_size", {128, 128}}};
  b = dsv3::parseModelConfig(other.dump());
  ASSERT_TRUE(b) << b.error;
  EXPECT_THAT(compareConfigs(*a.config, *b.config, "c.json"),
              HasSubstr("'quantization_config'"));
}

} // namespace
