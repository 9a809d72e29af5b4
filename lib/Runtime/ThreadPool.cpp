//===- ThreadPool.cpp - Persistent pool behind dsv3rt_parallel_for --------===//

#include "dsv3/Runtime/ThreadPool.h"

#include <algorithm>
#include <sched.h>

namespace dsv3 {
namespace runtime {

namespace {
/// Set while a thread runs a loop body, so nested calls run serially.
thread_local bool tlsInsideRegion = false;
/// Set on each worker thread to its pool.
thread_local ThreadPool *tlsWorkerOf = nullptr;

struct RegionGuard {
  bool previous;
  RegionGuard() : previous(tlsInsideRegion) { tlsInsideRegion = true; }
  ~RegionGuard() { tlsInsideRegion = previous; }
};
} // namespace

int availableCpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    int count = CPU_COUNT(&set);
    if (count > 0)
      return count;
  }
  unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? static_cast<int>(hw) : 1;
}

ThreadPool::ThreadPool(int numThreads) {
  int count = numThreads > 1 ? numThreads - 1 : 0;
  workers.reserve(count);
  for (int i = 0; i < count; ++i)
    workers.emplace_back([this] { workerLoop(); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex);
    stopping = true;
  }
  wake.notify_all();
  for (std::thread &worker : workers)
    worker.join();
}

bool ThreadPool::insideParallelRegion() { return tlsInsideRegion; }

ThreadPool *ThreadPool::ofWorkerThread() { return tlsWorkerOf; }

void ThreadPool::runRanges() {
  RegionGuard guard;
  for (;;) {
    int64_t range = nextRange.fetch_add(1, std::memory_order_relaxed);
    if (range >= jobRanges)
      return;
    // Range r covers [r*n/R, (r+1)*n/R): sizes differ by at most one.
    int64_t begin = range * jobN / jobRanges;
    int64_t end = (range + 1) * jobN / jobRanges;
    jobFn(begin, end, jobCtx);
  }
}

void ThreadPool::workerLoop() {
  tlsWorkerOf = this;
  uint64_t seen = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mutex);
      wake.wait(lock, [&] { return stopping || generation != seen; });
      if (stopping)
        return;
      seen = generation;
    }
    runRanges();
    std::lock_guard<std::mutex> lock(mutex);
    if (--busyWorkers == 0)
      finished.notify_one();
  }
}

void ThreadPool::parallelFor(int64_t n, RangeFn fn, void *ctx) {
  if (n <= 0)
    return;
  if (workers.empty() || n == 1 || tlsInsideRegion) {
    RegionGuard guard;
    fn(0, n, ctx);
    return;
  }
  std::lock_guard<std::mutex> call(callMutex);
  {
    std::lock_guard<std::mutex> lock(mutex);
    jobFn = fn;
    jobCtx = ctx;
    jobN = n;
    jobRanges = std::min<int64_t>(n, numThreads());
    nextRange.store(0, std::memory_order_relaxed);
    busyWorkers = static_cast<int>(workers.size());
    ++generation;
  }
  wake.notify_all();
  runRanges();
  // Every worker must have left runRanges before the job fields change.
  std::unique_lock<std::mutex> lock(mutex);
  finished.wait(lock, [&] { return busyWorkers == 0; });
}

} // namespace runtime
} // namespace dsv3
