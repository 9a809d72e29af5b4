//===- CostReport.h - FLOPs, bytes and KV cache of a dsv3 module -*- C++ -*-===//
//
// A static cost model of an imported dsv3 module, for comparing strategies:
// for a prefill of S tokens and for one decode step at context T, per layer
// kind (the body of each layer loop, times its trip count) and in total:
//   - FLOPs (2 per multiply-add),
//   - weight bytes read (routed experts: only the selected ones),
//   - KV-cache bytes stored per token, and read by the step.
// The cache layout of each dsv3.mla decides its form: latent (absorbed MLA)
// or expanded (naive per-head K/V).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_ANALYSIS_COSTREPORT_H
#define DSV3_ANALYSIS_COSTREPORT_H

#include "mlir/IR/BuiltinOps.h"

#include <string>
#include <vector>

namespace mlir {
namespace dsv3 {

struct CostReportOptions {
  int64_t prefillTokens = 512; // S
  int64_t decodeContext = 4096; // T: tokens in the cache at the decode step
  /// Bytes per KV-cache element; 0 means the compiled cache's element type.
  int64_t cacheElementBytes = 0;
};

struct Cost {
  double flops = 0;
  double weightBytes = 0;
  double kvReadBytes = 0;
  void add(const Cost &other, double times = 1) {
    flops += times * other.flops;
    weightBytes += times * other.weightBytes;
    kvReadBytes += times * other.kvReadBytes;
  }
};

struct LayerKindCost {
  std::string name; // "embedding", "dense layers", "MoE layers", "head"
  int64_t count = 1;
  Cost prefill, decode;     // for all `count` layers
  double kvBytesPerToken = 0; // for all `count` layers
};

struct CostReport {
  std::vector<LayerKindCost> kinds;
  LayerKindCost total;
  std::string cacheLayout; // "latent" / "expanded"
};

/// Computes the report from an import-level module (its @forward).
CostReport computeCostReport(ModuleOp module, const CostReportOptions &options);

/// A fixed-width table of the report.
std::string formatCostReport(const CostReport &report,
                             const CostReportOptions &options);

} // namespace dsv3
} // namespace mlir

#endif // DSV3_ANALYSIS_COSTREPORT_H
