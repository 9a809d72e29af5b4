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
#include "mlir/Interfaces/SideEffectInterfaces.h"
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

/// The rows of `first` then `second` as one weight. Layer slices of two
/// stacked function arguments at the same index become a slice of the
/// stacks' concatenation, built once at function entry (and cached in
/// `stacks`); anything else is concatenated where it is used.
Value concatRows(OpBuilder &b, Location loc, Value first, Value second,
                 StringRef preparedName,
                 DenseMap<std::pair<Value, Value>, Value> &stacks) {
  auto sliceA = first.getDefiningOp<tensor::ExtractSliceOp>();
  auto sliceB = second.getDefiningOp<tensor::ExtractSliceOp>();
  auto entryArg = [](Value v) {
    auto arg = dyn_cast<BlockArgument>(v);
    return arg && isa<func::FuncOp>(arg.getOwner()->getParentOp());
  };
  auto firstType = cast<RankedTensorType>(first.getType());
  auto secondType = cast<RankedTensorType>(second.getType());
  const int64_t rows = firstType.getDimSize(0) + secondType.getDimSize(0);
  if (sliceA && sliceB && entryArg(sliceA.getSource()) &&
      entryArg(sliceB.getSource()) &&
      sliceA.getMixedOffsets() == sliceB.getMixedOffsets() &&
      cast<RankedTensorType>(sliceA.getSourceType()).getRank() == 3 &&
      sliceA.getSourceType().getDimSize(0) ==
          sliceB.getSourceType().getDimSize(0)) {
    Value &stack = stacks[{sliceA.getSource(), sliceB.getSource()}];
    if (!stack) {
      OpBuilder::InsertionGuard guard(b);
      auto func = cast<func::FuncOp>(
          cast<BlockArgument>(sliceA.getSource()).getOwner()->getParentOp());
      b.setInsertionPointToStart(&func.getBody().front());
      auto concat = tensor::ConcatOp::create(
          b, loc, /*dim=*/1,
          ValueRange{sliceA.getSource(), sliceB.getSource()});
      concat->setAttr("dsv3.prepared_weight", b.getStringAttr(preparedName));
      stack = concat.getResult();
    }
    auto stackType = cast<RankedTensorType>(stack.getType());
    SmallVector<OpFoldResult> sizes = sliceA.getMixedSizes();
    sizes[1] = b.getIndexAttr(rows);
    return tensor::ExtractSliceOp::create(
        b, loc,
        RankedTensorType::get({rows, stackType.getDimSize(2)},
                              stackType.getElementType()),
        stack, sliceA.getMixedOffsets(), sizes, sliceA.getMixedStrides());
  }
  return tensor::ConcatOp::create(b, loc, /*dim=*/0, ValueRange{first, second});
}

/// Replaces q_a and kv_a of `op` by their concatenation q_kv_a, in place,
/// where the fused form applies (see Passes.td).
void fuseDownProjections(MlaOp op,
                         DenseMap<std::pair<Value, Value>, Value> &stacks) {
  if (!op.getWqA() || !op.getWkvA())
    return;
  auto qaType = cast<RankedTensorType>(op.getWqA().getType());
  auto kvaType = cast<RankedTensorType>(op.getWkvA().getType());
  if (qaType.getElementType() != kvaType.getElementType())
    return;
  if (isa<Float8E4M3FNType>(qaType.getElementType()) &&
      qaType.getDimSize(0) % 128 != 0)
    return;
  OpBuilder b(op);
  Location loc = op.getLoc();
  // The importer marks the blocks whose weights have prefixed roles (the MTP
  // module's "mtp."): their prepared weight is named the same way.
  std::string prefix;
  if (auto attr = op->getAttrOfType<StringAttr>("dsv3.weight_prefix"))
    prefix = attr.getValue().str();
  Value fused = concatRows(b, loc, op.getWqA(), op.getWkvA(),
                           prefix + "attn.wq_kv_a", stacks);
  Value fusedScale;
  if (op.getWqAScale())
    fusedScale = concatRows(b, loc, op.getWqAScale(), op.getWkvAScale(),
                            prefix + "attn.wq_kv_a.scale", stacks);
  SmallVector<Value> replaced{op.getWqA(), op.getWkvA(), op.getWqAScale(),
                              op.getWkvAScale()};
  // The mutable ranges keep the operand segment sizes in step.
  op.getWqAMutable().clear();
  op.getWqAScaleMutable().clear();
  op.getWkvAMutable().clear();
  op.getWkvAScaleMutable().clear();
  op.getWqKvAMutable().assign(fused);
  if (fusedScale)
    op.getWqKvAScaleMutable().assign(fusedScale);
  // The layer slices of the separate weights are dead now.
  for (Value old : replaced)
    if (Operation *def = old ? old.getDefiningOp() : nullptr)
      if (def->use_empty() && isMemoryEffectFree(def))
        def->erase();
}

struct FuseLatentProjectionPass
    : dsv3::impl::DSV3FuseLatentProjectionBase<FuseLatentProjectionPass> {
  using DSV3FuseLatentProjectionBase::DSV3FuseLatentProjectionBase;

  void runOnOperation() override {
    ModuleOp module = getOperation();
    if (expandFrom < 0) {
      module.emitError("dsv3-fuse-latent-projection: expand-from must be "
                       ">= 0, got ")
          << static_cast<int64_t>(expandFrom.getValue());
      return signalPassFailure();
    }
    if (failed(switchToLatentCache(module)))
      return signalPassFailure();
    DenseMap<std::pair<Value, Value>, Value> stacks;
    SmallVector<MlaOp> ops;
    module.walk([&](MlaOp op) { ops.push_back(op); });
    for (MlaOp op : ops) {
      if (expandFrom > 0)
        op.setExpandFromAttr(
            IntegerAttr::get(IntegerType::get(&getContext(), 64), expandFrom));
      fuseDownProjections(op, stacks);
    }
    if (failed(verify(module)))
      return signalPassFailure();
  }

  LogicalResult switchToLatentCache(ModuleOp module) {
    SmallVector<MlaOp> expanded;
    module.walk([&](MlaOp op) {
      if (!op.hasLatentCache())
        expanded.push_back(op);
    });
    if (expanded.empty())
      return success();
    // One expanded width maps to one latent width across the module (the
    // layers share one stacked cache).
    const int64_t fromWidth = expanded.front().getExpandedCacheWidth();
    const int64_t toWidth = expanded.front().getLatentCacheWidth();
    for (MlaOp op : expanded) {
      // The packed FP8 layouts differ in more than the width (the latent's
      // rope key is bf16): dsv3-compile imports an FP8 cache as latent.
      if (op.hasPackedFp8Cache())
        return op.emitOpError("has a packed FP8 expanded cache, which "
                              "dsv3-fuse-latent-projection does not switch "
                              "to the latent layout; import the FP8 cache "
                              "as latent");
      if (op.getExpandedCacheWidth() != fromWidth ||
          op.getLatentCacheWidth() != toWidth) {
        return op.emitOpError("has a different cache geometry than the "
                              "other dsv3.mla ops of the module; "
                              "dsv3-fuse-latent-projection needs one");
      }
    }

    SetVector<Value> cacheValues = collectCacheValues(module, expanded);
    for (Value v : cacheValues) {
      auto type = dyn_cast<RankedTensorType>(v.getType());
      if (!type || type.getShape().back() != fromWidth) {
        emitError(v.getLoc()) << "dsv3-fuse-latent-projection: a value the "
                                 "KV cache flows through has type "
                              << v.getType() << ", expected a last dimension of "
                              << fromWidth;
        return failure();
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
    return success();
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
