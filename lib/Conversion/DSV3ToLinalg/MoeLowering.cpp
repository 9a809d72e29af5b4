//===- MoeLowering.cpp - Lowering of the dsv3 MoE ops ----------------===//
//
// Routing is shared by both forms. The unfused dsv3.moe evaluates every
// (token, slot) pair as its own small MLP (gate, up, SiLU*up, down, each a
// pass over the pairs, then the weighted sum and the shared MLP): an expert
// chosen by several tokens is read once per pair. The fused ops group the
// pairs by expert (dsv3.moe_dispatch), so each selected expert is read once
// per call by two kernels (WeightStreams.h).
//
//===----------------------------------------------------------------------===//

#include "MoeLowering.h"

#include "Elementwise.h"
#include "Emitter.h"
#include "WarpMma.h"
#include "WeightStreams.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Math/IR/Math.h"
#include "mlir/Dialect/SCF/IR/SCF.h"

#include <limits>

using namespace mlir;
using namespace mlir::dsv3;
using namespace mlir::dsv3::lowering;

namespace {

/// rank[n, i] = #{j : v[n,j] > v[n,i] or (v[n,j] == v[n,i] and j < i)}: the
/// position of i in a stable descending sort. Selecting rank < k is top-k with
/// ties going to the lower index, computed without a sort.
Value emitStableRank(Emitter &e, Value values) {
  SmallVector<OpFoldResult> sizes = e.sizesOf(values);
  Value init = tensor::EmptyOp::create(e.b, e.loc, sizes, e.b.getI64Type());
  Value zero = arith::ConstantOp::create(e.b, e.loc, e.b.getI64IntegerAttr(0));
  init = linalg::FillOp::create(e.b, e.loc, ValueRange{zero}, ValueRange{init})
             .getResult(0);
  return linalg::GenericOp::create(
             e.b, e.loc, TypeRange{init.getType()}, ValueRange{values, values},
             ValueRange{init},
             SmallVector<AffineMap>{e.map(3, {0, 1}), e.map(3, {0, 2}),
                                    e.map(3, {0, 1})},
             SmallVector<IteratorType>{IteratorType::parallel,
                                       IteratorType::parallel,
                                       IteratorType::reduction},
             [&](OpBuilder &b, Location loc, ValueRange args) {
               Value i = linalg::IndexOp::create(b, loc, 1);
               Value j = linalg::IndexOp::create(b, loc, 2);
               Value greater = arith::CmpFOp::create(
                   b, loc, arith::CmpFPredicate::OGT, args[1], args[0]);
               Value equal = arith::CmpFOp::create(
                   b, loc, arith::CmpFPredicate::OEQ, args[1], args[0]);
               Value before =
                   arith::CmpIOp::create(b, loc, arith::CmpIPredicate::ult, j, i);
               Value ahead = arith::OrIOp::create(
                   b, loc, greater, arith::AndIOp::create(b, loc, equal, before));
               Value inc = arith::ExtUIOp::create(b, loc, b.getI64Type(), ahead);
               linalg::YieldOp::create(
                   b, loc, ValueRange{arith::AddIOp::create(b, loc, args[2], inc)});
             })
      .getResult(0);
}


/// Steps 1-5 of dsv3.moe (and all of dsv3.moe_route) for tokens x [N, D]:
/// the selected experts [N, top_k] (i64) and their routing weights
/// [N, top_k] (f32).
template <typename OpTy>
std::pair<Value, Value> emitRouting(Emitter &e, OpTy op, Value x) {
  const int64_t experts = op.getExperts(), topK = op.getTopK(),
                nGroup = op.getNGroup(), topkGroup = op.getTopkGroup();
  const int64_t perGroup = experts / nGroup;
  const bool hasBias = static_cast<bool>(op.getBias());
  const float negInf = -std::numeric_limits<float>::infinity();
  OpFoldResult tokens = e.dim(x, 0);
  AffineMap id2 = e.b.getMultiDimIdentityMap(2);
  SmallVector<IteratorType> par2(2, IteratorType::parallel);

  // 1. Scores.
  // The router stays f32 even with tensor cores: rounding its input to
  // bf16 could change which experts are chosen.
  Emitter f32Emitter = e;
  f32Emitter.tensorCores = {};
  Value logits = emitLinear(f32Emitter, x, op.getRouter(), Value()); // [N, E]
  Value scores;
  if (op.getScoring() == ScoringFunc::Sigmoid) {
    scores = e.generic({logits}, e.empty(e.sizesOf(logits)), {id2, id2},
                       par2, [&](OpBuilder &b, Location loc, ValueRange a) {
                         Value one = arith::ConstantOp::create(
                             b, loc, b.getF32FloatAttr(1.0f));
                         Value ex = math::ExpOp::create(
                             b, loc, arith::NegFOp::create(b, loc, a[0]));
                         linalg::YieldOp::create(
                             b, loc,
                             ValueRange{arith::DivFOp::create(
                                 b, loc, one,
                                 arith::AddFOp::create(b, loc, one, ex))});
                       });
  } else {
    scores = emitSoftmaxLast(e, logits);
  }

  // 2. Selection scores: + bias (selection only).
  Value choice = scores;
  if (hasBias)
    choice = e.generic({scores, op.getBias()}, e.empty(e.sizesOf(scores)),
                       {id2, e.map(2, {1}), id2}, par2,
                       [&](OpBuilder &b, Location loc, ValueRange a) {
                         linalg::YieldOp::create(
                             b, loc, ValueRange{arith::AddFOp::create(b, loc, a[0], a[1])});
                       });

  // 3. Group-limited: keep the best topk_group groups by group score (sum
  // of the top-2 biased scores with a bias, else the max).
  if (nGroup > 1) {
    // groupScore[n, g] over the members of group g.
    Value groupScore = e.generic(
        {}, e.empty({tokens, e.b.getIndexAttr(nGroup)}), {id2}, par2,
        [&](OpBuilder &b, Location loc, ValueRange) {
          Value n = linalg::IndexOp::create(b, loc, 0);
          Value g = linalg::IndexOp::create(b, loc, 1);
          Value base = arith::MulIOp::create(b, loc, g,
                                             indexConst(b, loc, perGroup));
          Value ninf =
              arith::ConstantOp::create(b, loc, b.getF32FloatAttr(negInf));
          auto loop = scf::ForOp::create(
              b, loc, indexConst(b, loc, 0), indexConst(b, loc, perGroup),
              indexConst(b, loc, 1), ValueRange{ninf, ninf},
              [&](OpBuilder &b2, Location l2, Value j, ValueRange acc) {
                Value eIdx = arith::AddIOp::create(b2, l2, base, j);
                Value v = tensor::ExtractOp::create(b2, l2, choice,
                                                    ValueRange{n, eIdx});
                Value newTop1 = arith::MaximumFOp::create(b2, l2, acc[0], v);
                Value above = arith::CmpFOp::create(
                    b2, l2, arith::CmpFPredicate::OGT, v, acc[0]);
                Value newTop2 = arith::SelectOp::create(
                    b2, l2, above, acc[0],
                    arith::MaximumFOp::create(b2, l2, acc[1], v));
                scf::YieldOp::create(b2, l2, ValueRange{newTop1, newTop2});
              });
          Value score = loop.getResult(0);
          if (hasBias && perGroup >= 2)
            score = arith::AddFOp::create(b, loc, loop.getResult(0),
                                          loop.getResult(1));
          linalg::YieldOp::create(b, loc, ValueRange{score});
        });
    Value groupRank = emitStableRank(e, groupScore);
    choice = e.generic(
        {choice}, e.empty(e.sizesOf(choice)), {id2, id2}, par2,
        [&](OpBuilder &b, Location loc, ValueRange a) {
          Value n = linalg::IndexOp::create(b, loc, 0);
          Value ex = linalg::IndexOp::create(b, loc, 1);
          Value g = arith::DivUIOp::create(b, loc, ex,
                                           indexConst(b, loc, perGroup));
          Value r = tensor::ExtractOp::create(b, loc, groupRank,
                                              ValueRange{n, g});
          Value kept = arith::CmpIOp::create(
              b, loc, arith::CmpIPredicate::slt, r,
              arith::ConstantOp::create(b, loc,
                                        b.getI64IntegerAttr(topkGroup)));
          Value ninf =
              arith::ConstantOp::create(b, loc, b.getF32FloatAttr(negInf));
          linalg::YieldOp::create(
              b, loc, ValueRange{arith::SelectOp::create(b, loc, kept, a[0], ninf)});
        });
  }

  // 4. Top-k by stable rank: idx[n, k] = the expert of rank k.
  Value expertRank = emitStableRank(e, choice);
  Value idxInit = tensor::EmptyOp::create(
      e.b, e.loc, SmallVector<OpFoldResult>{tokens, e.b.getIndexAttr(topK)},
      e.b.getI64Type());
  Value zero64 = arith::ConstantOp::create(e.b, e.loc, e.b.getI64IntegerAttr(0));
  idxInit = linalg::FillOp::create(e.b, e.loc, ValueRange{zero64},
                                   ValueRange{idxInit})
                .getResult(0);
  Value selected =
      linalg::GenericOp::create(
          e.b, e.loc, TypeRange{idxInit.getType()}, ValueRange{expertRank},
          ValueRange{idxInit},
          SmallVector<AffineMap>{e.map(3, {0, 2}), e.map(3, {0, 1})},
          SmallVector<IteratorType>{IteratorType::parallel,
                                    IteratorType::parallel,
                                    IteratorType::reduction},
          [&](OpBuilder &b, Location loc, ValueRange a) {
            Value k = arith::IndexCastOp::create(
                b, loc, b.getI64Type(), linalg::IndexOp::create(b, loc, 1));
            Value ex = arith::IndexCastOp::create(
                b, loc, b.getI64Type(), linalg::IndexOp::create(b, loc, 2));
            Value hit = arith::CmpIOp::create(
                b, loc, arith::CmpIPredicate::eq, a[0], k);
            linalg::YieldOp::create(
                b, loc,
                ValueRange{arith::SelectOp::create(
                    b, loc, hit, arith::AddIOp::create(b, loc, a[1], ex), a[1])});
          })
          .getResult(0);

  // 5. Weights from the unbiased scores, normalised, scaled.
  Value weights = e.generic(
      {selected}, e.empty(e.sizesOf(selected)), {id2, id2}, par2,
      [&](OpBuilder &b, Location loc, ValueRange a) {
        Value n = linalg::IndexOp::create(b, loc, 0);
        Value ex = arith::IndexCastOp::create(b, loc, b.getIndexType(), a[0]);
        linalg::YieldOp::create(
            b, loc,
            ValueRange{tensor::ExtractOp::create(b, loc, scores,
                                                 ValueRange{n, ex})});
      });
  Value weightSum;
  if (op.getNormTopkProb())
    weightSum = e.generic({weights}, e.filled({tokens}, 0.0),
                          {id2, e.map(2, {0})},
                          {IteratorType::parallel, IteratorType::reduction},
                          [&](OpBuilder &b, Location loc, ValueRange a) {
                            linalg::YieldOp::create(
                                b, loc,
                                ValueRange{arith::AddFOp::create(b, loc, a[0], a[1])});
                          });
  const float routedScale =
      static_cast<float>(op.getRoutedScalingFactor().convertToDouble());
  SmallVector<Value> weightInputs{weights};
  SmallVector<AffineMap> weightMaps{id2};
  if (weightSum) {
    weightInputs.push_back(weightSum);
    weightMaps.push_back(e.map(2, {0}));
  }
  weightMaps.push_back(id2);
  weights = e.generic(weightInputs, e.empty(e.sizesOf(weights)), weightMaps,
                      par2, [&](OpBuilder &b, Location loc, ValueRange a) {
                        Value w = a[0];
                        if (weightSum)
                          w = arith::DivFOp::create(b, loc, w, a[1]);
                        w = arith::MulFOp::create(
                            b, loc, w,
                            arith::ConstantOp::create(
                                b, loc, b.getF32FloatAttr(routedScale)));
                        linalg::YieldOp::create(b, loc, ValueRange{w});
                      });

  return {selected, weights};
}

/// [..., D] -> [N, D].
Value flattenTokens(Emitter &e, Value input) {
  auto inType = cast<RankedTensorType>(input.getType());
  if (inType.getRank() == 2)
    return input;
  return tensor::CollapseShapeOp::create(
      e.b, e.loc,
      RankedTensorType::get({ShapedType::kDynamic, inType.getShape().back()},
                            e.f32()),
      input, tokenReassociation(inType.getRank()));
}

struct MoeLowering : OpRewritePattern<MoeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MoeOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc()};
    const int64_t topK = op.getTopK();
    Value input = op.getInput();
    auto inType = cast<RankedTensorType>(input.getType());
    const int64_t hidden = inType.getShape().back();
    Value x = flattenTokens(e, input);
    OpFoldResult tokens = e.dim(x, 0);
    AffineMap id2 = e.b.getMultiDimIdentityMap(2);
    SmallVector<IteratorType> par2(2, IteratorType::parallel);
    auto [selected, weights] = emitRouting(e, op, x);

    // 6. Experts, all (token, slot) pairs at once: pair g = n * top_k + k
    // reads expert selected[n, k] and only that expert's weights. Gate and up
    // are one parallel pass of row dots, SiLU*up elementwise, down another;
    // the weighted sum over the slots combines them.
    Value numTokens = getValueOrCreateConstantIndexOp(e.b, e.loc, tokens);
    Value pairs = arith::MulIOp::create(e.b, e.loc, numTokens, e.index(topK));
    int64_t staticTokens =
        cast<RankedTensorType>(selected.getType()).getDimSize(0);
    Value expertOfPair = tensor::CollapseShapeOp::create(
        e.b, e.loc,
        RankedTensorType::get({ShapedType::isDynamic(staticTokens)
                                   ? ShapedType::kDynamic
                                   : staticTokens * topK},
                              e.b.getI64Type()),
        selected, SmallVector<ReassociationIndices>{{0, 1}});
    Value pairInputs = e.generic(
        {}, e.empty({pairs, e.b.getIndexAttr(1), e.b.getIndexAttr(hidden)}),
        {e.b.getMultiDimIdentityMap(3)},
        SmallVector<IteratorType>(3, IteratorType::parallel),
        [&](OpBuilder &b, Location loc, ValueRange) {
          Value g = linalg::IndexOp::create(b, loc, 0);
          Value d = linalg::IndexOp::create(b, loc, 2);
          Value n = arith::DivUIOp::create(b, loc, g, indexConst(b, loc, topK));
          linalg::YieldOp::create(
              b, loc, ValueRange{tensor::ExtractOp::create(b, loc, x, ValueRange{n, d})});
        });
    Value gateOut = emitGroupedDots(
        e, pairInputs, WeightView{op.getGate(), op.getGateScale(), {}, expertOfPair});
    Value upOut = emitGroupedDots(
        e, pairInputs, WeightView{op.getUp(), op.getUpScale(), {}, expertOfPair});
    AffineMap id3 = e.b.getMultiDimIdentityMap(3);
    Value hiddenAct = e.generic(
        {gateOut, upOut}, e.empty(e.sizesOf(gateOut)), {id3, id3, id3},
        SmallVector<IteratorType>(3, IteratorType::parallel),
        [&](OpBuilder &b, Location loc, ValueRange a) {
          linalg::YieldOp::create(
              b, loc,
              ValueRange{arith::MulFOp::create(b, loc, emitSilu(b, loc, a[0]), a[1])});
        });
    Value downOut = emitGroupedDots(
        e, hiddenAct, WeightView{op.getDown(), op.getDownScale(), {}, expertOfPair});
    // out[n, d] = sum_k weights[n, k] * down[n * top_k + k, 0, d]
    Value out = e.generic(
        {weights}, e.filled({tokens, e.b.getIndexAttr(hidden)}, 0.0),
        {e.map(3, {0, 2}), e.map(3, {0, 1})},
        {IteratorType::parallel, IteratorType::parallel, IteratorType::reduction},
        [&](OpBuilder &b, Location loc, ValueRange a) {
          Value n = linalg::IndexOp::create(b, loc, 0);
          Value d = linalg::IndexOp::create(b, loc, 1);
          Value k = linalg::IndexOp::create(b, loc, 2);
          Value g = arith::AddIOp::create(
              b, loc, arith::MulIOp::create(b, loc, n, indexConst(b, loc, topK)), k);
          Value y = tensor::ExtractOp::create(
              b, loc, downOut, ValueRange{g, indexConst(b, loc, 0), d});
          linalg::YieldOp::create(
              b, loc,
              ValueRange{arith::AddFOp::create(b, loc, a[1], arith::MulFOp::create(b, loc, a[0], y))});
        });

    // 7. Shared experts, always selected with weight 1.
    if (op.getSharedGate()) {
      Value shared = SwigluMlpOp::create(
          e.b, e.loc, out.getType(), x, op.getSharedGate(), op.getSharedUp(),
          op.getSharedDown(), op.getSharedGateScale(), op.getSharedUpScale(),
          op.getSharedDownScale());
      out = e.generic({out, shared}, e.empty(e.sizesOf(out)), {id2, id2, id2},
                      par2, [&](OpBuilder &b, Location loc, ValueRange a) {
                        linalg::YieldOp::create(
                            b, loc, ValueRange{arith::AddFOp::create(b, loc, a[0], a[1])});
                      });
    }

    if (inType.getRank() != 2)
      out = tensor::ExpandShapeOp::create(e.b, e.loc, inType, out,
                                          tokenReassociation(inType.getRank()),
                                          e.sizesOf(input));
    rewriter.replaceOp(op, out);
    return success();
  }
};


