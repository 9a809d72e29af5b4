//===- TokenizerTest.cpp - Unit tests of lib/Tokenizer --------------------===//
//
// Properties of the tokenizer that hold whatever the vocabulary: round trips,
// bos handling, special tokens, BPE merge order on hand-made vocabularies,
// HF's lossy UTF-8 decoding, streaming detokenization, the chat format, and
// one clear error line for every kind of malformed file. Exact agreement with
// HF's own implementation on a corpus is test/node/tokenizer.test.mjs's job.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Tokenizer/Tokenizer.h"
#include "dsv3/Tokenizer/ChatTemplate.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include <sys/stat.h>

using namespace dsv3::tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

const std::string kDataDir = DSV3_TOKENIZER_DATA_DIR;
const std::string kBos = "<｜begin▁of▁sentence｜>";
const std::string kEos = "<｜end▁of▁sentence｜>";
const std::string kUser = "<｜User｜>";
const std::string kAssistant = "<｜Assistant｜>";
const std::string kReplacement = "\xEF\xBF\xBD";

json readJson(const std::string &path) {
  std::ifstream in(path, std::ios::binary);
  return json::parse(in);
}

void writeText(const fs::path &path, const std::string &text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

/// A fresh directory per test under the system temp dir, removed after.
class TempDir {
public:
  TempDir() {
    static int counter = 0;
    path_ = fs::temp_directory_path() /
            ("dsv3-tokenizer-test-" + std::to_string(::getpid()) + "-" +
             std::to_string(counter++));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  const fs::path &path() const { return path_; }
  std::string str() const { return path_.string(); }

private:
  fs::path path_;
};

std::unique_ptr<Tokenizer> loadShipped() {
  std::string error;
  auto tok = Tokenizer::load(kDataDir, error);
  EXPECT_NE(tok, nullptr) << error;
  return tok;
}

/// The id whose bytes are `bytes` (a byte token or a special token).
int32_t idOf(const Tokenizer &tok, const std::string &bytes) {
  for (int32_t id = 0; id < tok.size(); ++id)
    if (tok.tokenBytes(id) == bytes)
      return id;
  ADD_FAILURE() << "no token with bytes \"" << bytes << "\"";
  return -1;
}

/// A minimal byte-level BPE tokenizer.json over the given vocabulary.
json miniTokenizer(const std::vector<std::string> &vocab, const json &merges) {
  json v = json::object();
  for (size_t i = 0; i < vocab.size(); ++i)
    v[vocab[i]] = i;
  return {{"version", "1.0"},
          {"added_tokens", json::array()},
          {"normalizer", nullptr},
          {"pre_tokenizer",
           {{"type", "ByteLevel"},
            {"add_prefix_space", false},
            {"use_regex", false}}},
          {"post_processor", nullptr},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", v}, {"merges", merges}}}};
}

std::unique_ptr<Tokenizer> loadJson(const TempDir &dir, const json &tokenizer,
                                    std::string &error) {
  writeText(dir.path() / "tokenizer.json", tokenizer.dump());
  return Tokenizer::load(dir.str(), error);
}

const std::vector<std::string> kSamples = {
    "Hello, world!",
    "The quick brown fox jumps over the lazy dog.",
    "  leading spaces and trailing   ",
    "tabs\tand\nnewlines\r\nand CRLF",
    "1234567 3.14159 0x7fff 1,000,000",
    "深度求索的语言模型。東京は日本の首都です。",
    "Привет, мир! Ελληνικά",
    "emoji 😀👍🏽👨‍👩‍👧‍👦 🇯🇵",
    "def f(x):\n    return x ** 2  # square\n",
    "e\xCC\x81 combining \xCC\x81 lone mark",
    "",
};

} // namespace

TEST(Tokenizer, LoadsTheShippedTokenizer) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  EXPECT_EQ(tok->size(), 1024);
  ASSERT_TRUE(tok->bosId());
  ASSERT_TRUE(tok->eosId());
  EXPECT_EQ(*tok->bosId(), 0);
  EXPECT_EQ(*tok->eosId(), 1);
  EXPECT_EQ(tok->tokenBytes(0), kBos);
  EXPECT_EQ(tok->tokenBytes(1), kEos);
  EXPECT_TRUE(tok->isSpecial(0));
  EXPECT_TRUE(tok->isSpecial(1));
  EXPECT_NE(tok->chatTemplateSource().find(kUser), std::string::npos);
}

TEST(Tokenizer, RoundTripsText) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  for (const std::string &s : kSamples) {
    std::vector<int32_t> ids = tok->encode(s, false);
    EXPECT_EQ(tok->decode(ids), s);
    for (int32_t id : ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok->size());
    }
  }
}

