//===- FuzzUtil.h - Helpers shared by the libFuzzer harnesses ---*- C++ -*-===//
//
// The parsers under test read files (Checkpoint::open maps them, the
// tokenizer reads a directory), so the harnesses write each input into a
// scratch directory and call the real entry points on it. The directory is
// made once per process under /dev/shm when it exists (a tmpfs: no disk I/O
// per execution) and emptied between executions.
//
// A harness input that describes several files is split at kFileSeparator
// (test/Fuzz/fuzz.dict lists it so that mutations keep or add it).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TEST_FUZZ_FUZZUTIL_H
#define DSV3_TEST_FUZZ_FUZZUTIL_H

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3::fuzz {

/// Separates the files of one input. Chosen so that it cannot occur in a
/// seed: neither JSON text nor the seeds' tensor bytes contain it.
constexpr std::string_view kFileSeparator = "\n@@dsv3-file@@\n";

/// `data` split at every kFileSeparator.
inline std::vector<std::string_view> splitFiles(std::string_view data) {
  std::vector<std::string_view> parts;
  for (;;) {
    size_t at = data.find(kFileSeparator);
    parts.push_back(data.substr(0, at));
    if (at == std::string_view::npos)
      return parts;
    data.remove_prefix(at + kFileSeparator.size());
  }
}

/// A process-wide scratch directory, emptied by clear().
class ScratchDir {
public:
  ScratchDir() {
    std::string base = std::filesystem::exists("/dev/shm")
                           ? "/dev/shm"
                           : std::filesystem::temp_directory_path().string();
    std::string tmpl = base + "/dsv3-fuzz-XXXXXX";
    if (!::mkdtemp(tmpl.data())) {
      std::perror("dsv3 fuzz: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir &) = delete;
  ScratchDir &operator=(const ScratchDir &) = delete;

  const std::string &path() const { return path_; }

  /// Removes everything inside the directory.
  void clear() const {
    std::error_code ec;
    for (const auto &entry : std::filesystem::directory_iterator(path_, ec))
      std::filesystem::remove_all(entry.path(), ec);
  }

  /// Writes `bytes` to `name` inside the directory; returns its path.
  std::string write(const std::string &name, std::string_view bytes) const {
    std::string p = path_ + "/" + name;
    std::ofstream out(p, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) {
      std::fprintf(stderr, "dsv3 fuzz: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p;
  }

private:
  std::string path_;
};

/// One error line: every parser promises exactly that on failure.
inline void checkErrorLine(const std::string &error) {
  if (error.empty() || error.find('\n') != std::string::npos) {
    std::fprintf(stderr, "dsv3 fuzz: the error is not one line: '%s'\n",
                 error.c_str());
    std::abort();
  }
}

} // namespace dsv3::fuzz

#endif // DSV3_TEST_FUZZ_FUZZUTIL_H
