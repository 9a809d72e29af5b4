//===- dsv3-run.cpp - Run a compiled dsv3 artifact ------------------------===//
//
//   dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --tokens 1,2,3
//            [--tokens 4,5 ...] [--max-new-tokens N] [--temperature T]
//            [--top-p P] [--seed S] [--threads N] [--ignore-eos]
//            [--logits-out F.npy] [--stats-out F.json]
//   dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --prompt TEXT [...]
//   dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --chat [--system TEXT]
//
// One --tokens per sequence of the batch. Prints each sequence's generated
// token ids and the prefill/decode throughput on stdout; load progress (for
// loads over a second) on stderr. --prompt and --chat speak text through
// the checkpoint's tokenizer.json and stream the reply as it is generated.
// Every failure is one "dsv3-run: error: ..." line on stderr and exit code
// 1, with nothing on stdout (before the generation starts) and no output
// file written.
//
// Written against the C API (dsv3rt.h) and the tokenizer library only, so
// that the API is known to be sufficient for a host program.
//
//===----------------------------------------------------------------------===//

#include "ToolCommandLine.h"
#include "dsv3/Runtime/dsv3rt.h"
#include "dsv3/Tokenizer/ChatTemplate.h"
#include "dsv3/Tokenizer/Tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <sys/stat.h>
#include <unistd.h>
#include <vector>

namespace {

/// dsv3rt's prompt chunk under speculation (kMaxVerifyLen in Model.h):
/// sizes the --draft-logits-out buffer.
constexpr int64_t kMaxVerifyChunk = 16;

const char *kUsage =
    "usage: dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --tokens 1,2,3 "
    "[--tokens 4,5 ...]\n"
    "       dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --prompt TEXT "
    "[--print-ids]\n"
    "       dsv3-run ARTIFACT_DIR --weights CHECKPOINT_DIR --chat "
    "[--system TEXT] [--print-ids]\n"
    "                [--max-new-tokens N] [--temperature T] [--top-p P] "
    "[--seed S]\n"
    "                [--threads N] [--ignore-eos] [--logits-out F.npy] "
    "[--stats-out F.json]\n"
    "                [--device cpu|cuda] [--kernel-times-out F.json]\n"
    "                [--speculative mtp [--draft-tokens K]]\n"
    "\n"
    "Runs a compiled dsv3 artifact with the weights of a safetensors "
    "checkpoint.\n"
    "  --tokens LIST         prompt token ids of one sequence "
    "(comma-separated);\n"
    "                        repeat for a batch (at most the artifact's "
    "max batch)\n"
    "  --prompt TEXT         one sequence as text, encoded with the "
    "checkpoint's\n"
    "                        tokenizer.json (bos added as its config says); "
    "the\n"
    "                        reply streams to stdout as it is generated\n"
    "  --chat                interactive: one user turn per line of stdin, "
    "the\n"
    "                        conversation rendered with DeepSeek-V3's chat "
    "format\n"
    "                        and kept; Ctrl-C stops a reply, /reset starts "
    "over,\n"
    "                        /exit or end of input quits\n"
    "  --system TEXT         --chat: the system prompt\n"
    "  --print-ids           --prompt/--chat: also print the prompt's and "
    "the\n"
    "                        reply's token ids\n"
    "  --max-new-tokens N    tokens to generate per sequence (default 16; "
    "--chat:\n"
    "                        per reply, default 256)\n"
    "  --temperature T       0 = greedy (default); > 0 samples\n"
    "  --top-p P             nucleus sampling mass in (0, 1] (default 1)\n"
    "  --seed S              sampling seed (default 0)\n"
    "  --threads N           threads (default: one per available CPU)\n"
    "  --ignore-eos          do not stop a sequence at the eos token\n"
    "  --logits-out F        float32 .npy [1 + generated, vocab] for one "
    "sequence:\n"
    "                        row 0 after the prompt, row i after feeding "
    "token i\n"
    "  --stats-out F         JSON: token counts, seconds, tokens/s, memory\n"
    "  --speculative mtp     speculative decoding with the checkpoint's MTP "
    "module\n"
    "                        (artifact compiled with dsv3-compile --mtp; one "
    "sequence,\n"
    "                        CPU): same tokens as without it when greedy, "
    "the same\n"
    "                        distribution when sampling; prints the "
    "acceptance rate\n"
    "  --draft-tokens K      drafts per round, 1..15 (default 3)\n"
    "  --draft-logits-out F  float32 .npy: the MTP logits of each draft call "
    "on the\n"
    "                        main model's hidden states (positions in "
    "--stats-out)\n"
    "  --device D            cpu or cuda (default: what the artifact was "
    "compiled\n"
    "                        for); cuda runs on GPU 0 through the CUDA "
    "driver\n"
    "  --kernel-times-out F  cuda: time every kernel launch (slower) and "
    "write\n"
    "                        JSON {kernel: {launches, seconds}}\n";

const dsv3::tools::ToolCommandLine commandLine("dsv3-run", kUsage);

[[noreturn]] void fatal(const std::string &message) {
  commandLine.fatal(message);
}

int64_t parseInt(const std::string &text, const std::string &what,
                 int64_t min, int64_t max) {
  return commandLine.parseInt(text, what, min, max);
}

uint64_t parseSeed(const std::string &text) {
  errno = 0;
  char *end = nullptr;
  unsigned long long value = std::strtoull(text.c_str(), &end, 10);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno == ERANGE)
    fatal("--seed must be an unsigned 64-bit integer, got '" + text + "'");
  return value;
}

