//===- dsv3-serve.cpp - OpenAI-compatible HTTP server ---------------------===//
//
//   dsv3-serve ARTIFACT_DIR --weights CHECKPOINT_DIR [--host 127.0.0.1]
//              [--port 8000] [--threads N] [--max-queue N]
//              [--model-name NAME] [--device cpu|cuda]
//
// Serves /health, /v1/models, /v1/completions and /v1/chat/completions
// (streamed as server-sent events with "stream": true) over one compiled
// artifact. The text side is the checkpoint's tokenizer (tokenizer.json in
// CHECKPOINT_DIR); generation is the runtime's continuous-batching
// Scheduler: every HTTP request is one Scheduler request, the handler thread
// waits on its own condition variable for the tokens the scheduler thread
// hands over. docs/serving.md.
//
// Startup failures are one "dsv3-serve: error: ..." line and exit code 1;
// SIGINT/SIGTERM stop the server (requests in flight end with an error)
// and exit 0.
//
//===----------------------------------------------------------------------===//

#include "Api.h"
#include "StopMatcher.h"
#include "ToolCommandLine.h"

#include "dsv3/Runtime/Model.h"
#include "dsv3/Runtime/Scheduler.h"
#include "dsv3/Runtime/dsv3rt.h"
#include "dsv3/Tokenizer/ChatTemplate.h"
#include "dsv3/Tokenizer/Tokenizer.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <pthread.h>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

using namespace dsv3;
using namespace dsv3::serve;
// Replies keep OpenAI's key order ("id" first).
using json = nlohmann::ordered_json;
using runtime::FinishReason;

