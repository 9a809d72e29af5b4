//===- RuntimeTest.cpp - Loading, generation and errors of libdsv3rt ------===//
//
// Runs the runtime against the test double of a compiled artifact
// (Inputs/fake_model.c): the next token is the sum of the sequence so far
// mod vocab, computed from the KV cache, so these tests see whether the cache
// persists, positions are right per row and rows stay separate.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Model.h"
#include "dsv3/Runtime/dsv3rt.h"

#include "RuntimeTestUtil.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <numeric>

using namespace dsv3test;
using ::testing::HasSubstr;

namespace {

constexpr int64_t kVocab = 32;
constexpr int64_t kEos = 1;

/// What the test double generates greedily: next = sum(sequence) mod V.
std::vector<int32_t> expectedGreedy(std::vector<int32_t> seq, int64_t n,
                                    bool stopAtEos = true) {
  std::vector<int32_t> out;
  for (int64_t i = 0; i < n; ++i) {
    int64_t sum = std::accumulate(seq.begin(), seq.end(), int64_t(0));
    int32_t next = static_cast<int32_t>(sum % kVocab);
    out.push_back(next);
    seq.push_back(next);
    if (stopAtEos && next == kEos)
      break;
  }
  return out;
}

class RuntimeTest : public ::testing::Test {
protected:
  void SetUp() override {
    artifact = dir / "artifact";
    checkpoint = dir / "ckpt";
    makeDir(checkpoint);
    config = smallConfig();
    writeFile(checkpoint + "/config.json", config.dump(1));

    // File order decides alignment: embed first (offset 0: used in place),
    // then a 1-byte tensor so that the final norm lands on an odd offset
    // (must be copied).
    tensors.push_back(TestTensor::make("model.embed_tokens.weight", "BF16",
                                       {kVocab, 16}, 1));
    tensors.push_back(TestTensor::make("a.pad", "U8", {1}, 2));
    tensors.push_back(TestTensor::make("model.norm.weight", "BF16", {16}, 3));
    for (int l = 0; l < 3; ++l)
      tensors.push_back(TestTensor::make(
          "model.layers." + std::to_string(l) + ".input_layernorm.weight",
          "BF16", {16}, 10 + l));
    for (int l = 1; l < 3; ++l)
      for (int e = 0; e < 4; ++e) {
        std::string base = "model.layers." + std::to_string(l) +
                           ".mlp.experts." + std::to_string(e) +
                           ".gate_proj.weight";
        tensors.push_back(
            TestTensor::make(base, "F8_E4M3", {8, 16}, 20 + 4 * l + e));
        tensors.push_back(
            TestTensor::make(base + "_scale_inv", "F32", {1, 1}, 40 + 4 * l + e));
      }
    writeCheckpoint();

    weights = json::array(
        {weightEntry("embed", "model.embed_tokens.weight", "bf16", {kVocab, 16}),
         weightEntry("final_norm", "model.norm.weight", "bf16", {16}),
         weightEntry("attn.norm", "model.layers.{layer}.input_layernorm.weight",
                     "bf16", {3, 16}, json::array({0, 3})),
         weightEntry("moe.expert_gate",
                     "model.layers.{layer}.mlp.experts.{expert}.gate_proj.weight",
                     "f8e4m3", {2, 4, 8, 16}, json::array({1, 2}), 4),
         weightEntry("moe.expert_gate.scale",
                     "model.layers.{layer}.mlp.experts.{expert}.gate_proj."
                     "weight_scale_inv",
                     "f32", {2, 4, 1, 1}, json::array({1, 2}), 4)});
    manifest = makeManifest(config, weights, /*maxBatch=*/2, /*maxSeqLen=*/16);
    writeArtifact(artifact, manifest);
  }

  void writeCheckpoint() {
    writeSafetensors(checkpoint + "/model.safetensors", tensors);
  }

  const TestTensor &tensor(const std::string &name) const {
    for (const TestTensor &t : tensors)
      if (t.name == name)
        return t;
    throw std::runtime_error("no tensor " + name);
  }

  /// Opens through the C API; on failure returns nullptr with `error` set.
  dsv3rt_model *open(int threads = 2, int32_t device = DSV3RT_DEVICE_CPU) {
    dsv3rt_open_options options;
    dsv3rt_open_options_init(&options);
    options.num_threads = threads;
    options.device = device;
    char err[1024];
    dsv3rt_model *model = dsv3rt_open(artifact.c_str(), checkpoint.c_str(),
                                      &options, err, sizeof(err));
    error = model ? "" : err;
    return model;
  }

