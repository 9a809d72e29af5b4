//===- TestUtil.h - Helpers for the Model library unit tests ----*- C++ -*-===//
//
// A self-deleting temporary directory and builders for safetensors bytes, so
// that the checkpoint tests need no files from the source tree.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TEST_MODEL_TESTUTIL_H
#define DSV3_TEST_MODEL_TESTUTIL_H

#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/ModelConfig.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

namespace dsv3::test {

/// A fresh directory under the system temp dir, removed with its contents.
class TempDir {
public:
  TempDir() {
    std::string tmpl =
        (std::filesystem::temp_directory_path() / "dsv3-model-test-XXXXXX")
            .string();
    if (char *p = ::mkdtemp(tmpl.data()))
      path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    if (!path_.empty())
      std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir &) = delete;
  TempDir &operator=(const TempDir &) = delete;

  const std::string &path() const { return path_; }
  std::string file(const std::string &name) const { return path_ + "/" + name; }

  /// Writes `bytes` to `name` and returns the full path.
  std::string write(const std::string &name, const std::string &bytes) const {
    std::string p = file(name);
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return p;
  }

private:
  std::string path_;
};

/// A tensor to serialise. Empty `bytes` means zeros of the size that `dtype`
/// and `shape` imply (for dtypes the library knows).
struct FakeTensor {
  std::string name;
  std::string dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

inline std::string littleEndian64(uint64_t v) {
  std::string s(8, '\0');
  for (int i = 0; i < 8; ++i)
    s[i] = static_cast<char>((v >> (8 * i)) & 0xff);
  return s;
}

/// The 8-byte length, `header` verbatim, then `data`.
inline std::string rawSafetensors(const std::string &header,
                                  const std::string &data = "") {
  return littleEndian64(header.size()) + header + data;
}

/// A well-formed file: tensors laid out back to back in the given order,
/// header space-padded to a multiple of 8 like the Rust writer.
inline std::string safetensorsBytes(
    const std::vector<FakeTensor> &tensors,
    const std::map<std::string, std::string> &metadata = {{"format", "pt"}}) {
  nlohmann::json header = nlohmann::json::object();
  if (!metadata.empty())
    header["__metadata__"] = metadata;
  std::string data;
  for (const FakeTensor &t : tensors) {
    std::string bytes = t.bytes;
    if (bytes.empty()) {
      int64_t n = 1;
      for (int64_t d : t.shape)
        n *= d;
      std::optional<DType> dt = parseDType(t.dtype);
      bytes.assign(static_cast<size_t>(n) * (dt ? dtypeSize(*dt) : 1), '\0');
    }
    header[t.name] = {
        {"dtype", t.dtype},
        {"shape", t.shape},
        {"data_offsets", {data.size(), data.size() + bytes.size()}}};
    data += bytes;
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  return rawSafetensors(text, data);
}

/// Zero-filled tensors matching `expected` (first accepted dtype of each).
inline std::vector<FakeTensor>
fakeTensorsFor(const std::vector<ExpectedTensor> &expected) {
  std::vector<FakeTensor> out;
  for (const ExpectedTensor &e : expected)
    out.push_back({e.name, dtypeName(e.dtypes.front()), e.shape, ""});
  return out;
}

/// The error of a config.json text that must not parse: one line, naming
/// the file ("config.json: ...").
inline std::string configParseError(const std::string &text) {
  ConfigParseResult r = parseModelConfig(text);
  EXPECT_FALSE(r) << "unexpectedly parsed";
  EXPECT_EQ(r.error.rfind("config.json: ", 0), 0u) << r.error;
  EXPECT_EQ(r.error.find('\n'), std::string::npos) << "one line expected";
  return r.error;
}

/// The config.json text `base` with `key` set to `value`.
inline std::string configWith(const char *base, const std::string &key,
                              nlohmann::json value) {
  nlohmann::json j = nlohmann::json::parse(base);
  j[key] = std::move(value);
  return j.dump();
}

} // namespace dsv3::test

#endif // DSV3_TEST_MODEL_TESTUTIL_H
