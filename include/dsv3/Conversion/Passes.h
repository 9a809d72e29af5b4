//===- Passes.h - dsv3 conversion passes ------------------------*- C++ -*-===//

#ifndef DSV3_CONVERSION_PASSES_H
#define DSV3_CONVERSION_PASSES_H

#include "mlir/Pass/Pass.h"

namespace mlir {
namespace dsv3 {

#define GEN_PASS_DECL
#include "dsv3/Conversion/Passes.h.inc"

#define GEN_PASS_REGISTRATION
#include "dsv3/Conversion/Passes.h.inc"

} // namespace dsv3
} // namespace mlir

#endif // DSV3_CONVERSION_PASSES_H
