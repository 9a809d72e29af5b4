//===- Api.cpp - OpenAI request parsing and response shapes ---------------===//

#include "Api.h"

#include <cmath>
#include <functional>
#include <limits>
#include <map>

using namespace dsv3::serve;
using nlohmann::json;

nlohmann::ordered_json dsv3::serve::errorJson(const ApiError &error) {
  nlohmann::ordered_json e = nlohmann::ordered_json::object();
  e["message"] = error.message;
  e["type"] = error.type;
  e["param"] = error.param.empty() ? nlohmann::ordered_json(nullptr)
                                   : nlohmann::ordered_json(error.param);
  e["code"] = error.code.empty() ? nlohmann::ordered_json(nullptr)
                                 : nlohmann::ordered_json(error.code);
  nlohmann::ordered_json j;
  j["error"] = std::move(e);
  return j;
}

namespace {

ApiError invalid(const std::string &param, const std::string &message,
                 const std::string &code = "") {
  ApiError e;
  e.param = param;
  e.message = message;
  e.code = code;
  return e;
}

const char *typeName(const json &v) {
  switch (v.type()) {
  case json::value_t::null:
    return "null";
  case json::value_t::boolean:
    return "a boolean";
  case json::value_t::number_integer:
  case json::value_t::number_unsigned:
    return "an integer";
  case json::value_t::number_float:
    return "a number";
  case json::value_t::string:
    return "a string";
  case json::value_t::array:
    return "an array";
  case json::value_t::object:
    return "an object";
  default:
    return "an unsupported value";
  }
}

ApiError wrongType(const std::string &param, const std::string &expected,
                   const json &got) {
  return invalid(
      param, "'" + param + "' must be " + expected + ", got " + typeName(got),
      "invalid_type");
}

using Result = std::optional<ApiError>;

Result getBool(const std::string &key, const json &v, bool &out) {
  if (!v.is_boolean())
    return wrongType(key, "a boolean", v);
  out = v.get<bool>();
  return std::nullopt;
}

Result getString(const std::string &key, const json &v, std::string &out) {
  if (!v.is_string())
    return wrongType(key, "a string", v);
  out = v.get<std::string>();
  return std::nullopt;
}

/// A JSON integer (1.0 is not one: OpenAI's API refuses it too).
Result getInt(const std::string &key, const json &v, int64_t &out) {
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return invalid(key, "'" + key + "' is too large: " + std::to_string(u),
                     "invalid_value");
    out = static_cast<int64_t>(u);
    return std::nullopt;
  }
  if (!v.is_number_integer())
    return wrongType(key, "an integer", v);
  out = v.get<int64_t>();
  return std::nullopt;
}

Result getNumber(const std::string &key, const json &v, double &out) {
  if (!v.is_number())
    return wrongType(key, "a number", v);
  out = v.get<double>();
  if (!std::isfinite(out))
    return invalid(key, "'" + key + "' must be a finite number",
                   "invalid_value");
  return std::nullopt;
}

Result unsupported(const std::string &key, const std::string &why) {
  return invalid(key, "'" + key + "' " + why, "unsupported_value");
}

Result getStop(const json &v, std::vector<std::string> &out) {
  auto add = [&](const json &s, const std::string &param) -> Result {
    if (!s.is_string())
      return wrongType(param, "a string", s);
    std::string text = s.get<std::string>();
    if (text.empty())
      return invalid(param, "stop strings must not be empty", "invalid_value");
    out.push_back(std::move(text));
    return std::nullopt;
  };
  if (v.is_string())
    return add(v, "stop");
  if (!v.is_array())
    return wrongType("stop", "a string or an array of strings", v);
  if (v.size() > kMaxStopStrings)
    return invalid("stop",
                   "at most " + std::to_string(kMaxStopStrings) +
                       " stop strings are allowed, got " +
                       std::to_string(v.size()),
                   "invalid_value");
  for (size_t i = 0; i < v.size(); ++i)
    if (Result e = add(v[i], "stop[" + std::to_string(i) + "]"))
      return e;
  return std::nullopt;
}

Result getTokenIds(const std::string &param, const json &v,
                   std::vector<int32_t> &out) {
  for (size_t i = 0; i < v.size(); ++i) {
    const json &id = v[i];
    std::string p = param + "[" + std::to_string(i) + "]";
    if (!id.is_number_integer())
      return wrongType(p, "a token id (an integer)", id);
    int64_t value = id.get<int64_t>();
    if (value < 0 || value > std::numeric_limits<int32_t>::max())
      return invalid(p,
                     "token id " + std::to_string(value) + " is out of range",
                     "invalid_value");
    out.push_back(static_cast<int32_t>(value));
  }
  return std::nullopt;
}

