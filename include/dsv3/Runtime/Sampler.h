//===- Sampler.h - Next-token selection from logits -------------*- C++ -*-===//
//
// Greedy (temperature 0) is argmax with the lowest id winning ties. Otherwise
// the distribution is softmax(logits / temperature), optionally cut to the
// smallest set of most likely tokens whose probability reaches top_p
// (nucleus sampling), and one token is drawn with a uniform number from Rng.
//
// Rng is xoshiro256** seeded through splitmix64, implemented here rather than
// taken from <random>: the distributions of <random> differ between standard
// libraries, and a seed must give the same tokens everywhere (C++, Python via
// ctypes, any machine).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_SAMPLER_H
#define DSV3_RUNTIME_SAMPLER_H

#include <cstdint>
#include <utility>
#include <vector>

namespace dsv3 {
namespace runtime {

class Rng {
public:
  /// Independent streams for the same seed: `stream` is the sequence index.
  Rng(uint64_t seed, uint64_t stream);
  uint64_t next();
  /// Uniform in [0, 1), 53 random bits.
  double uniform();

private:
  uint64_t s[4];
};

/// Index of the largest finite-or-infinite logit; NaN never wins. -1 if
/// every logit is NaN or n == 0.
int64_t argmaxLogits(const float *logits, int64_t n);

/// True if any logit is NaN (a broken artifact, not a distribution).
bool hasNaN(const float *logits, int64_t n);

/// Buffers reused across sampleLogits calls (no allocation per token).
struct SamplerScratch {
  std::vector<double> weights;
  std::vector<std::pair<double, int64_t>> candidates;
};

/// Samples one token. `temperature` > 0, `topP` in (0, 1]. Returns -1 if no
/// token has non-zero probability (every logit -inf or NaN).
int64_t sampleLogits(const float *logits, int64_t n, float temperature,
                     float topP, Rng &rng, SamplerScratch &scratch);

/// The distribution sampleLogits draws from (softmax(logits / T), cut to the
/// top_p nucleus and renormalised) into `probabilities` [n]; false if no
/// token has non-zero probability. Speculative sampling compares the target
/// and draft distributions with it.
bool samplingDistribution(const float *logits, int64_t n, float temperature,
                          float topP, SamplerScratch &scratch,
                          std::vector<double> &probabilities);

/// Draws index i with probability weights[i] / sum(weights) (weights >= 0);
/// -1 if all are zero.
int64_t sampleDistribution(const std::vector<double> &weights, Rng &rng);

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_SAMPLER_H
