//===- GpuNameKernels.cpp - kernels named after their dsv3 op -------------===//
//
// gpu-kernel-outlining names kernels <function>_kernel_<n>, which says
// nothing about what they compute. convert-dsv3-to-linalg leaves the dsv3
// op's name in the locations of everything it builds; this pass reads it
// back from each gpu.launch and names the kernel after it.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/GPU/IR/GPUDialect.h"
#include "mlir/IR/BuiltinOps.h"
#include "llvm/ADT/StringMap.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3GPUNAMEKERNELS
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

/// The dsv3 op name tagged in `loc` ("mla" for dsv3.mla), or "" if none.
StringRef dsv3OpName(Location loc) {
  StringRef found;
  loc->walk([&](Location nested) {
    if (auto name = dyn_cast<NameLoc>(nested)) {
      StringRef text = name.getName().getValue();
      if (text.consume_front("dsv3.")) {
        found = text;
        return WalkResult::interrupt();
      }
    }
    return WalkResult::advance();
  });
  return found;
}

struct GpuNameKernelsPass
    : dsv3::impl::DSV3GpuNameKernelsBase<GpuNameKernelsPass> {
  void runOnOperation() override {
    ModuleOp module = getOperation();
    llvm::StringMap<unsigned> counts;
    module.walk([&](gpu::LaunchOp launch) {
      StringRef op = dsv3OpName(launch.getLoc());
      std::string base = op.empty() ? "glue" : op.str();
      std::string name = base + "_" + std::to_string(counts[base]++);
      auto symbol = FlatSymbolRefAttr::get(module.getContext(), name);
      launch.setFunctionAttr(symbol);
      launch.setModuleAttr(symbol);
    });
  }
};

} // namespace