  std::string openError(int32_t device = DSV3RT_DEVICE_CPU) {
    dsv3rt_model *model = open(2, device);
    dsv3rt_close(model);
    EXPECT_EQ(model, nullptr);
    return error;
  }

  struct Result {
    int rc = 0;
    std::string error;
    std::vector<std::vector<int32_t>> tokens;
    std::vector<float> logits; // [batch, 1 + maxNew, vocab] when requested
  };

  Result generate(dsv3rt_model *model,
                  const std::vector<std::vector<int32_t>> &prompts,
                  dsv3rt_sampling sampling, bool withLogits = false) {
    Result r;
    int64_t batch = static_cast<int64_t>(prompts.size());
    std::vector<const int32_t *> ptrs;
    std::vector<int64_t> lens;
    for (const auto &p : prompts) {
      ptrs.push_back(p.data());
      lens.push_back(static_cast<int64_t>(p.size()));
    }
    int64_t maxNew = sampling.max_new_tokens;
    std::vector<int32_t> tokens(std::max<int64_t>(1, batch * maxNew), -7);
    std::vector<int64_t> counts(std::max<int64_t>(1, batch), -1);
    if (withLogits)
      r.logits.assign(batch * (1 + maxNew) * kVocab, -99.0f);
    char err[1024];
    r.rc = dsv3rt_generate(model, ptrs.data(), lens.data(), batch, &sampling,
                           tokens.data(), counts.data(),
                           withLogits ? r.logits.data() : nullptr, err,
                           sizeof(err));
    if (r.rc) {
      r.error = err;
      return r;
    }
    for (int64_t b = 0; b < batch; ++b)
      r.tokens.emplace_back(tokens.begin() + b * maxNew,
                            tokens.begin() + b * maxNew + counts[b]);
    return r;
  }

  static dsv3rt_sampling greedy(int32_t maxNew) {
    dsv3rt_sampling s;
    dsv3rt_sampling_init(&s);
    s.max_new_tokens = maxNew;
    return s;
  }

