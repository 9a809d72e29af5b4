//===- SchedulerTest.cpp - Continuous batching against the test double ----===//
//
// The test double (Inputs/fake_model.c) computes each row's next token from
// that row's cache, so a request whose cache row were corrupted by filler,
// by another request or by a reused row would generate other tokens than it
// does alone through Model::generate, which every test here compares with.
// The compiled-model version of these checks is scheduler-compiled.test.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/Scheduler.h"
#include "dsv3/Runtime/Model.h"

#include "RuntimeTestUtil.h"
#include "SchedulerTestUtil.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

using namespace dsv3test;
using namespace dsv3::runtime;
using ::testing::HasSubstr;

namespace {

constexpr int64_t kVocab = 32;

SamplingOptions greedy(int64_t maxNew, bool stopAtEos = true) {
  SamplingOptions s;
  s.maxNewTokens = maxNew;
  s.stopAtEos = stopAtEos;
  return s;
}

class SchedulerTest : public ::testing::Test {
protected:
  void SetUp() override {
    artifact = dir / "artifact";
    checkpoint = dir / "ckpt";
    makeDir(checkpoint);
    json config = smallConfig();
    writeFile(checkpoint + "/config.json", config.dump(1));
    writeSafetensors(
        checkpoint + "/model.safetensors",
        {TestTensor::make("model.embed_tokens.weight", "BF16", {kVocab, 16}, 1),
         TestTensor::make("model.norm.weight", "BF16", {16}, 2)});
    json weights = json::array(
        {weightEntry("embed", "model.embed_tokens.weight", "bf16",
                     {kVocab, 16}),
         weightEntry("final_norm", "model.norm.weight", "bf16", {16})});
    writeArtifact(artifact, makeManifest(config, weights, /*maxBatch=*/2,
                                         /*maxSeqLen=*/32));
    std::string error;
    OpenOptions options;
    options.numThreads = 2;
    model = Model::open(artifact, checkpoint, options, error);
    ASSERT_TRUE(model) << error;
  }

  /// The independent path: the request alone through Model::generate.
  std::vector<int32_t> alone(const std::vector<int32_t> &prompt,
                             const SamplingOptions &sampling) {
    GenerateOutput out;
    std::string error = model->generate({prompt}, sampling, false, out);
    EXPECT_EQ(error, "");
    return error.empty() ? out.tokens[0] : std::vector<int32_t>{};
  }

