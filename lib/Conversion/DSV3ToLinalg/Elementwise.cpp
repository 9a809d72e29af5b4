//===- Elementwise.cpp - Shared elementwise lowerings -----------------===//

#include "Elementwise.h"

#include "mlir/Dialect/Math/IR/Math.h"

#include <limits>

namespace mlir {
namespace dsv3 {
namespace lowering {

Value emitSilu(OpBuilder &b, Location loc, Value g) {
  // A scalar or, in the warp MMA epilogue, a vector of f32.
  TypedAttr oneAttr = b.getF32FloatAttr(1.0f);
  if (auto vectorType = dyn_cast<VectorType>(g.getType()))
    oneAttr = DenseElementsAttr::get(vectorType, 1.0f);
  Value one = arith::ConstantOp::create(b, loc, oneAttr);
  Value neg = arith::NegFOp::create(b, loc, g);
  Value denom = arith::AddFOp::create(b, loc, one, math::ExpOp::create(b, loc, neg));
  return arith::DivFOp::create(b, loc, g, denom);
}

Value emitSoftmaxLast(Emitter &e, Value x) {
  const unsigned rank = cast<RankedTensorType>(x.getType()).getRank();
  AffineMap id = e.b.getMultiDimIdentityMap(rank);
  AffineMap rowMap = e.map(rank, Emitter::range(0, rank - 1));
  SmallVector<IteratorType> parallel(rank, IteratorType::parallel);
  SmallVector<IteratorType> reduceLast = parallel;
  reduceLast.back() = IteratorType::reduction;
  SmallVector<OpFoldResult> rowSizes = e.sizesOf(x);
  rowSizes.pop_back();
  Value rowMax = e.generic(
      {x}, e.filled(rowSizes, -std::numeric_limits<float>::infinity()),
      {id, rowMap}, reduceLast,
      [&](OpBuilder &b, Location loc, ValueRange args) {
        linalg::YieldOp::create(
            b, loc,
            ValueRange{arith::MaximumFOp::create(b, loc, args[0], args[1])});
      });
  Value exps = e.generic({x, rowMax}, e.empty(e.sizesOf(x)), {id, rowMap, id},
                         parallel,
                         [&](OpBuilder &b, Location loc, ValueRange args) {
                           Value d =
                               arith::SubFOp::create(b, loc, args[0], args[1]);
                           linalg::YieldOp::create(
                               b, loc, ValueRange{math::ExpOp::create(b, loc, d)});
                         });
  Value rowSum = e.generic({exps}, e.filled(rowSizes, 0.0), {id, rowMap},
                           reduceLast,
                           [&](OpBuilder &b, Location loc, ValueRange args) {
                             linalg::YieldOp::create(
                                 b, loc,
                                 ValueRange{arith::AddFOp::create(
                                     b, loc, args[0], args[1])});
                           });
  return e.generic({exps, rowSum}, e.empty(e.sizesOf(x)), {id, rowMap, id},
                   parallel, [&](OpBuilder &b, Location loc, ValueRange args) {
                     linalg::YieldOp::create(
                         b, loc,
                         ValueRange{arith::DivFOp::create(b, loc, args[0],
                                                          args[1])});
                   });
}

} // namespace lowering
} // namespace dsv3
} // namespace mlir
