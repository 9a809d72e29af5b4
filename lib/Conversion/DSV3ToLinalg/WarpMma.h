//===- WarpMma.h - GEMMs as warp MMA tiles (tensor cores) ------*- C++ -*-===//
//
// The tensor-core forms chosen by convert-dsv3-to-linalg{tensor-cores} (the
// GPU pipelines set it): GEMMs written as loops over R x 8 output tiles, each
// one warp's (R = 16) or one warpgroup's (R = 64, mma-rows=64) work, whose K
// loop is
//     vector.contract(extf(bf16 A[R x 16]), extf(bf16 B[N x 16]), C[R x N f32])
// on transfer reads straight from memory (an f32 operand is rounded to bf16
// in the tile: truncf then extf). dsv3-gpu-warp-mma turns that into
// mma.sync.m16n8k16 (R = 16, N = 8) or wgmma.mma_async.m64nNk16 (R = 64,
// N = 8 x the column tiles a warpgroup computes, up to 32; sm_90a), bf16 in,
// f32 accumulate; on the CPU (dsv3-gpu-tiled-on-cpu) it is plain
// vector math, so the tiles, their indices, masks and epilogues are tested
// there. R comes from the Emitter (TensorCoreTiles::rows).
//
// Two users:
//   - the grouped expert GEMMs (dsv3.moe_gate_up, dsv3.moe_down_combine):
//     each expert's rows gathered once into a bf16 matrix [rows + R, K]
//     (the token's activations; for down, times the pair's routing weight),
//     then a loop over (active group, R-row tile, 8-column tile) with the
//     SiLU * up epilogue for gate/up;
//   - the absorbed MLA attention on the latent cache: scores = q_cat .
//     cache^T and o_lat = P . cache_latent, batched over sequences, with
//     the heads (x query positions) as the M dimension, as FlashMLA does, so
//     that decode runs on tensor cores too.
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_WARPMMA_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_WARPMMA_H

#include "WeightStreams.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

/// The columns and depth of one MMA tile (its rows: TensorCoreTiles::rows).
constexpr int64_t kMmaCols = 8, kMmaDepth = 16;
/// The 8-column tiles one warp (warpgroup) computes side by side from the
/// same A tile (its rows staged once for all of them): R x 32 each -- four
/// m16n8 accumulators for a warp, one m64n32 for a warpgroup.
constexpr int64_t kMmaColTilesPerWarp = 4;

/// Whether a GEMM reading `weight` (with FP8 block `scale`, or null) can run
/// on the tiles: bf16, no scale.
bool isTensorCoreWeight(Value weight, Value scale);

/// Whether a grouped expert GEMM with these weights (views [G, N, K] of
/// stored matrices) can use the warp MMA kernels: bf16 weights without block
/// scales, N a multiple of the tile's columns and K of its depth.
bool canUseExpertMma(ArrayRef<const WeightView *> weights, int64_t outDim,
                     int64_t depth);

/// emitExpertGateUp as warp MMA tiles (same result).
Value emitExpertGateUpMma(Emitter &e, Value x, const ExpertRows &rows,
                          const WeightView &gate, const WeightView &up,
                          const WeightView &sharedGate,
                          const WeightView &sharedUp);

/// The per-row products of emitExpertDownCombine as warp MMA tiles:
/// perRow[r, d] = weight(r) * (act[r] . down_g(r)[d]), [P + S * N, D].
Value emitExpertDownMma(Emitter &e, Value act, Value weights,
                        const ExpertRows &rows, const WeightView &down,
                        const WeightView &sharedDown);

/// out[g, m, n] = sum_k bf16(a[g, m, k]) * bf16(b[g, n, k]) in f32, as warp
/// MMA tiles; `bSource` is a 3-D tensor whose dims nDim and kDim hold n and
/// k (group g on dim 0). Any M, N, K: partial tiles are masked. [G, M, N].
Value emitBatchedWarpGemm(Emitter &e, Value a, Value bSource, unsigned nDim,
                          unsigned kDim);

/// The positions one step of the fused attention's online softmax covers:
/// one scores tile's columns (R x 32).
constexpr int64_t kFlashChunk = kMmaColTilesPerWarp * kMmaCols;
/// The latent columns of o_lat one fused-attention tile computes (its f32
/// accumulator: 64 values per thread); C / 128 tiles per row tile.
constexpr int64_t kFlashValueCols = 128;
/// The cache positions one fused-attention tile covers (split-KV: the
/// splits of a long cache run in parallel, a combine kernel merges them).
constexpr int64_t kFlashSplit = 256;
static_assert(kFlashSplit % kFlashChunk == 0,
              "a chunk of the online softmax never spans two splits");

/// The absorbed MLA attention on the latent cache as ONE kernel of warp MMA
/// tiles (FlashMLA's structure): per (sequence b, R query rows (s, h), 128
/// latent columns), a loop over the cache in chunks of kFlashChunk
/// positions computes the chunk's scores q . keys^T on the tensor cores,
/// masks them causally (t <= positions[b, s]), keeps the running row max m
/// and sum l of the online softmax in registers, and accumulates
/// o += bf16(exp(s - m)) . values (the probabilities stay in registers as
/// the next MMA's A operand), rescaled by exp(m_old - m_new) as m grows.
/// The cache is split into kFlashSplit-position parts that run as
/// separate tiles (decode's parallelism on long contexts, FlashMLA's
/// split-KV); each writes its unnormalised o and row max m and sum l, and a
/// second kernel combines them: o = sum_s e^(m_s - M) o_s / sum_s e^(m_s -
/// M) l_s. q [B, M = S * H, D] (rows s-major), keys [B, T, D], values
/// [B, T, C] (views of the cache), positions [B, S]. Returns o_lat
/// [B, M, C].
Value emitFlashLatentAttention(Emitter &e, Value q, Value keys, Value values,
                               Value positions, int64_t heads, double scale);

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_WARPMMA_H
