//===- WeightStreams.cpp - The vector kernels that read weights -----------===//
//
// See WeightStreams.h. Decode is a stream over the weights, so the kernels
// are built for that: tiles of rows handed out by a parallel loop, a 16-lane
// FMA loop per row that widens the stored elements in registers, software
// prefetch of the next tile, and every tile written in place into its slice
// of the output.
//
//===----------------------------------------------------------------------===//

#include "WeightStreams.h"

#include "Elementwise.h"
#include "WarpMma.h"

#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Utils/StaticValueUtils.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

#include <limits>

namespace mlir {
namespace dsv3 {
namespace lowering {

/// Decodes a vector of FP8 e4m3fn codes to f32 exactly, with integer ops
/// (normal: sign | (exp + 120) << 23 | mantissa << 20; subnormal: mantissa *
/// 2^-9; S.1111.111: NaN), so no gather and no FP8 support in LLVM is needed.
Value decodeFp8Vector(OpBuilder &b, Location loc, Value codes) {
  auto vecType = cast<VectorType>(codes.getType());
  int64_t lanes = vecType.getNumElements();
  auto i8v = VectorType::get({lanes}, b.getI8Type());
  auto i32v = VectorType::get({lanes}, b.getI32Type());
  auto f32v = VectorType::get({lanes}, b.getF32Type());
  auto splat = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(i32v, b.getI32IntegerAttr(v)));
  };
  Value bytes = vecType.getElementType().isInteger(8)
                    ? codes
                    : arith::BitcastOp::create(b, loc, i8v, codes).getResult();
  Value u = arith::ExtUIOp::create(b, loc, i32v, bytes);
  Value sign = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, u, splat(0x80)), splat(24));
  Value exponent = arith::AndIOp::create(
      b, loc, arith::ShRUIOp::create(b, loc, u, splat(3)), splat(0xF));
  Value mantissa = arith::AndIOp::create(b, loc, u, splat(7));
  Value normalBits = arith::OrIOp::create(
      b, loc,
      arith::OrIOp::create(
          b, loc, sign,
          arith::ShLIOp::create(
              b, loc, arith::AddIOp::create(b, loc, exponent, splat(120)),
              splat(23))),
      arith::ShLIOp::create(b, loc, mantissa, splat(20)));
  Value normal = arith::BitcastOp::create(b, loc, f32v, normalBits);
  Value subMagnitude = arith::MulFOp::create(
      b, loc, arith::UIToFPOp::create(b, loc, f32v, mantissa),
      arith::ConstantOp::create(
          b, loc, DenseElementsAttr::get(f32v, b.getF32FloatAttr(1.0f / 512))));
  Value subnormal = arith::BitcastOp::create(
      b, loc, f32v,
      arith::OrIOp::create(
          b, loc, arith::BitcastOp::create(b, loc, i32v, subMagnitude), sign));
  Value isSub = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                      exponent, splat(0));
  Value value = arith::SelectOp::create(b, loc, isSub, subnormal, normal);
  Value isNan = arith::CmpIOp::create(
      b, loc, arith::CmpIPredicate::eq,
      arith::AndIOp::create(b, loc, u, splat(0x7F)), splat(0x7F));
  Value nan = arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(
          f32v, b.getF32FloatAttr(std::numeric_limits<float>::quiet_NaN())));
  return arith::SelectOp::create(b, loc, isNan, nan, value);
}

/// The matrix of the view that group `g` reads.
static Value viewGroup(OpBuilder &b, Location loc, const WeightView &w,
                       Value g) {
  if (!w.groupIndex)
    return g;
  return extractIndex(b, loc, w.groupIndex, g);
}

/// Widens a vector of weight elements to f32 in registers.
static Value widenVector(OpBuilder &b, Location loc, Value raw) {
  auto type = cast<VectorType>(raw.getType());
  Type element = type.getElementType();
  if (element.isF32())
    return raw;
  if (isa<Float8E4M3FNType>(element))
    return decodeFp8Vector(b, loc, raw);
  return arith::ExtFOp::create(
      b, loc, VectorType::get(type.getShape(), b.getF32Type()), raw);
}

/// The block scale of stored element (row, col), as a broadcast vector.
static Value blockScale(OpBuilder &b, Location loc, const WeightView &w,
                        Value group, Value row, Value col, VectorType type) {
  Value block = indexConst(b, loc, kFp8Block);
  Value stored = w.storedRow ? w.storedRow(b, loc, group, row) : row;
  SmallVector<Value> index{arith::DivUIOp::create(b, loc, stored, block),
                           arith::DivUIOp::create(b, loc, col, block)};
  // Stacked matrices (experts) have one scale grid each.
  if (cast<RankedTensorType>(w.scale.getType()).getRank() == 3)
    index.insert(index.begin(), group);
  Value s = tensor::ExtractOp::create(b, loc, w.scale, index);
  return vector::BroadcastOp::create(b, loc, type, s);
}

/// 16 e4m3fn codes (vector<16xi8>, never NaN: the cache's own encoder writes
/// them) as f32 divided by 256: each code's bits moved into an f16 (sign to
/// bit 15, exponent and mantissa below it) are its value * 2^-8, subnormals
/// included, and f16 -> f32 is one instruction (F16C). Cheaper than
/// decodeFp8Vector's i32 arithmetic; the factor 256 goes into the scale.
static Value decodeCacheCodesOver256(OpBuilder &b, Location loc, Value raw) {
  auto i16v = VectorType::get({kVectorLanes}, b.getI16Type());
  auto splat = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(i16v, b.getI16IntegerAttr(v)));
  };
  Value wide = arith::ExtUIOp::create(b, loc, i16v, raw);
  Value sign = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, wide, splat(0x80)), splat(8));
  Value magnitude = arith::ShLIOp::create(
      b, loc, arith::AndIOp::create(b, loc, wide, splat(0x7F)), splat(7));
  Value half = arith::BitcastOp::create(
      b, loc, VectorType::get({kVectorLanes}, b.getF16Type()),
      arith::OrIOp::create(b, loc, sign, magnitude));
  return arith::ExtFOp::create(
      b, loc, VectorType::get({kVectorLanes}, b.getF32Type()), half);
}

