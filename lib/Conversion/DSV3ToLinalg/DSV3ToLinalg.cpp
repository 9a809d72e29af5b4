//===- DSV3ToLinalg.cpp - Lower dsv3 ops to linalg on tensors -------------===//
//
// Every dsv3 op becomes upstream ops on tensors that compute in f32. Weights
// keep their stored element type (f32, bf16, f16 or FP8 e4m3 + block scales)
// and are widened element by element where a contraction reads them, so no
// f32 copy of a weight matrix is ever materialised.
//
// Composite ops (mla, moe, swiglu_mlp) are rewritten into simpler dsv3 ops
// (linear, rms_norm, rope) plus attention/routing generics; the greedy driver
// then lowers those in turn.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "Elementwise.h"
#include "Emitter.h"
#include "MoeLowering.h"
#include "PackedFp8Cache.h"
#include "WarpMma.h"
#include "WeightStreams.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Bufferization/IR/Bufferization.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/GreedyPatternRewriteDriver.h"

#include <cmath>
#include <functional>
#include <limits>

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_CONVERTDSV3TOLINALG
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;
using namespace mlir::dsv3;

namespace {

using utils::IteratorType;
using namespace mlir::dsv3::lowering;

/// Widens one float weight element (norms, embeddings: never FP8) to f32
/// inside a generic body.
Value widen(OpBuilder &b, Location loc, Value element) {
  if (element.getType().isF32())
    return element;
  return arith::ExtFOp::create(b, loc, b.getF32Type(), element);
}


/// linalg.transpose into a fresh tensor.
Value emitTranspose(Emitter &e, Value v, ArrayRef<int64_t> permutation) {
  SmallVector<OpFoldResult> sizes = e.sizesOf(v);
  SmallVector<OpFoldResult> permuted;
  for (int64_t p : permutation)
    permuted.push_back(sizes[p]);
  Value init = e.empty(permuted);
  return linalg::TransposeOp::create(e.b, e.loc, v, init, permutation)
      .getResult()[0];
}

/// Reshapes with a reassociation, expanding or collapsing as the ranks say.
Value emitReshape(Emitter &e, Value v, ArrayRef<ReassociationIndices> reassoc,
                  ArrayRef<OpFoldResult> newSizes) {
  auto type = cast<RankedTensorType>(v.getType());
  SmallVector<int64_t> shape;
  SmallVector<Value> dynamic;
  for (OpFoldResult s : newSizes) {
    std::optional<int64_t> c = getConstantIntValue(s);
    shape.push_back(c ? *c : ShapedType::kDynamic);
  }
  auto newType = RankedTensorType::get(shape, type.getElementType());
  if (static_cast<int64_t>(newSizes.size()) > type.getRank())
    return tensor::ExpandShapeOp::create(e.b, e.loc, newType, v, reassoc,
                                         newSizes);
  return tensor::CollapseShapeOp::create(e.b, e.loc, newType, v, reassoc);
}

/// A pattern that replaces an op by what one lowering function builds: the
/// building-block ops need nothing more.
template <typename OpTy>
struct FunctionLowering : OpRewritePattern<OpTy> {
  using Function = std::function<Value(Emitter &, OpTy)>;
  FunctionLowering(MLIRContext *context, KernelOptions kernels,
                   Function function)
      : OpRewritePattern<OpTy>(context), kernels(kernels),
        function(std::move(function)) {}
  LogicalResult matchAndRewrite(OpTy op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc(), kernels.tensorCores,
              kernels.tokenRowBlock};
    rewriter.replaceOp(op, function(e, op));
    return success();
  }
  KernelOptions kernels;
  Function function;
};

//===----------------------------------------------------------------------===//
// dsv3.rms_norm, dsv3.embedding
//===----------------------------------------------------------------------===//

Value emitRmsNorm(Emitter &e, Value x, Value w, double eps) {
  auto type = cast<RankedTensorType>(x.getType());
  unsigned rank = type.getRank();
  int64_t dim = type.getShape().back();
  SmallVector<OpFoldResult> rowSizes = e.sizesOf(x);
  rowSizes.pop_back();
  Value sumSq = e.generic(
      {x}, e.filled(rowSizes, 0.0),
      {e.b.getMultiDimIdentityMap(rank), e.map(rank, Emitter::range(0, rank - 1))},
      [&] {
        SmallVector<IteratorType> it(rank, IteratorType::parallel);
        it.back() = IteratorType::reduction;
        return it;
      }(),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value xv = widen(b, loc, args[0]);
        Value sq = arith::MulFOp::create(b, loc, xv, xv);
        linalg::YieldOp::create(b, loc,
                                ValueRange{arith::AddFOp::create(b, loc, args[1], sq)});
      });
  // The result has the input's type (the verifier's rule); the arithmetic
  // is f32 whatever that type is, rounded once at the end.
  Type resultElement = type.getElementType();
  Value init = e.empty(e.sizesOf(x), resultElement);
  SmallVector<AffineMap> maps{e.b.getMultiDimIdentityMap(rank),
                              e.map(rank, Emitter::range(0, rank - 1)),
                              e.map(rank, {rank - 1}),
                              e.b.getMultiDimIdentityMap(rank)};
  return e.generic(
      {x, sumSq, w}, init, maps,
      SmallVector<IteratorType>(rank, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value n = arith::ConstantOp::create(
            b, loc, b.getF32FloatAttr(static_cast<float>(dim)));
        Value epsV = arith::ConstantOp::create(
            b, loc, b.getF32FloatAttr(static_cast<float>(eps)));
        Value mean = arith::DivFOp::create(b, loc, args[1], n);
        Value inv = math::RsqrtOp::create(
            b, loc, arith::AddFOp::create(b, loc, mean, epsV));
        Value normed =
            arith::MulFOp::create(b, loc, widen(b, loc, args[0]), inv);
        Value wv = widen(b, loc, args[2]);
        Value out = arith::MulFOp::create(b, loc, normed, wv);
        if (resultElement != out.getType())
          out = arith::TruncFOp::create(b, loc, resultElement, out);
        linalg::YieldOp::create(b, loc, ValueRange{out});
      });
}

