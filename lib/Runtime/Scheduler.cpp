//===- Scheduler.cpp - Continuous batching over one Model -----------------===//
//
// One thread owns the model and loops over steps. A step:
//  1. takes the cancellations, and gives every free cache row to the oldest
//     waiting request;
//  2. if some admitted request has not been prefilled: ONE prefill call for
//     the oldest of them, together with every other one whose prompt has the
//     same length. Its whole prompt is one call, at positions 0..S-1, as
//     Model::generate feeds a prompt alone: the same entry point, the same
//     S, the same positions, so the same numbers. The other active rows get
//     filler beyond their length (Model::step), which they overwrite before
//     they read it.
//     Prompts shorter than the artifact's prefill_as_decode_below are
//     computed exactly alike by a prefill call and by decode calls, a token
//     each, so for them any split is exact: a request admitted while other
//     rows are decoding feeds its prompt through the decode calls of step 3
//     (a prefill call would stall the others), and when the oldest prompt is
//     such a short one, every not yet started short prompt joins its
//     prefill call for the first L tokens (L: the shortest of them; the
//     call computes every row anyway) and streams the rest;
//  3. ONE decode call advancing every active sequence by a token.
// So a newly admitted request waits at most for the prefills of those
// admitted before it, and streams already decoding lose at most one prefill
// call between two of their tokens: prefill and decode alternate, neither
// starves the other.
//
// Callbacks run on this thread without the lock held (onFinish may submit).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Scheduler.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_set>

namespace dsv3 {
namespace runtime {

struct Scheduler::State {
  struct Waiting {
    RequestId id;
    GenerationRequest request;
  };
  /// A request in a cache row.
  struct Active {
    RequestId id = 0;
    GenerationRequest request;
    std::unique_ptr<Sequence> seq;
    uint64_t admittedAt = 0; // admission order: the oldest prefills first
    /// The prompt is fed one token per decode step, beside the other rows
    /// (see run()), instead of by a prefill call of its own.
    bool streamsPrompt = false;
  };

  State(Model &model, SchedulerOptions options)
      : model(model), options(options) {
    const int64_t maxBatch = model.manifest().maxBatch;
    rows.resize(static_cast<size_t>(maxBatch));
    freeRows = maxBatch;
  }

  void run();
  /// Under the lock: waits for work, takes the cancellations (the queued
  /// requests they name are taken out into `cancelledWaiting`) and the
  /// requests the free rows admit. False when shutting down.
  bool takeWork(std::vector<Waiting> &cancelledWaiting,
                std::vector<Waiting> &admitted,
                std::vector<RequestId> &cancelled);
  void finish(size_t row, FinishReason reason, const std::string &error);
  void finishWaiting(Waiting &waiting, FinishReason reason);
  void prefillStep();
  void decodeStep();
  /// After a call that fed `row`: sample its next token if its sequence is
  /// all in the cache, pass it on, and end the request if it is done.
  /// One entry-point call with `inputs`, its counters, then sampling for
  /// every row it fed (or, if it failed, the end of every request).
  void callAndSample(Entry entry, int64_t seqLen,
                     const std::vector<RowInput> &inputs, int64_t promptTokens);
  void afterCall(size_t row, Entry entry);

  Model &model;
  const SchedulerOptions options;

  // Shared, under `mutex`.
  mutable std::mutex mutex;
  std::condition_variable wake;
  std::deque<Waiting> queue;
  std::unordered_set<RequestId> live; // queued or active
  std::vector<RequestId> cancels;
  /// Rows no request holds; a queued request beyond them waits.
  int64_t freeRows = 0;
  bool stopping = false;
  RequestId nextId = 1;
  SchedulerStats stats;