/// Whether the 16 columns at `col` are codes (true) or rope values (false)
/// where the IR says so: a constant, or the induction variable of a loop
/// whose constant bounds lie on one side of the latent's end (emitDotBlock
/// splits its loop there).
static std::optional<bool> packedChunkIsCode(Value col,
                                             const PackedFp8Rows &p) {
  if (p.cols <= p.latent)
    return true;
  if (std::optional<int64_t> c = getConstantIntValue(col))
    return *c < p.latent;
  if (scf::ForOp loop = scf::getForInductionVarOwner(col)) {
    std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound());
    std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound());
    if (ub && *ub <= p.latent)
      return true;
    if (lb && *lb >= p.latent)
      return false;
  }
  return std::nullopt;
}

/// Logical columns [col, col + 16) of row `row` of a packed FP8 cache
/// (PackedFp8Rows), as f32: 16 codes decoded and multiplied by their tile's
/// scale, or 16 bf16 rope values widened. A chunk lies on one side of the
/// latent's end (the verifier asks kv_lora_rank % 16 == 0); which side is
/// decided at compile time where packedChunkIsCode can tell, else by a
/// branch.
static Value readPackedFp8Chunk(OpBuilder &b, Location loc, const WeightView &w,
                                Value group, Value row, Value col) {
  const PackedFp8Rows &p = w.packed;
  Type i8 = b.getI8Type();
  auto f32v = VectorType::get({kVectorLanes}, b.getF32Type());
  auto codes = [&](OpBuilder &b1, Location l1) -> Value {
    Value pad = arith::ConstantOp::create(b1, l1, b1.getIntegerAttr(i8, 0));
    Value raw = vector::TransferReadOp::create(
        b1, l1, VectorType::get({kVectorLanes}, i8), w.view,
        ValueRange{group, row, col}, pad, ArrayRef<bool>{true});
    Value at = arith::AddIOp::create(
        b1, l1, indexConst(b1, l1, p.scaleOffset()),
        arith::MulIOp::create(
            b1, l1,
            arith::DivUIOp::create(b1, l1, col, indexConst(b1, l1, p.tile)),
            indexConst(b1, l1, 4)));
    Value scaleBytes = vector::TransferReadOp::create(
        b1, l1, VectorType::get({4}, i8), w.view, ValueRange{group, row, at},
        pad, ArrayRef<bool>{true});
    Value scale = vector::ExtractOp::create(
        b1, l1,
        vector::BitCastOp::create(
            b1, l1, VectorType::get({1}, b1.getF32Type()), scaleBytes),
        ArrayRef<int64_t>{0});
    // The decoded codes are value / 256; the scale is a power of two, so
    // scale * 256 is exact.
    Value scale256 = arith::MulFOp::create(
        b1, l1, scale,
        arith::ConstantOp::create(b1, l1, b1.getF32FloatAttr(256.0f)));
    return arith::MulFOp::create(
        b1, l1, decodeCacheCodesOver256(b1, l1, raw),
        vector::BroadcastOp::create(b1, l1, f32v, scale256));
  };
  auto ropeValues = [&](OpBuilder &b1, Location l1) -> Value {
    Value pad = arith::ConstantOp::create(b1, l1, b1.getIntegerAttr(i8, 0));
    // Byte ropeOffset + 2 * (col - latent) = 2 * col + (ropeOffset - 2 *
    // latent).
    Value at = arith::AddIOp::create(
        b1, l1,
        arith::MulIOp::create(b1, l1, col, indexConst(b1, l1, 2)),
        indexConst(b1, l1, p.ropeOffset() - 2 * p.latent));
    // A rope key of fewer than 16 values reads past the row: masked (zeros).
    Value raw = vector::TransferReadOp::create(
        b1, l1, VectorType::get({2 * kVectorLanes}, i8), w.view,
        ValueRange{group, row, at}, pad,
        ArrayRef<bool>{p.rope % kVectorLanes == 0});
    Value halves = vector::BitCastOp::create(
        b1, l1, VectorType::get({kVectorLanes}, b1.getBF16Type()), raw);
    return arith::ExtFOp::create(b1, l1, f32v, halves);
  };
  if (std::optional<bool> isCode = packedChunkIsCode(col, p))
    return *isCode ? codes(b, loc) : ropeValues(b, loc);
  Value inLatent = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                         col, indexConst(b, loc, p.latent));
  auto branch = scf::IfOp::create(b, loc, TypeRange{f32v}, inLatent,
                                  /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&branch.getThenRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{codes(b, loc)});
  b.setInsertionPointToStart(&branch.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{ropeValues(b, loc)});
  return branch.getResult(0);
}

/// Reads 16 elements of matrix `group` of the view at (row, col), widened to
/// f32 and multiplied by their block scale: what both kernels do with every
/// weight chunk. `exact` says the chunk never crosses the row's end.
static Value readWeightChunk(OpBuilder &b, Location loc, const WeightView &w,
                             Value group, Value row, Value col, bool exact) {
  if (w.packed)
    return readPackedFp8Chunk(b, loc, w, group, row, col);
  Type element = cast<RankedTensorType>(w.view.getType()).getElementType();
  auto f32v = VectorType::get({kVectorLanes}, b.getF32Type());
  Value pad = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  Value raw = vector::TransferReadOp::create(
      b, loc, VectorType::get({kVectorLanes}, element), w.view,
      ValueRange{group, row, col}, pad, ArrayRef<bool>{exact});
  Value wide = widenVector(b, loc, raw);
  if (w.scale)
    wide = arith::MulFOp::create(b, loc, wide,
                                 blockScale(b, loc, w, group, row, col, f32v));
  return wide;
}