  TempDir dir;
  std::string artifact, checkpoint;
  std::unique_ptr<Model> model;
};

TEST_F(SchedulerTest, ConcurrentRequestsGetTheirTokensAlone) {
  // More requests than the 2 rows, prompts of different lengths (some
  // longer than others' whole sequences), different max tokens; eos (1)
  // is ignored so every request runs its full length.
  struct Case {
    std::vector<int32_t> prompt;
    int64_t maxNew;
  };
  std::vector<Case> cases = {{{3}, 9},
                             {{2, 4, 6, 8, 10, 12, 14}, 4},
                             {{5, 7}, 12},
                             {{9, 9, 9, 9}, 1},
                             {{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, 6},
                             {{30}, 3},
                             {{4, 4}, 7}};
  std::vector<std::vector<int32_t>> expected;
  for (const Case &c : cases)
    expected.push_back(alone(c.prompt, greedy(c.maxNew, false)));

  Collector collector;
  {
    Scheduler scheduler(*model);
    for (size_t i = 0; i < cases.size(); ++i) {
      SubmitResult r = scheduler.submit(
          collector.request(static_cast<int>(i), cases[i].prompt,
                            greedy(cases[i].maxNew, false)));
      ASSERT_EQ(r.status, SubmitResult::Accepted) << r.error;
    }
    ASSERT_TRUE(collector.waitFor(cases.size()));
    SchedulerStats stats = scheduler.stats();
    EXPECT_EQ(stats.completed, static_cast<int64_t>(cases.size()));
    EXPECT_EQ(stats.active, 0);
    EXPECT_EQ(stats.queued, 0);
    int64_t promptTokens = 0, generated = 0;
    for (size_t i = 0; i < cases.size(); ++i) {
      promptTokens += static_cast<int64_t>(cases[i].prompt.size());
      generated += cases[i].maxNew;
    }
    EXPECT_EQ(stats.promptTokens, promptTokens);
    EXPECT_EQ(stats.generatedTokens, generated);
    // Each request is prefilled once, with its whole prompt.
    EXPECT_GE(stats.prefillCalls, 1);
    EXPECT_LE(stats.prefillCalls, static_cast<int64_t>(cases.size()));
    // Shared decode calls: fewer than one per generated token.
    EXPECT_LT(stats.decodeCalls, generated);
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    Outcome o = collector.get(static_cast<int>(i));
    EXPECT_TRUE(o.finished);
    EXPECT_EQ(o.reason, FinishReason::Length) << "request " << i;
    EXPECT_EQ(o.tokens, expected[i]) << "request " << i;
  }
  EXPECT_EQ(collector.finishedTwice, 0);
}

TEST_F(SchedulerTest, SampledRequestsDrawTheirOwnStream) {
  // Temperature 1 with the same seed: each request draws from stream
  // (seed, 0), as sequence 0 of a generate call, whatever shares its steps.
  std::vector<std::vector<int32_t>> prompts = {{3, 5}, {7}, {2, 2, 2}, {11}};
  std::vector<std::vector<int32_t>> expected;
  std::vector<SamplingOptions> sampling;
  for (size_t i = 0; i < prompts.size(); ++i) {
    SamplingOptions s = greedy(10, false);
    s.temperature = 1.0f;
    s.seed = 1000 + i % 2; // two requests share each seed
    sampling.push_back(s);
    expected.push_back(alone(prompts[i], s));
  }
  Collector collector;
  Scheduler scheduler(*model);
  for (size_t i = 0; i < prompts.size(); ++i)
    ASSERT_EQ(scheduler
                  .submit(collector.request(static_cast<int>(i), prompts[i],
                                            sampling[i]))
                  .status,
              SubmitResult::Accepted);
  ASSERT_TRUE(collector.waitFor(prompts.size()));
  for (size_t i = 0; i < prompts.size(); ++i)
    EXPECT_EQ(collector.get(static_cast<int>(i)).tokens, expected[i])
        << "request " << i;
}

TEST_F(SchedulerTest, EosAndStoppedRequestsEndAtOnce) {
  // sum(16, 17) = 33 = 1 mod 32: eos first; with stop at eos it ends there.
  std::vector<int32_t> eosPrompt = {16, 17};
  ASSERT_EQ(alone(eosPrompt, greedy(5)), (std::vector<int32_t>{1}));
  std::vector<int32_t> prompt = {2, 3};
  std::vector<int32_t> expected = alone(prompt, greedy(8, false));
  Collector collector;
  Scheduler scheduler(*model);
  ASSERT_EQ(scheduler.submit(collector.request(0, eosPrompt, greedy(5))).status,
            SubmitResult::Accepted);
  int seen = 0;
  // The callback stops request 1 after its third token.
  ASSERT_EQ(scheduler
                .submit(collector.request(1, prompt, greedy(8, false),
                                          [&](int32_t) { return ++seen < 3; }))
                .status,
            SubmitResult::Accepted);
  ASSERT_EQ(scheduler.submit(collector.request(2, prompt, greedy(0))).status,
            SubmitResult::Accepted);
  ASSERT_TRUE(collector.waitFor(3));
  EXPECT_EQ(collector.get(0).reason, FinishReason::Eos);
  EXPECT_EQ(collector.get(0).tokens, (std::vector<int32_t>{1}));
  EXPECT_EQ(collector.get(1).reason, FinishReason::Stopped);
  EXPECT_EQ(collector.get(1).tokens,
            std::vector<int32_t>(expected.begin(), expected.begin() + 3));
  EXPECT_EQ(collector.get(2).reason, FinishReason::Length);
  EXPECT_TRUE(collector.get(2).tokens.empty());
}

TEST_F(SchedulerTest, BoundedQueue) {
  SchedulerOptions options;
  options.maxQueued = 1;
  Collector collector;
  Gate gate;
  std::vector<int32_t> prompt = {5, 6};
  std::vector<int32_t> expected = alone(prompt, greedy(6, false));
  bool first = true;
  Scheduler scheduler(*model, options);
  // Request 0 holds the scheduling thread at its first token.
  ASSERT_EQ(scheduler
                .submit(collector.request(0, prompt, greedy(6, false),
                                          [&](int32_t) {
                                            if (first) {
                                              first = false;
                                              gate.block();
                                            }
                                            return true;
                                          }))
                .status,
            SubmitResult::Accepted);
  ASSERT_TRUE(gate.waitUntilReached());
  // One row is free and the queue holds one more: two are accepted, and
  // whatever the scheduling thread does, the third is refused.
  EXPECT_EQ(
      scheduler.submit(collector.request(1, prompt, greedy(6, false))).status,
      SubmitResult::Accepted);
  EXPECT_EQ(
      scheduler.submit(collector.request(2, prompt, greedy(6, false))).status,
      SubmitResult::Accepted);
  SubmitResult full =
      scheduler.submit(collector.request(3, prompt, greedy(6, false)));
  EXPECT_EQ(full.status, SubmitResult::QueueFull);
  EXPECT_THAT(full.error, HasSubstr("queue is full"));
  EXPECT_EQ(scheduler.stats().queued, 2);
  gate.release();
  ASSERT_TRUE(collector.waitFor(3));
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(collector.get(i).tokens, expected) << "request " << i;
  EXPECT_FALSE(collector.get(3).finished); // refused: no callback, ever
  // Room again.
  EXPECT_EQ(
      scheduler.submit(collector.request(4, prompt, greedy(2, false))).status,
      SubmitResult::Accepted);
  ASSERT_TRUE(collector.waitFor(4));
}

TEST_F(SchedulerTest, CancelFreesTheRowForAWaitingRequest) {
  Collector collector;
  Gate gateA, gateB;
  std::vector<int32_t> promptA = {3, 1}, promptB = {4, 4, 4}, promptC = {6};
  std::vector<int32_t> expectedA = alone(promptA, greedy(20, false));
  std::vector<int32_t> expectedB = alone(promptB, greedy(20, false));
  std::vector<int32_t> expectedC = alone(promptC, greedy(3, false));
  bool firstA = true, firstB = true;
  Scheduler scheduler(*model);
  ASSERT_EQ(scheduler
                .submit(collector.request(0, promptA, greedy(20, false),
                                          [&](int32_t) {
                                            if (firstA) {
                                              firstA = false;
                                              gateA.block();
                                            }
                                            return true;
                                          }))
                .status,
            SubmitResult::Accepted);
  ASSERT_TRUE(gateA.waitUntilReached());
  RequestId idB = scheduler
                      .submit(collector.request(1, promptB, greedy(20, false),
                                                [&](int32_t) {
                                                  if (firstB) {
                                                    firstB = false;
                                                    gateB.block();
                                                  }
                                                  return true;
                                                }))
                      .id;
  ASSERT_NE(idB, 0u);
  // Both rows are taken once B is admitted: C waits.
  ASSERT_EQ(
      scheduler.submit(collector.request(2, promptC, greedy(3, false))).status,
      SubmitResult::Accepted);
  gateA.release();
  ASSERT_TRUE(gateB.waitUntilReached());
  EXPECT_EQ(scheduler.stats().active, 2);
  EXPECT_EQ(scheduler.stats().queued, 1);
  scheduler.cancel(idB);
  gateB.release();
  ASSERT_TRUE(collector.waitFor(3));
  // B ended first, then C in B's row while A (17 tokens to go) still ran.
  EXPECT_EQ(collector.finishOrder(), (std::vector<int>{1, 2, 0}));
  Outcome b = collector.get(1);
  EXPECT_EQ(b.reason, FinishReason::Cancelled);
  ASSERT_LE(b.tokens.size(), expectedB.size());
  EXPECT_EQ(b.tokens,
            std::vector<int32_t>(expectedB.begin(),
                                 expectedB.begin() + b.tokens.size()));
  EXPECT_EQ(collector.get(2).tokens, expectedC);
  EXPECT_EQ(collector.get(0).tokens, expectedA);
  EXPECT_EQ(collector.get(0).reason, FinishReason::Length);
  // Cancelling an id that has ended is ignored.
  scheduler.cancel(idB);
  scheduler.cancel(12345);
}

TEST_F(SchedulerTest, CancelAQueuedRequest) {
  Collector collector;
  Gate gate;
  bool first = true;
  Scheduler scheduler(*model);
  scheduler.submit(collector.request(0, {2}, greedy(4, false), [&](int32_t) {
    if (first) {
      first = false;
      gate.block();
    }
    return true;
  }));
  ASSERT_TRUE(gate.waitUntilReached());
  scheduler.submit(collector.request(1, {3}, greedy(4, false)));
  RequestId queued =
      scheduler.submit(collector.request(2, {4}, greedy(4, false))).id;
  scheduler.cancel(queued);
  gate.release();
  ASSERT_TRUE(collector.waitFor(3));
  EXPECT_EQ(collector.get(2).reason, FinishReason::Cancelled);
  EXPECT_TRUE(collector.get(2).tokens.empty());
  EXPECT_EQ(collector.get(1).tokens, alone({3}, greedy(4, false)));
}

TEST_F(SchedulerTest, ShutdownCancelsEverything) {
  Collector collector;
  Gate gate;
  std::thread releaser;
  bool first = true;
  {
    Scheduler scheduler(*model);
    scheduler.submit(collector.request(0, {2}, greedy(20, false), [&](int32_t) {
      if (first) {
        first = false;
        gate.block();
      }
      return true;
    }));
    ASSERT_TRUE(gate.waitUntilReached());
    scheduler.submit(collector.request(1, {3}, greedy(20, false)));
    scheduler.submit(collector.request(2, {4}, greedy(20, false)));
    scheduler.submit(collector.request(3, {5}, greedy(20, false)));
    // Opened once the destructor has asked the thread to stop.
    releaser = std::thread([&] {
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
      gate.release();
    });
  }
  releaser.join();
  for (int i = 0; i < 4; ++i) {
    Outcome o = collector.get(i);
    EXPECT_TRUE(o.finished) << i;
    EXPECT_EQ(o.reason, FinishReason::Cancelled) << i;
  }
}

TEST_F(SchedulerTest, InvalidRequestsAreRefusedWithoutCallbacks) {
  Collector collector;
  Scheduler scheduler(*model);
  SubmitResult r = scheduler.submit(collector.request(0, {}, greedy(2)));
  EXPECT_EQ(r.status, SubmitResult::Invalid);
  EXPECT_EQ(r.error, "the prompt is empty");
  r = scheduler.submit(collector.request(1, {1, 40}, greedy(2)));
  EXPECT_EQ(r.status, SubmitResult::Invalid);
  EXPECT_THAT(r.error, HasSubstr("token id 40 at position 1 is out of range"));
  r = scheduler.submit(
      collector.request(2, std::vector<int32_t>(30, 1), greedy(3)));
  EXPECT_EQ(r.status, SubmitResult::Invalid);
  EXPECT_THAT(r.error, HasSubstr("exceed the artifact's max sequence length"));
  SamplingOptions bad = greedy(2);
  bad.topP = 0;
  r = scheduler.submit(collector.request(3, {1}, bad));
  EXPECT_EQ(r.status, SubmitResult::Invalid);
  EXPECT_THAT(r.error, HasSubstr("top-p"));
  EXPECT_EQ(scheduler.stats().completed, 0);
  for (int i = 0; i < 4; ++i)
    EXPECT_FALSE(collector.get(i).finished);
}

TEST_F(SchedulerTest, LongPromptNextToAnAlmostFullRow) {
  // A prompt whose prefill reaches beyond max_seq_len for a row near its
  // end: that row's filler positions are clamped to the last position
  // (never into what it has in the cache), and both sequences come out as
  // alone.
  std::vector<int32_t> longSeqPrompt(20, 3);
  std::vector<int32_t> longPrompt(25, 2);
  std::vector<int32_t> expectedFirst = alone(longSeqPrompt, greedy(12, false));
  std::vector<int32_t> expectedSecond = alone(longPrompt, greedy(5, false));
  Collector collector;
  Gate gate;
  int seen = 0;
  Scheduler scheduler(*model);
  scheduler.submit(
      collector.request(0, longSeqPrompt, greedy(12, false), [&](int32_t) {
        if (++seen == 8)
          gate.block();
        return true;
      }));
  ASSERT_TRUE(gate.waitUntilReached()); // 28 positions used of 32
  scheduler.submit(collector.request(1, longPrompt, greedy(5, false)));
  gate.release();
  ASSERT_TRUE(collector.waitFor(2));
  EXPECT_EQ(collector.get(0).tokens, expectedFirst);
  EXPECT_EQ(collector.get(1).tokens, expectedSecond);
}

TEST_F(SchedulerTest, GenerateStreamsThroughItsCallback) {
  // Model::generate's callback sees each token as sampled and can stop
  // one sequence while the other goes on.
  std::vector<std::vector<int32_t>> prompts = {{3}, {2, 4, 6}};
  GenerateOutput all;
  ASSERT_EQ(model->generate(prompts, greedy(6, false), false, all), "");
  std::vector<std::vector<int32_t>> streamed(2);
  GenerateOutput out;
  ASSERT_EQ(model->generate(prompts, greedy(6, false), false, out,
                            [&](int64_t seq, int32_t token) {
                              streamed[seq].push_back(token);
                              return !(seq == 0 && streamed[0].size() == 2);
                            }),
            "");
  EXPECT_EQ(out.tokens[1], all.tokens[1]);
  EXPECT_EQ(streamed[1], all.tokens[1]);
  EXPECT_EQ(out.tokens[0], std::vector<int32_t>(all.tokens[0].begin(),
                                                all.tokens[0].begin() + 2));
  EXPECT_EQ(streamed[0], out.tokens[0]);
}

} // namespace
