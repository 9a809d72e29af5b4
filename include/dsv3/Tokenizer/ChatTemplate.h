//===- ChatTemplate.h - DeepSeek-V3's chat prompt format ---------*- C++ -*-===//
//
// Renders a conversation into prompt text exactly as DeepSeek-V3's
// tokenizer_config.json chat template renders it with Jinja (bos, the system
// prompt, `<｜User｜>` / `<｜Assistant｜>` turns, `<｜end▁of▁sentence｜>` after
// each assistant reply, and the generation prompt). docs/tokenizer.md.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TOKENIZER_CHATTEMPLATE_H
#define DSV3_TOKENIZER_CHATTEMPLATE_H

#include <string>
#include <vector>

namespace dsv3 {
namespace tokenizer {

class Tokenizer;

struct ChatMessage {
  std::string role; // "system", "user" or "assistant"
  std::string content;
};

/// The prompt text of `messages` (to be encoded with addBos = false: the
/// text starts with the bos token itself). With `addGenerationPrompt`, it
/// ends with the assistant tag so the model writes the reply. "" and
/// `error` set for an unknown role or an empty conversation.
std::string renderChat(const Tokenizer &tokenizer,
                       const std::vector<ChatMessage> &messages,
                       bool addGenerationPrompt, std::string &error);

} // namespace tokenizer
} // namespace dsv3

#endif // DSV3_TOKENIZER_CHATTEMPLATE_H
