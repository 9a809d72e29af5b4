//===- OpenMPSchedule.cpp - the schedule of the parallel weight streams -----===//
//
// convert-scf-to-openmp leaves the schedule unset (static: equal contiguous
// chunks per thread). On a shared machine one thread is often slowed down by
// a neighbour, and every other thread then waits for it at the loop's end;
// a different schedule trades some locality for balance. The kind is an
// option so it can be measured (docs/benchmarks.md).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/OpenMP/OpenMPDialect.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3OPENMPSCHEDULE
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

struct OpenMPSchedulePass
    : dsv3::impl::DSV3OpenMPScheduleBase<OpenMPSchedulePass> {
  using DSV3OpenMPScheduleBase::DSV3OpenMPScheduleBase;

  void runOnOperation() override {
    std::optional<omp::ClauseScheduleKind> kind =
        omp::symbolizeClauseScheduleKind(schedule.getValue());
    if (!kind || *kind == omp::ClauseScheduleKind::Distribute) {
      getOperation()->emitError("dsv3-openmp-schedule: unknown schedule '")
          << schedule.getValue()
          << "' (expected static, dynamic, guided, auto or runtime)";
      return signalPassFailure();
    }
    getOperation()->walk([&](omp::WsloopOp loop) {
      loop.setScheduleKindAttr(
          omp::ClauseScheduleKindAttr::get(&getContext(), *kind));
    });
  }
};

} // namespace
