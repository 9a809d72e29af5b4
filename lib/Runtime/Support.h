//===- Support.h - Helpers shared by the runtime sources --------*- C++ -*-===//
//
// Private to lib/Runtime. The JSON and file helpers (JSON parsing without
// exceptions leaking, whole-file reads, "must be X, got Y" kinds, shape
// formatting) come from lib/Support/JsonFileSupport.h, the one copy shared
// with lib/Model, so that a manifest and a config.json report problems in the
// same words. What stays here is what only the runtime needs: file-type
// checks and byte-size formatting.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_RUNTIME_SUPPORT_H
#define DSV3_LIB_RUNTIME_SUPPORT_H

#include "Support/JsonFileSupport.h"

#include <cstdint>
#include <cstdio>
#include <string>
#include <sys/stat.h>

namespace dsv3 {
namespace runtime {

// The shared helpers the runtime sources call unqualified.
using detail::errnoMessage;
using detail::formatShape;
using detail::jsonKind;

inline bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline bool isRegularFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// "1.5 GB", "12.0 MB", "512 B": for progress and summary lines.
inline std::string formatBytes(uint64_t bytes) {
  const char *units[] = {"B", "KB", "MB", "GB", "TB"};
  double value = static_cast<double>(bytes);
  int unit = 0;
  while (value >= 1000.0 && unit < 4) {
    value /= 1000.0;
    ++unit;
  }
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), unit ? "%.1f %s" : "%.0f %s", value,
                units[unit]);
  return buffer;
}

} // namespace runtime
} // namespace dsv3

#endif // DSV3_LIB_RUNTIME_SUPPORT_H