/// "text", [1, 2, 3], ["text"] or [[1, 2, 3]]: one prompt. Lists of several
/// prompts (OpenAI's batch form) are refused: one request is one sequence.
Result getPrompt(const json &v, ParsedRequest &out) {
  if (v.is_string()) {
    out.promptIsText = true;
    out.promptText = v.get<std::string>();
    return std::nullopt;
  }
  const char *expected =
      "a string or an array of token ids (one prompt per request)";
  if (!v.is_array())
    return wrongType("prompt", expected, v);
  if (v.empty())
    return invalid("prompt", "'prompt' is empty", "invalid_value");
  if (v[0].is_string() || v[0].is_array()) {
    if (v.size() != 1)
      return invalid("prompt",
                     "'prompt' holds " + std::to_string(v.size()) +
                         " prompts; dsv3-serve takes one prompt per request",
                     "unsupported_value");
    if (v[0].is_array()) {
      out.promptIsText = false;
      return getTokenIds("prompt[0]", v[0], out.promptIds);
    }
    return getPrompt(v[0], out);
  }
  out.promptIsText = false;
  return getTokenIds("prompt", v, out.promptIds);
}

/// A message's content: a string, or OpenAI's list of content parts of
/// which only {"type": "text", "text": ...} can be served.
Result getContent(const std::string &param, const json &v, std::string &out) {
  if (v.is_string()) {
    out = v.get<std::string>();
    return std::nullopt;
  }
  if (v.is_null()) {
    out.clear();
    return std::nullopt;
  }
  if (!v.is_array())
    return wrongType(param, "a string or an array of text parts", v);
  out.clear();
  for (size_t i = 0; i < v.size(); ++i) {
    std::string p = param + "[" + std::to_string(i) + "]";
    const json &part = v[i];
    if (!part.is_object())
      return wrongType(p, "an object", part);
    auto type = part.find("type");
    if (type == part.end() || !type->is_string())
      return invalid(p + ".type", "'" + p + ".type' must be a string",
                     "invalid_type");
    if (*type != "text")
      return invalid(p + ".type",
                     "content parts of type '" + type->get<std::string>() +
                         "' are not supported (text only)",
                     "unsupported_value");
    for (auto it = part.begin(); it != part.end(); ++it)
      if (it.key() != "type" && it.key() != "text")
        return invalid(p + "." + it.key(),
                       "unrecognized field '" + p + "." + it.key() + "'",
                       "unknown_field");
    auto text = part.find("text");
    if (text == part.end() || !text->is_string())
      return invalid(p + ".text", "'" + p + ".text' must be a string",
                     "invalid_type");
    out += text->get<std::string>();
  }
  return std::nullopt;
}

Result getMessages(const json &v, ParsedRequest &out) {
  if (!v.is_array())
    return wrongType("messages", "an array of messages", v);
  if (v.empty())
    return invalid("messages", "'messages' is empty", "invalid_value");
  for (size_t i = 0; i < v.size(); ++i) {
    std::string p = "messages[" + std::to_string(i) + "]";
    const json &m = v[i];
    if (!m.is_object())
      return wrongType(p, "an object", m);
    dsv3::tokenizer::ChatMessage message;
    bool hasRole = false;
    for (auto it = m.begin(); it != m.end(); ++it) {
      const std::string &key = it.key();
      std::string param = p + "." + key;
      if (key == "role") {
        if (Result e = getString(param, it.value(), message.role))
          return e;
        // OpenAI's newer name for the system role.
        if (message.role == "developer")
          message.role = "system";
        if (message.role != "system" && message.role != "user" &&
            message.role != "assistant")
          return invalid(param,
                         "role '" + message.role +
                             "' is not supported (system, developer, user, "
                             "assistant)",
                         "unsupported_value");
        hasRole = true;
      } else if (key == "content") {
        if (Result e = getContent(param, it.value(), message.content))
          return e;
      } else if (key == "name") {
        std::string ignored;
        if (Result e = getString(param, it.value(), ignored))
          return e;
      } else {
        return invalid(param, "unrecognized field '" + param + "'",
                       "unknown_field");
      }
    }
    if (!hasRole)
      return invalid(p + ".role", "'" + p + ".role' is required",
                     "missing_field");
    out.messages.push_back(std::move(message));
  }
  return std::nullopt;
}

} // namespace

