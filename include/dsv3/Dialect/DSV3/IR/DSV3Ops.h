//===- DSV3Ops.h - dsv3 operations -----------------------------*- C++ -*-===//

#ifndef DSV3_DIALECT_DSV3_IR_DSV3OPS_H
#define DSV3_DIALECT_DSV3_IR_DSV3OPS_H

// The generated op classes need the bytecode interface declared first.
#include "mlir/Bytecode/BytecodeOpInterface.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/IR/OpDefinition.h"
#include "mlir/Interfaces/SideEffectInterfaces.h"

#include "dsv3/Dialect/DSV3/IR/DSV3CostInterface.h"
#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h"

#define GET_OP_CLASSES
#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h.inc"

#endif // DSV3_DIALECT_DSV3_IR_DSV3OPS_H