float parseFloat(const std::string &text, const std::string &what) {
  errno = 0;
  char *end = nullptr;
  float value = std::strtof(text.c_str(), &end);
  if (text.empty() || *end != '\0' || errno == ERANGE || !std::isfinite(value))
    fatal(what + " must be a number, got '" + text + "'");
  return value;
}

std::vector<int32_t> parseTokens(const std::string &text) {
  std::vector<int32_t> tokens;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    std::string item = text.substr(
        start, comma == std::string::npos ? std::string::npos : comma - start);
    // Allow spaces around ids ("1, 2, 3").
    item.erase(0, item.find_first_not_of(' '));
    item.erase(item.find_last_not_of(' ') + 1);
    if (item.empty())
      fatal("--tokens must be comma-separated token ids, got '" + text + "'");
    tokens.push_back(static_cast<int32_t>(
        parseInt(item, "token id '" + item + "'", INT32_MIN, INT32_MAX)));
    if (comma == std::string::npos)
      break;
    start = comma + 1;
  }
  return tokens;
}

struct Options {
  std::string artifact, weights, logitsOut, statsOut, device, kernelTimesOut,
      draftLogitsOut;
  std::vector<std::vector<int32_t>> prompts;
  /// --prompt (text mode) when set.
  std::optional<std::string> text;
  bool chat = false, printIds = false;
  std::string system;
  bool maxNewGiven = false;
  dsv3rt_sampling sampling;
  int32_t threads = 0;
  bool speculative = false;
  int64_t draftTokens = 3;
  bool draftTokensGiven = false;
};

