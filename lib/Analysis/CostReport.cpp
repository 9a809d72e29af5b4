//===- CostReport.cpp - Static cost model of a dsv3 module ----------------===//
//
// Walks @forward of an import-level module: the embedding, each layer loop
// (its body's ops times the trip count) and the head. Costs are per sequence
// (batch 1). Attention pairs: a decode step attends to T cache entries; a
// prefill of S tokens from position 0 to S(S+1)/2 (causal).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Analysis/CostReport.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

#include <algorithm>

using namespace mlir;
using namespace mlir::dsv3;

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

/// One step: `tokens` new tokens, `pairs` (query, cache entry) pairs of
/// attention, `context` cache entries read.
struct Step {
  double tokens, pairs, context;
};

/// x[tokens, in] · W[out, in]ᵀ.
Cost linearCost(const Step &step, Value weight, Value scale) {
  Cost c;
  c.flops = 2.0 * step.tokens * dim(weight, 0) * dim(weight, 1);
  c.weightBytes = bytesOf(weight) + bytesOf(scale);
  return c;
}

class CostModel {
public:
  CostModel(const CostReportOptions &options) : options(options) {}

  /// Cost of one op for `step`; `kvPerToken` accumulates cache bytes per
  /// token of the op.
  Cost opCost(Operation *op, const Step &step, double &kvPerToken) {
    Cost c;
    if (auto linear = dyn_cast<LinearOp>(op))
      return linearCost(step, linear.getWeight(), linear.getScale());
    if (auto norm = dyn_cast<RmsNormOp>(op)) {
      c.weightBytes = bytesOf(norm.getWeight());
      c.flops = 4.0 * step.tokens * dim(norm.getWeight(), 0);
      return c;
    }
    if (auto mlp = dyn_cast<SwigluMlpOp>(op)) {
      c.add(linearCost(step, mlp.getGate(), mlp.getGateScale()));
      c.add(linearCost(step, mlp.getUp(), mlp.getUpScale()));
      c.add(linearCost(step, mlp.getDown(), mlp.getDownScale()));
      return c;
    }
    if (auto mla = dyn_cast<MlaOp>(op))
      return mlaCost(mla, step, kvPerToken);
    if (auto moe = dyn_cast<MoeOp>(op))
      return moeCost(moe, step);
    return fusedMoeCost(op, step);
  }

  Cost mlaCost(MlaOp mla, const Step &step, double &kvPerToken) {
    Cost c;
    const double heads = mla.getHeads(), latent = mla.getKvLoraRank(),
                 nope = mla.getQkNopeHeadDim(), rope = mla.getQkRopeHeadDim(),
                 v = mla.getVHeadDim();
    if (mla.getWq()) {
      c.add(linearCost(step, mla.getWq(), mla.getWqScale()));
    } else {
      if (mla.getWqA())
        c.add(linearCost(step, mla.getWqA(), mla.getWqAScale()));
      c.add(linearCost(step, mla.getWqB(), mla.getWqBScale()));
    }
    if (mla.getWqKvA())
      c.add(linearCost(step, mla.getWqKvA(), mla.getWqKvAScale()));
    else
      c.add(linearCost(step, mla.getWkvA(), mla.getWkvAScale()));
    c.add(linearCost(step, mla.getWo(), mla.getWoScale()));
    c.weightBytes += bytesOf(mla.getWkvB()) + bytesOf(mla.getWkvBScale()) +
                     bytesOf(mla.getKvNorm()) + bytesOf(mla.getQNorm());
    auto cacheType = cast<RankedTensorType>(mla.getCache().getType());
    const double cacheBytes = options.cacheElementBytes > 0
                                  ? options.cacheElementBytes
                                  : elementBytes(cacheType.getElementType());
    std::optional<uint64_t> expandFrom = mla.getExpandFrom();
    const bool expanded = mla.hasLatentCache() && expandFrom &&
                          step.tokens >= static_cast<double>(*expandFrom);
    if (mla.hasLatentCache() && !expanded) {
      // Absorbed: W_UK into the query, attention over the latent, W_UV after.
      c.flops += 2 * step.tokens * heads * nope * latent;       // q_lat
      c.flops += 2 * step.pairs * heads * (latent + rope);      // scores
      c.flops += 2 * step.pairs * heads * latent;               // P · latent
      c.flops += 2 * step.tokens * heads * latent * v;          // W_UV
      kvPerToken += (latent + rope) * cacheBytes;
    } else {
      // Naive: K/V per head (kv_b over the new tokens, or, expanding from
      // the latent cache, over every cached position attended to).
      const double expandedRows = expanded ? step.context : step.tokens;
      c.flops += 2 * expandedRows * latent * heads * (nope + v); // kv_b
      c.flops += 2 * step.pairs * heads * (nope + rope);         // scores
      c.flops += 2 * step.pairs * heads * v;                     // P · V
      kvPerToken += expanded ? (latent + rope) * cacheBytes
                             : heads * (nope + rope + v) * cacheBytes;
    }
    c.kvReadBytes = step.context * kvPerToken;
    return c;
  }