  // The scheduling thread's own.
  std::vector<std::optional<Active>> rows;
  uint64_t admissions = 0;
  SamplerScratch scratch;
  std::thread thread;
};

namespace {

/// An exception escaping a callback would end the scheduling thread, and
/// with it the process; the request has ended either way.
void notifyFinish(const GenerationRequest &request, FinishReason reason,
                  const std::string &error) {
  if (!request.onFinish)
    return;
  try {
    request.onFinish(reason, error);
  } catch (...) {
  }
}

/// validateRequest names the sequence ("sequence 0: ..."); a request has
/// one.
std::string withoutSequencePrefix(std::string error) {
  const std::string prefix = "sequence 0: ";
  if (error.compare(0, prefix.size(), prefix) == 0)
    error.erase(0, prefix.size());
  return error;
}

} // namespace

Scheduler::Scheduler(Model &model, SchedulerOptions options)
    : state_(std::make_unique<State>(model, options)) {
  state_->thread = std::thread([state = state_.get()] { state->run(); });
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    state_->stopping = true;
  }
  state_->wake.notify_all();
  state_->thread.join();
}

SubmitResult Scheduler::submit(GenerationRequest request) {
  SubmitResult result;
  const Manifest &manifest = state_->model.manifest();
  std::string error =
      validateRequest(manifest.vocabSize(), manifest.maxBatch,
                      manifest.maxSeqLen, {request.prompt}, request.sampling);
  if (!error.empty()) {
    result.status = SubmitResult::Invalid;
    result.error = withoutSequencePrefix(error);
    return result;
  }
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    // Requests that will not find a free row at the next step are the ones
    // waiting; counting the free rows makes the bound independent of how
    // far the scheduling thread has got.
    const int64_t waiting =
        static_cast<int64_t>(state_->queue.size()) - state_->freeRows;
    if (state_->stopping ||
        waiting >= static_cast<int64_t>(state_->options.maxQueued)) {
      result.status = SubmitResult::QueueFull;
      result.error = state_->stopping
                         ? "the scheduler is shutting down"
                         : "the queue is full: " +
                               std::to_string(state_->options.maxQueued) +
                               " requests already wait for one of the " +
                               std::to_string(manifest.maxBatch) +
                               " sequence slots";
      return result;
    }
    result.status = SubmitResult::Accepted;
    result.id = state_->nextId++;
    state_->live.insert(result.id);
    state_->queue.push_back({result.id, std::move(request)});
    state_->stats.queued = static_cast<int64_t>(state_->queue.size());
  }
  state_->wake.notify_all();
  return result;
}

void Scheduler::cancel(RequestId id) {
  {
    std::lock_guard<std::mutex> lock(state_->mutex);
    if (!state_->live.count(id))
      return;
    state_->cancels.push_back(id);
  }
  state_->wake.notify_all();
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(state_->mutex);
  return state_->stats;
}

//===----------------------------------------------------------------------===//
// The scheduling thread
//===----------------------------------------------------------------------===//

bool Scheduler::State::takeWork(std::vector<Waiting> &cancelledWaiting,
                                std::vector<Waiting> &admitted,
                                std::vector<RequestId> &cancelled) {
  std::unique_lock<std::mutex> lock(mutex);
  bool anyActive = false;
  for (const auto &row : rows)
    anyActive |= row.has_value();
  wake.wait(lock, [&] {
    return stopping || !cancels.empty() || anyActive ||
           (!queue.empty() && freeRows > 0);
  });
  // An idle model that gets fewer requests than it has rows waits a moment
  // for more: clients that ended together (one decode step finished them
  // all) send their next requests within milliseconds, and admitted
  // together they share a prefill call instead of each stalling the rest.
  if (!anyActive && options.gatherWindow.count() > 0)
    wake.wait_for(lock, options.gatherWindow, [&] {
      return stopping || static_cast<int64_t>(queue.size()) >= freeRows;
    });
  if (stopping)
    return false;
  cancelled.swap(cancels);
  // A cancelled request still in the queue never takes a row.
  std::unordered_set<RequestId> cancelledSet(cancelled.begin(),
                                             cancelled.end());
  for (auto it = queue.begin(); it != queue.end();) {
    if (cancelledSet.count(it->id)) {
      cancelledWaiting.push_back(std::move(*it));
      it = queue.erase(it);
    } else {
      ++it;
    }
  }
  while (!queue.empty() && freeRows > 0) {
    admitted.push_back(std::move(queue.front()));
    queue.pop_front();
    --freeRows;
  }
  stats.queued = static_cast<int64_t>(queue.size());
  return true;
}

