//===- WrapSerialCodeForGpu.cpp - host-level buffer accesses -> kernels ---===//
//
// On the GPU the host may not dereference a buffer: every op that reads or
// writes memory has to end up inside a kernel. The parallel work already is
// in scf.parallel loops; this pass gives each remaining serial op a
// one-iteration scf.parallel of its own, which convert-parallel-loops-to-gpu
// turns into a single-thread kernel.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/CallInterfaces.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3WRAPSERIALCODEFORGPU
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

/// Whether `op` or anything nested in it reads or writes a buffer.
/// Allocation and deallocation are not accesses: they stay on the host
/// (dsv3-gpu-device-buffers makes them device allocations).
bool accessesMemory(Operation *op) {
  WalkResult result = op->walk([](Operation *nested) {
    auto effects = dyn_cast<MemoryEffectOpInterface>(nested);
    if (!effects) {
      // Without the interface, only ops whose regions carry the effects
      // (scf.for, scf.if) are known not to access memory themselves; any
      // other op taking a buffer is assumed to.
      if (nested->hasTrait<OpTrait::HasRecursiveMemoryEffects>())
        return WalkResult::advance();
      for (Value operand : nested->getOperands())
        if (isa<MemRefType>(operand.getType()))
          return WalkResult::interrupt();
      return WalkResult::advance();
    }
    if (effects.hasEffect<MemoryEffects::Read>() ||
        effects.hasEffect<MemoryEffects::Write>())
      return WalkResult::interrupt();
    return WalkResult::advance();
  });
  return result.wasInterrupted();
}

bool containsParallelLoop(Operation *op) {
  return op
      ->walk([](scf::ParallelOp) { return WalkResult::interrupt(); })
      .wasInterrupted();
}

struct WrapSerialCodeForGpuPass
    : dsv3::impl::DSV3WrapSerialCodeForGpuBase<WrapSerialCodeForGpuPass> {
  void runOnOperation() override {
    if (failed(processBlocksOf(getOperation())))
      signalPassFailure();
  }

  LogicalResult processBlocksOf(Operation *parent) {
    for (Region &region : parent->getRegions())
      for (Block &block : region)
        for (Operation &op : llvm::make_early_inc_range(block))
          if (failed(process(&op)))
            return failure();
    return success();
  }

  LogicalResult process(Operation *op) {
    // A call's callee is a function of this module, wrapped on its own.
    if (isa<scf::ParallelOp, CallOpInterface>(op))
      return success();
    // Host control flow around kernels (the layer loop): its body is host
    // code in turn.
    if (containsParallelLoop(op))
      return processBlocksOf(op);
    if (!accessesMemory(op))
      return success();
    // A scalar the host needs; dsv3-gpu-device-buffers stages it.
    if (isa<memref::LoadOp>(op))
      return success();
    for (Type type : op->getResultTypes())
      if (!type.isIntOrIndexOrFloat())
        return op->emitOpError(
            "reads memory on the host and returns a non-scalar value; it "
            "cannot be moved into a GPU kernel");
    wrap(op);
    return success();
  }

  /// scf.parallel (%i) = (0) to (1) step (1) { op }. Scalar results (the
  /// number of active experts a serial loop counts) leave the kernel
  /// through one-element buffers that the host loads after it.
  void wrap(Operation *op) {
    OpBuilder b(op);
    Location loc = op->getLoc();
    SmallVector<Value> resultBuffers;
    for (Type type : op->getResultTypes())
      resultBuffers.push_back(
          memref::AllocOp::create(b, loc, MemRefType::get({}, type)));
    Value zero = arith::ConstantIndexOp::create(b, loc, 0);
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto loop = scf::ParallelOp::create(b, loc, ValueRange{zero},
                                        ValueRange{one}, ValueRange{one});
    op->moveBefore(loop.getBody()->getTerminator());
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPoint(loop.getBody()->getTerminator());
      for (auto [result, buffer] :
           llvm::zip_equal(op->getResults(), resultBuffers))
        memref::StoreOp::create(b, loc, result, buffer, ValueRange{});
    }
    b.setInsertionPointAfter(loop);
    for (auto [result, buffer] :
         llvm::zip_equal(op->getResults(), resultBuffers)) {
      Value value = memref::LoadOp::create(b, loc, buffer, ValueRange{});
      result.replaceUsesWithIf(value, [&](OpOperand &use) {
        return !loop->isProperAncestor(use.getOwner());
      });
    }
    for (Value buffer : resultBuffers)
      memref::DeallocOp::create(b, loc, buffer);
  }
};

} // namespace
