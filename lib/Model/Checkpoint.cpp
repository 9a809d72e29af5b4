//===- Checkpoint.cpp - Memory-mapped safetensors reader ------------------===//
//
// Opens single-file and sharded safetensors checkpoints (spec §8.1) and
// validates every header as strictly as the reference implementation
// (huggingface/safetensors, tensor.rs), with two deliberate leniencies: gaps
// between tensors and unused trailing bytes are accepted, since they cannot
// make a read go wrong.
//
// Why mmap: checkpoints are far larger than memory; mapping costs nothing
// until a tensor is touched, and the runtime can hand out pointers straight
// into the page cache.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Model/Checkpoint.h"

#include "Support.h"

#include <algorithm>
#include <fcntl.h>
#include <filesystem>
#include <limits>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

using json = nlohmann::json;
namespace fs = std::filesystem;

namespace dsv3 {

//===----------------------------------------------------------------------===//
// DType
//===----------------------------------------------------------------------===//

namespace {
struct DTypeEntry {
  DType dtype;
  const char *name;
  size_t size;
};
constexpr DTypeEntry kDTypes[] = {
    {DType::F64, "F64", 8},        {DType::F32, "F32", 4},
    {DType::F16, "F16", 2},        {DType::BF16, "BF16", 2},
    {DType::F8E4M3, "F8_E4M3", 1}, {DType::F8E5M2, "F8_E5M2", 1},
    {DType::I64, "I64", 8},        {DType::I32, "I32", 4},
    {DType::I16, "I16", 2},        {DType::I8, "I8", 1},
    {DType::U8, "U8", 1},          {DType::Bool, "BOOL", 1},
};

const DTypeEntry &entryFor(DType dtype) {
  for (const DTypeEntry &e : kDTypes)
    if (e.dtype == dtype)
      return e;
  return kDTypes[0]; // unreachable: the table covers the enum
}
} // namespace

size_t dtypeSize(DType dtype) { return entryFor(dtype).size; }

const char *dtypeName(DType dtype) { return entryFor(dtype).name; }

std::optional<DType> parseDType(const std::string &name) {
  for (const DTypeEntry &e : kDTypes)
    if (name == e.name)
      return e.dtype;
  return std::nullopt;
}

bool isFloatWeightDType(DType dtype) {
  return dtype == DType::F32 || dtype == DType::BF16 || dtype == DType::F16;
}

int64_t TensorInfo::numElements() const {
  int64_t n = 1;
  for (int64_t d : shape)
    n *= d; // cannot overflow: checked against the byte count when loaded
  return n;
}

//===----------------------------------------------------------------------===//
// Header parsing
//===----------------------------------------------------------------------===//

namespace {

/// The reference implementation's MAX_HEADER_SIZE.
constexpr uint64_t kMaxHeaderSize = 100000000;

std::string rangeText(uint64_t begin, uint64_t end) {
  return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

/// `value` as JSON text for an error message, cut at 100 characters: a
/// shape of a million entries must not become a megabyte-long line.
std::string shortDump(const json &value) {
  std::string text = value.dump();
  if (text.size() > 100)
    text = text.substr(0, 100) + "...";
  return text;
}

/// A non-negative JSON integer that fits in int64_t.
bool asOffset(const json &v, uint64_t &out) {
  if (!v.is_number_unsigned())
    return false;
  out = v.get<uint64_t>();
  return out <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
}

/// Validates the header of one mapped safetensors file and appends its
/// tensors to `out`. Returns "" or an error line naming `path`.
std::string parseSafetensors(const std::string &path, const uint8_t *base,
                             size_t size,
                             std::map<std::string, std::string> &metadata,
                             std::vector<TensorInfo> &out) {
  // size >= 8 was checked by the caller.
  uint64_t headerLen = 0;
  for (int i = 0; i < 8; ++i)
    headerLen |= static_cast<uint64_t>(base[i]) << (8 * i);
  if (headerLen > kMaxHeaderSize)
    return path + ": header length " + std::to_string(headerLen) +
           " exceeds the limit of " + std::to_string(kMaxHeaderSize) + " bytes";
  if (headerLen > size - 8)
    return path + ": header length " + std::to_string(headerLen) +
           " runs past the end of the file (" + std::to_string(size - 8) +
           " bytes follow the 8-byte length)";
  const char *headerText = reinterpret_cast<const char *>(base + 8);
  // The format requires the header to start with '{' (no leading blanks).
  if (headerLen == 0 || headerText[0] != '{')
    return path + ": header must be a JSON object starting with '{'";

  // Trailing space padding is ordinary JSON whitespace.
  json header;
  std::string jsonError =
      detail::parseJsonStrict(headerText, headerText + headerLen, header);
  if (!jsonError.empty())
    return path + ": header is not valid JSON: " + jsonError;
  if (!header.is_object())
    return path + ": header must be a JSON object, got " +
           detail::jsonKind(header);

  const uint8_t *data = base + 8 + headerLen;
  uint64_t dataSize = size - 8 - headerLen;
  size_t first = out.size();
  // json objects iterate in key order, so errors come out deterministically.
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string &name = it.key();
    const json &entry = it.value();
    if (name == "__metadata__") {
      if (!entry.is_object())
        return path + ": __metadata__ must be an object of strings, got " +
               detail::jsonKind(entry);
      for (auto m = entry.begin(); m != entry.end(); ++m) {
        if (!m.value().is_string())
          return path + ": __metadata__ entry '" + m.key() +
                 "' must be a string, got " + detail::jsonKind(m.value());
        metadata[m.key()] = m.value().get<std::string>();
      }
      continue;
    }

    std::string where = path + ": tensor '" + name + "': ";
    if (!entry.is_object())
      return where +
             "expected an object with dtype, shape and data_offsets, "
             "got " +
             detail::jsonKind(entry);

    auto dtypeIt = entry.find("dtype");
    if (dtypeIt == entry.end())
      return where + "missing 'dtype'";
    if (!dtypeIt->is_string())
      return where + "'dtype' must be a string, got " +
             detail::jsonKind(*dtypeIt);
    std::optional<DType> dtype = parseDType(dtypeIt->get<std::string>());
    if (!dtype)
      return where + "unknown dtype '" + dtypeIt->get<std::string>() + "'";

    auto shapeIt = entry.find("shape");
    if (shapeIt == entry.end())
      return where + "missing 'shape'";
    if (!shapeIt->is_array())
      return where + "'shape' must be an array, got " +
             detail::jsonKind(*shapeIt);
    std::vector<int64_t> shape;
    uint64_t elements = 1;
    bool overflow = false;
    for (const json &d : *shapeIt) {
      uint64_t dim;
      if (!asOffset(d, dim))
        return where + "'shape' must hold non-negative integers, got " +
               shortDump(*shapeIt);
      shape.push_back(static_cast<int64_t>(dim));
      overflow |= __builtin_mul_overflow(elements, dim, &elements);
    }
    uint64_t needed = 0;
    overflow |= __builtin_mul_overflow(elements, dtypeSize(*dtype), &needed);
    if (overflow)
      return where + "shape " + detail::formatShape(shape) + " is too large";

    auto offsetsIt = entry.find("data_offsets");
    if (offsetsIt == entry.end())
      return where + "missing 'data_offsets'";
    uint64_t begin, end;
    if (!offsetsIt->is_array() || offsetsIt->size() != 2 ||
        !asOffset((*offsetsIt)[0], begin) || !asOffset((*offsetsIt)[1], end))
      return where +
             "'data_offsets' must be [begin, end] with non-negative "
             "integers, got " +
             (offsetsIt->is_array() ? shortDump(*offsetsIt)
                                    : detail::jsonKind(*offsetsIt));
    if (end < begin)
      return where + "data_offsets " + rangeText(begin, end) +
             " end before they begin";
    if (end - begin != needed)
      return where + "data_offsets " + rangeText(begin, end) + " hold " +
             std::to_string(end - begin) + " bytes but " + dtypeName(*dtype) +
             " " + detail::formatShape(shape) + " needs " +
             std::to_string(needed);
    if (end > dataSize)
      return where + "data_offsets " + rangeText(begin, end) +
             " run past the end of the data section (" +
             std::to_string(dataSize) + " bytes)";

    TensorInfo t;
    t.name = name;
    t.dtype = *dtype;
    t.shape = std::move(shape);
    t.data = data + begin;
    t.numBytes = static_cast<size_t>(needed);
    t.file = path;
    out.push_back(std::move(t));
  }

  // Overlap check: sort this file's tensors by start; each non-empty range
  // must begin at or after the furthest end seen so far.
  std::vector<const TensorInfo *> byStart;
  for (size_t i = first; i < out.size(); ++i)
    if (out[i].numBytes != 0)
      byStart.push_back(&out[i]);
  std::sort(byStart.begin(), byStart.end(),
            [](const TensorInfo *a, const TensorInfo *b) {
              return a->data != b->data ? a->data < b->data : a->name < b->name;
            });
  const TensorInfo *furthest = nullptr;
  for (const TensorInfo *t : byStart) {
    if (furthest && t->data < furthest->data + furthest->numBytes) {
      auto range = [&](const TensorInfo *x) {
        uint64_t b = static_cast<uint64_t>(x->data - data);
        return rangeText(b, b + x->numBytes);
      };
      return path + ": tensor '" + t->name + "': data_offsets " + range(t) +
             " overlap tensor '" + furthest->name + "' at " + range(furthest);
    }
    if (!furthest ||
        t->data + t->numBytes > furthest->data + furthest->numBytes)
      furthest = t;
  }
  return "";
}

/// A weight_map shard name must stay inside the checkpoint directory.
bool isSafeRelativePath(const std::string &name) {
  if (name.empty() || name[0] == '/')
    return false;
  for (const fs::path &part : fs::path(name))
    if (part == "..")
      return false;
  return true;
}

/// "" for a regular file (after symlinks); otherwise why it cannot be read.
/// Checked before reading: a directory reads as empty text and a FIFO
/// blocks the reader.
std::string checkRegularFile(const std::string &path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0)
    return path + ": cannot open: " + detail::errnoMessage(errno);
  if (!S_ISREG(st.st_mode))
    return path + ": not a regular file";
  return "";
}

bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool endsWith(const std::string &s, const std::string &suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string joinPath(const std::string &dir, const std::string &name) {
  if (dir.empty())
    return name;
  return dir.back() == '/' ? dir + name : dir + "/" + name;
}

} // namespace

//===----------------------------------------------------------------------===//
// CheckpointLoader
//===----------------------------------------------------------------------===//

/// Fills a Checkpoint; a friend so that Checkpoint's state stays private.
/// Mappings are recorded as soon as they exist, so a failed load unmaps them
/// when the half-built Checkpoint is destroyed.
class CheckpointLoader {
public:
  explicit CheckpointLoader(Checkpoint &checkpoint) : ckpt(checkpoint) {}

