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

namespace mlir {
namespace dsv3 {

/// Codes per f32 scale in a packed FP8 KV-cache row of `codes` codes
/// (dsv3.mla's i8 cache): FlashMLA's 128, or the whole row when 128 does not
/// divide it.
int64_t packedFp8CacheTile(int64_t codes);

/// Bytes of a packed FP8 KV-cache row: the codes, one f32 scale per tile,
/// then `bf16Values` bf16 values (the latent layout's rope key).
int64_t packedFp8CacheWidth(int64_t codes, int64_t bf16Values);

} // namespace dsv3
} // namespace mlir

#endif // DSV3_DIALECT_DSV3_IR_DSV3OPS_H