namespace {

/// numLhs x numRhs dot products of length `depth`, 16 lanes at a time:
/// lhs(i, k) gives activation chunk i at k, rhs(j, k) weight chunk j; sum
/// i * numRhs + j is lhs row i times weight row j. Each weight chunk is read
/// and widened once per k for all the lhs rows: with several tokens (batched
/// decode) that is what makes one step over 8 rows cheaper than 8 steps over
/// one, since widening and loading, not the FMAs, bound the single-row loop.
/// Every product still accumulates lane-wise in k order and is reduced the
/// same way, so the blocking does not change a bit of the result. A `split`
/// in (0, depth) runs k over [0, split) and [split, depth) as two loops (the
/// same order), so each loop's chunks are of one kind (packed cache codes or
/// rope values).
SmallVector<Value>
emitDotBlock(OpBuilder &b, Location loc, int64_t numLhs, int64_t numRhs,
             int64_t depth,
             function_ref<Value(OpBuilder &, Location, int64_t, Value)> lhs,
             function_ref<Value(OpBuilder &, Location, int64_t, Value)> rhs,
             int64_t split = 0) {
  auto f32v = VectorType::get({kVectorLanes}, b.getF32Type());
  Value zeroVec = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(f32v, b.getF32FloatAttr(0)));
  const int64_t count = numLhs * numRhs;
  auto kLoop = [&](int64_t from, int64_t to, ValueRange init) {
    return scf::ForOp::create(
        b, loc, indexConst(b, loc, from), indexConst(b, loc, to),
        indexConst(b, loc, kVectorLanes), init,
        [&](OpBuilder &b1, Location l1, Value k, ValueRange acc) {
          SmallVector<Value> a;
          for (int64_t i = 0; i < numLhs; ++i)
            a.push_back(lhs(b1, l1, i, k));
          SmallVector<Value> next(acc.begin(), acc.end());
          for (int64_t j = 0; j < numRhs; ++j) {
            Value w = rhs(b1, l1, j, k);
            for (int64_t i = 0; i < numLhs; ++i)
              next[i * numRhs + j] = vector::FMAOp::create(
                  b1, l1, a[i], w, acc[i * numRhs + j]);
          }
          scf::YieldOp::create(b1, l1, next);
        });
  };
  SmallVector<Value> acc(count, zeroVec);
  if (split > 0 && split < depth)
    acc = kLoop(0, split, acc).getResults();
  acc = kLoop(split > 0 && split < depth ? split : 0, depth, acc).getResults();
  SmallVector<Value> sums;
  for (int64_t i = 0; i < count; ++i)
    sums.push_back(vector::ReductionOp::create(
        b, loc, vector::CombiningKind::ADD, acc[i]));
  return sums;
}

/// `count` dot products of one activation row: lhs(k) gives the activation
/// chunk at k, rhs(i, k) the weight chunk of product i.
SmallVector<Value>
emitDots(OpBuilder &b, Location loc, int64_t count, int64_t depth,
         function_ref<Value(OpBuilder &, Location, Value)> lhs,
         function_ref<Value(OpBuilder &, Location, int64_t, Value)> rhs) {
  return emitDotBlock(
      b, loc, /*numLhs=*/1, count, depth,
      [&](OpBuilder &b1, Location l1, int64_t, Value k) {
        return lhs(b1, l1, k);
      },
      rhs);
}

/// The stored rows first, first + 1, ... of a tile of `tileCols`, and the
/// same rows of the next tile (to prefetch).
std::pair<SmallVector<Value>, SmallVector<Value>>
tileRowsAndNext(OpBuilder &b, Location loc, Value first, int64_t tileCols) {
  SmallVector<Value> stored, ahead;
  for (int64_t i = 0; i < tileCols; ++i) {
    stored.push_back(
        arith::AddIOp::create(b, loc, first, indexConst(b, loc, i)));
    ahead.push_back(arith::AddIOp::create(b, loc, stored.back(),
                                          indexConst(b, loc, tileCols)));
  }
  return {stored, ahead};
}

/// A read-only buffer of a weight view, for software prefetch.
Value prefetchBuffer(Emitter &e, const WeightView &w) {
  auto type = cast<RankedTensorType>(w.view.getType());
  auto layout = StridedLayoutAttr::get(
      e.b.getContext(), ShapedType::kDynamic,
      SmallVector<int64_t>(type.getRank(), ShapedType::kDynamic));
  return bufferization::ToBufferOp::create(
      e.b, e.loc,
      MemRefType::get(type.getShape(), type.getElementType(), layout), w.view,
      /*read_only=*/true);
}

/// Prefetches (group, row, col) of `buffer`: the same chunk of the next
/// tile, which this thread most likely computes next.
void prefetch(OpBuilder &b, Location loc, Value buffer, Value group, Value row,
              Value col) {
  memref::PrefetchOp::create(b, loc, buffer, ValueRange{group, row, col},
                             /*isWrite=*/false, /*localityHint=*/3,
                             /*isDataCache=*/true);
}

} // namespace

/// Grouped row dots: out[g, p, r] = sum_k a[g, p, k] * widen(w[g, r, k]).
///
/// This is the weight stream of decode. Rows of w are split into tiles handed
/// out by a parallel loop (scf.forall -> OpenMP); within a tile, for each p,
/// a 16-lane FMA loop over k reads the tile's rows once (they stay in L1
/// across p), widens them in registers and keeps one accumulator per row, so
/// the loads of a are shared and the FMA chains independent. With
/// `Emitter::tokenRowBlock` > 1 the p are taken in blocks (emitDotBlock), so
/// a batched decode step widens each weight chunk once per block of tokens,
/// not once per token. K tails are masked transfer reads.

