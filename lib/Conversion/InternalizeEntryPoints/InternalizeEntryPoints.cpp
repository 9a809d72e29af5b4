//===- InternalizeEntryPoints.cpp - private dsv3 entry functions ----------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3INTERNALIZEENTRYPOINTS
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

struct InternalizeEntryPointsPass
    : dsv3::impl::DSV3InternalizeEntryPointsBase<InternalizeEntryPointsPass> {
  void runOnOperation() override {
    for (auto func : getOperation().getOps<func::FuncOp>())
      if (func->hasAttr("dsv3.entry"))
        func.setPrivate();
  }
};

} // namespace