TEST(Tokenizer, MergesCompressTrainedText) {
  // The training corpus must come out far shorter than its bytes, or the
  // merges are not being applied.
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  std::ifstream in(kDataDir + "/corpus.txt", std::ios::binary);
  std::string corpus((std::istreambuf_iterator<char>(in)),
                     std::istreambuf_iterator<char>());
  ASSERT_GT(corpus.size(), 10000u);
  std::vector<int32_t> ids = tok->encode(corpus, false);
  EXPECT_LT(ids.size() * 2, corpus.size());
  EXPECT_EQ(tok->decode(ids), corpus);
}

TEST(Tokenizer, BosFollowsAddBosToken) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  for (const std::string &s : kSamples) {
    std::vector<int32_t> plain = tok->encode(s, false);
    std::vector<int32_t> withBos = tok->encode(s, true);
    ASSERT_EQ(withBos.size(), plain.size() + 1);
    EXPECT_EQ(withBos[0], *tok->bosId());
    EXPECT_TRUE(std::equal(plain.begin(), plain.end(), withBos.begin() + 1));
  }

  // add_bos_token false: addBos adds nothing.
  TempDir dir;
  fs::copy_file(kDataDir + "/tokenizer.json", dir.path() / "tokenizer.json");
  json config = readJson(kDataDir + "/tokenizer_config.json");
  config["add_bos_token"] = false;
  writeText(dir.path() / "tokenizer_config.json", config.dump());
  std::string error;
  auto noBos = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(noBos) << error;
  EXPECT_EQ(noBos->encode("hi", true), tok->encode("hi", false));
  EXPECT_EQ(*noBos->bosId(), 0);

  // No tokenizer_config.json: the post-processor's leading bos decides, and
  // there is no chat template.
  fs::remove(dir.path() / "tokenizer_config.json");
  auto bare = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(bare) << error;
  EXPECT_EQ(bare->encode("hi", true), tok->encode("hi", true));
  EXPECT_FALSE(bare->eosId());
  EXPECT_EQ(bare->chatTemplateSource(), "");
}

TEST(Tokenizer, ChatTemplateSources) {
  const json config = readJson(kDataDir + "/tokenizer_config.json");
  const std::string source = config["chat_template"];
  TempDir dir;
  fs::copy_file(kDataDir + "/tokenizer.json", dir.path() / "tokenizer.json");
  std::string error;
  // HF's list of named templates: "default" is the chat template.
  json named = config;
  named["chat_template"] = {{{"name", "tool_use"}, {"template", "{{ tools }}"}},
                            {{"name", "default"}, {"template", source}}};
  writeText(dir.path() / "tokenizer_config.json", named.dump());
  auto tok = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->chatTemplateSource(), source);
  // Newer HF checkpoints keep it in chat_template.jinja.
  json without = config;
  without.erase("chat_template");
  writeText(dir.path() / "tokenizer_config.json", without.dump());
  writeText(dir.path() / "chat_template.jinja", source + "\n");
  tok = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->chatTemplateSource(), source + "\n");
  // The config's own template wins over the file.
  writeText(dir.path() / "tokenizer_config.json", config.dump());
  tok = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->chatTemplateSource(), source);
  // A named list without "default" is an error.
  named["chat_template"].erase(1);
  writeText(dir.path() / "tokenizer_config.json", named.dump());
  EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
  EXPECT_NE(error.find("chat_template: has no template named \"default\""),
            std::string::npos)
      << error;
}

