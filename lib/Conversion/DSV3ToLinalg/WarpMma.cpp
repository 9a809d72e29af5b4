//===- WarpMma.cpp - GEMMs as warp MMA tiles (tensor cores) ---------------===//
//
// See WarpMma.h.
//
//===----------------------------------------------------------------------===//

#include "WarpMma.h"

#include "Elementwise.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

bool canUseExpertMma(ArrayRef<const WeightView *> weights, int64_t outDim,
                     int64_t depth) {
  if (outDim % kMmaCols != 0 || depth % kMmaDepth != 0)
    return false;
  return llvm::all_of(weights, [](const WeightView *w) {
    return !w->view ||
           (!w->scale && cast<RankedTensorType>(w->view.getType())
                             .getElementType()
                             .isBF16());
  });
}

namespace {

/// The bf16 operand A of the tiles: row r of `rows` (value(r, k), f32, for
/// r < P + S * N) rounded to bf16, then kMmaRows zero rows, so a tile's
/// 16-row read never leaves the matrix.
Value emitGatheredRows(
    Emitter &e, Value numRows, int64_t depth,
    function_ref<Value(OpBuilder &, Location, Value r, Value k)> value) {
  Value padded =
      arith::AddIOp::create(e.b, e.loc, numRows, e.index(kMmaRows));
  Type bf16 = e.b.getBF16Type();
  Value init = e.empty({padded, e.b.getIndexAttr(depth)}, bf16);
  AffineMap id2 = e.b.getMultiDimIdentityMap(2);
  return linalg::GenericOp::create(
             e.b, e.loc, TypeRange{init.getType()}, ValueRange{},
             ValueRange{init}, ArrayRef<AffineMap>{id2},
             ArrayRef<IteratorType>{IteratorType::parallel,
                                    IteratorType::parallel},
             [&](OpBuilder &b, Location loc, ValueRange) {
               Value r = linalg::IndexOp::create(b, loc, 0);
               Value k = linalg::IndexOp::create(b, loc, 1);
               Value inRows = arith::CmpIOp::create(
                   b, loc, arith::CmpIPredicate::ult, r, numRows);
               // Read a clamped row (in bounds either way), keep it or 0.
               Value last = arith::SubIOp::create(b, loc, numRows,
                                                  indexConst(b, loc, 1));
               Value row = arith::MinUIOp::create(b, loc, r, last);
               Value v = value(b, loc, row, k);
               Value zero =
                   arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
               v = arith::SelectOp::create(b, loc, inRows, v, zero);
               linalg::YieldOp::create(
                   b, loc, ValueRange{arith::TruncFOp::create(b, loc, bf16, v)});
             })
      .getResult(0);
}

/// The token row r of the expert rows reads: pair order[r] / topK for a
/// routed row, (r - P) mod N for a shared slot's.
Value tokenOfRow(OpBuilder &b, Location loc, const ExpertRows &rows, Value r,
                 Value numPairs, Value numTokens) {
  Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, r,
                                       numPairs);
  Value lastPair =
      arith::SubIOp::create(b, loc, numPairs, indexConst(b, loc, 1));
  Value pair = extractIndex(b, loc, rows.order,
                            arith::MinUIOp::create(b, loc, r, lastPair));
  Value routedToken =
      arith::DivUIOp::create(b, loc, pair, indexConst(b, loc, rows.topK));
  Value sharedToken = arith::RemUIOp::create(
      b, loc,
      arith::SubIOp::create(b, loc, arith::MaxUIOp::create(b, loc, r, numPairs),
                            numPairs),
      numTokens);
  return arith::SelectOp::create(b, loc, routed, routedToken, sharedToken);
}

