//===- CApi.cpp - The C API of libdsv3rt (dsv3rt.h) ----------------------===//
//
// Thin wrappers over dsv3::runtime::Model. Every entry catches everything:
// an exception crossing into C (or into Python through ctypes) would
// terminate the process.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/dsv3rt.h"

#include "dsv3/Runtime/CudaDriver.h"
#include "dsv3/Runtime/Model.h"
#include "dsv3/Runtime/ThreadPool.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>

using namespace dsv3::runtime;

struct dsv3rt_model {
  std::unique_ptr<Model> model;
  dsv3rt_token_fn onToken = nullptr;
  void *onTokenUser = nullptr;
};

namespace {

/// Copies `text` into out (NUL-terminated, truncated to outLen - 1
/// characters); returns the length of the whole text.
int64_t copyOut(const std::string &text, char *out, size_t outLen) {
  if (out && outLen) {
    size_t n = std::min(text.size(), outLen - 1);
    std::memcpy(out, text.data(), n);
    out[n] = '\0';
  }
  return static_cast<int64_t>(text.size());
}

void setError(char *err, size_t errLen, const std::string &message) {
  copyOut(message, err, errLen);
}

void clearError(char *err, size_t errLen) {
  if (err && errLen)
    err[0] = '\0';
}

SamplingOptions toSampling(const dsv3rt_sampling *s) {
  SamplingOptions options;
  if (s) {
    options.maxNewTokens = s->max_new_tokens;
    options.temperature = s->temperature;
    options.topP = s->top_p;
    options.seed = s->seed;
    options.stopAtEos = s->stop_at_eos != 0;
  }
  return options;
}

/// Copies C prompts; "" or an error line for null pointers / bad lengths.
std::string toPrompts(const int32_t *const *prompts, const int64_t *lens,
                      int64_t batch, std::vector<std::vector<int32_t>> &out) {
  if (batch < 0)
    return "batch must be >= 0, got " + std::to_string(batch);
  if (batch > 0 && (!prompts || !lens))
    return "prompts and prompt_lens must not be NULL";
  // More than any artifact's max batch; checked properly later, but refuse
  // before copying an absurd count.
  if (batch > (int64_t(1) << 20))
    return std::to_string(batch) + " sequences is too many";
  out.resize(batch);
  for (int64_t i = 0; i < batch; ++i) {
    if (lens[i] < 0 || (lens[i] > 0 && !prompts[i]))
      return "sequence " + std::to_string(i) + ": bad prompt pointer/length";
    if (lens[i] > (int64_t(1) << 32))
      return "sequence " + std::to_string(i) + ": prompt too long";
    out[i].assign(prompts[i], prompts[i] + lens[i]);
  }
  return "";
}

void fillInfo(const Manifest &m, dsv3rt_artifact_info *info) {
  info->vocab_size = m.vocabSize();
  info->max_batch = m.maxBatch;
  info->max_seq_len = m.maxSeqLen;
  info->eos_token_id = m.config.eosTokenId;
  info->num_layers = m.config.numHiddenLayers;
  info->num_weights = static_cast<int64_t>(m.weights.size());
  info->weights_bytes = m.weightsBytes();
  info->kv_cache_bytes = m.kvCacheBytes();
  info->device =
      m.target.kind == "cuda" ? DSV3RT_DEVICE_CUDA : DSV3RT_DEVICE_CPU;
}

/// The pool dsv3rt_parallel_for uses outside entry-point calls.
ThreadPool &fallbackPool() {
  static std::once_flag once;
  static ThreadPool *pool = nullptr;
  // Leaked on purpose: joining threads from a static destructor at exit can
  // deadlock with a library being unloaded.
  std::call_once(once, [] { pool = new ThreadPool(availableCpus()); });
  return *pool;
}

/// The pool serving the calling thread: the model whose entry point it runs,
/// or the pool it is a worker of (a loop body asking), else none.
ThreadPool *poolOfThisThread() {
  if (ThreadPool *pool = currentModelPool())
    return pool;
  return ThreadPool::ofWorkerThread();
}

/// The model's token callback (dsv3rt_set_token_callback) as a
/// TokenCallback; empty when none is set.
TokenCallback tokenCallbackOf(const dsv3rt_model *model) {
  if (!model->onToken)
    return nullptr;
  return [fn = model->onToken, user = model->onTokenUser](int64_t seq,
                                                          int32_t token) {
    return fn(seq, token, user) == 0;
  };
}

/// out_tokens may be NULL only when nothing is generated.
bool checkOutTokens(const dsv3rt_sampling *sampling, const int32_t *outTokens,
                    char *err, size_t errLen) {
  if (sampling->max_new_tokens > 0 && !outTokens) {
    setError(err, errLen, "out_tokens must not be NULL when "
                          "max_new_tokens > 0");
    return false;
  }
  return true;
}

} // namespace

