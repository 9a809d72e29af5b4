//===- OutlineWeightPreparation.cpp - the compiled prepare entry -----------===//
//
// The forward function is private and called only by the entry points
// (@prefill, @decode), which pass their weight arguments (`dsv3.weight`)
// straight through. So an argument of the forward function is a weight when
// every call passes an entry argument with `dsv3.weight` in its place, and
// an operation whose operands are such weights (or constants, or results of
// such operations) computes the same value on every call: it belongs to
// @prepare.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Dialect/DSV3/Transforms/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Tensor/IR/Tensor.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"
#include "mlir/IR/IRMapping.h"
#include "mlir/IR/SymbolTable.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"
#include "llvm/ADT/SetVector.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3OUTLINEWEIGHTPREPARATION
#include "dsv3/Dialect/DSV3/Transforms/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;
using namespace mlir::dsv3;

namespace {

constexpr StringLiteral kEntry = "dsv3.entry";
constexpr StringLiteral kWeight = "dsv3.weight";
constexpr StringLiteral kPreparedName = "dsv3.prepared_weight";

/// The entry-point argument passed as operand `i` of `call`, if it is a
/// weight argument of an entry point.
BlockArgument entryWeightOperand(func::CallOp call, unsigned i) {
  auto arg = dyn_cast<BlockArgument>(call.getOperand(i));
  if (!arg)
    return {};
  auto entry = dyn_cast<func::FuncOp>(arg.getOwner()->getParentOp());
  if (!entry || !entry->hasAttr(kEntry) ||
      arg.getOwner() != &entry.getBody().front() ||
      !entry.getArgAttr(arg.getArgNumber(), kWeight))
    return {};
  return arg;
}

int64_t elementBytes(Type type) {
  return std::max<int64_t>(
      1, cast<RankedTensorType>(type).getElementTypeBitWidth() / 8);
}

struct OutlineWeightPreparationPass
    : dsv3::impl::DSV3OutlineWeightPreparationBase<
          OutlineWeightPreparationPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    SymbolTable symbols(module);
    SmallVector<func::FuncOp> candidates;
    for (auto func : module.getOps<func::FuncOp>())
      if (!func.isExternal() && !func->hasAttr(kEntry))
        candidates.push_back(func);
    for (func::FuncOp func : candidates)
      if (failed(outline(module, symbols, func)))
        return signalPassFailure();
  }

  LogicalResult outline(ModuleOp module, SymbolTable &symbols,
                        func::FuncOp func) {
    // Its calls, all from entry points.
    SmallVector<func::CallOp> calls;
    auto uses = symbols.getSymbolUses(func, module);
    if (!uses)
      return success();
    for (const SymbolTable::SymbolUse &use : *uses) {
      auto call = dyn_cast<func::CallOp>(use.getUser());
      if (!call)
        return success(); // taken by address: leave it alone
      calls.push_back(call);
    }
    if (calls.empty())
      return success();
    Block &body = func.getBody().front();
    llvm::SmallBitVector isWeight(func.getNumArguments(), true);
    for (func::CallOp call : calls)
      for (unsigned i = 0; i < func.getNumArguments(); ++i)
        if (!entryWeightOperand(call, i))
          isWeight.reset(i);

    // Operations computed from weights alone, in order.
    SetVector<Operation *> hoisted;
    auto fromWeights = [&](Value v) {
      if (auto arg = dyn_cast<BlockArgument>(v))
        return arg.getOwner() == &body && isWeight.test(arg.getArgNumber());
      return hoisted.contains(v.getDefiningOp());
    };
    // Slices and casts of a weight are views of it (one layer of a stack,
    // e.g. the MTP module's only layer): nothing to compute ahead.
    auto isView = [](Operation &op) {
      return isa<tensor::ExtractSliceOp, tensor::CastOp,
                 tensor::CollapseShapeOp, tensor::ExpandShapeOp>(op);
    };
    for (Operation &op : body.without_terminator())
      if (op.getNumRegions() == 0 && isMemoryEffectFree(&op) && !isView(op) &&
          (op.getNumOperands() > 0 || op.hasTrait<OpTrait::ConstantLike>()) &&
          llvm::all_of(op.getOperands(), fromWeights))
        hoisted.insert(&op);
    // The values the rest of the function needs.
    SmallVector<Value> prepared;
    for (Operation *op : hoisted) {
      if (op->hasTrait<OpTrait::ConstantLike>())
        continue;
      for (Value result : op->getResults())
        if (llvm::any_of(result.getUsers(), [&](Operation *user) {
              return !hoisted.contains(user);
            }))
          prepared.push_back(result);
    }
    if (prepared.empty())
      return success();
    // One @prepare serves every forward function (e.g. @forward and the
    // speculative @forward_all and @mtp_forward): a weight it already reads
    // is not passed twice, and a prepared weight it already computes (same
    // name) is not computed twice.
    OpBuilder b(module.getContext());
    auto prepare = symbols.lookup<func::FuncOp>("prepare");
    if (!prepare) {
      b.setInsertionPointToEnd(module.getBody());
      prepare = func::FuncOp::create(b, func.getLoc(), "prepare",
                                     b.getFunctionType({}, {}));
      symbols.insert(prepare);
      prepare->setAttr("llvm.emit_c_interface", b.getUnitAttr());
      prepare->setAttr(kEntry, b.getStringAttr("prepare"));
      Block *block = prepare.addEntryBlock();
      b.setInsertionPointToStart(block);
      func::ReturnOp::create(b, func.getLoc(), ValueRange{});
    } else if (!prepare->hasAttr(kEntry)) {
      return module.emitError("dsv3-outline-weight-preparation: the module "
                              "already has a @prepare that is not its own");
    }
    Block *prepareBody = &prepare.getBody().front();
    auto prepareReturn = cast<func::ReturnOp>(prepareBody->getTerminator());

    // @prepare(weights it reads) -> prepared weights.
    func::FuncOp firstCaller = calls.front()->getParentOfType<func::FuncOp>();
    IRMapping mapping;
    for (BlockArgument arg : body.getArguments()) {
      if (!isWeight.test(arg.getArgNumber()) ||
          llvm::none_of(arg.getUsers(), [&](Operation *user) {
            return hoisted.contains(user);
          }))
        continue;
      DictionaryAttr attrs = firstCaller.getArgAttrDict(
          entryWeightOperand(calls.front(), arg.getArgNumber())
              .getArgNumber());
      Attribute role = attrs ? attrs.get(kWeight) : Attribute();
      Value existing;
      for (unsigned k = 0; k < prepare.getNumArguments() && role; ++k)
        if (prepare.getArgAttr(k, kWeight) == role)
          existing = prepare.getArgument(k);
      if (!existing) {
        unsigned index = prepare.getNumArguments();
        if (failed(prepare.insertArgument(index, arg.getType(), attrs,
                                          arg.getLoc())))
          return failure();
        existing = prepare.getArgument(index);
      }
      mapping.map(arg, existing);
    }
    b.setInsertionPoint(prepareReturn);
    for (Operation *op : hoisted) {
      Operation *clone = b.clone(*op, mapping);
      clone->removeAttr(kPreparedName);
    }
    SmallVector<StringAttr> names;
    SmallVector<Value> returned(prepareReturn.getOperands());
    SmallVector<int64_t> destinations, bytes;
    if (auto old = prepare->getAttrOfType<DenseI64ArrayAttr>(
            "dsv3.result_destinations"))
      destinations.assign(old.asArrayRef().begin(), old.asArrayRef().end());
    if (auto old = prepare->getAttrOfType<DenseI64ArrayAttr>(
            "dsv3.result_element_bytes"))
      bytes.assign(old.asArrayRef().begin(), old.asArrayRef().end());
    SmallVector<StringAttr> resultNames;
    for (unsigned k = 0; k < prepare.getNumResults(); ++k)
      resultNames.push_back(prepare.getResultAttrOfType<StringAttr>(k, kWeight));
    for (auto [k, v] : llvm::enumerate(prepared)) {
      auto name = v.getDefiningOp()->getAttrOfType<StringAttr>(kPreparedName);
      if (!name)
        name = b.getStringAttr("prepared." +
                               std::to_string(resultNames.size()));
      names.push_back(name);
      if (llvm::is_contained(resultNames, name))
        continue;
      resultNames.push_back(name);
      returned.push_back(mapping.lookup(v));
      // Each prepared weight is a separate output buffer of the runtime.
      destinations.push_back(-1);
      bytes.push_back(elementBytes(v.getType()));
    }
    prepareReturn->setOperands(returned);
    SmallVector<Type> resultTypes;
    for (Value v : returned)
      resultTypes.push_back(v.getType());
    prepare.setType(b.getFunctionType(prepare.getArgumentTypes(), resultTypes));
    for (auto [k, name] : llvm::enumerate(resultNames))
      prepare.setResultAttr(k, kWeight, name);
    prepare->setAttr("dsv3.result_destinations",
                     b.getDenseI64ArrayAttr(destinations));
    prepare->setAttr("dsv3.result_element_bytes",
                     b.getDenseI64ArrayAttr(bytes));
    // Clones whose result @prepare already computed.
    SmallVector<Operation *> bodyOps;
    for (Operation &op : prepareBody->without_terminator())
      bodyOps.push_back(&op);
    for (Operation *op : llvm::reverse(bodyOps))
      if (op->use_empty() && isMemoryEffectFree(op))
        op->erase();
    resultTypes.clear();
    for (Value v : prepared)
      resultTypes.push_back(v.getType());

    // The forward function takes the prepared weights instead.
    for (auto [k, v] : llvm::enumerate(prepared)) {
      unsigned index = func.getNumArguments();
      if (failed(func.insertArgument(index, v.getType(), {}, v.getLoc())))
        return failure();
      v.replaceUsesWithIf(func.getArgument(index), [&](OpOperand &use) {
        return !hoisted.contains(use.getOwner());
      });
    }
    SmallVector<Location> locs;
    for (Value v : prepared)
      locs.push_back(v.getLoc());
    for (Operation *op : llvm::reverse(hoisted))
      if (op->use_empty())
        op->erase();
    // So do the entry points, which pass them through.
    for (func::CallOp call : calls) {
      auto entry = call->getParentOfType<func::FuncOp>();
      SmallVector<Value> operands(call.getOperands());
      for (auto [k, type] : llvm::enumerate(resultTypes)) {
        unsigned index = entry.getNumArguments();
        if (failed(entry.insertArgument(index, type, {}, locs[k])))
          return failure();
        entry.setArgAttr(index, kWeight, names[k]);
        entry.setArgAttr(index, "dsv3.prepared", b.getUnitAttr());
        operands.push_back(entry.getArgument(index));
      }
      call->setOperands(operands);
    }
    // Weights only the preparation read leave the forward function and the
    // entry points.
    for (unsigned i = func.getNumArguments(); i-- > 0;) {
      if (i >= isWeight.size() || !isWeight.test(i) ||
          !func.getArgument(i).use_empty())
        continue;
      for (func::CallOp call : calls) {
        BlockArgument passed = entryWeightOperand(call, i);
        call->eraseOperand(i);
        auto entry = call->getParentOfType<func::FuncOp>();
        if (passed.use_empty() &&
            failed(entry.eraseArgument(passed.getArgNumber())))
          return failure();
      }
      if (failed(func.eraseArgument(i)))
        return failure();
    }
    return success();
  }
};

} // namespace