namespace {

const char *kUsage =
    "usage: dsv3-serve ARTIFACT_DIR --weights CHECKPOINT_DIR [--host H] "
    "[--port N]\n"
    "                  [--threads N] [--max-queue N] [--model-name NAME]\n"
    "                  [--device cpu|cuda]\n"
    "\n"
    "OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions,\n"
    "/v1/models, /health) over a compiled dsv3 artifact; the tokenizer is\n"
    "CHECKPOINT_DIR/tokenizer.json. Concurrent requests share decode steps\n"
    "(continuous batching, up to the artifact's max batch). docs/serving.md.\n"
    "  --host H          address to listen on (default 127.0.0.1)\n"
    "  --port N          TCP port (default 8000; 0: any free port, printed)\n"
    "  --threads N       model threads (default: one per available CPU)\n"
    "  --max-queue N     requests waiting for a batch row beyond which the\n"
    "                    server answers 503 (default 64)\n"
    "  --model-name NAME the model id of /v1/models and responses (default:\n"
    "                    the checkpoint directory's name)\n"
    "  --device D        cpu or cuda (default: the artifact's target)\n";

const dsv3::tools::ToolCommandLine commandLine("dsv3-serve", kUsage);

[[noreturn]] void fatal(const std::string &message) {
  commandLine.fatal(message);
}

int64_t parseInt(const std::string &text, const std::string &what, int64_t min,
                 int64_t max) {
  return commandLine.parseInt(text, what, min, max);
}

struct Options {
  std::string artifact, weights, host = "127.0.0.1", modelName, device;
  int port = 8000;
  int threads = 0;
  size_t maxQueue = 64;
};

std::string baseName(std::string path) {
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  size_t slash = path.find_last_of('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

Options parseArgs(int argc, char **argv) {
  Options o;
  auto onValue = [&](const std::string &arg, const std::string &value) {
    if (arg == "--weights")
      o.weights = value;
    else if (arg == "--host")
      o.host = value;
    else if (arg == "--port")
      o.port = static_cast<int>(parseInt(value, "--port", 0, 65535));
    else if (arg == "--threads")
      o.threads = static_cast<int>(parseInt(value, "--threads", 1, 4096));
    else if (arg == "--max-queue")
      o.maxQueue =
          static_cast<size_t>(parseInt(value, "--max-queue", 0, 100000));
    else if (arg == "--model-name") {
      if (value.empty())
        fatal("--model-name must not be empty");
      o.modelName = value;
    } else if (arg == "--device") {
      if (value != "cpu" && value != "cuda")
        fatal("--device must be cpu or cuda, got '" + value + "'");
      o.device = value;
    }
  };
  commandLine.parse(argc, argv, o.artifact, {},
                    {"--weights", "--host", "--port", "--threads",
                     "--max-queue", "--model-name", "--device"},
                    [](const std::string &) {}, onValue);
  if (o.weights.empty())
    fatal("--weights CHECKPOINT_DIR is required");
  if (o.modelName.empty())
    o.modelName = baseName(o.weights);
  return o;
}

//===----------------------------------------------------------------------===//
// One generation request as the HTTP side and the scheduler thread share it.
//===----------------------------------------------------------------------===//

/// Written by the scheduler thread (onToken/onFinish), read by the request's
/// HTTP thread, under `mutex`. Text is decoded and cut at stop strings on
/// the scheduler thread so that a stop string ends the generation at the
/// token that completes it.
struct Job {
  Job(const tokenizer::Tokenizer &tok, std::vector<std::string> stops)
      : decoder(tok, /*skipSpecial=*/true), matcher(std::move(stops)) {}

  std::mutex mutex;
  std::condition_variable cv;
  tokenizer::StreamingDecoder decoder;
  StopMatcher matcher;
  std::vector<int32_t> tokens; // every generated token
  size_t tokensTaken = 0;      // handed to the client (streaming)
  std::string text;            // decoded, safe to send, not yet taken
  bool done = false;
  FinishReason reason = FinishReason::Length;
  std::string error;
  runtime::RequestId id = 0;

  bool onToken(int32_t token) {
    std::lock_guard<std::mutex> lock(mutex);
    tokens.push_back(token);
    text += matcher.push(decoder.push(token));
    cv.notify_all();
    return !matcher.stopped();
  }

  void onFinish(FinishReason why, const std::string &message) {
    std::lock_guard<std::mutex> lock(mutex);
    // Incomplete UTF-8 at the end may still complete a stop string as
    // U+FFFD; what is held back goes out unless a stop string ended it.
    text += matcher.push(decoder.finish());
    text += matcher.finish();
    done = true;
    reason = why;
    error = message;
    cv.notify_all();
  }
};

const char *finishReasonName(FinishReason reason) {
  return reason == FinishReason::Length ? "length" : "stop";
}

//===----------------------------------------------------------------------===//
// The server
//===----------------------------------------------------------------------===//

class Server {
public:
  Server(const Options &options, runtime::Model &model,
         const tokenizer::Tokenizer &tok, runtime::Scheduler &scheduler)
      : options_(options), model_(model), tok_(tok), scheduler_(scheduler),
        created_(std::time(nullptr)) {
    std::random_device rd;
    idPrefix_ = rd();
  }

  void install(httplib::Server &http);
  /// Refuses new requests and cancels those in flight (SIGINT/SIGTERM).
  void shutdown();
  /// Requests submitted to the scheduler and not yet answered.
  size_t inFlight() {
    std::lock_guard<std::mutex> lock(registryMutex_);
    return inFlight_.size();
  }

private:
  void handleGeneration(Endpoint endpoint, const httplib::Request &req,
                        httplib::Response &res);
  void respondWhole(const std::shared_ptr<Job> &job, const ParsedRequest &r,
                    const std::vector<int32_t> &prompt, httplib::Response &res);
  void respondStream(const std::shared_ptr<Job> &job, const ParsedRequest &r,
                     const std::vector<int32_t> &prompt,
                     httplib::Response &res);
  void finishJob(const std::shared_ptr<Job> &job);
  std::string newId(Endpoint endpoint);

  const Options &options_;
  runtime::Model &model_;
  const tokenizer::Tokenizer &tok_;
  runtime::Scheduler &scheduler_;
  const std::time_t created_;
  uint32_t idPrefix_;
  std::atomic<uint64_t> nextId_{0};

  std::mutex registryMutex_;
  bool stopping_ = false;
  std::set<runtime::RequestId> inFlight_;
};

void sendJson(httplib::Response &res, int status, const json &body) {
  res.status = status;
  // Invalid UTF-8 cannot come from the decoder (it emits U+FFFD), but the
  // replacement keeps a surprise from becoming an exception.
  res.set_content(body.dump(-1, ' ', false, json::error_handler_t::replace),
                  "application/json");
}

void sendError(httplib::Response &res, const ApiError &error) {
  sendJson(res, error.status, errorJson(error));
}

std::string sseEvent(const json &body) {
  return "data: " + body.dump(-1, ' ', false, json::error_handler_t::replace) +
         "\n\n";
}

std::string Server::newId(Endpoint endpoint) {
  char buffer[64];
  std::snprintf(buffer, sizeof(buffer), "%s-%08x%08llx",
                endpoint == Endpoint::ChatCompletions ? "chatcmpl" : "cmpl",
                idPrefix_, static_cast<unsigned long long>(++nextId_));
  return buffer;
}

void Server::shutdown() {
  std::vector<runtime::RequestId> ids;
  {
    std::lock_guard<std::mutex> lock(registryMutex_);
    stopping_ = true;
    ids.assign(inFlight_.begin(), inFlight_.end());
  }
  for (runtime::RequestId id : ids)
    scheduler_.cancel(id);
}

void Server::finishJob(const std::shared_ptr<Job> &job) {
  std::lock_guard<std::mutex> lock(registryMutex_);
  inFlight_.erase(job->id);
}

void Server::install(httplib::Server &http) {
  http.Get("/health", [this](const httplib::Request &, httplib::Response &res) {
    runtime::SchedulerStats s = scheduler_.stats();
    json j = {{"status", "ok"},
              {"model", options_.modelName},
              {"active", s.active},
              {"queued", s.queued},
              {"in_flight", inFlight()},
              {"completed", s.completed},
              {"prompt_tokens", s.promptTokens},
              {"generated_tokens", s.generatedTokens},
              {"prefill_calls", s.prefillCalls},
              {"decode_calls", s.decodeCalls},
              {"max_batch", model_.manifest().maxBatch},
              {"max_queue", options_.maxQueue},
              {"max_seq_len", model_.manifest().maxSeqLen}};
    sendJson(res, 200, j);
  });
  auto modelJson = [this]() {
    return json{{"id", options_.modelName},
                {"object", "model"},
                {"created", static_cast<int64_t>(created_)},
                {"owned_by", "dsv3"},
                {"max_model_len", model_.manifest().maxSeqLen}};
  };
  http.Get("/v1/models", [modelJson](const httplib::Request &,
                                     httplib::Response &res) {
    sendJson(res, 200,
             json{{"object", "list"}, {"data", json::array({modelJson()})}});
  });
  http.Get(R"(/v1/models/(.+))", [this, modelJson](const httplib::Request &req,
                                                   httplib::Response &res) {
    if (req.matches[1] != options_.modelName) {
      ApiError e;
      e.status = 404;
      e.message = "the model '" + std::string(req.matches[1]) +
                  "' does not exist (this server serves '" +
                  options_.modelName + "')";
      e.param = "model";
      e.code = "model_not_found";
      return sendError(res, e);
    }
    sendJson(res, 200, modelJson());
  });
  http.Post("/v1/completions",
            [this](const httplib::Request &req, httplib::Response &res) {
              handleGeneration(Endpoint::Completions, req, res);
            });
  http.Post("/v1/chat/completions",
            [this](const httplib::Request &req, httplib::Response &res) {
              handleGeneration(Endpoint::ChatCompletions, req, res);
            });
  // Routing failures and oversized bodies get OpenAI's error shape too.
  http.set_error_handler(
      [](const httplib::Request &req, httplib::Response &res) {
        if (!res.body.empty())
          return;
        ApiError e;
        e.status = res.status;
        if (res.status == 404) {
          e.message = "no route for " + req.method + " " + req.path +
                      " (docs/serving.md lists the endpoints)";
          e.code = "not_found";
        } else if (res.status == 413) {
          e.message = "the request body is too large";
          e.code = "payload_too_large";
        } else {
          e.message = "HTTP error " + std::to_string(res.status);
        }
        sendError(res, e);
      });
  http.set_exception_handler([](const httplib::Request &,
                                httplib::Response &res, std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception &e) {
      what = e.what();
    } catch (...) {
    }
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.message = "internal error: " + what;
    sendError(res, e);
  });
}

void Server::handleGeneration(Endpoint endpoint, const httplib::Request &req,
                              httplib::Response &res) {
  ParsedRequest r;
  if (std::optional<ApiError> e = parseRequest(endpoint, req.body, r))
    return sendError(res, *e);
  if (r.model && *r.model != options_.modelName) {
    ApiError e;
    e.status = 404;
    e.message = "the model '" + *r.model +
                "' does not exist (this server serves '" + options_.modelName +
                "')";
    e.param = "model";
    e.code = "model_not_found";
    return sendError(res, e);
  }

  // The prompt's token ids: the text with bos as HF's add_special_tokens
  // does; a chat rendered by the checkpoint's template (which writes bos).
  std::vector<int32_t> prompt;
  std::string promptParam = "prompt";
  if (endpoint == Endpoint::ChatCompletions) {
    promptParam = "messages";
    std::string error;
    std::string text =
        tokenizer::renderChat(tok_, r.messages,
                              /*addGenerationPrompt=*/true, error);
    if (!error.empty()) {
      ApiError e;
      e.message = error;
      e.param = "messages";
      return sendError(res, e);
    }
    prompt = tok_.encode(text, /*addBos=*/false);
  } else if (r.promptIsText) {
    prompt = tok_.encode(r.promptText, /*addBos=*/true);
  } else {
    prompt = r.promptIds;
  }

  const runtime::Manifest &manifest = model_.manifest();
  const int64_t context = manifest.maxSeqLen;
  const int64_t promptLen = static_cast<int64_t>(prompt.size());
  ApiError e;
  e.param = promptParam;
  if (prompt.empty()) {
    e.message = "the prompt is empty (no tokens)";
    return sendError(res, e);
  }
  for (int32_t id : prompt)
    if (id < 0 || id >= manifest.vocabSize()) {
      e.message = "token id " + std::to_string(id) +
                  " is outside the model's vocabulary [0, " +
                  std::to_string(manifest.vocabSize()) + ")";
      e.code = "invalid_value";
      return sendError(res, e);
    }
  if (promptLen >= context) {
    e.message = "the prompt is " + std::to_string(promptLen) +
                " tokens; this model's context (KV cache) holds " +
                std::to_string(context) + " positions, so at most " +
                std::to_string(context - 1) +
                " prompt tokens leave room for a reply";
    e.code = "context_length_exceeded";
    return sendError(res, e);
  }
  // Completions default to OpenAI's 16 tokens; chat to the rest of the
  // context, as OpenAI's chat API does.
  int64_t maxTokens =
      r.maxTokens.value_or(endpoint == Endpoint::Completions
                               ? std::min<int64_t>(16, context - promptLen)
                               : context - promptLen);
  if (promptLen + maxTokens > context) {
    e.param = r.maxTokensParam;
    e.message = "max_tokens is " + std::to_string(maxTokens) +
                " but the prompt is " + std::to_string(promptLen) +
                " tokens and this model's context (KV cache) holds " +
                std::to_string(context) + " positions: at most " +
                std::to_string(context - promptLen) + " new tokens";
    e.code = "context_length_exceeded";
    return sendError(res, e);
  }

  runtime::GenerationRequest request;
  request.prompt = prompt;
  request.sampling.maxNewTokens = maxTokens;
  request.sampling.temperature = static_cast<float>(r.temperature);
  request.sampling.topP = static_cast<float>(r.topP);
  if (r.seed) {
    request.sampling.seed = *r.seed;
  } else {
    std::random_device rd;
    request.sampling.seed = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  }
  request.sampling.stopAtEos = !r.ignoreEos;

  auto job = std::make_shared<Job>(tok_, r.stop);
  request.onToken = [job](int32_t token) { return job->onToken(token); };
  request.onFinish = [job](FinishReason reason, const std::string &error) {
    job->onFinish(reason, error);
  };
  {
    // Registered under the same lock that shutdown() takes, so a request is
    // either refused here or cancelled there.
    std::lock_guard<std::mutex> lock(registryMutex_);
    if (stopping_) {
      ApiError s;
      s.status = 503;
      s.type = "server_error";
      s.message = "the server is shutting down";
      s.code = "shutting_down";
      return sendError(res, s);
    }
    runtime::SubmitResult submitted = scheduler_.submit(std::move(request));
    if (submitted.status == runtime::SubmitResult::QueueFull) {
      ApiError s;
      s.status = 503;
      s.type = "server_error";
      s.message = "the server is busy: " + submitted.error + " (retry later)";
      s.code = "queue_full";
      res.set_header("Retry-After", "1");
      return sendError(res, s);
    }
    if (submitted.status != runtime::SubmitResult::Accepted) {
      e.message = submitted.error;
      return sendError(res, e);
    }
    job->id = submitted.id;
    inFlight_.insert(submitted.id);
  }
  if (r.stream)
    respondStream(job, r, prompt, res);
  else
    respondWhole(job, r, prompt, res);
}

json usageJson(size_t promptTokens, size_t completionTokens) {
  return json{{"prompt_tokens", promptTokens},
              {"completion_tokens", completionTokens},
              {"total_tokens", promptTokens + completionTokens}};
}

/// The error object of a request the scheduler ended without a reply.
std::optional<ApiError> jobError(const Job &job) {
  if (job.reason == FinishReason::Error) {
    ApiError e;
    e.status = 500;
    e.type = "server_error";
    e.message = "generation failed: " + job.error;
    return e;
  }
  if (job.reason == FinishReason::Cancelled) {
    ApiError e;
    e.status = 503;
    e.type = "server_error";
    e.message = "the request was cancelled: the server is shutting down";
    e.code = "shutting_down";
    return e;
  }
  return std::nullopt;
}

void Server::respondWhole(const std::shared_ptr<Job> &job,
                          const ParsedRequest &r,
                          const std::vector<int32_t> &prompt,
                          httplib::Response &res) {
  std::unique_lock<std::mutex> lock(job->mutex);
  job->cv.wait(lock, [&] { return job->done; });
  lock.unlock();
  finishJob(job);
  if (std::optional<ApiError> e = jobError(*job))
    return sendError(res, *e);

  const bool chat = r.endpoint == Endpoint::ChatCompletions;
  json choice = {{"index", 0}};
  if (chat)
    choice["message"] = {{"role", "assistant"}, {"content", job->text}};
  else
    choice["text"] = job->text;
  choice["logprobs"] = nullptr;
  choice["finish_reason"] = finishReasonName(job->reason);
  if (r.returnTokenIds) {
    choice["prompt_token_ids"] = prompt;
    choice["token_ids"] = job->tokens;
  }
  json body = {{"id", newId(r.endpoint)},
               {"object", chat ? "chat.completion" : "text_completion"},
               {"created", static_cast<int64_t>(std::time(nullptr))},
               {"model", options_.modelName},
               {"choices", json::array({choice})},
               {"usage", usageJson(prompt.size(), job->tokens.size())}};
  sendJson(res, 200, body);
}

void Server::respondStream(const std::shared_ptr<Job> &job,
                           const ParsedRequest &r,
                           const std::vector<int32_t> &prompt,
                           httplib::Response &res) {
  const bool chat = r.endpoint == Endpoint::ChatCompletions;
  json base = {{"id", newId(r.endpoint)},
               {"object", chat ? "chat.completion.chunk" : "text_completion"},
               {"created", static_cast<int64_t>(std::time(nullptr))},
               {"model", options_.modelName}};
  if (r.includeUsage)
    base["usage"] = nullptr;
  auto chunk = [base, chat, r](const std::string &text,
                               const std::vector<int32_t> &ids,
                               const char *finishReason, bool first) {
    json choice = {{"index", 0}};
    if (chat) {
      json delta = json::object();
      if (first)
        delta["role"] = "assistant";
      if (!text.empty() || first)
        delta["content"] = text;
      choice["delta"] = delta;
    } else {
      choice["text"] = text;
    }
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = finishReason ? json(finishReason) : json(nullptr);
    if (r.returnTokenIds)
      choice["token_ids"] = ids;
    json c = base;
    c["choices"] = json::array({choice});
    return sseEvent(c);
  };

  res.set_header("Cache-Control", "no-cache");
  res.set_header("X-Accel-Buffering", "no");
  // The provider runs on this request's HTTP thread after the headers are
  // out; it writes every event in one call. A failed write means the client
  // left: the request is cancelled so that its batch row frees at once.
  res.set_chunked_content_provider(
      "text/event-stream",
      [this, job, chunk, base, r, prompt, chat](size_t,
                                                httplib::DataSink &sink) {
        auto write = [&](const std::string &data) {
          return sink.write(data.data(), data.size());
        };
        auto leave = [&]() {
          scheduler_.cancel(job->id);
          return false;
        };
        bool first = true;
        if (chat || r.returnTokenIds) {
          std::string opening = chunk("", {}, nullptr, true);
          if (r.returnTokenIds) {
            json c = json::parse(opening.substr(6));
            c["choices"][0]["prompt_token_ids"] = prompt;
            opening = sseEvent(c);
          }
          if (!write(opening))
            return leave();
          first = false;
        }
        while (true) {
          std::unique_lock<std::mutex> lock(job->mutex);
          bool woke = job->cv.wait_for(lock, std::chrono::seconds(1), [&] {
            return job->done || !job->text.empty() ||
                   job->tokens.size() > job->tokensTaken;
          });
          std::string text;
          text.swap(job->text);
          std::vector<int32_t> ids(job->tokens.begin() + job->tokensTaken,
                                   job->tokens.end());
          job->tokensTaken = job->tokens.size();
          bool done = job->done;
          lock.unlock();

          if (!woke) {
            // Nothing to say (waiting for a batch row): an SSE comment,
            // which clients ignore, finds out whether anyone listens.
            if (!write(": waiting\n\n"))
              return leave();
            continue;
          }
          if (!text.empty() || (r.returnTokenIds && !ids.empty())) {
            if (!write(chunk(text, ids, nullptr, first)))
              return leave();
            first = false;
          }
          if (!done)
            continue;
          finishJob(job);
          if (std::optional<ApiError> e = jobError(*job)) {
            write(sseEvent(errorJson(*e)));
          } else {
            if (!write(chunk("", {}, finishReasonName(job->reason), first)))
              return false;
            if (r.includeUsage) {
              json u = base;
              u["choices"] = json::array();
              u["usage"] = usageJson(prompt.size(), job->tokens.size());
              if (!write(sseEvent(u)))
                return false;
            }
          }
          write("data: [DONE]\n\n");
          sink.done();
          return true;
        }
      },
      // Runs however the response ends (also if the provider never ran):
      // a request still generating for nobody is cancelled.
      [this, job](bool) {
        scheduler_.cancel(job->id);
        finishJob(job);
      });
}

//===----------------------------------------------------------------------===//
// Signals: blocked in every thread and taken by one waiting thread, which can
// then do what a handler may not (lock, notify, stop the listener).
//===----------------------------------------------------------------------===//

/// The listener and the server while they exist, guarded by gStopMutex: the
/// signal thread must not use them once run() has left them.
std::mutex gStopMutex;
httplib::Server *gHttp = nullptr;
Server *gServer = nullptr;

void signalThread(sigset_t set) {
  int sig = 0;
  if (sigwait(&set, &sig) != 0)
    return;
  {
    std::lock_guard<std::mutex> lock(gStopMutex);
    if (!gServer) {
      // Still loading: nothing to stop cleanly yet.
      std::fprintf(stderr, "dsv3-serve: interrupted while starting\n");
      std::_Exit(1);
    }
    std::fprintf(stderr, "dsv3-serve: %s, stopping\n",
                 sig == SIGINT ? "SIGINT" : "SIGTERM");
    gServer->shutdown();
  }
  // httplib's stop() only acts on a running listener (and must be called
  // once): a signal just before listen_after_bind() got going waits for it.
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(gStopMutex);
      if (!gHttp)
        break; // the listener has returned already
      if (gHttp->is_running()) {
        gHttp->stop();
        break;
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  // A second signal ends the process at once.
  if (sigwait(&set, &sig) == 0)
    std::_Exit(1);
}

} // namespace

int run(int argc, char **argv) {
  Options o = parseArgs(argc, argv);

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // A client that closes its socket must not kill the server.
  std::signal(SIGPIPE, SIG_IGN);
  std::thread(signalThread, signals).detach();

  // The cheap checks first: manifest, tokenizer, the port; then the weights.
  runtime::ManifestResult manifest = runtime::loadManifest(o.artifact);
  if (!manifest)
    fatal(manifest.error);
  std::string error;
  std::unique_ptr<tokenizer::Tokenizer> tok =
      tokenizer::Tokenizer::load(o.weights, error);
  if (!tok)
    fatal(error);

  httplib::Server http;
  const size_t maxBatch = static_cast<size_t>(manifest.manifest->maxBatch);
  // One HTTP thread per request that can be running or queued, plus some
  // for /health and requests that are refused at once: a request's thread
  // waits for its tokens, so fewer threads would queue requests in the HTTP
  // layer, unbounded and unseen by the scheduler's bound.
  const size_t httpThreads = std::max<size_t>(16, maxBatch + o.maxQueue + 8);
  http.new_task_queue = [httpThreads] {
    return new httplib::ThreadPool(httpThreads);
  };
  http.set_payload_max_length(8 << 20);
  http.set_keep_alive_timeout(2);
  int port = o.port;
  if (o.port == 0) {
    port = http.bind_to_any_port(o.host);
    if (port < 0)
      fatal("cannot listen on " + o.host + " (any port)");
  } else if (!http.bind_to_port(o.host, o.port)) {
    fatal("cannot listen on " + o.host + ":" + std::to_string(o.port) +
          " (address in use or not available)");
  }

  runtime::OpenOptions openOptions;
  openOptions.numThreads = o.threads;
  const bool gpuArtifact = manifest.manifest->target.kind == "cuda";
  const bool onGpu = o.device.empty() ? gpuArtifact : o.device == "cuda";
  openOptions.device = onGpu ? runtime::Device::Cuda : runtime::Device::Cpu;
  if (onGpu && gpuArtifact) {
    char err[1024];
    if (dsv3rt_cuda_init(err, sizeof(err)))
      fatal(err);
  }
  std::unique_ptr<runtime::Model> model =
      runtime::Model::open(o.artifact, o.weights, openOptions, error);
  if (!model)
    fatal(error);
  if (tok->size() > model->manifest().vocabSize())
    std::fprintf(stderr,
                 "dsv3-serve: warning: the tokenizer knows %lld tokens but "
                 "the model's vocabulary is %lld; prompts with larger ids "
                 "are refused\n",
                 static_cast<long long>(tok->size()),
                 static_cast<long long>(model->manifest().vocabSize()));

  runtime::SchedulerOptions schedulerOptions;
  schedulerOptions.maxQueued = o.maxQueue;
  int rc = 0;
  {
    runtime::Scheduler scheduler(*model, schedulerOptions);
    Server server(o, *model, *tok, scheduler);
    server.install(http);
    {
      std::lock_guard<std::mutex> lock(gStopMutex);
      gServer = &server;
      gHttp = &http;
    }
    std::printf("dsv3-serve: serving '%s' on http://%s:%d (max batch %lld, "
                "context %lld, queue %zu)\n",
                o.modelName.c_str(), o.host.c_str(), port,
                static_cast<long long>(model->manifest().maxBatch),
                static_cast<long long>(model->manifest().maxSeqLen),
                o.maxQueue);
    std::fflush(stdout);
    if (!http.listen_after_bind()) {
      std::fprintf(stderr, "dsv3-serve: error: the listener failed\n");
      rc = 1;
    }
    // listen_after_bind returns once stop() was called and every HTTP
    // thread has finished; the scheduler is destroyed before the model.
    std::lock_guard<std::mutex> lock(gStopMutex);
    gHttp = nullptr;
    gServer = nullptr;
  }
  std::fprintf(stderr, "dsv3-serve: stopped\n");
  return rc;
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
