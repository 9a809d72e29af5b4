/*===- dsv3rt.h - C API of the dsv3 runtime (libdsv3rt) -----------*- C -*-===//
 *
 * libdsv3rt runs a compiled dsv3 artifact: a directory holding manifest.json
 * and the shared library dsv3-compile produced (docs/runtime.md). It
 *
 *  - checks the artifact (manifest, target CPU features, entry symbols),
 *  - loads the weights from a Hugging Face safetensors checkpoint in the
 *    checkpoint's own dtype (bf16 stays bf16, FP8 stays 1 byte), stacking
 *    per-layer / per-expert tensors into the buffers the manifest describes,
 *  - owns the KV cache ([layers, max_batch, max_seq_len, width], f32),
 *  - prefills, decodes and samples (greedy, or temperature + top-p with a
 *    seed), stopping at eos or after max_new_tokens.
 *
 * It contains no model math: every forward computation happens inside the
 * compiled entry points. It links neither MLIR nor LLVM.
 *
 * Conventions:
 *  - Functions that can fail return 0 on success and -1 on failure (or NULL
 *    for dsv3rt_open) and write one error line, NUL-terminated and truncated
 *    to `err_len` bytes, to `err` (which may be NULL).
 *  - A model is not thread-safe: call it from one thread at a time. Different
 *    models are independent; the library keeps no state shared between them
 *    apart from the fallback thread pool of dsv3rt_parallel_for.
 *  - No C++ exception ever crosses this API.
 *
 *===----------------------------------------------------------------------===*/

#ifndef DSV3_RUNTIME_DSV3RT_H
#define DSV3_RUNTIME_DSV3RT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DSV3RT_API __attribute__((visibility("default")))
#else
#define DSV3RT_API
#endif

/* Bumped when a struct below changes layout or a function changes meaning. */
#define DSV3RT_API_VERSION 3

/* An opened artifact with its weights and KV cache. */
typedef struct dsv3rt_model dsv3rt_model;

/* Load progress: called on the opening thread after each chunk of weights is
 * in place, with the bytes placed so far and the total. */
typedef void (*dsv3rt_progress_fn)(uint64_t done_bytes, uint64_t total_bytes,
                                   void *user);

typedef struct dsv3rt_open_options {
  /* Threads for weight loading and for dsv3rt_parallel_for calls made by the
   * compiled code (the calling thread counts as one). 0: one per CPU this
   * process may run on. */
  int32_t num_threads;
  dsv3rt_progress_fn progress; /* optional */
  void *progress_user;
  /* Where the model math runs: DSV3RT_DEVICE_CPU, or DSV3RT_DEVICE_CUDA for
   * an artifact compiled with --target cuda (GPU 0; weights, KV cache and
   * activations in GPU memory). Must match the artifact. */
  int32_t device;
} dsv3rt_open_options;

#define DSV3RT_DEVICE_CPU 0
#define DSV3RT_DEVICE_CUDA 1

typedef struct dsv3rt_artifact_info {
  int64_t vocab_size;
  int64_t max_batch;   /* sequences per generate call */
  int64_t max_seq_len; /* prompt + generated tokens per sequence */
  int64_t eos_token_id;
  int64_t num_layers;
  int64_t num_weights;     /* entries of the manifest's "weights" */
  uint64_t weights_bytes;  /* bytes the weights occupy in memory */
  uint64_t kv_cache_bytes; /* bytes of the KV cache */
  int32_t device; /* DSV3RT_DEVICE_CPU or DSV3RT_DEVICE_CUDA: its target */
} dsv3rt_artifact_info;

typedef struct dsv3rt_sampling {
  int32_t max_new_tokens; /* generated tokens per sequence, at most */
  float temperature;      /* 0: greedy (argmax, lowest id on ties) */
  float top_p;            /* in (0, 1]; 1: no nucleus truncation */
  uint64_t seed;          /* sequence i samples from its own stream (seed, i) */
  int32_t stop_at_eos;    /* non-zero: a sequence ends after emitting eos */
} dsv3rt_sampling;

typedef struct dsv3rt_stats {
  /* Of the last dsv3rt_generate call. prefill_*: the prefill call (prompt
   * tokens of the real sequences) and the first sampling; decode_*: every
   * later call, one token per sequence fed (remaining prompt tokens of
   * longer prompts included) and the sampling. */
  int64_t prefill_tokens;
  double prefill_seconds;
  int64_t decode_tokens;
  double decode_seconds;
  int64_t prefill_calls;
  int64_t decode_calls;
  /* Of the model. */
  uint64_t weights_bytes;        /* all weight buffers */
  uint64_t weights_mapped_bytes; /* of which used in place from the mmapped
                                    checkpoint (zero copy) */
  uint64_t kv_cache_bytes;
  double load_seconds; /* dsv3rt_open, weights included */
  int32_t num_threads;
} dsv3rt_stats;