struct EmbeddingLowering : OpRewritePattern<EmbeddingOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(EmbeddingOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc()};
    Value tokens = op.getTokens(), table = op.getTable();
    unsigned tokRank = cast<RankedTensorType>(tokens.getType()).getRank();
    unsigned rank = tokRank + 1;
    SmallVector<OpFoldResult> sizes = e.sizesOf(tokens);
    sizes.push_back(e.dim(table, 1));
    Value init = e.empty(sizes);
    Value result = e.generic(
        {tokens}, init,
        {e.map(rank, Emitter::range(0, tokRank)),
         rewriter.getMultiDimIdentityMap(rank)},
        SmallVector<IteratorType>(rank, IteratorType::parallel),
        [&](OpBuilder &b, Location loc, ValueRange args) {
          Value row =
              arith::IndexCastOp::create(b, loc, b.getIndexType(), args[0]);
          Value col = linalg::IndexOp::create(b, loc, tokRank);
          Value v =
              tensor::ExtractOp::create(b, loc, table, ValueRange{row, col});
          linalg::YieldOp::create(b, loc, ValueRange{widen(b, loc, v)});
        });
    rewriter.replaceOp(op, result);
    return success();
  }
};

//===----------------------------------------------------------------------===//
// dsv3.rope
//===----------------------------------------------------------------------===//

/// The per-pair rotation frequencies, computed as the official code does in
/// float32 (docs/dsv3-model-spec.md §4.1), including the YaRN blend.
SmallVector<float> ropeFrequencies(RopeAttr rope, int64_t dim) {
  const double base = rope.getTheta().convertToDouble();
  SmallVector<float> freqs;
  for (int64_t i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    freqs.push_back(1.0f / std::pow(static_cast<float>(base), exponent));
  }
  if (!rope.isYarn())
    return freqs;
  const double factor = rope.getFactor().convertToDouble();
  const double original =
      static_cast<double>(rope.getOriginalMaxPositions());
  auto correctionDim = [&](double rotations) {
    return dim * std::log(original / (rotations * 2 * M_PI)) /
           (2 * std::log(base));
  };
  double low = std::max(
      std::floor(correctionDim(rope.getBetaFast().convertToDouble())), 0.0);
  double high =
      std::min(std::ceil(correctionDim(rope.getBetaSlow().convertToDouble())),
               static_cast<double>(dim - 1));
  if (low == high)
    high += 0.001;
  for (int64_t i = 0; i < dim / 2; ++i) {
    float ramp = static_cast<float>(
        std::clamp((static_cast<double>(i) - low) / (high - low), 0.0, 1.0));
    float smooth = 1.0f - ramp;
    freqs[i] = freqs[i] / static_cast<float>(factor) * (1.0f - smooth) +
               freqs[i] * smooth;
  }
  return freqs;
}

/// Rotates interleaved pairs of the last dim of x ([B, S, R] or
/// [B, S, H, R]) by positions[b, s] * freq[pair].
Value emitRope(Emitter &e, Value x, Value positions, RopeAttr rope) {
  auto type = cast<RankedTensorType>(x.getType());
  unsigned rank = type.getRank();
  int64_t dim = type.getShape().back();
  SmallVector<float> freqs = ropeFrequencies(rope, dim);
  auto freqType = RankedTensorType::get({dim / 2}, e.f32());
  Value freqTable = arith::ConstantOp::create(
      e.b, e.loc, DenseElementsAttr::get(freqType, ArrayRef<float>(freqs)));
  Value init = e.empty(e.sizesOf(x));
  return e.generic(
      {positions}, init,
      {e.map(rank, {0, 1}), e.b.getMultiDimIdentityMap(rank)},
      SmallVector<IteratorType>(rank, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        SmallVector<Value> idx;
        for (unsigned d = 0; d < rank; ++d)
          idx.push_back(linalg::IndexOp::create(b, loc, d));
        Value one = indexConst(b, loc, 1), two = indexConst(b, loc, 2);
        Value d = idx.back();
        Value pair = arith::DivUIOp::create(b, loc, d, two);
        Value evenIdx = arith::MulIOp::create(b, loc, pair, two);
        Value oddIdx = arith::AddIOp::create(b, loc, evenIdx, one);
        SmallVector<Value> at = idx;
        at.back() = evenIdx;
        Value xe = tensor::ExtractOp::create(b, loc, x, at);
        at.back() = oddIdx;
        Value xo = tensor::ExtractOp::create(b, loc, x, at);
        Value freq =
            tensor::ExtractOp::create(b, loc, freqTable, ValueRange{pair});
        Value pos = arith::SIToFPOp::create(b, loc, b.getF32Type(), args[0]);
        Value angle = arith::MulFOp::create(b, loc, pos, freq);
        Value c = math::CosOp::create(b, loc, angle);
        Value s = math::SinOp::create(b, loc, angle);
        // even: xe*c - xo*s ; odd: xe*s + xo*c
        Value isEven = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::eq,
                                             d, evenIdx);
        Value evenOut = arith::SubFOp::create(
            b, loc, arith::MulFOp::create(b, loc, xe, c),
            arith::MulFOp::create(b, loc, xo, s));
        Value oddOut = arith::AddFOp::create(
            b, loc, arith::MulFOp::create(b, loc, xe, s),
            arith::MulFOp::create(b, loc, xo, c));
        linalg::YieldOp::create(
            b, loc,
            ValueRange{arith::SelectOp::create(b, loc, isEven, evenOut, oddOut)});
      });
}

