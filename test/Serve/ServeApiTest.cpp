//===- ServeApiTest.cpp - dsv3-serve's request parsing and stop strings ---===//
//
// The parts of dsv3-serve that need no socket and no model: every request
// field's checks (the name of the offending field in each error) and the
// stop-string matcher, including a randomized comparison with the plain
// definition (text up to the earliest stop string) in which every prefix
// released along the way must be a prefix of the final text -- i.e. no part
// of a stop string is ever released.
//
//===----------------------------------------------------------------------===//

#include "Api.h"
#include "StopMatcher.h"

#include <gtest/gtest.h>

#include <random>

using namespace dsv3::serve;

namespace {

ParsedRequest parseOk(Endpoint endpoint, const std::string &body) {
  ParsedRequest r;
  std::optional<ApiError> e = parseRequest(endpoint, body, r);
  EXPECT_FALSE(e.has_value()) << body << ": " << (e ? e->message : "");
  return r;
}

ApiError parseFails(Endpoint endpoint, const std::string &body) {
  ParsedRequest r;
  std::optional<ApiError> e = parseRequest(endpoint, body, r);
  EXPECT_TRUE(e.has_value()) << body;
  return e.value_or(ApiError());
}

const Endpoint kText = Endpoint::Completions;
const Endpoint kChat = Endpoint::ChatCompletions;

TEST(ServeApi, CompletionDefaults) {
  ParsedRequest r = parseOk(kText, R"({"prompt": "hi"})");
  EXPECT_TRUE(r.promptIsText);
  EXPECT_EQ(r.promptText, "hi");
  EXPECT_FALSE(r.maxTokens.has_value());
  EXPECT_EQ(r.temperature, 1.0);
  EXPECT_EQ(r.topP, 1.0);
  EXPECT_FALSE(r.seed.has_value());
  EXPECT_FALSE(r.stream);
  EXPECT_TRUE(r.stop.empty());
}

TEST(ServeApi, EveryField) {
  ParsedRequest r =
      parseOk(kText, R"({"model": "m", "prompt": [1, 2, 3], "max_tokens": 7,
                 "temperature": 0, "top_p": 0.5, "seed": -1, "stop": "x",
                 "stream": true, "stream_options": {"include_usage": true},
                 "n": 1, "user": "u", "logprobs": null, "echo": false,
                 "frequency_penalty": 0, "presence_penalty": 0.0,
                 "logit_bias": {}, "best_of": 1, "suffix": "",
                 "ignore_eos": true, "return_token_ids": true})");
  EXPECT_EQ(r.model, "m");
  EXPECT_FALSE(r.promptIsText);
  EXPECT_EQ(r.promptIds, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(r.maxTokens, 7);
  EXPECT_EQ(r.temperature, 0.0);
  EXPECT_EQ(r.topP, 0.5);
  EXPECT_EQ(r.seed, UINT64_MAX); // -1 modulo 2^64
  EXPECT_EQ(r.stop, std::vector<std::string>{"x"});
  EXPECT_TRUE(r.stream && r.includeUsage && r.ignoreEos && r.returnTokenIds);
}

TEST(ServeApi, PromptForms) {
  EXPECT_EQ(parseOk(kText, R"({"prompt": ["one"]})").promptText, "one");
  EXPECT_EQ(parseOk(kText, R"({"prompt": [[4, 5]]})").promptIds,
            (std::vector<int32_t>{4, 5}));
  EXPECT_EQ(parseFails(kText, R"({"prompt": ["a", "b"]})").param, "prompt");
  EXPECT_EQ(parseFails(kText, R"({"prompt": []})").param, "prompt");
  EXPECT_EQ(parseFails(kText, R"({"prompt": [1, -2]})").param, "prompt[1]");
  EXPECT_EQ(parseFails(kText, R"({"prompt": [1, 2.5]})").param, "prompt[1]");
  EXPECT_EQ(parseFails(kText, R"({"prompt": [[1, "x"]]})").param,
            "prompt[0][1]");
  EXPECT_EQ(parseFails(kText, R"({"prompt": null})").code, "missing_field");
  EXPECT_EQ(parseFails(kText, R"({})").param, "prompt");
}

TEST(ServeApi, RefusedWithTheFieldsName) {
  struct Case {
    const char *body, *param, *code;
  } cases[] = {
      {R"({"prompt": "x", "frobnicate": 1})", "frobnicate", "unknown_field"},
      {R"({"prompt": "x", "max_tokens": "3"})", "max_tokens", "invalid_type"},
      {R"({"prompt": "x", "max_tokens": 3.0})", "max_tokens", "invalid_type"},
      {R"({"prompt": "x", "max_tokens": 0})", "max_tokens", "invalid_value"},
      {R"({"prompt": "x", "max_tokens": -4})", "max_tokens", "invalid_value"},
      {R"({"prompt": "x", "max_tokens": 18446744073709551615})", "max_tokens",
       "invalid_value"},
      {R"({"prompt": "x", "temperature": -0.1})", "temperature",
       "invalid_value"},
      {R"({"prompt": "x", "temperature": 2.01})", "temperature",
       "invalid_value"},
      {R"({"prompt": "x", "temperature": true})", "temperature",
       "invalid_type"},
      {R"({"prompt": "x", "top_p": 0})", "top_p", "invalid_value"},
      {R"({"prompt": "x", "top_p": 1.01})", "top_p", "invalid_value"},
      {R"({"prompt": "x", "seed": "1"})", "seed", "invalid_type"},
      {R"({"prompt": "x", "stream": 1})", "stream", "invalid_type"},
      {R"({"prompt": "x", "stream_options": {"x": 1}})", "stream_options.x",
       "unknown_field"},
      {R"({"prompt": "x", "n": 2})", "n", "unsupported_value"},
      {R"({"prompt": "x", "logprobs": 2})", "logprobs", "unsupported_value"},
      {R"({"prompt": "x", "echo": true})", "echo", "unsupported_value"},
      {R"({"prompt": "x", "best_of": 3})", "best_of", "unsupported_value"},
      {R"({"prompt": "x", "suffix": "s"})", "suffix", "unsupported_value"},
      {R"({"prompt": "x", "presence_penalty": 1})", "presence_penalty",
       "unsupported_value"},
      {R"({"prompt": "x", "logit_bias": {"5": 1}})", "logit_bias",
       "unsupported_value"},
      {R"({"prompt": "x", "stop": ""})", "stop", "invalid_value"},
      {R"({"prompt": "x", "stop": ["a", 1]})", "stop[1]", "invalid_type"},
      {R"({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]})", "stop",
       "invalid_value"},
      {R"({"prompt": "x", "messages": []})", "messages", "unknown_field"},
  };
  for (const Case &c : cases) {
    ApiError e = parseFails(kText, c.body);
    EXPECT_EQ(e.status, 400) << c.body;
    EXPECT_EQ(e.type, "invalid_request_error") << c.body;
    EXPECT_EQ(e.param, c.param) << c.body;
    EXPECT_EQ(e.code, c.code) << c.body << ": " << e.message;
    EXPECT_NE(e.message.find(c.param), std::string::npos) << e.message;
  }
}

TEST(ServeApi, MalformedBodies) {
  for (const char *body : {"", "{", "[1]", "\"x\"", "{\"prompt\": 1e400}",
                           "{\"prompt\": \"x\"} extra", "nan"}) {
    ApiError e = parseFails(kText, body);
    EXPECT_EQ(e.code, "invalid_json") << body;
    EXPECT_EQ(e.param, "") << body;
  }
}

TEST(ServeApi, Chat) {
  ParsedRequest r =
      parseOk(kChat,
              R"({"messages": [{"role": "developer", "content": "be brief"},
                       {"role": "user", "name": "ann",
                        "content": [{"type": "text", "text": "a"},
                                    {"type": "text", "text": "b"}]},
                       {"role": "assistant", "content": null}],
          "max_completion_tokens": 5, "response_format": {"type": "text"},
          "tools": [], "tool_choice": "none", "store": false})");
  ASSERT_EQ(r.messages.size(), 3u);
  EXPECT_EQ(r.messages[0].role, "system");
  EXPECT_EQ(r.messages[1].content, "ab");
  EXPECT_EQ(r.messages[2].content, "");
  EXPECT_EQ(r.maxTokens, 5);

  EXPECT_EQ(parseFails(kChat, R"({"messages": []})").param, "messages");
  EXPECT_EQ(parseFails(kChat, R"({"prompt": "x"})").param, "prompt");
  EXPECT_EQ(parseFails(kChat, R"({"messages": [{"role": "tool"}]})").param,
            "messages[0].role");
  EXPECT_EQ(parseFails(kChat, R"({"messages": [{"content": "x"}]})").param,
            "messages[0].role");
  EXPECT_EQ(
      parseFails(kChat, R"({"messages": [{"role": "user", "content": 1}]})")
          .param,
      "messages[0].content");
  EXPECT_EQ(parseFails(kChat, R"({"messages": [{"role": "user", "content":
                [{"type": "image_url"}]}]})")
                .param,
            "messages[0].content[0].type");
  EXPECT_EQ(
      parseFails(kChat, R"({"messages": [{"role": "user", "x": 1}]})").param,
      "messages[0].x");
  EXPECT_EQ(parseFails(kChat, R"({"messages": [{"role": "user"}],
                                  "max_tokens": 3,
                                  "max_completion_tokens": 4})")
                .param,
            "max_completion_tokens");
  EXPECT_EQ(parseFails(kChat, R"({"messages": [{"role": "user"}],
                                  "tools": [{"type": "function"}]})")
                .param,
            "tools");
}

