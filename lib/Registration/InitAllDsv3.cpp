//===- InitAllDsv3.cpp - Register everything dsv3 tools need --------------===//

#include "dsv3/InitAllDsv3.h"

#include "dsv3/Conversion/Passes.h"
#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h"
#include "dsv3/Dialect/DSV3/Transforms/Passes.h"
#include "dsv3/Pipelines/Pipelines.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/InitAllDialects.h"
#include "mlir/InitAllExtensions.h"
#include "mlir/InitAllPasses.h"
#include "mlir/Target/LLVM/NVVM/Target.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"

void mlir::dsv3::registerDsv3Dialects(DialectRegistry &registry) {
  registry.insert<DSV3Dialect>();
}

void mlir::dsv3::registerUpstreamDependencies(DialectRegistry &registry) {
  registerAllDialects(registry);
  // Without the extensions, convert-to-llvm leaves unrealized casts behind
  // (the ConvertToLLVM interfaces live there).
  registerAllExtensions(registry);
  // Without the NVVM target models, gpu-module-to-binary segfaults in
  // serializeToObject in release builds; without the translations the
  // NVVM/GPU dialects cannot be turned into LLVM IR for ptxas.
  NVVM::registerNVVMTargetInterfaceExternalModels(registry);
  registerBuiltinDialectTranslation(registry);
  registerLLVMDialectTranslation(registry);
  registerNVVMDialectTranslation(registry);
  registerGPUDialectTranslation(registry);
  // #gpu.select_object's embedBinary: without it, translating a gpu.binary
  // (the GPU artifact's cubins) segfaults.
  gpu::registerOffloadingLLVMTranslationInterfaceExternalModels(registry);
}

void mlir::dsv3::registerDsv3Passes() {
  // Upstream passes and pipelines (including gpu-lower-to-nvvm-pipeline) so
  // dsv3-opt can run any stage a dsv3 pipeline is built from.
  registerAllPasses();
  registerDSV3TransformsPasses();
  registerDSV3ConversionPasses();
  registerDsv3Pipelines();
}
