//===- fuzz_tokenizer.cpp - libFuzzer harness of lib/Tokenizer ------------===//
//
// Two modes, by the number of files in the input (FuzzUtil.h's separator):
//  - one: arbitrary bytes as text for the shipped tokenizer
//    (test/data/tokenizer, loaded once): encode, decode of the result, decode
//    of the bytes read as ids, streaming decode;
//  - two or three: tokenizer.json, tokenizer_config.json (absent when empty)
//    and optionally a text, loaded with Tokenizer::load from a scratch
//    directory; a failure must be one error line, a tokenizer that loads
//    encodes and decodes the text.
// Checked promises (include/dsv3/Tokenizer/Tokenizer.h): valid UTF-8 text
// round-trips through encode and decode; every id encode returns is below
// size(); the streamed pieces concatenate to decode's text.
//
//===----------------------------------------------------------------------===//

#include "FuzzUtil.h"

#include "dsv3/Tokenizer/Tokenizer.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace dsv3;
using dsv3::tokenizer::StreamingDecoder;
using dsv3::tokenizer::Tokenizer;

namespace {

[[noreturn]] void fail(const char *what, std::string_view text) {
  std::fprintf(stderr, "dsv3 fuzz_tokenizer: %s (text of %zu bytes)\n", what,
               text.size());
  std::abort();
}

/// Well-formed UTF-8 (no overlongs, surrogates or code points past U+10FFFF).
bool isValidUtf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      n = 1;
      cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      n = 2;
      cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    if (i + n >= s.size()) // the sequence is cut short
      return false;
    for (size_t k = 1; k <= n; ++k) {
      unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xc0) != 0x80)
        return false;
      cp = (cp << 6) | (d & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) ||
        (n == 3 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
      return false;
    i += n + 1;
  }
  return true;
}

void exercise(const Tokenizer &tok, std::string_view text, bool checkRoundTrip) {
  std::vector<int32_t> ids = tok.encode(text, /*addBos=*/false);
  for (int32_t id : ids)
    if (id < 0 || id >= tok.size())
      fail("encode returned an id outside [0, size())", text);
  std::string decoded = tok.decode(ids);
  if (checkRoundTrip && isValidUtf8(text) && decoded != text)
    fail("valid UTF-8 does not round-trip through encode and decode", text);

  // Arbitrary ids, negative and past the vocab included.
  std::vector<int32_t> raw(text.size() / 4);
  if (!raw.empty())
    std::memcpy(raw.data(), text.data(), raw.size() * 4);
  for (bool skip : {false, true}) {
    std::string whole = tok.decode(raw, skip);
    StreamingDecoder stream(tok, skip);
    std::string pieces;
    for (int32_t id : raw)
      pieces += stream.push(id);
    pieces += stream.finish();
    if (pieces != whole)
      fail("streamed pieces differ from decode", text);
  }
  (void)tok.encode(text, /*addBos=*/true);
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  std::string_view input(reinterpret_cast<const char *>(data), size);
  std::vector<std::string_view> files = fuzz::splitFiles(input);
  if (files.size() == 1) {
    static std::unique_ptr<Tokenizer> shipped = [] {
      std::string error;
      std::unique_ptr<Tokenizer> t =
          Tokenizer::load(DSV3_TOKENIZER_DATA_DIR, error);
      if (!t) {
        std::fprintf(stderr, "dsv3 fuzz_tokenizer: %s\n", error.c_str());
        std::abort();
      }
      return t;
    }();
    exercise(*shipped, input, /*checkRoundTrip=*/true);
    return 0;
  }

  static const fuzz::ScratchDir dir;
  dir.clear();
  dir.write("tokenizer.json", files[0]);
  if (!files[1].empty())
    dir.write("tokenizer_config.json", files[1]);
  std::string error;
  std::unique_ptr<Tokenizer> tok = Tokenizer::load(dir.path(), error);
  if (!tok) {
    fuzz::checkErrorLine(error);
    return 0;
  }
  // A fuzzed vocabulary need not make every text round-trip (it may lack
  // byte tokens); the other promises hold for any tokenizer that loads.
  exercise(*tok, files.size() > 2 ? files[2] : std::string_view("Hello, world"),
           /*checkRoundTrip=*/false);
  return 0;
}
