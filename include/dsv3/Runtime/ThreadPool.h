//===- ThreadPool.h - Persistent pool behind dsv3rt_parallel_for -*- C++ -*-===//
//
// Compiled entry points may call dsv3rt_parallel_for many times per token
// (one per matmul), so workers are created once per model and sleep between
// calls instead of being spawned per call. The calling thread runs a share of
// every loop, so a pool of N threads has N-1 workers.
//
// parallelFor splits [0, n) into at most numThreads() contiguous ranges of
// nearly equal size; a call from inside a running loop body (nested
// parallelism) runs serially on its caller rather than deadlocking.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_THREADPOOL_H
#define DSV3_RUNTIME_THREADPOOL_H

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace dsv3 {
namespace runtime {

/// CPUs this process may run on (sched_getaffinity), at least 1.
int availableCpus();

class ThreadPool {
public:
  using RangeFn = void (*)(int64_t begin, int64_t end, void *ctx);

  /// `numThreads` >= 1 counts the calling thread.
  explicit ThreadPool(int numThreads);
  ~ThreadPool();
  ThreadPool(const ThreadPool &) = delete;
  ThreadPool &operator=(const ThreadPool &) = delete;

  int numThreads() const { return static_cast<int>(workers.size()) + 1; }

  /// Runs fn over disjoint ranges covering [0, n); returns when all are done.
  /// Concurrent calls from different threads are serialised.
  void parallelFor(int64_t n, RangeFn fn, void *ctx);

  /// Convenience for C++ callers: body(begin, end).
  template <typename Body> void parallelFor(int64_t n, Body &&body) {
    parallelFor(
        n,
        [](int64_t begin, int64_t end, void *ctx) {
          (*static_cast<Body *>(ctx))(begin, end);
        },
        &body);
  }

  /// True on a thread that is running a parallelFor body of any pool.
  static bool insideParallelRegion();
  /// The pool whose worker thread this is, or nullptr.
  static ThreadPool *ofWorkerThread();

private:
  void workerLoop();
  /// Claims and runs ranges of the current job until none is left.
  void runRanges();

  std::vector<std::thread> workers;
  std::mutex callMutex; // one parallelFor at a time

  std::mutex mutex;
  std::condition_variable wake;     // workers wait for a new job
  std::condition_variable finished; // the caller waits for the workers
  uint64_t generation = 0;          // bumped per job
  bool stopping = false;
  int busyWorkers = 0; // workers that have not finished the current job

  // The current job (written under `mutex` before `generation` is bumped).
  RangeFn jobFn = nullptr;
  void *jobCtx = nullptr;
  int64_t jobN = 0;
  int64_t jobRanges = 0;
  std::atomic<int64_t> nextRange{0};
};

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_THREADPOOL_H