  TempDir dir;
  std::string artifact, checkpoint, error;
  json config, weights, manifest;
  std::vector<TestTensor> tensors;
};

//===----------------------------------------------------------------------===//
// Loading
//===----------------------------------------------------------------------===//

TEST_F(RuntimeTest, LoadsWeightsStackedInTheCheckpointDtype) {
  std::string err;
  dsv3::runtime::OpenOptions options;
  std::vector<std::pair<uint64_t, uint64_t>> progress;
  options.progress = [&](uint64_t done, uint64_t total) {
    progress.emplace_back(done, total);
  };
  auto model = dsv3::runtime::Model::open(artifact, checkpoint, options, err);
  ASSERT_TRUE(model) << err;

  // embed: used in place (zero copy), same bytes.
  const TestTensor &embed = tensor("model.embed_tokens.weight");
  EXPECT_TRUE(model->weightIsMapped(0));
  EXPECT_EQ(std::memcmp(model->weightData(0), embed.bytes.data(),
                        embed.bytes.size()),
            0);
  // final_norm: at an odd file offset, so copied into an aligned buffer.
  const TestTensor &norm = tensor("model.norm.weight");
  EXPECT_FALSE(model->weightIsMapped(1));
  EXPECT_EQ(reinterpret_cast<uintptr_t>(model->weightData(1)) % 64, 0u);
  EXPECT_EQ(std::memcmp(model->weightData(1), norm.bytes.data(), 32), 0);

  // attn.norm: layers 0..2 back to back, bf16 (2 bytes per element).
  const char *attn = static_cast<const char *>(model->weightData(2));
  for (int l = 0; l < 3; ++l) {
    const TestTensor &t = tensor("model.layers." + std::to_string(l) +
                                 ".input_layernorm.weight");
    ASSERT_EQ(t.bytes.size(), 32u);
    EXPECT_EQ(std::memcmp(attn + l * 32, t.bytes.data(), 32), 0) << l;
  }
  // FP8 experts stay 1 byte per element: [2 layers, 4 experts, 8, 16].
  const char *gate = static_cast<const char *>(model->weightData(3));
  const char *scale = static_cast<const char *>(model->weightData(4));
  for (int l = 1; l < 3; ++l)
    for (int e = 0; e < 4; ++e) {
      std::string base = "model.layers." + std::to_string(l) +
                         ".mlp.experts." + std::to_string(e) +
                         ".gate_proj.weight";
      size_t slice = (l - 1) * 4 + e;
      EXPECT_EQ(std::memcmp(gate + slice * 128, tensor(base).bytes.data(), 128),
                0)
          << base;
      EXPECT_EQ(std::memcmp(scale + slice * 4,
                            tensor(base + "_scale_inv").bytes.data(), 4),
                0);
      EXPECT_EQ(reinterpret_cast<uintptr_t>(gate) % 64, 0u);
    }

  uint64_t total = 32 * 16 * 2 + 16 * 2 + 3 * 16 * 2 + 2 * 4 * 8 * 16 + 2 * 4 * 4;
  EXPECT_EQ(model->weightsBytes(), total);
  EXPECT_EQ(model->weightsMappedBytes(), 32u * 16 * 2);
  EXPECT_EQ(model->kvCacheBytes(), 3u * 2 * 16 * 12 * 4);
  ASSERT_FALSE(progress.empty());
  EXPECT_EQ(progress.back(), std::make_pair(total, total));
  for (size_t i = 1; i < progress.size(); ++i)
    EXPECT_GE(progress[i].first, progress[i - 1].first);
}

TEST_F(RuntimeTest, ArtifactInfoAndStats) {
  dsv3rt_artifact_info info;
  char err[512];
  ASSERT_EQ(dsv3rt_read_artifact_info(artifact.c_str(), &info, err,
                                      sizeof(err)),
            0)
      << err;
  EXPECT_EQ(info.vocab_size, kVocab);
  EXPECT_EQ(info.max_batch, 2);
  EXPECT_EQ(info.max_seq_len, 16);
  EXPECT_EQ(info.eos_token_id, kEos);
  EXPECT_EQ(info.num_layers, 3);
  EXPECT_EQ(info.num_weights, 5);
  EXPECT_EQ(info.kv_cache_bytes, 3u * 2 * 16 * 12 * 4);

  dsv3rt_model *model = open(3);
  ASSERT_NE(model, nullptr) << error;
  Result r = generate(model, {{2, 3, 4}}, greedy(4));
  ASSERT_EQ(r.rc, 0) << r.error;
  dsv3rt_stats stats;
  dsv3rt_get_stats(model, &stats);
  EXPECT_EQ(stats.prefill_tokens, 3);
  EXPECT_EQ(stats.prefill_calls, 1);
  // 4 tokens generated; the last one is not fed back without logits.
  EXPECT_EQ(stats.decode_tokens, 3);
  EXPECT_EQ(stats.decode_calls, 3);
  EXPECT_GE(stats.prefill_seconds, 0.0);
  EXPECT_GE(stats.decode_seconds, 0.0);
  EXPECT_EQ(stats.weights_bytes, info.weights_bytes);
  EXPECT_EQ(stats.kv_cache_bytes, info.kv_cache_bytes);
  EXPECT_EQ(stats.num_threads, 3);
  dsv3rt_artifact_info modelInfo;
  dsv3rt_model_info(model, &modelInfo);
  EXPECT_EQ(modelInfo.vocab_size, kVocab);
  dsv3rt_close(model);
}

//===----------------------------------------------------------------------===//
// Generation
//===----------------------------------------------------------------------===//

TEST_F(RuntimeTest, GreedyFollowsTheCacheAcrossCalls) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  Result r = generate(model, {{2, 3, 4}}, greedy(6));
  ASSERT_EQ(r.rc, 0) << r.error;
  EXPECT_EQ(r.tokens[0], expectedGreedy({2, 3, 4}, 6));
  EXPECT_EQ(r.tokens[0], (std::vector<int32_t>{9, 18, 4, 8, 16, 0}));
  // A second call starts from position 0 again.
  r = generate(model, {{5}}, greedy(3));
  ASSERT_EQ(r.rc, 0) << r.error;
  EXPECT_EQ(r.tokens[0], expectedGreedy({5}, 3));
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, BatchWithUnequalPromptsMatchesSingleRuns) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  std::vector<std::vector<int32_t>> prompts = {{3}, {2, 4, 6, 8, 10}};
  Result r = generate(model, prompts, greedy(5));
  ASSERT_EQ(r.rc, 0) << r.error;
  ASSERT_EQ(r.tokens.size(), 2u);
  EXPECT_EQ(r.tokens[0], expectedGreedy(prompts[0], 5));
  EXPECT_EQ(r.tokens[1], expectedGreedy(prompts[1], 5));
  for (size_t i = 0; i < prompts.size(); ++i) {
    Result single = generate(model, {prompts[i]}, greedy(5));
    ASSERT_EQ(single.rc, 0) << single.error;
    EXPECT_EQ(single.tokens[0], r.tokens[i]);
  }
  dsv3rt_stats stats;
  dsv3rt_get_stats(model, &stats);
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, UnequalPromptsPrefillTheCommonPrefix) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  Result r = generate(model, {{3, 3}, {2, 4, 6, 8, 10}}, greedy(2));
  ASSERT_EQ(r.rc, 0) << r.error;
  dsv3rt_stats stats;
  dsv3rt_get_stats(model, &stats);
  EXPECT_EQ(stats.prefill_tokens, 4); // 2 common positions x 2 sequences
  // Row 1 feeds 3 more prompt tokens and 1 generated token; row 0 feeds its
  // first generated token (the second is not fed back).
  EXPECT_EQ(stats.decode_calls, 4);
  EXPECT_EQ(stats.decode_tokens, 5);
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, StopsAtEos) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  // sum(16, 17) = 33 = 1 mod 32: eos right away for row 0; row 1 goes on.
  Result r = generate(model, {{16, 17}, {5}}, greedy(4));
  ASSERT_EQ(r.rc, 0) << r.error;
  EXPECT_EQ(r.tokens[0], std::vector<int32_t>{kEos});
  EXPECT_EQ(r.tokens[1], expectedGreedy({5}, 4));
  dsv3rt_sampling s = greedy(4);
  s.stop_at_eos = 0;
  r = generate(model, {{16, 17}}, s);
  ASSERT_EQ(r.rc, 0) << r.error;
  EXPECT_EQ(r.tokens[0], expectedGreedy({16, 17}, 4, /*stopAtEos=*/false));
  EXPECT_EQ(r.tokens[0].size(), 4u);
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, LogitsRowsFollowTheGeneratedTokens) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  const int64_t maxNew = 4;
  Result r = generate(model, {{2, 3}, {16, 17}}, greedy(maxNew), true);
  ASSERT_EQ(r.rc, 0) << r.error;
  const int64_t rows = 1 + maxNew;
  for (int b = 0; b < 2; ++b) {
    const std::vector<int32_t> &tokens = r.tokens[b];
    std::vector<int32_t> seq = b == 0 ? std::vector<int32_t>{2, 3}
                                      : std::vector<int32_t>{16, 17};
    for (size_t row = 0; row <= tokens.size(); ++row) {
      const float *l = r.logits.data() + (b * rows + row) * kVocab;
      int64_t sum = std::accumulate(seq.begin(), seq.end(), int64_t(0));
      int64_t target = sum % kVocab;
      // The test double's shape: 4, 3, 2, 1 from the target on, else -20.
      for (int64_t v = 0; v < kVocab; ++v) {
        int64_t d = ((v - target) % kVocab + kVocab) % kVocab;
        EXPECT_EQ(l[v], d < 4 ? 4.0f - d : -20.0f) << b << " " << row;
      }
      if (row < tokens.size()) {
        EXPECT_EQ(tokens[row], target);
        seq.push_back(tokens[row]);
      }
    }
    // Rows past 1 + count are zero.
    for (size_t row = tokens.size() + 1; row < static_cast<size_t>(rows); ++row)
      EXPECT_EQ(r.logits[(b * rows + row) * kVocab], 0.0f);
  }
  EXPECT_EQ(r.tokens[1].size(), 1u); // eos

  // dsv3rt_last_logits: the row after the last fed token.
  std::vector<float> last(kVocab);
  ASSERT_EQ(dsv3rt_last_logits(model, 0, last.data(), kVocab), kVocab);
  EXPECT_EQ(std::memcmp(last.data(),
                        r.logits.data() + (0 * rows + 4) * kVocab,
                        kVocab * sizeof(float)),
            0);
  EXPECT_EQ(dsv3rt_last_logits(model, 2, last.data(), kVocab), -1);
  EXPECT_EQ(dsv3rt_last_logits(model, 0, last.data(), kVocab - 1), -1);
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, ZeroNewTokensGivesThePromptLogits) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  Result r = generate(model, {{2}, {3, 4, 5}}, greedy(0), true);
  ASSERT_EQ(r.rc, 0) << r.error;
  EXPECT_TRUE(r.tokens[0].empty());
  EXPECT_TRUE(r.tokens[1].empty());
  // Row 0 of each: argmax at sum(prompt) mod V.
  EXPECT_EQ(r.logits[2], 4.0f);
  EXPECT_EQ(r.logits[kVocab + 12], 4.0f);
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, KvCacheHoldsEveryFedToken) {
  std::string err;
  dsv3::runtime::OpenOptions options;
  options.numThreads = 3;
  auto model = dsv3::runtime::Model::open(artifact, checkpoint, options, err);
  ASSERT_TRUE(model) << err;
  dsv3::runtime::SamplingOptions s;
  s.maxNewTokens = 3;
  dsv3::runtime::GenerateOutput out;
  ASSERT_EQ(model->generate({{7, 8}}, s, /*recordLogits=*/true, out), "");
  // cache [3 layers, 2 rows, 16 positions, 12]: row 0 holds 7, 8 and the 3
  // generated tokens at positions 0..4 in every layer ({token, pos + 1, l,
  // dsv3rt_num_threads() as seen by the entry point: the model's 3}).
  const float *cache = static_cast<const float *>(model->kvCacheData());
  std::vector<int32_t> seq = {7, 8};
  seq.insert(seq.end(), out.tokens[0].begin(), out.tokens[0].end());
  ASSERT_EQ(seq.size(), 5u);
  for (int l = 0; l < 3; ++l)
    for (int p = 0; p < 5; ++p) {
      const float *entry = cache + ((l * 2 + 0) * 16 + p) * 12;
      EXPECT_EQ(entry[0], seq[p]);
      EXPECT_EQ(entry[1], p + 1);
      EXPECT_EQ(entry[2], l);
      EXPECT_EQ(entry[3], 3);
    }
  EXPECT_EQ(out.logits[0].size(), 4u * kVocab);
}