Value emitGroupedDots(Emitter &e, Value a, const WeightView &w) {
  auto aType = cast<RankedTensorType>(a.getType());
  auto wType = cast<RankedTensorType>(w.view.getType());
  const int64_t inDim = aType.getDimSize(2);
  const int64_t outStatic = wType.getDimSize(1);
  const int64_t tileRows =
      (!ShapedType::isDynamic(outStatic) && outStatic % kRowsPerTile == 0)
          ? kRowsPerTile
          : 1;
  OpFoldResult rows = e.dim(a, 1), outDim = e.dim(w.view, 1);
  OpFoldResult groups = e.dim(a, 0);
  Value init = e.empty({groups, rows, outDim});
  Value numTiles = arith::DivUIOp::create(
      e.b, e.loc, getValueOrCreateConstantIndexOp(e.b, e.loc, outDim),
      e.index(tileRows));
  Value numRows = getValueOrCreateConstantIndexOp(e.b, e.loc, rows);
  const bool exact = inDim % kVectorLanes == 0;
  // Fewer static token rows than the option's block: the largest power of
  // two that fits (a block of 4 over 3 rows would compute a padded row).
  int64_t rowBlock = e.tokenRowBlock;
  if (std::optional<int64_t> r = getConstantIntValue(rows))
    while (rowBlock > 1 && rowBlock > *r)
      rowBlock /= 2;
  // A buffer view of the weights for software prefetch: each tile fetches
  // the next tile's rows while it streams its own, so the short row streams
  // do not wait for the hardware prefetcher to ramp up.
  Value weightBuffer = prefetchBuffer(e, w);

  auto forall = scf::ForallOp::create(
      e.b, e.loc, ArrayRef<OpFoldResult>{groups, numTiles}, ValueRange{init},
      std::nullopt, [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value g = ivsAndOuts[0], tile = ivsAndOuts[1];
        Value shared = ivsAndOuts[2];
        Value wg = viewGroup(b, loc, w, g);
        Value n0 =
            arith::MulIOp::create(b, loc, tile, indexConst(b, loc, tileRows));
        SmallVector<Value> rowIdx, ahead;
        std::tie(rowIdx, ahead) = tileRowsAndNext(b, loc, n0, tileRows);
        // The tile is the forall's own slice of the output (destination
        // passing), so bufferization writes it in place: no allocation or
        // copy per tile.
        SmallVector<OpFoldResult> tileOffsets{g, b.getIndexAttr(0), n0};
        SmallVector<OpFoldResult> tileShape{b.getIndexAttr(1), rows,
                                            b.getIndexAttr(tileRows)};
        auto tileType = RankedTensorType::get({ShapedType::kDynamic, tileRows},
                                              b.getF32Type());
        if (std::optional<int64_t> r = getConstantIntValue(rows))
          tileType = RankedTensorType::get({*r, tileRows}, b.getF32Type());
        Value tileInit = tensor::ExtractSliceOp::create(
            b, loc, tileType, shared, tileOffsets, tileShape,
            SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
        // Token rows in blocks of `rowBlock` (each weight chunk of the tile
        // read and widened once per block; emitDotBlock), the rest one by
        // one over all the tile's weight rows.
        auto emitRows = [&](OpBuilder &b2, Location l2, Value m0,
                            int64_t numM, Value tileAcc) -> Value {
          const int64_t perDot =
              numM == 1 ? tileRows
                        : std::min(tileRows, kBlockAccumulators / numM);
          SmallVector<Value> m;
          for (int64_t i = 0; i < numM; ++i)
            m.push_back(i == 0 ? m0
                               : arith::AddIOp::create(
                                     b2, l2, m0, indexConst(b2, l2, i)));
          for (int64_t r0 = 0; r0 < tileRows; r0 += perDot) {
            SmallVector<Value> sums = emitDotBlock(
                b2, l2, numM, perDot, inDim,
                [&](OpBuilder &b3, Location l3, int64_t i, Value k) -> Value {
                  Value xPad =
                      arith::ConstantOp::create(b3, l3, b3.getF32FloatAttr(0));
                  return vector::TransferReadOp::create(
                      b3, l3, VectorType::get({kVectorLanes}, b3.getF32Type()),
                      a, ValueRange{g, m[i], k}, xPad, ArrayRef<bool>{exact});
                },
                [&](OpBuilder &b3, Location l3, int64_t j, Value k) {
                  prefetch(b3, l3, weightBuffer, wg, ahead[r0 + j], k);
                  return readWeightChunk(b3, l3, w, wg, rowIdx[r0 + j], k,
                                         exact);
                },
                // The packed cache's codes and rope values in two loops,
                // so no chunk branches on which it is.
                w.packed ? w.packed.latent : 0);
            for (int64_t i = 0; i < numM; ++i)
              for (int64_t j = 0; j < perDot; ++j)
                tileAcc = tensor::InsertOp::create(
                    b2, l2, sums[i * perDot + j], tileAcc,
                    ValueRange{m[i], indexConst(b2, l2, r0 + j)});
          }
          return tileAcc;
        };
        auto rowLoop = [&](Value from, Value to, int64_t step,
                           Value acc) -> Value {
          return scf::ForOp::create(
                     b, loc, from, to, indexConst(b, loc, step),
                     ValueRange{acc},
                     [&](OpBuilder &b2, Location l2, Value m0,
                         ValueRange mArgs) {
                       scf::YieldOp::create(
                           b2, l2, emitRows(b2, l2, m0, step, mArgs[0]));
                     })
              .getResult(0);
        };
        Value tileOut;
        if (rowBlock == 1) {
          tileOut = rowLoop(indexConst(b, loc, 0), numRows, 1, tileInit);
        } else {
          Value blockStep = indexConst(b, loc, rowBlock);
          Value blockedRows = arith::MulIOp::create(
              b, loc, arith::DivUIOp::create(b, loc, numRows, blockStep),
              blockStep);
          tileOut = rowLoop(indexConst(b, loc, 0), blockedRows, rowBlock,
                            tileInit);
          std::optional<int64_t> staticRows = getConstantIntValue(rows);
          if (!staticRows || *staticRows % rowBlock != 0)
            tileOut = rowLoop(blockedRows, numRows, 1, tileOut);
        }
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(
            b, loc, tileOut, shared, tileOffsets, tileShape,
            SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
      });
  return forall.getResult(0);
}

/// Grouped axpy: out[g, p, c] = sum_d a[g, p, d] * widen(w[g, d, c]), for
/// weights whose contiguous dimension is the output one (W_UK read as
/// [head, nope, latent], the latent cache read as [batch, t, latent]). Each
/// (g, p) row is accumulated 16 lanes at a time in an L1-resident row, one
/// scalar of a broadcast per d; rows are spread over threads.
Value emitGroupedAxpy(Emitter &e, Value a, const WeightView &w) {
  auto wType = cast<RankedTensorType>(w.view.getType());
  const int64_t width = w.packed ? w.packed.cols : wType.getDimSize(2);
  OpFoldResult groups = e.dim(a, 0), rows = e.dim(a, 1), depth = e.dim(a, 2);
  Value init = e.empty({groups, rows, e.b.getIndexAttr(width)});
  Value numRows = getValueOrCreateConstantIndexOp(e.b, e.loc, rows);
  Value numDepth = getValueOrCreateConstantIndexOp(e.b, e.loc, depth);
  auto f32v = VectorType::get({kVectorLanes}, e.f32());
  const bool exact = width % kVectorLanes == 0;

  // Rows [first, first + blocks * block) in blocks of `block`: each chunk of
  // w is read and widened (or decoded, for the packed FP8 cache) once per
  // block and accumulated into each row's own L1-resident row, in the same
  // d order, so the blocking changes no bit.
  // Wide rows (the 512-column latent) are also split into column tiles of
  // 128, so a few blocks of rows still spread over the threads.
  const int64_t colTile =
      width > 128 && width % 128 == 0 ? 128 : width;
  auto blockedRows = [&](Value into, Value first, Value blocks,
                         int64_t block) -> Value {
    auto blockType = RankedTensorType::get({block, colTile}, e.f32());
    auto forall = scf::ForallOp::create(
        e.b, e.loc,
        ArrayRef<OpFoldResult>{groups, blocks,
                               e.b.getIndexAttr(width / colTile)},
        ValueRange{into}, std::nullopt,
        [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
          Value g = ivsAndOuts[0], shared = ivsAndOuts[3];
          Value m0 = arith::AddIOp::create(
              b, loc, first,
              arith::MulIOp::create(b, loc, ivsAndOuts[1],
                                    indexConst(b, loc, block)));
          Value c0 = arith::MulIOp::create(b, loc, ivsAndOuts[2],
                                           indexConst(b, loc, colTile));
          Value wg = viewGroup(b, loc, w, g);
          SmallVector<OpFoldResult> offsets{g, m0, c0};
          SmallVector<OpFoldResult> sizes{b.getIndexAttr(1),
                                          b.getIndexAttr(block),
                                          b.getIndexAttr(colTile)};
          // Accumulate in the forall's own slice of the output (destination
          // passing: written in place, no allocation per block).
          Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
          Value slice = tensor::ExtractSliceOp::create(
              b, loc, blockType, shared, offsets, sizes,
              SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
          Value rowsInit = linalg::FillOp::create(b, loc, ValueRange{zero},
                                                  ValueRange{slice})
                               .getResult(0);
          auto dLoop = scf::ForOp::create(
              b, loc, indexConst(b, loc, 0), numDepth, indexConst(b, loc, 1),
              ValueRange{rowsInit},
              [&](OpBuilder &b2, Location l2, Value d, ValueRange dArgs) {
                SmallVector<Value> coefficients;
                for (int64_t i = 0; i < block; ++i) {
                  Value m = arith::AddIOp::create(b2, l2, m0,
                                                  indexConst(b2, l2, i));
                  coefficients.push_back(vector::BroadcastOp::create(
                      b2, l2, f32v,
                      tensor::ExtractOp::create(b2, l2, a,
                                                ValueRange{g, m, d})));
                }
                auto cLoop = scf::ForOp::create(
                    b2, l2, indexConst(b2, l2, 0),
                    indexConst(b2, l2, colTile),
                    indexConst(b2, l2, kVectorLanes), dArgs,
                    [&](OpBuilder &b3, Location l3, Value c,
                        ValueRange cArgs) {
                      Value fPad = arith::ConstantOp::create(
                          b3, l3, b3.getF32FloatAttr(0));
                      Value col = arith::AddIOp::create(b3, l3, c0, c);
                      Value wide =
                          readWeightChunk(b3, l3, w, wg, d, col, exact);
                      Value acc = cArgs[0];
                      for (int64_t i = 0; i < block; ++i) {
                        SmallVector<Value, 2> at{indexConst(b3, l3, i), c};
                        Value old = vector::TransferReadOp::create(
                            b3, l3, f32v, acc, at, fPad,
                            ArrayRef<bool>{exact});
                        Value sum = vector::FMAOp::create(
                            b3, l3, coefficients[i], wide, old);
                        acc = vector::TransferWriteOp::create(
                                  b3, l3, sum, acc, at, ArrayRef<bool>{exact})
                                  .getResult();
                      }
                      scf::YieldOp::create(b3, l3, ValueRange{acc});
                    });
                scf::YieldOp::create(b2, l2, cLoop.getResults());
              });
          auto inParallel = scf::InParallelOp::create(b, loc);
          OpBuilder::InsertionGuard guard(b);
          b.setInsertionPointToStart(inParallel.getBody());
          tensor::ParallelInsertSliceOp::create(
              b, loc, dLoop.getResult(0), shared, offsets, sizes,
              SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
        });
    return forall.getResult(0);
  };

  // The rows (a decode step's heads) in blocks of Emitter::tokenRowBlock,
  // the remainder one by one.
  const int64_t block = std::max<int64_t>(e.tokenRowBlock, 1);
  if (block == 1)
    return blockedRows(init, e.index(0), numRows, 1);
  Value blocks = arith::DivUIOp::create(e.b, e.loc, numRows, e.index(block));
  Value out = blockedRows(init, e.index(0), blocks, block);
  std::optional<int64_t> staticRows = getConstantIntValue(rows);
  if (staticRows && *staticRows % block == 0)
    return out;
  Value done = arith::MulIOp::create(e.b, e.loc, blocks, e.index(block));
  return blockedRows(out, done,
                     arith::SubIOp::create(e.b, e.loc, numRows, done), 1);
}

/// Adds a leading unit dimension: [..] -> [1, ..].
static Value addUnitGroup(Emitter &e, Value v) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<ReassociationIndices> reassoc{{0, 1}};
  for (int64_t i = 1; i < type.getRank(); ++i)
    reassoc.push_back({i + 1});
  SmallVector<int64_t> shape{1};
  shape.append(type.getShape().begin(), type.getShape().end());
  SmallVector<OpFoldResult> sizes{e.b.getIndexAttr(1)};
  for (OpFoldResult s : e.sizesOf(v))
    sizes.push_back(s);
  return tensor::ExpandShapeOp::create(
      e.b, e.loc, RankedTensorType::get(shape, type.getElementType()), v,
      reassoc, sizes);
}

/// y[..., n] = sum_k x[..., k] * widen(w[n, k]) * scale[n/128, k/128]: one
/// group of row dots over the tokens flattened to [M, K].
Value emitLinear(Emitter &e, Value x, Value w, Value scale) {
  auto xType = cast<RankedTensorType>(x.getType());
  const int64_t rank = xType.getRank();
  const int64_t outDim = cast<RankedTensorType>(w.getType()).getDimSize(0);
  const int64_t inDim = xType.getShape().back();
  Value x2 = x;
  if (rank != 2) {
    int64_t m = 1;
    for (int64_t d : xType.getShape().drop_back())
      m = (ShapedType::isDynamic(d) || ShapedType::isDynamic(m))
              ? ShapedType::kDynamic
              : m * d;
    x2 = tensor::CollapseShapeOp::create(
        e.b, e.loc, RankedTensorType::get({m, inDim}, e.f32()), x,
        tokenReassociation(rank));
  }
  WeightView view{addUnitGroup(e, w), scale, nullptr};
  // With tensor cores and bf16 weights: warp MMA tiles with the tokens as M
  // (a warp per 8 output rows, where the row dots give a thread 8 rows: the
  // parallelism a GPU needs in decode).
  const bool tiles = e.tensorCores && isTensorCoreWeight(w, scale);
  Value out3 = tiles ? emitBatchedWarpGemm(e, addUnitGroup(e, x2), view.view,
                                           /*nDim=*/1, /*kDim=*/2)
                     : emitGroupedDots(e, addUnitGroup(e, x2), view);
  auto out3Type = cast<RankedTensorType>(out3.getType());
  Value out = tensor::CollapseShapeOp::create(
      e.b, e.loc,
      RankedTensorType::get(out3Type.getShape().drop_front(), e.f32()), out3,
      SmallVector<ReassociationIndices>{{0, 1}, {2}});
  if (rank == 2)
    return out;
  SmallVector<int64_t> shape(xType.getShape().drop_back());
  shape.push_back(outDim);
  SmallVector<OpFoldResult> outSizes = e.sizesOf(x);
  outSizes.back() = e.b.getIndexAttr(outDim);
  return tensor::ExpandShapeOp::create(e.b, e.loc,
                                       RankedTensorType::get(shape, e.f32()),
                                       out, tokenReassociation(rank),
                                       outSizes);
}

//===----------------------------------------------------------------------===//
// Grouped expert GEMMs
//===----------------------------------------------------------------------===//

/// The groups that have rows, in order: the routed experts at least one
/// pair chose, then the shared slots. Returns (ids i64 [E + S], count);
/// id g >= E is shared slot g - E. One thread: E is a few hundred at most.
std::pair<Value, Value> emitActiveGroups(Emitter &e, const ExpertRows &rows) {
  const int64_t groups = rows.experts + rows.sharedSlots;
  Type i64 = e.b.getI64Type();
  Value list = e.empty({e.b.getIndexAttr(groups)}, i64);
  auto scan = scf::ForOp::create(
      e.b, e.loc, e.index(0), e.index(rows.experts), e.index(1),
      ValueRange{list, e.index(0)},
      [&](OpBuilder &b, Location loc, Value ex, ValueRange acc) {
        Value lo = extractIndex(b, loc, rows.offsets, ex);
        Value hi = extractIndex(
            b, loc, rows.offsets,
            arith::AddIOp::create(b, loc, ex, indexConst(b, loc, 1)));
        // Written at the cursor either way; the cursor moves only past an
        // expert with rows, so an empty one is overwritten by the next.
        Value written = tensor::InsertOp::create(
            b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), ex),
            acc[0], ValueRange{acc[1]});
        Value used = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                           lo, hi);
        Value next = arith::AddIOp::create(
            b, loc, acc[1],
            arith::IndexCastOp::create(
                b, loc, b.getIndexType(),
                arith::ExtUIOp::create(b, loc, b.getI64Type(), used)));
        scf::YieldOp::create(b, loc, ValueRange{written, next});
      });
  list = scan.getResult(0);
  Value count = scan.getResult(1);
  for (int64_t j = 0; j < rows.sharedSlots; ++j) {
    Value at = arith::AddIOp::create(e.b, e.loc, count, e.index(j));
    list = tensor::InsertOp::create(
        e.b, e.loc,
        arith::ConstantOp::create(e.b, e.loc,
                                  e.b.getI64IntegerAttr(rows.experts + j)),
        list, ValueRange{at});
  }
  count = arith::AddIOp::create(e.b, e.loc, count, e.index(rows.sharedSlots));
  return {list, count};
}

