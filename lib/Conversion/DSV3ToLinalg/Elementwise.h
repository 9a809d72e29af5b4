//===- Elementwise.h - Shared elementwise lowerings ----------*- C++ -*-===//
//
// The activation and softmax that several lowerings share (attention, the
// softmax router, the dense and expert MLPs). Private to
// lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_ELEMENTWISE_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_ELEMENTWISE_H

#include "Emitter.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

/// silu(g) = g / (1 + exp(-g)) of an f32 scalar.
Value emitSilu(OpBuilder &b, Location loc, Value g);
/// Softmax over the last dim of x (any rank), in f32: max, exp(x - max),
/// sum, divide. Entries at -inf (masked) get probability 0.
Value emitSoftmaxLast(Emitter &e, Value x);

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_ELEMENTWISE_H
