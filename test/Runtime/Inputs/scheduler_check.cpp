//===- scheduler_check.cpp - The Scheduler on a real compiled model -------===//
//
//   dsv3-scheduler-check ARTIFACT_DIR CHECKPOINT_DIR [cpu|cuda]
//
// Runs continuous batching on a compiled artifact (scheduler-compiled.test
// compiles one) and compares every request's tokens with Model::generate of
// that request alone, the independent path:
//  - concurrent: more requests than cache rows, prompts of different
//    lengths, different max tokens, greedy and sampled, all submitted at
//    once (rows are reused);
//  - queue: with every row taken and maxQueued = 1, the next request but one
//    is refused with QueueFull;
//  - cancel: a cancelled request's row goes to the waiting one, which ends
//    while the longer requests still run.
// Prints one line per check ("PASS ..." or "FAIL ..." with details) and exits
// 1 if any failed.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Model.h"
#include "dsv3/Runtime/Scheduler.h"

#include "../SchedulerTestUtil.h"

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

using namespace dsv3::runtime;
using dsv3test::Collector;
using dsv3test::Gate;

namespace {

int failures = 0;

void report(bool ok, const std::string &what, const std::string &detail = "") {
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what.c_str(),
              detail.empty() ? "" : ": ", detail.c_str());
  std::fflush(stdout);
  failures += ok ? 0 : 1;
}

std::string ids(const std::vector<int32_t> &tokens) {
  std::string out;
  for (size_t i = 0; i < tokens.size(); ++i)
    out += (i ? "," : "") + std::to_string(tokens[i]);
  return out;
}

/// A deterministic prompt of `n` ids in [2, vocab).
std::vector<int32_t> prompt(int64_t n, int64_t vocab, uint32_t salt) {
  std::vector<int32_t> p;
  uint32_t x = 2654435761u * (salt + 1);
  for (int64_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    p.push_back(static_cast<int32_t>(2 + (x >> 8) % (vocab - 2)));
  }
  return p;
}

struct Request {
  std::vector<int32_t> prompt;
  SamplingOptions sampling;
  std::vector<int32_t> alone; // Model::generate of this request alone
};

Request makeRequest(Model &model, int64_t promptLen, int64_t maxNew,
                    uint32_t salt, float temperature = 0.0f) {
  Request r;
  r.prompt = prompt(promptLen, model.manifest().vocabSize(), salt);
  r.sampling.maxNewTokens = maxNew;
  r.sampling.temperature = temperature;
  r.sampling.topP = temperature > 0 ? 0.9f : 1.0f;
  r.sampling.seed = salt;
  // Run to max tokens: a short stop at a random eos would test little.
  r.sampling.stopAtEos = false;
  GenerateOutput out;
  std::string error = model.generate({r.prompt}, r.sampling, false, out);
  if (!error.empty())
    report(false, "generate alone", error);
  else
    r.alone = out.tokens[0];
  return r;
}