Value numExpertRows(Emitter &e, const ExpertRows &rows, Value numTokens) {
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  return arith::AddIOp::create(
      e.b, e.loc, numPairs,
      arith::MulIOp::create(e.b, e.loc, numTokens,
                            e.index(rows.sharedSlots)));
}

Value routingWeightOfPair(OpBuilder &b, Location loc, const ExpertRows &rows,
                          Value weights, Value pair) {
  Value topK = indexConst(b, loc, rows.topK);
  return tensor::ExtractOp::create(
      b, loc, weights,
      ValueRange{arith::DivUIOp::create(b, loc, pair, topK),
                 arith::RemUIOp::create(b, loc, pair, topK)});
}

/// A fresh [P + S * N, width] result computed block by block: a parallel
/// loop over (active group, column tile), expert-major, so that a thread
/// streams one expert's rows tile after tile (and prefetches the next tile)
/// like the row-dots kernel. With `rowTile` > 0 a group's rows are split in
/// tiles of that many too (a third loop dimension of ceil(N / rowTile)
/// tiles; a tile past the group's rows gets an empty block). `body` fills
/// the block [rows of the tile, tileCols] of one group and tile.
Value emitExpertBlocks(Emitter &e, const ExpertRows &rows, Value numTokens,
                       int64_t width, int64_t tileCols, ExpertBlockBody body,
                       int64_t rowTile) {
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  Value init =
      e.empty({numExpertRows(e, rows, numTokens), e.b.getIndexAttr(width)});
  Value active, numActive;
  std::tie(active, numActive) = emitActiveGroups(e, rows);
  SmallVector<OpFoldResult> extents{numActive};
  if (rowTile > 0)
    extents.push_back(
        arith::CeilDivUIOp::create(e.b, e.loc, numTokens, e.index(rowTile))
            .getResult());
  extents.push_back(e.b.getIndexAttr(width / tileCols));
  auto forall = scf::ForallOp::create(
      e.b, e.loc, extents, ValueRange{init}, std::nullopt,
      [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        const unsigned numIvs = extents.size();
        Value out = ivsAndOuts[numIvs];
        Value g = extractIndex(b, loc, active, ivsAndOuts[0]);
        Value col0 = arith::MulIOp::create(b, loc, ivsAndOuts[numIvs - 1],
                                           indexConst(b, loc, tileCols));
        Value experts = indexConst(b, loc, rows.experts);
        Value isShared =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::uge, g, experts);
        // Rows: [offsets[g], offsets[g + 1]) of a routed expert (index
        // clamped so the side not taken stays in bounds), P + j * N + [0, N)
        // of shared slot j.
        Value routedG = arith::MinUIOp::create(
            b, loc, g, indexConst(b, loc, rows.experts - 1));
        Value slot = arith::SubIOp::create(
            b, loc, arith::MaxUIOp::create(b, loc, g, experts), experts);
        Value sharedLo = arith::AddIOp::create(
            b, loc, numPairs, arith::MulIOp::create(b, loc, slot, numTokens));
        Value lo = arith::SelectOp::create(
            b, loc, isShared, sharedLo,
            extractIndex(b, loc, rows.offsets, routedG));
        Value hi = arith::SelectOp::create(
            b, loc, isShared,
            arith::AddIOp::create(b, loc, sharedLo, numTokens),
            extractIndex(b, loc, rows.offsets,
                         arith::AddIOp::create(b, loc, routedG,
                                               indexConst(b, loc, 1))));
        Value count = arith::SubIOp::create(b, loc, hi, lo);
        if (rowTile > 0) {
          // This tile's rows: [lo + t * rowTile, ...) clamped to [0, rowTile].
          Value skip = arith::MulIOp::create(b, loc, ivsAndOuts[1],
                                             indexConst(b, loc, rowTile));
          Value skipped = arith::MinUIOp::create(b, loc, skip, count);
          Value left = arith::SubIOp::create(b, loc, count, skipped);
          count = arith::MinUIOp::create(b, loc, left,
                                         indexConst(b, loc, rowTile));
          lo = arith::AddIOp::create(b, loc, lo, skipped);
        }
        SmallVector<OpFoldResult> offsets{lo, col0};
        SmallVector<OpFoldResult> sizes{count, b.getIndexAttr(tileCols)};
        SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
        auto blockType = RankedTensorType::get(
            {ShapedType::kDynamic, tileCols}, b.getF32Type());
        Value block = tensor::ExtractSliceOp::create(b, loc, blockType, out,
                                                     offsets, sizes, strides);
        auto routedBlock = [&](OpBuilder &b1, Location l1) {
          ExpertBlock routed{false, routedG, indexConst(b1, l1, 0), lo, col0};
          return body(b1, l1, routed, block);
        };
        Value done;
        if (rows.sharedSlots == 0) {
          done = routedBlock(b, loc);
        } else {
          auto branch = scf::IfOp::create(
              b, loc, isShared,
              [&](OpBuilder &b1, Location l1) {
                Value start = arith::MulIOp::create(
                    b1, l1, slot, indexConst(b1, l1, rows.inter));
                ExpertBlock shared{true, indexConst(b1, l1, 0), start, lo,
                                   col0};
                scf::YieldOp::create(b1, l1,
                                     ValueRange{body(b1, l1, shared, block)});
              },
              [&](OpBuilder &b1, Location l1) {
                scf::YieldOp::create(b1, l1, ValueRange{routedBlock(b1, l1)});
              });
          done = branch.getResult(0);
        }
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(b, loc, done, out, offsets,
                                              sizes, strides);
      });
  return forall.getResult(0);
}

