/* membw: streaming memory READ bandwidth, for the decode bound of bench/run_benchmark.py.
 *
 * A measurement tool, not model code.  One buffer much larger than the caches (default 1 GiB) is split into
 * N contiguous parts, one per thread; each thread first writes its own part (so its pages are backed, and on a
 * NUMA machine placed near it, as the runtime's weight copies are), then every pass reads the whole buffer with
 * the widest vector loads available (AVX-512, else AVX2, else 64-bit words), summed into several independent
 * accumulators so the loads are neither optimised away nor serialised on one add chain.  A pass is timed from
 * the first thread's start to the last thread's end (all threads are released together by a barrier).
 *
 * Output (stdout, one JSON object):
 *   {"threads": N, "bytes": B, "passes": P, "isa": "avx512", "best_gbps": x, "median_gbps": y,
 *    "pass_gbps": [...], "checksum": c}
 * GB/s are 1e9 bytes per second.
 *
 * Build: clang-22 -O2 -march=native -pthread bench/membw.c -o membw   (or cc)
 * Usage: membw [--threads N] [--mib M] [--passes P]
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

#define MAX_PASSES 64

typedef struct {
  int index;
  const uint8_t *begin;
  size_t bytes;
  uint64_t checksum;
  double start[MAX_PASSES];
  double end[MAX_PASSES];
} worker_t;

static pthread_barrier_t g_barrier;
static int g_passes;

static double now_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Reads [p, p + bytes) once; bytes is a multiple of 512. */
static uint64_t read_range(const uint8_t *p, size_t bytes) {
#if defined(__AVX512F__)
  __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < bytes; i += 512) {
    const __m512i *v = (const __m512i *)(p + i);
    a0 = _mm512_add_epi64(a0, _mm512_load_si512(v + 0));
    a1 = _mm512_add_epi64(a1, _mm512_load_si512(v + 1));
    a2 = _mm512_add_epi64(a2, _mm512_load_si512(v + 2));
    a3 = _mm512_add_epi64(a3, _mm512_load_si512(v + 3));
    a4 = _mm512_add_epi64(a4, _mm512_load_si512(v + 4));
    a5 = _mm512_add_epi64(a5, _mm512_load_si512(v + 5));
    a6 = _mm512_add_epi64(a6, _mm512_load_si512(v + 6));
    a7 = _mm512_add_epi64(a7, _mm512_load_si512(v + 7));
  }
  a0 = _mm512_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)),
                        _mm512_add_epi64(_mm512_add_epi64(a4, a5), _mm512_add_epi64(a6, a7)));
  return (uint64_t)_mm512_reduce_add_epi64(a0);
#elif defined(__AVX2__)
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (size_t i = 0; i < bytes; i += 256) {
    const __m256i *v = (const __m256i *)(p + i);
    a0 = _mm256_add_epi64(a0, _mm256_load_si256(v + 0));
    a1 = _mm256_add_epi64(a1, _mm256_load_si256(v + 1));
    a2 = _mm256_add_epi64(a2, _mm256_load_si256(v + 2));
    a3 = _mm256_add_epi64(a3, _mm256_load_si256(v + 3));
    a4 = _mm256_add_epi64(a4, _mm256_load_si256(v + 4));
    a5 = _mm256_add_epi64(a5, _mm256_load_si256(v + 5));
    a6 = _mm256_add_epi64(a6, _mm256_load_si256(v + 6));
    a7 = _mm256_add_epi64(a7, _mm256_load_si256(v + 7));
  }
  a0 = _mm256_add_epi64(_mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)),
                        _mm256_add_epi64(_mm256_add_epi64(a4, a5), _mm256_add_epi64(a6, a7)));
  uint64_t lanes[4];
  _mm256_storeu_si256((__m256i *)lanes, a0);
  return lanes[0] + lanes[1] + lanes[2] + lanes[3];
#else
  const uint64_t *w = (const uint64_t *)p;
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, a5 = 0, a6 = 0, a7 = 0;
  for (size_t i = 0; i < bytes / 8; i += 8) {
    a0 += w[i + 0]; a1 += w[i + 1]; a2 += w[i + 2]; a3 += w[i + 3];
    a4 += w[i + 4]; a5 += w[i + 5]; a6 += w[i + 6]; a7 += w[i + 7];
  }
  return a0 + a1 + a2 + a3 + a4 + a5 + a6 + a7;
#endif
}

static const char *isa_name(void) {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#else
  return "scalar";
#endif
}