TEST_F(RuntimeTest, SamplingIsDeterministicPerSeed) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  dsv3rt_sampling s = greedy(12);
  s.temperature = 1.0f;
  s.seed = 1234;
  s.stop_at_eos = 0;
  Result a = generate(model, {{2, 3}, {2, 3}}, s);
  Result b = generate(model, {{2, 3}, {2, 3}}, s);
  ASSERT_EQ(a.rc, 0) << a.error;
  EXPECT_EQ(a.tokens, b.tokens);
  // Each sequence has its own stream: identical prompts diverge.
  EXPECT_NE(a.tokens[0], a.tokens[1]);
  // The stream of sequence 0 does not depend on the batch around it.
  Result alone = generate(model, {{2, 3}}, s);
  EXPECT_EQ(alone.tokens[0], a.tokens[0]);
  // Another seed, other tokens (for 12 draws, equal by chance is ~1e-5).
  s.seed = 99;
  Result c = generate(model, {{2, 3}}, s);
  EXPECT_NE(c.tokens[0], a.tokens[0]);
  // Every sampled token is one of the four the double gives real mass.
  std::vector<int32_t> seq = {2, 3};
  for (int32_t t : a.tokens[0]) {
    int64_t target =
        std::accumulate(seq.begin(), seq.end(), int64_t(0)) % kVocab;
    int64_t d = ((t - target) % kVocab + kVocab) % kVocab;
    EXPECT_LT(d, 4);
    seq.push_back(t);
  }
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, TopPTruncatesTheDistribution) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  dsv3rt_sampling s = greedy(14);
  s.temperature = 1.0f;
  s.stop_at_eos = 0;
  s.top_p = 0.5f; // the top token alone has 0.644: sampling is greedy
  for (uint64_t seed = 0; seed < 5; ++seed) {
    s.seed = seed;
    Result r = generate(model, {{2, 3}}, s);
    ASSERT_EQ(r.rc, 0) << r.error;
    EXPECT_EQ(r.tokens[0], expectedGreedy({2, 3}, 14, false));
  }
  // top_p 0.85: the two most likely (0.644 + 0.237) and never the others;
  // over 5 x 14 draws the second shows up.
  s.top_p = 0.85f;
  int second = 0;
  for (uint64_t seed = 0; seed < 5; ++seed) {
    s.seed = seed;
    Result r = generate(model, {{2, 3}}, s);
    ASSERT_EQ(r.rc, 0) << r.error;
    std::vector<int32_t> seq = {2, 3};
    for (int32_t t : r.tokens[0]) {
      int64_t target =
          std::accumulate(seq.begin(), seq.end(), int64_t(0)) % kVocab;
      int64_t d = ((t - target) % kVocab + kVocab) % kVocab;
      EXPECT_LT(d, 2);
      second += d == 1;
      seq.push_back(t);
    }
  }
  EXPECT_GT(second, 0);
  dsv3rt_close(model);
}