TEST(ServeApi, ErrorJsonShape) {
  ApiError e;
  e.message = "m";
  e.param = "top_p";
  EXPECT_EQ(errorJson(e).dump(),
            R"({"error":{"message":"m","type":"invalid_request_error",)"
            R"("param":"top_p","code":null}})");
}

std::string pushAll(StopMatcher &m, const std::vector<std::string> &pieces) {
  std::string out;
  for (const std::string &p : pieces)
    out += m.push(p);
  return out + m.finish();
}

TEST(StopMatcher, NoStopsPassesThrough) {
  StopMatcher m({});
  EXPECT_EQ(m.push("abc"), "abc");
  EXPECT_EQ(m.push(""), "");
  EXPECT_EQ(m.finish(), "");
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, HoldsBackAPossibleStart) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abS"), "ab");
  EXPECT_EQ(m.push("T"), "");
  EXPECT_EQ(m.push("x"), "STx"); // not a stop string after all
  EXPECT_EQ(m.push("ST"), "");
  EXPECT_EQ(m.finish(), "ST"); // the end releases what is held
  EXPECT_FALSE(m.stopped());
}

TEST(StopMatcher, StopsAcrossPieces) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.push("abcS"), "abc");
  EXPECT_EQ(m.push("TO"), "");
  EXPECT_EQ(m.push("P and more"), "");
  EXPECT_TRUE(m.stopped());
  EXPECT_EQ(m.push("later"), "");
  EXPECT_EQ(m.finish(), "");
}

