//===- DSV3Dialect.cpp - dsv3 dialect registration ------------------------===//

#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h"
#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/IR/Builders.h"
#include "llvm/ADT/TypeSwitch.h"

using namespace mlir;
using namespace mlir::dsv3;

#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.cpp.inc"
#include "dsv3/Dialect/DSV3/IR/DSV3Enums.cpp.inc"

#define GET_ATTRDEF_CLASSES
#include "dsv3/Dialect/DSV3/IR/DSV3Attrs.cpp.inc"

void DSV3Dialect::initialize() {
  addOperations<
#define GET_OP_LIST
#include "dsv3/Dialect/DSV3/IR/DSV3Ops.cpp.inc"
      >();
  addAttributes<
#define GET_ATTRDEF_LIST
#include "dsv3/Dialect/DSV3/IR/DSV3Attrs.cpp.inc"
      >();
}