//===----------------------------------------------------------------------===//
// Bad requests: one error, nothing generated
//===----------------------------------------------------------------------===//

TEST_F(RuntimeTest, RejectsBadRequests) {
  dsv3rt_model *model = open();
  ASSERT_NE(model, nullptr) << error;
  Result r = generate(model, {{1, 32}}, greedy(2));
  EXPECT_EQ(r.rc, -1);
  EXPECT_EQ(r.error, "sequence 0: token id 32 at position 1 is out of range "
                     "[0, 32)");
  r = generate(model, {{1}, {-1}}, greedy(2));
  EXPECT_THAT(r.error, HasSubstr("sequence 1: token id -1 at position 0"));
  r = generate(model, {{1, 2, 3, 4, 5, 6}}, greedy(11));
  EXPECT_EQ(r.error, "sequence 0: 6 prompt tokens + 11 new tokens = 17 "
                     "exceed the artifact's max sequence length of 16");
  r = generate(model, {{1, 2, 3, 4, 5, 6}}, greedy(10));
  EXPECT_EQ(r.rc, 0) << r.error; // exactly max_seq_len is fine
  r = generate(model, {{1, 2, 3, 4, 5, 6}}, greedy(10), true);
  EXPECT_EQ(r.rc, 0) << r.error; // ...also when every token is fed back
  r = generate(model, {{1}, {2}, {3}}, greedy(2));
  EXPECT_EQ(r.error, "3 sequences exceed the artifact's max batch of 2");
  r = generate(model, {{}}, greedy(2));
  EXPECT_EQ(r.error, "sequence 0: the prompt is empty");
  r = generate(model, {}, greedy(2));
  EXPECT_THAT(r.error, HasSubstr("no sequence"));
  dsv3rt_sampling s = greedy(2);
  s.temperature = -1;
  EXPECT_THAT(generate(model, {{1}}, s).error, HasSubstr("temperature"));
  s = greedy(2);
  s.top_p = 0;
  EXPECT_THAT(generate(model, {{1}}, s).error, HasSubstr("top-p"));
  s.top_p = 1.5f;
  EXPECT_THAT(generate(model, {{1}}, s).error, HasSubstr("top-p"));
  s = greedy(-1);
  EXPECT_THAT(generate(model, {{1}}, s).error, HasSubstr("max new tokens"));
  // The model still works after rejected requests.
  r = generate(model, {{2, 3, 4}}, greedy(2));
  EXPECT_EQ(r.tokens[0], expectedGreedy({2, 3, 4}, 2));

  // Null arguments are errors, not crashes.
  char err[256];
  dsv3rt_sampling ok = greedy(2);
  int64_t count;
  EXPECT_EQ(dsv3rt_generate(model, nullptr, nullptr, 1, &ok, nullptr, &count,
                            nullptr, err, sizeof(err)),
            -1);
  EXPECT_EQ(dsv3rt_generate(nullptr, nullptr, nullptr, 1, &ok, nullptr,
                            &count, nullptr, err, sizeof(err)),
            -1);
  dsv3rt_close(model);
  dsv3rt_close(nullptr);
}

