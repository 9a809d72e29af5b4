//===- Checkpoint.h - Memory-mapped safetensors checkpoints -----*- C++ -*-===//
//
// A read-only view of a Hugging Face safetensors checkpoint (docs/dsv3-model-
// spec.md §8): one `*.safetensors` file, or several shards listed by
// `model.safetensors.index.json`. Files are memory-mapped; a TensorInfo
// points straight into the mapping, so opening a 600 GB checkpoint costs only
// the headers.
//
// Every file is validated when opened (header bounds, JSON shape, dtypes,
// byte counts, offsets, overlaps). expectedTensors()/validateCheckpoint() then
// check the tensors against a ModelConfig (names, shapes, dtypes, FP8 block
// scales).
//
// Like ModelConfig, this links neither MLIR nor LLVM, and no exception leaves
// it: failures are returned as one error line naming the file and tensor.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_MODEL_CHECKPOINT_H
#define DSV3_MODEL_CHECKPOINT_H

#include "dsv3/Model/ModelConfig.h"

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {

//===----------------------------------------------------------------------===//
// Element types
//===----------------------------------------------------------------------===//

/// The safetensors dtypes this reader accepts. F8E4M3 is torch's
/// float8_e4m3fn (safetensors "F8_E4M3"). Sub-byte dtypes (F4, F6_*) are
/// rejected as unknown.
enum class DType {
  F64,
  F32,
  F16,
  BF16,
  F8E4M3,
  F8E5M2,
  I64,
  I32,
  I16,
  I8,
  U8,
  Bool
};

/// Bytes per element.
size_t dtypeSize(DType dtype);
/// The safetensors spelling ("F8_E4M3", "BF16", ...).
const char *dtypeName(DType dtype);
/// Inverse of dtypeName; nullopt for anything else.
std::optional<DType> parseDType(const std::string &name);
/// F32, BF16 or F16: the dtypes a non-quantised weight may have.
bool isFloatWeightDType(DType dtype);

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

/// One tensor of a checkpoint. `data` points into a read-only mapping owned by
/// the Checkpoint and is valid as long as it is. Bytes are little-endian,
/// row-major, and carry no alignment guarantee beyond 1.
struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  std::vector<int64_t> shape;
  const uint8_t *data = nullptr;
  size_t numBytes = 0;
  std::string file; // path of the .safetensors file holding it

  int64_t numElements() const;
};

/// One mapped .safetensors file.
struct CheckpointFile {
  std::string path;
  size_t size = 0;                             // bytes on disk
  std::map<std::string, std::string> metadata; // "__metadata__"
};

/// Either an open checkpoint or one error line (defined below Checkpoint,
/// which it holds by value).
struct CheckpointOpenResult;

class Checkpoint {
public:
  /// Opens `path`, which is one of:
  ///  - a directory: uses `model.safetensors.index.json` if present, else
  ///    `model.safetensors`, else its only `*.safetensors` file;
  ///  - a `*.json` file: a sharded index (weight_map);
  ///  - any other file: a single safetensors file.
  static CheckpointOpenResult open(const std::string &path);

  Checkpoint(Checkpoint &&other) noexcept;
  Checkpoint &operator=(Checkpoint &&other) noexcept;
  Checkpoint(const Checkpoint &) = delete;
  Checkpoint &operator=(const Checkpoint &) = delete;
  ~Checkpoint();

  /// What open() was given (used to prefix errors that concern no one file).
  const std::string &path() const { return path_; }
  /// All tensors, sorted by name. For a sharded checkpoint, exactly the
  /// tensors of weight_map, each from the shard it names.
  const std::vector<TensorInfo> &tensors() const { return tensors_; }
  /// The tensor called `name`, or nullptr.
  const TensorInfo *find(const std::string &name) const;
  /// The mapped files, in the order they were opened.
  const std::vector<CheckpointFile> &files() const { return files_; }

private:
  friend class CheckpointLoader;
  Checkpoint() = default;
  void unmapAll();