/// A [rows x 16] operand tile of `source` (bf16 or f32, any rank) at
/// `indices`, the tile's rows on source dim rowDim and its columns on colDim:
/// read (masked past the source's end unless inBounds), rounded to bf16 if
/// the source is f32, and widened back to f32 (exactly). This
/// extf(truncf?(transfer_read)) form is what dsv3-gpu-warp-mma loads into
/// mma.sync fragments.
Value readBf16Tile(OpBuilder &b, Location loc, Value source,
                   ValueRange indices, unsigned rowDim, unsigned colDim,
                   int64_t rows, bool inBounds) {
  auto sourceType = cast<ShapedType>(source.getType());
  Type element = sourceType.getElementType();
  Value pad = arith::ConstantOp::create(b, loc, b.getZeroAttr(element));
  AffineMap map = AffineMap::get(
      sourceType.getRank(), 0,
      {b.getAffineDimExpr(rowDim), b.getAffineDimExpr(colDim)},
      b.getContext());
  Value tile = vector::TransferReadOp::create(
      b, loc, VectorType::get({rows, kMmaDepth}, element), source, indices,
      pad, map, ArrayRef<bool>{inBounds, inBounds});
  if (!element.isBF16())
    tile = arith::TruncFOp::create(
        b, loc, VectorType::get({rows, kMmaDepth}, b.getBF16Type()), tile);
  return arith::ExtFOp::create(
      b, loc, VectorType::get({rows, kMmaDepth}, b.getF32Type()), tile);
}

/// The in-bounds A tile at (i, j) of a 2-D bf16 matrix.
Value readTileA(OpBuilder &b, Location loc, Value matrix, Value i, Value j) {
  return readBf16Tile(b, loc, matrix, ValueRange{i, j}, 0, 1, kMmaRows,
                      /*inBounds=*/true);
}

/// The in-bounds B tile at (group, n, k) of a weight view [G, N, K].
Value readTileB(OpBuilder &b, Location loc, Value view, Value group, Value n,
                Value k) {
  return readBf16Tile(b, loc, view, ValueRange{group, n, k}, 1, 2, kMmaCols,
                      /*inBounds=*/true);
}

/// acc[m, n] += sum_k a[m, k] * b[n, k]: the warp-level operation.
Value mmaStep(OpBuilder &b, Location loc, Value a, Value bt, Value acc) {
  MLIRContext *ctx = b.getContext();
  AffineExpr m = getAffineDimExpr(0, ctx), n = getAffineDimExpr(1, ctx),
             k = getAffineDimExpr(2, ctx);
  auto maps = b.getAffineMapArrayAttr({AffineMap::get(3, 0, {m, k}, ctx),
                                       AffineMap::get(3, 0, {n, k}, ctx),
                                       AffineMap::get(3, 0, {m, n}, ctx)});
  auto iterators = b.getArrayAttr(
      {vector::IteratorTypeAttr::get(ctx, vector::IteratorType::parallel),
       vector::IteratorTypeAttr::get(ctx, vector::IteratorType::parallel),
       vector::IteratorTypeAttr::get(ctx, vector::IteratorType::reduction)});
  return vector::ContractionOp::create(b, loc, a, bt, acc, maps, iterators);
}

/// The tiles' loop: for k in [0, depth) step 16, each accumulator i gets
/// A(k) . B_i(k); returns the accumulators.
SmallVector<Value> emitTileLoop(
    OpBuilder &b, Location loc, OpFoldResult depth, unsigned numAcc,
    function_ref<Value(OpBuilder &, Location, Value k)> readA,
    function_ref<Value(OpBuilder &, Location, unsigned i, Value k)> readB) {
  auto accType = VectorType::get({kMmaRows, kMmaCols}, b.getF32Type());
  Value zero = arith::ConstantOp::create(
      b, loc, DenseElementsAttr::get(accType, 0.0f));
  auto loop = scf::ForOp::create(
      b, loc, indexConst(b, loc, 0),
      getValueOrCreateConstantIndexOp(b, loc, depth),
      indexConst(b, loc, kMmaDepth), SmallVector<Value>(numAcc, zero),
      [&](OpBuilder &b1, Location l1, Value k, ValueRange accs) {
        Value a = readA(b1, l1, k);
        SmallVector<Value> next;
        for (unsigned i = 0; i < numAcc; ++i)
          next.push_back(mmaStep(b1, l1, a, readB(b1, l1, i, k), accs[i]));
        scf::YieldOp::create(b1, l1, next);
      });
  return SmallVector<Value>(loop.getResults());
}