TEST(Tokenizer, SpecialTokensInText) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  int32_t user = idOf(*tok, kUser), assistant = idOf(*tok, kAssistant);
  EXPECT_FALSE(tok->isSpecial(user)); // as in DeepSeek-V3's tokenizer.json

  std::string text = kBos + "a" + kUser + "b c" + kAssistant + kEos + kEos;
  std::vector<int32_t> ids = tok->encode(text, false);
  std::vector<int32_t> a = tok->encode("a", false),
                       bc = tok->encode("b c", false);
  std::vector<int32_t> expected = {0};
  expected.insert(expected.end(), a.begin(), a.end());
  expected.push_back(user);
  expected.insert(expected.end(), bc.begin(), bc.end());
  expected.insert(expected.end(), {assistant, 1, 1});
  EXPECT_EQ(ids, expected);
  EXPECT_EQ(tok->decode(ids), text);
  // Skipping special tokens drops bos/eos but keeps the (non-special) tags.
  EXPECT_EQ(tok->decode(ids, /*skipSpecial=*/true),
            "a" + kUser + "b c" + kAssistant);

  // A partial tag is plain text.
  std::string partial = "<｜User";
  std::vector<int32_t> partialIds = tok->encode(partial, false);
  EXPECT_EQ(std::count(partialIds.begin(), partialIds.end(), user), 0);
  EXPECT_EQ(tok->decode(partialIds), partial);
}

TEST(Tokenizer, AddedTokensLongestFirst) {
  TempDir dir;
  json t = miniTokenizer({"<", ">", "a", "b"}, json::array());
  t["added_tokens"] = {
      {{"id", 4}, {"content", "<a>"}, {"special", true}, {"normalized", false}},
      {{"id", 5},
       {"content", "<a>b"},
       {"special", true},
       {"normalized", false}},
      {{"id", 6}, {"content", "b<"}, {"special", false}, {"normalized", true}}};
  std::string error;
  auto tok = loadJson(dir, t, error);
  ASSERT_TRUE(tok) << error;
  // "<a>b" beats "<a>" at the same start; the raw-text (normalized=false)
  // pass runs before the normalized one, so "b<" cannot take the "<" of
  // "<a>"; in what is left, "b<" is found.
  EXPECT_EQ(tok->encode("<a>b<a>", false), (std::vector<int32_t>{5, 4}));
  EXPECT_EQ(tok->encode("ab<ab<a>", false),
            (std::vector<int32_t>{2, 6, 2, 3, 4}));
  EXPECT_EQ(tok->size(), 7);
}

TEST(Tokenizer, BpeMergesByRank) {
  TempDir dir;
  std::vector<std::string> vocab = {"a", "b", "c", "ab", "bc", "abc", "aa"};
  std::string error;
  // "b c" outranks "a b": abc -> a|bc -> abc (through "a bc").
  auto tok =
      loadJson(dir, miniTokenizer(vocab, {"b c", "a b", "a bc", "a a"}), error);
  ASSERT_TRUE(tok) << error;
  EXPECT_EQ(tok->encode("abc", false), (std::vector<int32_t>{5}));
  // Equal ranks merge leftmost first: aaa -> aa|a.
  EXPECT_EQ(tok->encode("aaa", false), (std::vector<int32_t>{6, 0}));
  // "a b" first: ab|c, and there is no "ab c".
  auto tok2 =
      loadJson(dir, miniTokenizer(vocab, {"a b", "b c", "a bc"}), error);
  ASSERT_TRUE(tok2) << error;
  EXPECT_EQ(tok2->encode("abc", false), (std::vector<int32_t>{3, 2}));
  // The [left, right] array form reads the same.
  auto tok3 = loadJson(
      dir,
      miniTokenizer(vocab, json::parse(R"([["b","c"],["a","b"],["a","bc"]])")),
      error);
  ASSERT_TRUE(tok3) << error;
  EXPECT_EQ(tok3->encode("abc", false), (std::vector<int32_t>{5}));
  // A byte with no token is dropped (HF without an unk token).
  EXPECT_EQ(tok3->encode("axc", false), (std::vector<int32_t>{0, 2}));
}