//===----------------------------------------------------------------------===//
// dsv3.swiglu_mlp
//===----------------------------------------------------------------------===//

Value emitSwiglu(Emitter &e, Value x, Value gate, Value up, Value down,
                 Value gateScale, Value upScale, Value downScale) {
  Value g = emitLinear(e, x, gate, gateScale);
  Value u = emitLinear(e, x, up, upScale);
  unsigned rank = cast<RankedTensorType>(g.getType()).getRank();
  AffineMap id = e.b.getMultiDimIdentityMap(rank);
  Value h = e.generic({g, u}, e.empty(e.sizesOf(g)), {id, id, id},
                      SmallVector<IteratorType>(rank, IteratorType::parallel),
                      [&](OpBuilder &b, Location loc, ValueRange args) {
                        Value act = emitSilu(b, loc, args[0]);
                        linalg::YieldOp::create(
                            b, loc,
                            ValueRange{arith::MulFOp::create(b, loc, act, args[1])});
                      });
  return emitLinear(e, h, down, downScale);
}

//===----------------------------------------------------------------------===//
// dsv3.mla
//===----------------------------------------------------------------------===//

/// `v` (any float element type) converted elementwise to `element`: f32 to
/// bf16 rounds to nearest even (arith.truncf), bf16 to f32 is exact.
Value emitConvertElements(Emitter &e, Value v, Type element) {
  auto type = cast<RankedTensorType>(v.getType());
  if (type.getElementType() == element)
    return v;
  const unsigned rank = type.getRank();
  return e.generic(
      {v}, e.empty(e.sizesOf(v), element),
      {e.b.getMultiDimIdentityMap(rank), e.b.getMultiDimIdentityMap(rank)},
      SmallVector<IteratorType>(rank, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value out =
            element.getIntOrFloatBitWidth() <
                    args[0].getType().getIntOrFloatBitWidth()
                ? arith::TruncFOp::create(b, loc, element, args[0]).getResult()
                : arith::ExtFOp::create(b, loc, element, args[0]).getResult();
        linalg::YieldOp::create(b, loc, ValueRange{out});
      });
}

/// Writes entries[b, s, :] into cache[b, positions[b, s], :] for every token
/// of the call, rounded to the cache's element type (or quantized into the
/// packed FP8 rows when `packed` is set). Positions past the cache are
/// skipped (the runtime rejects them before the call; the guard keeps a bad
/// call from writing out of bounds).
Value emitCacheWrite(Emitter &e, Value cache, Value entries, Value positions,
                     const PackedFp8Rows &packed = {}) {
  auto cacheType = cast<RankedTensorType>(cache.getType());
  int64_t batch = cacheType.getDimSize(0), maxLen = cacheType.getDimSize(1),
          width = cacheType.getDimSize(2);
  entries = packed ? emitPackFp8Rows(e, entries, packed)
                   : emitConvertElements(e, entries, cacheType.getElementType());
  Value zero = e.index(0), one = e.index(1);
  Value seq = getValueOrCreateConstantIndexOp(e.b, e.loc, e.dim(entries, 1));
  auto outer = scf::ForOp::create(
      e.b, e.loc, zero, e.index(batch), one, ValueRange{cache},
      [&](OpBuilder &b, Location loc, Value bi, ValueRange outerArgs) {
        auto inner = scf::ForOp::create(
            b, loc, zero, seq, one, outerArgs,
            [&](OpBuilder &b2, Location loc2, Value si, ValueRange args) {
              Value pos = arith::IndexCastOp::create(
                  b2, loc2, b2.getIndexType(),
                  tensor::ExtractOp::create(b2, loc2, positions,
                                            ValueRange{bi, si}));
              Value inBounds = arith::CmpIOp::create(
                  b2, loc2, arith::CmpIPredicate::ult, pos,
                  indexConst(b2, loc2, maxLen));
              auto guarded = scf::IfOp::create(
                  b2, loc2, inBounds,
                  [&](OpBuilder &b3, Location loc3) {
                    auto rowType = RankedTensorType::get(
                        {1, 1, width}, cacheType.getElementType());
                    SmallVector<OpFoldResult> unit{b3.getIndexAttr(1),
                                                   b3.getIndexAttr(1),
                                                   b3.getIndexAttr(width)};
                    SmallVector<OpFoldResult> strides(3, b3.getIndexAttr(1));
                    Value row = tensor::ExtractSliceOp::create(
                        b3, loc3, rowType, entries,
                        SmallVector<OpFoldResult>{bi, si, b3.getIndexAttr(0)},
                        unit, strides);
                    Value updated = tensor::InsertSliceOp::create(
                        b3, loc3, row, args[0],
                        SmallVector<OpFoldResult>{bi, pos, b3.getIndexAttr(0)},
                        unit, strides);
                    scf::YieldOp::create(b3, loc3, updated);
                  },
                  [&](OpBuilder &b3, Location loc3) {
                    scf::YieldOp::create(b3, loc3, args[0]);
                  });
              scf::YieldOp::create(b2, loc2, guarded.getResults());
            });
        scf::YieldOp::create(b, loc, inner.getResults());
      });
  return outer.getResult(0);
}

