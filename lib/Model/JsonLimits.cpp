//===- JsonLimits.cpp - Limits every JSON input is held to ----------------===//

#include "dsv3/Model/JsonLimits.h"

namespace dsv3 {

std::string checkJsonNesting(std::string_view text) {
  int depth = 0;
  bool inString = false, escaped = false;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (inString) {
      if (escaped)
        escaped = false;
      else if (c == '\\')
        escaped = true;
      else if (c == '"')
        inString = false;
      continue;
    }
    if (c == '"') {
      inString = true;
    } else if (c == '[' || c == '{') {
      if (++depth > kMaxJsonDepth)
        return "JSON nests deeper than " + std::to_string(kMaxJsonDepth) +
               " levels (at offset " + std::to_string(i) + ")";
    } else if (c == ']' || c == '}') {
      // Unbalanced closers are the parser's to report.
      if (depth > 0)
        --depth;
    }
  }
  return "";
}

std::string escapeControlChars(std::string_view message) {
  std::string out;
  out.reserve(message.size());
  for (char c : message) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u != 0x7f) {
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else {
      static const char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 15];
    }
  }
  return out;
}

} // namespace dsv3
