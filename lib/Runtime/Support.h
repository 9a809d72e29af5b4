//===- Support.h - Helpers shared by the runtime sources --------*- C++ -*-===//
//
// Private to lib/Runtime: file reads, JSON parsing without exceptions leaking,
// shape formatting, error-buffer copies for the C API.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_RUNTIME_SUPPORT_H
#define DSV3_LIB_RUNTIME_SUPPORT_H

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <sys/stat.h>
#include <system_error>
#include <vector>

namespace dsv3 {
namespace runtime {

/// strerror, but thread-safe.
inline std::string errnoMessage(int error) {
  return std::error_code(error, std::generic_category()).message();
}

inline bool isDirectory(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

inline bool isRegularFile(const std::string &path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// Reads all of `path`; returns "" or an error line naming it.
inline std::string readFile(const std::string &path, std::string &text) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return path + ": cannot open: " + errnoMessage(errno);
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad())
    return path + ": read error";
  text = buffer.str();
  return "";
}

/// Parses JSON text; returns "" or the parser's message without nlohmann's
/// "[json.exception...] " prefix. NUL bytes are rejected (nlohmann would stop
/// at one and accept trailing garbage).
inline std::string parseJsonText(const std::string &text, nlohmann::json &out) {
  if (text.find('\0') != std::string::npos)
    return "NUL byte at offset " + std::to_string(text.find('\0'));
  try {
    out = nlohmann::json::parse(text);
  } catch (const nlohmann::json::parse_error &e) {
    std::string what = e.what();
    size_t close = what.find("] ");
    return what[0] == '[' && close != std::string::npos ? what.substr(close + 2)
                                                        : what;
  }
  return "";
}

/// "an object", "a string", ... for "must be X, got Y" messages.
inline std::string jsonKind(const nlohmann::json &value) {
  switch (value.type()) {
  case nlohmann::json::value_t::null:
    return "null";
  case nlohmann::json::value_t::boolean:
    return "a boolean";
  case nlohmann::json::value_t::string:
    return "a string";
  case nlohmann::json::value_t::number_integer:
  case nlohmann::json::value_t::number_unsigned:
    return "an integer";
  case nlohmann::json::value_t::number_float:
    return "a non-integer number";
  case nlohmann::json::value_t::array:
    return "an array";
  case nlohmann::json::value_t::object:
    return "an object";
  default:
    return "an unsupported value";
  }
}

/// "[a, b, c]".
inline std::string formatShape(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
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
