//===- WeightStreams.h - The vector kernels that read weights -*- C++ -*-===//
//
// Every read of a weight matrix or of the KV cache in the CPU lowering goes
// through one of two kernels (docs/architecture.md):
//   grouped row dots  out[g, p, r] = sum_k a[g, p, k] * widen(w[g, r, k])
//   grouped axpy      out[g, p, c] = sum_d a[g, p, d] * widen(w[g, d, c])
// Both are scf.forall loops over output tiles (OpenMP threads after
// lowering) that widen bf16/f16/FP8 weights in registers.
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_WEIGHTSTREAMS_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_WEIGHTSTREAMS_H

#include "Emitter.h"

#include <functional>

namespace mlir {
namespace dsv3 {
namespace lowering {

/// FP8 block scales cover 128x128 tiles of a weight (spec §7.2).
constexpr int64_t kFp8Block = 128;
/// Lanes of the f32 vectors the kernels run on (one AVX-512 register).
constexpr int64_t kVectorLanes = 16;
/// Output rows a row-dots tile streams together.
constexpr int64_t kRowsPerTile = 8;
/// Accumulators of a blocked row-dot loop (token rows x weight rows): 16 of
/// the 32 AVX-512 registers, leaving the rest for the activation and weight
/// chunks.
constexpr int64_t kBlockAccumulators = 16;

/// Rows of a packed FP8 cache (dsv3.mla with an i8 cache): each row's bytes
/// hold `latent` e4m3 codes, one little-endian f32 scale per `tile` codes,
/// then `rope` bf16 values (the expanded layout: every column a code, rope
/// 0). The kernels read logical column c
/// of [0, cols) from there: code c times its tile's scale below `latent`,
/// the widened bf16 value c - latent above. latent == 0: not packed.
struct PackedFp8Rows {
  int64_t latent = 0, tile = 0, rope = 0;
  /// Logical columns read through the view: latent + rope for the scores,
  /// latent for the probabilities times the latent.
  int64_t cols = 0;
  explicit operator bool() const { return latent > 0; }
  int64_t scaleOffset() const { return latent; }
  int64_t ropeOffset() const { return latent + 4 * (latent / tile); }
  int64_t bytes() const { return ropeOffset() + 2 * rope; }
};

/// Decodes a vector of FP8 e4m3fn codes (f8E4M3FN or i8 elements) to f32
/// exactly, with integer ops.
Value decodeFp8Vector(OpBuilder &b, Location loc, Value codes);

/// A weight as the kernels read it: a [G, rows, cols] view of a stored
/// matrix (any element type), and, for FP8, its block scale with the map from
/// (group, row) of the view to the row of the stored matrix.
struct WeightView {
  Value view;
  Value scale; // [ceil(rows/128), ceil(cols/128)] of the stored matrix, or
               // [groups, ...] per stacked matrix (experts)
  std::function<Value(OpBuilder &, Location, Value group, Value row)> storedRow;
  /// Optional i64 [G]: group g reads matrix groupIndex[g] of the view (the
  /// expert a (token, slot) pair was routed to); else matrix g.
  Value groupIndex = {};
  /// Set when the view is the packed FP8 cache (view: its i8 rows).
  PackedFp8Rows packed = {};
};

/// Grouped row dots: out[g, p, r] = sum_k a[g, p, k] * widen(w[g, r, k]).
Value emitGroupedDots(Emitter &e, Value a, const WeightView &w);
/// Grouped axpy: out[g, p, c] = sum_d a[g, p, d] * widen(w[g, d, c]).
Value emitGroupedAxpy(Emitter &e, Value a, const WeightView &w);
/// y[..., n] = sum_k x[..., k] * widen(w[n, k]) * scale[n/128, k/128].
Value emitLinear(Emitter &e, Value x, Value w, Value scale);

/// The rows of the grouped expert GEMMs (dsv3.moe_gate_up and
/// dsv3.moe_down_combine): first the P = N * top_k (token, slot) pairs in
/// `order` (i64 [P]), expert e's at [offsets[e], offsets[e+1]) (i64
/// [experts + 1]); then `sharedSlots` blocks of N rows, one per token, for
/// the shared experts folded in as always-selected.
struct ExpertRows {
  Value order, offsets;
  int64_t experts = 0, topK = 0, sharedSlots = 0;
  /// The width I of one expert (a shared slot is I rows/columns of the
  /// shared weights).
  int64_t inter = 0;
};

/// One group's block of a grouped expert GEMM, as the kernels see it.
struct ExpertBlock {
  bool shared;     // a shared-expert slot (else a routed expert)
  Value group;     // the matrix of the weight view it reads
  Value slotStart; // first stored row (gate/up) or column (down) of its slot
  Value lo;        // its rows of the activations: [lo, lo + block rows)
  Value col0;      // first output column of the tile
};

using ExpertBlockBody =
    function_ref<Value(OpBuilder &, Location, const ExpertBlock &, Value)>;

/// P + S * N: the rows of the grouped expert GEMMs for N tokens.
Value numExpertRows(Emitter &e, const ExpertRows &rows, Value numTokens);

/// weights[pair / topK, pair % topK]: the routing weight of (token, slot)
/// pair `pair` (weights [N, topK] f32).
Value routingWeightOfPair(OpBuilder &b, Location loc, const ExpertRows &rows,
                          Value weights, Value pair);

/// The groups that have rows, in order: the routed experts at least one
/// pair chose, then the shared slots. Returns (ids i64 [E + S], count).
std::pair<Value, Value> emitActiveGroups(Emitter &e, const ExpertRows &rows);

/// A fresh [P + S * N, width] f32 result of a grouped expert GEMM, filled
/// by a parallel loop over (active group, [row tile,] column tile): `body`
/// returns the block it was given ([rows, tileCols], a slice of the result)
/// filled. rowTile 0: all of a group's rows in one block; else tiles of
/// rowTile rows (a tile past the group's rows gets an empty block).
Value emitExpertBlocks(Emitter &e, const ExpertRows &rows, Value numTokens,
                       int64_t width, int64_t tileCols, ExpertBlockBody body,
                       int64_t rowTile = 0);

/// act[r, i] = silu(x[token(r)] . gate_g(r)[i]) * (x[token(r)] . up_g(r)[i])
/// for every row r of `rows`. gate/up are [experts, I, D] views; sharedGate
/// and sharedUp (null view without shared experts) [1, S * I, D].
Value emitExpertGateUp(Emitter &e, Value x, const ExpertRows &rows,
                       const WeightView &gate, const WeightView &up,
                       const WeightView &sharedGate,
                       const WeightView &sharedUp);
/// out[n, d] = sum over the rows r of token n of
///   weight(r) * (act[r] . down_g(r)[d]),
/// weight(r) = weights[n, k] for pair r, 1 for a shared slot. down is an
/// [experts, D, I] view, sharedDown [1, D, S * I].
Value emitExpertDownCombine(Emitter &e, Value act, Value weights,
                            const ExpertRows &rows, const WeightView &down,
                            const WeightView &sharedDown);

/// out[n, d] = sum of perRow[r, d] over the rows r of token n (its pairs
/// and its shared slots): the combine of emitExpertDownCombine, for per-row
/// products [P + S * N, D] computed elsewhere.
Value emitExpertCombine(Emitter &e, Value perRow, Value weights,
                        const ExpertRows &rows);

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_WEIGHTSTREAMS_H
