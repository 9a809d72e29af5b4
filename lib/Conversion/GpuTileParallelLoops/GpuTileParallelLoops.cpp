//===- GpuTileParallelLoops.cpp - blocks x threads tiles for scf.parallel -===//
//
// gpu-map-parallel-loops maps an outermost scf.parallel's dimensions to the
// grid and a directly nested scf.parallel's to the threads of a block. The
// loops convert-linalg-to-parallel-loops produces are flat (one thread per
// block if mapped as they are) or nested more deeply than a launch can
// express. This pass gives each outermost loop exactly one level of
// threads: the innermost dimension, tiled.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/IRMapping.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3GPUTILEPARALLELLOOPS
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

/// Replaces a reduction-free scf.parallel by a nest of scf.for loops: what
/// one GPU thread runs.
void sequentialize(scf::ParallelOp loop) {
  OpBuilder b(loop);
  Location loc = loop.getLoc();
  SmallVector<Value> ivs;
  for (auto [lb, ub, step] : llvm::zip_equal(
           loop.getLowerBound(), loop.getUpperBound(), loop.getStep())) {
    auto inner = scf::ForOp::create(b, loc, lb, ub, step);
    ivs.push_back(inner.getInductionVar());
    b.setInsertionPoint(inner.getBody()->getTerminator());
  }
  Block *body = loop.getBody();
  for (auto [old, replacement] :
       llvm::zip_equal(body->getArguments(), ivs))
    old.replaceAllUsesWith(replacement);
  // Everything but the scf.reduce terminator moves into the innermost for.
  Operation *insertBefore = &*b.getInsertionPoint();
  for (Operation &op : llvm::make_early_inc_range(body->without_terminator()))
    op.moveBefore(insertBefore);
  loop.erase();
}