TEST_F(RuntimeTest, ValidateRequestNeedsOnlyTheManifest) {
  dsv3rt_artifact_info info;
  char err[256];
  ASSERT_EQ(dsv3rt_read_artifact_info(artifact.c_str(), &info, err,
                                      sizeof(err)),
            0);
  std::vector<int32_t> prompt = {3, 40};
  const int32_t *ptr = prompt.data();
  int64_t len = 2;
  dsv3rt_sampling s = greedy(2);
  EXPECT_EQ(dsv3rt_validate_request(&info, &ptr, &len, 1, &s, err,
                                    sizeof(err)),
            -1);
  EXPECT_STREQ(err, "sequence 0: token id 40 at position 1 is out of range "
                    "[0, 32)");
  prompt[1] = 4;
  EXPECT_EQ(dsv3rt_validate_request(&info, &ptr, &len, 1, &s, err,
                                    sizeof(err)),
            0);
  EXPECT_STREQ(err, "");
  // Errors are truncated to the buffer, NUL-terminated.
  char tiny[8];
  const int32_t *three[] = {ptr, ptr, ptr};
  int64_t lens[] = {2, 2, 2};
  EXPECT_EQ(dsv3rt_validate_request(&info, three, lens, 3, &s, tiny,
                                    sizeof(tiny)),
            -1);
  EXPECT_STREQ(tiny, "3 seque");
}

