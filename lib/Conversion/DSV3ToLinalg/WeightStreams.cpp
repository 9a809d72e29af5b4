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
static Value decodeFp8Vector(OpBuilder &b, Location loc, Value codes) {
  auto vecType = cast<VectorType>(codes.getType());
  int64_t lanes = vecType.getNumElements();
  auto i8v = VectorType::get({lanes}, b.getI8Type());
  auto i32v = VectorType::get({lanes}, b.getI32Type());
  auto f32v = VectorType::get({lanes}, b.getF32Type());
  auto splat = [&](int64_t v) -> Value {
    return arith::ConstantOp::create(
        b, loc, DenseElementsAttr::get(i32v, b.getI32IntegerAttr(v)));
  };
  Value u = arith::ExtUIOp::create(
      b, loc, i32v, arith::BitcastOp::create(b, loc, i8v, codes));
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
  return arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      tensor::ExtractOp::create(b, loc, w.groupIndex, ValueRange{g}));
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

/// Reads 16 elements of matrix `group` of the view at (row, col), widened to
/// f32 and multiplied by their block scale: what both kernels do with every
/// weight chunk. `exact` says the chunk never crosses the row's end.
static Value readWeightChunk(OpBuilder &b, Location loc, const WeightView &w,
                             Value group, Value row, Value col, bool exact) {
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

/// Grouped row dots: out[g, p, r] = sum_k a[g, p, k] * widen(w[g, r, k]).
///
/// This is the weight stream of decode. Rows of w are split into tiles handed
/// out by a parallel loop (scf.forall -> OpenMP); within a tile, for each p,
/// a 16-lane FMA loop over k reads the tile's rows once (they stay in L1
/// across p), widens them in registers and keeps one accumulator per row, so
/// the loads of a are shared and the FMA chains independent. K tails are
/// masked transfer reads.

Value emitGroupedDots(Emitter &e, Value a, const WeightView &w) {
  auto aType = cast<RankedTensorType>(a.getType());
  auto wType = cast<RankedTensorType>(w.view.getType());
  const int64_t inDim = aType.getDimSize(2);
  const int64_t outStatic = wType.getDimSize(1);
  Type weightElement = wType.getElementType();
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
  auto f32v = VectorType::get({kVectorLanes}, e.f32());
  const bool exact = inDim % kVectorLanes == 0;
  // A buffer view of the weights for software prefetch: each tile fetches
  // the next tile's rows while it streams its own, so the short row streams
  // do not wait for the hardware prefetcher to ramp up.
  auto dynamicLayout = StridedLayoutAttr::get(
      e.b.getContext(), ShapedType::kDynamic,
      SmallVector<int64_t>(wType.getRank(), ShapedType::kDynamic));
  Value weightBuffer = bufferization::ToBufferOp::create(
      e.b, e.loc,
      MemRefType::get(wType.getShape(), weightElement, dynamicLayout), w.view,
      /*read_only=*/true);

  auto forall = scf::ForallOp::create(
      e.b, e.loc, ArrayRef<OpFoldResult>{groups, numTiles}, ValueRange{init},
      std::nullopt, [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value g = ivsAndOuts[0], tile = ivsAndOuts[1];
        Value shared = ivsAndOuts[2];
        Value wg = viewGroup(b, loc, w, g);
        Value n0 =
            arith::MulIOp::create(b, loc, tile, indexConst(b, loc, tileRows));
        SmallVector<Value> rowIdx;
        for (int64_t r = 0; r < tileRows; ++r)
          rowIdx.push_back(
              r == 0 ? n0
                     : arith::AddIOp::create(b, loc, n0, indexConst(b, loc, r))
                           .getResult());
        // The tile is the forall's own slice of the output (destination
        // passing), so bufferization writes it in place: no allocation or
        // copy per tile.
        SmallVector<OpFoldResult> tileSizes{rows, b.getIndexAttr(tileRows)};
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
        auto mLoop = scf::ForOp::create(
            b, loc, indexConst(b, loc, 0), numRows, indexConst(b, loc, 1),
            ValueRange{tileInit},
            [&](OpBuilder &b2, Location l2, Value m, ValueRange mArgs) {
              Value zeroVec = arith::ConstantOp::create(
                  b2, l2, DenseElementsAttr::get(f32v, b2.getF32FloatAttr(0)));
              SmallVector<Value> accInit(tileRows, zeroVec);
              auto kLoop = scf::ForOp::create(
                  b2, l2, indexConst(b2, l2, 0), indexConst(b2, l2, inDim),
                  indexConst(b2, l2, kVectorLanes), accInit,
                  [&](OpBuilder &b3, Location l3, Value k, ValueRange acc) {
                    Value xPad = arith::ConstantOp::create(
                        b3, l3, b3.getF32FloatAttr(0));
                    Value xv = vector::TransferReadOp::create(
                        b3, l3, f32v, a, ValueRange{g, m, k}, xPad,
                        ArrayRef<bool>{exact});
                    SmallVector<Value> next;
                    for (int64_t r = 0; r < tileRows; ++r) {
                      Value ahead = arith::AddIOp::create(
                          b3, l3, rowIdx[r], indexConst(b3, l3, tileRows));
                      memref::PrefetchOp::create(
                          b3, l3, weightBuffer, ValueRange{wg, ahead, k},
                          /*isWrite=*/false, /*localityHint=*/3,
                          /*isDataCache=*/true);
                      Value wide = readWeightChunk(b3, l3, w, wg, rowIdx[r],
                                                   k, exact);
                      next.push_back(
                          vector::FMAOp::create(b3, l3, xv, wide, acc[r]));
                    }
                    scf::YieldOp::create(b3, l3, next);
                  });
              Value tileAcc = mArgs[0];
              for (int64_t r = 0; r < tileRows; ++r) {
                Value sum = vector::ReductionOp::create(
                    b2, l2, vector::CombiningKind::ADD, kLoop.getResult(r));
                tileAcc = tensor::InsertOp::create(
                    b2, l2, sum, tileAcc, ValueRange{m, indexConst(b2, l2, r)});
              }
              scf::YieldOp::create(b2, l2, ValueRange{tileAcc});
            });
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(
            b, loc, mLoop.getResult(0), shared, tileOffsets, tileShape,
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
  const int64_t width = wType.getDimSize(2);
  OpFoldResult groups = e.dim(a, 0), rows = e.dim(a, 1), depth = e.dim(a, 2);
  Value init = e.empty({groups, rows, e.b.getIndexAttr(width)});
  Value numRows = getValueOrCreateConstantIndexOp(e.b, e.loc, rows);
  Value numDepth = getValueOrCreateConstantIndexOp(e.b, e.loc, depth);
  auto f32v = VectorType::get({kVectorLanes}, e.f32());
  const bool exact = width % kVectorLanes == 0;
  auto rowType = RankedTensorType::get({width}, e.f32());

  auto forall = scf::ForallOp::create(
      e.b, e.loc, ArrayRef<OpFoldResult>{groups, numRows}, ValueRange{init},
      std::nullopt, [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value g = ivsAndOuts[0], m = ivsAndOuts[1], shared = ivsAndOuts[2];
        Value wg = viewGroup(b, loc, w, g);
        // Accumulate in the forall's own slice of the output (destination
        // passing: written in place, no allocation per row).
        Value zero = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
        Value slice = tensor::ExtractSliceOp::create(
            b, loc, rowType, shared,
            SmallVector<OpFoldResult>{g, m, b.getIndexAttr(0)},
            SmallVector<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                                      b.getIndexAttr(width)},
            SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
        Value row =
            linalg::FillOp::create(b, loc, ValueRange{zero}, ValueRange{slice})
                .getResult(0);
        auto dLoop = scf::ForOp::create(
            b, loc, indexConst(b, loc, 0), numDepth, indexConst(b, loc, 1),
            ValueRange{row},
            [&](OpBuilder &b2, Location l2, Value d, ValueRange dArgs) {
              Value coefficient = vector::BroadcastOp::create(
                  b2, l2, f32v,
                  tensor::ExtractOp::create(b2, l2, a, ValueRange{g, m, d}));
              auto cLoop = scf::ForOp::create(
                  b2, l2, indexConst(b2, l2, 0), indexConst(b2, l2, width),
                  indexConst(b2, l2, kVectorLanes), dArgs,
                  [&](OpBuilder &b3, Location l3, Value c, ValueRange cArgs) {
                    Value fPad = arith::ConstantOp::create(
                        b3, l3, b3.getF32FloatAttr(0));
                    Value acc = vector::TransferReadOp::create(
                        b3, l3, f32v, cArgs[0], ValueRange{c}, fPad,
                        ArrayRef<bool>{exact});
                    Value wide = readWeightChunk(b3, l3, w, wg, d, c, exact);
                    Value sum =
                        vector::FMAOp::create(b3, l3, coefficient, wide, acc);
                    Value written = vector::TransferWriteOp::create(
                                        b3, l3, sum, cArgs[0], ValueRange{c},
                                        ArrayRef<bool>{exact})
                                        .getResult();
                    scf::YieldOp::create(b3, l3, ValueRange{written});
                  });
              scf::YieldOp::create(b2, l2, cLoop.getResults());
            });
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(
            b, loc, dLoop.getResult(0), shared,
            SmallVector<OpFoldResult>{g, m, b.getIndexAttr(0)},
            SmallVector<OpFoldResult>{b.getIndexAttr(1), b.getIndexAttr(1),
                                      b.getIndexAttr(width)},
            SmallVector<OpFoldResult>(3, b.getIndexAttr(1)));
      });
  return forall.getResult(0);
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
    SmallVector<ReassociationIndices> reassoc{{}};
    for (int64_t i = 0; i < rank - 1; ++i)
      reassoc[0].push_back(i);
    reassoc.push_back({rank - 1});
    int64_t m = 1;
    for (int64_t d : xType.getShape().drop_back())
      m = (ShapedType::isDynamic(d) || ShapedType::isDynamic(m))
              ? ShapedType::kDynamic
              : m * d;
    x2 = tensor::CollapseShapeOp::create(
        e.b, e.loc, RankedTensorType::get({m, inDim}, e.f32()), x, reassoc);
  }
  WeightView view{addUnitGroup(e, w), scale, nullptr};
  Value out3 = emitGroupedDots(e, addUnitGroup(e, x2), view);
  auto out3Type = cast<RankedTensorType>(out3.getType());
  Value out = tensor::CollapseShapeOp::create(
      e.b, e.loc,
      RankedTensorType::get(out3Type.getShape().drop_front(), e.f32()), out3,
      SmallVector<ReassociationIndices>{{0, 1}, {2}});
  if (rank == 2)
    return out;
  SmallVector<ReassociationIndices> reassoc{{}};
  for (int64_t i = 0; i < rank - 1; ++i)
    reassoc[0].push_back(i);
  reassoc.push_back({rank - 1});
  SmallVector<int64_t> shape(xType.getShape().drop_back());
  shape.push_back(outDim);
  SmallVector<OpFoldResult> outSizes = e.sizesOf(x);
  outSizes.back() = e.b.getIndexAttr(outDim);
  return tensor::ExpandShapeOp::create(e.b, e.loc,
                                       RankedTensorType::get(shape, e.f32()),
                                       out, reassoc, outSizes);
}

//===----------------------------------------------------------------------===//
// Grouped expert GEMMs
//===----------------------------------------------------------------------===//

namespace {

/// One row of a grouped expert GEMM, as the row loops hand it to a kernel.
struct ExpertRow {
  bool shared;     // a shared-expert slot (else a routed pair)
  Value group;     // the matrix of the weight view it reads
  Value slotStart; // first stored row (gate/up) or column (down) of its slot
  Value row;       // r, its row of the activations
  Value token;     // n
  Value pair;      // p = order[r] for a routed row
};

using ExpertRowBody =
    function_ref<Value(OpBuilder &, Location, const ExpertRow &, Value)>;

Value extractIndex(OpBuilder &b, Location loc, Value tensor, Value i) {
  return arith::IndexCastOp::create(
      b, loc, b.getIndexType(),
      tensor::ExtractOp::create(b, loc, tensor, ValueRange{i}));
}

/// Runs `body` over every row of `rows`, threading `tile` through: the
/// experts in order, each over its pairs (an expert nobody chose is an empty
/// loop, so its weights are never touched), then the shared slots over the
/// tokens.
Value forEachExpertRow(OpBuilder &b, Location loc, const ExpertRows &rows,
                       Value numTokens, Value tile, ExpertRowBody body) {
  Value c0 = indexConst(b, loc, 0), c1 = indexConst(b, loc, 1);
  Value topK = indexConst(b, loc, rows.topK);
  auto experts = scf::ForOp::create(
      b, loc, c0, indexConst(b, loc, rows.experts), c1, ValueRange{tile},
      [&](OpBuilder &b1, Location l1, Value ex, ValueRange outer) {
        Value lo = extractIndex(b1, l1, rows.offsets, ex);
        Value hi = extractIndex(b1, l1, rows.offsets,
                                arith::AddIOp::create(b1, l1, ex, c1));
        auto pairs = scf::ForOp::create(
            b1, l1, lo, hi, c1, outer,
            [&](OpBuilder &b2, Location l2, Value r, ValueRange inner) {
              Value pair = extractIndex(b2, l2, rows.order, r);
              Value token = arith::DivUIOp::create(b2, l2, pair, topK);
              ExpertRow row{false, ex, c0, r, token, pair};
              scf::YieldOp::create(b2, l2,
                                   ValueRange{body(b2, l2, row, inner[0])});
            });
        scf::YieldOp::create(b1, l1, pairs.getResults());
      });
  Value result = experts.getResult(0);
  if (rows.sharedSlots == 0)
    return result;
  Value numPairs = tensor::DimOp::create(b, loc, rows.order, 0);
  auto slots = scf::ForOp::create(
      b, loc, c0, indexConst(b, loc, rows.sharedSlots), c1, ValueRange{result},
      [&](OpBuilder &b1, Location l1, Value j, ValueRange outer) {
        Value slotStart =
            arith::MulIOp::create(b1, l1, j, indexConst(b1, l1, rows.inter));
        Value firstRow = arith::AddIOp::create(
            b1, l1, numPairs, arith::MulIOp::create(b1, l1, j, numTokens));
        auto tokens = scf::ForOp::create(
            b1, l1, c0, numTokens, c1, outer,
            [&](OpBuilder &b2, Location l2, Value n, ValueRange inner) {
              Value r = arith::AddIOp::create(b2, l2, firstRow, n);
              ExpertRow row{true, c0, slotStart, r, n, Value()};
              scf::YieldOp::create(b2, l2,
                                   ValueRange{body(b2, l2, row, inner[0])});
            });
        scf::YieldOp::create(b1, l1, tokens.getResults());
      });
  return slots.getResult(0);
}

/// A parallel loop over column tiles of a fresh [numRows, width] output,
/// each iteration computing its [numRows, tileCols] slice with `tileBody`
/// (given the tile's first column and its slice, zero-filled when `zero`).
Value emitColumnTiles(
    Emitter &e, Value numRows, int64_t width, int64_t tileCols, bool zero,
    function_ref<Value(OpBuilder &, Location, Value, Value)> tileBody) {
  Value init = e.empty({numRows, e.b.getIndexAttr(width)});
  auto forall = scf::ForallOp::create(
      e.b, e.loc, ArrayRef<OpFoldResult>{e.b.getIndexAttr(width / tileCols)},
      ValueRange{init}, std::nullopt,
      [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value col0 = arith::MulIOp::create(b, loc, ivsAndOuts[0],
                                           indexConst(b, loc, tileCols));
        SmallVector<OpFoldResult> offsets{b.getIndexAttr(0), col0};
        SmallVector<OpFoldResult> sizes{numRows, b.getIndexAttr(tileCols)};
        SmallVector<OpFoldResult> strides(2, b.getIndexAttr(1));
        Value slice = tensor::ExtractSliceOp::create(
            b, loc,
            RankedTensorType::get({ShapedType::kDynamic, tileCols},
                                  b.getF32Type()),
            ivsAndOuts[1], offsets, sizes, strides);
        if (zero)
          slice = linalg::FillOp::create(
                      b, loc,
                      ValueRange{arith::ConstantOp::create(
                          b, loc, b.getF32FloatAttr(0))},
                      ValueRange{slice})
                      .getResult(0);
        Value done = tileBody(b, loc, col0, slice);
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(b, loc, done, ivsAndOuts[1],
                                              offsets, sizes, strides);
      });
  return forall.getResult(0);
}

/// `count` dot products of length `depth`, 16 lanes at a time: lhs(k) gives
/// the activation chunk at k, rhs(i, k) the weight chunk of product i.
SmallVector<Value>
emitDots(OpBuilder &b, Location loc, int64_t count, int64_t depth,
         function_ref<Value(OpBuilder &, Location, Value)> lhs,
         function_ref<Value(OpBuilder &, Location, int64_t, Value)> rhs) {
  auto f32v = VectorType::get({kVectorLanes}, b.getF32Type());
  Value zeroVec = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(f32v, b.getF32FloatAttr(0)));
  auto kLoop = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0), indexConst(b, loc, depth),
      indexConst(b, loc, kVectorLanes), SmallVector<Value>(count, zeroVec),
      [&](OpBuilder &b1, Location l1, Value k, ValueRange acc) {
        Value a = lhs(b1, l1, k);
        SmallVector<Value> next;
        for (int64_t i = 0; i < count; ++i)
          next.push_back(
              vector::FMAOp::create(b1, l1, a, rhs(b1, l1, i, k), acc[i]));
        scf::YieldOp::create(b1, l1, next);
      });
  SmallVector<Value> sums;
  for (int64_t i = 0; i < count; ++i)
    sums.push_back(vector::ReductionOp::create(
        b, loc, vector::CombiningKind::ADD, kLoop.getResult(i)));
  return sums;
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

/// One parallel pass over column tiles of I: each tile reads rows
/// [i0, i0 + tile) of gate and up of every selected expert (16 KB of bf16
/// for D = 1024, kept in L1 while it serves all of that expert's tokens) and
/// writes silu(gate) * up for every row. Tokens are read through the
/// permutation.
Value emitExpertGateUp(Emitter &e, Value x, const ExpertRows &rows,
                       const WeightView &gate, const WeightView &up,
                       const WeightView &sharedGate,
                       const WeightView &sharedUp) {
  const int64_t hidden = cast<RankedTensorType>(x.getType()).getDimSize(1);
  const int64_t tileCols =
      rows.inter % kRowsPerTile == 0 ? kRowsPerTile : 1;
  const bool exact = hidden % kVectorLanes == 0;
  Value numTokens = tensor::DimOp::create(e.b, e.loc, x, 0);
  Value numRows = arith::AddIOp::create(
      e.b, e.loc, tensor::DimOp::create(e.b, e.loc, rows.order, 0),
      arith::MulIOp::create(e.b, e.loc, numTokens,
                            e.index(rows.sharedSlots)));
  return emitColumnTiles(
      e, numRows, rows.inter, tileCols, /*zero=*/false,
      [&](OpBuilder &b, Location loc, Value i0, Value slice) {
        return forEachExpertRow(
            b, loc, rows, numTokens, slice,
            [&](OpBuilder &b1, Location l1, const ExpertRow &row,
                Value tile) -> Value {
              const WeightView &g = row.shared ? sharedGate : gate;
              const WeightView &u = row.shared ? sharedUp : up;
              Value first = arith::AddIOp::create(b1, l1, row.slotStart, i0);
              SmallVector<Value> storedRows;
              for (int64_t i = 0; i < tileCols; ++i)
                storedRows.push_back(arith::AddIOp::create(
                    b1, l1, first, indexConst(b1, l1, i)));
              // Products 0..tile-1 are gate rows, tile..2*tile-1 up rows.
              SmallVector<Value> sums = emitDots(
                  b1, l1, 2 * tileCols, hidden,
                  [&](OpBuilder &b2, Location l2, Value k) {
                    return readActivations(b2, l2, x, row.token, k, exact);
                  },
                  [&](OpBuilder &b2, Location l2, int64_t i, Value k) {
                    const WeightView &w = i < tileCols ? g : u;
                    return readWeightChunk(b2, l2, w, row.group,
                                           storedRows[i % tileCols], k, exact);
                  });
              for (int64_t i = 0; i < tileCols; ++i) {
                Value act = arith::MulFOp::create(
                    b1, l1, emitSilu(b1, l1, sums[i]), sums[tileCols + i]);
                tile = tensor::InsertOp::create(
                    b1, l1, act, tile,
                    ValueRange{row.row, indexConst(b1, l1, i)});
              }
              return tile;
            });
      });
}

/// One parallel pass over column tiles of D: each tile reads rows
/// [d0, d0 + tile) of down of every selected expert and adds each row's
/// weighted product into its token. A tile owns its output columns for all
/// tokens, so the scatter-add needs no atomics and sums in a fixed order.
Value emitExpertDownCombine(Emitter &e, Value act, Value weights,
                            const ExpertRows &rows, const WeightView &down,
                            const WeightView &sharedDown) {
  const int64_t hidden =
      cast<RankedTensorType>(down.view.getType()).getDimSize(1);
  const int64_t tileCols = hidden % kRowsPerTile == 0 ? kRowsPerTile : 1;
  const bool exact = rows.inter % kVectorLanes == 0;
  Value numTokens = tensor::DimOp::create(e.b, e.loc, weights, 0);
  return emitColumnTiles(
      e, numTokens, hidden, tileCols, /*zero=*/true,
      [&](OpBuilder &b, Location loc, Value d0, Value slice) {
        return forEachExpertRow(
            b, loc, rows, numTokens, slice,
            [&](OpBuilder &b1, Location l1, const ExpertRow &row,
                Value tile) -> Value {
              const WeightView &w = row.shared ? sharedDown : down;
              SmallVector<Value> storedRows;
              for (int64_t i = 0; i < tileCols; ++i)
                storedRows.push_back(
                    arith::AddIOp::create(b1, l1, d0, indexConst(b1, l1, i)));
              // A shared slot reads its own I columns of shared_down; past
              // the slot's end the activations are zero-padded.
              SmallVector<Value> sums = emitDots(
                  b1, l1, tileCols, rows.inter,
                  [&](OpBuilder &b2, Location l2, Value c) {
                    return readActivations(b2, l2, act, row.row, c, exact);
                  },
                  [&](OpBuilder &b2, Location l2, int64_t i, Value c) {
                    Value col = arith::AddIOp::create(b2, l2, row.slotStart, c);
                    return readWeightChunk(b2, l2, w, row.group, storedRows[i],
                                           col, exact);
                  });
              Value scale;
              if (row.shared) {
                scale = arith::ConstantOp::create(b1, l1,
                                                  b1.getF32FloatAttr(1.0f));
              } else {
                Value slot = arith::RemUIOp::create(
                    b1, l1, row.pair, indexConst(b1, l1, rows.topK));
                scale = tensor::ExtractOp::create(b1, l1, weights,
                                                  ValueRange{row.token, slot});
              }
              for (int64_t i = 0; i < tileCols; ++i) {
                Value at[] = {row.token, indexConst(b1, l1, i)};
                Value old = tensor::ExtractOp::create(b1, l1, tile, at);
                Value sum = arith::AddFOp::create(
                    b1, l1, old, arith::MulFOp::create(b1, l1, scale, sums[i]));
                tile = tensor::InsertOp::create(b1, l1, sum, tile, at);
              }
              return tile;
            });
      });
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