TEST(Tokenizer, PreTokenizesAsDeepSeekV3) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  // Digits in groups of at most three, split off the space before them;
  // CJK runs on their own; ASCII punctuation + letters together (but a
  // space before the punctuation takes it first); a space run leaves its
  // last space to the next word.
  EXPECT_EQ(tok->preTokenize("Hello world 1234567 中文abc .net x.y   x\r\n"),
            (std::vector<std::string>{
                "Hello", "\xC4\xA0world", "\xC4\xA0", "123", "456", "7",
                "\xC4\xA0", "\xC3\xA4\xC2\xB8\xC5\x83\xC3\xA6\xC4\xB8\xC4\xA9",
                "abc", "\xC4\xA0.", "net", "\xC4\xA0x", ".y",
                "\xC4\xA0\xC4\xA0", "\xC4\xA0x", "\xC4\x8D\xC4\x8A"}));
  // Added tokens are not the pre-tokenizer's business.
  std::vector<std::string> pieces = tok->preTokenize(kUser);
  EXPECT_GT(pieces.size(), 1u);
}

TEST(Tokenizer, SplitClassesFollowHFUnicodeTables) {
  // A merge "a" + the first byte of the next character shows whether a
  // Split put a boundary between them.
  const std::string lead1FAE8 = "\xC3\xB0"; // byte F0 as a byte-level char
  const std::string leadE1 = "\xC3\xA1";    // byte E1
  // Ids: a 0, b 1, F0 2, E1 3, a+F0 4, a+E1 5 (the other bytes have no
  // token and are dropped).
  json t = miniTokenizer(
      {"a", "b", lead1FAE8, leadE1, "a" + lead1FAE8, "a" + leadE1},
      {"a " + lead1FAE8, "a " + leadE1});
  auto withSplit = [&](const std::string &regex) {
    json u = t;
    u["pre_tokenizer"] = {{"type", "Sequence"},
                          {"pretokenizers",
                           {{{"type", "Split"},
                             {"pattern", {{"Regex", regex}}},
                             {"behavior", "Isolated"},
                             {"invert", false}},
                            {{"type", "ByteLevel"},
                             {"add_prefix_space", false},
                             {"use_regex", false}}}}};
    return u;
  };
  TempDir dir;
  std::string error;
  // U+1FAE8 (Unicode 15) is \p{S} / \p{So} to HF; PCRE2 10.42 alone says Cn
  // and would leave "a🫨" whole, merging "a" with the emoji's first byte.
  for (const char *regex : {"\\p{S}", "\\p{So}", "[\\p{P}\\p{S}]+", "\\pS"}) {
    SCOPED_TRACE(regex);
    auto tok = loadJson(dir, withSplit(regex), error);
    ASSERT_TRUE(tok) << error;
    std::vector<int32_t> ids = tok->encode("a\xF0\x9F\xAB\xA8", false);
    ASSERT_FALSE(ids.empty());
    EXPECT_EQ(ids[0], 0) << "a and U+1FAE8 were not split apart";
  }
  // U+180E is no longer whitespace (Unicode 6.3); PCRE2's \s still matches
  // it, HF's does not: "a" + U+180E stays one piece and merges.
  for (const char *regex : {"\\s", "[\\s]", "\\s+(?!\\S)"}) {
    SCOPED_TRACE(regex);
    auto tok = loadJson(dir, withSplit(regex), error);
    ASSERT_TRUE(tok) << error;
    EXPECT_EQ(tok->encode("a\xE1\xA0\x8E", false), (std::vector<int32_t>{5}))
        << "a and U+180E were split apart";
  }
}

TEST(Tokenizer, DecodeIsLossyLikeHF) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  auto bytesIds = [&](std::initializer_list<int> bytes) {
    std::vector<int32_t> ids;
    for (int b : bytes)
      ids.push_back(idOf(*tok, std::string(1, static_cast<char>(b))));
    return ids;
  };
  // A character cut short is one U+FFFD; the byte after it stands alone.
  EXPECT_EQ(tok->decode(bytesIds({0xE4, 0xB8})), kReplacement);
  EXPECT_EQ(tok->decode(bytesIds({0xE4, 0xB8, 'A'})), kReplacement + "A");
  EXPECT_EQ(tok->decode(bytesIds({0xE4, 0xB8, 0xAD})), "中");
  // Bytes that never start a character, one U+FFFD each.
  EXPECT_EQ(tok->decode(bytesIds({0xFF, 0x80})), kReplacement + kReplacement);
  // A surrogate (ED A0 80) is three maximal subparts.
  EXPECT_EQ(tok->decode(bytesIds({0xED, 0xA0, 0x80})),
            kReplacement + kReplacement + kReplacement);
  // Overlong (C0 80) and past U+10FFFF (F4 90 80 80).
  EXPECT_EQ(tok->decode(bytesIds({0xC0, 0x80})), kReplacement + kReplacement);
  EXPECT_EQ(tok->decode(bytesIds({0xF4, 0x90, 0x80, 0x80})),
            kReplacement + kReplacement + kReplacement + kReplacement);
  // Ids with no token are skipped.
  std::vector<int32_t> hi = tok->encode("hi", false);
  std::vector<int32_t> withUnknown = {-1, hi[0], 5000, 1 << 30};
  withUnknown.insert(withUnknown.end(), hi.begin() + 1, hi.end());
  EXPECT_EQ(tok->decode(withUnknown), "hi");
  EXPECT_EQ(tok->tokenBytes(5000), "");
  // Encoding invalid UTF-8 sees U+FFFD, as HF's (Rust String) input would.
  EXPECT_EQ(tok->encode("a\xFF"
                        "b",
                        false),
            tok->encode("a" + kReplacement + "b", false));
}

