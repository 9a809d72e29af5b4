//===- Manifest.h - The manifest.json of a compiled dsv3 artifact -*- C++ -*-===//
//
// An artifact directory holds manifest.json and the shared library it names.
// The manifest is the whole contract between dsv3-compile and the runtime:
// the target the library was built for, the model config, the batch and
// sequence limits, the entry-point symbols, and the exact order, dtype and
// shape of every argument (inputs, weights, outputs) of the packed entry
// points (docs/runtime.md).
//
// Parsing checks everything the runtime later relies on, so that a malformed
// manifest is one error line naming the field instead of a crash inside the
// compiled code. Plain C++ (no MLIR/LLVM); no exception leaves it.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_MANIFEST_H
#define DSV3_RUNTIME_MANIFEST_H

#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/ModelConfig.h"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {
namespace runtime {

/// Element types of entry-point arguments ("f32", "bf16", "f16", "f8e4m3",
/// "i8", "i32", "i64" in the manifest). i8 is raw bytes: the packed FP8 KV
/// cache.
enum class ElementType { F32, BF16, F16, F8E4M3, I8, I32, I64 };

size_t elementSize(ElementType type);
/// The manifest spelling.
const char *elementTypeName(ElementType type);
std::optional<ElementType> parseElementType(const std::string &name);
/// The checkpoint dtype a weight of this type is stored as, if any.
std::optional<DType> checkpointDType(ElementType type);

/// A shape dimension of -1 is dynamic (the token count of the call).
constexpr int64_t kDynamic = -1;

/// One entry of "inputs" or "outputs".
struct TensorSpec {
  std::string name;
  ElementType dtype = ElementType::F32;
  std::vector<int64_t> shape;
};

/// One entry of "weights". With `layers` = {first, count}, dim 0 indexes
/// layers first..first+count-1 ({layer} in `source`); with `experts` = E, the
/// next dim indexes experts 0..E-1 ({expert}). Each (layer, expert) slice is
/// one checkpoint tensor of shape sliceShape().
struct WeightSpec {
  std::string role;
  std::string source;
  ElementType dtype = ElementType::F32;
  std::vector<int64_t> shape;
  std::optional<int64_t> firstLayer, numLayers;
  std::optional<int64_t> numExperts;

  bool isStacked() const { return numLayers.has_value(); }
  /// Number of checkpoint tensors that make up this weight.
  int64_t numSlices() const;
  /// Shape of one checkpoint tensor (shape without the stack dims).
  std::vector<int64_t> sliceShape() const;
  size_t sliceBytes() const;
  size_t numBytes() const;
  /// The checkpoint tensor of slice `index` (row-major over layer, expert).
  std::string sliceSource(int64_t index) const;
  /// "layer 3, expert 5" for slice `index`; "" for an unstacked weight.
  std::string sliceLabel(int64_t index) const;
};

struct TargetSpec {
  std::string kind; // "cpu" or "cuda" (host code on `cpu`, kernels on `chip`)
  std::string triple;
  std::string cpu;
  std::string chip; // "sm_90a", "sm_80"; cuda only
  std::vector<std::string> features; // LLVM spelling, e.g. "avx512bf16"
};

struct EntryPointSpec {
  std::string symbol;
  int64_t seqLen = kDynamic; // -1 for prefill, 1 for decode
};

/// The compiled prepare entry: run once at load, it computes the prepared
/// weights ("prepared") from checkpoint weights (docs/runtime.md).
struct PrepareSpec {
  std::string symbol;
  std::vector<std::string> weights; // checkpoint weight roles, argument order
  std::vector<std::string> results; // prepared weight names, result order
};

/// Speculative decoding with the checkpoint's MTP module (dsv3-compile
/// --mtp; docs/speculative-decoding.md): @verify runs the main model over
/// several positions and returns every position's logits ([B, S, vocab])
/// and normalised hidden state (`hidden`, [B, S, hidden]); @draft runs the
/// MTP module on hidden states and the tokens after them, on its own cache.
struct SpeculativeSpec {
  EntryPointSpec verify, draft;
  /// Weight arguments after the inputs (roles or prepared names).
  std::vector<std::string> verifyWeights, draftWeights;
  TensorSpec hidden;   // [B, -1, hidden_size] f32
  TensorSpec mtpCache; // [1, B, max_seq_len, width], the kv_cache's dtype
};

struct Manifest {
  std::string artifactDir;
  std::string path; // of manifest.json, prefixes errors
  std::string library;
  TargetSpec target;
  ModelConfig config;
  int64_t maxBatch = 0;
  int64_t maxSeqLen = 0;
  std::string kvCacheLayout;
  /// options.prefill_as_decode_below: prefill calls of fewer tokens compute
  /// each token exactly as decode calls do (0, also when absent: no promise).
  int64_t prefillAsDecodeBelow = 0;
  EntryPointSpec prefill, decode;
  std::optional<PrepareSpec> prepare;
  std::optional<SpeculativeSpec> speculative;
  std::vector<TensorSpec> inputs;
  std::vector<WeightSpec> weights;
  /// Weights computed by the prepare entry (name = role), static shapes.
  std::vector<TensorSpec> prepared;
  /// The weight arguments of prefill and decode after the inputs, in order:
  /// roles of `weights` or names of `prepared`.
  std::vector<std::string> forwardWeights;
  std::vector<TensorSpec> outputs;
  // Positions in `inputs` of the three inputs the runtime fills.
  size_t tokensInput = 0, positionsInput = 0, cacheInput = 0;

  int64_t vocabSize() const { return config.vocabSize; }
  /// Bytes of the checkpoint weights the runtime loads.
  size_t weightsBytes() const;
  size_t kvCacheBytes() const;
  /// Path of the shared library (library resolved against artifactDir).
  std::string libraryPath() const;
};

struct ManifestResult {
  std::optional<Manifest> manifest;
  std::string error;
  explicit operator bool() const { return manifest.has_value(); }
};

/// One error line when `path` is a 64-bit little-endian ELF file whose
/// program headers or loadable segments do not all lie inside it; "" when
/// they do, and for any other file (dlopen refuses those itself). Run
/// before dlopen: the dynamic loader maps segments without comparing them
/// with the file's size, and touching a page past the end of a truncated
/// library raises SIGBUS inside dlopen.
std::string checkLibraryFile(const std::string &path);

/// Reads `<artifactDir>/manifest.json`.
ManifestResult loadManifest(const std::string &artifactDir);
/// Parses manifest text; `artifactDir` resolves the library path.
ManifestResult parseManifest(const std::string &jsonText,
                             const std::string &artifactDir,
                             const std::string &sourceName = "manifest.json");

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_MANIFEST_H