extern "C" {

const char *dsv3rt_version(void) { return "dsv3rt 3"; }

void dsv3rt_open_options_init(dsv3rt_open_options *options) {
  if (!options)
    return;
  options->num_threads = 0;
  options->progress = nullptr;
  options->progress_user = nullptr;
  options->device = DSV3RT_DEVICE_CPU;
}

void dsv3rt_sampling_init(dsv3rt_sampling *sampling) {
  if (!sampling)
    return;
  SamplingOptions defaults;
  sampling->max_new_tokens = static_cast<int32_t>(defaults.maxNewTokens);
  sampling->temperature = defaults.temperature;
  sampling->top_p = defaults.topP;
  sampling->seed = defaults.seed;
  sampling->stop_at_eos = defaults.stopAtEos ? 1 : 0;
}

int dsv3rt_read_artifact_info(const char *artifact_dir,
                              dsv3rt_artifact_info *info, char *err,
                              size_t err_len) {
  clearError(err, err_len);
  try {
    if (!artifact_dir || !info) {
      setError(err, err_len, "artifact_dir and info must not be NULL");
      return -1;
    }
    ManifestResult manifest = loadManifest(artifact_dir);
    if (!manifest) {
      setError(err, err_len, manifest.error);
      return -1;
    }
    fillInfo(*manifest.manifest, info);
    return 0;
  } catch (...) {
    setError(err, err_len, "internal error while reading the manifest");
    return -1;
  }
}

int dsv3rt_validate_request(const dsv3rt_artifact_info *info,
                            const int32_t *const *prompts,
                            const int64_t *prompt_lens, int64_t batch,
                            const dsv3rt_sampling *sampling, char *err,
                            size_t err_len) {
  clearError(err, err_len);
  try {
    if (!info || !sampling) {
      setError(err, err_len, "info and sampling must not be NULL");
      return -1;
    }
    std::vector<std::vector<int32_t>> copied;
    std::string error = toPrompts(prompts, prompt_lens, batch, copied);
    if (error.empty())
      error = validateRequest(info->vocab_size, info->max_batch,
                              info->max_seq_len, copied, toSampling(sampling));
    if (!error.empty()) {
      setError(err, err_len, error);
      return -1;
    }
    return 0;
  } catch (...) {
    setError(err, err_len, "internal error while checking the request");
    return -1;
  }
}

dsv3rt_model *dsv3rt_open(const char *artifact_dir, const char *checkpoint_dir,
                          const dsv3rt_open_options *options, char *err,
                          size_t err_len) {
  clearError(err, err_len);
  try {
    if (!artifact_dir || !checkpoint_dir) {
      setError(err, err_len, "artifact_dir and checkpoint_dir must not be NULL");
      return nullptr;
    }
    OpenOptions open;
    if (options) {
      open.numThreads = options->num_threads;
      if (options->device != DSV3RT_DEVICE_CPU &&
          options->device != DSV3RT_DEVICE_CUDA) {
        setError(err, err_len,
                 "unknown device " + std::to_string(options->device) +
                     " (expected DSV3RT_DEVICE_CPU or DSV3RT_DEVICE_CUDA)");
        return nullptr;
      }
      open.device = options->device == DSV3RT_DEVICE_CUDA ? Device::Cuda
                                                          : Device::Cpu;
      if (options->progress) {
        dsv3rt_progress_fn fn = options->progress;
        void *user = options->progress_user;
        open.progress = [fn, user](uint64_t done, uint64_t total) {
          fn(done, total, user);
        };
      }
    }
    std::string error;
    std::unique_ptr<Model> model =
        Model::open(artifact_dir, checkpoint_dir, open, error);
    if (!model) {
      setError(err, err_len, error);
      return nullptr;
    }
    return new dsv3rt_model{std::move(model)};
  } catch (const std::exception &e) {
    setError(err, err_len, std::string("internal error: ") + e.what());
  } catch (...) {
    setError(err, err_len, "internal error while opening the artifact");
  }
  return nullptr;
}

void dsv3rt_close(dsv3rt_model *model) { delete model; }

void dsv3rt_model_info(const dsv3rt_model *model, dsv3rt_artifact_info *info) {
  if (model && info)
    fillInfo(model->model->manifest(), info);
}

int dsv3rt_generate_speculative(dsv3rt_model *model, const int32_t *prompt,
                                int64_t prompt_len,
                                const dsv3rt_sampling *sampling,
                                int64_t draft_tokens, int32_t *out_tokens,
                                int64_t *out_count,
                                dsv3rt_speculative_stats *stats,
                                float *out_draft_logits,
                                int64_t *out_draft_positions,
                                int64_t draft_capacity,
                                int64_t *out_draft_rows, char *err,
                                size_t err_len) {
  clearError(err, err_len);
  try {
    if (!model || !sampling || !out_count || !stats) {
      setError(err, err_len,
               "model, sampling, out_count and stats must not be NULL");
      return -1;
    }
    if (!checkOutTokens(sampling, out_tokens, err, err_len))
      return -1;
    std::vector<std::vector<int32_t>> copied;
    const int32_t *const prompts[] = {prompt};
    const int64_t lens[] = {prompt_len};
    std::string error = toPrompts(prompts, lens, 1, copied);
    SamplingOptions options = toSampling(sampling);
    TokenCallback onToken = tokenCallbackOf(model);
    if (out_draft_logits && (!out_draft_positions || !out_draft_rows)) {
      setError(err, err_len, "out_draft_logits needs out_draft_positions "
                             "and out_draft_rows");
      return -1;
    }
    std::vector<int32_t> tokens;
    SpeculativeStats s;
    DraftTrace trace;
    if (error.empty())
      error = model->model->generateSpeculative(
          copied[0], options, draft_tokens, tokens, s, onToken,
          out_draft_logits ? &trace : nullptr);
    if (!error.empty()) {
      setError(err, err_len, error);
      return -1;
    }
    *out_count = static_cast<int64_t>(tokens.size());
    std::copy(tokens.begin(), tokens.end(), out_tokens);
    if (out_draft_logits) {
      const int64_t vocab = model->model->manifest().vocabSize();
      const int64_t rows = std::min<int64_t>(
          draft_capacity, static_cast<int64_t>(trace.positions.size()));
      std::copy(trace.positions.begin(), trace.positions.begin() + rows,
                out_draft_positions);
      std::copy(trace.logits.begin(), trace.logits.begin() + rows * vocab,
                out_draft_logits);
      *out_draft_rows = rows;
    }
    *stats = dsv3rt_speculative_stats{s.verifyCalls,   s.draftCalls,
                                      s.drafted,       s.accepted,
                                      s.generated,     s.promptSeconds,
                                      s.decodeSeconds};
    return 0;
  } catch (const std::exception &e) {
    setError(err, err_len, std::string("internal error: ") + e.what());
  } catch (...) {
    setError(err, err_len, "internal error during generation");
  }
  return -1;
}

int dsv3rt_generate(dsv3rt_model *model, const int32_t *const *prompts,
                    const int64_t *prompt_lens, int64_t batch,
                    const dsv3rt_sampling *sampling, int32_t *out_tokens,
                    int64_t *out_counts, float *out_logits, char *err,
                    size_t err_len) {
  clearError(err, err_len);
  try {
    if (!model || !sampling || !out_counts) {
      setError(err, err_len, "model, sampling and out_counts must not be NULL");
      return -1;
    }
    if (!checkOutTokens(sampling, out_tokens, err, err_len))
      return -1;
    std::vector<std::vector<int32_t>> copied;
    std::string error = toPrompts(prompts, prompt_lens, batch, copied);
    SamplingOptions options = toSampling(sampling);
    GenerateOutput out;
    TokenCallback onToken = tokenCallbackOf(model);
    if (error.empty())
      error = model->model->generate(copied, options, out_logits != nullptr,
                                     out, onToken);
    if (!error.empty()) {
      setError(err, err_len, error);
      return -1;
    }
    const int64_t maxNew = options.maxNewTokens;
    const int64_t vocab = model->model->manifest().vocabSize();
    const size_t rowsPerSeq = static_cast<size_t>(1 + maxNew);
    for (int64_t i = 0; i < batch; ++i) {
      const std::vector<int32_t> &tokens = out.tokens[i];
      out_counts[i] = static_cast<int64_t>(tokens.size());
      if (!tokens.empty())
        std::copy(tokens.begin(), tokens.end(), out_tokens + i * maxNew);
      if (out_logits) {
        float *dst = out_logits + i * rowsPerSeq * vocab;
        const std::vector<float> &rows = out.logits[i];
        std::copy(rows.begin(), rows.end(), dst);
        std::fill(dst + rows.size(), dst + rowsPerSeq * vocab, 0.0f);
      }
    }
    return 0;
  } catch (const std::exception &e) {
    setError(err, err_len, std::string("internal error: ") + e.what());
  } catch (...) {
    setError(err, err_len, "internal error during generation");
  }
  return -1;
}

void dsv3rt_set_token_callback(dsv3rt_model *model, dsv3rt_token_fn fn,
                               void *user) {
  if (!model)
    return;
  model->onToken = fn;
  model->onTokenUser = fn ? user : nullptr;
}

int64_t dsv3rt_last_logits(const dsv3rt_model *model, int64_t seq, float *out,
                           int64_t capacity) {
  if (!model || !out)
    return -1;
  const float *logits = model->model->lastLogits(seq);
  int64_t vocab = model->model->manifest().vocabSize();
  if (!logits || capacity < vocab)
    return -1;
  std::copy(logits, logits + vocab, out);
  return vocab;
}

void dsv3rt_get_stats(const dsv3rt_model *model, dsv3rt_stats *stats) {
  if (!model || !stats)
    return;
  const Model &m = *model->model;
  const RunStats &run = m.runStats();
  stats->prefill_tokens = run.prefillTokens;
  stats->prefill_seconds = run.prefillSeconds;
  stats->decode_tokens = run.decodeTokens;
  stats->decode_seconds = run.decodeSeconds;
  stats->prefill_calls = run.prefillCalls;
  stats->decode_calls = run.decodeCalls;
  stats->weights_bytes = m.weightsBytes();
  stats->weights_mapped_bytes = m.weightsMappedBytes();
  stats->kv_cache_bytes = m.kvCacheBytes();
  stats->load_seconds = m.loadSeconds();
  stats->num_threads = m.numThreads();
}

int dsv3rt_cuda_init(char *err, size_t err_len) {
  clearError(err, err_len);
  std::string error = cuda::initialize();
  if (error.empty())
    return 0;
  setError(err, err_len, error);
  return -1;
}

int64_t dsv3rt_cuda_device_name(char *out, size_t out_len) {
  return copyOut(cuda::deviceName(), out, out_len);
}

double dsv3rt_cuda_peak_bandwidth(void) { return cuda::peakMemoryBandwidth(); }

void dsv3rt_set_kernel_timing(int enabled) {
  cuda::setKernelTiming(enabled != 0);
}

void dsv3rt_reset_kernel_times(void) { cuda::resetKernelTimes(); }

int64_t dsv3rt_kernel_times_json(char *out, size_t out_len) {
  nlohmann::json times = nlohmann::json::object();
  for (const auto &[name, t] : cuda::kernelTimes())
    times[name] = {{"launches", t.launches}, {"seconds", t.seconds}};
  return copyOut(times.dump(), out, out_len);
}

int dsv3rt_num_threads(void) {
  if (ThreadPool *pool = poolOfThisThread())
    return pool->numThreads();
  return availableCpus();
}

void dsv3rt_parallel_for(int64_t n,
                         void (*fn)(int64_t begin, int64_t end, void *ctx),
                         void *ctx) {
  if (!fn || n <= 0)
    return;
  try {
    ThreadPool *pool = poolOfThisThread();
    (pool ? *pool : fallbackPool()).parallelFor(n, fn, ctx);
  } catch (...) {
    // Only thread creation for the fallback pool can throw, before any range
    // ran: do the work here.
    fn(0, n, ctx);
  }
}

} // extern "C"