TEST(StopMatcher, EarliestOfSeveral) {
  StopMatcher m({"cd", "b", "zz"});
  EXPECT_EQ(pushAll(m, {"abcd"}), "a");
  StopMatcher overlap({"aab"});
  EXPECT_EQ(pushAll(overlap, {"a", "a", "a", "b", "c"}), "a");
}

TEST(StopMatcher, WholeUtf8Characters) {
  // "é" is two bytes; the held tail starts where a stop string starts.
  StopMatcher m({"\xc3\xa9!"});
  EXPECT_EQ(m.push("caf"), "caf");
  EXPECT_EQ(m.push("\xc3\xa9"), "");
  EXPECT_EQ(m.push("?"), "\xc3\xa9?");
}

TEST(StopMatcher, RandomAgainstTheDefinition) {
  std::mt19937 rng(7);
  auto randomText = [&](size_t maxLen) {
    std::string s(rng() % (maxLen + 1), ' ');
    for (char &c : s)
      c = "abc"[rng() % 3];
    return s;
  };
  for (int trial = 0; trial < 3000; ++trial) {
    std::vector<std::string> stops;
    for (unsigned n = rng() % 3; n-- > 0;) {
      std::string s = randomText(3);
      if (!s.empty())
        stops.push_back(s);
    }
    std::vector<std::string> pieces;
    std::string text;
    for (unsigned n = rng() % 8; n-- > 0;) {
      pieces.push_back(randomText(3));
      text += pieces.back();
    }
    size_t cut = std::string::npos;
    for (const std::string &s : stops)
      cut = std::min(cut, text.find(s));
    std::string expected = text.substr(0, cut);

    StopMatcher m(stops);
    std::string released;
    for (const std::string &p : pieces) {
      released += m.push(p);
      ASSERT_EQ(expected.compare(0, released.size(), released), 0)
          << "released '" << released << "' of '" << text << "'";
    }
    released += m.finish();
    EXPECT_EQ(released, expected) << text;
    EXPECT_EQ(m.stopped(), cut != std::string::npos) << text;
  }
}

} // namespace