TEST(StreamingDecoder, HoldsBackASplitCharacter) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  StreamingDecoder stream(*tok);
  EXPECT_EQ(stream.push(idOf(*tok, "\xE4")), "");
  EXPECT_EQ(stream.push(idOf(*tok, "\xB8")), "");
  EXPECT_EQ(stream.push(idOf(*tok, "\xAD")), "中");
  EXPECT_EQ(stream.push(idOf(*tok, "\xF0")), "");
  EXPECT_EQ(stream.push(idOf(*tok, "\x9F")), "");
  EXPECT_EQ(stream.finish(), kReplacement);
  EXPECT_EQ(stream.finish(), "");
  // An interrupted character is released as soon as the next byte shows it
  // cannot complete.
  StreamingDecoder broken(*tok);
  EXPECT_EQ(broken.push(idOf(*tok, "\xE4")), "");
  EXPECT_EQ(broken.push(idOf(*tok, "A")), kReplacement + "A");
}

TEST(StreamingDecoder, ConcatenationEqualsDecode) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  std::mt19937 rng(1234);
  std::uniform_int_distribution<int32_t> anyId(-2, int32_t(tok->size()) + 2);
  for (int trial = 0; trial < 300; ++trial) {
    std::vector<int32_t> ids;
    size_t n = 1 + rng() % 24;
    for (size_t i = 0; i < n; ++i)
      ids.push_back(anyId(rng));
    for (bool skip : {false, true}) {
      StreamingDecoder stream(*tok, skip);
      std::string text;
      for (int32_t id : ids)
        text += stream.push(id);
      text += stream.finish();
      ASSERT_EQ(text, tok->decode(ids, skip)) << "trial " << trial;
    }
  }
  // And on real text, every character appears as soon as it is whole.
  std::vector<int32_t> ids = tok->encode("日本語 😀 ok", false);
  StreamingDecoder stream(*tok);
  std::string text;
  for (int32_t id : ids)
    text += stream.push(id);
  EXPECT_EQ(text, "日本語 😀 ok");
  EXPECT_EQ(stream.finish(), "");
}

TEST(Tokenizer, ConcurrentEncodeAgrees) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  std::vector<std::vector<int32_t>> expected;
  for (const std::string &s : kSamples)
    expected.push_back(tok->encode(s, true));
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 50; ++round)
        for (size_t i = 0; i < kSamples.size(); ++i)
          failures[t] +=
              tok->encode(kSamples[i] + std::to_string(round), true).empty();
      for (size_t i = 0; i < kSamples.size(); ++i)
        failures[t] += tok->encode(kSamples[i], true) != expected[i];
    });
  for (auto &th : threads)
    th.join();
  for (int f : failures)
    EXPECT_EQ(f, 0);
}

