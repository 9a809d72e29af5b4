//===- CpuPipeline.cpp - dsv3 -> LLVM dialect for the CPU -----------------===//
//
// Stages are written as textual pipelines: each line is one upstream pass
// with its options, in the order they run, which is also how a user would
// reproduce a stage with dsv3-opt.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Pipelines/Pipelines.h"

#include "PassListSupport.h"

#include "mlir/Pass/PassRegistry.h"

using namespace mlir;
using namespace mlir::dsv3;

//===----------------------------------------------------------------------===//
// Stage 1: bufferize
//===----------------------------------------------------------------------===//

LogicalResult
mlir::dsv3::buildCpuBufferizePipeline(OpPassManager &pm,
                                      const CpuPipelineOptions &options) {
  return addPassList(
      pm, {
              // 1. Model ops to linalg on tensors; the residual adds of the
              //    importer become linalg too.
              "convert-dsv3-to-linalg{token-row-block=" +
                  std::to_string(options.tokenRowBlock) +
                  (options.tensorCores
                       ? " tensor-cores mma-rows=" +
                             std::to_string(options.mmaRows)
                       : std::string()) +
                  "}",
              // What a layer computes from the call's inputs alone (the used
              // cache length from the positions) out of the layer loops:
              // once per call, not per layer (on the GPU each was a host
              // sync to read the length back).
              "loop-invariant-code-motion",
              // Only the packed wrappers are called from outside.
              "dsv3-internalize-entry-points",
              "func.func(convert-elementwise-to-linalg)",
              "canonicalize",
              "cse",
              // 2. Tensors to buffers across function boundaries. The hidden
              //    state carried through the layer loops is a fresh buffer
              //    each iteration, hence allow-return-allocs-from-loops.
              "one-shot-bufferize{bufferize-function-boundaries "
              "function-boundary-type-conversion=identity-layout-map "
              "allow-return-allocs-from-loops}",
              // The updated KV cache is the cache argument itself: drop it
              // from the results so it is written in place, never cloned
              // (canonicalize first folds the layer loops' pass-through
              // results to the argument).
              "canonicalize",
              "drop-equivalent-buffer-results",
              // 3. Free every temporary; results returned to the caller are
              //    owned by it (the packed wrapper frees them).
              "buffer-deallocation-pipeline",
              "convert-bufferization-to-memref",
              "canonicalize",
          });
}

//===----------------------------------------------------------------------===//
// Stage 2: lower to LLVM
//===----------------------------------------------------------------------===//

LogicalResult
mlir::dsv3::buildCpuLowerToLLVMPipeline(OpPassManager &pm,
                                        const CpuPipelineOptions &options) {
  std::string ompSchedule =
      "dsv3-openmp-schedule{schedule=" + options.ompSchedule.getValue() + "}";
  std::vector<std::string> passes{
      // Strided copies (a tile into its slice of the output) as loops, so no
      // runtime library call remains.
      "func.func(dsv3-memref-copy-to-linalg)",
      "func.func(convert-linalg-to-loops)",
      // The parallel weight-stream loops (scf.forall) run on OpenMP threads.
      "func.func(scf-forall-to-parallel)",
      "convert-scf-to-openmp",
      ompSchedule,
      // Drop the alloca scopes it wraps loop bodies in (they hold no
      // allocas); scf-to-cf would otherwise leave them multi-block.
      "canonicalize",
      // Row reductions (the fused attention's online softmax) as 1-D ones.
      "func.func(lower-vector-multi-reduction)",
      // Masked (tail) transfer reads become scf.if + loads first.
      "convert-vector-to-scf",
      // expand-strided-metadata introduces affine.apply: lower affine after.
      "expand-strided-metadata",
      "lower-affine",
      "convert-scf-to-cf",
      // The tensor-core tiles' contractions (only in --gpu-tiled-on-cpu) as
      // outer products: a few FMAs on whole rows where the default dot
      // lowering makes one reduction per output element (4x the LLVM
      // codegen time for 64-row tiles).
      "convert-vector-to-llvm{vector-contract-lowering=outerproduct}",
      "convert-to-llvm",
  };
  if (options.emitPackedEntryPoints)
    passes.push_back("dsv3-emit-packed-entry-points");
  passes.push_back("reconcile-unrealized-casts");
  return addPassList(pm, passes);
}

