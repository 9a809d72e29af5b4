//===- dsv3-tokenize.cpp - A checkpoint's tokenizer from the command line -===//
//
//   dsv3-tokenize DIR --encode [--no-bos]      stdin text  -> ids on stdout
//   dsv3-tokenize DIR --decode [--skip-special] stdin ids  -> text on stdout
//   dsv3-tokenize DIR --chat FILE.json [--no-generation-prompt] [--ids]
//   dsv3-tokenize DIR --pre-tokenize          stdin text -> JSON list of pieces
//   ... --encode|--decode|--pre-tokenize --jsonl   one JSON value per line each
//   way
//
// DIR holds tokenizer.json (+ tokenizer_config.json): a checkpoint directory.
// Ids are printed space-separated on one line; text is written byte for
// byte, with no newline added. --chat reads a JSON list of {"role",
// "content"} messages, or {"messages": [...], "add_generation_prompt": B},
// and prints the prompt text DeepSeek-V3's chat template gives (or, with
// --ids, its token ids). With --jsonl, many inputs in one run (a dataset; the
// node tests): each stdin line is a JSON string (--encode, --pre-tokenize) or
// a JSON list of ids (--decode), and each gives one JSON line out. Every
// failure is one "dsv3-tokenize: error: ..." line on stderr and exit code 1.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Tokenizer/ChatTemplate.h"
#include "dsv3/Tokenizer/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

using namespace dsv3::tokenizer;

namespace {

const char *kUsage =
    "usage: dsv3-tokenize DIR (--encode [--no-bos] | --decode "
    "[--skip-special] |\n"
    "                          --chat FILE.json [--no-generation-prompt] "
    "[--ids] |\n"
    "                          --pre-tokenize) [--jsonl]\n"
    "\n"
    "The tokenizer of a checkpoint directory (tokenizer.json, "
    "tokenizer_config.json).\n"
    "  --encode                 text on stdin -> token ids (space-separated) "
    "on stdout;\n"
    "                           bos first when add_bos_token says so, unless "
    "--no-bos\n"
    "  --decode                 token ids on stdin (space/comma-separated) -> "
    "text\n"
    "  --skip-special           --decode: leave special tokens out\n"
    "  --chat FILE.json         render a conversation with DeepSeek-V3's chat "
    "template:\n"
    "                           [{\"role\": ..., \"content\": ...}, ...] or\n"
    "                           {\"messages\": [...], "
    "\"add_generation_prompt\": true}\n"
    "  --no-generation-prompt   --chat: no trailing assistant tag (default: "
    "add it)\n"
    "  --ids                    --chat: print the prompt's token ids instead "
    "of its text\n"
    "  --pre-tokenize           text on stdin -> the pre-tokenizer's pieces "
    "(byte-level\n"
    "                           alphabet) as a JSON list, as HF's "
    "pre_tokenize_str\n"
    "  --jsonl                  --encode/--decode/--pre-tokenize: one input "
    "per stdin line\n"
    "                           (a JSON string; --decode: a JSON list of "
    "ids), one JSON\n"
    "                           line out per input\n";

[[noreturn]] void fatal(const std::string &message) {
  std::fprintf(stderr, "dsv3-tokenize: error: %s\n", message.c_str());
  std::exit(1);
}

/// nlohmann's message without its "[json.exception.parse_error.101] " tag.
std::string jsonMessage(const nlohmann::json::exception &e) {
  std::string what = e.what();
  size_t close = what.find("] ");
  return what[0] == '[' && close != std::string::npos ? what.substr(close + 2)
                                                      : what;
}

std::string readAll(std::istream &in) {
  return std::string(std::istreambuf_iterator<char>(in),
                     std::istreambuf_iterator<char>());
}

void writeAll(const std::string &text) {
  if (std::fwrite(text.data(), 1, text.size(), stdout) != text.size() ||
      std::fflush(stdout) != 0)
    fatal(std::string("cannot write the output: ") + std::strerror(errno));
}

std::string formatIds(const std::vector<int32_t> &ids) {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i)
    out += (i ? " " : "") + std::to_string(ids[i]);
  return out + "\n";
}

std::vector<int32_t> parseIds(const std::string &text) {
  std::vector<int32_t> ids;
  size_t i = 0;
  while (i < text.size()) {
    char c = text[i];
    if (c == ' ' || c == ',' || c == '\n' || c == '\r' || c == '\t') {
      ++i;
      continue;
    }
    size_t end = i;
    while (end < text.size() && text[end] >= '0' && text[end] <= '9')
      ++end;
    if (end == i || end - i > 10)
      fatal("--decode: expected token ids (non-negative integers), got \"" +
            text.substr(i, 20) + "\"");
    long long id = std::stoll(text.substr(i, end - i));
    if (id > INT32_MAX)
      fatal("--decode: token id " + std::to_string(id) + " is too large");
    ids.push_back(static_cast<int32_t>(id));
    i = end;
  }
  return ids;
}