struct MoeRouteLowering : OpRewritePattern<MoeRouteOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MoeRouteOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc()};
    auto [selected, weights] = emitRouting(e, op, op.getInput());
    rewriter.replaceOp(op, {selected, weights});
    return success();
  }
};

/// A counting sort, one thread: the pairs are few (N * top_k) and the
/// sort is a few integer ops per pair.
struct MoeDispatchLowering : OpRewritePattern<MoeDispatchOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MoeDispatchOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc()};
    const int64_t experts = op.getExperts();
    Type i64 = e.b.getI64Type();
    Value pairsOf = tensor::CollapseShapeOp::create(
        e.b, e.loc, op.getOrder().getType(), op.getIndices(),
        SmallVector<ReassociationIndices>{{0, 1}});
    Value numPairs = tensor::DimOp::create(e.b, e.loc, pairsOf, 0);
    Value c0 = e.index(0), c1 = e.index(1);
    Value one64 = arith::ConstantOp::create(e.b, e.loc, e.b.getI64IntegerAttr(1));
    Value zero64 =
        arith::ConstantOp::create(e.b, e.loc, e.b.getI64IntegerAttr(0));
    auto zeros = [&](int64_t n) {
      Value t = e.empty({e.b.getIndexAttr(n)}, i64);
      return linalg::FillOp::create(e.b, e.loc, ValueRange{zero64},
                                    ValueRange{t})
          .getResult(0);
    };
    auto expertOf = [&](OpBuilder &b, Location loc, Value p) {
      return extractIndex(b, loc, pairsOf, p);
    };
    auto add = [](OpBuilder &b, Location loc, Value t, Value at, Value v) {
      Value old = tensor::ExtractOp::create(b, loc, t, ValueRange{at});
      return tensor::InsertOp::create(b, loc,
                                      arith::AddIOp::create(b, loc, old, v), t,
                                      ValueRange{at})
          .getResult();
    };
    // counts[e + 1] = pairs routed to e; then the inclusive scan makes them
    // offsets.
    auto count = scf::ForOp::create(
        e.b, e.loc, c0, numPairs, c1, ValueRange{zeros(experts + 1)},
        [&](OpBuilder &b, Location loc, Value p, ValueRange acc) {
          Value slot = arith::AddIOp::create(b, loc, expertOf(b, loc, p),
                                             indexConst(b, loc, 1));
          scf::YieldOp::create(b, loc, ValueRange{add(b, loc, acc[0], slot, one64)});
        });
    auto scan = scf::ForOp::create(
        e.b, e.loc, c1, e.index(experts + 1), c1, count.getResults(),
        [&](OpBuilder &b, Location loc, Value i, ValueRange acc) {
          Value prev = tensor::ExtractOp::create(
              b, loc, acc[0],
              ValueRange{arith::SubIOp::create(b, loc, i, indexConst(b, loc, 1))});
          scf::YieldOp::create(b, loc, ValueRange{add(b, loc, acc[0], i, prev)});
        });
    Value offsets = scan.getResult(0);
    // Stable placement: each pair goes to its expert's cursor.
    Value cursor = tensor::ExtractSliceOp::create(
        e.b, e.loc, RankedTensorType::get({experts}, i64), offsets,
        SmallVector<OpFoldResult>{e.b.getIndexAttr(0)},
        SmallVector<OpFoldResult>{e.b.getIndexAttr(experts)},
        SmallVector<OpFoldResult>{e.b.getIndexAttr(1)});
    cursor = linalg::CopyOp::create(e.b, e.loc, cursor,
                                    e.empty({e.b.getIndexAttr(experts)}, i64))
                 .getResult(0);
    Value order = e.empty({numPairs}, i64);
    auto place = scf::ForOp::create(
        e.b, e.loc, c0, numPairs, c1, ValueRange{order, cursor},
        [&](OpBuilder &b, Location loc, Value p, ValueRange acc) {
          Value ex = expertOf(b, loc, p);
          Value at = extractIndex(b, loc, acc[1], ex);
          Value placed = tensor::InsertOp::create(
              b, loc, arith::IndexCastOp::create(b, loc, b.getI64Type(), p),
              acc[0], ValueRange{at});
          scf::YieldOp::create(b, loc,
                               ValueRange{placed, add(b, loc, acc[1], ex, one64)});
        });
    Value result = place.getResult(0);
    if (result.getType() != op.getOrder().getType())
      result = tensor::CastOp::create(e.b, e.loc, op.getOrder().getType(),
                                      result);
    rewriter.replaceOp(op, {result, offsets});
    return success();
  }
};