//===----------------------------------------------------------------------===//
// Bad artifacts and checkpoints: open fails with one line
//===----------------------------------------------------------------------===//

TEST_F(RuntimeTest, RejectsACheckpointOfAnotherConfig) {
  json other = config;
  other["hidden_size"] = 24;
  writeFile(checkpoint + "/config.json", other.dump());
  EXPECT_EQ(openError(),
            "checkpoint does not match the artifact: config field "
            "'hidden_size' is 16 in the artifact but 24 in " +
                checkpoint + "/config.json");
  other = config;
  other["rope_theta"] = 50000;
  writeFile(checkpoint + "/config.json", other.dump());
  EXPECT_THAT(openError(), HasSubstr("config field 'rope_theta'"));
  // Token ids are the artifact's business: no error.
  other = config;
  other["eos_token_id"] = 7;
  writeFile(checkpoint + "/config.json", other.dump());
  dsv3rt_model *model = open();
  EXPECT_NE(model, nullptr) << error;
  dsv3rt_close(model);
}

TEST_F(RuntimeTest, RejectsTensorsThatDoNotMatchTheManifest) {
  manifest["weights"][2]["dtype"] = "f32";
  manifest["weights"][2]["shape"] = {3, 16};
  writeArtifact(artifact, manifest);
  EXPECT_EQ(openError(),
            "checkpoint does not match the artifact: tensor "
            "'model.layers.0.input_layernorm.weight' in " +
                checkpoint +
                "/model.safetensors is BF16, the artifact expects F32 "
                "(weight 'attn.norm', layer 0)");

  manifest["weights"][2]["dtype"] = "bf16";
  manifest["weights"][3]["shape"] = {2, 4, 8, 17};
  writeArtifact(artifact, manifest);
  EXPECT_EQ(openError(),
            "checkpoint does not match the artifact: tensor "
            "'model.layers.1.mlp.experts.0.gate_proj.weight' in " +
                checkpoint +
                "/model.safetensors has shape [8, 16], the artifact expects "
                "[8, 17] (weight 'moe.expert_gate', layer 1, expert 0)");

  manifest["weights"][3]["shape"] = {2, 5, 8, 16};
  manifest["weights"][3]["experts"] = 5;
  writeArtifact(artifact, manifest);
  EXPECT_EQ(openError(),
            "checkpoint does not match the artifact: tensor "
            "'model.layers.1.mlp.experts.4.gate_proj.weight' (weight "
            "'moe.expert_gate', layer 1, expert 4) is not in " +
                checkpoint);
}