/* Version string of the runtime, e.g. "dsv3rt 1". */
DSV3RT_API const char *dsv3rt_version(void);

/* Fills the defaults: num_threads 0, no progress callback, the CPU. */
DSV3RT_API void dsv3rt_open_options_init(dsv3rt_open_options *options);
/* Fills the defaults: 16 new tokens, greedy, top_p 1, seed 0, stop at eos. */
DSV3RT_API void dsv3rt_sampling_init(dsv3rt_sampling *sampling);

/* Reads and checks the artifact's manifest only (no library, no weights):
 * cheap, so a tool can reject a bad request before a long load. */
DSV3RT_API int dsv3rt_read_artifact_info(const char *artifact_dir,
                                         dsv3rt_artifact_info *info, char *err,
                                         size_t err_len);

/* Checks a request against an artifact's limits: 1 <= batch <= max_batch,
 * every prompt non-empty, every token id in [0, vocab), prompt length +
 * max_new_tokens <= max_seq_len, sane sampling parameters. */
DSV3RT_API int dsv3rt_validate_request(const dsv3rt_artifact_info *info,
                                       const int32_t *const *prompts,
                                       const int64_t *prompt_lens,
                                       int64_t batch,
                                       const dsv3rt_sampling *sampling,
                                       char *err, size_t err_len);

/* Opens the artifact in `artifact_dir` with the weights of the checkpoint in
 * `checkpoint_dir` (config.json + *.safetensors). `options` may be NULL. */
DSV3RT_API dsv3rt_model *dsv3rt_open(const char *artifact_dir,
                                     const char *checkpoint_dir,
                                     const dsv3rt_open_options *options,
                                     char *err, size_t err_len);

/* Frees everything the model holds. NULL is accepted. */
DSV3RT_API void dsv3rt_close(dsv3rt_model *model);

DSV3RT_API void dsv3rt_model_info(const dsv3rt_model *model,
                                  dsv3rt_artifact_info *info);

/* Generates continuations of `batch` prompts (prompt i: `prompt_lens[i]`
 * tokens at `prompts[i]`), each from position 0 of a fresh cache row.
 *  - out_tokens: [batch, max_new_tokens] int32, row-major; sequence i's
 *    tokens are out_tokens[i * max_new_tokens + 0 .. out_counts[i]). May be
 *    NULL when max_new_tokens is 0.
 *  - out_counts: [batch], tokens generated per sequence (an emitted eos
 *    counts and is included).
 *  - out_logits: NULL, or [batch, 1 + max_new_tokens, vocab] float32. Row 0:
 *    logits at the last prompt position; row r: logits after feeding the
 *    r-th generated token. Sequence i fills rows 0 .. out_counts[i] (every
 *    generated token is fed once more to get its row); later rows are 0.
 * Prompts of unequal lengths: the common prefix is prefilled in one call,
 * the rest of each longer prompt is fed one decode call at a time alongside
 * the other sequences' generated tokens. On failure -1 is returned and the
 * outputs' contents are unspecified. */
DSV3RT_API int dsv3rt_generate(dsv3rt_model *model,
                               const int32_t *const *prompts,
                               const int64_t *prompt_lens, int64_t batch,
                               const dsv3rt_sampling *sampling,
                               int32_t *out_tokens, int64_t *out_counts,
                               float *out_logits, char *err, size_t err_len);

/* Speculative decoding with the checkpoint's MTP module (an artifact built
 * with dsv3-compile --mtp; CPU): one prompt, `draft_tokens` drafts per round
 * (1..15) checked by one main-model call. Greedy output equals
 * dsv3rt_generate's; with temperature > 0 the tokens follow the same
 * distribution (rejection sampling). Writes up to max_new_tokens tokens to
 * out_tokens and their number to *out_count; the token callback applies.
 * With out_draft_logits (else NULL): the MTP logits of each draft call made
 * on the main model's hidden states, up to draft_capacity rows of vocab
 * floats, the position each row's last input sits at (it predicts the
 * token two after it) in out_draft_positions, the row count in
 * *out_draft_rows (ceil(prompt_len / 16) + max_new_tokens rows suffice).
 * 0, or -1 with `err` set. */
