//===- ThreadPoolTest.cpp - The pool behind dsv3rt_parallel_for -----------===//

#include "dsv3/Runtime/ThreadPool.h"
#include "dsv3/Runtime/dsv3rt.h"

#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using dsv3::runtime::ThreadPool;

namespace {

/// Runs parallelFor over n and checks every index is visited exactly once
/// by ranges that are non-empty and in bounds.
void expectExactCover(ThreadPool &pool, int64_t n) {
  std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
  std::atomic<int64_t> calls{0};
  pool.parallelFor(n, [&](int64_t begin, int64_t end) {
    ASSERT_LE(0, begin);
    ASSERT_LT(begin, end);
    ASSERT_LE(end, n);
    ++calls;
    for (int64_t i = begin; i < end; ++i)
      ++hits[i];
  });
  for (int64_t i = 0; i < n; ++i)
    ASSERT_EQ(hits[i].load(), 1) << "index " << i << " of " << n;
  EXPECT_LE(calls.load(), std::min<int64_t>(n, pool.numThreads()));
}

TEST(ThreadPoolTest, CoversEveryIndexOnce) {
  for (int threads : {1, 2, 3, 8}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.numThreads(), threads);
    for (int64_t n : {0, 1, 2, 3, 7, 8, 9, 100, 1001})
      expectExactCover(pool, n);
  }
}

TEST(ThreadPoolTest, UsesSeveralThreads) {
  ThreadPool pool(4);
  std::mutex mutex;
  std::set<std::thread::id> ids;
  std::atomic<int> arrived{0};
  // Each range waits until all four have started: only possible if four
  // threads run them at once (the caller and three workers).
  pool.parallelFor(4, [&](int64_t, int64_t) {
    {
      std::lock_guard<std::mutex> lock(mutex);
      ids.insert(std::this_thread::get_id());
    }
    ++arrived;
    while (arrived.load() < 4)
      std::this_thread::yield();
  });
  EXPECT_EQ(ids.size(), 4u);
  EXPECT_TRUE(ids.count(std::this_thread::get_id()));
}

TEST(ThreadPoolTest, ManyShortLoopsReuseTheWorkers) {
  ThreadPool pool(4);
  std::atomic<int64_t> sum{0};
  for (int iter = 0; iter < 20000; ++iter)
    pool.parallelFor(16, [&](int64_t begin, int64_t end) {
      sum += end - begin;
    });
  EXPECT_EQ(sum.load(), 20000 * 16);
}

TEST(ThreadPoolTest, NestedCallsRunSerially) {
  ThreadPool pool(4);
  std::atomic<int64_t> inner{0};
  pool.parallelFor(8, [&](int64_t begin, int64_t end) {
    EXPECT_TRUE(ThreadPool::insideParallelRegion());
    for (int64_t i = begin; i < end; ++i)
      pool.parallelFor(10, [&](int64_t b, int64_t e) {
        EXPECT_EQ(b, 0); // one range: serial on the caller
        EXPECT_EQ(e, 10);
        inner += e - b;
      });
  });
  EXPECT_EQ(inner.load(), 80);
  EXPECT_FALSE(ThreadPool::insideParallelRegion());
}

TEST(ThreadPoolTest, WorkersKnowTheirPool) {
  ThreadPool pool(3);
  EXPECT_EQ(ThreadPool::ofWorkerThread(), nullptr);
  std::atomic<int> workers{0}, wrong{0};
  std::atomic<int> arrived{0};
  pool.parallelFor(3, [&](int64_t, int64_t) {
    ++arrived;
    while (arrived.load() < 3)
      std::this_thread::yield();
    ThreadPool *of = ThreadPool::ofWorkerThread();
    if (of == &pool)
      ++workers;
    else if (of != nullptr)
      ++wrong;
    // The hook agrees: a loop body asking gets its pool's size.
    if (of == &pool && dsv3rt_num_threads() != 3)
      ++wrong;
  });
  EXPECT_EQ(workers.load(), 2); // the caller is not a worker
  EXPECT_EQ(wrong.load(), 0);
}

TEST(ThreadPoolTest, ConcurrentCallersAreSerialised) {
  ThreadPool pool(3);
  std::atomic<int64_t> total{0};
  std::vector<std::thread> callers;
  for (int c = 0; c < 4; ++c)
    callers.emplace_back([&] {
      for (int iter = 0; iter < 500; ++iter)
        pool.parallelFor(7, [&](int64_t b, int64_t e) { total += e - b; });
    });
  for (std::thread &t : callers)
    t.join();
  EXPECT_EQ(total.load(), 4 * 500 * 7);
}

TEST(ThreadPoolTest, CApiOutsideAModelUsesTheProcessPool) {
  EXPECT_GE(dsv3rt_num_threads(), 1);
  std::vector<int> hits(1000, 0);
  dsv3rt_parallel_for(
      1000,
      [](int64_t begin, int64_t end, void *ctx) {
        int *h = static_cast<int *>(ctx);
        for (int64_t i = begin; i < end; ++i)
          ++h[i]; // disjoint ranges: no race
      },
      hits.data());
  for (int h : hits)
    ASSERT_EQ(h, 1);
  // n <= 0 and a null function are no-ops.
  dsv3rt_parallel_for(0, nullptr, nullptr);
  dsv3rt_parallel_for(-5, [](int64_t, int64_t, void *) { FAIL(); }, nullptr);
}

TEST(ThreadPoolTest, AvailableCpus) {
  EXPECT_GE(dsv3::runtime::availableCpus(), 1);
}

} // namespace