TEST_F(RuntimeTest, RejectsMissingOrCorruptWeightFiles) {
  std::string file = checkpoint + "/model.safetensors";
  std::remove(file.c_str());
  EXPECT_THAT(openError(), HasSubstr(checkpoint));

  // Truncated: the header promises more data than the file has.
  writeCheckpoint();
  std::string text;
  {
    std::ifstream in(file, std::ios::binary);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  writeFile(file, text.substr(0, text.size() - 10));
  std::string e = openError();
  EXPECT_THAT(e, HasSubstr("model.safetensors"));

  // Garbage header.
  std::string bad = text;
  bad[9] = '!';
  writeFile(file, bad);
  EXPECT_THAT(openError(), HasSubstr("model.safetensors"));

  // No config.json.
  writeCheckpoint();
  std::string configPath = checkpoint + "/config.json";
  std::remove(configPath.c_str());
  EXPECT_THAT(openError(), HasSubstr("config.json: missing"));

  // No checkpoint at all.
  checkpoint = dir / "nowhere";
  EXPECT_EQ(openError(),
            checkpoint + ": checkpoint directory does not exist");
}

TEST_F(RuntimeTest, RejectsBrokenArtifacts) {
  json m = manifest;
  m["library"] = "libnothere.so";
  writeArtifact(artifact, m);
  EXPECT_EQ(openError(), artifact + "/libnothere.so: the artifact's library "
                                    "does not exist");

  m = manifest;
  m["entry_points"]["decode"]["symbol"] = "dsv3_decode_missing";
  writeArtifact(artifact, m);
  EXPECT_EQ(openError(), artifact +
                             "/libdsv3model.so: entry point "
                             "'dsv3_decode_missing' is not exported by the "
                             "artifact's library");

  // A file that is not a shared library.
  writeArtifact(artifact, manifest);
  writeFile(artifact + "/libdsv3model.so", "not an ELF file");
  EXPECT_THAT(openError(), HasSubstr("cannot load the artifact's library"));

  writeArtifact(artifact, manifest);
  m = manifest;
  m["target"]["triple"] = "aarch64-unknown-linux-gnu";
  writeFile(artifact + "/manifest.json", m.dump());
  EXPECT_EQ(openError(), artifact + ": the artifact was built for "
                                    "aarch64-unknown-linux-gnu (aarch64); "
                                    "this machine is x86_64");

  m = manifest;
  m["target"]["features"] = {"sse2", "dsv3-no-such-feature"};
  writeFile(artifact + "/manifest.json", m.dump());
  EXPECT_EQ(openError(), artifact +
                             ": the artifact needs CPU features this "
                             "machine does not have: dsv3-no-such-feature "
                             "(built for cpu 'generic'; recompile the "
                             "artifact for this machine)");

  m = manifest;
  m["target"]["kind"] = "cuda";
  writeFile(artifact + "/manifest.json", m.dump());
  EXPECT_THAT(openError(), HasSubstr("field 'target.chip': missing"));

  // A GPU artifact opened for the CPU: refused before anything is loaded.
  m["target"]["chip"] = "sm_90a";
  writeFile(artifact + "/manifest.json", m.dump());
  EXPECT_EQ(openError(), artifact + ": the artifact was compiled for NVIDIA "
                                    "GPUs (sm_90a); run it with the cuda "
                                    "device (dsv3-run --device cuda)");

  // A CPU artifact opened for the GPU, and an unknown device.
  writeFile(artifact + "/manifest.json", manifest.dump());
  EXPECT_EQ(openError(DSV3RT_DEVICE_CUDA),
            artifact + ": the artifact was compiled for the CPU; compile it "
                       "with dsv3-compile --target cuda to run it on the GPU");
  EXPECT_EQ(openError(7), "unknown device 7 (expected DSV3RT_DEVICE_CPU or "
                          "DSV3RT_DEVICE_CUDA)");

  m = manifest;
  m["target"]["kind"] = "tpu";
  writeFile(artifact + "/manifest.json", m.dump());
  EXPECT_THAT(openError(),
              HasSubstr("field 'target.kind': must be \"cpu\" or \"cuda\", "
                        "got \"tpu\""));

  writeFile(artifact + "/manifest.json", "{\"format\": ");
  EXPECT_THAT(openError(), HasSubstr("manifest.json: invalid JSON"));

  artifact = dir / "no-artifact";
  EXPECT_EQ(openError(), artifact + ": artifact directory does not exist");
}

TEST_F(RuntimeTest, RejectsBadThreadCounts) {
  dsv3rt_open_options options;
  dsv3rt_open_options_init(&options);
  options.num_threads = -2;
  char err[256];
  EXPECT_EQ(dsv3rt_open(artifact.c_str(), checkpoint.c_str(), &options, err,
                        sizeof(err)),
            nullptr);
  EXPECT_THAT(std::string(err), HasSubstr("thread count"));
}

} // namespace
