//===- FuseLatentProjection.cpp - dsv3.mla on the latent KV cache ---------===//
//
// The layout of a dsv3.mla cache decides how the op is computed (see
// DSV3Ops.td), so switching a module to absorbed MLA is a change of the cache
// type. The cache is one value threaded through the whole forward pass:
//
//   entry arg -> call -> @forward arg -> scf.for iter_arg -> extract_slice
//     -> dsv3.mla -> insert_slice -> scf.yield -> loop result -> return
//
// The pass collects every value on that path (starting from the dsv3.mla
// cache operands and following only these cache-carrying edges), gives each
// the latent width, fixes the slices' static sizes and the function types.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Dialect/DSV3/Transforms/Passes.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/IR/Verifier.h"
#include "llvm/ADT/SetVector.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3FUSELATENTPROJECTION
#include "dsv3/Dialect/DSV3/Transforms/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;
using namespace mlir::dsv3;

namespace {

struct FuseLatentProjectionPass
    : dsv3::impl::DSV3FuseLatentProjectionBase<FuseLatentProjectionPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SmallVector<MlaOp> expanded;
    module.walk([&](MlaOp op) {
      if (!op.hasLatentCache())
        expanded.push_back(op);
    });
    if (expanded.empty())
      return;
    // One expanded width maps to one latent width across the module (the
    // layers share one stacked cache).
    const int64_t fromWidth = expanded.front().getExpandedCacheWidth();
    const int64_t toWidth = expanded.front().getLatentCacheWidth();
    for (MlaOp op : expanded)
      if (op.getExpandedCacheWidth() != fromWidth ||
          op.getLatentCacheWidth() != toWidth) {
        op.emitOpError("has a different cache geometry than the other "
                       "dsv3.mla ops of the module; "
                       "dsv3-fuse-latent-projection needs one");
        return signalPassFailure();
      }

    SetVector<Value> cacheValues = collectCacheValues(module, expanded);
    for (Value v : cacheValues) {
      auto type = dyn_cast<RankedTensorType>(v.getType());
      if (!type || type.getShape().back() != fromWidth) {
        emitError(v.getLoc()) << "dsv3-fuse-latent-projection: a value the "
                                 "KV cache flows through has type "
                              << v.getType() << ", expected a last dimension of "
                              << fromWidth;
        return signalPassFailure();
      }
      SmallVector<int64_t> shape(type.getShape());
      shape.back() = toWidth;
      v.setType(RankedTensorType::get(shape, type.getElementType()));
    }

    // Slices of the cache carry the width in their static sizes.
    auto fixSizes = [&](auto slice, Value sliced) {
      if (!cacheValues.contains(sliced))
        return;
      SmallVector<int64_t> sizes(slice.getStaticSizes());
      if (!sizes.empty() && sizes.back() == fromWidth) {
        sizes.back() = toWidth;
        slice.setStaticSizes(sizes);
      }
    };
    module.walk([&](Operation *op) {
      if (auto extract = dyn_cast<tensor::ExtractSliceOp>(op))
        fixSizes(extract, extract.getSource());
      else if (auto insert = dyn_cast<tensor::InsertSliceOp>(op))
        fixSizes(insert, insert.getDest());
    });

