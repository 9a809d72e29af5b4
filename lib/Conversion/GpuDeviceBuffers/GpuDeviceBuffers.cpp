//===- GpuDeviceBuffers.cpp - host code's buffers in device memory --------===//
//
// After convert-parallel-loops-to-gpu the model math is in gpu.launch
// bodies; the host code around them only allocates, frees, takes views and
// launches. This pass makes its allocations device allocations, brings the
// few scalars the host branches on (the used cache length) over with an
// explicit copy, and moves constants the kernels read into the kernels.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/Dialect/Vector/IR/VectorOps.h"
#include "mlir/IR/Builders.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3GPUDEVICEBUFFERS
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

/// Host ops of `func`, in order: everything not inside a gpu.launch (the
/// launches themselves included).
SmallVector<Operation *> hostOps(func::FuncOp func) {
  SmallVector<Operation *> ops;
  func.getBody().walk<WalkOrder::PreOrder>([&](Operation *op) {
    ops.push_back(op);
    return isa<gpu::LaunchOp>(op) ? WalkResult::skip()
                                  : WalkResult::advance();
  });
  return ops;
}

struct GpuDeviceBuffersPass
    : dsv3::impl::DSV3GpuDeviceBuffersBase<GpuDeviceBuffersPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>()) {
      if (func.isExternal())
        continue;
      SmallVector<Operation *> vectorValues;
      for (Operation *op : hostOps(func)) {
        if (auto alloc = dyn_cast<memref::AllocOp>(op))
          toDeviceAlloc(alloc);
        else if (auto dealloc = dyn_cast<memref::DeallocOp>(op))
          toDeviceDealloc(dealloc);
        else if (auto load = dyn_cast<memref::LoadOp>(op))
          stageToHost(load);
        else if (isa<memref::GetGlobalOp>(op))
          sinkIntoKernels(op);
        else if (isKernelVectorValue(op))
          vectorValues.push_back(op);
      }
      // Users first: each clone goes to the top of the kernel, so an
      // operand's clone, made later, lands before its user's.
      for (Operation *op : llvm::reverse(vectorValues))
        sinkIntoKernels(op);
      if (failed(verifyNoHostAccess(func)))
        return signalPassFailure();
    }
  }

  void toDeviceAlloc(memref::AllocOp alloc) {
    OpBuilder b(alloc);
    auto device = gpu::AllocOp::create(
        b, alloc.getLoc(), alloc.getType(), /*asyncToken=*/Type(),
        ValueRange{}, alloc.getDynamicSizes(), alloc.getSymbolOperands(),
        /*hostShared=*/false);
    alloc.replaceAllUsesWith(device.getMemref());
    alloc.erase();
  }

  void toDeviceDealloc(memref::DeallocOp dealloc) {
    OpBuilder b(dealloc);
    gpu::DeallocOp::create(b, dealloc.getLoc(), /*asyncToken=*/Type(),
                           ValueRange{}, dealloc.getMemref());
    dealloc.erase();
  }

  /// %v = memref.load %buffer[%i] on the host becomes: a one-thread kernel
  /// copies buffer[i] into a device scalar, gpu.memcpy copies that into a
  /// host scalar, and the host loads it.
  void stageToHost(memref::LoadOp load) {
    OpBuilder b(load);
    Location loc = load.getLoc();
    auto scalarType = MemRefType::get({}, load.getType());
    Value device =
        gpu::AllocOp::create(b, loc, scalarType, Type(), ValueRange{},
                             ValueRange{}, ValueRange{}, false)
            .getMemref();
    Value one = arith::ConstantIndexOp::create(b, loc, 1);
    auto launch = gpu::LaunchOp::create(b, loc, one, one, one, one, one, one);
    {
      OpBuilder::InsertionGuard guard(b);
      b.setInsertionPointToStart(&launch.getBody().front());
      Value element = memref::LoadOp::create(b, loc, load.getMemRef(),
                                             load.getIndices());
      memref::StoreOp::create(b, loc, element, device, ValueRange{});
      gpu::TerminatorOp::create(b, loc);
    }
    Value host = memref::AllocaOp::create(b, loc, scalarType);
    gpu::MemcpyOp::create(b, loc, Type(), ValueRange{}, host, device);
    gpu::DeallocOp::create(b, loc, Type(), ValueRange{}, device);
    Value value = memref::LoadOp::create(b, loc, host, ValueRange{});
    load.replaceAllUsesWith(value);
    load.erase();
  }

  /// A vector value the kernels may read that canonicalization hoisted to
  /// the host: a constant (the warp tiles' zero accumulator), vector.step
  /// (a tile's column numbers), or a broadcast / shape_cast of such a value.
  static bool isKernelVectorValue(Operation *op) {
    if (op->getNumResults() != 1 || !isa<VectorType>(op->getResult(0).getType()))
      return false;
    if (isa<arith::ConstantOp, vector::StepOp>(op))
      return true;
    if (!isa<vector::BroadcastOp, vector::ShapeCastOp>(op))
      return false;
    Operation *source = op->getOperand(0).getDefiningOp();
    return source && isKernelVectorValue(source);
  }

  /// A host pointer to a constant means nothing to a kernel: each kernel
  /// gets its own memref.get_global, and gpu-kernel-outlining copies the
  /// global into the GPU module. A vector constant (the warp tiles' zero
  /// accumulator) is re-created in each kernel too rather than passed as a
  /// kernel argument, so dsv3-gpu-warp-mma sees the constant.
  void sinkIntoKernels(Operation *global) {
    SmallVector<gpu::LaunchOp> launches;
    for (Operation *user : global->getUsers()) {
      auto launch = user->getParentOfType<gpu::LaunchOp>();
      if (launch && !llvm::is_contained(launches, launch))
        launches.push_back(launch);
    }
    for (gpu::LaunchOp launch : launches) {
      OpBuilder b = OpBuilder::atBlockBegin(&launch.getBody().front());
      Operation *copy = b.clone(*global);
      global->getResult(0).replaceUsesWithIf(
          copy->getResult(0), [&](OpOperand &use) {
            return launch->isProperAncestor(use.getOwner());
          });
    }
    if (global->use_empty())
      global->erase();
  }

  /// What is left on the host must not read or write a device buffer;
  /// the only host buffers are the staging scalars.
  LogicalResult verifyNoHostAccess(func::FuncOp func) {
    for (Operation *op : hostOps(func)) {
      if (auto alloca = dyn_cast<memref::AllocaOp>(op)) {
        // A host stack buffer is fine for the host, never for a kernel.
        for (Operation *user : alloca->getUsers())
          if (user->getParentOfType<gpu::LaunchOp>())
            return alloca.emitOpError(
                "is host stack memory used by a GPU kernel");
        continue;
      }
      if (isa<gpu::GPUDialect>(op->getDialect()))
        continue;
      auto effects = dyn_cast<MemoryEffectOpInterface>(op);
      if (!effects || !(effects.hasEffect<MemoryEffects::Read>() ||
                        effects.hasEffect<MemoryEffects::Write>()))
        continue;
      if (auto load = dyn_cast<memref::LoadOp>(op))
        if (load.getMemRef().getDefiningOp<memref::AllocaOp>())
          continue;
      return op->emitOpError(
          "accesses a buffer on the host; on the GPU every buffer is in "
          "device memory (run dsv3-wrap-serial-code-for-gpu first)");
    }
    return success();
  }
};

} // namespace