/// Runs `compute` (which returns the [16, 8] tile) only for a block with
/// rows, and writes the tile's rows that exist into the block.
Value fillTile(OpBuilder &b, Location loc, Value block,
               function_ref<Value(OpBuilder &, Location)> compute) {
  Value rowsHere = tensor::DimOp::create(b, loc, block, 0);
  Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt,
                                    rowsHere, indexConst(b, loc, 0));
  auto branch = scf::IfOp::create(
      b, loc, any,
      [&](OpBuilder &b1, Location l1) {
        Value tile = compute(b1, l1);
        Value zero = indexConst(b1, l1, 0);
        // Rows past the block's (another group's) are masked off.
        Value written = vector::TransferWriteOp::create(
                            b1, l1, tile, block, ValueRange{zero, zero},
                            ArrayRef<bool>{false, true})
                            .getResult();
        scf::YieldOp::create(b1, l1, ValueRange{written});
      },
      [&](OpBuilder &b1, Location l1) {
        scf::YieldOp::create(b1, l1, ValueRange{block});
      });
  return branch.getResult(0);
}

/// P + S * N: the rows of the grouped GEMMs.
Value numExpertRows(Emitter &e, const ExpertRows &rows, Value numTokens) {
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  return arith::AddIOp::create(
      e.b, e.loc, numPairs,
      arith::MulIOp::create(e.b, e.loc, numTokens,
                            e.index(rows.sharedSlots)));
}

} // namespace

Value emitExpertGateUpMma(Emitter &e, Value x, const ExpertRows &rows,
                          const WeightView &gate, const WeightView &up,
                          const WeightView &sharedGate,
                          const WeightView &sharedUp) {
  const int64_t hidden = cast<RankedTensorType>(x.getType()).getDimSize(1);
  Value numTokens = tensor::DimOp::create(e.b, e.loc, x, 0);
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  Value a = emitGatheredRows(
      e, numExpertRows(e, rows, numTokens), hidden,
      [&](OpBuilder &b, Location loc, Value r, Value k) -> Value {
        Value token = tokenOfRow(b, loc, rows, r, numPairs, numTokens);
        return tensor::ExtractOp::create(b, loc, x, ValueRange{token, k});
      });
  return emitExpertBlocks(
      e, rows, numTokens, rows.inter, kMmaCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &g = blk.shared ? sharedGate : gate;
        const WeightView &u = blk.shared ? sharedUp : up;
        Value n0 = arith::AddIOp::create(b, loc, blk.slotStart, blk.col0);
        return fillTile(b, loc, block, [&](OpBuilder &b1, Location l1) {
          SmallVector<Value> acc = emitTileLoop(
              b1, l1, b1.getIndexAttr(hidden), 2,
              [&](OpBuilder &b2, Location l2, Value k) {
                return readTileA(b2, l2, a, blk.lo, k);
              },
              [&](OpBuilder &b2, Location l2, unsigned i, Value k) {
                return readTileB(b2, l2, (i == 0 ? g : u).view, blk.group, n0,
                                 k);
              });
          return arith::MulFOp::create(b1, l1, emitSilu(b1, l1, acc[0]),
                                       acc[1])
              .getResult();
        });
      },
      kMmaRows);
}