Options parseArgs(int argc, char **argv) {
  Options o;
  dsv3rt_sampling_init(&o.sampling);
  auto onFlag = [&](const std::string &flag) {
    if (flag == "--ignore-eos")
      o.sampling.stop_at_eos = 0;
    else
      (flag == "--chat" ? o.chat : o.printIds) = true;
  };
  auto onValue = [&](const std::string &arg, const std::string &value) {
    if (arg == "--weights")
      o.weights = value;
    else if (arg == "--tokens")
      o.prompts.push_back(parseTokens(value));
    else if (arg == "--prompt") {
      if (o.text)
        fatal("--prompt is given twice; a text prompt is one sequence");
      o.text = value;
    } else if (arg == "--system")
      o.system = value;
    else if (arg == "--max-new-tokens") {
      o.sampling.max_new_tokens = static_cast<int32_t>(
          parseInt(value, "--max-new-tokens", 0, INT32_MAX));
      o.maxNewGiven = true;
    } else if (arg == "--temperature")
      o.sampling.temperature = parseFloat(value, "--temperature");
    else if (arg == "--top-p")
      o.sampling.top_p = parseFloat(value, "--top-p");
    else if (arg == "--seed")
      o.sampling.seed = parseSeed(value);
    else if (arg == "--threads")
      o.threads =
          static_cast<int32_t>(parseInt(value, "--threads", 1, 4096));
    else if (arg == "--logits-out")
      o.logitsOut = value;
    else if (arg == "--stats-out")
      o.statsOut = value;
    else if (arg == "--device") {
      if (value != "cpu" && value != "cuda")
        fatal("--device must be cpu or cuda, got '" + value + "'");
      o.device = value;
    } else if (arg == "--kernel-times-out")
      o.kernelTimesOut = value;
    else if (arg == "--speculative") {
      if (value != "mtp")
        fatal("--speculative must be mtp (the only draft model), got '" +
              value + "'");
      o.speculative = true;
    } else if (arg == "--draft-logits-out") {
      o.draftLogitsOut = value;
    } else if (arg == "--draft-tokens") {
      o.draftTokens = parseInt(value, "--draft-tokens", 1, 15);
      o.draftTokensGiven = true;
    }
  };
  commandLine.parse(argc, argv, o.artifact,
                    {"--ignore-eos", "--chat", "--print-ids"},
                    {"--weights", "--tokens", "--max-new-tokens",
                     "--temperature", "--top-p", "--seed", "--threads",
                     "--logits-out", "--stats-out", "--device",
                     "--kernel-times-out", "--prompt", "--system",
                     "--speculative", "--draft-tokens", "--draft-logits-out"},
                    onFlag, onValue);
  if (o.weights.empty())
    fatal("--weights CHECKPOINT_DIR is required");
  const int modes = !o.prompts.empty() + o.text.has_value() + o.chat;
  if (modes == 0)
    fatal("give --tokens LIST, --prompt TEXT or --chat; see --help");
  if (modes > 1)
    fatal("--tokens, --prompt and --chat exclude each other");
  if (o.text && o.text->empty())
    fatal("--prompt is empty");
  if (o.printIds && !o.text && !o.chat)
    fatal("--print-ids is for --prompt and --chat (--tokens prints ids)");
  if (!o.system.empty() && !o.chat)
    fatal("--system is for --chat");
  if (o.chat && (!o.logitsOut.empty() || !o.statsOut.empty() ||
                 !o.kernelTimesOut.empty()))
    fatal("--chat writes no files (--logits-out, --stats-out, "
          "--kernel-times-out)");
  if ((o.draftTokensGiven || !o.draftLogitsOut.empty()) && !o.speculative)
    fatal("--draft-tokens and --draft-logits-out are for --speculative mtp");
  if (o.speculative && (o.chat || o.prompts.size() > 1 ||
                        !o.logitsOut.empty() || !o.kernelTimesOut.empty()))
    fatal("--speculative decodes one sequence (--tokens once or --prompt) "
          "and writes no logits or kernel times");
  if (o.chat && !o.maxNewGiven)
    o.sampling.max_new_tokens = 256;
  if (!o.logitsOut.empty() && o.prompts.size() > 1)
    fatal("--logits-out writes the logits of one sequence; got " +
          std::to_string(o.prompts.size()) + " --tokens");
  return o;
}

//===----------------------------------------------------------------------===//
// Output files. A regular file is written to F.tmp then renamed, so a failure
// never leaves a half-written file under the requested name; anything else
// that exists (/dev/stdout, a FIFO) is written in place, since renaming over
// it would replace the device or pipe with a file.
//===----------------------------------------------------------------------===//

std::string writeDirect(const std::string &path, const std::string &data) {
  std::ofstream out(path, std::ios::binary);
  if (!out)
    return path + ": cannot write: " + std::strerror(errno);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  out.flush();
  return out ? "" : path + ": write failed";
}