    // Function signatures follow their entry blocks and returns.
    module.walk([&](func::FuncOp func) {
      if (func.isExternal())
        return;
      auto ret = cast<func::ReturnOp>(func.getBody().back().getTerminator());
      func.setFunctionType(FunctionType::get(
          func.getContext(), func.getBody().front().getArgumentTypes(),
          ret.getOperandTypes()));
    });
    if (failed(verify(module)))
      return signalPassFailure();
  }

  /// Every value the KV cache flows through, from the dsv3.mla cache operands
  /// along slices, loops, calls and returns.
  SetVector<Value> collectCacheValues(ModuleOp module,
                                      ArrayRef<MlaOp> roots) {
    SymbolTable symbols(module);
    SetVector<Value> seen;
    SmallVector<Value> worklist;
    auto visit = [&](Value v) {
      if (v && seen.insert(v))
        worklist.push_back(v);
    };
    for (MlaOp op : roots) {
      visit(op.getCache());
      visit(op.getUpdatedCache());
    }
    while (!worklist.empty()) {
      Value v = worklist.pop_back_val();
      // Where it comes from.
      if (Operation *def = v.getDefiningOp()) {
        if (auto mla = dyn_cast<MlaOp>(def))
          visit(mla.getCache());
        else if (auto extract = dyn_cast<tensor::ExtractSliceOp>(def))
          visit(extract.getSource());
        else if (auto insert = dyn_cast<tensor::InsertSliceOp>(def)) {
          visit(insert.getDest());
          visit(insert.getSource());
        } else if (auto loop = dyn_cast<scf::ForOp>(def)) {
          unsigned i = cast<OpResult>(v).getResultNumber();
          visit(loop.getInitArgs()[i]);
          visit(loop.getRegionIterArgs()[i]);
          visit(loop.getYieldedValues()[i]);
        } else if (auto call = dyn_cast<func::CallOp>(def)) {
          auto callee = symbols.lookup<func::FuncOp>(call.getCallee());
          unsigned i = cast<OpResult>(v).getResultNumber();
          if (callee && !callee.isExternal())
            visit(cast<func::ReturnOp>(callee.getBody().back().getTerminator())
                      .getOperand(i));
        } else if (auto cast_ = dyn_cast<tensor::CastOp>(def)) {
          visit(cast_.getSource());
        }
      } else {
        auto arg = cast<BlockArgument>(v);
        Operation *parent = arg.getOwner()->getParentOp();
        if (auto loop = dyn_cast<scf::ForOp>(parent)) {
          if (arg.getArgNumber() > 0) {
            unsigned i = arg.getArgNumber() - 1;
            visit(loop.getInitArgs()[i]);
            visit(loop.getResult(i));
            visit(loop.getYieldedValues()[i]);
          }
        } else if (auto func = dyn_cast<func::FuncOp>(parent)) {
          // Callers pass it in.
          if (auto uses = symbols.getSymbolUses(func, module))
            for (const SymbolTable::SymbolUse &use : *uses)
              if (auto call = dyn_cast<func::CallOp>(use.getUser()))
                visit(call.getOperand(arg.getArgNumber()));
        }
      }
      // Where it goes.
      for (OpOperand &use : v.getUses()) {
        Operation *user = use.getOwner();
        unsigned n = use.getOperandNumber();
        if (auto mla = dyn_cast<MlaOp>(user)) {
          if (use.get() == mla.getCache())
            visit(mla.getUpdatedCache());
        } else if (auto extract = dyn_cast<tensor::ExtractSliceOp>(user)) {
          visit(extract.getResult());
        } else if (auto insert = dyn_cast<tensor::InsertSliceOp>(user)) {
          visit(insert.getResult());
          visit(insert.getSource());
          visit(insert.getDest());
        } else if (auto loop = dyn_cast<scf::ForOp>(user)) {
          unsigned first = loop.getNumControlOperands();
          if (n >= first) {
            visit(loop.getRegionIterArgs()[n - first]);
            visit(loop.getResult(n - first));
          }
        } else if (auto yield = dyn_cast<scf::YieldOp>(user)) {
          if (auto loop = dyn_cast<scf::ForOp>(yield->getParentOp())) {
            visit(loop.getResult(n));
            visit(loop.getRegionIterArgs()[n]);
          }
        } else if (auto call = dyn_cast<func::CallOp>(user)) {
          auto callee = symbols.lookup<func::FuncOp>(call.getCallee());
          if (callee && !callee.isExternal())
            visit(callee.getArgument(n));
        } else if (auto ret = dyn_cast<func::ReturnOp>(user)) {
          auto func = ret->getParentOfType<func::FuncOp>();
          if (auto uses = symbols.getSymbolUses(func, module))
            for (const SymbolTable::SymbolUse &symbolUse : *uses)
              if (auto call = dyn_cast<func::CallOp>(symbolUse.getUser()))
                visit(call.getResult(n));
        } else if (auto cast_ = dyn_cast<tensor::CastOp>(user)) {
          visit(cast_.getResult());
        }
      }
    }
    return seen;
  }
};

} // namespace
