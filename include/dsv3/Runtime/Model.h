//===- Model.h - An opened artifact: weights, cache, generation -*- C++ -*-===//
//
// The C++ core behind the C API (dsv3rt.h). A Model owns
//  - the compiled library (dlopen'ed) and its two entry points,
//  - one buffer per manifest weight, in the checkpoint's dtype: stacked
//    weights are copied slice by slice from the memory-mapped checkpoint
//    into one 64-byte-aligned buffer; unstacked ones are used in place when
//    the mapping is aligned to their element size,
//  - the KV cache (zeroed once), the logits output and the token/position
//    input buffers, and the memref descriptors that point at all of them,
//  - a thread pool for loading and for the compiled code's parallel loops.
//
// It computes nothing of the model: generation is a loop of entry-point
// calls, sampling and bookkeeping of positions.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_MODEL_H
#define DSV3_RUNTIME_MODEL_H

#include "dsv3/Runtime/Manifest.h"
#include "dsv3/Runtime/Sampler.h"
#include "dsv3/Runtime/ThreadPool.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dsv3 {
namespace runtime {

/// Where the compiled model math runs; it must match the artifact's target.
enum class Device { Cpu, Cuda };

struct OpenOptions {
  int numThreads = 0; // 0: availableCpus()
  Device device = Device::Cpu;
  /// Called on the opening thread as weights are placed: (done, total) bytes.
  std::function<void(uint64_t, uint64_t)> progress;
};

struct SamplingOptions {
  int64_t maxNewTokens = 16;
  float temperature = 0.0f; // 0: greedy
  float topP = 1.0f;
  uint64_t seed = 0;
  bool stopAtEos = true;
};

struct GenerateOutput {
  /// Generated tokens per sequence (an emitted eos included).
  std::vector<std::vector<int32_t>> tokens;
  /// When requested: per sequence, (1 + tokens[i].size()) rows of vocab
  /// floats. Row 0: after the prompt; row r: after feeding token r.
  std::vector<std::vector<float>> logits;
};

/// Called for each generated token of sequence `seq`, in order; returning
/// false ends that sequence after this token.
using TokenCallback = std::function<bool(int64_t seq, int32_t token)>;

/// One sequence in a cache row, as generate() and the Scheduler drive it
/// through Model::step: its tokens, how many of them the row's cache holds,
/// and its sampling state.
struct Sequence {
  Sequence(std::vector<int32_t> prompt, const SamplingOptions &sampling,
           uint64_t stream);

  std::vector<int32_t> prompt;
  /// Generated so far (an emitted eos included).
  std::vector<int32_t> tokens;
  SamplingOptions sampling;
  /// Stream (seed, stream): the sequence index in a generate call, 0 for a
  /// Scheduler request, so a request draws what it draws alone.
  Rng rng;
  /// Tokens in the cache, which is also the position of the next one.
  int64_t fed = 0;
  /// Generates no more tokens (max_new_tokens, eos, or stopped).
  bool finished = false;

  int64_t length() const {
    return static_cast<int64_t>(prompt.size() + tokens.size());
  }
  int32_t tokenAt(int64_t position) const;
  bool promptFed() const {
    return fed >= static_cast<int64_t>(prompt.size());
  }
  /// Whether the next call must feed this sequence: its prompt is not all
  /// in the cache yet, or its last sampled token is not and it goes on (or
  /// `feedLastToken`: to get the logits after the last token).
  bool needsFeed(bool feedLastToken) const {
    return fed < length() && (!promptFed() || !finished || feedLastToken);
  }
};

enum class Entry { Prefill, Decode };

/// What one entry-point call gives a cache row.
struct RowInput {
  Sequence *seq = nullptr; // nullptr: an unused row
  bool feed = false;       // feed seq's next tokens (else: filler)
};

/// What speculative decoding did (generateSpeculative).
struct SpeculativeStats {
  int64_t verifyCalls = 0;  // main-model calls after the prompt
  int64_t draftCalls = 0;   // MTP calls, the prompt's included
  int64_t drafted = 0;      // draft tokens proposed
  int64_t accepted = 0;     // draft tokens the main model accepted
  int64_t generated = 0;    // tokens emitted after the first
  double promptSeconds = 0, decodeSeconds = 0;
  double acceptanceRate() const {
    return drafted ? static_cast<double>(accepted) / drafted : 0.0;
  }
  /// Tokens emitted per main-model call of the decode phase.
  double tokensPerVerifyCall() const {
    return verifyCalls ? static_cast<double>(generated) / verifyCalls : 0.0;
  }
};

/// The MTP module's logits after each @draft call that used the main
/// model's own hidden states (the prompt chunks' and each round's catch-up
/// call): they predict the token two after `positions[i]`. For tests
/// against an independent reference.
struct DraftTrace {
  std::vector<int64_t> positions;
  std::vector<float> logits; // positions.size() rows of vocab floats
};

/// The most positions one @verify call takes: the pending token and up to
/// kMaxVerifyLen - 1 drafts (the prompt goes through in chunks of it).
constexpr int64_t kMaxVerifyLen = 16;

struct RunStats {
  int64_t prefillTokens = 0, decodeTokens = 0;
  int64_t prefillCalls = 0, decodeCalls = 0;
  double prefillSeconds = 0, decodeSeconds = 0;
};

/// The limits a generate request must respect; "" or one error line.
std::string validateRequest(int64_t vocabSize, int64_t maxBatch,
                            int64_t maxSeqLen,
                            const std::vector<std::vector<int32_t>> &prompts,
                            const SamplingOptions &sampling);

/// "" if `checkpointConfig` describes the same model as `artifactConfig`
/// (token ids and MTP depth aside); else one line naming the first field that
/// differs. `checkpointSource` names the checkpoint's config.json.
std::string compareConfigs(const ModelConfig &artifactConfig,
                           const ModelConfig &checkpointConfig,
                           const std::string &checkpointSource);

class Model {
public:
  /// Opens an artifact with the weights of a checkpoint; nullptr and `error`
  /// set on failure.
  static std::unique_ptr<Model> open(const std::string &artifactDir,
                                     const std::string &checkpointDir,
                                     const OpenOptions &options,
                                     std::string &error);
  ~Model();
  Model(const Model &) = delete;
  Model &operator=(const Model &) = delete;