std::optional<ApiError> dsv3::serve::parseRequest(Endpoint endpoint,
                                                  const std::string &body,
                                                  ParsedRequest &out) {
  out = ParsedRequest();
  out.endpoint = endpoint;
  json j;
  try {
    j = json::parse(body);
  } catch (const json::exception &e) {
    // parse_error, and out_of_range for numbers beyond a double (1e400).
    return invalid("", std::string("malformed JSON body: ") + e.what(),
                   "invalid_json");
  }
  if (!j.is_object())
    return invalid("",
                   std::string("the request body must be a JSON object, "
                               "got ") +
                       typeName(j),
                   "invalid_json");

  const bool chat = endpoint == Endpoint::ChatCompletions;
  bool hasPrompt = false;
  std::optional<int64_t> maxTokens, maxCompletionTokens;
  using Handler = std::function<Result(const std::string &, const json &)>;
  // The sampling penalties: accepted at their neutral value only.
  const Handler onlyZero = [](const std::string &k, const json &v) -> Result {
    double x;
    if (Result e = getNumber(k, v, x))
      return e;
    if (x != 0)
      return unsupported(k, "is not supported (only 0)");
    return std::nullopt;
  };
  // Every field OpenAI's API defines for the endpoint that dsv3-serve can
  // honour or safely ignore; anything else is refused by name so that a
  // misspelt option is not silently dropped.
  std::map<std::string, Handler> fields = {
      {"model",
       [&](const std::string &k, const json &v) -> Result {
         std::string model;
         if (Result e = getString(k, v, model))
           return e;
         out.model = model;
         return std::nullopt;
       }},
      {"stream", [&](const std::string &k,
                     const json &v) { return getBool(k, v, out.stream); }},
      {"stream_options",
       [&](const std::string &k, const json &v) -> Result {
         if (!v.is_object())
           return wrongType(k, "an object", v);
         for (auto it = v.begin(); it != v.end(); ++it) {
           if (it.key() == "include_usage") {
             if (Result e = getBool(k + ".include_usage", it.value(),
                                    out.includeUsage))
               return e;
           } else if (it.key() != "continuous_usage_stats") {
             return invalid(k + "." + it.key(),
                            "unrecognized field '" + k + "." + it.key() + "'",
                            "unknown_field");
           }
         }
         return std::nullopt;
       }},
      {chat ? "max_completion_tokens" : "",
       [&](const std::string &k, const json &v) -> Result {
         int64_t n;
         if (Result e = getInt(k, v, n))
           return e;
         maxCompletionTokens = n;
         return std::nullopt;
       }},
      {"max_tokens",
       [&](const std::string &k, const json &v) -> Result {
         int64_t n;
         if (Result e = getInt(k, v, n))
           return e;
         maxTokens = n;
         return std::nullopt;
       }},
      {"temperature",
       [&](const std::string &k, const json &v) -> Result {
         if (Result e = getNumber(k, v, out.temperature))
           return e;
         if (out.temperature < 0 || out.temperature > 2)
           return invalid(k, "'temperature' must be in [0, 2], got " + v.dump(),
                          "invalid_value");
         return std::nullopt;
       }},
      {"top_p",
       [&](const std::string &k, const json &v) -> Result {
         if (Result e = getNumber(k, v, out.topP))
           return e;
         if (!(out.topP > 0 && out.topP <= 1))
           return invalid(k, "'top_p' must be in (0, 1], got " + v.dump(),
                          "invalid_value");
         return std::nullopt;
       }},
      {"seed",
       [&](const std::string &k, const json &v) -> Result {
         // Any 64-bit integer; a negative one is taken modulo 2^64.
         if (v.is_number_unsigned())
           out.seed = v.get<uint64_t>();
         else if (v.is_number_integer())
           out.seed = static_cast<uint64_t>(v.get<int64_t>());
         else
           return wrongType(k, "an integer", v);
         return std::nullopt;
       }},
      {"stop", [&](const std::string &,
                   const json &v) { return getStop(v, out.stop); }},
      {"n",
       [&](const std::string &k, const json &v) -> Result {
         int64_t n;
         if (Result e = getInt(k, v, n))
           return e;
         if (n != 1)
           return unsupported(k, "must be 1: dsv3-serve returns one choice "
                                 "per request (send several requests; they "
                                 "are batched)");
         return std::nullopt;
       }},
      {"user",
       [&](const std::string &k, const json &v) -> Result {
         std::string ignored;
         return getString(k, v, ignored);
       }},
      {"logprobs",
       [&](const std::string &k, const json &v) -> Result {
         if ((v.is_boolean() && !v.get<bool>()) ||
             (v.is_number_integer() && v.get<int64_t>() == 0))
           return std::nullopt;
         if (!v.is_boolean() && !v.is_number_integer())
           return wrongType(k, chat ? "a boolean" : "an integer", v);
         return unsupported(k, "is not supported (log probabilities are not "
                               "returned)");
       }},
      {"top_logprobs",
       [&](const std::string &k, const json &v) -> Result {
         int64_t n;
         if (Result e = getInt(k, v, n))
           return e;
         if (n != 0)
           return unsupported(k, "is not supported (log probabilities are "
                                 "not returned)");
         return std::nullopt;
       }},
      {"frequency_penalty", onlyZero},
      {"presence_penalty", onlyZero},
      {"logit_bias",
       [&](const std::string &k, const json &v) -> Result {
         if (!v.is_object())
           return wrongType(k, "an object", v);
         if (!v.empty())
           return unsupported(k, "is not supported (only {})");
         return std::nullopt;
       }},
      {"ignore_eos",
       [&](const std::string &k, const json &v) {
         return getBool(k, v, out.ignoreEos);
       }},
      {"return_token_ids",
       [&](const std::string &k, const json &v) {
         return getBool(k, v, out.returnTokenIds);
       }},
  };
  if (chat) {
    fields["messages"] = [&](const std::string &, const json &v) {
      return getMessages(v, out);
    };
    fields["response_format"] = [&](const std::string &k,
                                    const json &v) -> Result {
      if (!v.is_object())
        return wrongType(k, "an object", v);
      auto type = v.find("type");
      if (type == v.end() || *type != "text" || v.size() != 1)
        return unsupported(k, "is not supported (only {\"type\": \"text\"})");
      return std::nullopt;
    };
    fields["tools"] = [&](const std::string &k, const json &v) -> Result {
      if (!v.is_array())
        return wrongType(k, "an array", v);
      if (!v.empty())
        return unsupported(k, "are not supported");
      return std::nullopt;
    };
    fields["tool_choice"] = [&](const std::string &k, const json &v) -> Result {
      if (v != "none")
        return unsupported(k, "is not supported (only \"none\")");
      return std::nullopt;
    };
    fields["parallel_tool_calls"] = [&](const std::string &k, const json &v) {
      bool ignored;
      return getBool(k, v, ignored);
    };
    fields["store"] = [&](const std::string &k, const json &v) -> Result {
      bool store;
      if (Result e = getBool(k, v, store))
        return e;
      if (store)
        return unsupported(k, "is not supported (nothing is stored)");
      return std::nullopt;
    };
    fields["metadata"] = [&](const std::string &k, const json &v) -> Result {
      if (!v.is_object())
        return wrongType(k, "an object", v);
      return std::nullopt;
    };
  } else {
    fields["prompt"] = [&](const std::string &, const json &v) {
      hasPrompt = true;
      return getPrompt(v, out);
    };
    fields["echo"] = [&](const std::string &k, const json &v) -> Result {
      bool echo;
      if (Result e = getBool(k, v, echo))
        return e;
      if (echo)
        return unsupported(k, "is not supported (only false)");
      return std::nullopt;
    };
    fields["best_of"] = [&](const std::string &k, const json &v) -> Result {
      int64_t n;
      if (Result e = getInt(k, v, n))
        return e;
      if (n != 1)
        return unsupported(k, "must be 1");
      return std::nullopt;
    };
    fields["suffix"] = [&](const std::string &k, const json &v) -> Result {
      std::string suffix;
      if (Result e = getString(k, v, suffix))
        return e;
      if (!suffix.empty())
        return unsupported(k, "is not supported (only \"\")");
      return std::nullopt;
    };
  }
  fields.erase("");

  for (auto it = j.begin(); it != j.end(); ++it) {
    auto field = fields.find(it.key());
    if (field == fields.end())
      return invalid(it.key(),
                     "unrecognized request field '" + it.key() +
                         "' (docs/serving.md lists the accepted fields)",
                     "unknown_field");
    // OpenAI's clients send null for "not given".
    if (it.value().is_null())
      continue;
    if (Result e = field->second(it.key(), it.value()))
      return e;
  }

  if (chat && out.messages.empty())
    return invalid("messages", "'messages' is required", "missing_field");
  if (!chat && !hasPrompt)
    return invalid("prompt", "'prompt' is required", "missing_field");
  if (maxTokens && maxCompletionTokens && *maxTokens != *maxCompletionTokens)
    return invalid("max_completion_tokens",
                   "'max_tokens' and 'max_completion_tokens' differ; give one",
                   "invalid_value");
  if (maxCompletionTokens) {
    maxTokens = maxCompletionTokens;
    out.maxTokensParam = "max_completion_tokens";
  }
  if (maxTokens && *maxTokens < 1) {
    const std::string &param = out.maxTokensParam;
    return invalid(param,
                   "'" + param + "' must be at least 1, got " +
                       std::to_string(*maxTokens),
                   "invalid_value");
  }
  out.maxTokens = maxTokens;
  return std::nullopt;
}
