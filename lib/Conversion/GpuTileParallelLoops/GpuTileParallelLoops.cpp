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
    if (threads < 1) {
      getOperation().emitError("dsv3-gpu-tile-parallel-loops: threads must "
                               "be at least 1");
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
      tile(loop);
    }
  }

  /// parallel (i..., j) in (..., [lb, ub) step s) { body(i, j) } becomes
  ///   parallel (i..., jt) in (..., [lb, ub) step s*T) {
  ///     parallel (t) in [0, T) { j = jt + t*s; if (j < ub) body(i, j) } }
  void tile(scf::ParallelOp loop) {
    unsigned last = loop.getNumLoops() - 1;
    int64_t tileSize = threads;
    std::optional<int64_t> lb = getConstantIntValue(loop.getLowerBound()[last]);
    std::optional<int64_t> ub = getConstantIntValue(loop.getUpperBound()[last]);
    std::optional<int64_t> step = getConstantIntValue(loop.getStep()[last]);
    bool staticExtent = lb && ub && step && *step > 0;
    if (staticExtent) {
      int64_t extent = (*ub - *lb + *step - 1) / *step;
      tileSize = std::max<int64_t>(1, std::min<int64_t>(tileSize, extent));
    }
    OpBuilder b(loop);
    Location loc = loop.getLoc();
    Value tileValue = arith::ConstantIndexOp::create(b, loc, tileSize);
    SmallVector<Value> steps(loop.getStep());
    Value innerStep = steps[last];
    steps[last] = arith::MulIOp::create(b, loc, innerStep, tileValue);
    auto outer = scf::ParallelOp::create(b, loc, loop.getLowerBound(),
                                         loop.getUpperBound(), steps);
    b.setInsertionPoint(outer.getBody()->getTerminator());
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto inner = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                         ValueRange{tileValue},
                                         ValueRange{one});
    b.setInsertionPoint(inner.getBody()->getTerminator());
    Value offset = arith::MulIOp::create(b, loc, inner.getInductionVars()[0],
                                         innerStep);
    Value index =
        arith::AddIOp::create(b, loc, outer.getInductionVars()[last], offset);
    Value inRange = arith::CmpIOp::create(b, loc, arith::CmpIPredicate::slt,
                                          index, loop.getUpperBound()[last]);
    auto guard = scf::IfOp::create(b, loc, inRange, /*withElseRegion=*/false);

    Block *body = loop.getBody();
    for (unsigned d = 0; d < last; ++d)
      body->getArgument(d).replaceAllUsesWith(outer.getInductionVars()[d]);
    body->getArgument(last).replaceAllUsesWith(index);
    Operation *insertBefore = guard.thenBlock()->getTerminator();
    for (Operation &op : llvm::make_early_inc_range(body->without_terminator()))
      op.moveBefore(insertBefore);
    loop.erase();
  }
};

} // namespace
