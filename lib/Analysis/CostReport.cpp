//===- CostReport.cpp - Static cost model of a dsv3 module ----------------===//
//
// Walks @forward of an import-level module: the embedding, each layer loop
// (its body's ops times the trip count) and the head. Costs are per sequence
// (batch 1). Attention pairs: a decode step attends to T cache entries; a
// prefill of S tokens from position 0 to S(S+1)/2 (causal). What each op
// costs is its CostOpInterface (lib/Dialect/DSV3/IR/DSV3Cost.cpp); this file
// only chooses the steps and sums.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Analysis/CostReport.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Arith/IR/Arith.h"
#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/SCF/IR/SCF.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/raw_ostream.h"

using namespace mlir;
using namespace mlir::dsv3;

namespace {

Cost toCost(const OpCost &op) {
  Cost c;
  c.flops = op.flops;
  c.weightBytes = op.weightBytes;
  c.kvReadBytes = op.kvReadBytes;
  return c;
}

/// Sums the dsv3 ops nested in `region` (each op's CostOpInterface) for both
/// steps, times the region's trip count `count`.
LayerKindCost regionCost(Region &region, StringRef name, int64_t count,
                         const CostStep &prefill, const CostStep &decode,
                         const OpCostOptions &options) {
  LayerKindCost kind;
  kind.name = name.str();
  kind.count = count;
  region.walk([&](CostOpInterface op) {
    kind.prefill.add(toCost(op.getCost(prefill, options)), count);
    OpCost decodeCost = op.getCost(decode, options);
    kind.decode.add(toCost(decodeCost), count);
    kind.kvBytesPerToken += count * decodeCost.kvBytesPerToken;
  });
  return kind;
}

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
  OpCostOptions opOptions;
  opOptions.cacheElementBytes = options.cacheElementBytes;
  const double s = options.prefillTokens, t = options.decodeContext;
  CostStep prefill{s, s * (s + 1) / 2, s};
  CostStep decode{1, t, t};
  // The head reads only the last position.
  CostStep headPrefill{1, 0, 0}, headDecode{1, 0, 0};

  LayerKindCost head;
  head.name = "embedding + head";
  for (Operation &op : forward.getBody().front()) {
    if (auto loop = dyn_cast<scf::ForOp>(op)) {
      bool moe = false;
      loop.walk([&](Operation *inner) {
        moe |= isa<MoeOp, MoeRouteOp>(inner);
      });
      report.kinds.push_back(regionCost(
          loop.getRegion(), moe ? "MoE layers" : "dense layers",
          tripCount(loop).value_or(1), prefill, decode, opOptions));
      continue;
    }
    auto costed = dyn_cast<CostOpInterface>(op);
    if (!costed)
      continue;
    // The embedding looks up every new token; the rest of the head (final
    // norm, LM head) computes only the last position.
    const bool everyToken = isa<EmbeddingOp>(op);
    head.prefill.add(
        toCost(costed.getCost(everyToken ? prefill : headPrefill, opOptions)));
    head.decode.add(
        toCost(costed.getCost(everyToken ? decode : headDecode, opOptions)));
  }
  report.kinds.push_back(head);

  report.total.name = "total";
  report.total.count = 0;
  report.cacheLayout = "latent";
  forward.walk([&](MlaOp mla) {
    if (!mla.hasLatentCache())
      report.cacheLayout = "expanded";
    else if (mla.hasPackedFp8Cache())
      report.cacheLayout = "latent packed as FP8";
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