  struct Mapping {
    void *address = nullptr;
    size_t size = 0;
  };
  std::string path_;
  std::vector<TensorInfo> tensors_;
  std::vector<CheckpointFile> files_;
  std::vector<Mapping> mappings_;
};

struct CheckpointOpenResult {
  std::optional<Checkpoint> checkpoint;
  std::string error;
  explicit operator bool() const { return checkpoint.has_value(); }
};

//===----------------------------------------------------------------------===//
// Weight values (docs/reliability.md, "NaN and infinity in weights")
//===----------------------------------------------------------------------===//

/// The index of the first NaN or infinity among the `numBytes / size`
/// elements of `data` (little-endian `dtype`, no alignment needed), or -1.
/// F32, F64, F16 and BF16: an all-ones exponent; F8_E4M3 (e4m3fn, no
/// infinities): its NaN, S.1111.111; F8_E5M2: an all-ones exponent. Integer
/// dtypes have neither: always -1.
int64_t findNonFinite(DType dtype, const uint8_t *data, size_t numBytes);

/// memcpy of `numBytes` of `dtype` data from `src` to `dst` that also
/// returns findNonFinite of them. It scans each 64 KB chunk right after
/// copying it, while the chunk is still in cache, so checking the weights
/// costs little beyond the copy the runtime makes anyway.
int64_t copyAndFindNonFinite(DType dtype, uint8_t *dst, const uint8_t *src,
                             size_t numBytes);

/// The policy (docs/reliability.md): F64, F32, BF16 and F16 weights (FP8
/// block scales included, they are F32) must be finite. FP8 payloads are
/// not scanned: e4m3fn has no infinity and quantisers saturate to +-448, so
/// a NaN byte there is file damage, not an overflow, and the runtime's own
/// tests use every byte value as FP8 patterns.
bool isScannedForNonFinite(DType dtype);

/// findNonFinite under the policy: -1 for a dtype it does not scan.
int64_t checkWeightValues(DType dtype, const uint8_t *data, size_t numBytes);

/// memcpy of a weight that also applies the policy: copyAndFindNonFinite for
/// a scanned dtype, a plain copy and -1 otherwise.
int64_t copyWeightValues(DType dtype, uint8_t *dst, const uint8_t *src,
                         size_t numBytes);

/// The error line for element `index` of `tensor` being NaN or infinite:
/// "<file>: tensor '<name>': element <index> of <shape> is NaN; weights must
/// be finite".
std::string nonFiniteWeightError(const TensorInfo &tensor, int64_t index);

//===----------------------------------------------------------------------===//
// Validation against a model configuration
//===----------------------------------------------------------------------===//

/// A tensor that a configuration requires, with HF naming (spec §8.2).
struct ExpectedTensor {
  std::string name;
  std::vector<DType> dtypes; // any of these is accepted
  std::vector<int64_t> shape;
};

/// Every tensor the main model of `config` needs, in model order (embedding,
/// layers 0..L-1, final norm, head). With `config.fp8`, every projection
/// weight is F8_E4M3 with an F32 `weight_scale_inv` of
/// [ceil(rows/128), ceil(cols/128)]; norms, embeddings, the head and the
/// router stay F32/BF16/F16. MTP layers are not listed.
std::vector<ExpectedTensor> expectedTensors(const ModelConfig &config);

/// True for tensors of the multi-token-prediction layers
/// (`model.layers.<L>.*` with L >= num_hidden_layers), which are ignored.
bool isMtpTensorName(const std::string &name, const ModelConfig &config);

/// "" when `checkpoint` holds every expected tensor with an accepted dtype
/// and the right shape; otherwise one line naming the file (or the
/// checkpoint, for a missing tensor), the tensor and the first problem, plus
/// how many further problems there are.
std::string validateCheckpoint(const Checkpoint &checkpoint,
                               const ModelConfig &config);

/// Names of tensors the config neither expects nor explains as MTP tensors,
/// sorted. They are ignored; a tool may warn about them.
std::vector<std::string> unexpectedTensors(const Checkpoint &checkpoint,
                                           const ModelConfig &config);

} // namespace dsv3

#endif // DSV3_MODEL_CHECKPOINT_H