/// 1 + the largest position of the call: the cache prefix attention reads.
Value emitUsedLength(Emitter &e, Value positions, int64_t maxLen) {
  auto i64 = e.b.getI64Type();
  auto scalarType = RankedTensorType::get({}, i64);
  Value init = tensor::EmptyOp::create(e.b, e.loc, scalarType.getShape(), i64);
  Value zero = arith::ConstantOp::create(e.b, e.loc, e.b.getI64IntegerAttr(0));
  init = linalg::FillOp::create(e.b, e.loc, ValueRange{zero}, ValueRange{init})
             .getResult(0);
  Value maxPos =
      linalg::GenericOp::create(
          e.b, e.loc, TypeRange{scalarType}, ValueRange{positions},
          ValueRange{init},
          SmallVector<AffineMap>{e.b.getMultiDimIdentityMap(2),
                                 AffineMap::get(2, 0, {}, e.b.getContext())},
          SmallVector<IteratorType>(2, IteratorType::reduction),
          [&](OpBuilder &b, Location loc, ValueRange args) {
            Value p = args[0];
            if (p.getType() != b.getI64Type())
              p = arith::ExtSIOp::create(b, loc, b.getI64Type(), p);
            linalg::YieldOp::create(
                b, loc, ValueRange{arith::MaxSIOp::create(b, loc, p, args[1])});
          })
          .getResult(0);
  Value last = tensor::ExtractOp::create(e.b, e.loc, maxPos, ValueRange{});
  Value used = arith::AddIOp::create(
      e.b, e.loc, e.toIndex(last), e.index(1));
  return arith::MinUIOp::create(e.b, e.loc, used, e.index(maxLen));
}

/// Causal softmax over the last dim of scores [B, S, H, T]: scaled, masked
/// to t <= positions[b, s], normalised in f32. `positionDims` are the dims of
/// scores that index positions (b, s): {0, 1} for [B, S, H, T], {0, 2} for
/// [B, H, S, T].
Value emitCausalSoftmax(Emitter &e, Value scores, Value positions,
                        double scale,
                        ArrayRef<unsigned> positionDims = {0, 1}) {
  const unsigned rank = 4;
  AffineMap id = e.b.getMultiDimIdentityMap(rank);
  SmallVector<IteratorType> parallel(rank, IteratorType::parallel);
  const float negInf = -std::numeric_limits<float>::infinity();

  Value masked = e.generic(
      {scores, positions}, e.empty(e.sizesOf(scores)),
      {id, e.map(rank, positionDims), id}, parallel,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        Value t = linalg::IndexOp::create(b, loc, 3);
        Value pos = arith::IndexCastOp::create(b, loc, b.getIndexType(), args[1]);
        Value visible =
            arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ule, t, pos);
        Value scaled = arith::MulFOp::create(
            b, loc, args[0],
            arith::ConstantOp::create(b, loc,
                                      b.getF32FloatAttr(static_cast<float>(scale))));
        Value minusInf =
            arith::ConstantOp::create(b, loc, b.getF32FloatAttr(negInf));
        linalg::YieldOp::create(
            b, loc, ValueRange{arith::SelectOp::create(b, loc, visible, scaled, minusInf)});
      });
  return emitSoftmaxLast(e, masked);
}

/// Inside a generic body: `cond ? thenValue : elseValue`, each side built
/// only in its own branch (scf.if), so the extract on the side not taken,
/// whose indices would be out of range, never runs.
Value emitSelect(OpBuilder &b, Location loc, Value cond,
                 function_ref<Value(OpBuilder &)> thenValue,
                 function_ref<Value(OpBuilder &)> elseValue) {
  auto select = scf::IfOp::create(b, loc, TypeRange{b.getF32Type()}, cond,
                                  /*withElseRegion=*/true);
  OpBuilder::InsertionGuard guard(b);
  b.setInsertionPointToStart(&select.getThenRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{thenValue(b)});
  b.setInsertionPointToStart(&select.getElseRegion().front());
  scf::YieldOp::create(b, loc, ValueRange{elseValue(b)});
  return select.getResult(0);
}

/// Concatenates `a` [..., X] and `bv` [..., Y] along the last dim. `bv` may
/// lack a's second-to-last dim (the heads), and is then broadcast over it.
Value emitConcatLast(Emitter &e, Value a, Value bv) {
  auto aType = cast<RankedTensorType>(a.getType());
  auto bType = cast<RankedTensorType>(bv.getType());
  const unsigned rank = aType.getRank();
  int64_t x = aType.getShape().back(), y = bType.getShape().back();
  SmallVector<OpFoldResult> sizes = e.sizesOf(a);
  sizes.back() = e.b.getIndexAttr(x + y);
  const bool broadcast = bType.getRank() + 1 == static_cast<int64_t>(rank);
  return e.generic(
      {}, e.empty(sizes), {e.b.getMultiDimIdentityMap(rank)},
      SmallVector<IteratorType>(rank, IteratorType::parallel),
      [&](OpBuilder &b, Location loc, ValueRange) {
        SmallVector<Value> idx;
        for (unsigned d = 0; d < rank; ++d)
          idx.push_back(linalg::IndexOp::create(b, loc, d));
        Value xConst = indexConst(b, loc, x);
        Value inA = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult,
                                          idx.back(), xConst);
        Value v = emitSelect(
            b, loc, inA,
            [&](OpBuilder &bb) -> Value {
              return tensor::ExtractOp::create(bb, loc, a, idx);
            },
            [&](OpBuilder &bb) -> Value {
              SmallVector<Value> bIdx(idx.begin(), idx.end() - 1);
              if (broadcast)
                bIdx.erase(bIdx.end() - 1);
              bIdx.push_back(arith::SubIOp::create(bb, loc, idx.back(), xConst));
              return tensor::ExtractOp::create(bb, loc, bv, bIdx);
            });
        linalg::YieldOp::create(b, loc, ValueRange{v});
      });
}