namespace {

/// Loops r over the block's rows, threading the block through `body`.
Value forEachBlockRow(
    OpBuilder &b, Location loc, Value block, Value lo,
    function_ref<Value(OpBuilder &, Location, Value r, Value local, Value)>
        body) {
  Value rows = tensor::DimOp::create(b, loc, block, 0);
  auto loop = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), rows, indexConst(b, loc, 1),
      ValueRange{block},
      [&](OpBuilder &b1, Location l1, Value local, ValueRange acc) {
        Value r = arith::AddIOp::create(b1, l1, lo, local);
        scf::YieldOp::create(b1, l1,
                             ValueRange{body(b1, l1, r, local, acc[0])});
      });
  return loop.getResult(0);
}

/// Reads 16 f32 of row `row` of the 2-D tensor `t` at column `col`.
Value readActivations(OpBuilder &b, Location loc, Value t, Value row,
                      Value col, bool exact) {
  auto f32v = VectorType::get({kVectorLanes}, b.getF32Type());
  Value pad = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
  return vector::TransferReadOp::create(b, loc, f32v, t, ValueRange{row, col},
                                        pad, ArrayRef<bool>{exact});
}

} // namespace

/// Column tiles of I: a block reads rows [i0, i0 + tile) of gate and up of
/// its expert once, keeps them in L1 while it serves all of that expert's
/// tokens, and writes silu(gate) * up. Tokens are read through the
/// permutation.
Value emitExpertGateUp(Emitter &e, Value x, const ExpertRows &rows,
                       const WeightView &gate, const WeightView &up,
                       const WeightView &sharedGate,
                       const WeightView &sharedUp) {
  const int64_t hidden = cast<RankedTensorType>(x.getType()).getDimSize(1);
  const int64_t tileCols = rows.inter % kRowsPerTile == 0 ? kRowsPerTile : 1;
  const bool exact = hidden % kVectorLanes == 0;
  Value numTokens = tensor::DimOp::create(e.b, e.loc, x, 0);
  Value gateBuffer = prefetchBuffer(e, gate), upBuffer = prefetchBuffer(e, up);
  Value sharedGateBuffer, sharedUpBuffer;
  if (rows.sharedSlots > 0) {
    sharedGateBuffer = prefetchBuffer(e, sharedGate);
    sharedUpBuffer = prefetchBuffer(e, sharedUp);
  }
  return emitExpertBlocks(
      e, rows, numTokens, rows.inter, tileCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &g = blk.shared ? sharedGate : gate;
        const WeightView &u = blk.shared ? sharedUp : up;
        Value gBuf = blk.shared ? sharedGateBuffer : gateBuffer;
        Value uBuf = blk.shared ? sharedUpBuffer : upBuffer;
        SmallVector<Value> stored, ahead;
        std::tie(stored, ahead) = tileRowsAndNext(
            b, loc, arith::AddIOp::create(b, loc, blk.slotStart, blk.col0),
            tileCols);
        return forEachBlockRow(
            b, loc, block, blk.lo,
            [&](OpBuilder &b1, Location l1, Value r, Value local,
                Value acc) -> Value {
              // A shared slot's rows are the tokens in order.
              Value token = local;
              if (!blk.shared)
                token = arith::DivUIOp::create(
                    b1, l1, extractIndex(b1, l1, rows.order, r),
                    indexConst(b1, l1, rows.topK));
              // Products 0..tile-1 are gate rows, tile..2*tile-1 up rows.
              SmallVector<Value> sums = emitDots(
                  b1, l1, 2 * tileCols, hidden,
                  [&](OpBuilder &b2, Location l2, Value k) {
                    return readActivations(b2, l2, x, token, k, exact);
                  },
                  [&](OpBuilder &b2, Location l2, int64_t i, Value k) {
                    bool isGate = i < tileCols;
                    int64_t row = i % tileCols;
                    prefetch(b2, l2, isGate ? gBuf : uBuf, blk.group,
                             ahead[row], k);
                    return readWeightChunk(b2, l2, isGate ? g : u, blk.group,
                                           stored[row], k, exact);
                  });
              for (int64_t i = 0; i < tileCols; ++i) {
                Value act = arith::MulFOp::create(
                    b1, l1, emitSilu(b1, l1, sums[i]), sums[tileCols + i]);
                acc = tensor::InsertOp::create(
                    b1, l1, act, acc,
                    ValueRange{local, indexConst(b1, l1, i)});
              }
              return acc;
            });
      });
}

