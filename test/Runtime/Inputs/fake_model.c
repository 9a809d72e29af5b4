/*===- fake_model.c - TEST DOUBLE of a compiled artifact's entry points ---===//
 *
 * NOT model math, and not shipped: a stand-in for the library dsv3-compile
 * produces, implementing only its ABI (packed, destination-passing entry
 * points taking an array of pointers to MLIR memref descriptors; see
 * docs/runtime.md), so that the runtime can be tested before and
 * independently of the compiler.
 *
 * Arguments: args[0] tokens [B, S] i32, args[1] positions [B, S] i64,
 * args[2] kv_cache [L, B, T, W] f32, then the weights, then logits [B, V]
 * f32. The runtime ends the array with a NULL pointer; this double uses it to
 * find the logits (a real artifact knows its argument count).
 *
 * What it computes (checkable from outside):
 *  - for every row b and step s: cache[l][b][positions[b][s]] =
 *    {token, position + 1, l, dsv3rt_num_threads(), 0...} for every layer l;
 *  - target[b] = (sum of the tokens cached in row b at positions
 *    0..p, p = the row's last position of this call) mod V -- so the output
 *    depends on the cache persisting across calls and on correct per-row
 *    positions;
 *  - logits[b][v] = 4 - d for d = (v - target) mod V < 4, else -20: greedy
 *    picks target; at temperature 1 the top four tokens have probabilities
 *    ~0.644, 0.237, 0.087, 0.032.
 * Any inconsistency it can see (a cache entry never written, a bad
 * descriptor, a position out of range) makes the row's logits NaN, which the
 * runtime reports as an error.
 *
 * It computes its rows through dsv3rt_parallel_for, resolved from the host
 * (dsv3-run or libdsv3rt.so) when the runtime dlopens it.
 *===----------------------------------------------------------------------===*/

#include <math.h>
#include <stdint.h>
#include <stddef.h>

extern void dsv3rt_parallel_for(int64_t n,
                                void (*fn)(int64_t, int64_t, void *),
                                void *ctx);
extern int dsv3rt_num_threads(void);

typedef struct {
  void *allocated;
  void *aligned;
  int64_t offset;
  int64_t sizes_and_strides[]; /* sizes[R], strides[R] */
} memref;

static int64_t size_of(const memref *m, int dim) {
  return m->sizes_and_strides[dim];
}

/* A descriptor the runtime built correctly: offset 0, row-major strides. */
static int contiguous(const memref *m, int rank) {
  int64_t stride = 1;
  if (!m || !m->aligned || m->offset != 0)
    return 0;
  for (int d = rank - 1; d >= 0; --d) {
    if (m->sizes_and_strides[rank + d] != stride)
      return 0;
    stride *= m->sizes_and_strides[d];
  }
  return 1;
}

typedef struct {
  const memref *tokens, *positions;
  const memref *cache, *logits;
  int weights_ok;
  int threads;
} call;

static void rows(int64_t begin, int64_t end, void *ctx) {
  const call *c = (const call *)ctx;
  const int64_t S = size_of(c->tokens, 1);
  const int64_t L = size_of(c->cache, 0), B = size_of(c->cache, 1);
  const int64_t T = size_of(c->cache, 2), W = size_of(c->cache, 3);
  const int64_t V = size_of(c->logits, 1);
  const int32_t *tokens = (const int32_t *)c->tokens->aligned;
  const int64_t *positions = (const int64_t *)c->positions->aligned;
  float *cache = (float *)c->cache->aligned;
  float *logits = (float *)c->logits->aligned;

  for (int64_t b = begin; b < end; ++b) {
    int ok = c->weights_ok;
    int64_t last = 0;
    for (int64_t s = 0; s < S; ++s) {
      int64_t p = positions[b * S + s];
      if (p < 0 || p >= T) {
        ok = 0;
        continue;
      }
      last = p;
      for (int64_t l = 0; l < L; ++l) {
        float *entry = cache + ((l * B + b) * T + p) * W;
        entry[0] = (float)tokens[b * S + s];
        if (W > 1)
          entry[1] = (float)(p + 1);
        if (W > 2)
          entry[2] = (float)l;
        if (W > 3)
          entry[3] = (float)c->threads;
      }
    }
    int64_t sum = 0;
    for (int64_t q = 0; q <= last && ok; ++q) {
      const float *entry = cache + (b * T + q) * W; /* layer 0 */
      if (W > 1 && entry[1] != (float)(q + 1))
        ok = 0; /* position q of this row was never written */
      sum += (int64_t)entry[0];
    }
    int64_t target = ((sum % V) + V) % V;
    for (int64_t v = 0; v < V; ++v) {
      int64_t d = ((v - target) % V + V) % V;
      logits[b * V + v] = !ok ? NAN : d < 4 ? (float)(4 - d) : -20.0f;
    }
  }
}

static void entry(void **args) {
  int n = 0;
  while (args[n])
    ++n;
  call c;
  c.tokens = (const memref *)args[0];
  c.positions = (const memref *)args[1];
  c.cache = (const memref *)args[2];
  c.logits = (const memref *)args[n - 1];
  c.threads = dsv3rt_num_threads();
  c.weights_ok = contiguous(c.tokens, 2) && contiguous(c.positions, 2) &&
                 contiguous(c.cache, 4) && contiguous(c.logits, 2) &&
                 c.threads >= 1;
  /* Weights: only their descriptors are checked (rank unknown here, so just
   * the pointers and the offset). */
  for (int i = 3; i < n - 1; ++i) {
    const memref *w = (const memref *)args[i];
    if (!w || !w->aligned || w->allocated != w->aligned || w->offset != 0)
      c.weights_ok = 0;
  }
  dsv3rt_parallel_for(size_of(c.tokens, 0), rows, &c);
}

void dsv3_prefill(void **args) { entry(args); }
void dsv3_decode(void **args) { entry(args); }
