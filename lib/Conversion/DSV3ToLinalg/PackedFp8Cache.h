//===- PackedFp8Cache.h - The FP8 latent cache's rows -----------*- C++ -*-===//
//
// Writing and widening rows of the packed FP8 latent cache (dsv3.mla with an
// i8 cache; layout in WeightStreams.h, PackedFp8Rows). Attention reads the
// packed rows directly (readPackedFp8Chunk in WeightStreams.cpp); these are
// the new entries of a call, and the widened copy the long-chunk prefill
// expands from.
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_PACKEDFP8CACHE_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_PACKEDFP8CACHE_H

#include "Emitter.h"
#include "WeightStreams.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

/// The packed layout of dsv3.mla `op`'s i8 cache: the latent's codes and
/// rope key, or (expanded) codes only.
PackedFp8Rows packedFp8RowsOf(MlaOp op);

/// entries [B, S, latent + rope] f32 -> packed rows [B, S, bytes] i8, as
/// FlashMLA quantizes its FP8 cache: per tile, scale = 2^ceil(log2(max(amax
/// / 448, 1e-4))) (a power of two, so x / scale is exact), codes = e4m3(x /
/// scale) rounded to nearest even; the rope key rounded to bf16.
Value emitPackFp8Rows(Emitter &e, Value entries, const PackedFp8Rows &layout);

/// packed rows [B, T, bytes] i8 -> [B, T, latent + rope] f32 (codes times
/// their scale, the rope key widened): exactly the values attention reads.
Value emitUnpackFp8Rows(Emitter &e, Value packed, const PackedFp8Rows &layout);

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_PACKEDFP8CACHE_H