typedef struct dsv3rt_speculative_stats {
  int64_t verify_calls; /* main-model calls after the prompt */
  int64_t draft_calls;  /* MTP calls, the prompt's included */
  int64_t drafted;      /* draft tokens proposed */
  int64_t accepted;     /* draft tokens accepted */
  int64_t generated;    /* tokens after the first */
  double prompt_seconds;
  double decode_seconds;
} dsv3rt_speculative_stats;
DSV3RT_API int dsv3rt_generate_speculative(
    dsv3rt_model *model, const int32_t *prompt, int64_t prompt_len,
    const dsv3rt_sampling *sampling, int64_t draft_tokens, int32_t *out_tokens,
    int64_t *out_count, dsv3rt_speculative_stats *stats,
    float *out_draft_logits, int64_t *out_draft_positions,
    int64_t draft_capacity, int64_t *out_draft_rows, char *err,
    size_t err_len);

/* Streaming: `fn(seq, token, user)` is called by dsv3rt_generate on the
 * calling thread for every generated token of sequence `seq`, in order, as
 * soon as it is sampled (before the next entry-point call). A non-zero
 * return ends that sequence after this token (its count includes it); the
 * others go on. fn must not call back into the same model. NULL removes the
 * callback. Stays set for later dsv3rt_generate calls of this model. */
typedef int (*dsv3rt_token_fn)(int64_t seq, int32_t token, void *user);
DSV3RT_API void dsv3rt_set_token_callback(dsv3rt_model *model,
                                          dsv3rt_token_fn fn, void *user);

/* Copies the most recent next-token logits of sequence `seq` of the last
 * generate call (the row its last token was sampled from, or the row after
 * feeding it when logits were requested) into `out` ([vocab] floats).
 * Returns the number of floats written, or -1. */
DSV3RT_API int64_t dsv3rt_last_logits(const dsv3rt_model *model, int64_t seq,
                                      float *out, int64_t capacity);

DSV3RT_API void dsv3rt_get_stats(const dsv3rt_model *model,
                                 dsv3rt_stats *stats);

/*===----------------------------------------------------------------------===
 * GPU
 *===----------------------------------------------------------------------===*/

/* Loads and initialises the CUDA driver (GPU 0). Returns 0, or -1 with the
 * reason in err (no libcuda.so.1, no GPU, ...). dsv3rt_open does this for
 * the cuda device; a tool may call it first to fail early. */
DSV3RT_API int dsv3rt_cuda_init(char *err, size_t err_len);

/* The GPU's name and its peak memory bandwidth in bytes/s (from the
 * driver's memory clock and bus width); 0 before a successful init. */
DSV3RT_API int64_t dsv3rt_cuda_device_name(char *out, size_t out_len);
DSV3RT_API double dsv3rt_cuda_peak_bandwidth(void);

/* Per-kernel timing of GPU artifacts: while enabled, every launch is timed
 * with events (the stream is synchronised after each launch, so throughput
 * drops). Kernels are named after the dsv3 op they compute (mla_3,
 * moe_gate_up_0, ...). */
DSV3RT_API void dsv3rt_set_kernel_timing(int enabled);
DSV3RT_API void dsv3rt_reset_kernel_times(void);
/* The accumulated times as JSON, {"<kernel>": {"launches": N, "seconds":
 * S}, ...}, NUL-terminated into out; returns the length of the whole text
 * (call again with a larger buffer if it is >= out_len). */
DSV3RT_API int64_t dsv3rt_kernel_times_json(char *out, size_t out_len);

/*===----------------------------------------------------------------------===
 * Hooks for compiled code
 *===----------------------------------------------------------------------===*/

/* Threads available to the compiled code: inside an entry-point call, the
 * calling model's thread count; elsewhere one per CPU this process may use. */
DSV3RT_API int dsv3rt_num_threads(void);

/* Calls fn(begin, end, ctx) on disjoint ranges covering [0, n), in parallel
 * on the calling model's persistent thread pool (the calling thread takes
 * part), and returns when all have finished. Inside an entry-point call the
 * model's pool is used, elsewhere a process-wide one. A call made from inside
 * fn runs serially on the caller. fn must not throw or longjmp. */
DSV3RT_API void dsv3rt_parallel_for(int64_t n,
                                    void (*fn)(int64_t begin, int64_t end,
                                               void *ctx),
                                    void *ctx);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* DSV3_RUNTIME_DSV3RT_H */
