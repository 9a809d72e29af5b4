//===- WarpMma.cpp - GEMMs as warp MMA tiles (tensor cores) ---------------===//
//
// See WarpMma.h.
//
//===----------------------------------------------------------------------===//

#include "WarpMma.h"

#include "Elementwise.h"

#include "mlir/Dialect/Arith/Utils/Utils.h"
#include "mlir/Dialect/Math/IR/Math.h"
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

/// The tiles of `tile` that cover `extent`: ceil(extent / tile).
OpFoldResult tileCount(Emitter &e, OpFoldResult extent, int64_t tile) {
  return arith::CeilDivUIOp::create(
             e.b, e.loc, getValueOrCreateConstantIndexOp(e.b, e.loc, extent),
             e.index(tile))
      .getResult();
}

/// The part of a tile starting at `start` that exists: min(extent - start,
/// tile).
Value tileExtent(OpBuilder &b, Location loc, OpFoldResult extent, Value start,
                 int64_t tile) {
  Value rest = arith::SubIOp::create(
      b, loc, getValueOrCreateConstantIndexOp(b, loc, extent), start);
  return arith::MinUIOp::create(b, loc, rest, indexConst(b, loc, tile));
}

/// A tile's 2-D f32 block of `out` (the dims of size 1 dropped).
Value extractTileBlock(OpBuilder &b, Location loc, Value out,
                       ArrayRef<OpFoldResult> offsets,
                       ArrayRef<OpFoldResult> sizes,
                       ArrayRef<OpFoldResult> strides) {
  auto blockType = RankedTensorType::get(
      {ShapedType::kDynamic, ShapedType::kDynamic}, b.getF32Type());
  return tensor::ExtractSliceOp::create(b, loc, blockType, out, offsets, sizes,
                                        strides);
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
  auto tiles = [&](OpFoldResult extent, int64_t tile) {
    return tileCount(e, extent, tile);
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
          return tileExtent(b, loc, extent, start, tile);
        };
        SmallVector<OpFoldResult> offsets{g, m0, n0};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1),
                                        left(m, m0, tileRows),
                                        left(n, n0, warpCols)};
        SmallVector<OpFoldResult> strides(3, b.getIndexAttr(1));
        Value block = extractTileBlock(b, loc, out, offsets, sizes, strides);
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

namespace {

/// A [rows x 1] per-row value (the online softmax's statistics) of `tiles`'
/// rows: combine(tile[r, :]) over every tile, by `kind` (max or sum). The
/// tiles are combined elementwise first, so one reduction (on the GPU: one
/// exchange among the four threads of a row) serves them all.
Value emitRowReduction(OpBuilder &b, Location loc, ArrayRef<Value> tiles,
                       vector::CombiningKind kind) {
  auto tileType = cast<VectorType>(tiles.front().getType());
  const int64_t rows = tileType.getDimSize(0);
  const bool max = kind == vector::CombiningKind::MAXNUMF;
  const float identity = max ? -std::numeric_limits<float>::infinity() : 0.0f;
  Value combined = tiles.front();
  for (Value tile : tiles.drop_front())
    combined = max ? arith::MaxNumFOp::create(b, loc, combined, tile).getResult()
                   : arith::AddFOp::create(b, loc, combined, tile).getResult();
  Value init = arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(VectorType::get({rows}, b.getF32Type()),
                             identity));
  Value reduced = vector::MultiDimReductionOp::create(
      b, loc, combined, init, ArrayRef<bool>{false, true}, kind);
  return vector::ShapeCastOp::create(
      b, loc, VectorType::get({rows, 1}, b.getF32Type()), reduced);
}

/// A [rows x 1] value broadcast along the columns of `like`'s type.
Value broadcastRows(OpBuilder &b, Location loc, Value column, Type like) {
  return vector::BroadcastOp::create(b, loc, like, column);
}

