//===- Api.h - OpenAI request parsing and response shapes ------*- C++ -*-===//
//
// The part of dsv3-serve that needs neither a socket nor a model: turning the
// JSON body of /v1/completions and /v1/chat/completions into a validated
// request (every field checked for its type and range; unknown fields and
// unsupported values refused with an error naming the field), and the
// OpenAI-shaped error objects. docs/serving.md lists what is accepted.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_SERVE_API_H
#define DSV3_SERVE_API_H

#include "dsv3/Tokenizer/ChatTemplate.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {
namespace serve {

/// An error response: HTTP status and OpenAI's
/// {"error": {"message", "type", "param", "code"}}.
struct ApiError {
  int status = 400;
  std::string message;
  std::string type = "invalid_request_error";
  std::string param; // "" -> null
  std::string code;  // "" -> null
};

/// In OpenAI's key order (ordered_json), as every reply of dsv3-serve.
nlohmann::ordered_json errorJson(const ApiError &error);

enum class Endpoint { Completions, ChatCompletions };

struct ParsedRequest {
  Endpoint endpoint = Endpoint::Completions;
  /// Completions: the prompt as text (promptIsText) or as token ids.
  bool promptIsText = true;
  std::string promptText;
  std::vector<int32_t> promptIds;
  /// Chat completions.
  std::vector<tokenizer::ChatMessage> messages;

  std::optional<std::string> model;
  std::optional<int64_t> maxTokens; // absent: endpoint default
  /// The field maxTokens came from (for errors): "max_tokens" or chat's
  /// "max_completion_tokens".
  std::string maxTokensParam = "max_tokens";
  double temperature = 1.0; // OpenAI's default
  double topP = 1.0;
  std::optional<uint64_t> seed; // absent: a fresh random seed
  std::vector<std::string> stop;
  bool stream = false;
  bool includeUsage = false; // stream_options.include_usage
  // Extensions (as vLLM names them).
  bool ignoreEos = false;
  bool returnTokenIds = false;
};

/// Parses and checks `body`. Limits that need the tokenized prompt (context
/// length) are checked later by the server.
std::optional<ApiError> parseRequest(Endpoint endpoint, const std::string &body,
                                     ParsedRequest &out);

/// The most stop strings a request may give (OpenAI's limit).
constexpr size_t kMaxStopStrings = 4;

} // namespace serve
} // namespace dsv3

#endif // DSV3_SERVE_API_H