TEST(ChatTemplate, RendersDeepSeekV3Format) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  std::string error;
  std::vector<ChatMessage> chat = {{"system", "Be brief."},
                                   {"user", "Hi"},
                                   {"assistant", "Hello!"},
                                   {"system", "Use English."},
                                   {"user", "2+2?"}};
  std::string prompt = renderChat(*tok, chat, true, error);
  EXPECT_EQ(error, "");
  EXPECT_EQ(prompt, kBos + "Be brief.\n\nUse English." + kUser + "Hi" +
                        kAssistant + "Hello!" + kEos + kUser + "2+2?" +
                        kAssistant);
  std::string noPrompt = renderChat(*tok, chat, false, error);
  EXPECT_EQ(noPrompt + kAssistant, prompt);
  // The tags encode as single tokens; the prompt carries its own bos.
  std::vector<int32_t> ids = tok->encode(prompt, false);
  EXPECT_EQ(ids.front(), 0);
  EXPECT_EQ(ids.back(), idOf(*tok, kAssistant));
  EXPECT_EQ(std::count(ids.begin(), ids.end(), 0), 1);
}

TEST(ChatTemplate, RejectsBadConversations) {
  auto tok = loadShipped();
  ASSERT_TRUE(tok);
  std::string error;
  EXPECT_EQ(renderChat(*tok, {}, true, error), "");
  EXPECT_NE(error.find("no messages"), std::string::npos) << error;
  EXPECT_EQ(renderChat(*tok, {{"user", "x"}, {"tool", "y"}}, true, error), "");
  EXPECT_NE(error.find("message 1: unknown role \"tool\""), std::string::npos)
      << error;

  // Another model's template is refused rather than rendered as V3's.
  TempDir dir;
  fs::copy_file(kDataDir + "/tokenizer.json", dir.path() / "tokenizer.json");
  json config = readJson(kDataDir + "/tokenizer_config.json");
  config["chat_template"] =
      "{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}";
  writeText(dir.path() / "tokenizer_config.json", config.dump());
  auto other = Tokenizer::load(dir.str(), error);
  ASSERT_TRUE(other) << error;
  EXPECT_EQ(renderChat(*other, {{"user", "x"}}, true, error), "");
  EXPECT_NE(error.find("not DeepSeek-V3's"), std::string::npos) << error;
}

//===----------------------------------------------------------------------===//
// Malformed files: one error line naming the file and the problem.
//===----------------------------------------------------------------------===//

namespace {

struct BadCase {
  const char *name;
  std::function<void(json &tokenizer, json &config)> mutate;
  const char *file;     // which file the error must name
  const char *expected; // a piece of the message
};

} // namespace

