//===- Passes.h - dsv3 transformation passes --------------------*- C++ -*-===//

#ifndef DSV3_DIALECT_DSV3_TRANSFORMS_PASSES_H
#define DSV3_DIALECT_DSV3_TRANSFORMS_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir {
namespace dsv3 {

#define GEN_PASS_DECL
#include "dsv3/Dialect/DSV3/Transforms/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "dsv3/Dialect/DSV3/Transforms/Passes.h.inc"

} // namespace dsv3
} // namespace mlir

#endif // DSV3_DIALECT_DSV3_TRANSFORMS_PASSES_H
