//===- DSV3Cost.cpp - What one call of each dsv3 op costs -----------------===//
//
// CostOpInterface (DSV3CostInterface.td) for every dsv3 op: FLOPs (2 per
// multiply-add), weight bytes read, KV-cache bytes read and stored per token,
// for one sequence and one CostStep. The cost report (lib/Analysis) sums
// these over @forward; the formulas live here, next to the ops, so that a new
// op brings its own.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::dsv3;

#include "dsv3/Dialect/DSV3/IR/DSV3CostInterface.cpp.inc"

namespace {

double elementBytes(Type type) {
  return std::max<unsigned>(1, type.getIntOrFloatBitWidth() / 8);
}

/// Bytes of a (possibly null) tensor value.
double bytesOf(Value v) {
  if (!v)
    return 0;
  auto type = cast<RankedTensorType>(v.getType());
  return static_cast<double>(type.getNumElements()) *
         elementBytes(type.getElementType());
}

int64_t dim(Value v, unsigned d) {
  return cast<RankedTensorType>(v.getType()).getDimSize(d);
}

/// x[tokens, in] · W[out, in]ᵀ.
OpCost linearCost(const CostStep &step, Value weight, Value scale) {
  OpCost c;
  c.flops = 2.0 * step.tokens * dim(weight, 0) * dim(weight, 1);
  c.weightBytes = bytesOf(weight) + bytesOf(scale);
  return c;
}

/// Expert weights: `reads` streams of one expert's share of each stacked
/// (weight, scale) pair; FLOPs for `rows` rows through them.
OpCost expertCost(ArrayRef<std::pair<Value, Value>> weights, double experts,
                  double reads, double rows) {
  OpCost c;
  for (auto [w, s] : weights) {
    c.weightBytes += reads * (bytesOf(w) + bytesOf(s)) / experts;
    c.flops += rows * 2.0 * dim(w, 1) * dim(w, 2);
  }
  return c;
}

/// The shared experts: `rows` tokens through each (weight, scale) pair.
OpCost sharedCost(ArrayRef<std::pair<Value, Value>> weights, double rows) {
  OpCost c;
  for (auto [w, s] : weights) {
    if (!w)
      continue;
    c.weightBytes += bytesOf(w) + bytesOf(s);
    c.flops += rows * 2.0 * dim(w, 0) * dim(w, 1);
  }
  return c;
}

/// The fused MoE ops read each selected expert once per call: top_k for one
/// token, at most min(E, tokens * top_k) distinct experts for several.
double distinctExperts(double experts, double pairs) {
  return std::min(experts, pairs);
}

} // namespace

//===----------------------------------------------------------------------===//
// Building blocks
//===----------------------------------------------------------------------===//

/// One table row per new token.
OpCost EmbeddingOp::getCost(const CostStep &step, const OpCostOptions &) {
  OpCost c;
  c.weightBytes = step.tokens * (bytesOf(getTable()) / dim(getTable(), 0));
  return c;
}

OpCost RmsNormOp::getCost(const CostStep &step, const OpCostOptions &) {
  OpCost c;
  c.weightBytes = bytesOf(getWeight());
  c.flops = 4.0 * step.tokens * dim(getWeight(), 0);
  return c;
}

OpCost LinearOp::getCost(const CostStep &step, const OpCostOptions &) {
  return linearCost(step, getWeight(), getScale());
}

/// Elementwise and negligible beside the projections around it.
OpCost RopeOp::getCost(const CostStep &, const OpCostOptions &) {
  return OpCost();
}

OpCost SwigluMlpOp::getCost(const CostStep &step, const OpCostOptions &) {
  OpCost c;
  c.add(linearCost(step, getGate(), getGateScale()));
  c.add(linearCost(step, getUp(), getUpScale()));
  c.add(linearCost(step, getDown(), getDownScale()));
  return c;
}

//===----------------------------------------------------------------------===//
// Multi-head latent attention
//===----------------------------------------------------------------------===//

