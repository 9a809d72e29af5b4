//===- Tokenizer.cpp - HF byte-level BPE tokenizer ------------------------===//
//
// Reads a Hugging Face tokenizer.json (BPE model, byte-level pre-tokenizer and
// decoder, added tokens) and tokenizer_config.json, and encodes/decodes as HF
// `tokenizers` does (src/tokenizer/mod.rs, added_vocabulary.rs, models/bpe,
// pre_tokenizers/{split,byte_level}.rs, decoders/byte_level.rs). The steps of
// encode, in HF's order:
//   1. added tokens are cut out of the raw text (leftmost-longest match, as
//      HF's aho-corasick does): first those with normalized=false, then, in
//      what is left, those with normalized=true (there is no normalizer, so
//      both passes see the raw text);
//   2. every Split regex (PCRE2, UTF + UCP: the DeepSeek-V3 patterns need
//      \p{..} and a lookahead) cuts each piece the previous one left into
//      matches and gaps (behaviour Isolated);
//   3. ByteLevel maps each piece's bytes to GPT-2's printable alphabet; the
//      BPE model then merges by rank, exactly as HF's Word::merge_all
//      (priority queue ordered by rank, then position).
// PCRE2 10.42 has Unicode 14 tables and HF's regex engine newer ones: the
// Split patterns' \p{..} and \s are widened to HF's sets before compiling
// (UnicodeDelta.inc, generated from both by generate-unicode-delta.mjs).
// Anything the file asks for that this does not implement is rejected at load
// with one error line, never silently approximated.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Tokenizer/Tokenizer.h"

#include "Support/JsonFileSupport.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <array>
#include <filesystem>
#include <mutex>
#include <queue>
#include <unordered_map>

using json = nlohmann::json;

namespace dsv3 {
namespace tokenizer {

namespace {

/// A problem in one of the files; `load` turns it into "<file>: <what>".
struct LoadError {
  std::string message;
};

[[noreturn]] void fail(const std::string &message) { throw LoadError{message}; }

/// Ids past this are certainly a corrupt file (the largest real vocabularies
/// are ~260k); bounding them keeps a bad id from allocating gigabytes.
constexpr int64_t kMaxTokenId = (int64_t(1) << 24) - 1;

/// Words longer than this are not cached (a long run of one script would
/// otherwise pin memory for nothing); the cache is emptied when it grows
/// past kMaxCacheEntries, as HF bounds its own.
constexpr size_t kMaxCachedWordBytes = 256;
constexpr size_t kMaxCacheEntries = 100000;

//===----------------------------------------------------------------------===//
// UTF-8
//===----------------------------------------------------------------------===//

void appendUtf8(std::string &out, uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

const char kReplacement[] = "\xEF\xBF\xBD"; // U+FFFD

/// Length of the valid UTF-8 sequence at `s[i]`, 0 if the bytes there are
/// not one, or -1 if they are a valid but incomplete prefix cut by the end.
/// `bad` is then the length of the maximal invalid subpart (at least 1), the
/// unit Rust's String::from_utf8_lossy replaces by one U+FFFD (the Unicode
/// "substitution of maximal subparts" practice).
int utf8SequenceAt(const unsigned char *s, size_t n, size_t i, size_t &bad) {
  unsigned char c = s[i];
  bad = 1;
  if (c < 0x80)
    return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF; // bounds of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0)
      lo = 0xA0;
    else if (c == 0xED)
      hi = 0x9F; // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0)
      lo = 0x90;
    else if (c == 0xF4)
      hi = 0x8F; // nothing past U+10FFFF
  } else {
    return 0; // continuation byte or a byte that never starts a sequence
  }
  for (int k = 1; k < len; ++k) {
    if (i + k >= n) {
      bad = k;
      return -1;
    }
    unsigned char b = s[i + k];
    unsigned char l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) {
      bad = k;
      return 0;
    }
  }
  return len;
}

/// Appends `bytes[0, n)` to `out` as valid UTF-8, each maximal invalid
/// subpart replaced by U+FFFD. With `holdIncomplete`, a valid prefix of a
/// character cut by the end is not consumed; returns how many bytes were.
size_t appendLossy(std::string &out, const std::string &bytes,
                   bool holdIncomplete) {
  const auto *s = reinterpret_cast<const unsigned char *>(bytes.data());
  size_t n = bytes.size(), i = 0;
  while (i < n) {
    size_t bad;
    int len = utf8SequenceAt(s, n, i, bad);
    if (len > 0) {
      out.append(bytes, i, len);
      i += len;
    } else if (len < 0 && holdIncomplete) {
      break;
    } else {
      out += kReplacement;
      i += bad;
    }
  }
  return i;
}

/// Code points of a UTF-8 string known to be valid (nlohmann validates every
/// string it parses).
std::vector<uint32_t> codePoints(const std::string &s) {
  std::vector<uint32_t> cps;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    uint32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len && i + k < s.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3F);
    cps.push_back(cp);
    i += len;
  }
  return cps;
}

//===----------------------------------------------------------------------===//
// Byte-level alphabet (GPT-2's bytes_to_unicode)
//===----------------------------------------------------------------------===//

struct ByteAlphabet {
  std::array<std::string, 256> byteToChar; // UTF-8 of the printable stand-in
  std::unordered_map<uint32_t, unsigned char> charToByte;

  ByteAlphabet() {
    int extra = 0;
    for (int b = 0; b < 256; ++b) {
      bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) ||
                       (b >= 0xAE && b <= 0xFF);
      uint32_t cp = printable ? b : 256 + extra++;
      appendUtf8(byteToChar[b], cp);
      charToByte[cp] = static_cast<unsigned char>(b);
    }
  }
};