/// [rows, cols] -> [1, rows, cols]: a single matrix as a one-group view.
Value asOneGroup(Emitter &e, Value w) {
  if (!w)
    return w;
  auto type = cast<RankedTensorType>(w.getType());
  SmallVector<int64_t> shape{1};
  shape.append(type.getShape().begin(), type.getShape().end());
  return tensor::ExpandShapeOp::create(
      e.b, e.loc, RankedTensorType::get(shape, type.getElementType()), w,
      SmallVector<ReassociationIndices>{{0, 1}, {2}});
}

/// The rows of a grouped expert op: `experts` stacked [E, ...] with the
/// expert width I at dim `interDim`; `shared` (or null) holds S * I at dim
/// `sharedDim`.
ExpertRows expertRowsOf(Value order, Value offsets, int64_t topK,
                        Value experts, int64_t interDim, Value shared,
                        int64_t sharedDim) {
  auto type = cast<RankedTensorType>(experts.getType());
  ExpertRows rows;
  rows.order = order;
  rows.offsets = offsets;
  rows.topK = topK;
  rows.experts = type.getDimSize(0);
  rows.inter = type.getDimSize(interDim);
  if (shared)
    rows.sharedSlots =
        cast<RankedTensorType>(shared.getType()).getDimSize(sharedDim) /
        rows.inter;
  return rows;
}