Value emitExpertDownMma(Emitter &e, Value act, Value weights,
                        const ExpertRows &rows, const WeightView &down,
                        const WeightView &sharedDown) {
  const int64_t hidden =
      cast<RankedTensorType>(down.view.getType()).getDimSize(1);
  Value numTokens = tensor::DimOp::create(e.b, e.loc, weights, 0);
  Value numPairs = tensor::DimOp::create(e.b, e.loc, rows.order, 0);
  // A = act scaled by the row's routing weight (1 for a shared slot): the
  // scale commutes with the dot, and the epilogue stays a plain write.
  Value a = emitGatheredRows(
      e, numExpertRows(e, rows, numTokens), rows.inter,
      [&](OpBuilder &b, Location loc, Value r, Value k) -> Value {
        Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                             r, numPairs);
        Value lastPair =
            arith::SubIOp::create(b, loc, numPairs, indexConst(b, loc, 1));
        Value pair = extractIndex(b, loc, rows.order,
                                  arith::MinUIOp::create(b, loc, r, lastPair));
        Value topK = indexConst(b, loc, rows.topK);
        Value w = tensor::ExtractOp::create(
            b, loc, weights,
            ValueRange{arith::DivUIOp::create(b, loc, pair, topK),
                       arith::RemUIOp::create(b, loc, pair, topK)});
        Value one = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1));
        Value scale = arith::SelectOp::create(b, loc, routed, w, one);
        Value v = tensor::ExtractOp::create(b, loc, act, ValueRange{r, k});
        return arith::MulFOp::create(b, loc, scale, v);
      });
  return emitExpertBlocks(
      e, rows, numTokens, hidden, kMmaCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &w = blk.shared ? sharedDown : down;
        return fillTile(b, loc, block, [&](OpBuilder &b1, Location l1) {
          return emitTileLoop(
              b1, l1, b1.getIndexAttr(rows.inter), 1,
              [&](OpBuilder &b2, Location l2, Value k) {
                return readTileA(b2, l2, a, blk.lo, k);
              },
              [&](OpBuilder &b2, Location l2, unsigned, Value k) {
                // A shared slot reads its own I columns of shared_down.
                Value col = arith::AddIOp::create(b2, l2, blk.slotStart, k);
                return readTileB(b2, l2, w.view, blk.group, blk.col0, col);
              })[0];
        });
      },
      kMmaRows);
}

Value emitBatchedWarpGemm(Emitter &e, Value a, Value bSource, unsigned nDim,
                          unsigned kDim) {
  OpFoldResult groups = e.dim(a, 0), m = e.dim(a, 1), depth = e.dim(a, 2);
  OpFoldResult n = e.dim(bSource, nDim);
  Value init = e.empty({groups, m, n});
  auto tiles = [&](OpFoldResult extent, int64_t tile) -> OpFoldResult {
    return arith::CeilDivUIOp::create(
               e.b, e.loc, getValueOrCreateConstantIndexOp(e.b, e.loc, extent),
               e.index(tile))
        .getResult();
  };
  auto forall = scf::ForallOp::create(
      e.b, e.loc,
      ArrayRef<OpFoldResult>{groups, tiles(m, kMmaRows), tiles(n, kMmaCols)},
      ValueRange{init}, std::nullopt,
      [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value g = ivsAndOuts[0], out = ivsAndOuts[3];
        Value m0 = arith::MulIOp::create(b, loc, ivsAndOuts[1],
                                         indexConst(b, loc, kMmaRows));
        Value n0 = arith::MulIOp::create(b, loc, ivsAndOuts[2],
                                         indexConst(b, loc, kMmaCols));
        // The tile's slice of the output: the rows and columns that exist.
        auto left = [&](OpFoldResult extent, Value start, int64_t tile) {
          Value rest = arith::SubIOp::create(
              b, loc, getValueOrCreateConstantIndexOp(b, loc, extent), start);
          return arith::MinUIOp::create(b, loc, rest, indexConst(b, loc, tile))
              .getResult();
        };
        SmallVector<OpFoldResult> offsets{g, m0, n0};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1),
                                        left(m, m0, kMmaRows),
                                        left(n, n0, kMmaCols)};
        SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
        auto blockType = RankedTensorType::get(
            {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
        Value block = tensor::ExtractSliceOp::create(b, loc, blockType, out,
                                                     offsets, sizes, strides);
        Value acc = emitTileLoop(
            b, loc, depth, 1,
            [&](OpBuilder &b1, Location l1, Value k) {
              return readBf16Tile(b1, l1, a, ValueRange{g, m0, k}, 1, 2,
                                  kMmaRows, /*inBounds=*/false);
            },
            [&](OpBuilder &b1, Location l1, unsigned, Value k) {
              SmallVector<Value> at{g, g, g};
              at[nDim] = n0;
              at[kDim] = k;
              return readBf16Tile(b1, l1, bSource, at, nDim, kDim, kMmaCols,
                                  /*inBounds=*/false);
            })[0];
        Value zero = indexConst(b, loc, 0);
        Value written = vector::TransferWriteOp::create(
                            b, loc, acc, block, ValueRange{zero, zero},
                            ArrayRef<bool>{false, false})
                            .getResult();
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(b, loc, written, out, offsets,
                                              sizes, strides);
      });
  return forall.getResult(0);
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