const ByteAlphabet &byteAlphabet() {
  static const ByteAlphabet alphabet;
  return alphabet;
}

/// HF's ByteLevel decoder for one token: its characters mapped back to
/// bytes, or, if any character is outside the alphabet (an added token such
/// as "<｜User｜>"), the token's own UTF-8 bytes.
std::string byteLevelDecodeToken(const std::string &token) {
  const ByteAlphabet &alphabet = byteAlphabet();
  std::string bytes;
  for (uint32_t cp : codePoints(token)) {
    auto it = alphabet.charToByte.find(cp);
    if (it == alphabet.charToByte.end())
      return token;
    bytes += static_cast<char>(it->second);
  }
  return bytes;
}

//===----------------------------------------------------------------------===//
// JSON field access with error paths
//===----------------------------------------------------------------------===//

const json &member(const json &object, const std::string &path,
                   const char *key) {
  auto it = object.find(key);
  if (it == object.end())
    fail(path + ": missing \"" + key + "\"");
  return *it;
}

std::string childPath(const std::string &path, const char *key) {
  return path.empty() ? key : path + "." + key;
}

void expectKind(const json &value, const std::string &path, bool ok,
                const char *kind) {
  if (!ok)
    fail(path + ": must be " + kind + ", got " + detail::jsonKind(value));
}

const json &objectAt(const json &parent, const std::string &path,
                     const char *key) {
  const json &v = member(parent, path, key);
  expectKind(v, childPath(path, key), v.is_object(), "an object");
  return v;
}

std::string stringAt(const json &parent, const std::string &path,
                     const char *key) {
  const json &v = member(parent, path, key);
  expectKind(v, childPath(path, key), v.is_string(), "a string");
  return v.get<std::string>();
}

/// A boolean field that may be absent (then `fallback`).
bool boolAt(const json &parent, const std::string &path, const char *key,
            bool fallback) {
  auto it = parent.find(key);
  if (it == parent.end() || it->is_null())
    return fallback;
  expectKind(*it, childPath(path, key), it->is_boolean(), "a boolean");
  return it->get<bool>();
}

int32_t tokenId(const json &v, const std::string &path) {
  expectKind(v, path, v.is_number_integer(), "an integer");
  int64_t id = v.get<int64_t>();
  if (id < 0 || id > kMaxTokenId)
    fail(path + ": token id " + std::to_string(id) + " is out of range [0, " +
         std::to_string(kMaxTokenId) + "]");
  return static_cast<int32_t>(id);
}

/// Refuses ids that leave most of [0, maxId] empty: `count` tokens added
/// to `existing` ids may reach a little past 2 * count + existing.
void checkDensity(const std::string &path, int64_t maxId, size_t count,
                  size_t existing) {
  int64_t limit = int64_t(existing) + 2 * int64_t(count) + 65536;
  if (maxId >= limit)
    fail(path + ": ids are too sparse (id " + std::to_string(maxId) + " for " +
         std::to_string(count) + " tokens)");
}

/// Where a step supported only in its default form says otherwise.
void unsupported(const std::string &path, const std::string &what) {
  fail(path + ": unsupported " + what);
}

//===----------------------------------------------------------------------===//
// PCRE2 Split patterns
//===----------------------------------------------------------------------===//

struct PcreCodeDeleter {
  void operator()(pcre2_code *code) const { pcre2_code_free(code); }
};
using PcreCode = std::unique_ptr<pcre2_code, PcreCodeDeleter>;

struct PcreMatchDataDeleter {
  void operator()(pcre2_match_data *data) const { pcre2_match_data_free(data); }
};
using PcreMatchData = std::unique_ptr<pcre2_match_data, PcreMatchDataDeleter>;

/// Per general category, the code points HF's regex engine (newer Unicode
/// tables) puts in it and PCRE2 does not; "s": all of HF's \s.
struct UnicodeClassDelta {
  const char *name;
  const char *ranges;
};
const UnicodeClassDelta kUnicodeDelta[] = {
#include "UnicodeDelta.inc"
};

/// The ranges to add to \p{name}: a two-letter category's own, a one-letter
/// class's the union of its categories' (a code point HF moved between two
/// categories of one class is already in PCRE2's, so adding it is harmless).
std::string extraRanges(const std::string &name) {
  std::string out;
  for (const UnicodeClassDelta &d : kUnicodeDelta) {
    std::string n = d.name;
    if (n != "s" && (n == name || (name.size() == 1 && n[0] == name[0])))
      out += d.ranges;
  }
  return out;
}

const char *hfWhitespace() {
  for (const UnicodeClassDelta &d : kUnicodeDelta)
    if (std::string(d.name) == "s")
      return d.ranges;
  return nullptr;
}

