//===- FusionPipeline.cpp - The fusion strategies ---------------------------===//
//
// A strategy is the list of dsv3 -> dsv3 passes that run between import and
// lowering. `dsv3-compile --fusion=S` and `dsv3-opt
// --pass-pipeline='builtin.module(dsv3-fusion{strategy=S})'` run the same
// list.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Pipelines/Pipelines.h"

#include "dsv3/Dialect/DSV3/Transforms/Passes.h"

using namespace mlir;
using namespace mlir::dsv3;

LogicalResult
mlir::dsv3::buildFusionPipeline(OpPassManager &pm,
                                const FusionPipelineOptions &options) {
  const std::string &strategy = options.strategy;
  if (strategy != "all" && strategy != "none" && strategy != "latent" &&
      strategy != "moe")
    return failure();
  if (options.naivePrefillFrom < 0)
    return failure();
  if (strategy == "all" || strategy == "latent") {
    DSV3FuseLatentProjectionOptions latent;
    latent.expandFrom = options.naivePrefillFrom;
    pm.addPass(createDSV3FuseLatentProjection(latent));
  }
  if (strategy == "all" || strategy == "moe")
    pm.addPass(createDSV3FuseMoe());
  // Weight transformations the fusions introduced run once, at load.
  pm.addPass(createDSV3OutlineWeightPreparation());
  return success();
}
