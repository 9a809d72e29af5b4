//===- DSV3CostInterface.h - What a dsv3 op costs --------------*- C++ -*-===//
//
// The plain structs of CostOpInterface (DSV3CostInterface.td): the step an op
// is costed for, the assumptions the IR does not carry, and the result. They
// live with the dialect, not with the report, so that each op's formula can
// be written next to the op (lib/Dialect/DSV3/IR/DSV3Cost.cpp).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_DIALECT_DSV3_IR_DSV3COSTINTERFACE_H
#define DSV3_DIALECT_DSV3_IR_DSV3COSTINTERFACE_H

#include "mlir/IR/OpDefinition.h"

namespace mlir {
namespace dsv3 {

/// One call of an op for one sequence. A prefill of S tokens from position 0
/// is {S, S(S+1)/2, S} (causal); a decode step at context T is {1, T, T}.
struct CostStep {
  double tokens;  // new tokens the call processes
  double pairs;   // (query, cache entry) pairs of attention
  double context; // cache entries read
};

/// What the IR does not say but a cost depends on.
struct OpCostOptions {
  /// Bytes per KV-cache element; 0 means the element type of the op's cache
  /// operand. Lets the report price a bf16 cache for an f32-compiled module.
  double cacheElementBytes = 0;
};

/// The cost of one call of an op.
struct OpCost {
  double flops = 0;       // 2 per multiply-add
  double weightBytes = 0; // weights (and their scales) read
  double kvReadBytes = 0; // KV-cache bytes read
  /// KV-cache bytes the op stores per token (its share of the cache size).
  double kvBytesPerToken = 0;

  /// Accumulates `other`'s flops, weight and KV reads (not the per-token
  /// cache size, which only the op that owns a cache sets).
  void add(const OpCost &other) {
    flops += other.flops;
    weightBytes += other.weightBytes;
    kvReadBytes += other.kvReadBytes;
  }
};

} // namespace dsv3
} // namespace mlir

#include "dsv3/Dialect/DSV3/IR/DSV3CostInterface.h.inc"

#endif // DSV3_DIALECT_DSV3_IR_DSV3COSTINTERFACE_H