/// `pattern` with its Unicode classes matching what HF's engine matches:
/// \p{X} gains the code points PCRE2's older tables lack (inside a class the
/// ranges are added to it, outside it becomes [\p{X}...]), \s and \S become
/// explicit classes of HF's whitespace. Forms without a faithful rewrite
/// (\S or \P{..} inside a class, \p{^..}) are left as PCRE2 reads them.
std::string alignUnicodeClasses(const std::string &pattern) {
  const char *space = hfWhitespace();
  std::string out;
  bool inClass = false;
  for (size_t i = 0; i < pattern.size(); ++i) {
    char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      char e = pattern[i + 1];
      if ((e == 's' || e == 'S') && space) {
        if (!inClass)
          out += std::string(e == 's' ? "[" : "[^") + space + "]";
        else if (e == 's')
          out += space;
        else
          out += "\\S";
        ++i;
        continue;
      }
      if ((e == 'p' || e == 'P') && i + 2 < pattern.size()) {
        size_t end = i + 2;
        std::string name;
        if (pattern[i + 2] == '{') {
          end = pattern.find('}', i + 3);
          if (end == std::string::npos) {
            out += pattern.substr(i); // PCRE2 reports the error
            break;
          }
          name = pattern.substr(i + 3, end - i - 3);
        } else {
          name = pattern.substr(i + 2, 1);
        }
        std::string extra = extraRanges(name);
        bool negated = e == 'P';
        if (extra.empty() || (negated && inClass))
          out += pattern.substr(i, end + 1 - i);
        else if (inClass)
          out += "\\p{" + name + "}" + extra;
        else
          out += std::string(negated ? "[^" : "[") + "\\p{" + name + "}" +
                 extra + "]";
        i = end;
        continue;
      }
      out += pattern.substr(i, 2); // any other escape, copied whole
      ++i;
      continue;
    }
    if (!inClass && c == '[') {
      // A "]" first in a class (after an optional "^") is a literal.
      inClass = true;
      out += c;
      if (i + 1 < pattern.size() && pattern[i + 1] == '^')
        out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']')
        out += pattern[++i];
      continue;
    }
    if (inClass && c == '[' && i + 1 < pattern.size() &&
        pattern[i + 1] == ':') {
      size_t close = pattern.find(":]", i + 2);
      if (close != std::string::npos) {
        out += pattern.substr(i, close + 2 - i); // [:alpha:]
        i = close + 1;
        continue;
      }
    }
    if (inClass && c == ']')
      inClass = false;
    out += c;
  }
  return out;
}

PcreCode compilePattern(const std::string &pattern, bool literal,
                        const std::string &path) {
  int errorCode = 0;
  PCRE2_SIZE errorOffset = 0;
  // MULTILINE: HF's engine (Oniguruma's Ruby syntax) reads ^ and $ as line
  // anchors.
  uint32_t options = literal ? PCRE2_UTF | PCRE2_LITERAL
                             : PCRE2_UTF | PCRE2_UCP | PCRE2_MULTILINE;
  // An error in the original pattern is reported against it (its offsets),
  // so the original is compiled first; the aligned form then replaces it.
  pcre2_code *code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()),
                    pattern.size(), options, &errorCode, &errorOffset, nullptr);
  if (code && !literal) {
    std::string aligned = alignUnicodeClasses(pattern);
    if (aligned != pattern) {
      pcre2_code_free(code);
      code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(aligned.data()),
                           aligned.size(), options, &errorCode, &errorOffset,
                           nullptr);
    }
  }
  if (!code) {
    PCRE2_UCHAR buffer[256];
    pcre2_get_error_message(errorCode, buffer, sizeof(buffer));
    fail(path + ": the regex does not compile (PCRE2, at offset " +
         std::to_string(errorOffset) +
         "): " + reinterpret_cast<const char *>(buffer));
  }
  // JIT is an optimisation only: matching falls back to the interpreter.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  return PcreCode(code);
}

struct AddedToken {
  int32_t id;
  std::string content;
  bool special;
  bool normalized;
};

} // namespace

//===----------------------------------------------------------------------===//
// Impl
//===----------------------------------------------------------------------===//

struct Tokenizer::Impl {
  // Model.
  std::unordered_map<std::string, int32_t> vocab;
  /// (left id << 32 | right id) -> (rank, merged id).
  std::unordered_map<uint64_t, std::pair<int32_t, int32_t>> merges;
  /// Id of each byte's byte-level character in the vocabulary (-1: none).
  std::array<int32_t, 256> byteIds;
  std::optional<int32_t> unkId;
  bool fuseUnk = false;
  bool ignoreMerges = false;

  // Pre-tokenizer: the Split patterns, in order.
  std::vector<PcreCode> splits;

  // Added tokens: the raw-text pass and the normalized pass.
  std::vector<AddedToken> rawAdded, normalizedAdded;

  // Per id: known?, decoded bytes, special?
  std::vector<uint8_t> known;
  std::vector<std::string> bytes;
  std::vector<uint8_t> special;

  // tokenizer_config.json (and the post-processor's leading special token).
  std::optional<int32_t> bos, eos;
  bool addBos = false;
  std::string chatTemplate;

  mutable std::mutex cacheMutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  void parseTokenizerJson(const json &root);
  void parseModel(const json &model);
  void parseAddedTokens(const json &added);
  void parsePreTokenizer(const json &pre);
  void parseConfig(const json &root, std::optional<int32_t> templateBos);
  std::optional<int32_t> parsePostProcessor(const json &post,
                                            const std::string &path);
  std::optional<int32_t> lookupTokenText(const std::string &text) const;

  void setToken(int32_t id, std::string decoded, bool isSpecial);

  void encodeText(std::string_view text, std::vector<int32_t> &out) const;
  void splitAndEncode(std::string_view text, std::vector<int32_t> &out) const;
  /// The Split steps: pieces of `text` (valid UTF-8), in order.
  std::vector<std::string_view> split(std::string_view text) const;
  void bpe(std::string_view word, std::vector<int32_t> &out) const;
  void bpeUncached(std::string_view word, std::vector<int32_t> &out) const;
};

void Tokenizer::Impl::setToken(int32_t id, std::string decoded,
                               bool isSpecial) {
  if (static_cast<size_t>(id) >= known.size()) {
    known.resize(id + 1, 0);
    bytes.resize(id + 1);
    special.resize(id + 1, 0);
  }
  known[id] = 1;
  bytes[id] = std::move(decoded);
  special[id] = isSpecial;
}