struct MlaLowering : OpRewritePattern<MlaOp> {
  /// tensorCores: the absorbed attention's two products as warp MMA tiles.
  MlaLowering(MLIRContext *context, KernelOptions kernels)
      : OpRewritePattern(context), kernels(kernels) {}
  KernelOptions kernels;

  LogicalResult matchAndRewrite(MlaOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc(), kernels.tensorCores,
              kernels.tokenRowBlock};
    const int64_t heads = op.getHeads(), kvRank = op.getKvLoraRank(),
                  nope = op.getQkNopeHeadDim(), rope = op.getQkRopeHeadDim(),
                  vDim = op.getVHeadDim();
    const double eps = op.getEps().convertToDouble();
    Value x = op.getHidden(), positions = op.getPositions(),
          cache = op.getCache();
    auto cacheType = cast<RankedTensorType>(cache.getType());
    const int64_t batch = cacheType.getDimSize(0);
    const int64_t maxLen = cacheType.getDimSize(1);

    // Query: q_b(q_norm(q_a(x))) or q(x) -> [B, S, H, nope + rope]; the
    // latent and the shared rope key from kv_a(x). With q_kv_a both down
    // projections are one GEMM whose output is split.
    Value q, kv;
    if (op.getWq()) {
      q = emitLinear(e, x, op.getWq(), op.getWqScale());
    } else {
      Value qa;
      if (op.getWqKvA()) {
        const int64_t qRank = static_cast<int64_t>(*op.getQLoraRank());
        Value both = emitLinear(e, x, op.getWqKvA(), op.getWqKvAScale());
        qa = e.sliceLast(both, 0, qRank);
        kv = e.sliceLast(both, qRank, kvRank + rope);
      } else {
        qa = emitLinear(e, x, op.getWqA(), op.getWqAScale());
      }
      Value qn = emitRmsNorm(e, qa, op.getQNorm(), eps);
      q = emitLinear(e, qn, op.getWqB(), op.getWqBScale());
    }
    q = e.splitLast(q, heads, nope + rope);
    Value qNope = e.sliceLast(q, 0, nope);
    Value qPe = emitRope(e, e.sliceLast(q, nope, rope), positions,
                         op.getRope());

    // Latent and the shared rope key.
    if (!kv)
      kv = emitLinear(e, x, op.getWkvA(), op.getWkvAScale());
    Value latent = emitRmsNorm(e, e.sliceLast(kv, 0, kvRank), op.getKvNorm(),
                               eps);
    Value kPe = emitRope(e, e.sliceLast(kv, kvRank, rope), positions,
                         op.getRope());

    Value used = emitUsedLength(e, positions, maxLen);
    // The prefix keeps the cache's element type: the kernels that read it
    // (row dots, axpy, the tensor-core tiles) widen or take it in registers.
    auto prefixOf = [&](Value c, int64_t width) {
      auto type = RankedTensorType::get({batch, ShapedType::kDynamic, width},
                                        cacheType.getElementType());
      SmallVector<OpFoldResult> offsets(3, e.b.getIndexAttr(0));
      SmallVector<OpFoldResult> sizes{e.b.getIndexAttr(batch), used,
                                      e.b.getIndexAttr(width)};
      SmallVector<OpFoldResult> strides(3, e.b.getIndexAttr(1));
      return tensor::ExtractSliceOp::create(e.b, e.loc, type, c, offsets,
                                            sizes, strides)
          .getResult();
    };
    const double scale = op.getSoftmaxScale().convertToDouble();
    Value attn; // [B, S, H, v]
    Value newCache;
    auto idx = [&](int64_t v) -> OpFoldResult { return e.b.getIndexAttr(v); };
    OpFoldResult seqLen = e.dim(x, 1);
    auto times = [&](OpFoldResult lhs, OpFoldResult rhs) -> OpFoldResult {
      std::optional<int64_t> l = getConstantIntValue(lhs),
                             r = getConstantIntValue(rhs);
      if (l && r)
        return e.b.getIndexAttr(*l * *r);
      return arith::MulIOp::create(
                 e.b, e.loc, getValueOrCreateConstantIndexOp(e.b, e.loc, lhs),
                 getValueOrCreateConstantIndexOp(e.b, e.loc, rhs))
          .getResult();
    };
    OpFoldResult tokens = times(idx(batch), seqLen);        // B*S
    OpFoldResult rowsPerBatch = times(seqLen, idx(heads)); // S*H