  std::string load(const std::string &path) {
    ckpt.path_ = path;
    if (isDirectory(path))
      return loadDirectory(path);
    if (endsWith(path, ".json"))
      return loadIndex(path);
    return loadSingle(path);
  }

private:
  std::string loadDirectory(const std::string &dir) {
    std::error_code ec;
    std::string index = joinPath(dir, "model.safetensors.index.json");
    if (fs::exists(index, ec))
      return loadIndex(index);
    std::string single = joinPath(dir, "model.safetensors");
    if (fs::exists(single, ec))
      return loadSingle(single);
    std::vector<std::string> candidates;
    for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
         it.increment(ec))
      if (it->path().extension() == ".safetensors")
        candidates.push_back(it->path().string());
    if (ec)
      return dir + ": cannot list directory: " + ec.message();
    if (candidates.size() == 1)
      return loadSingle(candidates[0]);
    if (candidates.empty())
      return dir + ": no model.safetensors.index.json and no *.safetensors "
                   "file";
    return dir + ": " + std::to_string(candidates.size()) +
           " *.safetensors files but no model.safetensors.index.json to say "
           "which tensor is where";
  }

  std::string loadSingle(const std::string &file) {
    std::string error = mapAndParse(file, ckpt.tensors_);
    if (!error.empty())
      return error;
    sortTensors();
    return "";
  }

