//===- SamplerTest.cpp - Greedy, temperature and top-p selection ----------===//

#include "dsv3/Runtime/Sampler.h"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

using namespace dsv3::runtime;

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

TEST(SamplerTest, ArgmaxTakesTheLowestIdOnTiesAndSkipsNaN) {
  std::vector<float> l = {1, 3, 3, 2};
  EXPECT_EQ(argmaxLogits(l.data(), 4), 1);
  l = {kNaN, -kInf, -5, kNaN};
  EXPECT_EQ(argmaxLogits(l.data(), 4), 2);
  l = {kNaN, kNaN};
  EXPECT_EQ(argmaxLogits(l.data(), 2), -1);
  EXPECT_TRUE(hasNaN(l.data(), 2));
  l = {-kInf, -kInf};
  EXPECT_EQ(argmaxLogits(l.data(), 2), 0);
  EXPECT_FALSE(hasNaN(l.data(), 2));
}

TEST(SamplerTest, RngIsReproducibleAndStreamsDiffer) {
  Rng a(42, 0), b(42, 0), c(42, 1), d(43, 0);
  uint64_t first = a.next();
  EXPECT_EQ(first, b.next());
  EXPECT_NE(first, c.next());
  EXPECT_NE(first, d.next());
  for (int i = 0; i < 1000; ++i) {
    double u = a.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
  }
  // Pinned: a seed must give the same tokens on every machine and build
  // (and in Python, which calls this code through ctypes).
  EXPECT_EQ(Rng(0, 0).next(), 18110106563157542208ULL);
  Rng pinned(1234, 5);
  EXPECT_EQ(pinned.next(), 10786924272158097907ULL);
  EXPECT_EQ(pinned.next(), 2385440621723704676ULL);
}

/// Draws `n` samples and returns the frequency of every token (exactly 1.0
/// for a token drawn every time: counts are divided at the end).
std::vector<double> frequencies(const std::vector<float> &logits, float t,
                                float topP, int n, uint64_t seed = 7) {
  Rng rng(seed, 0);
  SamplerScratch scratch;
  std::vector<int64_t> counts(logits.size(), 0);
  for (int i = 0; i < n; ++i) {
    int64_t token = sampleLogits(logits.data(), logits.size(), t, topP, rng,
                                 scratch);
    EXPECT_GE(token, 0);
    if (token >= 0)
      ++counts[token];
  }
  std::vector<double> freq(logits.size());
  for (size_t i = 0; i < counts.size(); ++i)
    freq[i] = static_cast<double>(counts[i]) / n;
  return freq;
}

TEST(SamplerTest, TemperatureOneFollowsTheSoftmax) {
  std::vector<float> logits = {0.0f, std::log(2.0f), std::log(3.0f),
                               std::log(4.0f)};
  std::vector<double> f = frequencies(logits, 1.0f, 1.0f, 40000);
  for (int i = 0; i < 4; ++i)
    EXPECT_NEAR(f[i], (i + 1) / 10.0, 0.01) << i;
}

TEST(SamplerTest, TemperatureSharpensAndFlattens) {
  std::vector<float> logits = {0.0f, 1.0f};
  // p1 = 1 / (1 + e^(-1/T)).
  for (float t : {0.25f, 1.0f, 4.0f}) {
    std::vector<double> f = frequencies(logits, t, 1.0f, 40000);
    double expected = 1.0 / (1.0 + std::exp(-1.0 / t));
    EXPECT_NEAR(f[1], expected, 0.01) << t;
  }
}

TEST(SamplerTest, TopPKeepsTheSmallestSufficientSet) {
  // Probabilities 0.5, 0.3, 0.15, 0.05 (ids shuffled).
  std::vector<float> logits = {std::log(0.15f), std::log(0.5f),
                               std::log(0.05f), std::log(0.3f)};
  std::vector<double> f = frequencies(logits, 1.0f, 0.5f, 2000);
  EXPECT_EQ(f[1], 1.0); // 0.5 reaches 0.5 alone
  f = frequencies(logits, 1.0f, 0.7f, 20000);
  EXPECT_EQ(f[0] + f[2], 0.0);
  EXPECT_NEAR(f[1], 0.5 / 0.8, 0.015);
  EXPECT_NEAR(f[3], 0.3 / 0.8, 0.015);
  f = frequencies(logits, 1.0f, 0.9f, 20000);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[0], 0.15 / 0.95, 0.015);
}

TEST(SamplerTest, TopPOnALargeVocabularyReachesTheTail) {
  // 20k tokens: one at weight 1 (after the shift), a flat tail at e^-10
  // each, below the first threshold the nucleus search tries, so it must
  // lower it to reach the tail.
  const int n = 20000;
  std::vector<float> logits(n, 0.0f);
  logits[123] = 10.0f;
  std::vector<double> f = frequencies(logits, 1.0f, 0.2f, 100);
  EXPECT_EQ(f[123], 1.0);
  // top_p 0.9 of total 1 + 19999 e^-10 = 1.908 needs the top token and
  // ~15.8k tail tokens: P(top) = 1 / 1.717 = 0.58.
  f = frequencies(logits, 1.0f, 0.9f, 400);
  EXPECT_NEAR(f[123], 1.0 / 1.717, 0.08);
  // The tail tokens kept are those with the lowest ids (ties by id).
  for (int i = 17000; i < n; ++i)
    ASSERT_EQ(f[i], 0.0) << i;
  double tail = 0;
  for (int i = 0; i < 17000; ++i)
    tail += i == 123 ? 0.0 : f[i];
  EXPECT_GT(tail, 0.2);
}

TEST(SamplerTest, MaskedAndNaNTokensAreNeverSampled) {
  std::vector<float> logits = {-kInf, 0.0f, kNaN, 0.0f};
  std::vector<double> f = frequencies(logits, 1.0f, 1.0f, 4000);
  EXPECT_EQ(f[0], 0.0);
  EXPECT_EQ(f[2], 0.0);
  EXPECT_NEAR(f[1], 0.5, 0.03);
  Rng rng(1, 0);
  SamplerScratch scratch;
  std::vector<float> dead = {-kInf, kNaN};
  EXPECT_EQ(sampleLogits(dead.data(), 2, 1.0f, 1.0f, rng, scratch), -1);
  EXPECT_EQ(sampleLogits(dead.data(), 2, 1.0f, 0.5f, rng, scratch), -1);
}

TEST(SamplerTest, HugeLogitsDoNotOverflow) {
  std::vector<float> logits = {1e30f, 1e30f - 1e24f, -1e30f};
  std::vector<double> f = frequencies(logits, 1.0f, 1.0f, 100);
  EXPECT_EQ(f[0], 1.0);
}

} // namespace