/// Column tiles of D: a block reads rows [d0, d0 + tile) of its expert's
/// down projection and writes each row's product times its routing weight;
/// the combine then adds every token's rows in slot order (through the
/// inverse of the permutation), so the sum is deterministic without atomics.
Value emitExpertDownCombine(Emitter &e, Value act, Value weights,
                            const ExpertRows &rows, const WeightView &down,
                            const WeightView &sharedDown) {
  const int64_t hidden =
      cast<RankedTensorType>(down.view.getType()).getDimSize(1);
  const int64_t tileCols = hidden % kRowsPerTile == 0 ? kRowsPerTile : 1;
  const bool exact = rows.inter % kVectorLanes == 0;
  Value numTokens = tensor::DimOp::create(e.b, e.loc, weights, 0);
  Value downBuffer = prefetchBuffer(e, down), sharedDownBuffer;
  if (rows.sharedSlots > 0)
    sharedDownBuffer = prefetchBuffer(e, sharedDown);
  Value perRow = emitExpertBlocks(
      e, rows, numTokens, hidden, tileCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &w = blk.shared ? sharedDown : down;
        Value buf = blk.shared ? sharedDownBuffer : downBuffer;
        SmallVector<Value> stored, ahead;
        std::tie(stored, ahead) = tileRowsAndNext(b, loc, blk.col0, tileCols);
        return forEachBlockRow(
            b, loc, block, blk.lo,
            [&](OpBuilder &b1, Location l1, Value r, Value local,
                Value acc) -> Value {
              // A shared slot reads its own I columns of shared_down; past
              // the slot's end the activations are zero-padded.
              SmallVector<Value> sums = emitDots(
                  b1, l1, tileCols, rows.inter,
                  [&](OpBuilder &b2, Location l2, Value c) {
                    return readActivations(b2, l2, act, r, c, exact);
                  },
                  [&](OpBuilder &b2, Location l2, int64_t i, Value c) {
                    Value col = arith::AddIOp::create(b2, l2, blk.slotStart, c);
                    prefetch(b2, l2, buf, blk.group, ahead[i], col);
                    return readWeightChunk(b2, l2, w, blk.group, stored[i],
                                           col, exact);
                  });
              Value scale;
              if (blk.shared) {
                scale = arith::ConstantOp::create(b1, l1,
                                                  b1.getF32FloatAttr(1.0f));
              } else {
                scale = routingWeightOfPair(
                    b1, l1, rows, weights, extractIndex(b1, l1, rows.order, r));
              }
              for (int64_t i = 0; i < tileCols; ++i)
                acc = tensor::InsertOp::create(
                    b1, l1, arith::MulFOp::create(b1, l1, scale, sums[i]), acc,
                    ValueRange{local, indexConst(b1, l1, i)});
              return acc;
            });
      });

  return emitExpertCombine(e, perRow, weights, rows);
}