struct GpuTileParallelLoopsPass
    : dsv3::impl::DSV3GpuTileParallelLoopsBase<GpuTileParallelLoopsPass> {
  using DSV3GpuTileParallelLoopsBase::DSV3GpuTileParallelLoopsBase;

  void runOnOperation() override {
    if (threads < 1 || warpLanes < 1) {
      getOperation().emitError("dsv3-gpu-tile-parallel-loops: threads and "
                               "warp-lanes must be at least 1");
      return signalPassFailure();
    }
    SmallVector<scf::ParallelOp> outermost;
    getOperation().walk([&](scf::ParallelOp loop) {
      if (!loop->getParentOfType<scf::ParallelOp>())
        outermost.push_back(loop);
    });
    for (scf::ParallelOp loop : outermost) {
      if (!loop.getInitVals().empty()) {
        loop.emitOpError("has reductions; dsv3-gpu-tile-parallel-loops "
                         "expects the reduction-free loops of "
                         "convert-linalg-to-parallel-loops");
        return signalPassFailure();
      }
      SmallVector<scf::ParallelOp> nested;
      loop.getBody()->walk([&](scf::ParallelOp inner) {
        nested.push_back(inner);
      });
      // Innermost first, so each one's body holds no parallel loop left.
      for (scf::ParallelOp inner : llvm::reverse(nested))
        sequentialize(inner);
      bool warpLevel = loop.getBody()
                           ->walk([](vector::ContractionOp) {
                             return WalkResult::interrupt();
                           })
                           .wasInterrupted();
      tile(loop, warpLevel);
    }
  }

  /// parallel (i..., j) in (..., [lb, ub) step s) { body(i, j) } becomes
  ///   parallel (b) in [0, extent(i)... * ceil(extent(j) / T)) {
  ///     (i..., jt) = delinearize(b); j0 = lb + jt*s*T
  ///     parallel (t) in [0, T) { j = j0 + t*s; if (j < ub) body(i, j) } }
  /// One linear block index: the grid is then (blocks, 1, 1), whose x limit
  /// (2^31 - 1) no loop reaches, where y and z stop at 65535 and dims past
  /// the third would run sequentially. The tile index varies fastest, so
  /// neighbouring blocks work on neighbouring columns.
  /// A warp-level loop: every dimension in the block index (tiles of 1)
  /// and an inner loop of warp-lanes iterations running the whole body.
  void tile(scf::ParallelOp loop, bool warpLevel) {
    unsigned last = loop.getNumLoops() - 1;
    int64_t tileSize = warpLevel ? 1 : threads;
    std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound()[last]);
    std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound()[last]);
    std::optional<int64_t> step = getConstantIntValue(loop.getStep()[last]);
    bool staticExtent = lb && ub && step && *step > 0;
    if (staticExtent && !warpLevel) {
      int64_t extent = (*ub - *lb + *step - 1) / *step;
      tileSize = std::max<int64_t>(1, std::min<int64_t>(tileSize, extent));
    }
    OpBuilder b(loop);
    Location loc = loop.getLoc();
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    Value tileValue = arith::ConstantIndexOp::create(b, loc, tileSize);
    // Iterations of each dim (the last one counted in tiles), never
    // negative: an empty dim empties the whole loop.
    auto count = [&](unsigned d, Value stride) -> Value {
      Value span = arith::SubIOp::create(b, loc, loop.getUpperBound()[d],
                                         loop.getLowerBound()[d]);
      Value n = arith::CeilDivSIOp::create(b, loc, span, stride);
      return arith::MaxSIOp::create(b, loc, n, zero);
    };
    Value tileStride =
        arith::MulIOp::create(b, loc, loop.getStep()[last], tileValue);
    SmallVector<Value> counts;
    for (unsigned d = 0; d < last; ++d)
      counts.push_back(count(d, loop.getStep()[d]));
    counts.push_back(count(last, tileStride));
    Value total = counts.front();
    for (Value n : ArrayRef<Value>(counts).drop_front())
      total = arith::MulIOp::create(b, loc, total, n);

    auto outer = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                         ValueRange{total}, ValueRange{one});
    b.setInsertionPoint(outer.getBody()->getTerminator());
    // Delinearize, last dim fastest.
    SmallVector<Value> indices(last + 1);
    Value rest = outer.getInductionVars()[0];
    for (unsigned d = last + 1; d-- > 0;) {
      indices[d] = arith::RemUIOp::create(b, loc, rest, counts[d]);
      rest = arith::DivUIOp::create(b, loc, rest, counts[d]);
    }
    auto scaled = [&](unsigned d, Value index, Value stride) -> Value {
      Value offset = arith::MulIOp::create(b, loc, index, stride);
      return arith::AddIOp::create(b, loc, loop.getLowerBound()[d], offset);
    };
    SmallVector<Value> ivs;
    for (unsigned d = 0; d < last; ++d)
      ivs.push_back(scaled(d, indices[d], loop.getStep()[d]));
    Value tileBase = scaled(last, indices[last], tileStride);

    Value lanes = warpLevel ? arith::ConstantIndexOp::create(b, loc, warpLanes)
                            : tileValue;
    auto inner = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                         ValueRange{lanes}, ValueRange{one});
    b.setInsertionPoint(inner.getBody()->getTerminator());
    Value index = tileBase;
    Operation *insertBefore = inner.getBody()->getTerminator();
    if (!warpLevel) {
      Value offset = arith::MulIOp::create(
          b, loc, inner.getInductionVars()[0], loop.getStep()[last]);
      index = arith::AddIOp::create(b, loc, tileBase, offset);
      Value inRange = arith::CmpIOp::create(
          b, loc, arith::CmpIPredicate::slt, index, loop.getUpperBound()[last]);
      auto guard =
          scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);
      insertBefore = guard.thenBlock()->getTerminator();
    }

    Block *body = loop.getBody();
    for (unsigned d = 0; d < last; ++d)
      body->getArgument(d).replaceAllUsesWith(ivs[d]);
    body->getArgument(last).replaceAllUsesWith(index);
    for (Operation &op : llvm::make_early_inc_range(body->without_terminator()))
      op.moveBefore(insertBefore);
    loop.erase();
  }
};

} // namespace