struct MoeGateUpLowering : OpRewritePattern<MoeGateUpOp> {
  MoeGateUpLowering(MLIRContext *context, KernelOptions kernels)
      : OpRewritePattern(context), kernels(kernels) {}
  LogicalResult matchAndRewrite(MoeGateUpOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc(), kernels.tensorCores,
              kernels.tokenRowBlock};
    ExpertRows rows =
        expertRowsOf(op.getOrder(), op.getOffsets(), op.getTopK(),
                     op.getGate(), /*interDim=*/1, op.getSharedGate(), 0);
    WeightView gate{op.getGate(), op.getGateScale(), nullptr};
    WeightView up{op.getUp(), op.getUpScale(), nullptr};
    WeightView sharedGate{asOneGroup(e, op.getSharedGate()),
                          op.getSharedGateScale(), nullptr};
    WeightView sharedUp{asOneGroup(e, op.getSharedUp()),
                        op.getSharedUpScale(), nullptr};
    const int64_t hidden =
        cast<RankedTensorType>(op.getInput().getType()).getDimSize(1);
    Value act =
        e.tensorCores && canUseExpertMma({&gate, &up, &sharedGate, &sharedUp},
                                       rows.inter, hidden)
            ? emitExpertGateUpMma(e, op.getInput(), rows, gate, up,
                                  sharedGate, sharedUp)
            : emitExpertGateUp(e, op.getInput(), rows, gate, up, sharedGate,
                               sharedUp);
    if (act.getType() != op.getType())
      act = tensor::CastOp::create(e.b, e.loc, op.getType(), act);
    rewriter.replaceOp(op, act);
    return success();
  }