static void *worker_main(void *arg) {
  worker_t *w = (worker_t *)arg;
  /* First touch: this thread's part, a pattern that differs per word (not all zero pages). */
  uint64_t *words = (uint64_t *)w->begin;
  for (size_t i = 0; i < w->bytes / 8; ++i) words[i] = (uint64_t)i * 0x9E3779B97F4A7C15ull + (uint64_t)w->index;
  uint64_t sum = 0;
  pthread_barrier_wait(&g_barrier);
  sum += read_range(w->begin, w->bytes); /* warm-up pass (TLB, prefetchers), not timed */
  for (int pass = 0; pass < g_passes; ++pass) {
    pthread_barrier_wait(&g_barrier);
    w->start[pass] = now_seconds();
    sum += read_range(w->begin, w->bytes);
    w->end[pass] = now_seconds();
  }
  w->checksum = sum;
  return NULL;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static void usage(void) {
  fprintf(stderr, "usage: membw [--threads N (CPUs)] [--mib M (1024)] [--passes P (5)]\n");
  exit(2);
}

int main(int argc, char **argv) {
  long threads = sysconf(_SC_NPROCESSORS_ONLN);
  long mib = 1024;
  long passes = 5;
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) usage();
    char *end = NULL;
    long v = strtol(argv[i + 1], &end, 10);
    if (!end || *end) usage();
    if (!strcmp(argv[i], "--threads")) threads = v;
    else if (!strcmp(argv[i], "--mib")) mib = v;
    else if (!strcmp(argv[i], "--passes")) passes = v;
    else usage();
  }
  if (threads < 1 || threads > 4096 || mib < 1 || passes < 1 || passes > MAX_PASSES) usage();
  g_passes = (int)passes;

  /* Each part is a multiple of 2 MiB, so parts are aligned for huge pages and for 64-byte vector loads. */
  const size_t align = (size_t)2 << 20;
  size_t total = (size_t)mib << 20;
  size_t part = (total / (size_t)threads) / align * align;
  if (part == 0) part = align;
  total = part * (size_t)threads;

  uint8_t *buf = NULL;
  if (posix_memalign((void **)&buf, align, total) != 0) {
    fprintf(stderr, "membw: cannot allocate %zu bytes\n", total);
    return 1;
  }
#ifdef MADV_HUGEPAGE
  madvise(buf, total, MADV_HUGEPAGE); /* as the runtime does for its weight buffers; advisory */
#endif

  worker_t *workers = calloc((size_t)threads, sizeof(worker_t));
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  if (!workers || !ids) return 1;
  pthread_barrier_init(&g_barrier, NULL, (unsigned)threads);
  for (long t = 0; t < threads; ++t) {
    workers[t].index = (int)t;
    workers[t].begin = buf + (size_t)t * part;
    workers[t].bytes = part;
  }
  for (long t = 1; t < threads; ++t) {
    if (pthread_create(&ids[t], NULL, worker_main, &workers[t]) != 0) {
      fprintf(stderr, "membw: pthread_create failed\n");
      return 1;
    }
  }
  worker_main(&workers[0]);
  for (long t = 1; t < threads; ++t) pthread_join(ids[t], NULL);

  double gbps[MAX_PASSES], sorted[MAX_PASSES];
  uint64_t checksum = 0;
  for (long t = 0; t < threads; ++t) checksum += workers[t].checksum;
  for (int p = 0; p < g_passes; ++p) {
    double s = workers[0].start[p], e = workers[0].end[p];
    for (long t = 1; t < threads; ++t) {
      if (workers[t].start[p] < s) s = workers[t].start[p];
      if (workers[t].end[p] > e) e = workers[t].end[p];
    }
    gbps[p] = sorted[p] = (double)total / (e - s) / 1e9;
  }
  qsort(sorted, (size_t)g_passes, sizeof(double), cmp_double);
  double median = (g_passes % 2) ? sorted[g_passes / 2]
                                 : 0.5 * (sorted[g_passes / 2 - 1] + sorted[g_passes / 2]);

  printf("{\"threads\": %ld, \"bytes\": %zu, \"passes\": %d, \"isa\": \"%s\", \"best_gbps\": %.3f, "
         "\"median_gbps\": %.3f, \"pass_gbps\": [",
         threads, total, g_passes, isa_name(), sorted[g_passes - 1], median);
  for (int p = 0; p < g_passes; ++p) printf("%s%.3f", p ? ", " : "", gbps[p]);
  printf("], \"checksum\": %llu}\n", (unsigned long long)checksum);

  pthread_barrier_destroy(&g_barrier);
  free(workers);
  free(ids);
  free(buf);
  return 0;
}