/// The messages of FILE.json; `addGenerationPrompt` may be overridden by the
/// file's own "add_generation_prompt".
std::vector<ChatMessage> readChat(const std::string &path,
                                  bool &addGenerationPrompt) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fatal(path + ": cannot open: " + std::strerror(errno));
  nlohmann::json root;
  try {
    root = nlohmann::json::parse(readAll(in));
  } catch (const nlohmann::json::exception &e) {
    fatal(path + ": invalid JSON: " + jsonMessage(e));
  }
  const nlohmann::json *list = &root;
  if (root.is_object()) {
    auto it = root.find("messages");
    if (it == root.end())
      fatal(path + ": missing \"messages\"");
    list = &*it;
    if (auto g = root.find("add_generation_prompt"); g != root.end()) {
      if (!g->is_boolean())
        fatal(path + ": add_generation_prompt must be a boolean");
      addGenerationPrompt = g->get<bool>();
    }
  }
  if (!list->is_array())
    fatal(path + ": the messages must be a JSON list");
  std::vector<ChatMessage> messages;
  for (size_t i = 0; i < list->size(); ++i) {
    const nlohmann::json &m = (*list)[i];
    std::string where = path + ": message " + std::to_string(i);
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string() ||
        !m.contains("content") || !m["content"].is_string())
      fatal(where + " must be an object with string \"role\" and "
                    "\"content\"");
    messages.push_back(
        {m["role"].get<std::string>(), m["content"].get<std::string>()});
  }
  return messages;
}

/// --jsonl: one JSON value in and one out per line, so that a dataset or a
/// test corpus costs one process and one tokenizer load.
void runJsonLines(const Tokenizer &tok, const std::string &mode, bool addBos,
                  bool skipSpecial) {
  std::string line, out;
  for (size_t number = 1; std::getline(std::cin, line); ++number) {
    if (line.empty() || line == "\r")
      continue;
    std::string where = "stdin line " + std::to_string(number) + ": ";
    nlohmann::json in;
    try {
      in = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception &e) {
      fatal(where + "invalid JSON: " + jsonMessage(e));
    }
    nlohmann::json result;
    if (mode == "--decode") {
      if (!in.is_array())
        fatal(where + "expected a JSON list of token ids");
      std::vector<int32_t> ids;
      for (const nlohmann::json &id : in) {
        if (!id.is_number_integer() || id.get<int64_t>() < 0 ||
            id.get<int64_t>() > INT32_MAX)
          fatal(where + "token ids must be integers in [0, 2^31)");
        ids.push_back(static_cast<int32_t>(id.get<int64_t>()));
      }
      result = tok.decode(ids, skipSpecial);
    } else {
      if (!in.is_string())
        fatal(where + "expected a JSON string");
      const std::string &text = in.get_ref<const std::string &>();
      if (mode == "--encode")
        result = tok.encode(text, addBos);
      else
        result = tok.preTokenize(text);
    }
    out += result.dump() + "\n";
    if (out.size() > (1 << 16)) {
      writeAll(out);
      out.clear();
    }
  }
  writeAll(out);
}

} // namespace

int main(int argc, char **argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::fputs(kUsage, args.empty() ? stderr : stdout);
    return args.empty() ? 1 : 0;
  }
  std::string dir, mode, chatFile;
  bool addBos = true, skipSpecial = false, generationPrompt = true,
       printIds = false, jsonLines = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string &a = args[i];
    if (a == "--encode" || a == "--decode" || a == "--pre-tokenize") {
      if (!mode.empty())
        fatal("give one of --encode, --decode, --chat, --pre-tokenize");
      mode = a;
    } else if (a == "--chat") {
      if (!mode.empty())
        fatal("give one of --encode, --decode, --chat, --pre-tokenize");
      if (i + 1 >= args.size())
        fatal("--chat needs a FILE.json");
      mode = a;
      chatFile = args[++i];
    } else if (a == "--no-bos") {
      addBos = false;
    } else if (a == "--skip-special") {
      skipSpecial = true;
    } else if (a == "--no-generation-prompt") {
      generationPrompt = false;
    } else if (a == "--ids") {
      printIds = true;
    } else if (a == "--jsonl") {
      jsonLines = true;
    } else if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    } else if (!a.empty() && a[0] == '-') {
      fatal("unknown option " + a + " (--help lists them)");
    } else if (dir.empty()) {
      dir = a;
    } else {
      fatal("unexpected argument " + a);
    }
  }
  if (dir.empty())
    fatal("missing the tokenizer directory (--help)");
  if (mode.empty())
    fatal("give one of --encode, --decode, --chat, --pre-tokenize");

  if (jsonLines && mode == "--chat")
    fatal("--jsonl goes with --encode, --decode or --pre-tokenize");

  std::string error;
  std::unique_ptr<Tokenizer> tok = Tokenizer::load(dir, error);
  if (!tok)
    fatal(error);

  if (jsonLines) {
    runJsonLines(*tok, mode, addBos, skipSpecial);
  } else if (mode == "--encode") {
    writeAll(formatIds(tok->encode(readAll(std::cin), addBos)));
  } else if (mode == "--decode") {
    writeAll(tok->decode(parseIds(readAll(std::cin)), skipSpecial));
  } else if (mode == "--pre-tokenize") {
    writeAll(nlohmann::json(tok->preTokenize(readAll(std::cin))).dump() + "\n");
  } else {
    std::vector<ChatMessage> messages = readChat(chatFile, generationPrompt);
    std::string prompt = renderChat(*tok, messages, generationPrompt, error);
    if (!error.empty())
      fatal(chatFile + ": " + error);
    // The prompt carries its own bos: encode it without adding another.
    writeAll(printIds ? formatIds(tok->encode(prompt, false)) : prompt);
  }
  return 0;
}
