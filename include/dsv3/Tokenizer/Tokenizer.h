//===- Tokenizer.h - HF byte-level BPE tokenizer (tokenizer.json) -*- C++ -*-===//
//
// Text <-> token ids for DeepSeek-V3-family checkpoints, read from the
// checkpoint's own `tokenizer.json` (Hugging Face byte-level BPE: vocab,
// merges, added/special tokens, the pre-tokenizer's Split regexes, run with
// PCRE2) and `tokenizer_config.json` (bos/eos, add_bos_token, chat template).
// Encode and decode are exact, bytes that are not valid UTF-8 on their own
// and special tokens included. Plain C++17: no MLIR, no LLVM (the runtime
// tools link it). docs/tokenizer.md.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TOKENIZER_TOKENIZER_H
#define DSV3_TOKENIZER_TOKENIZER_H

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsv3 {
namespace tokenizer {

class Tokenizer {
public:
  /// Reads DIR/tokenizer.json and, if present, DIR/tokenizer_config.json.
  /// nullptr and one error line (naming the file and what is wrong) on
  /// failure.
  static std::unique_ptr<Tokenizer> load(const std::string &dir,
                                         std::string &error);
  ~Tokenizer();

  /// Token ids of `text`. Special/added tokens written in the text are
  /// recognised as such (as HF does). With `addBos`, the bos token leads
  /// when tokenizer_config.json's add_bos_token says so (HF's
  /// `add_special_tokens=True`); without it, nothing is added.
  std::vector<int32_t> encode(std::string_view text, bool addBos) const;

  /// The text of `ids` (HF `decode`): byte-level pieces joined and mapped
  /// back to bytes; invalid UTF-8 comes out as U+FFFD as HF does. Ids with
  /// no token (a model's vocab may be padded past the tokenizer's) are
  /// skipped; with `skipSpecial`, special tokens are too.
  std::string decode(const std::vector<int32_t> &ids,
                     bool skipSpecial = false) const;

  /// The raw bytes of one token (special tokens: their text); empty for an
  /// id with no token.
  std::string tokenBytes(int32_t id) const;

  /// The pieces the pre-tokenizer cuts `text` into, in the byte-level
  /// alphabet ("Ġworld"), as HF's `pre_tokenizer.pre_tokenize_str` gives
  /// them (added tokens are not looked for). For tests and debugging.
  std::vector<std::string> preTokenize(std::string_view text) const;

  std::optional<int32_t> bosId() const;
  std::optional<int32_t> eosId() const;
  bool isSpecial(int32_t id) const;
  /// One past the largest id the tokenizer knows.
  int64_t size() const;
  /// tokenizer_config.json's chat_template ("" when absent).
  const std::string &chatTemplateSource() const;

  struct Impl;

private:
  Tokenizer();
  std::unique_ptr<Impl> impl_;
};

/// Incremental detokenization for streaming: push ids one at a time and get
/// the text they complete; bytes of a UTF-8 character split over tokens are
/// held back until it is whole. The concatenation of every push() and
/// finish() equals Tokenizer::decode of all the ids.
class StreamingDecoder {
public:
  explicit StreamingDecoder(const Tokenizer &tokenizer,
                            bool skipSpecial = false);
  std::string push(int32_t id);
  /// Whatever is held back (incomplete UTF-8 comes out as U+FFFD).
  std::string finish();

private:
  const Tokenizer &tokenizer_;
  bool skipSpecial_;
  std::string pending_;
};

} // namespace tokenizer
} // namespace dsv3

#endif // DSV3_TOKENIZER_TOKENIZER_H
