//===- fuzz_manifest.cpp - libFuzzer harness of the manifest parser -------===//
//
// dsv3::runtime::parseManifest (lib/Runtime/Manifest.cpp) on arbitrary text.
// A failure must be one error line. An accepted manifest must keep the
// promises the runtime relies on before it allocates anything: the three
// inputs found where it says, sizes computable without overflow, every
// weight's slices named, every forward weight resolvable.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "dsv3/Runtime/Manifest.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>

using namespace dsv3;
using namespace dsv3::runtime;

namespace {
[[noreturn]] void fail(const std::string &what) {
  std::fprintf(stderr, "dsv3 fuzz_manifest: %s\n", what.c_str());
  std::abort();
}
} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string text(reinterpret_cast<const char *>(data), size);
  ManifestResult parsed = parseManifest(text, "/nonexistent-artifact");
  if (!parsed) {
    fuzz::checkErrorLine(parsed.error);
    return 0;
  }
  const Manifest &m = *parsed.manifest;
  if (m.inputs.size() != 3 || m.inputs[m.tokensInput].name != "tokens" ||
      m.inputs[m.positionsInput].name != "positions" ||
      m.inputs[m.cacheInput].name != "kv_cache")
    fail("inputs are not where the manifest says");
  if (m.outputs.size() != 1)
    fail("not exactly one output");
  (void)m.kvCacheBytes();
  (void)m.weightsBytes();
  std::set<std::string> roles;
  for (const WeightSpec &w : m.weights) {
    roles.insert(w.role);
    (void)w.numBytes();
    // Slices are named on demand; name the first and the last.
    int64_t slices = w.numSlices();
    if (slices < 1)
      fail("weight '" + w.role + "' has no slice");
    for (int64_t s : {int64_t(0), slices - 1}) {
      (void)w.sliceSource(s);
      (void)w.sliceLabel(s);
    }
  }
  for (const TensorSpec &p : m.prepared)
    roles.insert(p.name);
  for (const std::string &role : m.forwardWeights)
    if (!roles.count(role))
      fail("forward weight '" + role + "' is unknown");
  return 0;
}
