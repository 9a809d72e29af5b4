//===- dsv3-opt.cpp - mlir-opt with the dsv3 dialect and pipelines --------===//
//
// Parses, verifies, transforms and prints dsv3 modules. Registers the dsv3
// dialect and passes, plus the upstream dialects, passes, NVVM target and
// translations that the dsv3 lowering pipelines are built from, so every
// stage of a pipeline can be run and tested on its own.
//
//===----------------------------------------------------------------------===//

#include "dsv3/InitAllDsv3.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/Tools/mlir-opt/MlirOptMain.h"

int main(int argc, char **argv) {
  mlir::DialectRegistry registry;
  mlir::dsv3::registerDsv3Dialects(registry);
  mlir::dsv3::registerUpstreamDependencies(registry);
  mlir::dsv3::registerDsv3Passes();
  return mlir::asMainReturnCode(mlir::MlirOptMain(
      argc, argv, "dsv3 optimizer driver\n", registry));
}
