/*===- c_host.c - A plain C99 host of libdsv3rt (test) --------------------===//
 *
 * Checks that dsv3rt.h is valid C and that a C program linked against
 * libdsv3rt.so can run an artifact, the runtime's hooks (dsv3rt_parallel_for)
 * reaching the artifact through the host's DT_NEEDED libdsv3rt.so.
 *
 *   c_host ARTIFACT CHECKPOINT MAX_NEW_TOKEN TOKEN...
 *
 * Prints the generated tokens, then the last logits' argmax and stats, then
 * generates again streaming through dsv3rt_set_token_callback, which stops
 * the sequence after its second token.
 *===----------------------------------------------------------------------===*/

#include "dsv3/Runtime/dsv3rt.h"

#include <stdio.h>
#include <stdlib.h>

#if DSV3RT_API_VERSION < 3
#error "the streaming callback needs API version 3"
#endif

/* Prints each token as it comes; non-zero (stop) after the second. */
static int stream(int64_t seq, int32_t token, void *user) {
  int *seen = (int *)user;
  printf("streamed %lld: %d\n", (long long)seq, token);
  return ++*seen == 2;
}

int main(int argc, char **argv) {
  char err[1024];
  if (argc < 5) {
    fprintf(stderr, "usage: c_host ARTIFACT CHECKPOINT MAX_NEW TOKEN...\n");
    return 2;
  }
  dsv3rt_open_options options;
  dsv3rt_open_options_init(&options);
  options.num_threads = 2;
  dsv3rt_model *model = dsv3rt_open(argv[1], argv[2], &options, err, sizeof err);
  if (!model) {
    fprintf(stderr, "c_host: error: %s\n", err);
    return 1;
  }
  dsv3rt_artifact_info info;
  dsv3rt_model_info(model, &info);

  dsv3rt_sampling sampling;
  dsv3rt_sampling_init(&sampling);
  sampling.max_new_tokens = atoi(argv[3]);
  int64_t len = argc - 4;
  int32_t *prompt = malloc(sizeof(int32_t) * (size_t)len);
  for (int64_t i = 0; i < len; ++i)
    prompt[i] = atoi(argv[4 + i]);
  const int32_t *prompts[1] = {prompt};
  int32_t *tokens = malloc(sizeof(int32_t) * (size_t)(sampling.max_new_tokens + 1));
  int64_t count = 0;
  int rc = dsv3rt_generate(model, prompts, &len, 1, &sampling, tokens, &count,
                           NULL, err, sizeof err);
  if (rc != 0) {
    fprintf(stderr, "c_host: error: %s\n", err);
    dsv3rt_close(model);
    return 1;
  }
  printf("tokens:");
  for (int64_t i = 0; i < count; ++i)
    printf(" %d", tokens[i]);
  printf("\n");

  float *logits = malloc(sizeof(float) * (size_t)info.vocab_size);
  if (dsv3rt_last_logits(model, 0, logits, info.vocab_size) != info.vocab_size)
    return 1;
  int64_t best = 0;
  for (int64_t v = 1; v < info.vocab_size; ++v)
    if (logits[v] > logits[best])
      best = v;
  dsv3rt_stats stats;
  dsv3rt_get_stats(model, &stats);
  printf("last argmax: %lld, threads: %d, prefill tokens: %lld\n",
         (long long)best, stats.num_threads, (long long)stats.prefill_tokens);

  int seen = 0;
  dsv3rt_set_token_callback(model, stream, &seen);
  rc = dsv3rt_generate(model, prompts, &len, 1, &sampling, tokens, &count, NULL,
                       err, sizeof err);
  dsv3rt_set_token_callback(model, NULL, NULL);
  if (rc != 0) {
    fprintf(stderr, "c_host: error: %s\n", err);
    dsv3rt_close(model);
    return 1;
  }
  printf("stopped after %lld of %d tokens\n", (long long)count,
         sampling.max_new_tokens);
  dsv3rt_close(model);
  free(prompt);
  free(tokens);
  free(logits);
  return 0;
}