    // Per-head [k_nope | k_pe | v] ([B, X, H, nope + rope + v]) of latent
    // rows [B, X, C] and their rope keys [B, X, R]: kv_b applied.
    auto expandKv = [&](Value lat, Value pe) -> Value {
      Value kvb = emitLinear(e, lat, op.getWkvB(), op.getWkvBScale());
      kvb = e.splitLast(kvb, heads, nope + vDim); // [B,X,H,nope+v]
      Value kNope = e.sliceLast(kvb, 0, nope);
      Value v = e.sliceLast(kvb, nope, vDim);
      Value k = emitConcatLast(e, kNope, pe); // [B,X,H,nope+R]
      return emitConcatLast(e, k, v);         // [B,X,H,nope+R+v]
    };
    const int64_t perHead = nope + rope + vDim;
    // Causal attention of the queries over per-head K/V of the cache prefix
    // ([B, T, H, perHead]) -> [B, S, H, v].
    auto naiveAttention = [&](Value prefix4) -> Value {
      OpFoldResult groups = idx(batch * heads);
      Value cacheT = emitReshape(e, emitTranspose(e, prefix4, {0, 2, 1, 3}),
                                 {{0, 1}, {2}, {3}},
                                 {groups, used, idx(perHead)});
      Value keys = e.sliceLast(cacheT, 0, nope + rope);     // [BH, T, nope+R]
      Value values = e.sliceLast(cacheT, nope + rope, vDim); // [BH, T, v]
      Value qCat = emitConcatLast(e, qNope, qPe); // [B,S,H,nope+R]
      Value qT = emitReshape(e, emitTranspose(e, qCat, {0, 2, 1, 3}),
                             {{0, 1}, {2}, {3}},
                             {groups, seqLen, idx(nope + rope)});
      // scores[(b,h), s, t] = q[(b,h), s, :] . K[(b,h), t, :]
      // On tensor cores: per (sequence, head), the query positions as M.
      Value scores3 =
          e.tensorCores
              ? emitBatchedWarpGemm(e, qT, keys, /*nDim=*/1, /*kDim=*/2)
              : emitGroupedDots(e, qT, WeightView{keys, {}, {}});
      // The softmax runs on the [B, H, S, T] view of the scores (reshapes
      // only): transposing the [S, H, T] matrices would copy them serially
      // twice (268 MB per layer at 2048 tokens, f32).
      Value scores4 = emitReshape(e, scores3, {{0, 1}, {2}, {3}},
                                  {idx(batch), idx(heads), seqLen, used});
      Value probs4 = emitCausalSoftmax(e, scores4, positions, scale, {0, 2});
      Value probsT = emitReshape(e, probs4, {{0, 1}, {2}, {3}},
                                 {groups, seqLen, used});
      // o[(b,h), s, v] = sum_t P[(b,h), s, t] * V[(b,h), t, v]
      Value o =
          e.tensorCores
              ? emitBatchedWarpGemm(e, probsT, values, /*nDim=*/2, /*kDim=*/1)
              : emitGroupedAxpy(e, probsT, WeightView{values, {}, {}});
      Value o4 = emitReshape(e, o, {{0, 1}, {2}, {3}},
                             {idx(batch), idx(heads), seqLen, idx(vDim)});
      return emitTranspose(e, o4, {0, 2, 1, 3});
    };
    auto attnType =
        RankedTensorType::get({batch, ShapedType::kDynamic, heads, vDim}, e.f32());
    auto withAttnType = [&](Value v) -> Value {
      return v.getType() == attnType
                 ? v
                 : tensor::CastOp::create(e.b, e.loc, attnType, v).getResult();
    };