std::string writeAtomically(const std::string &path, const std::string &data) {
  struct stat st;
  if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return writeDirect(path, data);
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out)
      return path + ": cannot write: " + std::strerror(errno);
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return path + ": write failed";
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string error = path + ": cannot write: " + std::strerror(errno);
    std::remove(tmp.c_str());
    return error;
  }
  return "";
}

/// A float32 C-order .npy (format 1.0) of shape [rows, cols].
std::string npyBytes(const float *data, int64_t rows, int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) +
                       "), }";
  // magic(6) + version(2) + length(2) + header, padded with spaces and a
  // final newline to a multiple of 64 bytes (numpy's own alignment).
  size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::string out("\x93NUMPY\x01\x00", 8);
  out += static_cast<char>(header.size() & 0xff);
  out += static_cast<char>(header.size() >> 8);
  out += header;
  out.append(reinterpret_cast<const char *>(data),
             static_cast<size_t>(rows * cols) * sizeof(float));
  return out;
}

//===----------------------------------------------------------------------===//
// Load progress
//===----------------------------------------------------------------------===//

struct Progress {
  std::chrono::steady_clock::time_point start =
      std::chrono::steady_clock::now();
  double lastPrint = -1;
  bool printed = false;
  bool tty = isatty(STDERR_FILENO) != 0;
};

std::string gigabytes(uint64_t bytes) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%.2f GB", bytes / 1e9);
  return buffer;
}

void onProgress(uint64_t done, uint64_t total, void *user) {
  Progress &p = *static_cast<Progress *>(user);
  double elapsed = std::chrono::duration<double>(
                       std::chrono::steady_clock::now() - p.start)
                       .count();
  // Short loads stay silent; long ones update every second (a terminal
  // line is rewritten in place; a log gets one line per update).
  if (elapsed < 1.0 || (elapsed - p.lastPrint < 1.0 && done != total))
    return;
  p.lastPrint = elapsed;
  p.printed = true;
  std::fprintf(stderr, "%sdsv3-run: loading weights: %s / %s (%.0f%%), %.0f s%s",
               p.tty ? "\r" : "", gigabytes(done).c_str(),
               gigabytes(total).c_str(),
               total ? 100.0 * static_cast<double>(done) / total : 100.0,
               elapsed, p.tty ? "" : "\n");
  std::fflush(stderr);
}

double rate(int64_t tokens, double seconds) {
  return seconds > 0 ? static_cast<double>(tokens) / seconds : 0.0;
}

std::string joinIds(const int32_t *ids, int64_t n) {
  std::string out;
  for (int64_t i = 0; i < n; ++i)
    out += (i ? "," : "") + std::to_string(ids[i]);
  return out;
}

//===----------------------------------------------------------------------===//
// Text mode: the reply streams through the C API's token callback
//===----------------------------------------------------------------------===//

using dsv3::tokenizer::ChatMessage;
using dsv3::tokenizer::StreamingDecoder;
using dsv3::tokenizer::Tokenizer;

/// Set by SIGINT during --chat: the reply being generated stops, the
/// program does not.
volatile std::sig_atomic_t interrupted = 0;

extern "C" void onInterrupt(int) { interrupted = 1; }

/// Writes each token's text to stdout as it comes (special tokens, such as
/// the eos that ends a reply, are not shown; --print-ids shows them).
struct Streamer {
  explicit Streamer(const Tokenizer &tokenizer)
      : decoder(tokenizer, /*skipSpecial=*/true) {}
  StreamingDecoder decoder;
  bool stopOnInterrupt = false;

  static int onToken(int64_t, int32_t token, void *user) {
    Streamer &self = *static_cast<Streamer *>(user);
    std::string text = self.decoder.push(token);
    std::fwrite(text.data(), 1, text.size(), stdout);
    std::fflush(stdout);
    return self.stopOnInterrupt && interrupted ? 1 : 0;
  }
  void finish() {
    std::string text = decoder.finish();
    std::fwrite(text.data(), 1, text.size(), stdout);
  }
};