void Tokenizer::Impl::parseModel(const json &model) {
  const std::string path = "model";
  // Files written by old versions of HF tokenizers have no "type"; BPE is
  // then the only model with vocab and merges.
  if (auto it = model.find("type"); it != model.end()) {
    expectKind(*it, "model.type", it->is_string(), "a string");
    if (it->get<std::string>() != "BPE")
      unsupported("model.type", "model \"" + it->get<std::string>() +
                                    "\" (only BPE is implemented)");
  }
  if (auto it = model.find("dropout");
      it != model.end() && !it->is_null() &&
      !(it->is_number() && it->get<double>() == 0.0))
    unsupported("model.dropout", "BPE dropout (must be null)");
  for (const char *key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it != model.end() && !it->is_null() &&
        !(it->is_string() && it->get<std::string>().empty()))
      unsupported(childPath(path, key), "setting (must be null)");
  }
  if (boolAt(model, path, "byte_fallback", false))
    unsupported("model.byte_fallback", "byte_fallback (must be false)");
  fuseUnk = boolAt(model, path, "fuse_unk", false);
  ignoreMerges = boolAt(model, path, "ignore_merges", false);

  const json &v = objectAt(model, path, "vocab");
  if (v.empty())
    fail("model.vocab: is empty");
  std::unordered_map<int32_t, const std::string *> byId;
  byId.reserve(v.size());
  vocab.reserve(v.size());
  // Per-id tables are dense: a file whose ids are mostly holes (one token
  // with id 16M) is refused before it can allocate for them.
  int64_t maxId = 0;
  for (auto it = v.begin(); it != v.end(); ++it)
    maxId = std::max<int64_t>(
        maxId, tokenId(it.value(), "model.vocab[\"" + it.key() + "\"]"));
  checkDensity("model.vocab", maxId, v.size(), 0);
  for (auto it = v.begin(); it != v.end(); ++it) {
    std::string where = "model.vocab[\"" + it.key() + "\"]";
    int32_t id = tokenId(it.value(), where);
    auto [prev, inserted] = byId.emplace(id, &it.key());
    if (!inserted)
      fail(where + ": id " + std::to_string(id) + " is also the id of \"" +
           *prev->second + "\"");
    vocab.emplace(it.key(), id);
    setToken(id, byteLevelDecodeToken(it.key()), false);
  }

  if (auto it = model.find("unk_token"); it != model.end() && !it->is_null()) {
    expectKind(*it, "model.unk_token", it->is_string(), "a string or null");
    auto found = vocab.find(it->get<std::string>());
    if (found == vocab.end())
      fail("model.unk_token: \"" + it->get<std::string>() +
           "\" is not in the vocabulary");
    unkId = found->second;
  }

  const ByteAlphabet &alphabet = byteAlphabet();
  for (int b = 0; b < 256; ++b) {
    auto it = vocab.find(alphabet.byteToChar[b]);
    byteIds[b] = it == vocab.end() ? -1 : it->second;
  }

  const json &m = member(model, path, "merges");
  expectKind(m, "model.merges", m.is_array(), "an array");
  merges.reserve(m.size());
  for (size_t i = 0; i < m.size(); ++i) {
    std::string where = "model.merges[" + std::to_string(i) + "]";
    const json &entry = m[i];
    std::string left, right;
    if (entry.is_string()) {
      // "left right": byte-level tokens never contain a space (it is Ġ).
      const std::string &s = entry.get_ref<const std::string &>();
      size_t space = s.find(' ');
      if (space == std::string::npos || space == 0 || space + 1 == s.size() ||
          s.find(' ', space + 1) != std::string::npos)
        fail(where + ": \"" + s + "\" is not of the form \"left right\"");
      left = s.substr(0, space);
      right = s.substr(space + 1);
    } else if (entry.is_array()) {
      if (entry.size() != 2 || !entry[0].is_string() || !entry[1].is_string())
        fail(where + ": must be a pair of strings");
      left = entry[0].get<std::string>();
      right = entry[1].get<std::string>();
    } else {
      fail(where +
           ": must be a string \"left right\" or a pair of strings, "
           "got " +
           detail::jsonKind(entry));
    }
    auto l = vocab.find(left), r = vocab.find(right),
         merged = vocab.find(left + right);
    if (l == vocab.end())
      fail(where + ": \"" + left + "\" is not in the vocabulary");
    if (r == vocab.end())
      fail(where + ": \"" + right + "\" is not in the vocabulary");
    if (merged == vocab.end())
      fail(where + ": the merged token \"" + left + right +
           "\" is not in the vocabulary");
    uint64_t key = (uint64_t(uint32_t(l->second)) << 32) | uint32_t(r->second);
    // As HF: a pair listed twice keeps its later rank.
    merges[key] = {static_cast<int32_t>(i), merged->second};
  }
}

