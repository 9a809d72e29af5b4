//===- GpuPipeline.cpp - dsv3 -> host LLVM + NVVM cubins ------------------===//
//
// The GPU backend shares stage 1 (dsv3 -> linalg -> buffers) with the CPU.
// Stage 2a turns every linalg op and parallel weight-stream loop into
// scf.parallel loops and gives them the kernels' tiling; stage 2b maps them
// to gpu.launch, puts the host's buffers in device memory, outlines the
// kernels, and lowers them to NVVM and cubins while the host code becomes
// calls to the mgpu* ABI (implemented by libdsv3rt over the CUDA driver).
// docs/gpu-backend.md walks through the stages.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Pipelines/Pipelines.h"

#include "PassListSupport.h"

#include "mlir/Pass/PassRegistry.h"

using namespace mlir;
using namespace mlir::dsv3;

bool mlir::dsv3::isSupportedGpuChip(llvm::StringRef chip) {
  return chip == "sm_90a" || chip == "sm_80";
}

int64_t mlir::dsv3::tensorCoreTileRows(const GpuPipelineOptions &options) {
  return options.chip.getValue() == "sm_90a" && options.wgmma ? 64 : 16;
}

LogicalResult
mlir::dsv3::buildGpuLoopsPipeline(OpPassManager &pm,
                                  const GpuPipelineOptions &options,
                                  bool tiledOnCpu) {
  // 32 lanes per 16 rows of a tile: a warp for mma.sync, a warpgroup for
  // wgmma.
  const int64_t warpLanes =
      tiledOnCpu ? 1 : 32 * (tensorCoreTileRows(options) / 16);
  if (options.threadsPerBlock < 1 ||
      options.threadsPerBlock > kMaxThreadsPerBlock) {
    llvm::errs() << "dsv3-gpu: threads-per-block must be in [1, "
                 << kMaxThreadsPerBlock << "], not "
                 << static_cast<int64_t>(options.threadsPerBlock.getValue())
                 << "\n";
    return failure();
  }
  return addPassList(
      pm, {
              // Every copy as loops: a host memcpy cannot reach the device.
              "func.func(dsv3-memref-copy-to-linalg{all=true})",
              "func.func(convert-linalg-to-parallel-loops)",
              "func.func(scf-forall-to-parallel)",
              "canonicalize",
              // Serial glue (a reduction over positions, the MoE counting
              // sort) into one-thread loops of its own.
              "func.func(dsv3-wrap-serial-code-for-gpu)",
              // No canonicalize from here on: it would fold the one-thread
              // loops back into host code.
              "func.func(dsv3-gpu-tile-parallel-loops{threads=" +
                  std::to_string(options.threadsPerBlock) +
                  " warp-lanes=" + std::to_string(warpLanes) + "})",
          });
}

LogicalResult
mlir::dsv3::buildGpuKernelsPipeline(OpPassManager &pm,
                                    const GpuPipelineOptions &options) {
  if (!isSupportedGpuChip(options.chip)) {
    llvm::errs() << "dsv3-gpu: unknown chip '" << options.chip
                 << "' (expected sm_90a or sm_80)\n";
    return failure();
  }
  StringRef format = options.format;
  if (format != "bin" && format != "isa" && format != "fatbin") {
    llvm::errs() << "dsv3-gpu: unknown format '" << format
                 << "' (expected bin, isa or fatbin)\n";
    return failure();
  }
  // ptxas rejects sm_90a under the pipeline's default +ptx60.
  std::string target = "nvvm-attach-target{chip=" + options.chip.getValue() +
                       " features=+ptx80 O=3}";
  std::vector<std::string> passes{
      // Outer loop -> blocks, inner loop -> threads.
      "func.func(gpu-map-parallel-loops)",
      "func.func(convert-parallel-loops-to-gpu)",
      "dsv3-gpu-device-buffers",
      "dsv3-gpu-name-kernels",
      "gpu-kernel-outlining",
      // Warp MMA tiles -> mma.sync / wgmma, before the transfers they read
      // from are lowered.
      "gpu.module(dsv3-gpu-warp-mma)",
      // Launches, allocations and copies on one stream; the host waits
      // only where it reads a staged scalar and at the end of a region.
      "func.func(gpu-async-region)",
      "convert-vector-to-scf",
      "convert-scf-to-cf",
      "expand-strided-metadata",
      target,
      "lower-affine",
      "canonicalize",
      "cse",
      // Device code: the warp tiles' ldmatrix (nvgpu), the weight-stream
      // kernels' vector ops (the NVVM patterns do not lower transfers),
      // then gpu/memref/arith, and wgmma.mma_async as inline PTX
      // (convert-nvvm-to-llvm).
      "gpu.module(convert-nvgpu-to-nvvm,convert-vector-to-llvm,"
      "convert-gpu-to-nvvm,convert-nvvm-to-llvm,canonicalize,cse,"
      "reconcile-unrealized-casts)",
      // Host code: launches, allocations and copies become mgpu* calls.
      "gpu-to-llvm",
      "convert-to-llvm",
  };
  if (options.emitPackedEntryPoints)
    passes.push_back("dsv3-emit-packed-entry-points{device=cuda}");
  passes.push_back("reconcile-unrealized-casts");
  // ptxas runs here, at compile time: a kernel that does not assemble
  // fails the build on a machine without a GPU.
  passes.push_back("gpu-module-to-binary{format=" + format.str() + "}");
  return addPassList(pm, passes);
}

LogicalResult mlir::dsv3::buildGpuPipeline(OpPassManager &pm,
                                           const GpuPipelineOptions &options) {
  CpuPipelineOptions bufferizeOptions;
  bufferizeOptions.tensorCores = options.tensorCores.getValue();
  bufferizeOptions.mmaRows = tensorCoreTileRows(options);
  // A GPU thread's registers hold one row's accumulators, not a block's.
  bufferizeOptions.tokenRowBlock = 1;
  if (failed(buildCpuBufferizePipeline(pm, bufferizeOptions)) ||
      failed(buildGpuLoopsPipeline(pm, options)))
    return failure();
  return buildGpuKernelsPipeline(pm, options);
}

LogicalResult
mlir::dsv3::buildGpuTiledOnCpuPipeline(OpPassManager &pm,
                                       const GpuPipelineOptions &options) {
  CpuPipelineOptions cpuOptions;
  cpuOptions.emitPackedEntryPoints = options.emitPackedEntryPoints.getValue();
  cpuOptions.tensorCores = options.tensorCores.getValue();
  cpuOptions.mmaRows = tensorCoreTileRows(options);
  // The kernels the GPU runs, so the one-row dots of the GPU pipelines.
  cpuOptions.tokenRowBlock = 1;
  // A warp-level tile runs once, as vector math, instead of on 32 lanes.
  if (failed(buildCpuBufferizePipeline(pm, cpuOptions)) ||
      failed(buildGpuLoopsPipeline(pm, options, /*tiledOnCpu=*/true)))
    return failure();
  return buildCpuLowerToLLVMPipeline(pm, cpuOptions);
}