  std::string loadIndex(const std::string &indexPath) {
    std::string text;
    std::string error = checkRegularFile(indexPath);
    if (error.empty())
      error = detail::readWholeFile(indexPath, text);
    if (!error.empty())
      return error;
    json index;
    error =
        detail::parseJsonStrict(text.data(), text.data() + text.size(), index);
    if (!error.empty())
      return indexPath + ": invalid JSON: " + error;
    if (!index.is_object())
      return indexPath + ": top level must be a JSON object, got " +
             detail::jsonKind(index);
    auto mapIt = index.find("weight_map");
    if (mapIt == index.end())
      return indexPath + ": missing 'weight_map'";
    if (!mapIt->is_object())
      return indexPath + ": 'weight_map' must be an object, got " +
             detail::jsonKind(*mapIt);

    // Group tensor names by shard so that each shard is mapped once.
    std::map<std::string, std::vector<std::string>> byShard;
    for (auto it = mapIt->begin(); it != mapIt->end(); ++it) {
      std::string where = indexPath + ": tensor '" + it.key() + "': ";
      if (!it.value().is_string())
        return where + "weight_map value must be a shard file name, got " +
               detail::jsonKind(it.value());
      std::string shard = it.value().get<std::string>();
      if (!isSafeRelativePath(shard))
        return where + "shard '" + shard +
               "' must be a relative path inside the checkpoint directory";
      byShard[shard].push_back(it.key());
    }

    std::string dir = fs::path(indexPath).parent_path().string();
    for (const auto &[shard, names] : byShard) {
      std::string shardPath = joinPath(dir, shard);
      struct stat st;
      if (::stat(shardPath.c_str(), &st) != 0)
        return indexPath + ": tensor '" + names.front() + "': shard '" + shard +
               "' cannot be opened (" + shardPath +
               "): " + detail::errnoMessage(errno);
      std::vector<TensorInfo> shardTensors;
      error = mapAndParse(shardPath, shardTensors);
      if (!error.empty())
        return error;
      // parseSafetensors emits tensors in name order, so binary search works.
      for (const std::string &name : names) {
        auto found =
            std::lower_bound(shardTensors.begin(), shardTensors.end(), name,
                             [](const TensorInfo &t, const std::string &n) {
                               return t.name < n;
                             });
        if (found == shardTensors.end() || found->name != name)
          return indexPath + ": tensor '" + name +
                 "': weight_map names shard '" + shard +
                 "', which does not contain it";
        ckpt.tensors_.push_back(std::move(*found));
      }
    }
    sortTensors();
    return "";
  }