void Tokenizer::Impl::parseAddedTokens(const json &added) {
  expectKind(added, "added_tokens", added.is_array(), "an array");
  int64_t maxId = 0;
  for (size_t i = 0; i < added.size(); ++i)
    if (added[i].is_object() && added[i].contains("id") &&
        added[i]["id"].is_number_integer())
      maxId = std::max<int64_t>(maxId, added[i]["id"].get<int64_t>());
  checkDensity("added_tokens", maxId, added.size(), known.size());
  std::unordered_map<std::string, int32_t> seen;
  // HF does not take the file's ids as given: a token in the vocabulary gets
  // its vocabulary id, any other the next id after the vocabulary size and
  // the added tokens before it (TokenizerImpl deserialization, then
  // AddedVocabulary::add_tokens; it only warns about a different id). A file
  // whose ids disagree is refused rather than renumbered behind its back.
  const int64_t vocabSize = static_cast<int64_t>(vocab.size());
  int64_t maxAssigned = -1;
  for (size_t i = 0; i < added.size(); ++i) {
    std::string where = "added_tokens[" + std::to_string(i) + "]";
    const json &t = added[i];
    expectKind(t, where, t.is_object(), "an object");
    AddedToken token;
    token.id = tokenId(member(t, where, "id"), where + ".id");
    token.content = stringAt(t, where, "content");
    if (token.content.empty())
      fail(where + ".content: is empty");
    token.special = boolAt(t, where, "special", false);
    // HF's AddedToken default: special tokens are not normalized.
    token.normalized = boolAt(t, where, "normalized", !token.special);
    for (const char *key : {"single_word", "lstrip", "rstrip"})
      if (boolAt(t, where, key, false))
        unsupported(childPath(where, key),
                    "added-token option (must be false)");
    auto inVocab = vocab.find(token.content);
    if (inVocab != vocab.end() && inVocab->second != token.id)
      fail(where + ": \"" + token.content + "\" has id " +
           std::to_string(token.id) + " but the vocabulary gives it id " +
           std::to_string(inVocab->second));
    if (!seen.emplace(token.content, token.id).second)
      fail(where + ": \"" + token.content + "\" is listed twice");
    if (inVocab == vocab.end()) {
      int64_t hfId = maxAssigned >= vocabSize || vocabSize == 0
                         ? maxAssigned + 1
                         : vocabSize;
      if (token.id != hfId)
        fail(where + ": id " + std::to_string(token.id) +
             " is not the id HF gives it (" + std::to_string(hfId) +
             ": added tokens outside the vocabulary are numbered on from its "
             "size, in file order)");
      if (static_cast<size_t>(token.id) < known.size() && known[token.id])
        fail(where + ": id " + std::to_string(token.id) +
             " already belongs to another token");
    }
    maxAssigned = std::max<int64_t>(maxAssigned, token.id);
    // HF decodes added tokens through the decoder too (so a plain-ASCII one
    // maps to itself and "<｜User｜>" falls back to its own bytes).
    setToken(token.id, byteLevelDecodeToken(token.content), token.special);
    (token.normalized ? normalizedAdded : rawAdded).push_back(token);
  }
  // Longest first: at one start position the longest token wins (HF's
  // leftmost-longest matching).
  for (auto *list : {&rawAdded, &normalizedAdded})
    std::sort(list->begin(), list->end(),
              [](const AddedToken &a, const AddedToken &b) {
                return a.content.size() > b.content.size();
              });
}

void Tokenizer::Impl::parsePreTokenizer(const json &pre) {
  expectKind(pre, "pre_tokenizer", pre.is_object(), "an object");
  std::vector<std::pair<const json *, std::string>> steps;
  std::string type = stringAt(pre, "pre_tokenizer", "type");
  if (type == "Sequence") {
    const json &list = member(pre, "pre_tokenizer", "pretokenizers");
    expectKind(list, "pre_tokenizer.pretokenizers", list.is_array(),
               "an array");
    for (size_t i = 0; i < list.size(); ++i)
      steps.emplace_back(&list[i], "pre_tokenizer.pretokenizers[" +
                                       std::to_string(i) + "]");
  } else {
    steps.emplace_back(&pre, "pre_tokenizer");
  }
  bool sawByteLevel = false;
  for (auto &[step, where] : steps) {
    expectKind(*step, where, step->is_object(), "an object");
    std::string kind = stringAt(*step, where, "type");
    if (sawByteLevel)
      unsupported(where, "pre-tokenizer step after ByteLevel");
    if (kind == "Split") {
      std::string behavior = stringAt(*step, where, "behavior");
      if (behavior != "Isolated")
        unsupported(where + ".behavior",
                    "Split behavior \"" + behavior + "\" (only Isolated)");
      if (boolAt(*step, where, "invert", false))
        unsupported(where + ".invert", "inverted Split");
      const json &pattern = objectAt(*step, where, "pattern");
      std::string patternPath = where + ".pattern";
      if (pattern.contains("Regex"))
        splits.push_back(compilePattern(stringAt(pattern, patternPath, "Regex"),
                                        false, patternPath + ".Regex"));
      else if (pattern.contains("String"))
        splits.push_back(
            compilePattern(stringAt(pattern, patternPath, "String"), true,
                           patternPath + ".String"));
      else
        fail(patternPath + ": must have \"Regex\" or \"String\"");
    } else if (kind == "ByteLevel") {
      if (boolAt(*step, where, "add_prefix_space", false))
        unsupported(where + ".add_prefix_space",
                    "ByteLevel option (must be false)");
      if (boolAt(*step, where, "use_regex", true))
        unsupported(where + ".use_regex",
                    "ByteLevel with its own GPT-2 regex (must be false; "
                    "split with Split steps)");
      sawByteLevel = true;
    } else {
      unsupported(where + ".type", "pre-tokenizer \"" + kind + "\"");
    }
  }
  if (!sawByteLevel)
    unsupported("pre_tokenizer",
                "pre-tokenizer without a final ByteLevel step (only "
                "byte-level BPE is implemented)");
}