  /// Expert weights: `reads` streams of one expert's share of each stacked
  /// (weight, scale) pair; FLOPs for `rows` rows through them.
  static Cost expertCost(ArrayRef<std::pair<Value, Value>> weights,
                         double experts, double reads, double rows) {
    Cost c;
    for (auto [w, s] : weights) {
      c.weightBytes += reads * (bytesOf(w) + bytesOf(s)) / experts;
      c.flops += rows * 2.0 * dim(w, 1) * dim(w, 2);
    }
    return c;
  }

  /// The shared experts: `rows` tokens through each (weight, scale) pair.
  static Cost sharedCost(ArrayRef<std::pair<Value, Value>> weights,
                         double rows) {
    Cost c;
    for (auto [w, s] : weights) {
      if (!w)
        continue;
      c.weightBytes += bytesOf(w) + bytesOf(s);
      c.flops += rows * 2.0 * dim(w, 0) * dim(w, 1);
    }
    return c;
  }

  /// The unfused form evaluates each (token, slot) pair on its own, so an
  /// expert is streamed once per pair that chose it.
  Cost moeCost(MoeOp moe, const Step &step) {
    Cost c = linearCost(step, moe.getRouter(), Value());
    c.weightBytes += bytesOf(moe.getBias());
    const double pairs = step.tokens * moe.getTopK();
    c.add(expertCost({{moe.getGate(), moe.getGateScale()},
                      {moe.getUp(), moe.getUpScale()},
                      {moe.getDown(), moe.getDownScale()}},
                     moe.getExperts(), pairs, pairs));
    c.add(sharedCost({{moe.getSharedGate(), moe.getSharedGateScale()},
                      {moe.getSharedUp(), moe.getSharedUpScale()},
                      {moe.getSharedDown(), moe.getSharedDownScale()}},
                     step.tokens));
    return c;
  }

  /// The fused form reads each selected expert once per call: top_k for one
  /// token, at most min(E, tokens * top_k) distinct experts for several.
  static double distinctExperts(double experts, double pairs) {
    return std::min(experts, pairs);
  }

  Cost fusedMoeCost(Operation *op, const Step &step) {
    if (auto route = dyn_cast<MoeRouteOp>(op)) {
      Cost c = linearCost(step, route.getRouter(), Value());
      c.weightBytes += bytesOf(route.getBias());
      return c;
    }
    if (auto gateUp = dyn_cast<MoeGateUpOp>(op)) {
      const double experts = dim(gateUp.getGate(), 0);
      const double pairs = step.tokens * gateUp.getTopK();
      Cost c = expertCost({{gateUp.getGate(), gateUp.getGateScale()},
                           {gateUp.getUp(), gateUp.getUpScale()}},
                          experts, distinctExperts(experts, pairs), pairs);
      c.add(sharedCost({{gateUp.getSharedGate(), gateUp.getSharedGateScale()},
                        {gateUp.getSharedUp(), gateUp.getSharedUpScale()}},
                       step.tokens));
      return c;
    }
    if (auto down = dyn_cast<MoeDownCombineOp>(op)) {
      const double experts = dim(down.getDown(), 0);
      const double pairs = step.tokens * down.getTopK();
      Cost c = expertCost({{down.getDown(), down.getDownScale()}}, experts,
                          distinctExperts(experts, pairs), pairs);
      c.add(sharedCost({{down.getSharedDown(), down.getSharedDownScale()}},
                       step.tokens));
      return c;
    }
    return Cost();
  }