std::unique_ptr<Tokenizer> loadTokenizer(const Options &o,
                                         const dsv3rt_artifact_info &info) {
  std::string error;
  std::unique_ptr<Tokenizer> tokenizer = Tokenizer::load(o.weights, error);
  if (!tokenizer)
    fatal(error);
  // Ids the tokenizer knows but the model does not would be refused later
  // as out of range; say what is wrong instead.
  if (tokenizer->size() > info.vocab_size)
    fatal(o.weights + "/tokenizer.json: the tokenizer has " +
          std::to_string(tokenizer->size()) + " ids but the model's vocab " +
          "has " + std::to_string(info.vocab_size) +
          ": not this model's tokenizer");
  return tokenizer;
}

std::string trim(const std::string &text) {
  size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string::npos)
    return "";
  size_t end = text.find_last_not_of(" \t\r\n");
  return text.substr(begin, end - begin + 1);
}

/// The interactive loop of --chat on an opened model.
void runChat(const Options &o, const dsv3rt_artifact_info &info,
             dsv3rt_model *model, const Tokenizer &tokenizer) {
  const bool interactive = isatty(STDIN_FILENO) != 0;
  // SA_RESTART: a Ctrl-C while waiting for a line only sets the flag (reset
  // before each reply), the read goes on.
  struct sigaction action = {};
  action.sa_handler = onInterrupt;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  if (interactive)
    std::fprintf(stderr,
                 "dsv3-run: chat; one line per turn, Ctrl-C stops a reply, "
                 "/reset starts over, /exit or Ctrl-D quits\n");

  std::vector<ChatMessage> history;
  if (!o.system.empty())
    history.push_back({"system", o.system});
  const size_t start = history.size();
  std::vector<int32_t> out(static_cast<size_t>(
      std::min<int64_t>(o.sampling.max_new_tokens, info.max_seq_len)));
  char err[2048];
  std::string line;
  for (;;) {
    if (interactive) {
      std::fputs("> ", stdout);
      std::fflush(stdout);
    }
    if (!std::getline(std::cin, line))
      break;
    line = trim(line);
    if (line == "/exit")
      break;
    if (line == "/reset") {
      history.resize(start);
      std::puts("[new conversation]");
      continue;
    }
    if (line.empty())
      continue;
    history.push_back({"user", line});
    std::string error;
    std::string text = renderChat(tokenizer, history, true, error);
    if (!error.empty())
      fatal(error);
    std::vector<int32_t> prompt = tokenizer.encode(text, /*addBos=*/false);
    const int64_t promptLen = static_cast<int64_t>(prompt.size());
    if (promptLen >= info.max_seq_len) {
      history.pop_back();
      std::printf("[the conversation is now %lld tokens: it no longer fits "
                  "the artifact's max sequence length of %lld; /reset "
                  "starts a new one]\n",
                  static_cast<long long>(promptLen),
                  static_cast<long long>(info.max_seq_len));
      std::fflush(stdout);
      continue;
    }
    dsv3rt_sampling sampling = o.sampling;
    sampling.max_new_tokens = static_cast<int32_t>(std::min<int64_t>(
        sampling.max_new_tokens, info.max_seq_len - promptLen));
    const int32_t *prompts[] = {prompt.data()};
    const int64_t lens[] = {promptLen};
    int64_t count = 0;
    Streamer streamer(tokenizer);
    streamer.stopOnInterrupt = true;
    interrupted = 0;
    dsv3rt_set_token_callback(model, Streamer::onToken, &streamer);
    int rc = dsv3rt_generate(model, prompts, lens, 1, &sampling, out.data(),
                             &count, nullptr, err, sizeof(err));
    dsv3rt_set_token_callback(model, nullptr, nullptr);
    if (rc)
      fatal(err);
    streamer.finish();
    std::fputc('\n', stdout);
    const bool stopped = interrupted != 0;
    interrupted = 0;
    // The reply as the template will render it next turn: its text without
    // the eos (the template writes one after every assistant turn).
    int64_t shown = count;
    if (shown > 0 && out[shown - 1] == info.eos_token_id)
      --shown;
    history.push_back(
        {"assistant", tokenizer.decode(std::vector<int32_t>(
                                           out.begin(), out.begin() + shown),
                                       /*skipSpecial=*/true)});
    if (o.printIds) {
      std::printf("prompt ids: %s\n",
                  joinIds(prompt.data(), promptLen).c_str());
      std::printf("reply ids: %s\n", joinIds(out.data(), count).c_str());
    }
    dsv3rt_stats stats;
    dsv3rt_get_stats(model, &stats);
    std::printf("[%s%lld tokens; prefill %lld tokens, %.1f tokens/s; decode "
                "%.1f tokens/s]\n",
                stopped ? "stopped; " : "", static_cast<long long>(count),
                static_cast<long long>(stats.prefill_tokens),
                rate(stats.prefill_tokens, stats.prefill_seconds),
                rate(stats.decode_tokens, stats.decode_seconds));
    std::fflush(stdout);
  }
  if (interactive)
    std::fputc('\n', stdout);
}

} // namespace

