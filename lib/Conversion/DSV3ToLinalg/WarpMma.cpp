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

bool isTensorCoreWeight(Value weight, Value scale) {
  return !scale &&
         cast<RankedTensorType>(weight.getType()).getElementType().isBF16();
}

bool canUseExpertMma(ArrayRef<const WeightView *> weights, int64_t outDim,
                     int64_t depth) {
  if (outDim % kMmaCols != 0 || depth % kMmaDepth != 0)
    return false;
  return llvm::all_of(weights, [](const WeightView *w) {
    return !w->view || isTensorCoreWeight(w->view, w->scale);
  });
}

namespace {

/// The bf16 operand A of the tiles: row r of `rows` (value(r, k), f32, for
/// r < P + S * N) rounded to bf16, then a tile's rows of zeros, so a tile's
/// read never leaves the matrix.
Value emitGatheredRows(
    Emitter &e, Value numRows, int64_t depth,
    function_ref<Value(OpBuilder &, Location, Value r, Value k)> value) {
  Value padded = arith::AddIOp::create(e.b, e.loc, numRows,
                                       e.index(e.tensorCores.rows));
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

/// Row r of the expert rows: whether it is a routed pair's (r < P), and
/// that pair, order[min(r, P - 1)] (clamped so a shared slot's row reads in
/// bounds too; the caller selects).
std::pair<Value, Value> pairOfRow(OpBuilder &b, Location loc,
                                  const ExpertRows &rows, Value r,
                                  Value numPairs) {
  Value routed = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, r,
                                       numPairs);
  Value lastPair =
      arith::SubIOp::create(b, loc, numPairs, indexConst(b, loc, 1));
  Value pair = extractIndex(b, loc, rows.order,
                            arith::MinUIOp::create(b, loc, r, lastPair));
  return {routed, pair};
}

/// The token row r of the expert rows reads: pair order[r] / topK for a
/// routed row, (r - P) mod N for a shared slot's.
Value tokenOfRow(OpBuilder &b, Location loc, const ExpertRows &rows, Value r,
                 Value numPairs, Value numTokens) {
  auto [routed, pair] = pairOfRow(b, loc, rows, r, numPairs);
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

/// The in-bounds [rows x 16] A tile at (i, j) of a 2-D bf16 matrix.
Value readTileA(OpBuilder &b, Location loc, Value matrix, Value i, Value j,
                int64_t rows) {
  return readBf16Tile(b, loc, matrix, ValueRange{i, j}, 0, 1, rows,
                      /*inBounds=*/true);
}

/// The in-bounds [cols x 16] B tile at (group, n, k) of a weight view
/// [G, N, K].
Value readTileB(OpBuilder &b, Location loc, Value view, Value group, Value n,
                Value k, int64_t cols) {
  return readBf16Tile(b, loc, view, ValueRange{group, n, k}, 1, 2, cols,
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

/// The tiles' loop: for k in [0, depth) step 16, each [rows x cols]
/// accumulator i gets A(k) . B_i(k); returns the accumulators.
SmallVector<Value> emitTileLoop(
    OpBuilder &b, Location loc, OpFoldResult depth, int64_t rows,
    int64_t cols, unsigned numAcc,
    function_ref<Value(OpBuilder &, Location, Value k)> readA,
    function_ref<Value(OpBuilder &, Location, unsigned i, Value k)> readB) {
  auto accType = VectorType::get({rows, cols}, b.getF32Type());
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

/// Writes the warp's [rows, cols] tiles side by side into `block` (tile i
/// at column cols * i): the rows and columns past the block's end (another
/// group's rows, the matrix's last columns) are masked off.
Value writeTiles(OpBuilder &b, Location loc, ArrayRef<Value> tiles,
                 Value block) {
  Value zero = indexConst(b, loc, 0);
  for (auto [i, tile] : llvm::enumerate(tiles)) {
    const int64_t cols = cast<VectorType>(tile.getType()).getDimSize(1);
    block = vector::TransferWriteOp::create(
                b, loc, tile, block,
                ValueRange{zero, indexConst(b, loc, i * cols)},
                ArrayRef<bool>{false, false})
                .getResult();
  }
  return block;
}

/// Runs `compute` (which returns the warp's tiles) only for a block
/// with rows, and writes the tiles' rows that exist into the block.
Value fillTiles(OpBuilder &b, Location loc, Value block,
                function_ref<SmallVector<Value>(OpBuilder &, Location)> compute) {
  Value rowsHere = tensor::DimOp::create(b, loc, block, 0);
  Value any = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ugt,
                                    rowsHere, indexConst(b, loc, 0));
  auto branch = scf::IfOp::create(
      b, loc, any,
      [&](OpBuilder &b1, Location l1) {
        scf::YieldOp::create(
            b1, l1, ValueRange{writeTiles(b1, l1, compute(b1, l1), block)});
      },
      [&](OpBuilder &b1, Location l1) {
        scf::YieldOp::create(b1, l1, ValueRange{block});
      });
  return branch.getResult(0);
}

/// The 8-column tiles a warp computes side by side, sharing its A tile: up
/// to kMmaColTilesPerWarp, dividing the width's 8-column tiles.
int64_t colTilesPerWarp(int64_t width) {
  int64_t tiles = kMmaColTilesPerWarp;
  while ((width / kMmaCols) % tiles != 0)
    tiles /= 2;
  return tiles;
}

/// The columns of one accumulator when a warp(group) computes `tiles`
/// 8-column tiles side by side: 8 with 16-row tiles (one mma.sync m16n8k16
/// each), all of them with 64-row tiles (one wgmma m64nNk16 for N = 8 *
/// tiles: one instruction, one staged B tile and one wait per K step).
int64_t accumulatorCols(const Emitter &e, int64_t tiles) {
  return e.tensorCores.rows == 64 ? tiles * kMmaCols : kMmaCols;
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
  const int64_t tiles = colTilesPerWarp(rows.inter);
  const int64_t tileRows = e.tensorCores.rows;
  const int64_t accCols = accumulatorCols(e, tiles);
  const int64_t accs = tiles * kMmaCols / accCols; // per weight
  return emitExpertBlocks(
      e, rows, numTokens, rows.inter, tiles * kMmaCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &g = blk.shared ? sharedGate : gate;
        const WeightView &u = blk.shared ? sharedUp : up;
        Value n0 = arith::AddIOp::create(b, loc, blk.slotStart, blk.col0);
        return fillTiles(b, loc, block, [&](OpBuilder &b1, Location l1) {
          // Accumulators: the gate tiles, then the up tiles.
          SmallVector<Value> acc = emitTileLoop(
              b1, l1, b1.getIndexAttr(hidden), tileRows, accCols, 2 * accs,
              [&](OpBuilder &b2, Location l2, Value k) {
                return readTileA(b2, l2, a, blk.lo, k, tileRows);
              },
              [&](OpBuilder &b2, Location l2, unsigned i, Value k) {
                Value n = arith::AddIOp::create(
                    b2, l2, n0, indexConst(b2, l2, (i % accs) * accCols));
                return readTileB(b2, l2, (i < accs ? g : u).view, blk.group,
                                 n, k, accCols);
              });
          SmallVector<Value> act;
          for (int64_t i = 0; i < accs; ++i)
            act.push_back(arith::MulFOp::create(
                b1, l1, emitSilu(b1, l1, acc[i]), acc[accs + i]));
          return act;
        });
      },
      tileRows);
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
        auto [routed, pair] = pairOfRow(b, loc, rows, r, numPairs);
        Value w = routingWeightOfPair(b, loc, rows, weights, pair);
        Value one = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(1));
        Value scale = arith::SelectOp::create(b, loc, routed, w, one);
        Value v = tensor::ExtractOp::create(b, loc, act, ValueRange{r, k});
        return arith::MulFOp::create(b, loc, scale, v);
      });
  const int64_t tiles = colTilesPerWarp(hidden);
  const int64_t tileRows = e.tensorCores.rows;
  const int64_t accCols = accumulatorCols(e, tiles);
  return emitExpertBlocks(
      e, rows, numTokens, hidden, tiles * kMmaCols,
      [&](OpBuilder &b, Location loc, const ExpertBlock &blk, Value block) {
        const WeightView &w = blk.shared ? sharedDown : down;
        return fillTiles(b, loc, block, [&](OpBuilder &b1, Location l1) {
          return emitTileLoop(
              b1, l1, b1.getIndexAttr(rows.inter), tileRows, accCols,
              tiles * kMmaCols / accCols,
              [&](OpBuilder &b2, Location l2, Value k) {
                return readTileA(b2, l2, a, blk.lo, k, tileRows);
              },
              [&](OpBuilder &b2, Location l2, unsigned i, Value k) {
                // A shared slot reads its own I columns of shared_down.
                Value col = arith::AddIOp::create(b2, l2, blk.slotStart, k);
                Value n = arith::AddIOp::create(
                    b2, l2, blk.col0, indexConst(b2, l2, i * accCols));
                return readTileB(b2, l2, w.view, blk.group, n, col, accCols);
              });
        });
      },
      tileRows);
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
  // A warp computes kMmaColTilesPerWarp tiles side by side (sharing its A
  // tile); the last columns are masked.
  const int64_t warpCols = kMmaColTilesPerWarp * kMmaCols;
  const int64_t tileRows = e.tensorCores.rows;
  const int64_t accCols = accumulatorCols(e, kMmaColTilesPerWarp);
  auto forall = scf::ForallOp::create(
      e.b, e.loc,
      ArrayRef<OpFoldResult>{groups, tiles(m, tileRows), tiles(n, warpCols)},
      ValueRange{init}, std::nullopt,
      [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value g = ivsAndOuts[0], out = ivsAndOuts[3];
        Value m0 = arith::MulIOp::create(b, loc, ivsAndOuts[1],
                                         indexConst(b, loc, tileRows));
        Value n0 = arith::MulIOp::create(b, loc, ivsAndOuts[2],
                                         indexConst(b, loc, warpCols));
        // The tile's slice of the output: the rows and columns that exist.
        auto left = [&](OpFoldResult extent, Value start, int64_t tile) {
          Value rest = arith::SubIOp::create(
              b, loc, getValueOrCreateConstantIndexOp(b, loc, extent), start);
          return arith::MinUIOp::create(b, loc, rest, indexConst(b, loc, tile))
              .getResult();
        };
        SmallVector<OpFoldResult> offsets{g, m0, n0};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1),
                                        left(m, m0, tileRows),
                                        left(n, n0, warpCols)};
        SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
        auto blockType = RankedTensorType::get(
            {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
        Value block = tensor::ExtractSliceOp::create(b, loc, blockType, out,
                                                     offsets, sizes, strides);
        SmallVector<Value> acc = emitTileLoop(
            b, loc, depth, tileRows, accCols, warpCols / accCols,
            [&](OpBuilder &b1, Location l1, Value k) {
              return readBf16Tile(b1, l1, a, ValueRange{g, m0, k}, 1, 2,
                                  tileRows, /*inBounds=*/false);
            },
            [&](OpBuilder &b1, Location l1, unsigned i, Value k) {
              SmallVector<Value> at{g, g, g};
              at[nDim] = arith::AddIOp::create(
                  b1, l1, n0, indexConst(b1, l1, i * accCols));
              at[kDim] = k;
              return readBf16Tile(b1, l1, bSource, at, nDim, kDim, accCols,
                                  /*inBounds=*/false);
            });
        Value written = writeTiles(b, loc, acc, block);
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