private:
  KernelOptions kernels;
};

struct MoeDownCombineLowering : OpRewritePattern<MoeDownCombineOp> {
  MoeDownCombineLowering(MLIRContext *context, KernelOptions kernels)
      : OpRewritePattern(context), kernels(kernels) {}
  LogicalResult matchAndRewrite(MoeDownCombineOp op,
                                PatternRewriter &rewriter) const override {
    Emitter e{rewriter, op.getLoc(), kernels.tensorCores,
              kernels.tokenRowBlock};
    ExpertRows rows =
        expertRowsOf(op.getOrder(), op.getOffsets(), op.getTopK(),
                     op.getDown(), /*interDim=*/2, op.getSharedDown(), 1);
    WeightView down{op.getDown(), op.getDownScale(), nullptr};
    WeightView sharedDown{asOneGroup(e, op.getSharedDown()),
                          op.getSharedDownScale(), nullptr};
    const int64_t hidden =
        cast<RankedTensorType>(op.getDown().getType()).getDimSize(1);
    Value out;
    if (e.tensorCores &&
        canUseExpertMma({&down, &sharedDown}, hidden, rows.inter))
      out = emitExpertCombine(e,
                              emitExpertDownMma(e, op.getActivations(),
                                                op.getWeights(), rows, down,
                                                sharedDown),
                              op.getWeights(), rows);
    else
      out = emitExpertDownCombine(e, op.getActivations(), op.getWeights(),
                                  rows, down, sharedDown);
    if (out.getType() != op.getType())
      out = tensor::CastOp::create(e.b, e.loc, op.getType(), out);
    rewriter.replaceOp(op, out);
    return success();
  }

private:
  KernelOptions kernels;
};

} // namespace

void mlir::dsv3::lowering::populateMoeLoweringPatterns(
    RewritePatternSet &patterns, KernelOptions kernels) {
  patterns.add<MoeLowering, MoeRouteLowering, MoeDispatchLowering>(
      patterns.getContext());
  patterns.add<MoeGateUpLowering, MoeDownCombineLowering>(
      patterns.getContext(), kernels);
}
