//===- ChatTemplate.cpp - DeepSeek-V3's chat prompt format ----------------===//
//
// DeepSeek-V3's chat template (tokenizer_config.json) is Jinja; for the
// roles a chat uses (system, user, assistant; no tool calls) it reduces to:
//
//   bos + the system prompts joined by "\n\n"
//   + per message: "<｜User｜>" content
//                | "<｜Assistant｜>" content "<｜end▁of▁sentence｜>"
//   + "<｜Assistant｜>" with add_generation_prompt
//
// System messages contribute only to the leading system prompt, wherever they
// stand. Rendering that here, instead of carrying a Jinja engine, keeps the
// library small; test/node/tokenizer.test.mjs checks it byte for byte against
// @huggingface/jinja rendering the template text from the file.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Tokenizer/ChatTemplate.h"

#include "dsv3/Tokenizer/Tokenizer.h"

namespace dsv3 {
namespace tokenizer {

namespace {
// Written literally in DeepSeek-V3's template (not taken from bos/eos).
const char kUserTag[] = "<｜User｜>";
const char kAssistantTag[] = "<｜Assistant｜>";
const char kEndOfSentence[] = "<｜end▁of▁sentence｜>";
} // namespace

std::string renderChat(const Tokenizer &tokenizer,
                       const std::vector<ChatMessage> &messages,
                       bool addGenerationPrompt, std::string &error) {
  if (messages.empty()) {
    error = "the conversation has no messages";
    return "";
  }
  // A template that does not use DeepSeek-V3's tags is some other model's
  // format: rendering V3's would silently give the model a prompt it was not
  // trained on.
  const std::string &source = tokenizer.chatTemplateSource();
  if (!source.empty() && (source.find(kUserTag) == std::string::npos ||
                          source.find(kAssistantTag) == std::string::npos)) {
    error = "the tokenizer's chat template is not DeepSeek-V3's (no " +
            std::string(kUserTag) + "/" + kAssistantTag +
            " turns); only that format is implemented";
    return "";
  }
  std::string system;
  bool firstSystem = true;
  for (size_t i = 0; i < messages.size(); ++i) {
    const std::string &role = messages[i].role;
    if (role != "system" && role != "user" && role != "assistant") {
      error = "message " + std::to_string(i) + ": unknown role \"" + role +
              "\" (expected system, user or assistant)";
      return "";
    }
    if (role == "system") {
      if (!firstSystem)
        system += "\n\n";
      system += messages[i].content;
      firstSystem = false;
    }
  }
  std::string text;
  if (auto bos = tokenizer.bosId())
    text += tokenizer.tokenBytes(*bos);
  text += system;
  for (const ChatMessage &m : messages) {
    if (m.role == "user")
      text += kUserTag + m.content;
    else if (m.role == "assistant")
      text += kAssistantTag + m.content + kEndOfSentence;
  }
  if (addGenerationPrompt)
    text += kAssistantTag;
  error.clear();
  return text;
}

} // namespace tokenizer
} // namespace dsv3