  /// Sums the dsv3 ops nested in `region` for both steps.
  LayerKindCost regionCost(Region &region, StringRef name, int64_t count,
                           const Step &prefill, const Step &decode) {
    LayerKindCost kind;
    kind.name = name.str();
    kind.count = count;
    region.walk([&](Operation *op) {
      if (!isa<DSV3Dialect>(op->getDialect()))
        return;
      double kvPrefill = 0, kvDecode = 0;
      kind.prefill.add(opCost(op, prefill, kvPrefill), count);
      kind.decode.add(opCost(op, decode, kvDecode), count);
      kind.kvBytesPerToken += count * kvDecode;
    });
    return kind;
  }

  const CostReportOptions &options;
};

std::optional<int64_t> tripCount(scf::ForOp loop) {
  auto lb = loop.getLowerBound().getDefiningOp<arith::ConstantIndexOp>();
  auto ub = loop.getUpperBound().getDefiningOp<arith::ConstantIndexOp>();
  auto step = loop.getStep().getDefiningOp<arith::ConstantIndexOp>();
  if (!lb || !ub || !step || step.value() <= 0)
    return std::nullopt;
  return (ub.value() - lb.value() + step.value() - 1) / step.value();
}

} // namespace

CostReport mlir::dsv3::computeCostReport(ModuleOp module,
                                         const CostReportOptions &options) {
  CostReport report;
  auto forward = module.lookupSymbol<func::FuncOp>("forward");
  if (!forward)
    return report;
  CostModel model(options);
  const double s = options.prefillTokens, t = options.decodeContext;
  Step prefill{s, s * (s + 1) / 2, s};
  Step decode{1, t, t};
  // The head reads only the last position.
  Step headPrefill{1, 0, 0}, headDecode{1, 0, 0};

  LayerKindCost head;
  head.name = "embedding + head";
  for (Operation &op : forward.getBody().front()) {
    if (auto loop = dyn_cast<scf::ForOp>(op)) {
      bool moe = false;
      loop.walk([&](Operation *inner) {
        moe |= isa<MoeOp, MoeRouteOp>(inner);
      });
      report.kinds.push_back(model.regionCost(
          loop.getRegion(), moe ? "MoE layers" : "dense layers",
          tripCount(loop).value_or(1), prefill, decode));
      continue;
    }
    if (auto embedding = dyn_cast<EmbeddingOp>(op)) {
      // One table row per token.
      double rowBytes = bytesOf(embedding.getTable()) /
                        dim(embedding.getTable(), 0);
      head.prefill.weightBytes += s * rowBytes;
      head.decode.weightBytes += rowBytes;
      continue;
    }
    if (isa<DSV3Dialect>(op.getDialect())) {
      double unused = 0;
      head.prefill.add(model.opCost(&op, headPrefill, unused));
      head.decode.add(model.opCost(&op, headDecode, unused));
    }
  }
  report.kinds.push_back(head);

  report.total.name = "total";
  report.total.count = 0;
  report.cacheLayout = "latent";
  forward.walk([&](MlaOp mla) {
    if (!mla.hasLatentCache())
      report.cacheLayout = "expanded";
  });
  for (const LayerKindCost &kind : report.kinds) {
    report.total.prefill.add(kind.prefill);
    report.total.decode.add(kind.decode);
    report.total.kvBytesPerToken += kind.kvBytesPerToken;
    if (kind.name != "embedding + head")
      report.total.count += kind.count;
  }
  return report;
}

std::string mlir::dsv3::formatCostReport(const CostReport &report,
                                         const CostReportOptions &options) {
  std::string text;
  llvm::raw_string_ostream os(text);
  os << "dsv3 cost report (per sequence; KV cache " << report.cacheLayout
     << "; prefill of " << options.prefillTokens
     << " tokens; decode step at context " << options.decodeContext << ")\n";
  os << llvm::format("%-18s %6s %14s %14s %14s %14s %14s %16s\n", "layer kind",
                     "count", "prefill GFLOP", "prefill W MB", "decode GFLOP",
                     "decode W MB", "decode KV MB", "KV B/token");
  auto row = [&](const LayerKindCost &k) {
    os << llvm::format(
        "%-18s %6lld %14.3f %14.3f %14.6f %14.3f %14.3f %16.0f\n",
        k.name.c_str(), static_cast<long long>(k.count),
        k.prefill.flops / 1e9, k.prefill.weightBytes / 1e6,
        k.decode.flops / 1e9, k.decode.weightBytes / 1e6,
        k.decode.kvReadBytes / 1e6, k.kvBytesPerToken);
  };
  for (const LayerKindCost &k : report.kinds)
    row(k);
  row(report.total);
  return text;
}
