//===- JsonFileSupport.h - JSON and file helpers for plain libs -*- C++ -*-===//
//
// Private to the plain C++ libraries (lib/Model and lib/Runtime); not
// installed and not part of any public header. Both libraries read JSON files
// (config.json, the safetensors header and index, manifest.json) and must
// report problems in the same words: "cannot open: <errno text>", "invalid
// JSON: parse error at line 3, column 7: ...", "must be X, got <kind>",
// shapes as "[a, b, c]". Keeping one copy here is what keeps those texts
// identical; the tests assert them exactly, so change a message here only
// together with the tests of both libraries.
//
// Includes nlohmann/json, which the public headers deliberately do not; a
// library including this header links nlohmann_json privately. The helpers
// report failure through their return value; only what cannot be turned into
// a message here (std::bad_alloc and the like) propagates, to the catch
// blocks each library's entry points already have.
//
// Library-specific helpers stay in each library's own Support.h.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_SUPPORT_JSONFILESUPPORT_H
#define DSV3_LIB_SUPPORT_JSONFILESUPPORT_H

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <sys/stat.h>

namespace dsv3 {
namespace detail {

/// strerror, but thread-safe.
inline std::string errnoMessage(int error) {
  return std::error_code(error, std::generic_category()).message();
}

/// nlohmann's messages start with "[json.exception.parse_error.101] "; the
/// rest ("parse error at line 3, column 7: ...") is what a user needs.
inline std::string stripJsonExceptionPrefix(const std::string &what) {
  if (!what.empty() && what[0] == '[') {
    size_t close = what.find("] ");
    if (close != std::string::npos)
      return what.substr(close + 2);
  }
  return what;
}

/// Parses `[begin, end)` as one JSON value into `out`; returns "" or the
/// problem ("parse error at line 3, column 7: ..."). NUL bytes are rejected
/// up front: nlohmann treats one as the end of input and would accept
/// "{}\0garbage", which no JSON parser should.
inline std::string parseJson(const char *begin, const char *end,
                             nlohmann::json &out) {
  if (const void *nul = std::memchr(begin, 0, static_cast<size_t>(end - begin)))
    return "NUL byte at offset " +
           std::to_string(static_cast<const char *>(nul) - begin);
  try {
    out = nlohmann::json::parse(begin, end);
  } catch (const nlohmann::json::parse_error &e) {
    return stripJsonExceptionPrefix(e.what());
  }
  return "";
}

/// "an object", "a string", ... for "must be X, got Y" messages. The switch
/// lists every value_t so that -Wswitch flags a kind nlohmann adds later.
inline std::string jsonKind(const nlohmann::json &value) {
  using vt = nlohmann::json::value_t;
  switch (value.type()) {
  case vt::null:
    return "null";
  case vt::boolean:
    return "a boolean";
  case vt::string:
    return "a string";
  case vt::number_integer:
  case vt::number_unsigned:
    return "an integer";
  case vt::number_float:
    return "a non-integer number";
  case vt::array:
    return "an array";
  case vt::object:
    return "an object";
  case vt::binary:
  case vt::discarded:
    break;
  }
  return "an unsupported value";
}

/// Reads all of `path` into `text`; returns "" or an error line naming it
/// ("<path>: cannot open: <errno text>", "<path>: not a regular file" or
/// "<path>: read error"). Anything but a regular file (after symlinks) is
/// refused before it is opened: a directory would read as empty text and a
/// FIFO would block the reader forever.
inline std::string readWholeFile(const std::string &path, std::string &text) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return path + ": not a regular file";
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

/// "[a, b, c]".
inline std::string formatShape(const std::vector<int64_t> &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i)
    s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

} // namespace detail
} // namespace dsv3

#endif // DSV3_LIB_SUPPORT_JSONFILESUPPORT_H