/// Columns [col0, col0 + width) of the row of tiles `tiles` (equal widths,
/// side by side), width a multiple of their width or a slice of one: the
/// A operand [rows x width] of the next product, still in registers.
Value columnsOf(OpBuilder &b, Location loc, ArrayRef<Value> tiles,
                int64_t col0, int64_t width) {
  auto tileType = cast<VectorType>(tiles.front().getType());
  const int64_t rows = tileType.getDimSize(0), cols = tileType.getDimSize(1);
  if (width <= cols)
    return vector::ExtractStridedSliceOp::create(
        b, loc, tiles[col0 / cols], ArrayRef<int64_t>{0, col0 % cols},
        ArrayRef<int64_t>{rows, width}, ArrayRef<int64_t>{1, 1});
  Value result = arith::ConstantOp::create(
      b, loc,
      DenseElementsAttr::get(VectorType::get({rows, width}, b.getF32Type()),
                             0.0f));
  for (int64_t c = 0; c < width; c += cols)
    result = vector::InsertStridedSliceOp::create(
        b, loc, tiles[(col0 + c) / cols], result, ArrayRef<int64_t>{0, c},
        ArrayRef<int64_t>{1, 1});
  return result;
}

} // namespace

Value emitFlashLatentAttention(Emitter &e, Value q, Value keys, Value values,
                               Value positions, int64_t heads, double scale) {
  OpFoldResult batch = e.dim(q, 0), m = e.dim(q, 1), depth = e.dim(q, 2);
  OpFoldResult used = e.dim(keys, 1), width = e.dim(values, 2);
  auto parallel2 = SmallVector<IteratorType>(2, IteratorType::parallel);
  // The last visible position of each query row: positions[b, row / H].
  Value limitsInit = e.empty({batch, m}, e.b.getIndexType());
  Value limits = linalg::GenericOp::create(
                     e.b, e.loc, TypeRange{limitsInit.getType()},
                     ValueRange{}, ValueRange{limitsInit},
                     ArrayRef<AffineMap>{e.b.getMultiDimIdentityMap(2)},
                     parallel2,
                     [&](OpBuilder &b, Location loc, ValueRange) {
                       Value bi = linalg::IndexOp::create(b, loc, 0);
                       Value row = linalg::IndexOp::create(b, loc, 1);
                       Value s = arith::DivUIOp::create(
                           b, loc, row, indexConst(b, loc, heads));
                       Value p = tensor::ExtractOp::create(
                           b, loc, positions, ValueRange{bi, s});
                       linalg::YieldOp::create(
                           b, loc,
                           ValueRange{arith::IndexCastOp::create(
                               b, loc, b.getIndexType(), p)});
                     })
                     .getResult(0);
  const int64_t tileRows = e.tensorCores.rows;
  const int64_t scoreCols = accumulatorCols(e, kMmaColTilesPerWarp);
  const int64_t valueCols = scoreCols;
  const int64_t numScores = kFlashChunk / scoreCols,
                numValues = kFlashValueCols / valueCols;
  auto ceilDiv = [&](OpFoldResult extent, int64_t tile) {
    return tileCount(e, extent, tile);
  };
  OpFoldResult splits = ceilDiv(used, kFlashSplit);
  // Per split: o unnormalised, and each row's max and sum ([.., M, 1]: the
  // tiles write them as R x 1 columns).
  Value partialInit = e.empty({batch, splits, m, width});
  Value statsInit = e.empty({batch, splits, m, e.b.getIndexAttr(1)});
  auto forall = scf::ForallOp::create(
      e.b, e.loc,
      ArrayRef<OpFoldResult>{batch, ceilDiv(m, tileRows),
                             ceilDiv(width, kFlashValueCols), splits},
      ValueRange{partialInit, statsInit, statsInit}, std::nullopt,
      [&](OpBuilder &b, Location loc, ValueRange ivsAndOuts) {
        Value bi = ivsAndOuts[0], split = ivsAndOuts[3];
        Value outO = ivsAndOuts[4], outMax = ivsAndOuts[5],
              outSum = ivsAndOuts[6];
        Value m0 = arith::MulIOp::create(b, loc, ivsAndOuts[1],
                                         indexConst(b, loc, tileRows));
        Value c0 = arith::MulIOp::create(b, loc, ivsAndOuts[2],
                                         indexConst(b, loc, kFlashValueCols));
        Value firstPosition = arith::MulIOp::create(
            b, loc, split, indexConst(b, loc, kFlashSplit));
        Value lastPosition = arith::MinUIOp::create(
            b, loc,
            arith::AddIOp::create(b, loc, firstPosition,
                                  indexConst(b, loc, kFlashSplit)),
            getValueOrCreateConstantIndexOp(b, loc, used));
        auto left = [&](OpFoldResult extent, Value start, int64_t tile) {
          return tileExtent(b, loc, extent, start, tile);
        };
        Value rowsHere = left(m, m0, tileRows);
        SmallVector<OpFoldResult> offsets{bi, split, m0, c0};
        SmallVector<OpFoldResult> sizes{b.getIndexAttr(1), b.getIndexAttr(1),
                                        rowsHere,
                                        left(width, c0, kFlashValueCols)};
        SmallVector<OpFoldResult> strides(4, b.getIndexAttr(1));
        Value block = extractTileBlock(b, loc, outO, offsets, sizes, strides);
        // The row statistics: written by the first column block only (the
        // others computed the same), as a [rows, 1] slice.
        Value firstColumns = arith::CmpIOp::create(
            b, loc, arith::CmpIPredicate::eq, ivsAndOuts[2],
            indexConst(b, loc, 0));
        Value statRows = arith::SelectOp::create(b, loc, firstColumns,
                                                 rowsHere,
                                                 indexConst(b, loc, 0));
        SmallVector<OpFoldResult> statOffsets{bi, split, m0,
                                              b.getIndexAttr(0)};
        SmallVector<OpFoldResult> statSizes{b.getIndexAttr(1),
                                            b.getIndexAttr(1), statRows,
                                            b.getIndexAttr(1)};
        SmallVector<OpFoldResult> statStrides(4, b.getIndexAttr(1));
        auto statType = RankedTensorType::get({ShapedType::kDynamic, 1},
                                              b.getF32Type());
        auto statBlock = [&](Value out) -> Value {
          return tensor::ExtractSliceOp::create(
              b, loc, statType, out, statOffsets, statSizes, statStrides);
        };

        Type f32 = b.getF32Type();
        auto rowType = VectorType::get({tileRows, 1}, f32);
        auto splat = [&](VectorType type, float v) -> Value {
          return arith::ConstantOp::create(b, loc,
                                           DenseElementsAttr::get(type, v));
        };
        // Rows past M read limit 0: they see position 0 and stay finite.
        Value limitRow = vector::TransferReadOp::create(
            b, loc, VectorType::get({tileRows}, b.getIndexType()), limits,
            ValueRange{bi, m0}, indexConst(b, loc, 0),
            AffineMap::get(2, 0, {b.getAffineDimExpr(1)}, b.getContext()),
            ArrayRef<bool>{false});
        Value limit = vector::ShapeCastOp::create(
            b, loc, VectorType::get({tileRows, 1}, b.getIndexType()),
            limitRow);
        const float negInf = -std::numeric_limits<float>::infinity();
        SmallVector<Value> inits(
            numValues, splat(VectorType::get({tileRows, valueCols}, f32), 0));
        inits.push_back(splat(rowType, negInf)); // running row max
        inits.push_back(splat(rowType, 0));      // running row sum
        auto chunks = scf::ForOp::create(
            b, loc, firstPosition, lastPosition,
            indexConst(b, loc, kFlashChunk), inits,
            [&](OpBuilder &b1, Location l1, Value t0, ValueRange carried) {
              SmallVector<Value> acc(carried.take_front(numValues));
              Value rowMax = carried[numValues], rowSum = carried[numValues + 1];
              // Scores of the chunk's positions t0 .. t0 + 31.
              SmallVector<Value> scores = emitTileLoop(
                  b1, l1, depth, tileRows, scoreCols, numScores,
                  [&](OpBuilder &b2, Location l2, Value k) {
                    return readBf16Tile(b2, l2, q, ValueRange{bi, m0, k}, 1, 2,
                                        tileRows, /*inBounds=*/false);
                  },
                  [&](OpBuilder &b2, Location l2, unsigned i, Value k) {
                    Value t = arith::AddIOp::create(
                        b2, l2, t0, indexConst(b2, l2, i * scoreCols));
                    return readBf16Tile(b2, l2, keys, ValueRange{bi, t, k}, 1,
                                        2, scoreCols, /*inBounds=*/false);
                  });
              // Scaled; -inf where the position is not visible.
              auto scoreType = VectorType::get({tileRows, scoreCols}, f32);
              auto indexType =
                  VectorType::get({tileRows, scoreCols}, b1.getIndexType());
              Value limits2 = broadcastRows(b1, l1, limit, indexType);
              Value colIndex = vector::BroadcastOp::create(
                  b1, l1, indexType,
                  vector::StepOp::create(
                      b1, l1, VectorType::get({scoreCols}, b1.getIndexType())));
              for (size_t i = 0; i < scores.size(); ++i) {
                Value &s = scores[i];
                Value first = arith::AddIOp::create(
                    b1, l1, t0, indexConst(b1, l1, i * scoreCols));
                Value t = arith::AddIOp::create(
                    b1, l1, colIndex,
                    vector::BroadcastOp::create(b1, l1, indexType, first));
                Value visible = arith::CmpIOp::create(
                    b1, l1, arith::CmpIPredicate::ule, t, limits2);
                Value scaled = arith::MulFOp::create(
                    b1, l1, s, splat(scoreType, static_cast<float>(scale)));
                s = arith::SelectOp::create(b1, l1, visible, scaled,
                                            splat(scoreType, negInf));
              }
              // Online softmax: the new row max, the old sums' rescale. A
              // row that has seen no visible position yet (a later split of
              // an early query) keeps max -inf, its exponents taken against
              // 0 so that they are 0, not NaN.
              Value newMax = arith::MaxNumFOp::create(
                  b1, l1, rowMax,
                  emitRowReduction(b1, l1, scores,
                                   vector::CombiningKind::MAXNUMF));
              Value nothingSeen = arith::CmpFOp::create(
                  b1, l1, arith::CmpFPredicate::OEQ, newMax,
                  splat(rowType, negInf));
              Value base = arith::SelectOp::create(b1, l1, nothingSeen,
                                                   splat(rowType, 0), newMax);
              Value rescale = math::ExpOp::create(
                  b1, l1, arith::SubFOp::create(b1, l1, rowMax, base));
              Value maxTile = broadcastRows(b1, l1, base, scoreType);
              SmallVector<Value> probs;
              for (Value s : scores)
                probs.push_back(math::ExpOp::create(
                    b1, l1, arith::SubFOp::create(b1, l1, s, maxTile)));
              Value newSum = arith::AddFOp::create(
                  b1, l1, arith::MulFOp::create(b1, l1, rowSum, rescale),
                  emitRowReduction(b1, l1, probs, vector::CombiningKind::ADD));
              Value rescaleTile = broadcastRows(
                  b1, l1, rescale, VectorType::get({tileRows, valueCols}, f32));
              for (Value &a : acc)
                a = arith::MulFOp::create(b1, l1, a, rescaleTile);
              // o += bf16(P) . values[t0 .., c0 ..]: P is the A operand.
              for (int64_t k = 0; k < kFlashChunk; k += kMmaDepth) {
                auto aType = VectorType::get({tileRows, kMmaDepth}, f32);
                Value rounded = arith::TruncFOp::create(
                    b1, l1,
                    VectorType::get({tileRows, kMmaDepth}, b1.getBF16Type()),
                    columnsOf(b1, l1, probs, k, kMmaDepth));
                Value p = arith::ExtFOp::create(b1, l1, aType, rounded);
                Value t = arith::AddIOp::create(b1, l1, t0,
                                                indexConst(b1, l1, k));
                for (int64_t j = 0; j < numValues; ++j) {
                  Value c = arith::AddIOp::create(
                      b1, l1, c0, indexConst(b1, l1, j * valueCols));
                  acc[j] = mmaStep(b1, l1, p,
                                   readBf16Tile(b1, l1, values,
                                                ValueRange{bi, t, c}, 2, 1,
                                                valueCols, /*inBounds=*/false),
                                   acc[j]);
                }
              }
              acc.push_back(newMax);
              acc.push_back(newSum);
              scf::YieldOp::create(b1, l1, acc);
            });
        Value written = writeTiles(
            b, loc, SmallVector<Value>(chunks.getResults().take_front(numValues)),
            block);
        Value zero = indexConst(b, loc, 0);
        auto writeStat = [&](Value stat, Value out) -> Value {
          return vector::TransferWriteOp::create(
                     b, loc, stat, statBlock(out), ValueRange{zero, zero},
                     ArrayRef<bool>{false, true})
              .getResult();
        };
        Value maxWritten = writeStat(chunks.getResult(numValues), outMax);
        Value sumWritten = writeStat(chunks.getResult(numValues + 1), outSum);
        auto inParallel = scf::InParallelOp::create(b, loc);
        OpBuilder::InsertionGuard guard(b);
        b.setInsertionPointToStart(inParallel.getBody());
        tensor::ParallelInsertSliceOp::create(b, loc, written, outO, offsets,
                                              sizes, strides);
        tensor::ParallelInsertSliceOp::create(b, loc, maxWritten, outMax,
                                              statOffsets, statSizes,
                                              statStrides);
        tensor::ParallelInsertSliceOp::create(b, loc, sumWritten, outSum,
                                              statOffsets, statSizes,
                                              statStrides);
      });
  Value partial = forall.getResult(0), partialMax = forall.getResult(1),
        partialSum = forall.getResult(2);
  // Combine the splits: o = sum_s e^(m_s - M) o_s / sum_s e^(m_s - M) l_s
  // with M the largest m_s (split 0 always saw position 0).
  Value splitCount = getValueOrCreateConstantIndexOp(e.b, e.loc, splits);
  return e.generic(
      {}, e.empty({batch, m, width}), {e.b.getMultiDimIdentityMap(3)},
      SmallVector<IteratorType>(3, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange) {
        Value bi = linalg::IndexOp::create(b, loc, 0);
        Value row = linalg::IndexOp::create(b, loc, 1);
        Value c = linalg::IndexOp::create(b, loc, 2);
        Value zero = indexConst(b, loc, 0), one = indexConst(b, loc, 1);
        Value f0 = arith::ConstantOp::create(b, loc, b.getF32FloatAttr(0));
        auto maxLoop = scf::ForOp::create(
            b, loc, zero, splitCount, one,
            ValueRange{arith::ConstantOp::create(
                b, loc,
                b.getF32FloatAttr(-std::numeric_limits<float>::infinity()))},
            [&](OpBuilder &b1, Location l1, Value s, ValueRange acc) {
              Value ms = tensor::ExtractOp::create(b1, l1, partialMax,
                                                   ValueRange{bi, s, row, zero});
              scf::YieldOp::create(
                  b1, l1,
                  ValueRange{arith::MaxNumFOp::create(b1, l1, acc[0], ms)});
            });
        Value top = maxLoop.getResult(0);
        auto sumLoop = scf::ForOp::create(
            b, loc, zero, splitCount, one, ValueRange{f0, f0},
            [&](OpBuilder &b1, Location l1, Value s, ValueRange acc) {
              Value ms = tensor::ExtractOp::create(b1, l1, partialMax,
                                                   ValueRange{bi, s, row, zero});
              Value w = math::ExpOp::create(
                  b1, l1, arith::SubFOp::create(b1, l1, ms, top));
              Value os = tensor::ExtractOp::create(b1, l1, partial,
                                                   ValueRange{bi, s, row, c});
              Value ls = tensor::ExtractOp::create(b1, l1, partialSum,
                                                   ValueRange{bi, s, row, zero});
              scf::YieldOp::create(
                  b1, l1,
                  ValueRange{arith::AddFOp::create(
                                 b1, l1, acc[0],
                                 arith::MulFOp::create(b1, l1, w, os)),
                             arith::AddFOp::create(
                                 b1, l1, acc[1],
                                 arith::MulFOp::create(b1, l1, w, ls))});
            });
        linalg::YieldOp::create(
            b, loc,
            ValueRange{arith::DivFOp::create(b, loc, sumLoop.getResult(0),
                                             sumLoop.getResult(1))});
      });
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
