//===- fuzz_config.cpp - libFuzzer harness of the config.json parser ------===//
//
// parseModelConfig on arbitrary text. A failure must be one error line. An
// accepted config must survive what every consumer does with it: its
// canonical JSON (modelConfigToJson, which manifests embed) parses again to
// the same canonical JSON, the derived quantities are computed, and the
// tensor list of a config of modest size is built (the size limits keep
// that list bounded; building millions of names per input would only slow
// the fuzzer down).
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/ModelConfig.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

using namespace dsv3;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  ConfigParseResult parsed = parseModelConfig(text);
  if (!parsed) {
    fuzz::checkErrorLine(parsed.error);
    return 0;
  }
  const ModelConfig &c = *parsed.config;
  std::string canonical = modelConfigToJson(c);
  ConfigParseResult again = parseModelConfig(canonical, "canonical");
  if (!again || modelConfigToJson(*again.config) != canonical) {
    std::fprintf(stderr,
                 "dsv3 fuzz_config: the canonical form does not round-trip: "
                 "%s\n%s\n",
                 again.error.c_str(), canonical.c_str());
    std::abort();
  }
  if (c.numDenseLayers() + c.numMoeLayers() != c.numHiddenLayers ||
      !(c.softmaxScale() > 0.0) || !std::isfinite(c.softmaxScale())) {
    std::fprintf(stderr, "dsv3 fuzz_config: inconsistent derived values\n%s\n",
                 canonical.c_str());
    std::abort();
  }
  if (c.numHiddenLayers * (c.nRoutedExperts + 1) <= 4096) {
    std::vector<ExpectedTensor> tensors = expectedTensors(c);
    for (const ExpectedTensor &t : tensors)
      for (int64_t d : t.shape)
        if (d <= 0) {
          std::fprintf(stderr, "dsv3 fuzz_config: tensor %s has dim %lld\n",
                       t.name.c_str(), static_cast<long long>(d));
          std::abort();
        }
  }
  return 0;
}