    if (op.hasLatentCache()) {
      // Absorbed form: the cache holds [kv_norm(c) | rope(k_pe)] per token;
      // W_UK is folded into the query and W_UV applied after attention. Both
      // are read straight from kv_b viewed as [heads, nope + v, latent].
      // With the packed FP8 cache the prefix is its rows of bytes, which
      // the kernels decode in registers (PackedFp8Rows).
      const PackedFp8Rows packed =
          op.hasPackedFp8Cache() ? packedFp8RowsOf(op) : PackedFp8Rows{};
      Value entries = emitConcatLast(e, latent, kPe); // [B, S, C + R]
      newCache = emitCacheWrite(e, cache, entries, positions, packed);
      Value prefix = prefixOf(newCache, packed ? packed.bytes()
                                               : kvRank + rope); // [B, T, C + R]
      Value prefixLatent =
          packed ? prefix : e.sliceLast(prefix, 0, kvRank); // [B, T, C]
      PackedFp8Rows scoreRows = packed, latentRows = packed;
      latentRows.cols = packed ? kvRank : 0;

      // Absorbed form, on the latent directly.
      auto absorbedAttention = [&]() -> Value {
      auto wkvbType = cast<RankedTensorType>(op.getWkvB().getType());
      Value wkvb3 = tensor::ExpandShapeOp::create(
          e.b, e.loc,
          RankedTensorType::get({heads, nope + vDim, kvRank},
                                wkvbType.getElementType()),
          op.getWkvB(), SmallVector<ReassociationIndices>{{0, 1}, {2}});
      auto headRows = [&](int64_t offset, int64_t size) {
        return tensor::ExtractSliceOp::create(
                   e.b, e.loc,
                   RankedTensorType::get({heads, size, kvRank},
                                         wkvbType.getElementType()),
                   wkvb3,
                   SmallVector<OpFoldResult>{idx(0), idx(offset), idx(0)},
                   SmallVector<OpFoldResult>{idx(heads), idx(size),
                                             idx(kvRank)},
                   SmallVector<OpFoldResult>(3, idx(1)))
            .getResult();
      };
      // Row r of head g's slice is row g * (nope + v) + offset + r of kv_b.
      auto storedRow = [&](int64_t offset) {
        const int64_t perHead = nope + vDim;
        return [perHead, offset](OpBuilder &b, Location loc, Value g,
                                 Value r) -> Value {
          Value base = arith::MulIOp::create(b, loc, g,
                                             indexConst(b, loc, perHead));
          Value withOffset =
              arith::AddIOp::create(b, loc, base, indexConst(b, loc, offset));
          return arith::AddIOp::create(b, loc, withOffset, r);
        };
      };
      WeightView wUK{headRows(0, nope), op.getWkvBScale(), storedRow(0)};
      WeightView wUV{headRows(nope, vDim), op.getWkvBScale(),
                     storedRow(nope)};

      // q_lat[h, (b,s), c] = sum_d q_nope[b,s,h,d] * W_UK[h,d,c]
      Value qNopeT = emitReshape(e, emitTranspose(e, qNope, {2, 0, 1, 3}),
                                 {{0}, {1, 2}, {3}},
                                 {idx(heads), tokens, idx(nope)});
      // The absorptions are per-head GEMMs too: on tensor cores (tokens as
      // M) when kv_b is bf16.
      const bool bf16KvB =
          e.tensorCores && isTensorCoreWeight(op.getWkvB(), op.getWkvBScale());
      Value qLat = bf16KvB ? emitBatchedWarpGemm(e, qNopeT, wUK.view,
                                                 /*nDim=*/2, /*kDim=*/1)
                           : emitGroupedAxpy(e, qNopeT, wUK); // [H, B*S, C]
      // qcat[b, (s,h), :] = [q_lat | q_pe]
      Value seqValue = getValueOrCreateConstantIndexOp(e.b, e.loc, seqLen);
      Value qCat = e.generic(
          {}, e.empty({idx(batch), rowsPerBatch, idx(kvRank + rope)}),
          {e.b.getMultiDimIdentityMap(3)},
          SmallVector<IteratorType>(3, IteratorType::parallel),
          [&](OpBuilder &b, Location loc, ValueRange) {
            Value bi = linalg::IndexOp::create(b, loc, 0);
            Value row = linalg::IndexOp::create(b, loc, 1);
            Value w = linalg::IndexOp::create(b, loc, 2);
            Value hConst = indexConst(b, loc, heads);
            Value si = arith::DivUIOp::create(b, loc, row, hConst);
            Value hi = arith::RemUIOp::create(b, loc, row, hConst);
            Value c = indexConst(b, loc, kvRank);
            Value inLatent =
                arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, w, c);
            Value v = emitSelect(
                b, loc, inLatent,
                [&](OpBuilder &bb) -> Value {
                  Value token = arith::AddIOp::create(
                      bb, loc, arith::MulIOp::create(bb, loc, bi, seqValue),
                      si);
                  return tensor::ExtractOp::create(bb, loc, qLat,
                                                   ValueRange{hi, token, w});
                },
                [&](OpBuilder &bb) -> Value {
                  Value r = arith::SubIOp::create(bb, loc, w, c);
                  return tensor::ExtractOp::create(bb, loc, qPe,
                                                   ValueRange{bi, si, hi, r});
                });
            linalg::YieldOp::create(b, loc, ValueRange{v});
          });
      // o_lat[b, (s,h), :] = softmax(qcat[b, (s,h), :] . cache[b, :used]^T)
      // . latent[b, :used]. On tensor cores: one fused kernel, the S*H query
      // rows as M and an online softmax over the cache in chunks (bf16
      // operands, f32 statistics and accumulators).
      Value oLat;
      if (e.tensorCores) {
        Value tilePrefix = prefix, tileLatent = prefixLatent;
        if (packed) {
          // The tiles take bf16 operands: the packed prefix unpacked to bf16,
          // exactly (an e4m3 code times a power of two has 4 significant
          // bits and an exponent well inside bf16's range). A copy of the
          // prefix per call, so no bandwidth is saved yet: a first step.
          tilePrefix = emitConvertElements(
              e, emitUnpackFp8Rows(e, prefix, packed), e.b.getBF16Type());
          tileLatent = e.sliceLast(tilePrefix, 0, kvRank);
        }
        oLat = emitFlashLatentAttention(e, qCat, tilePrefix, tileLatent,
                                        positions, heads, scale);
      } else {
        // The query rows (heads x tokens) against each cache row: on the
        // CPU (blocked kernels) in blocks of 16 heads, so each cache chunk is
        // widened, or decoded from FP8, once per 16 heads rather than 4.
        const int64_t linearRowBlock = e.tokenRowBlock;
        if (e.tokenRowBlock > 1)
          e.tokenRowBlock = kBlockAccumulators;
        Value scores3 = emitGroupedDots(
            e, qCat, WeightView{prefix, {}, {}, {}, scoreRows});
        Value scores = emitReshape(e, scores3, {{0}, {1, 2}, {3}},
                                   {idx(batch), seqLen, idx(heads), used});
        Value probs = emitCausalSoftmax(e, scores, positions, scale);
        Value probs3 = emitReshape(e, probs, {{0}, {1, 2}, {3}},
                                   {idx(batch), rowsPerBatch, used});
        oLat = emitGroupedAxpy(
            e, probs3, WeightView{prefixLatent, {}, {}, {}, latentRows});
        e.tokenRowBlock = linearRowBlock;
      }
      Value oLat4 = emitReshape(e, oLat, {{0}, {1, 2}, {3}},
                                {idx(batch), seqLen, idx(heads), idx(kvRank)});
      Value oLatT = emitReshape(e, emitTranspose(e, oLat4, {2, 0, 1, 3}),
                                {{0}, {1, 2}, {3}},
                                {idx(heads), tokens, idx(kvRank)});
      // o[h, (b,s), v] = o_lat[h, (b,s), :] . W_UV[h, v, :]
      Value o = bf16KvB ? emitBatchedWarpGemm(e, oLatT, wUV.view, /*nDim=*/1,
                                              /*kDim=*/2)
                        : emitGroupedDots(e, oLatT, wUV);
      Value o4 = emitReshape(e, o, {{0}, {1, 2}, {3}},
                             {idx(heads), idx(batch), seqLen, idx(vDim)});
      return emitTranspose(e, o4, {1, 2, 0, 3});
      };
      if (std::optional<uint64_t> from = op.getExpandFrom()) {
        // Long chunks: expand the cached latent to per-head K/V once and run
        // the naive form, which needs fewer FLOPs per (query, key) pair.
        Value longChunk = arith::CmpIOp::create(
            e.b, e.loc, arith::CmpIPredicate::uge,
            getValueOrCreateConstantIndexOp(e.b, e.loc, seqLen),
            e.index(static_cast<int64_t>(*from)));
        auto branch = scf::IfOp::create(e.b, e.loc, TypeRange{attnType},
                                        longChunk, /*withElseRegion=*/true);
        {
          OpBuilder::InsertionGuard guard(e.b);
          e.b.setInsertionPointToStart(branch.thenBlock());
          // kv_b takes f32 activations: a widened copy of the prefix (this
          // branch is the long-chunk prefill, dominated by the expansion).
          Value prefixF32 = packed ? emitUnpackFp8Rows(e, prefix, packed)
                                   : emitConvertElements(e, prefix, e.f32());
          Value expanded = expandKv(e.sliceLast(prefixF32, 0, kvRank),
                                    e.sliceLast(prefixF32, kvRank, rope));
          scf::YieldOp::create(
              e.b, e.loc, ValueRange{withAttnType(naiveAttention(expanded))});
          e.b.setInsertionPointToStart(branch.elseBlock());
          scf::YieldOp::create(e.b, e.loc,
                               ValueRange{withAttnType(absorbedAttention())});
        }
        attn = branch.getResult(0);
      } else {
        attn = absorbedAttention();
      }
    } else {
      // Naive form: the cache holds per-head [k_nope | k_pe | v].
      Value entries = e.mergeLast(expandKv(latent, kPe)); // [B,S,H*(...)]
      const PackedFp8Rows packed =
          op.hasPackedFp8Cache() ? packedFp8RowsOf(op) : PackedFp8Rows{};
      newCache = emitCacheWrite(e, cache, entries, positions, packed);
      Value prefix = prefixOf(newCache, packed ? packed.bytes()
                                               : heads * perHead);
      // The naive form's transposes and softmax work on f32: a widened copy
      // of a bf16 or FP8 cache (fusion=none is the reference form, not the
      // fast path). [B, T, H*perHead]
      prefix = packed ? emitUnpackFp8Rows(e, prefix, packed)
                      : emitConvertElements(e, prefix, e.f32());
      attn = naiveAttention(e.splitLast(prefix, heads, perHead));
    }
    Value merged = e.mergeLast(attn); // [B, S, H*v]
    Value out = emitLinear(e, merged, op.getWo(), op.getWoScale());
    rewriter.replaceOp(op, {out, newCache});
    return success();
  }
};