  const Manifest &manifest() const { return manifest_; }
  int numThreads() const { return pool_->numThreads(); }
  ThreadPool &pool() { return *pool_; }

  /// Runs one generation; "" or an error line. With `recordLogits`, fills
  /// `out.logits` and feeds every generated token (so its row exists).
  /// `onToken`, if set, sees every generated token as it is sampled and
  /// may stop its sequence.
  std::string generate(const std::vector<std::vector<int32_t>> &prompts,
                       const SamplingOptions &sampling, bool recordLogits,
                       GenerateOutput &out,
                       const TokenCallback &onToken = nullptr);

  /// Whether the artifact can decode speculatively (dsv3-compile --mtp)
  /// on this device; "" or why not.
  std::string speculativeSupport() const;

  /// Generates for one prompt with MTP speculative decoding: each round the
  /// MTP module drafts `draftTokens` tokens, one @verify call checks them
  /// all, and the longest agreeing prefix is kept (greedy), or each draft
  /// is accepted with probability min(1, p/q) and a rejection resampled
  /// from max(0, p - q) (temperature > 0), so the tokens follow the main
  /// model's distribution exactly. Rejected positions are rolled back by
  /// rewinding the caches' fill (the next call overwrites them). Uses cache
  /// row 0. "" or an error line; `onToken` as for generate().
  std::string generateSpeculative(const std::vector<int32_t> &prompt,
                                  const SamplingOptions &sampling,
                                  int64_t draftTokens,
                                  std::vector<int32_t> &tokens,
                                  SpeculativeStats &stats,
                                  const TokenCallback &onToken = nullptr,
                                  DraftTrace *trace = nullptr);

  // -- Step level: what generate() is made of, for other schedules of the
  // -- cache rows (Scheduler). One thread at a time.

  /// Calls `entry` once with `seqLen` positions per row (decode: 1).
  /// `rows[b]` describes cache row b (rows past its size are unused):
  ///  - fed: seq's tokens fed .. fed + seqLen - 1 at those positions, then
  ///    `fed` advances by seqLen (the caller makes sure they exist);
  ///  - a sequence not fed: token 0 at positions fed, fed + 1, ... clamped
  ///    to max_seq_len - 1. All are at or beyond what its cache holds, and
  ///    each row attends only to positions <= the one it computes, which it
  ///    writes first: the filler is overwritten before anything reads it;
  ///  - unused: token 0 at positions 0 .. seqLen - 1.
  /// "" or an error line (a failed GPU call).
  std::string step(Entry entry, int64_t seqLen,
                   const std::vector<RowInput> &rows);

  /// The logits the last call left for cache row `row` ([vocab], host
  /// memory): they predict the token after the row's last fed position.
  const float *rowLogits(int64_t row) const {
    return hostLogits() + row * manifest_.vocabSize();
  }

  /// "" if `logits` (of `entry`, for `who`, e.g. "sequence 1") hold no NaN,
  /// else the error line.
  std::string checkLogits(const float *logits, Entry entry,
                          const std::string &who) const;

  /// Samples seq's next token from `logits` (which predict it; checked
  /// already), appends it, and finishes the sequence after max_new_tokens
  /// or an eos (with stopAtEos). "" or an error line (no finite logit).
  std::string sampleNext(Sequence &seq, const float *logits, Entry entry,
                         const std::string &who, SamplerScratch &scratch);

  /// The latest next-token logits of sequence `seq` of the last generate
  /// call ([vocab]); nullptr if there is none.
  const float *lastLogits(int64_t seq) const;