std::optional<int32_t>
Tokenizer::Impl::parsePostProcessor(const json &post, const std::string &path) {
  if (post.is_null())
    return std::nullopt;
  expectKind(post, path, post.is_object(), "an object or null");
  std::string type = stringAt(post, path, "type");
  if (type == "ByteLevel")
    return std::nullopt; // only adjusts offsets
  if (type == "Sequence") {
    const json &list = member(post, path, "processors");
    expectKind(list, path + ".processors", list.is_array(), "an array");
    std::optional<int32_t> first;
    for (size_t i = 0; i < list.size(); ++i) {
      auto bos = parsePostProcessor(list[i], path + ".processors[" +
                                                 std::to_string(i) + "]");
      if (!first)
        first = bos;
    }
    return first;
  }
  if (type != "TemplateProcessing")
    unsupported(path + ".type", "post-processor \"" + type + "\"");
  // What a single sequence gets: only a leading special token is honoured
  // (it is how the bos is added when tokenizer_config.json is absent).
  const json &single = member(post, path, "single");
  expectKind(single, path + ".single", single.is_array(), "an array");
  const json &specials = objectAt(post, path, "special_tokens");
  std::optional<int32_t> leading;
  for (size_t i = 0; i < single.size(); ++i) {
    std::string where = path + ".single[" + std::to_string(i) + "]";
    const json &piece = single[i];
    expectKind(piece, where, piece.is_object(), "an object");
    if (piece.contains("Sequence"))
      continue;
    const json &st = objectAt(piece, where, "SpecialToken");
    std::string name = stringAt(st, where + ".SpecialToken", "id");
    auto it = specials.find(name);
    if (it == specials.end())
      fail(where + ": \"" + name + "\" is not in " + path + ".special_tokens");
    const json &ids = member(*it, path + ".special_tokens", "ids");
    if (!ids.is_array() || ids.size() != 1)
      unsupported(path + ".special_tokens[\"" + name + "\"].ids",
                  "special token of other than one id");
    int32_t id =
        tokenId(ids[0], path + ".special_tokens[\"" + name + "\"].ids[0]");
    if (i == 0)
      leading = id;
    else
      unsupported(where, "template (only a leading special token is "
                         "implemented)");
  }
  return leading;
}

void Tokenizer::Impl::parseTokenizerJson(const json &root) {
  if (!root.is_object())
    fail("top level must be a JSON object, got " + detail::jsonKind(root));
  parseModel(objectAt(root, "", "model"));
  if (auto it = root.find("added_tokens"); it != root.end())
    parseAddedTokens(*it);

  if (auto it = root.find("normalizer"); it != root.end() && !it->is_null()) {
    expectKind(*it, "normalizer", it->is_object(), "an object or null");
    std::string type = stringAt(*it, "normalizer", "type");
    const json *list = type == "Sequence"
                           ? &member(*it, "normalizer", "normalizers")
                           : nullptr;
    if (!list || !list->is_array() || !list->empty())
      unsupported("normalizer", "normalizer (only none is implemented)");
  }
  parsePreTokenizer(member(root, "", "pre_tokenizer"));

  const json &decoder = member(root, "", "decoder");
  expectKind(decoder, "decoder", decoder.is_object(), "an object");
  std::string decoderType = stringAt(decoder, "decoder", "type");
  if (decoderType != "ByteLevel")
    unsupported("decoder.type", "decoder \"" + decoderType +
                                    "\" (only ByteLevel is implemented)");
}

std::optional<int32_t>
Tokenizer::Impl::lookupTokenText(const std::string &text) const {
  for (const auto *list : {&rawAdded, &normalizedAdded})
    for (const AddedToken &t : *list)
      if (t.content == text)
        return t.id;
  if (auto it = vocab.find(text); it != vocab.end())
    return it->second;
  return std::nullopt;
}

void Tokenizer::Impl::parseConfig(const json &root,
                                  std::optional<int32_t> templateBos) {
  bos = templateBos;
  addBos = templateBos.has_value();
  if (root.is_null())
    return;
  if (!root.is_object())
    fail("top level must be a JSON object, got " + detail::jsonKind(root));
  // A special token is a string or an AddedToken object {"content": ...}.
  auto tokenField = [&](const char *key) -> std::optional<int32_t> {
    auto it = root.find(key);
    if (it == root.end() || it->is_null())
      return std::nullopt;
    std::string text;
    if (it->is_string())
      text = it->get<std::string>();
    else if (it->is_object())
      text = stringAt(*it, key, "content");
    else
      fail(std::string(key) +
           ": must be a string or an object with "
           "\"content\", got " +
           detail::jsonKind(*it));
    auto id = lookupTokenText(text);
    if (!id)
      fail(std::string(key) + ": \"" + text +
           "\" is not a token of tokenizer.json");
    return id;
  };
  if (auto id = tokenField("bos_token"))
    bos = id;
  eos = tokenField("eos_token");
  addBos = boolAt(root, "", "add_bos_token", addBos);
  if (addBos && !bos)
    fail("add_bos_token: is true but there is no bos_token");
  if (auto it = root.find("chat_template");
      it != root.end() && !it->is_null()) {
    if (it->is_string()) {
      chatTemplate = it->get<std::string>();
    } else if (it->is_array()) {
      // HF's named templates: [{"name": "default", "template": ...}, ...].
      for (size_t i = 0; i < it->size(); ++i) {
        std::string where = "chat_template[" + std::to_string(i) + "]";
        const json &t = (*it)[i];
        expectKind(t, where, t.is_object(), "an object");
        if (stringAt(t, where, "name") == "default")
          chatTemplate = stringAt(t, where, "template");
      }
      if (chatTemplate.empty())
        fail("chat_template: has no template named \"default\"");
    } else {
      fail("chat_template: must be a string or a list of named templates, "
           "got " +
           detail::jsonKind(*it));
    }
  }
}

//===----------------------------------------------------------------------===//
// Encoding
//===----------------------------------------------------------------------===//