//===----------------------------------------------------------------------===//
// The pass
//===----------------------------------------------------------------------===//

struct ConvertDSV3ToLinalgPass
    : dsv3::impl::ConvertDSV3ToLinalgBase<ConvertDSV3ToLinalgPass> {
  using ConvertDSV3ToLinalgBase::ConvertDSV3ToLinalgBase;
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    MLIRContext *context = &getContext();
    // Everything an op lowers to carries its name (dsv3.mla, ...): the GPU
    // pipeline names kernels after it (dsv3-gpu-name-kernels).
    getOperation().walk([&](Operation *op) {
      if (isa<DSV3Dialect>(op->getDialect()))
        op->setLoc(NameLoc::get(op->getName().getIdentifier(), op->getLoc()));
    });
    if (mmaRows != 16 && mmaRows != 64) {
      getOperation().emitError("convert-dsv3-to-linalg: mma-rows must be 16 "
                               "(mma.sync) or 64 (wgmma), not ")
          << static_cast<int64_t>(mmaRows);
      return signalPassFailure();
    }
    // Powers of two, so a block's weight rows divide a tile's.
    if (tokenRowBlock != 1 && tokenRowBlock != 2 && tokenRowBlock != 4) {
      getOperation().emitError("convert-dsv3-to-linalg: token-row-block must "
                               "be 1, 2 or 4, not ")
          << static_cast<int64_t>(tokenRowBlock);
      return signalPassFailure();
    }
    const KernelOptions kernels{{this->tensorCores, mmaRows}, tokenRowBlock};
    patterns.add<EmbeddingLowering>(context);
    patterns.add<MlaLowering>(context, kernels);
    populateMoeLoweringPatterns(patterns, kernels);
    patterns.add<FunctionLowering<LinearOp>>(
        context, kernels, [](Emitter &e, LinearOp op) {
          return emitLinear(e, op.getInput(), op.getWeight(), op.getScale());
        });
    patterns.add<FunctionLowering<RmsNormOp>>(
        context, kernels, [](Emitter &e, RmsNormOp op) {
          return emitRmsNorm(e, op.getInput(), op.getWeight(),
                             op.getEps().convertToDouble());
        });
    patterns.add<FunctionLowering<RopeOp>>(context, kernels, [](Emitter &e, RopeOp op) {
      return emitRope(e, op.getInput(), op.getPositions(), op.getRope());
    });
    patterns.add<FunctionLowering<SwigluMlpOp>>(
        context, kernels, [](Emitter &e, SwigluMlpOp op) {
          return emitSwiglu(e, op.getInput(), op.getGate(), op.getUp(),
                            op.getDown(), op.getGateScale(), op.getUpScale(),
                            op.getDownScale());
        });
    GreedyRewriteConfig config;
    config.setUseTopDownTraversal(true);
    if (failed(applyPatternsGreedily(getOperation(), std::move(patterns),
                                     config))) {
      getOperation().emitError("convert-dsv3-to-linalg did not converge");
      return signalPassFailure();
    }
    // The backend contract: no dsv3 op may survive this pass.
    WalkResult leftover = getOperation().walk([](Operation *op) {
      if (isa<DSV3Dialect>(op->getDialect())) {
        op->emitError("dsv3 op left after convert-dsv3-to-linalg");
        return WalkResult::interrupt();
      }
      return WalkResult::advance();
    });
    if (leftover.wasInterrupted())
      signalPassFailure();
  }
};

} // namespace