  /// Maps `file` read-only and validates its header.
  std::string mapAndParse(const std::string &file,
                          std::vector<TensorInfo> &out) {
    // O_NONBLOCK: opening a FIFO would otherwise wait for a writer forever;
    // it is refused below like any other file that is not regular.
    int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
      return file + ": cannot open: " + detail::errnoMessage(errno);
    struct stat st;
    if (::fstat(fd, &st) != 0) {
      int err = errno;
      ::close(fd);
      return file + ": cannot stat: " + detail::errnoMessage(err);
    }
    if (!S_ISREG(st.st_mode)) {
      ::close(fd);
      return file + ": not a regular file";
    }
    size_t size = static_cast<size_t>(st.st_size);
    if (size < 8) {
      ::close(fd);
      return file + ": file is " + std::to_string(size) +
             " bytes, too short for the 8-byte header length";
    }
    // Reserve first so that recording the mapping cannot throw and leak it.
    ckpt.mappings_.reserve(ckpt.mappings_.size() + 1);
    void *address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    int mapError = errno;
    ::close(fd);
    if (address == MAP_FAILED)
      return file + ": cannot map: " + detail::errnoMessage(mapError);
    ckpt.mappings_.push_back({address, size});

    CheckpointFile info;
    info.path = file;
    info.size = size;
    std::string error = parseSafetensors(
        file, static_cast<const uint8_t *>(address), size, info.metadata, out);
    if (!error.empty())
      return error;
    ckpt.files_.push_back(std::move(info));
    return "";
  }

  void sortTensors() {
    std::sort(ckpt.tensors_.begin(), ckpt.tensors_.end(),
              [](const TensorInfo &a, const TensorInfo &b) {
                return a.name < b.name;
              });
  }

  Checkpoint &ckpt;
};

//===----------------------------------------------------------------------===//
// Checkpoint
//===----------------------------------------------------------------------===//

CheckpointOpenResult Checkpoint::open(const std::string &path) {
  CheckpointOpenResult result;
  try {
    Checkpoint checkpoint;
    std::string error = CheckpointLoader(checkpoint).load(path);
    if (!error.empty())
      result.error = std::move(error);
    else
      result.checkpoint.emplace(std::move(checkpoint));
  } catch (const std::exception &e) {
    result.error = path + ": " + e.what();
  } catch (...) {
    result.error = path + ": unknown error while opening the checkpoint";
  }
  // Tensor and shard names come from the input; keep the error one line.
  result.error = escapeControlChars(result.error);
  return result;
}

Checkpoint::Checkpoint(Checkpoint &&other) noexcept
    : path_(std::move(other.path_)), tensors_(std::move(other.tensors_)),
      files_(std::move(other.files_)), mappings_(std::move(other.mappings_)) {
  other.mappings_.clear();
}

Checkpoint &Checkpoint::operator=(Checkpoint &&other) noexcept {
  if (this != &other) {
    unmapAll();
    path_ = std::move(other.path_);
    tensors_ = std::move(other.tensors_);
    files_ = std::move(other.files_);
    mappings_ = std::move(other.mappings_);
    other.mappings_.clear();
  }
  return *this;
}

Checkpoint::~Checkpoint() { unmapAll(); }

void Checkpoint::unmapAll() {
  for (const Mapping &m : mappings_)
    ::munmap(m.address, m.size);
  mappings_.clear();
}

const TensorInfo *Checkpoint::find(const std::string &name) const {
  auto it = std::lower_bound(
      tensors_.begin(), tensors_.end(), name,
      [](const TensorInfo &t, const std::string &n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

} // namespace dsv3
