//===- Support.h - Helpers shared by the Model library sources --*- C++ -*-===//
//
// Private to lib/Model. The JSON and file helpers the sources use
// (detail::parseJson, jsonKind, readWholeFile, errnoMessage, formatShape) live
// in lib/Support/JsonFileSupport.h, one copy shared with lib/Runtime so that
// both libraries word their errors the same way. Helpers only the Model
// library needs belong here.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_MODEL_SUPPORT_H
#define DSV3_LIB_MODEL_SUPPORT_H

#include "Support/JsonFileSupport.h"

#include "dsv3/Model/JsonLimits.h"

#include <set>

namespace dsv3 {
namespace detail {

/// detail::parseJson, held to the limits of JsonLimits.h and refusing
/// duplicate keys: a header that lists a tensor twice, or a config that sets
/// a field twice, is ambiguous (nlohmann keeps the last, other readers the
/// first), so the two readers of one checkpoint could disagree.
inline std::string parseJsonStrict(const char *begin, const char *end,
                                   nlohmann::json &out) {
  std::string error =
      checkJsonNesting(std::string_view(begin, static_cast<size_t>(end - begin)));
  if (!error.empty())
    return error;
  if (const void *nul = std::memchr(begin, 0, static_cast<size_t>(end - begin)))
    return "NUL byte at offset " +
           std::to_string(static_cast<const char *>(nul) - begin);
  using Event = nlohmann::json::parse_event_t;
  std::vector<std::set<std::string>> keys; // one set per open object
  std::string duplicate;
  bool hasDuplicate = false;
  auto callback = [&](int, Event event, nlohmann::json &parsed) {
    if (event == Event::object_start) {
      keys.emplace_back();
    } else if (event == Event::object_end) {
      if (!keys.empty())
        keys.pop_back();
    } else if (event == Event::key && !hasDuplicate && !keys.empty() &&
               !keys.back().insert(parsed.get<std::string>()).second) {
      hasDuplicate = true;
      duplicate = parsed.get<std::string>();
    }
    return true;
  };
  try {
    out = nlohmann::json::parse(begin, end, callback);
  } catch (const nlohmann::json::parse_error &e) {
    return stripJsonExceptionPrefix(e.what());
  }
  if (hasDuplicate)
    return "duplicate key '" + duplicate + "'";
  return "";
}

} // namespace detail
} // namespace dsv3

#endif // DSV3_LIB_MODEL_SUPPORT_H