LogicalResult mlir::dsv3::buildCpuPipeline(OpPassManager &pm,
                                           const CpuPipelineOptions &options) {
  if (failed(buildCpuBufferizePipeline(pm, options)))
    return failure();
  return buildCpuLowerToLLVMPipeline(pm, options);
}

namespace {

/// Registers a GPU pipeline so that a bad option (an unknown chip) fails the
/// pipeline parse, and dsv3-opt exits non-zero.
void registerGpuPipeline(
    StringRef name, StringRef description,
    LogicalResult (*build)(OpPassManager &, const GpuPipelineOptions &)) {
  registerPassPipeline(
      name, description,
      [build, name](OpPassManager &pm, StringRef text,
                    function_ref<LogicalResult(const Twine &)> errorHandler) {
        GpuPipelineOptions options;
        if (failed(options.parseFromString(text)))
          return failure();
        if (succeeded(build(pm, options)))
          return success();
        return errorHandler(name + ": invalid options (see the message "
                                   "above)");
      },
      [](function_ref<void(const detail::PassOptions &)> handler) {
        handler(GpuPipelineOptions());
      });
}

void registerGpuPipelines() {
  registerGpuPipeline("dsv3-gpu-pipeline",
                      "Lower an imported dsv3 module to host LLVM with "
                      "embedded NVIDIA GPU kernels (cubins)",
                      buildGpuPipeline);
  registerGpuPipeline("dsv3-gpu-loops",
                      "GPU stage 2a: buffers -> the kernels' tiled parallel "
                      "loops",
                      [](OpPassManager &pm, const GpuPipelineOptions &options) {
                        return buildGpuLoopsPipeline(pm, options);
                      });
  registerGpuPipeline("dsv3-gpu-kernels",
                      "GPU stage 2b: tiled loops -> gpu.launch -> NVVM -> "
                      "cubins; host code -> mgpu* calls",
                      buildGpuKernelsPipeline);
  registerGpuPipeline("dsv3-gpu-tiled-on-cpu",
                      "The GPU kernels' tiled form lowered for the CPU (tests "
                      "the GPU lowering without a GPU)",
                      buildGpuTiledOnCpuPipeline);
}

} // namespace

void mlir::dsv3::registerDsv3Pipelines() {
  // Registered by hand (not PassPipelineRegistration) so that a bad
  // strategy fails the pipeline parse: dsv3-opt then exits non-zero.
  registerPassPipeline(
      "dsv3-fusion", "Run the dsv3 passes of a fusion strategy",
      [](OpPassManager &pm, StringRef text,
         function_ref<LogicalResult(const Twine &)> errorHandler) {
        FusionPipelineOptions options;
        if (failed(options.parseFromString(text)))
          return failure();
        if (succeeded(buildFusionPipeline(pm, options)))
          return success();
        return errorHandler("dsv3-fusion: unknown strategy '" +
                            options.strategy.getValue() +
                            "' (expected all, none, latent or moe) or "
                            "negative naive-prefill-from");
      },
      [](function_ref<void(const detail::PassOptions &)> handler) {
        handler(FusionPipelineOptions());
      });
  PassPipelineRegistration<CpuPipelineOptions>(
      "dsv3-cpu-pipeline",
      "Lower an imported dsv3 module to the LLVM dialect for the CPU",
      [](OpPassManager &pm, const CpuPipelineOptions &options) {
        (void)buildCpuPipeline(pm, options);
      });
  PassPipelineRegistration<CpuPipelineOptions>(
      "dsv3-cpu-bufferize",
      "Stage 1 of dsv3-cpu-pipeline: dsv3 -> linalg -> buffers",
      [](OpPassManager &pm, const CpuPipelineOptions &options) {
        (void)buildCpuBufferizePipeline(pm, options);
      });
  PassPipelineRegistration<CpuPipelineOptions>(
      "dsv3-cpu-lower-to-llvm",
      "Stage 2 of dsv3-cpu-pipeline: buffers -> LLVM dialect + packed entries",
      [](OpPassManager &pm, const CpuPipelineOptions &options) {
        (void)buildCpuLowerToLLVMPipeline(pm, options);
      });
  registerGpuPipelines();
}