void Scheduler::State::finishWaiting(Waiting &waiting, FinishReason reason) {
  {
    std::lock_guard<std::mutex> lock(mutex);
    live.erase(waiting.id);
    ++stats.completed;
  }
  notifyFinish(waiting.request, reason, "");
}

void Scheduler::State::finish(size_t row, FinishReason reason,
                              const std::string &error) {
  Active active = std::move(*rows[row]);
  rows[row].reset();
  {
    std::lock_guard<std::mutex> lock(mutex);
    live.erase(active.id);
    ++freeRows;
    ++stats.completed;
    --stats.active;
  }
  notifyFinish(active.request, reason,
               reason == FinishReason::Error ? error : "");
}

void Scheduler::State::run() {
  for (;;) {
    std::vector<Waiting> cancelledWaiting, admitted;
    std::vector<RequestId> cancelled;
    if (!takeWork(cancelledWaiting, admitted, cancelled))
      break;
    for (Waiting &waiting : cancelledWaiting)
      finishWaiting(waiting, FinishReason::Cancelled);
    for (RequestId id : cancelled)
      for (size_t r = 0; r < rows.size(); ++r)
        if (rows[r] && rows[r]->id == id)
          finish(r, FinishReason::Cancelled, "");
    // Rows that were decoding before this admission: requests admitted
    // together into an idle model share prefill calls instead.
    bool othersInUse = false;
    for (const auto &other : rows)
      othersInUse |= other.has_value();
    for (Waiting &waiting : admitted) {
      size_t r = 0;
      while (rows[r])
        ++r; // takeWork admitted no more than the free rows
      Active active;
      active.id = waiting.id;
      active.request = std::move(waiting.request);
      // Stream 0: what the request draws alone, as sequence 0 of a
      // generate call.
      active.seq = std::make_unique<Sequence>(active.request.prompt,
                                              active.request.sampling, 0);
      active.admittedAt = admissions++;
      // While other rows are in use, a prompt the artifact computes the same
      // way in a decode call as in a prefill call (prefill_as_decode_below)
      // is fed through the decode steps they share: a prefill call would
      // stall every other stream and compute filler for each of their rows
      // (the compiled code computes every row of the batch), while a shared
      // decode step costs the others nothing. Alone, it is prefilled in one
      // call (the shortest time to its first token).
      active.streamsPrompt =
          othersInUse && static_cast<int64_t>(active.request.prompt.size()) <
                             model.manifest().prefillAsDecodeBelow;
      rows[r] = std::move(active);
      {
        std::lock_guard<std::mutex> lock(mutex);
        ++stats.active;
      }
      // Nothing to generate: done without a call.
      if (rows[r]->seq->finished)
        finish(r, FinishReason::Length, "");
    }
    prefillStep();
    decodeStep();
  }
  // Shutting down: everything still here ends as cancelled.
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r])
      finish(r, FinishReason::Cancelled, "");
  std::deque<Waiting> waiting;
  {
    std::lock_guard<std::mutex> lock(mutex);
    waiting.swap(queue);
    stats.queued = 0;
  }
  for (Waiting &w : waiting)
    finishWaiting(w, FinishReason::Cancelled);
}