int run(int argc, char **argv) {
  Options o = parseArgs(argc, argv);
  char err[2048];

  // Check the request against the manifest before a possibly long load.
  dsv3rt_artifact_info info;
  if (dsv3rt_read_artifact_info(o.artifact.c_str(), &info, err, sizeof(err)))
    fatal(err);
  std::unique_ptr<Tokenizer> tokenizer;
  if (o.text || o.chat)
    tokenizer = loadTokenizer(o, info);
  if (o.text)
    o.prompts.push_back(tokenizer->encode(*o.text, /*addBos=*/true));
  const int64_t batch = static_cast<int64_t>(o.prompts.size());
  std::vector<const int32_t *> prompts;
  std::vector<int64_t> lens;
  for (const auto &p : o.prompts) {
    prompts.push_back(p.data());
    lens.push_back(static_cast<int64_t>(p.size()));
  }
  if (!o.chat && dsv3rt_validate_request(&info, prompts.data(), lens.data(),
                                         batch, &o.sampling, err, sizeof(err)))
    fatal(err);
  if (o.chat) {
    // The turns come later; the sampling options can be checked now, with
    // a one-token prompt and the reply cut to what the cache leaves it.
    const int32_t probe[] = {0};
    const int32_t *probes[] = {probe};
    const int64_t probeLen = 1;
    dsv3rt_sampling sampling = o.sampling;
    sampling.max_new_tokens = static_cast<int32_t>(std::min<int64_t>(
        sampling.max_new_tokens, std::max<int64_t>(info.max_seq_len - 1, 0)));
    if (dsv3rt_validate_request(&info, probes, &probeLen, 1, &sampling, err,
                                sizeof(err)))
      fatal(err);
  }

  const bool onGpu = o.device.empty() ? info.device == DSV3RT_DEVICE_CUDA
                                      : o.device == "cuda";
  if (!o.kernelTimesOut.empty() && !onGpu)
    fatal("--kernel-times-out times GPU kernels; it needs --device cuda");
  // Fail before the load when there is no GPU to run on.
  if (onGpu && info.device == DSV3RT_DEVICE_CUDA &&
      dsv3rt_cuda_init(err, sizeof(err)))
    fatal(err);
  dsv3rt_set_kernel_timing(!o.kernelTimesOut.empty());

  dsv3rt_open_options openOptions;
  dsv3rt_open_options_init(&openOptions);
  openOptions.num_threads = o.threads;
  openOptions.device = onGpu ? DSV3RT_DEVICE_CUDA : DSV3RT_DEVICE_CPU;
  Progress progress;
  openOptions.progress = onProgress;
  openOptions.progress_user = &progress;
  dsv3rt_model *model = dsv3rt_open(o.artifact.c_str(), o.weights.c_str(),
                                    &openOptions, err, sizeof(err));
  if (progress.printed && progress.tty)
    std::fputc('\n', stderr);
  if (!model)
    fatal(err);
  if (o.chat) {
    runChat(o, info, model, *tokenizer);
    dsv3rt_close(model);
    return 0;
  }

  std::optional<Streamer> streamer;
  if (o.text) {
    streamer.emplace(*tokenizer);
    dsv3rt_set_token_callback(model, Streamer::onToken, &*streamer);
  }
  const int64_t maxNew = o.sampling.max_new_tokens;
  const int64_t vocab = info.vocab_size;
  std::vector<int32_t> tokens(static_cast<size_t>(batch * maxNew));
  std::vector<int64_t> counts(batch);
  std::vector<float> logits;
  if (!o.logitsOut.empty())
    logits.resize(static_cast<size_t>(batch * (1 + maxNew) * vocab));
  dsv3rt_speculative_stats spec{};
  std::vector<float> draftLogits;
  std::vector<int64_t> draftPositions;
  int64_t draftRows = 0;
  if (!o.draftLogitsOut.empty()) {
    const int64_t capacity =
        (lens[0] + kMaxVerifyChunk - 1) / kMaxVerifyChunk + maxNew;
    draftLogits.resize(static_cast<size_t>(capacity * vocab));
    draftPositions.resize(static_cast<size_t>(capacity));
  }
  int rc = o.speculative
               ? dsv3rt_generate_speculative(
                     model, prompts[0], lens[0], &o.sampling, o.draftTokens,
                     tokens.data(), counts.data(), &spec,
                     draftLogits.empty() ? nullptr : draftLogits.data(),
                     draftPositions.data(),
                     static_cast<int64_t>(draftPositions.size()), &draftRows,
                     err, sizeof(err))
               : dsv3rt_generate(model, prompts.data(), lens.data(), batch,
                                 &o.sampling, tokens.data(), counts.data(),
                                 logits.empty() ? nullptr : logits.data(),
                                 err, sizeof(err));
  dsv3rt_stats stats;
  dsv3rt_get_stats(model, &stats);
  if (o.speculative && rc == 0) {
    // The prompt phase ends with the first token, as prefill does.
    stats.prefill_tokens = lens[0];
    stats.prefill_seconds = spec.prompt_seconds;
    stats.prefill_calls = 0;
    stats.decode_tokens = spec.generated;
    stats.decode_seconds = spec.decode_seconds;
    stats.decode_calls = spec.verify_calls;
  }
  dsv3rt_close(model);
  if (rc)
    fatal(err);

  if (!o.logitsOut.empty()) {
    std::string error = writeAtomically(
        o.logitsOut, npyBytes(logits.data(), 1 + counts[0], vocab));
    if (!error.empty())
      fatal(error);
  }
  if (!o.draftLogitsOut.empty()) {
    std::string error = writeAtomically(
        o.draftLogitsOut, npyBytes(draftLogits.data(), draftRows, vocab));
    if (!error.empty())
      fatal(error);
  }
  if (!o.kernelTimesOut.empty()) {
    std::string text(static_cast<size_t>(dsv3rt_kernel_times_json(nullptr, 0)),
                     '\0');
    dsv3rt_kernel_times_json(text.data(), text.size() + 1);
    std::string error = writeAtomically(o.kernelTimesOut, text + "\n");
    if (!error.empty())
      fatal(error);
  }
  if (!o.statsOut.empty()) {
    nlohmann::ordered_json j;
    j["prefill_tokens"] = stats.prefill_tokens;
    j["prefill_seconds"] = stats.prefill_seconds;
    j["prefill_tokens_per_second"] =
        rate(stats.prefill_tokens, stats.prefill_seconds);
    j["decode_tokens"] = stats.decode_tokens;
    j["decode_seconds"] = stats.decode_seconds;
    j["decode_tokens_per_second"] =
        rate(stats.decode_tokens, stats.decode_seconds);
    j["prefill_calls"] = stats.prefill_calls;
    j["decode_calls"] = stats.decode_calls;
    j["weights_bytes"] = stats.weights_bytes;
    j["weights_mapped_bytes"] = stats.weights_mapped_bytes;
    j["kv_cache_bytes"] = stats.kv_cache_bytes;
    j["load_seconds"] = stats.load_seconds;
    j["num_threads"] = stats.num_threads;
    j["device"] = onGpu ? "cuda" : "cpu";
    if (onGpu) {
      char name[256];
      dsv3rt_cuda_device_name(name, sizeof(name));
      j["gpu_name"] = name;
      j["gpu_peak_bandwidth_bytes_per_second"] = dsv3rt_cuda_peak_bandwidth();
    }
    j["batch"] = batch;
    j["max_new_tokens"] = maxNew;
    j["temperature"] = o.sampling.temperature;
    j["top_p"] = o.sampling.top_p;
    j["seed"] = o.sampling.seed;
    nlohmann::ordered_json generated = nlohmann::ordered_json::array();
    for (int64_t b = 0; b < batch; ++b)
      generated.push_back(std::vector<int32_t>(
          tokens.begin() + b * maxNew, tokens.begin() + b * maxNew + counts[b]));
    j["generated_tokens"] = std::move(generated);
    if (o.speculative)
      j["speculative"] = {
          {"method", "mtp"},
          {"draft_tokens", o.draftTokens},
          {"verify_calls", spec.verify_calls},
          {"draft_calls", spec.draft_calls},
          {"drafted", spec.drafted},
          {"accepted", spec.accepted},
          {"acceptance_rate",
           spec.drafted ? double(spec.accepted) / spec.drafted : 0.0},
          {"tokens_per_verify_call",
           spec.verify_calls ? double(spec.generated) / spec.verify_calls
                             : 0.0},
          {"draft_positions",
           std::vector<int64_t>(draftPositions.begin(),
                                draftPositions.begin() + draftRows)}};
    std::string error = writeAtomically(o.statsOut, j.dump(1) + "\n");
    if (!error.empty()) {
      if (!o.logitsOut.empty())
        std::remove(o.logitsOut.c_str()); // all outputs or none
      fatal(error);
    }
  }

  if (streamer) {
    streamer->finish();
    std::fputc('\n', stdout);
    if (o.printIds)
      std::printf("prompt ids: %s\n",
                  joinIds(o.prompts[0].data(), lens[0]).c_str());
  }
  for (int64_t b = 0; b < batch && (!streamer || o.printIds); ++b) {
    std::string line = "sequence " + std::to_string(b) + ":";
    for (int64_t i = 0; i < counts[b]; ++i)
      line += (i ? "," : " ") + std::to_string(tokens[b * maxNew + i]);
    std::puts(line.c_str());
  }
  std::printf("prefill: %lld tokens in %.6f s (%.1f tokens/s)\n",
              static_cast<long long>(stats.prefill_tokens),
              stats.prefill_seconds,
              rate(stats.prefill_tokens, stats.prefill_seconds));
  std::printf("decode: %lld tokens in %.6f s (%.1f tokens/s)\n",
              static_cast<long long>(stats.decode_tokens),
              stats.decode_seconds,
              rate(stats.decode_tokens, stats.decode_seconds));
  if (o.speculative)
    std::printf("speculative (mtp, %lld drafts per round): %lld of %lld "
                "drafts accepted (%.1f %%), %.2f tokens per main-model "
                "call, %lld MTP calls\n",
                static_cast<long long>(o.draftTokens),
                static_cast<long long>(spec.accepted),
                static_cast<long long>(spec.drafted),
                spec.drafted ? 100.0 * spec.accepted / spec.drafted : 0.0,
                spec.verify_calls
                    ? double(spec.generated) / spec.verify_calls
                    : 0.0,
                static_cast<long long>(spec.draft_calls));
  return 0;
}

int main(int argc, char **argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception &e) {
    fatal(std::string("internal error: ") + e.what());
  } catch (...) {
    fatal("internal error");
  }
}
