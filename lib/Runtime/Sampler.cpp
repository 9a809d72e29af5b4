//===- Sampler.cpp - Next-token selection from logits ---------------------===//

#include "dsv3/Runtime/Sampler.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace dsv3 {
namespace runtime {

namespace {
uint64_t splitmix64(uint64_t &state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
} // namespace

Rng::Rng(uint64_t seed, uint64_t stream) {
  // Mix the stream index in through one splitmix step so that (seed, 0) and
  // (seed + 1, 0) are as unrelated as (seed, 0) and (seed, 1).
  uint64_t state = seed;
  uint64_t mixed = splitmix64(state) ^ (stream * 0xD1B54A32D192ED03ULL);
  for (uint64_t &word : s)
    word = splitmix64(mixed);
}

uint64_t Rng::next() {
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double Rng::uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

int64_t argmaxLogits(const float *logits, int64_t n) {
  int64_t best = -1;
  for (int64_t i = 0; i < n; ++i) {
    if (std::isnan(logits[i]))
      continue;
    if (best < 0 || logits[i] > logits[best])
      best = i;
  }
  return best;
}

bool hasNaN(const float *logits, int64_t n) {
  for (int64_t i = 0; i < n; ++i)
    if (std::isnan(logits[i]))
      return true;
  return false;
}

namespace {

/// exp((logit - max) / T) per token (NaN: 0) into scratch.weights; returns
/// their sum, or -1 if no token has non-zero probability. `best` is the
/// argmax.
double unnormalisedWeights(const float *logits, int64_t n, float temperature,
                           SamplerScratch &scratch, int64_t &best) {
  best = argmaxLogits(logits, n);
  if (best < 0 || (std::isinf(logits[best]) && logits[best] < 0))
    return -1.0;
  const double maxLogit = logits[best];
  const double invT = 1.0 / static_cast<double>(temperature);
  // Unnormalised probabilities relative to the most likely token (whose
  // weight is 1), so nothing overflows.
  std::vector<double> &weights = scratch.weights;
  weights.resize(static_cast<size_t>(n));
  double total = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    float l = logits[i];
    double w =
        std::isnan(l) ? 0.0 : std::exp((static_cast<double>(l) - maxLogit) * invT);
    weights[i] = w;
    total += w;
  }
  return total;
}

/// Nucleus: the most likely tokens, by decreasing probability (lower id
/// first on ties), until their mass reaches top_p: the first `kept` of
/// scratch.candidates; returns their mass.
double nucleus(int64_t n, float topP, double total, SamplerScratch &scratch,
               size_t &kept) {
  // Sorting the whole vocabulary per token is slow for 100k+ vocabularies,
  // so sort only the tokens above a threshold, lowering it until those
  // tokens hold enough mass; the kept prefix is then the same as with a
  // full sort.
  const std::vector<double> &weights = scratch.weights;
  std::vector<std::pair<double, int64_t>> &candidates = scratch.candidates;
  const double target = static_cast<double>(topP) * total;
  for (double threshold = 1e-3;; threshold *= 1e-3) {
    candidates.clear();
    double mass = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      double w = weights[i];
      if (w > 0.0 && w >= threshold) {
        candidates.emplace_back(w, i);
        mass += w;
      }
    }
    if (mass >= target || threshold < 1e-300)
      break;
  }
  std::sort(candidates.begin(), candidates.end(),
            [](const auto &a, const auto &b) {
              return a.first != b.first ? a.first > b.first
                                        : a.second < b.second;
            });
  kept = 0;
  double keptMass = 0.0;
  while (kept < candidates.size()) {
    keptMass += candidates[kept].first;
    ++kept;
    if (keptMass >= target)
      break;
  }
  return keptMass;
}

} // namespace

int64_t sampleLogits(const float *logits, int64_t n, float temperature,
                     float topP, Rng &rng, SamplerScratch &scratch) {
  int64_t best;
  const double total =
      unnormalisedWeights(logits, n, temperature, scratch, best);
  if (total < 0)
    return -1;
  const std::vector<double> &weights = scratch.weights;
  if (!(topP < 1.0f)) {
    double u = rng.uniform() * total, cumulative = 0.0;
    int64_t last = best;
    for (int64_t i = 0; i < n; ++i) {
      if (weights[i] <= 0.0)
        continue;
      cumulative += weights[i];
      last = i;
      if (u < cumulative)
        return i;
    }
    return last; // rounding left u at the very top
  }
  size_t kept = 0;
  const double keptMass = nucleus(n, topP, total, scratch, kept);
  const auto &candidates = scratch.candidates;
  double u = rng.uniform() * keptMass, cumulative = 0.0;
  for (size_t k = 0; k < kept; ++k) {
    cumulative += candidates[k].first;
    if (u < cumulative)
      return candidates[k].second;
  }
  return candidates[kept - 1].second;
}

bool samplingDistribution(const float *logits, int64_t n, float temperature,
                          float topP, SamplerScratch &scratch,
                          std::vector<double> &probabilities) {
  int64_t best;
  const double total =
      unnormalisedWeights(logits, n, temperature, scratch, best);
  if (total < 0)
    return false;
  probabilities.assign(static_cast<size_t>(n), 0.0);
  if (!(topP < 1.0f)) {
    for (int64_t i = 0; i < n; ++i)
      probabilities[i] = scratch.weights[i] / total;
    return true;
  }
  size_t kept = 0;
  const double keptMass = nucleus(n, topP, total, scratch, kept);
  for (size_t k = 0; k < kept; ++k)
    probabilities[scratch.candidates[k].second] =
        scratch.candidates[k].first / keptMass;
  return true;
}

int64_t sampleDistribution(const std::vector<double> &weights, Rng &rng) {
  double total = 0.0;
  int64_t last = -1;
  for (size_t i = 0; i < weights.size(); ++i)
    if (weights[i] > 0.0) {
      total += weights[i];
      last = static_cast<int64_t>(i);
    }
  if (last < 0)
    return -1;
  double u = rng.uniform() * total, cumulative = 0.0;
  for (size_t i = 0; i < weights.size(); ++i) {
    if (weights[i] <= 0.0)
      continue;
    cumulative += weights[i];
    if (u < cumulative)
      return static_cast<int64_t>(i);
  }
  return last; // rounding left u at the very top
}

} // namespace runtime
} // namespace dsv3