void Scheduler::State::prefillStep() {
  // The oldest admitted request whose prompt is not in the cache yet.
  std::optional<size_t> first;
  for (size_t r = 0; r < rows.size(); ++r)
    if (rows[r] && rows[r]->seq->fed == 0 && !rows[r]->streamsPrompt &&
        (!first || rows[r]->admittedAt < rows[*first]->admittedAt))
      first = r;
  if (!first)
    return;
  const int64_t splitBelow = model.manifest().prefillAsDecodeBelow;
  auto promptLength = [&](size_t r) {
    return static_cast<int64_t>(rows[r]->seq->prompt.size());
  };
  // A short oldest prompt: every short prompt not started yet joins, for
  // the first seqLen tokens (the shortest of them), and streams the rest
  // through the decode calls.
  const bool shortPrompts = promptLength(*first) < splitBelow;
  auto joins = [&](size_t r) {
    if (!rows[r] || rows[r]->seq->fed != 0)
      return false;
    if (shortPrompts)
      return promptLength(r) < splitBelow;
    return !rows[r]->streamsPrompt && promptLength(r) == promptLength(*first);
  };
  int64_t seqLen = promptLength(*first);
  for (size_t r = 0; r < rows.size(); ++r)
    if (joins(r))
      seqLen = std::min(seqLen, promptLength(r));
  std::vector<RowInput> inputs(rows.size());
  int64_t promptTokens = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r])
      continue;
    Sequence *seq = rows[r]->seq.get();
    // Others admitted but not prefilled are unused rows for this call: the
    // filler goes to positions 0..S-1, which their own prefill rewrites.
    if (seq->fed == 0 && !joins(r))
      continue;
    inputs[r].seq = seq;
    inputs[r].feed = joins(r);
    promptTokens += inputs[r].feed ? seqLen : 0;
  }
  // What the call leaves of a joined prompt goes through the decode calls.
  for (size_t r = 0; r < rows.size(); ++r)
    if (inputs[r].feed && seqLen < promptLength(r))
      rows[r]->streamsPrompt = true;
  callAndSample(Entry::Prefill, seqLen, inputs, promptTokens);
}

void Scheduler::State::decodeStep() {
  std::vector<RowInput> inputs(rows.size());
  bool any = false;
  int64_t promptTokens = 0; // of prompts streamed through this call
  for (size_t r = 0; r < rows.size(); ++r) {
    if (!rows[r] || (rows[r]->seq->fed == 0 && !rows[r]->streamsPrompt))
      continue; // waiting for its prefill call: an unused row for this call
    inputs[r].seq = rows[r]->seq.get();
    inputs[r].feed = inputs[r].seq->needsFeed(false);
    any |= inputs[r].feed;
    promptTokens += inputs[r].feed && !inputs[r].seq->promptFed() ? 1 : 0;
  }
  if (!any)
    return;
  callAndSample(Entry::Decode, 1, inputs, promptTokens);
}

void Scheduler::State::callAndSample(Entry entry, int64_t seqLen,
                                     const std::vector<RowInput> &inputs,
                                     int64_t promptTokens) {
  std::string error = model.step(entry, seqLen, inputs);
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++(entry == Entry::Prefill ? stats.prefillCalls : stats.decodeCalls);
    if (error.empty())
      stats.promptTokens += promptTokens;
  }
  if (!error.empty()) {
    // The call may have left any row's cache half written: every request
    // in the model ends.
    for (size_t r = 0; r < rows.size(); ++r)
      if (rows[r])
        finish(r, FinishReason::Error, error);
    return;
  }
  for (size_t r = 0; r < rows.size(); ++r)
    if (inputs[r].feed)
      afterCall(r, entry);
}

void Scheduler::State::afterCall(size_t row, Entry entry) {
  Active &active = *rows[row];
  Sequence &seq = *active.seq;
  if (seq.fed != seq.length() || seq.finished)
    return;
  const std::string who = "request " + std::to_string(active.id);
  const float *logits = model.rowLogits(static_cast<int64_t>(row));
  std::string error = model.checkLogits(logits, entry, who);
  if (error.empty())
    error = model.sampleNext(seq, logits, entry, who, scratch);
  if (!error.empty()) {
    finish(row, FinishReason::Error, error);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex);
    ++stats.generatedTokens;
  }
  const int32_t token = seq.tokens.back();
  bool goOn = true;
  if (active.request.onToken) {
    try {
      goOn = active.request.onToken(token);
    } catch (...) {
      finish(row, FinishReason::Error, "the request's token callback threw");
      return;
    }
  }
  if (!goOn)
    finish(row, FinishReason::Stopped, "");
  else if (seq.finished)
    finish(row,
           seq.sampling.stopAtEos && token == model.manifest().config.eosTokenId
               ? FinishReason::Eos
               : FinishReason::Length,
           "");
}

} // namespace runtime
} // namespace dsv3