void Tokenizer::Impl::bpeUncached(std::string_view word,
                                  std::vector<int32_t> &out) const {
  // HF's Word: a doubly linked list of symbols; a symbol merged into its
  // left neighbour gets length 0 and is skipped from then on.
  struct Symbol {
    int32_t id;
    int prev, next;
    bool alive;
  };
  std::vector<Symbol> symbols;
  symbols.reserve(word.size());
  for (unsigned char c : word) {
    int32_t id = byteIds[c];
    if (id < 0) {
      if (!unkId)
        continue; // HF drops a character with no token when there is no unk
      if (fuseUnk && !symbols.empty() && symbols.back().id == *unkId)
        continue;
      id = *unkId;
    }
    int index = static_cast<int>(symbols.size());
    symbols.push_back({id, index - 1, -1, true});
    if (index > 0)
      symbols[index - 1].next = index;
  }
  if (symbols.empty())
    return;

  struct Candidate {
    int32_t rank;
    int pos;
    int32_t newId;
    bool operator<(const Candidate &o) const {
      // std::priority_queue pops the largest: invert for lowest rank, then
      // lowest position, as HF's Merge ordering.
      return rank != o.rank ? rank > o.rank : pos > o.pos;
    }
  };
  auto mergeOf = [&](int32_t a,
                     int32_t b) -> const std::pair<int32_t, int32_t> * {
    auto it = merges.find((uint64_t(uint32_t(a)) << 32) | uint32_t(b));
    return it == merges.end() ? nullptr : &it->second;
  };
  std::priority_queue<Candidate> queue;
  for (size_t i = 0; i + 1 < symbols.size(); ++i)
    if (auto *m = mergeOf(symbols[i].id, symbols[i + 1].id))
      queue.push({m->first, static_cast<int>(i), m->second});

  while (!queue.empty()) {
    Candidate top = queue.top();
    queue.pop();
    Symbol &left = symbols[top.pos];
    if (!left.alive || left.next < 0)
      continue;
    Symbol &right = symbols[left.next];
    auto *m = mergeOf(left.id, right.id);
    if (!m || m->second != top.newId)
      continue; // stale: one side was merged with something else since
    left.id = top.newId;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0)
      symbols[right.next].prev = top.pos;
    if (left.prev >= 0)
      if (auto *pm = mergeOf(symbols[left.prev].id, left.id))
        queue.push({pm->first, left.prev, pm->second});
    if (left.next >= 0)
      if (auto *nm = mergeOf(left.id, symbols[left.next].id))
        queue.push({nm->first, top.pos, nm->second});
  }
  for (const Symbol &s : symbols)
    if (s.alive)
      out.push_back(s.id);
}

