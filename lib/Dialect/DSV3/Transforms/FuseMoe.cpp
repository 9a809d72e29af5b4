//===- FuseMoe.cpp - dsv3.moe -> route, dispatch, grouped GEMMs ------------===//
//
// A local rewrite of each dsv3.moe into the four fused MoE ops (see
// Passes.td). The tokens are flattened to [N, D] around them, since the
// grouped kernels index tokens by one number.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Dialect/DSV3/Transforms/Passes.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/PatternMatch.h"
#include "mlir/Transforms/WalkPatternRewriteDriver.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3FUSEMOE
#include "dsv3/Dialect/DSV3/Transforms/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;
using namespace mlir::dsv3;

namespace {

/// Reassociation collapsing all leading (token) dims of a rank-`rank`
/// tensor into one: [[0, .., rank-2], [rank-1]].
SmallVector<ReassociationIndices> tokenReassociation(int64_t rank) {
  SmallVector<ReassociationIndices> reassoc{{}};
  for (int64_t i = 0; i < rank - 1; ++i)
    reassoc[0].push_back(i);
  reassoc.push_back({rank - 1});
  return reassoc;
}

struct FuseMoePattern : OpRewritePattern<MoeOp> {
  using OpRewritePattern::OpRewritePattern;
  LogicalResult matchAndRewrite(MoeOp op,
                                PatternRewriter &rewriter) const override {
    Location loc = op.getLoc();
    auto inType = cast<RankedTensorType>(op.getInput().getType());
    if (!inType.getElementType().isF32())
      return rewriter.notifyMatchFailure(op, "fused MoE computes in f32");
    auto gateType = cast<RankedTensorType>(op.getGate().getType());
    const int64_t inter = gateType.getDimSize(1);
    if (op.getSharedGate() &&
        cast<RankedTensorType>(op.getSharedGate().getType()).getDimSize(0) %
                inter !=
            0)
      return rewriter.notifyMatchFailure(
          op, "shared width is not a multiple of the expert width");

    const int64_t rank = inType.getRank();
    const int64_t hidden = inType.getShape().back();
    const int64_t topK = op.getTopK(), experts = op.getExperts();
    Type f32 = rewriter.getF32Type(), i64 = rewriter.getI64Type();

    // [..., D] -> [N, D], N static when every token dim is.
    int64_t tokens = 1;
    for (int64_t d : inType.getShape().drop_back())
      tokens = ShapedType::isDynamic(d) || ShapedType::isDynamic(tokens)
                   ? ShapedType::kDynamic
                   : tokens * d;
    Value x = op.getInput();
    if (rank != 2)
      x = tensor::CollapseShapeOp::create(
          rewriter, loc, RankedTensorType::get({tokens, hidden}, f32), x,
          tokenReassociation(rank));
    auto times = [](int64_t a, int64_t b) {
      return ShapedType::isDynamic(a) ? ShapedType::kDynamic : a * b;
    };
    const int64_t slots =
        op.getSharedGate()
            ? cast<RankedTensorType>(op.getSharedGate().getType())
                      .getDimSize(0) /
                  inter
            : 0;

    auto route = MoeRouteOp::create(
        rewriter, loc, RankedTensorType::get({tokens, topK}, i64),
        RankedTensorType::get({tokens, topK}, f32), x, op.getRouter(),
        op.getBias(), op.getExpertsAttr(), op.getTopKAttr(), op.getNGroupAttr(),
        op.getTopkGroupAttr(), op.getScoringAttr(), op.getNormTopkProbAttr(),
        op.getRoutedScalingFactorAttr());
    auto dispatch = MoeDispatchOp::create(
        rewriter, loc, RankedTensorType::get({times(tokens, topK)}, i64),
        RankedTensorType::get({experts + 1}, i64), route.getIndices(),
        op.getExpertsAttr());
    auto gateUp = MoeGateUpOp::create(
        rewriter, loc,
        RankedTensorType::get({times(tokens, topK + slots), inter}, f32), x,
        dispatch.getOrder(), dispatch.getOffsets(), op.getGate(), op.getUp(),
        op.getGateScale(), op.getUpScale(), op.getSharedGate(),
        op.getSharedUp(), op.getSharedGateScale(), op.getSharedUpScale(),
        op.getTopKAttr());
    Value out = MoeDownCombineOp::create(
        rewriter, loc, RankedTensorType::get({tokens, hidden}, f32),
        gateUp.getResult(), dispatch.getOrder(), dispatch.getOffsets(),
        route.getWeights(), op.getDown(), op.getDownScale(),
        op.getSharedDown(), op.getSharedDownScale(), op.getTopKAttr());
    if (rank != 2)
      out = tensor::ExpandShapeOp::create(
          rewriter, loc, inType, out, tokenReassociation(rank),
          tensor::getMixedSizes(rewriter, loc, op.getInput()));
    rewriter.replaceOp(op, out);
    return success();
  }
};

struct FuseMoePass : dsv3::impl::DSV3FuseMoeBase<FuseMoePass> {
  void runOnOperation() override {
    RewritePatternSet patterns(&getContext());
    patterns.add<FuseMoePattern>(&getContext());
    walkAndApplyPatterns(getOperation(), std::move(patterns));
  }
};

} // namespace