/// The combine adds every token's rows in slot order (through the inverse
/// of the permutation): deterministic, no atomics.
Value emitExpertCombine(Emitter &e, Value perRow, Value weights,
                        const ExpertRows &rows) {
  const int64_t hidden =
      cast<RankedTensorType>(perRow.getType()).getDimSize(1);
  Value numTokens = tensor::DimOp::create(e.b, e.loc, weights, 0);
  // rowOf[p] = the row of pair p (the inverse of the permutation).
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  Type i64 = e.b.getI64Type();
  auto invert = scf::ForOp::create(
      e.b, e.loc, e.index(0), numPairs, e.index(1),
      ValueRange{e.empty({numPairs}, i64)},
      [&](OpBuilder &b, Location loc, Value r, ValueRange acc) {
        Value p = extractIndex(b, loc, rows.order, r);
        Value inserted = tensor::InsertOp::create(
            b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), r),
            acc[0], ValueRange{p});
        scf::YieldOp::create(b, loc, ValueRange{inserted});
      });
  Value rowOf = invert.getResult(0);
  // out[n, d] = sum_k perRow[rowOf[n * K + k], d] + sum_j perRow[P + jN + n, d]
  AffineMap id2 = e.b.getMultiDimIdentityMap(2);
  return e.generic(
      {}, e.empty({numTokens, e.b.getIndexAttr(hidden)}), {id2},
      {IteratorType::parallel, IteratorType::parallel},
      [&](OpBuilder &b, Location loc, ValueRange) {
        Value n = linalg::IndexOp::create(b, loc, 0);
        Value d = linalg::IndexOp::create(b, loc, 1);
        Value sum = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
        Value firstPair =
            arith::MulIOp::create(b, loc, n, indexConst(b, loc, rows.topK));
        for (int64_t k = 0; k < rows.topK; ++k) {
          Value p = arith::AddIOp::create(b, loc, firstPair,
                                          indexConst(b, loc, k));
          Value row = extractIndex(b, loc, rowOf, p);
          sum = arith::AddFOp::create(
              b, loc, sum,
              tensor::ExtractOp::create(b, loc, perRow, ValueRange{row, d}));
        }
        for (int64_t j = 0; j < rows.sharedSlots; ++j) {
          Value row = arith::AddIOp::create(
              b, loc, numPairs,
              arith::AddIOp::create(
                  b, loc,
                  arith::MulIOp::create(b, loc, indexConst(b, loc, j),
                                        numTokens),
                  n));
          sum = arith::AddFOp::create(
              b, loc, sum,
              tensor::ExtractOp::create(b, loc, perRow, ValueRange{row, d}));
        }
        linalg::YieldOp::create(b, loc, ValueRange{sum});
      });
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
