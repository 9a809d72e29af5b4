//===- DSV3Dialect.h - The dsv3 dialect, its attributes and enums ---------===//

#ifndef DSV3_DIALECT_DSV3_IR_DSV3DIALECT_H
#define DSV3_DIALECT_DSV3_IR_DSV3DIALECT_H

#include "mlir/IR/Attributes.h"
#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/Dialect.h"
#include "mlir/IR/DialectImplementation.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h.inc"
#include "dsv3/Dialect/DSV3/IR/DSV3Enums.h.inc"

#define GET_ATTRDEF_CLASSES
#include "dsv3/Dialect/DSV3/IR/DSV3Attrs.h.inc"

#endif // DSV3_DIALECT_DSV3_IR_DSV3DIALECT_H