/// The cache layout (and `expand_from` for this step's length) decides the
/// form: absorbed attention over the latent, or naive per-head K/V.
OpCost MlaOp::getCost(const CostStep &step, const OpCostOptions &options) {
  OpCost c;
  const double heads = getHeads(), latent = getKvLoraRank(),
               nope = getQkNopeHeadDim(), rope = getQkRopeHeadDim(),
               v = getVHeadDim();
  if (getWq()) {
    c.add(linearCost(step, getWq(), getWqScale()));
  } else {
    if (getWqA())
      c.add(linearCost(step, getWqA(), getWqAScale()));
    c.add(linearCost(step, getWqB(), getWqBScale()));
  }
  if (getWqKvA())
    c.add(linearCost(step, getWqKvA(), getWqKvAScale()));
  else
    c.add(linearCost(step, getWkvA(), getWkvAScale()));
  c.add(linearCost(step, getWo(), getWoScale()));
  c.weightBytes += bytesOf(getWkvB()) + bytesOf(getWkvBScale()) +
                   bytesOf(getKvNorm()) + bytesOf(getQNorm());
  auto cacheType = cast<RankedTensorType>(getCache().getType());
  const double cacheBytes = options.cacheElementBytes > 0
                                ? options.cacheElementBytes
                                : elementBytes(cacheType.getElementType());
  // A packed FP8 layout's bytes are its width (codes, scales, bf16 rope),
  // unless the report assumes another element type.
  const bool packed = hasPackedFp8Cache() && options.cacheElementBytes <= 0;
  const double latentBytesPerToken =
      packed ? static_cast<double>(getPackedFp8LatentCacheWidth())
             : (latent + rope) * cacheBytes;
  const double expandedBytesPerToken =
      packed ? static_cast<double>(getPackedFp8ExpandedCacheWidth())
             : heads * (nope + rope + v) * cacheBytes;
  std::optional<uint64_t> expandFrom = getExpandFrom();
  const bool expanded = hasLatentCache() && expandFrom &&
                        step.tokens >= static_cast<double>(*expandFrom);
  if (hasLatentCache() && !expanded) {
    // Absorbed: W_UK into the query, attention over the latent, W_UV after.
    c.flops += 2 * step.tokens * heads * nope * latent;  // q_lat
    c.flops += 2 * step.pairs * heads * (latent + rope); // scores
    c.flops += 2 * step.pairs * heads * latent;          // P · latent
    c.flops += 2 * step.tokens * heads * latent * v;     // W_UV
    c.kvBytesPerToken = latentBytesPerToken;
  } else {
    // Naive: K/V per head (kv_b over the new tokens, or, expanding from
    // the latent cache, over every cached position attended to).
    const double expandedRows = expanded ? step.context : step.tokens;
    c.flops += 2 * expandedRows * latent * heads * (nope + v); // kv_b
    c.flops += 2 * step.pairs * heads * (nope + rope);         // scores
    c.flops += 2 * step.pairs * heads * v;                     // P · V
    c.kvBytesPerToken = expanded ? latentBytesPerToken : expandedBytesPerToken;
  }
  c.kvReadBytes = step.context * c.kvBytesPerToken;
  return c;
}

//===----------------------------------------------------------------------===//
// Mixture of experts
//===----------------------------------------------------------------------===//

/// The unfused form evaluates each (token, slot) pair on its own, so an
/// expert is streamed once per pair that chose it.
OpCost MoeOp::getCost(const CostStep &step, const OpCostOptions &) {
  OpCost c = linearCost(step, getRouter(), Value());
  c.weightBytes += bytesOf(getBias());
  const double pairs = step.tokens * getTopK();
  c.add(expertCost({{getGate(), getGateScale()},
                    {getUp(), getUpScale()},
                    {getDown(), getDownScale()}},
                   getExperts(), pairs, pairs));
  c.add(sharedCost({{getSharedGate(), getSharedGateScale()},
                    {getSharedUp(), getSharedUpScale()},
                    {getSharedDown(), getSharedDownScale()}},
                   step.tokens));
  return c;
}

OpCost MoeRouteOp::getCost(const CostStep &step, const OpCostOptions &) {
  OpCost c = linearCost(step, getRouter(), Value());
  c.weightBytes += bytesOf(getBias());
  return c;
}

/// Index arithmetic on the routing decision; no weights, negligible FLOPs.
OpCost MoeDispatchOp::getCost(const CostStep &, const OpCostOptions &) {
  return OpCost();
}

OpCost MoeGateUpOp::getCost(const CostStep &step, const OpCostOptions &) {
  const double experts = dim(getGate(), 0);
  const double pairs = step.tokens * getTopK();
  OpCost c = expertCost({{getGate(), getGateScale()}, {getUp(), getUpScale()}},
                        experts, distinctExperts(experts, pairs), pairs);
  c.add(sharedCost({{getSharedGate(), getSharedGateScale()},
                    {getSharedUp(), getSharedUpScale()}},
                   step.tokens));
  return c;
}

OpCost MoeDownCombineOp::getCost(const CostStep &step, const OpCostOptions &) {
  const double experts = dim(getDown(), 0);
  const double pairs = step.tokens * getTopK();
  OpCost c = expertCost({{getDown(), getDownScale()}}, experts,
                        distinctExperts(experts, pairs), pairs);
  c.add(sharedCost({{getSharedDown(), getSharedDownScale()}}, step.tokens));
  return c;
}
