//===- JsonLimits.h - Limits every JSON input is held to --------*- C++ -*-===//
//
// The checkpoint header and index, config.json and the artifact manifest are
// outside input: each parser checks these limits before it builds a JSON
// value, so that hostile text fails with one error line instead of
// exhausting the stack or the terminal (docs/reliability.md).
//
//  - Nesting: nlohmann/json parses iteratively, but copying, comparing and
//    dumping a value recurse once per level, so "[[[[...]]]]" a million
//    levels deep overflows the stack as soon as an error message prints it.
//    No input of this project nests more than four levels.
//  - Error lines: a message quotes names taken from the input; a newline or
//    other control character inside one would break the one-line promise,
//    so they are escaped.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_MODEL_JSONLIMITS_H
#define DSV3_MODEL_JSONLIMITS_H

#include <string>
#include <string_view>

namespace dsv3 {

/// The deepest nesting of arrays and objects accepted in any JSON input.
constexpr int kMaxJsonDepth = 64;

/// "" when no array or object in `text` nests deeper than kMaxJsonDepth,
/// else "JSON nests deeper than 64 levels (at offset N)". Brackets inside
/// strings do not count. Linear, no allocation: safe on any bytes.
std::string checkJsonNesting(std::string_view text);

/// `message` with every control character (bytes 0x00-0x1f and 0x7f)
/// written as \n, \r, \t or \xHH, so that it is exactly one line.
std::string escapeControlChars(std::string_view message);

} // namespace dsv3

#endif // DSV3_MODEL_JSONLIMITS_H