void Tokenizer::Impl::bpe(std::string_view word,
                          std::vector<int32_t> &out) const {
  if (ignoreMerges) {
    std::string chars;
    for (unsigned char c : word)
      chars += byteAlphabet().byteToChar[c];
    if (auto it = vocab.find(chars); it != vocab.end()) {
      out.push_back(it->second);
      return;
    }
  }
  bool cacheable = word.size() <= kMaxCachedWordBytes;
  std::string key(word);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    if (auto it = cache.find(key); it != cache.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  size_t start = out.size();
  bpeUncached(word, out);
  if (cacheable) {
    std::lock_guard<std::mutex> lock(cacheMutex);
    if (cache.size() >= kMaxCacheEntries)
      cache.clear();
    cache.emplace(std::move(key),
                  std::vector<int32_t>(out.begin() + start, out.end()));
  }
}

void Tokenizer::Impl::splitAndEncode(std::string_view text,
                                     std::vector<int32_t> &out) const {
  for (std::string_view piece : split(text))
    bpe(piece, out);
}

std::vector<std::string_view>
Tokenizer::Impl::split(std::string_view text) const {
  std::vector<std::string_view> pieces{text};
  PcreMatchData data(pcre2_match_data_create(1, nullptr));
  for (const PcreCode &code : splits) {
    std::vector<std::string_view> next;
    for (std::string_view piece : pieces) {
      const auto *subject = reinterpret_cast<PCRE2_SPTR>(piece.data());
      size_t pos = 0, gapStart = 0;
      while (pos <= piece.size()) {
        int rc = pcre2_match(code.get(), subject, piece.size(), pos,
                             PCRE2_NO_UTF_CHECK, data.get(), nullptr);
        if (rc == PCRE2_ERROR_JIT_STACKLIMIT)
          rc = pcre2_match(code.get(), subject, piece.size(), pos,
                           PCRE2_NO_UTF_CHECK | PCRE2_NO_JIT, data.get(),
                           nullptr);
        if (rc < 0)
          break; // no (further) match; a matching error leaves a gap too
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(data.get());
        size_t begin = ov[0], end = ov[1];
        if (end == begin) {
          // An empty match cuts nothing; step over one character.
          pos = begin + 1;
          while (pos < piece.size() &&
                 (static_cast<unsigned char>(piece[pos]) & 0xC0) == 0x80)
            ++pos;
          continue;
        }
        if (begin > gapStart)
          next.push_back(piece.substr(gapStart, begin - gapStart));
        next.push_back(piece.substr(begin, end - begin));
        gapStart = pos = end;
      }
      if (gapStart < piece.size())
        next.push_back(piece.substr(gapStart));
    }
    pieces = std::move(next);
  }
  return pieces;
}

/// Cuts `text` at the tokens of `list` (longest first at each position).
/// Calls `onText` for the pieces between them and pushes the tokens' ids.
template <typename OnText>
static void splitAdded(std::string_view text,
                       const std::vector<AddedToken> &list,
                       std::vector<int32_t> &out, OnText onText) {
  if (list.empty()) {
    onText(text);
    return;
  }
  std::array<bool, 256> firstByte{};
  for (const AddedToken &t : list)
    firstByte[static_cast<unsigned char>(t.content[0])] = true;
  size_t textStart = 0;
  for (size_t i = 0; i < text.size();) {
    const AddedToken *match = nullptr;
    if (firstByte[static_cast<unsigned char>(text[i])])
      for (const AddedToken &t : list)
        if (text.compare(i, t.content.size(), t.content) == 0) {
          match = &t; // the list is sorted longest first
          break;
        }
    if (!match) {
      ++i;
      continue;
    }
    if (i > textStart)
      onText(text.substr(textStart, i - textStart));
    out.push_back(match->id);
    i += match->content.size();
    textStart = i;
  }
  if (textStart < text.size())
    onText(text.substr(textStart));
}

void Tokenizer::Impl::encodeText(std::string_view text,
                                 std::vector<int32_t> &out) const {
  splitAdded(text, rawAdded, out, [&](std::string_view rest) {
    splitAdded(rest, normalizedAdded, out,
               [&](std::string_view plain) { splitAndEncode(plain, out); });
  });
}

//===----------------------------------------------------------------------===//
// Tokenizer
//===----------------------------------------------------------------------===//

Tokenizer::Tokenizer() : impl_(std::make_unique<Impl>()) {}
Tokenizer::~Tokenizer() = default;

std::unique_ptr<Tokenizer> Tokenizer::load(const std::string &dir,
                                           std::string &error) {
  namespace fs = std::filesystem;
  std::string file = (fs::path(dir) / "tokenizer.json").string();
  try {
    std::unique_ptr<Tokenizer> tok(new Tokenizer());
    Impl &impl = *tok->impl_;
    std::string text;
    if (std::string e = detail::readWholeFile(file, text); !e.empty()) {
      error = e;
      return nullptr;
    }
    json root;
    if (std::string e =
            detail::parseJson(text.data(), text.data() + text.size(), root);
        !e.empty()) {
      error = file + ": invalid JSON: " + e;
      return nullptr;
    }
    impl.parseTokenizerJson(root);
    std::optional<int32_t> templateBos;
    if (auto it = root.find("post_processor"); it != root.end())
      templateBos = impl.parsePostProcessor(*it, "post_processor");

    // tokenizer_config.json is optional (a bare tokenizer.json still
    // encodes and decodes); a chat_template.jinja next to it is the newer
    // HF place for the template.
    file = (fs::path(dir) / "tokenizer_config.json").string();
    json config;
    std::error_code ec;
    if (fs::exists(file, ec)) {
      if (std::string e = detail::readWholeFile(file, text); !e.empty()) {
        error = e;
        return nullptr;
      }
      if (std::string e =
              detail::parseJson(text.data(), text.data() + text.size(), config);
          !e.empty()) {
        error = file + ": invalid JSON: " + e;
        return nullptr;
      }
    }
    impl.parseConfig(config, templateBos);
    std::string jinja = (fs::path(dir) / "chat_template.jinja").string();
    if (impl.chatTemplate.empty() && fs::exists(jinja, ec)) {
      file = jinja;
      if (std::string e = detail::readWholeFile(jinja, impl.chatTemplate);
          !e.empty()) {
        error = e;
        return nullptr;
      }
    }
    return tok;
  } catch (const LoadError &e) {
    error = file + ": " + e.message;
  } catch (const std::exception &e) {
    error = file + ": " + detail::stripJsonExceptionPrefix(e.what());
  } catch (...) {
    error = file + ": unknown error while loading";
  }
  return nullptr;
}

std::vector<int32_t> Tokenizer::encode(std::string_view text,
                                       bool addBos) const {
  std::vector<int32_t> ids;
  if (addBos && impl_->addBos && impl_->bos)
    ids.push_back(*impl_->bos);
  // Matching runs on valid UTF-8 only (as HF's, whose input is a Rust
  // String): invalid bytes become U+FFFD first, as from_utf8_lossy would.
  std::string valid;
  appendLossy(valid, std::string(text), /*holdIncomplete=*/false);
  impl_->encodeText(valid, ids);
  return ids;
}

std::vector<std::string> Tokenizer::preTokenize(std::string_view text) const {
  std::string valid;
  appendLossy(valid, std::string(text), /*holdIncomplete=*/false);
  std::vector<std::string> pieces;
  for (std::string_view piece : impl_->split(valid)) {
    std::string chars;
    for (unsigned char c : piece)
      chars += byteAlphabet().byteToChar[c];
    pieces.push_back(std::move(chars));
  }
  return pieces;
}

std::string Tokenizer::tokenBytes(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->known.size() ||
      !impl_->known[id])
    return {};
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t> &ids,
                              bool skipSpecial) const {
  std::string raw;
  for (int32_t id : ids)
    if (!skipSpecial || !isSpecial(id))
      raw += tokenBytes(id);
  std::string text;
  appendLossy(text, raw, /*holdIncomplete=*/false);
  return text;
}

std::optional<int32_t> Tokenizer::bosId() const { return impl_->bos; }
std::optional<int32_t> Tokenizer::eosId() const { return impl_->eos; }

bool Tokenizer::isSpecial(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < impl_->special.size() &&
         impl_->special[id];
}

int64_t Tokenizer::size() const {
  return static_cast<int64_t>(impl_->known.size());
}

const std::string &Tokenizer::chatTemplateSource() const {
  return impl_->chatTemplate;
}

//===----------------------------------------------------------------------===//
// StreamingDecoder
//===----------------------------------------------------------------------===//

StreamingDecoder::StreamingDecoder(const Tokenizer &tokenizer, bool skipSpecial)
    : tokenizer_(tokenizer), skipSpecial_(skipSpecial) {}

std::string StreamingDecoder::push(int32_t id) {
  if (skipSpecial_ && tokenizer_.isSpecial(id))
    return {};
  pending_ += tokenizer_.tokenBytes(id);
  // Everything up to a trailing, still-completable character prefix is
  // final: the lossy decoding of a byte never depends on bytes after the
  // character it belongs to.
  std::string text;
  size_t used = appendLossy(text, pending_, /*holdIncomplete=*/true);
  pending_.erase(0, used);
  return text;
}

std::string StreamingDecoder::finish() {
  std::string text;
  appendLossy(text, pending_, /*holdIncomplete=*/false);
  pending_.clear();
  return text;
}

} // namespace tokenizer
} // namespace dsv3
