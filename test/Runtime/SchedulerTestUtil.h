//===- SchedulerTestUtil.h - Callbacks of Scheduler tests -------*- C++ -*-===//
//
// Shared by SchedulerTest.cpp (the test double) and scheduler_check.cpp (a
// compiled model): collects what each request's callbacks saw, and a gate
// that holds the scheduling thread inside a callback so a test can submit or
// cancel while rows are known to be taken. No GoogleTest in here.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TEST_RUNTIME_SCHEDULERTESTUTIL_H
#define DSV3_TEST_RUNTIME_SCHEDULERTESTUTIL_H

#include "dsv3/Runtime/Scheduler.h"

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace dsv3test {

/// What a request saw: its tokens, and how it ended.
struct Outcome {
  std::vector<int32_t> tokens;
  bool finished = false;
  dsv3::runtime::FinishReason reason = dsv3::runtime::FinishReason::Error;
  std::string error;
};

/// Collects the callbacks of many requests and lets the test wait for them.
class Collector {
public:
  /// A request whose callbacks fill outcome `key`. `onToken` (optional)
  /// runs first for each token and decides whether to go on.
  dsv3::runtime::GenerationRequest
  request(int key, std::vector<int32_t> prompt,
          dsv3::runtime::SamplingOptions sampling,
          std::function<bool(int32_t)> onToken = nullptr) {
    dsv3::runtime::GenerationRequest r;
    r.prompt = std::move(prompt);
    r.sampling = sampling;
    r.onToken = [this, key, onToken](int32_t token) {
      bool goOn = onToken ? onToken(token) : true;
      std::lock_guard<std::mutex> lock(mutex);
      outcomes[key].tokens.push_back(token);
      return goOn;
    };
    r.onFinish = [this, key](dsv3::runtime::FinishReason reason,
                             const std::string &error) {
      std::lock_guard<std::mutex> lock(mutex);
      Outcome &o = outcomes[key];
      if (o.finished)
        ++finishedTwice;
      o.finished = true;
      o.reason = reason;
      o.error = error;
      order.push_back(key);
      done.notify_all();
    };
    return r;
  }

  /// Waits until `count` requests have finished (fails after 20 s).
  bool waitFor(size_t count) {
    std::unique_lock<std::mutex> lock(mutex);
    return done.wait_for(lock, std::chrono::seconds(20),
                         [&] { return order.size() >= count; });
  }

  Outcome get(int key) {
    std::lock_guard<std::mutex> lock(mutex);
    return outcomes[key];
  }

  std::vector<int> finishOrder() {
    std::lock_guard<std::mutex> lock(mutex);
    return order;
  }

  /// onFinish calls beyond the first of a request (must stay 0).
  int finishedTwice = 0;

private:
  std::mutex mutex;
  std::condition_variable done;
  std::map<int, Outcome> outcomes;
  std::vector<int> order;
};

/// Blocks the scheduling thread inside a callback until the test opens it,
/// so the test can submit or cancel while rows are known to be taken.
class Gate {
public:
  /// Called on the scheduling thread.
  void block() {
    std::unique_lock<std::mutex> lock(mutex);
    reached = true;
    changed.notify_all();
    changed.wait(lock, [&] { return open; });
  }
  /// False after 20 s without the thread reaching the gate.
  bool waitUntilReached() {
    std::unique_lock<std::mutex> lock(mutex);
    return changed.wait_for(lock, std::chrono::seconds(20),
                            [&] { return reached; });
  }
  void release() {
    std::lock_guard<std::mutex> lock(mutex);
    open = true;
    changed.notify_all();
  }

private:
  std::mutex mutex;
  std::condition_variable changed;
  bool reached = false, open = false;
};

} // namespace dsv3test

#endif // DSV3_TEST_RUNTIME_SCHEDULERTESTUTIL_H
