//===- Scheduler.h - Continuous batching over one Model ---------*- C++ -*-===//
//
// Serves many generation requests with one compiled model: requests share
// decode steps (one entry-point call advances every active sequence by one
// token, up to the artifact's max batch); a sequence that finishes frees its
// cache row at once and a waiting request takes it at the next step; requests
// beyond the rows wait in a bounded queue. A request's tokens are those it
// gets alone with dsv3rt_generate (greedy, or the same seed: it draws from
// stream (seed, 0)). The Scheduler computes nothing of the model: it feeds
// the entry points and samples, like Model::generate. docs/runtime.md
// ("Continuous batching": the step policy), docs/serving.md (the server).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_SCHEDULER_H
#define DSV3_RUNTIME_SCHEDULER_H

#include "dsv3/Runtime/Model.h"

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace dsv3 {
namespace runtime {

enum class FinishReason {
  Length,    // max_new_tokens generated
  Eos,       // the eos token was generated (it is the last token passed)
  Stopped,   // onToken returned false (a stop string, a client that left)
  Cancelled, // cancel() or the scheduler shut down
  Error,     // an entry point failed; the message says why
};

struct GenerationRequest {
  std::vector<int32_t> prompt;
  SamplingOptions sampling;
  /// Called on the scheduler's thread for each generated token, in order.
  /// Returning false ends the request at once (its row is freed) with
  /// FinishReason::Stopped. Must not block and must not call back into the
  /// Scheduler.
  std::function<bool(int32_t token)> onToken;
  /// Called exactly once per accepted request, on the scheduler's thread,
  /// when it ends; `error` is set for FinishReason::Error only.
  std::function<void(FinishReason reason, const std::string &error)> onFinish;
};

struct SchedulerOptions {
  /// Requests waiting for a row beyond which submit() answers QueueFull.
  size_t maxQueued = 64;
  /// How long an idle model waits, once a request arrives, for more to
  /// admit with it (they then share prefill calls); 0: admit at once.
  std::chrono::milliseconds gatherWindow{10};
};

struct SchedulerStats {
  int64_t prefillCalls = 0, decodeCalls = 0;
  int64_t promptTokens = 0, generatedTokens = 0;
  int64_t active = 0, queued = 0; // now
  int64_t completed = 0;          // requests ended, whatever the reason
};

using RequestId = uint64_t;

struct SubmitResult {
  enum Status { Accepted, Invalid, QueueFull } status = Invalid;
  std::string error; // one line, for Invalid and QueueFull
  RequestId id = 0;  // for Accepted
};

class Scheduler {
public:
  /// Starts the scheduling thread. The model must outlive the Scheduler and
  /// must not be used by anything else meanwhile.
  Scheduler(Model &model, SchedulerOptions options = {});
  /// Ends every queued and active request with Cancelled, then joins.
  ~Scheduler();
  Scheduler(const Scheduler &) = delete;
  Scheduler &operator=(const Scheduler &) = delete;

  /// Thread-safe. Checks the request against the artifact (prompt non-empty,
  /// ids in [0, vocab), prompt + max_new_tokens <= max_seq_len, sampling
  /// parameters) before queueing it: Invalid with the reason, QueueFull when
  /// maxQueued requests already wait; no callback is ever called then.
  SubmitResult submit(GenerationRequest request);

  /// Thread-safe; ends the request with Cancelled at the next step. An id
  /// that has already ended is ignored.
  void cancel(RequestId id);

  /// Thread-safe snapshot.
  SchedulerStats stats() const;

  struct State;

private:
  std::unique_ptr<State> state_;
};

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_SCHEDULER_H