TEST(Tokenizer, RejectsMalformedFiles) {
  const json goodTokenizer = readJson(kDataDir + "/tokenizer.json");
  const json goodConfig = readJson(kDataDir + "/tokenizer_config.json");
  auto split0 = [](json &t) -> json & {
    return t["pre_tokenizer"]["pretokenizers"][0];
  };
  std::vector<BadCase> cases = {
      {"no model", [](json &t, json &) { t.erase("model"); }, "tokenizer.json",
       "missing \"model\""},
      {"wordpiece", [](json &t, json &) { t["model"]["type"] = "WordPiece"; },
       "tokenizer.json", "model.type: unsupported model \"WordPiece\""},
      {"vocab not object", [](json &t, json &) { t["model"]["vocab"] = 3; },
       "tokenizer.json", "model.vocab: must be an object, got an integer"},
      {"negative id", [](json &t, json &) { t["model"]["vocab"]["a"] = -4; },
       "tokenizer.json", "model.vocab[\"a\"]: token id -4 is out of range"},
      {"huge id",
       [](json &t, json &) { t["model"]["vocab"]["a"] = int64_t(1) << 40; },
       "tokenizer.json", "is out of range"},
      {"sparse vocab id",
       [](json &t, json &) { t["model"]["vocab"]["a"] = 16000000; },
       "tokenizer.json", "model.vocab: ids are too sparse (id 16000000"},
      {"sparse added id",
       [](json &t, json &) { t["added_tokens"][3]["id"] = 9000000; },
       "tokenizer.json", "added_tokens: ids are too sparse (id 9000000"},
      {"string id", [](json &t, json &) { t["model"]["vocab"]["a"] = "7"; },
       "tokenizer.json",
       "model.vocab[\"a\"]: must be an integer, got a string"},
      {"duplicate id",
       [](json &t, json &) { t["model"]["vocab"]["zzz"] = 100; },
       "tokenizer.json", "id 100 is also the id of"},
      {"merge without space",
       [](json &t, json &) { t["model"]["merges"][3] = "abc"; },
       "tokenizer.json", "model.merges[3]: \"abc\" is not of the form"},
      {"merge of unknown tokens",
       [](json &t, json &) { t["model"]["merges"][0] = "☃ Z"; },
       "tokenizer.json", "model.merges[0]: \"☃\" is not in the vocabulary"},
      {"merge result unknown",
       [](json &t, json &) { t["model"]["merges"][0] = "Q Z"; },
       "tokenizer.json", "merged token \"QZ\" is not in the vocabulary"},
      {"merge number", [](json &t, json &) { t["model"]["merges"][1] = 5; },
       "tokenizer.json", "model.merges[1]: must be a string"},
      {"merge triple",
       [](json &t, json &) {
         t["model"]["merges"][1] = json::array({"a", "b", "c"});
       },
       "tokenizer.json", "model.merges[1]: must be a pair of strings"},
      {"byte fallback",
       [](json &t, json &) { t["model"]["byte_fallback"] = true; },
       "tokenizer.json", "unsupported byte_fallback"},
      {"dropout", [](json &t, json &) { t["model"]["dropout"] = 0.1; },
       "tokenizer.json", "model.dropout: unsupported BPE dropout"},
      {"added token without content",
       [](json &t, json &) { t["added_tokens"][2].erase("content"); },
       "tokenizer.json", "added_tokens[2]: missing \"content\""},
      {"added token lstrip",
       [](json &t, json &) { t["added_tokens"][4]["lstrip"] = true; },
       "tokenizer.json", "added_tokens[4].lstrip: unsupported"},
      {"added token id clash",
       [](json &t, json &) { t["added_tokens"][5]["id"] = 500; },
       "tokenizer.json",
       "added_tokens[5]: id 500 is not the id HF gives it (1010"},
      {"added token ids with a gap",
       [](json &t, json &) { t["added_tokens"][18]["id"] = 1030; },
       "tokenizer.json",
       "added_tokens[18]: id 1030 is not the id HF gives it (1023"},
      {"added token ids out of order",
       [](json &t, json &) {
         std::swap(t["added_tokens"][3]["id"], t["added_tokens"][4]["id"]);
       },
       "tokenizer.json", "added_tokens[3]: id 1009 is not the id HF gives it"},
      {"added bos with another id",
       [](json &t, json &) { t["added_tokens"][0]["id"] = 7; },
       "tokenizer.json", "but the vocabulary gives it id 0"},
      {"bad regex",
       [&](json &t, json &) { split0(t)["pattern"]["Regex"] = "(\\p{N}"; },
       "tokenizer.json",
       "pre_tokenizer.pretokenizers[0].pattern.Regex: the "
       "regex does not compile (PCRE2"},
      {"unknown property",
       [&](json &t, json &) { split0(t)["pattern"]["Regex"] = "\\p{Nope}"; },
       "tokenizer.json", "does not compile"},
      {"split removed",
       [&](json &t, json &) { split0(t)["behavior"] = "Removed"; },
       "tokenizer.json", "unsupported Split behavior \"Removed\""},
      {"split without pattern",
       [&](json &t, json &) { split0(t)["pattern"] = json::object(); },
       "tokenizer.json", "must have \"Regex\" or \"String\""},
      {"no byte level",
       [](json &t, json &) { t["pre_tokenizer"]["pretokenizers"].erase(3); },
       "tokenizer.json", "without a final ByteLevel step"},
      {"byte level regex",
       [](json &t, json &) {
         t["pre_tokenizer"]["pretokenizers"][3]["use_regex"] = true;
       },
       "tokenizer.json", "use_regex: unsupported ByteLevel"},
      {"whitespace pre-tokenizer",
       [](json &t, json &) {
         t["pre_tokenizer"] = {{"type", "Whitespace"}};
       },
       "tokenizer.json", "unsupported pre-tokenizer \"Whitespace\""},
      {"wordpiece decoder",
       [](json &t, json &) {
         t["decoder"] = {{"type", "WordPiece"}};
       },
       "tokenizer.json", "unsupported decoder \"WordPiece\""},
      {"nfc normalizer",
       [](json &t, json &) {
         t["normalizer"] = {{"type", "NFC"}};
       },
       "tokenizer.json", "normalizer: unsupported normalizer"},
      {"bert post-processor",
       [](json &t, json &) {
         t["post_processor"] = {{"type", "BertProcessing"}};
       },
       "tokenizer.json", "unsupported post-processor \"BertProcessing\""},
      {"unknown bos", [](json &, json &c) { c["bos_token"] = "<nope>"; },
       "tokenizer_config.json", "bos_token: \"<nope>\" is not a token"},
      {"bos number", [](json &, json &c) { c["bos_token"] = 3; },
       "tokenizer_config.json", "bos_token: must be a string or an object"},
      {"eos object without content",
       [](json &, json &c) { c["eos_token"] = json::object(); },
       "tokenizer_config.json", "eos_token: missing \"content\""},
      {"add_bos_token string",
       [](json &, json &c) { c["add_bos_token"] = "yes"; },
       "tokenizer_config.json", "add_bos_token: must be a boolean"},
      {"chat template number", [](json &, json &c) { c["chat_template"] = 1; },
       "tokenizer_config.json", "chat_template: must be a string"},
      {"config not object", [](json &, json &c) { c = json::array(); },
       "tokenizer_config.json",
       "top level must be a JSON object, got an array"},
  };
  for (const BadCase &bad : cases) {
    SCOPED_TRACE(bad.name);
    json t = goodTokenizer, c = goodConfig;
    bad.mutate(t, c);
    TempDir dir;
    writeText(dir.path() / "tokenizer.json", t.dump());
    writeText(dir.path() / "tokenizer_config.json", c.dump());
    std::string error;
    auto tok = Tokenizer::load(dir.str(), error);
    EXPECT_EQ(tok, nullptr);
    std::string file = (dir.path() / bad.file).string();
    EXPECT_EQ(error.rfind(file + ": ", 0), 0u) << error;
    EXPECT_NE(error.find(bad.expected), std::string::npos) << error;
    EXPECT_EQ(error.find('\n'), std::string::npos) << error;
  }
}