void checkConcurrent(Model &model) {
  const int64_t rows = model.manifest().maxBatch;
  std::vector<Request> requests;
  auto aloneStart = std::chrono::steady_clock::now();
  const int64_t lens[] = {7, 1, 13, 4, 22, 9, 2, 16, 5};
  const int64_t news[] = {12, 20, 5, 16, 8, 3, 14, 10, 18};
  for (int i = 0; i < 9; ++i)
    requests.push_back(makeRequest(model, lens[i], news[i], 100 + i,
                                   i % 3 == 2 ? 0.8f : 0.0f));
  double aloneSeconds = std::chrono::duration<double>(
                            std::chrono::steady_clock::now() - aloneStart)
                            .count();
  Collector collector;
  SchedulerStats stats;
  auto start = std::chrono::steady_clock::now();
  {
    Scheduler scheduler(model);
    for (size_t i = 0; i < requests.size(); ++i)
      if (scheduler
              .submit(collector.request(static_cast<int>(i), requests[i].prompt,
                                        requests[i].sampling))
              .status != SubmitResult::Accepted)
        report(false, "concurrent: submit " + std::to_string(i));
    if (!collector.waitFor(requests.size()))
      report(false, "concurrent: requests did not finish");
    stats = scheduler.stats();
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  bool ok = collector.finishedTwice == 0;
  int64_t generated = 0;
  for (size_t i = 0; i < requests.size(); ++i) {
    dsv3test::Outcome o = collector.get(static_cast<int>(i));
    generated += static_cast<int64_t>(o.tokens.size());
    if (o.tokens != requests[i].alone || o.reason != FinishReason::Length) {
      ok = false;
      std::printf("  request %zu: scheduler %s, alone %s\n", i,
                  ids(o.tokens).c_str(), ids(requests[i].alone).c_str());
    }
  }
  report(ok,
         "concurrent: " + std::to_string(requests.size()) + " requests on " +
             std::to_string(rows) + " rows equal generate alone",
         std::to_string(stats.prefillCalls) + " prefill calls, " +
             std::to_string(stats.decodeCalls) + " decode calls for " +
             std::to_string(generated) + " tokens in " +
             std::to_string(seconds) + " s (one after another alone: " +
             std::to_string(aloneSeconds) + " s)");
  // Shared decode steps: far fewer calls than tokens.
  report(stats.decodeCalls < generated && stats.generatedTokens == generated,
         "concurrent: decode calls are shared");
}

/// Requests that reach an idle model together (within its gather window)
/// are admitted together: their short prompts, of different lengths, share
/// ONE prefill call for the shortest length and stream the rest through the
/// decode calls -- and each still equals generate alone, bit for bit.
void checkGather(Model &model) {
  const int64_t rows = model.manifest().maxBatch;
  std::vector<Request> requests;
  const int64_t lens[] = {9, 3, 6, 12};
  if (rows < 4) {
    report(false, "gather: needs an artifact with 4 rows");
    return;
  }
  for (int64_t i = 0; i < 4; ++i)
    requests.push_back(makeRequest(model, lens[i], 6, 300 + i));
  Collector collector;
  SchedulerStats stats;
  {
    Scheduler scheduler(model);
    for (size_t i = 0; i < requests.size(); ++i)
      scheduler.submit(collector.request(static_cast<int>(i),
                                         requests[i].prompt,
                                         requests[i].sampling));
    if (!collector.waitFor(requests.size()))
      report(false, "gather: requests did not finish");
    stats = scheduler.stats();
  }
  bool ok = true;
  for (size_t i = 0; i < requests.size(); ++i) {
    dsv3test::Outcome o = collector.get(static_cast<int>(i));
    if (o.tokens != requests[i].alone) {
      ok = false;
      std::printf("  request %zu: scheduler %s, alone %s\n", i,
                  ids(o.tokens).c_str(), ids(requests[i].alone).c_str());
    }
  }
  // One prefill call of the shortest prompt (3 tokens) for all four, then
  // the longest (12) streams 9 more prompt tokens and decodes 5 more: 14
  // decode calls (the oldest prompt prefilled alone, the others streaming
  // theirs whole, would take 12 + 6 - 1 = 17).
  const int64_t expectedDecodeCalls = 12 - 3 + 6 - 1;
  report(ok && stats.prefillCalls == 1 &&
             stats.decodeCalls == expectedDecodeCalls,
         "gather: " + std::to_string(requests.size()) +
             " requests at once share one prefill call and equal generate "
             "alone",
         std::to_string(stats.prefillCalls) + " prefill calls, " +
             std::to_string(stats.decodeCalls) + " decode calls");
}

void checkQueue(Model &model) {
  const int64_t rows = model.manifest().maxBatch;
  Request first = makeRequest(model, 6, 10, 7);
  Request other = makeRequest(model, 3, 6, 8);
  SchedulerOptions options;
  options.maxQueued = 1;
  Collector collector;
  Gate gate;
  bool blocked = false;
  int accepted = 1;
  SubmitResult full;
  {
    Scheduler scheduler(model, options);
    scheduler.submit(
        collector.request(0, first.prompt, first.sampling, [&](int32_t) {
          if (!blocked) {
            blocked = true;
            gate.block();
          }
          return true;
        }));
    if (!gate.waitUntilReached()) {
      report(false, "queue: the first request never produced a token");
      gate.release();
      return;
    }
    // rows - 1 free rows and one queue place; then QueueFull.
    for (int64_t i = 0; i < rows; ++i)
      accepted += scheduler
                      .submit(collector.request(static_cast<int>(1 + i),
                                                other.prompt, other.sampling))
                      .status == SubmitResult::Accepted;
    full =
        scheduler.submit(collector.request(100, other.prompt, other.sampling));
    gate.release();
    collector.waitFor(static_cast<size_t>(accepted));
  }
  bool ok = accepted == rows + 1 && full.status == SubmitResult::QueueFull;
  ok &= collector.get(0).tokens == first.alone;
  for (int64_t i = 0; i < rows; ++i)
    ok &= collector.get(static_cast<int>(1 + i)).tokens == other.alone;
  ok &= !collector.get(100).finished;
  report(ok,
         "queue: " + std::to_string(rows) + " rows + 1 queued accepted, " +
             "then QueueFull",
         full.error);
}

void checkCancel(Model &model) {
  const int64_t rows = model.manifest().maxBatch;
  Request longRequest = makeRequest(model, 5, 30, 11);
  Request cancelled = makeRequest(model, 8, 30, 12);
  Request waiting = makeRequest(model, 10, 4, 13);
  Collector collector;
  Gate gateFirst, gateCancelled;
  bool firstBlocked = false, cancelledBlocked = false;
  std::vector<int> order;
  {
    Scheduler scheduler(model);
    // Request 0 holds the thread while the others are submitted: they are
    // admitted together at the next step, the last one waits.
    scheduler.submit(collector.request(0, longRequest.prompt,
                                       longRequest.sampling, [&](int32_t) {
                                         if (!firstBlocked) {
                                           firstBlocked = true;
                                           gateFirst.block();
                                         }
                                         return true;
                                       }));
    if (!gateFirst.waitUntilReached()) {
      report(false, "cancel: no first token");
      gateFirst.release();
      return;
    }
    RequestId victim =
        scheduler
            .submit(collector.request(1, cancelled.prompt, cancelled.sampling,
                                      [&](int32_t) {
                                        if (!cancelledBlocked) {
                                          cancelledBlocked = true;
                                          gateCancelled.block();
                                        }
                                        return true;
                                      }))
            .id;
    for (int64_t i = 2; i < rows; ++i)
      scheduler.submit(collector.request(
          static_cast<int>(i), longRequest.prompt, longRequest.sampling));
    scheduler.submit(collector.request(50, waiting.prompt, waiting.sampling));
    gateFirst.release();
    if (!gateCancelled.waitUntilReached()) {
      report(false, "cancel: the victim never produced a token");
      gateCancelled.release();
      return;
    }
    SchedulerStats before = scheduler.stats();
    scheduler.cancel(victim);
    gateCancelled.release();
    collector.waitFor(static_cast<size_t>(rows + 1));
    order = collector.finishOrder();
    if (before.active != rows || before.queued != 1)
      report(false, "cancel: expected every row taken and one waiting",
             std::to_string(before.active) + " active, " +
                 std::to_string(before.queued) + " queued");
  }
  dsv3test::Outcome victim = collector.get(1);
  bool ok = victim.reason == FinishReason::Cancelled &&
            victim.tokens.size() < cancelled.alone.size() &&
            std::equal(victim.tokens.begin(), victim.tokens.end(),
                       cancelled.alone.begin());
  ok &= collector.get(50).tokens == waiting.alone;
  ok &= collector.get(0).tokens == longRequest.alone;
  for (int64_t i = 2; i < rows; ++i)
    ok &= collector.get(static_cast<int>(i)).tokens == longRequest.alone;
  // The victim ends first, then the waiting request (4 tokens) in its row,
  // long before the 30-token ones.
  ok &= order.size() == static_cast<size_t>(rows + 1) && order[0] == 1 &&
        order[1] == 50;
  report(ok, "cancel: the cancelled request's row serves the waiting one");
}

} // namespace

int main(int argc, char **argv) {
  if (argc != 3 && !(argc == 4 && (std::string(argv[3]) == "cpu" ||
                                   std::string(argv[3]) == "cuda"))) {
    std::fprintf(stderr, "usage: %s ARTIFACT_DIR CHECKPOINT_DIR [cpu|cuda]\n",
                 argv[0]);
    return 2;
  }
  std::string error;
  OpenOptions options;
  options.numThreads = 2;
  if (argc == 4 && std::string(argv[3]) == "cuda")
    options.device = Device::Cuda;
  std::unique_ptr<Model> model = Model::open(argv[1], argv[2], options, error);
  if (!model) {
    std::fprintf(stderr, "error: %s\n", error.c_str());
    return 1;
  }
  if (model->manifest().maxBatch < 2) {
    std::fprintf(stderr, "error: the artifact needs --max-batch >= 2\n");
    return 1;
  }
  checkConcurrent(*model);
  checkGather(*model);
  checkQueue(*model);
  checkCancel(*model);
  return failures ? 1 : 0;
}
