//===- ExpertMma.h - Grouped expert GEMMs as warp MMA tiles ----*- C++ -*-===//
//
// The tensor-core form of the grouped expert GEMMs (dsv3.moe_gate_up,
// dsv3.moe_down_combine), chosen by convert-dsv3-to-linalg{tensor-cores}
// (the GPU pipelines set it):
//
//   1. the rows of each expert are gathered into a bf16 matrix [rows + 16, K]
//      (the token's activations; for down, times the pair's routing weight),
//      zero-padded so that every 16-row tile reads in bounds;
//   2. a parallel loop over (active group, 16-row tile, 8-column tile), each
//      iteration one warp's work: a K loop of
//        vector.contract(extf(A[16x16 bf16]), extf(B[8x16 bf16]), C[16x8 f32])
//      on transfer reads straight from the gathered rows and the weights,
//      then the epilogue (silu(gate) * up for gate/up) and a write of the
//      tile's rows that exist.
//
// The vector.contract is the warp-level operation: dsv3-gpu-warp-mma turns it
// into mma.sync.m16n8k16 (bf16 in, f32 accumulate) with each lane's fragments
// loaded from memory; on the CPU (dsv3-gpu-tiled-on-cpu) it is plain vector
// math, so the tiles, their indices and the epilogue are tested there.
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_EXPERTMMA_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_EXPERTMMA_H

#include "WeightStreams.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

/// The warp tile of one mma.sync: rows x columns x depth.
constexpr int64_t kMmaRows = 16, kMmaCols = 8, kMmaDepth = 16;

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

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_EXPERTMMA_H