  const RunStats &runStats() const { return stats_; }
  double loadSeconds() const { return loadSeconds_; }
  uint64_t weightsBytes() const;
  uint64_t weightsMappedBytes() const;
  uint64_t kvCacheBytes() const { return manifest_.kvCacheBytes(); }

  // Introspection for tests.
  const void *weightData(size_t index) const;
  bool weightIsMapped(size_t index) const;
  const void *kvCacheData() const;

private:
  /// Memory behind one argument: owned (anonymous mmap, page-aligned, zero
  /// filled), borrowed from the checkpoint mapping, or GPU memory.
  struct Buffer {
    void *data = nullptr;
    size_t bytes = 0;
    bool owned = false;
    bool onDevice = false;
    Buffer() = default;
    Buffer(Buffer &&other) noexcept { *this = std::move(other); }
    Buffer &operator=(Buffer &&other) noexcept;
    ~Buffer() { release(); }
    void release();
    /// "" or an error line.
    std::string allocate(size_t size, const std::string &what);
    /// Zero-filled GPU memory; "" or an error line.
    std::string allocateOnDevice(size_t size, const std::string &what);
  };

  /// An MLIR ranked memref descriptor {allocated, aligned, offset,
  /// sizes[R], strides[R]}: all 8-byte words on LP64, so one int64 array.
  class MemRef {
  public:
    void set(void *data, const std::vector<int64_t> &shape);
    void *descriptor() { return words.data(); }

  private:
    std::vector<int64_t> words;
  };

  using EntryFn = void (*)(void **);

  Model();
  std::string load(const std::string &artifactDir,
                   const std::string &checkpointDir,
                   const OpenOptions &options);
  std::string loadWeights(const OpenOptions &options);
  /// Runs the artifact's prepare entry (if any) into the prepared weights,
  /// then releases the checkpoint weights only it needed.
  std::string prepareWeights();
  /// The descriptor of the weight or prepared weight `role`.
  void *weightDescriptor(const std::string &role);
  /// Calls `fn` with the tokens/positions already in the input buffers for
  /// `seqLen` positions per row; "" or an error line (GPU failures).
  std::string call(EntryFn fn, int64_t seqLen);
  /// A zero-filled buffer only the compiled code reads or writes: GPU
  /// memory for a GPU model, else host memory.
  std::string allocateForCompiledCode(Buffer &buffer, size_t bytes,
                                      const std::string &what);
  /// On the GPU: replaces a host buffer by a device copy of it.
  std::string moveToDevice(Buffer &buffer, const std::string &what);
  bool onGpu() const { return device_ == Device::Cuda; }
  /// The logits of the last call, in host memory.
  const float *hostLogits() const;
  void setInput(size_t input, int64_t row, int64_t col, int64_t seqLen,
                int64_t value);

  Manifest manifest_;
  std::optional<dsv3::Checkpoint> checkpoint_;
  void *library_ = nullptr;
  EntryFn prefill_ = nullptr, decode_ = nullptr;
  /// The artifact's OpenMP runtime, if it links one: its thread count is set
  /// to the model's before each call (see load()).
  void (*ompSetNumThreads_)(int) = nullptr;
  std::unique_ptr<ThreadPool> pool_;

  std::vector<Buffer> weights_, prepared_;
  std::vector<Buffer> inputs_; // in manifest order
  /// On the GPU: device copies of the token/position inputs (inputs_ keeps
  /// the host side the generation loop writes) and a host copy of the
  /// logits.
  std::vector<Buffer> deviceInputs_;
  std::vector<float> hostLogits_;
  Device device_ = Device::Cpu;
  Buffer logits_;
  std::vector<MemRef> inputDescs_, weightDescs_, preparedDescs_;
  MemRef logitsDesc_;
  std::vector<void *> args_;

  /// Speculative decoding (CPU): the two entries, their argument lists
  /// and buffers. `hidden_` is @verify's second output and @draft's third
  /// input; `draftHidden_` is @draft's second output.
  std::string loadSpeculative();
  /// Calls a packed entry point with the model's threads (pool and
  /// OpenMP).
  void runEntry(EntryFn fn, void **args);
  /// Calls @verify or (isDraft) @draft with the first `seqLen` columns of
  /// the token/position inputs (and of the hidden states).
  void callSpeculative(EntryFn fn, std::vector<void *> &args, int64_t seqLen,
                       bool isDraft);
  EntryFn verify_ = nullptr, draft_ = nullptr;
  Buffer hidden_, logitsAll_, mtpCache_, draftHidden_;
  MemRef hiddenDesc_, logitsAllDesc_, mtpCacheDesc_, draftHiddenDesc_;
  std::vector<void *> verifyArgs_, draftArgs_;

  std::vector<std::vector<float>> lastLogits_;
  RunStats stats_;
  double loadSeconds_ = 0;
};

/// The pool of the model whose entry point is running on this thread, or
/// nullptr outside entry-point calls.
ThreadPool *currentModelPool();

} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_MODEL_H
