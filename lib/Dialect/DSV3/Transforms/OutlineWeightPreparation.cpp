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
    for (Operation &op : body.without_terminator())
      if (op.getNumRegions() == 0 && isMemoryEffectFree(&op) &&
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
    if (symbols.lookup("prepare"))
      return module.emitError("dsv3-outline-weight-preparation: the module "
                              "already has a @prepare");

    // @prepare(weights it reads) -> prepared weights.
    SmallVector<unsigned> inputs;
    for (BlockArgument arg : body.getArguments())
      if (isWeight.test(arg.getArgNumber()) &&
          llvm::any_of(arg.getUsers(), [&](Operation *user) {
            return hoisted.contains(user);
          }))
        inputs.push_back(arg.getArgNumber());
    OpBuilder b(module.getContext());
    b.setInsertionPointToEnd(module.getBody());
    SmallVector<Type> inputTypes, resultTypes;
    for (unsigned i : inputs)
      inputTypes.push_back(func.getArgument(i).getType());
    for (Value v : prepared)
      resultTypes.push_back(v.getType());
    auto prepare = func::FuncOp::create(
        b, func.getLoc(), "prepare", b.getFunctionType(inputTypes, resultTypes));
    symbols.insert(prepare);
    prepare->setAttr("llvm.emit_c_interface", b.getUnitAttr());
    prepare->setAttr(kEntry, b.getStringAttr("prepare"));
    // Each prepared weight is a separate output buffer of the runtime.
    prepare->setAttr("dsv3.result_destinations",
                     b.getDenseI64ArrayAttr(
                         SmallVector<int64_t>(prepared.size(), -1)));
    SmallVector<int64_t> bytes;
    for (Type t : resultTypes)
      bytes.push_back(elementBytes(t));
    prepare->setAttr("dsv3.result_element_bytes",
                     b.getDenseI64ArrayAttr(bytes));
    func::FuncOp firstCaller = calls.front()->getParentOfType<func::FuncOp>();
    for (auto [k, i] : llvm::enumerate(inputs))
      prepare.setArgAttrs(
          k, firstCaller.getArgAttrDict(
                 entryWeightOperand(calls.front(), i).getArgNumber()));
    SmallVector<StringAttr> names;
    for (auto [k, v] : llvm::enumerate(prepared)) {
      auto name = v.getDefiningOp()->getAttrOfType<StringAttr>(kPreparedName);
      if (!name)
        name = b.getStringAttr("prepared." + std::to_string(k));
      names.push_back(name);
      prepare.setResultAttr(k, kWeight, name);
    }
    Block *prepareBody = prepare.addEntryBlock();
    b.setInsertionPointToStart(prepareBody);
    IRMapping mapping;
    for (auto [k, i] : llvm::enumerate(inputs))
      mapping.map(func.getArgument(i), prepareBody->getArgument(k));
    for (Operation *op : hoisted) {
      Operation *clone = b.clone(*op, mapping);
      clone->removeAttr(kPreparedName);
    }
    SmallVector<Value> returned;
    for (Value v : prepared)
      returned.push_back(mapping.lookup(v));
    func::ReturnOp::create(b, func.getLoc(), returned);

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