TEST(Tokenizer, RejectsUnreadableFiles) {
  std::string error;
  TempDir dir;
  EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
  EXPECT_EQ(error, (dir.path() / "tokenizer.json").string() +
                       ": cannot open: No such file or directory");

  struct Raw {
    const char *name, *text, *expected;
  };
  for (const Raw &raw :
       {Raw{"truncated", "{\"model\": {", "invalid JSON: parse error"},
        Raw{"empty", "", "invalid JSON"},
        Raw{"array", "[1, 2]", "top level must be a JSON object"},
        Raw{"nul", "{}\0{}", "invalid JSON: NUL byte at offset 2"}}) {
    SCOPED_TRACE(raw.name);
    writeText(dir.path() / "tokenizer.json",
              std::string(raw.text, raw.name == std::string("nul")
                                        ? 5
                                        : std::strlen(raw.text)));
    EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
    EXPECT_EQ(error.rfind((dir.path() / "tokenizer.json").string() + ": ", 0),
              0u)
        << error;
    EXPECT_NE(error.find(raw.expected), std::string::npos) << error;
  }

  // A broken tokenizer_config.json is named as such.
  fs::copy_file(kDataDir + "/tokenizer.json", dir.path() / "tokenizer.json",
                fs::copy_options::overwrite_existing);
  writeText(dir.path() / "tokenizer_config.json", "{\"bos_token\": ");
  EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
  EXPECT_EQ(error.rfind((dir.path() / "tokenizer_config.json").string() +
                            ": invalid JSON",
                        0),
            0u)
      << error;
}

TEST(Tokenizer, RejectsWhatIsNotARegularFile) {
  // A directory would read as empty text ("invalid JSON") and a FIFO would
  // block the loader forever: both are refused before being opened.
  std::string error;
  TempDir dir;
  fs::create_directory(dir.path() / "tokenizer.json");
  EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
  EXPECT_EQ(error,
            (dir.path() / "tokenizer.json").string() + ": not a regular file");

  fs::remove(dir.path() / "tokenizer.json");
  fs::copy_file(kDataDir + "/tokenizer.json", dir.path() / "tokenizer.json");
  ASSERT_EQ(::mkfifo((dir.path() / "tokenizer_config.json").c_str(), 0600), 0);
  EXPECT_EQ(Tokenizer::load(dir.str(), error), nullptr);
  EXPECT_EQ(error, (dir.path() / "tokenizer_config.json").string() +
                       ": not a regular file");
}
