//===- Pipelines.h - dsv3 lowering pipelines --------------------*- C++ -*-===//
//
// The pass pipelines that take an imported dsv3 module to a backend, as
// reusable builders and as registered `dsv3-opt` pipelines:
//
//   dsv3-cpu-pipeline          = dsv3-cpu-bufferize + dsv3-cpu-lower-to-llvm
//   dsv3-cpu-bufferize         dsv3 -> linalg on tensors -> buffers (memref)
//   dsv3-cpu-lower-to-llvm     memref/scf -> LLVM dialect + packed entries
//   dsv3-fusion                the fusion strategy: dsv3 -> dsv3
//   dsv3-gpu-pipeline          = dsv3-cpu-bufferize + dsv3-gpu-loops +
//                                dsv3-gpu-kernels: host LLVM + cubins
//   dsv3-gpu-loops             buffers -> the kernels' tiled parallel loops
//   dsv3-gpu-kernels           tiled loops -> gpu.launch -> NVVM -> cubin
//   dsv3-gpu-tiled-on-cpu      = dsv3-cpu-bufferize + dsv3-gpu-loops +
//                                dsv3-cpu-lower-to-llvm: the GPU kernels'
//                                tiled form, run on the CPU for tests
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_PIPELINES_PIPELINES_H
#define DSV3_PIPELINES_PIPELINES_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassOptions.h"

namespace mlir {
namespace dsv3 {

struct CpuPipelineOptions : public PassPipelineOptions<CpuPipelineOptions> {
  PassOptions::Option<bool> emitPackedEntryPoints{
      *this, "packed-entry-points",
      llvm::cl::desc("Add void dsv3_<entry>(void**) wrappers for the runtime"),
      llvm::cl::init(true)};
  PassOptions::Option<std::string> ompSchedule{
      *this, "omp-schedule",
      llvm::cl::desc("Schedule of the parallel loops: static | dynamic | "
                     "guided | auto | runtime"),
      llvm::cl::init("static")};
  PassOptions::Option<bool> tensorCores{
      *this, "tensor-cores",
      llvm::cl::desc("Lower the GEMMs with bf16 weights and the MLA attention "
                     "products to warp MMA tiles (bf16 operands, f32 "
                     "accumulation; set by the GPU pipelines)"),
      llvm::cl::init(false)};
  PassOptions::Option<int64_t> mmaRows{
      *this, "mma-rows",
      llvm::cl::desc("Rows of a tensor-core tile: 16 (a warp's mma.sync) or "
                     "64 (a warpgroup's wgmma; set by the GPU pipelines for "
                     "sm_90a)"),
      llvm::cl::init(16)};
  PassOptions::Option<int64_t> tokenRowBlock{
      *this, "token-row-block",
      llvm::cl::desc("Token rows a row-dot kernel computes per pass over a "
                     "weight tile (convert-dsv3-to-linalg{token-row-block}); "
                     "1 in the GPU pipelines"),
      llvm::cl::init(4)};
};

/// Stage 1: dsv3 -> linalg/tensor -> one-shot bufferization with buffer
/// deallocation. Leaves memref/linalg/scf.
LogicalResult buildCpuBufferizePipeline(OpPassManager &pm,
                                        const CpuPipelineOptions &options);
/// Stage 2: linalg on buffers -> loops -> LLVM dialect, plus the packed
/// entry points the runtime calls.
LogicalResult buildCpuLowerToLLVMPipeline(OpPassManager &pm,
                                          const CpuPipelineOptions &options);
/// Both stages.
LogicalResult buildCpuPipeline(OpPassManager &pm,
                               const CpuPipelineOptions &options);

struct GpuPipelineOptions : public PassPipelineOptions<GpuPipelineOptions> {
  PassOptions::Option<std::string> chip{
      *this, "chip", llvm::cl::desc("GPU architecture: sm_90a | sm_80"),
      llvm::cl::init("sm_90a")};
  PassOptions::Option<std::string> format{
      *this, "format",
      llvm::cl::desc("What gpu-module-to-binary embeds: bin (cubin) | isa "
                     "(PTX text) | fatbin"),
      llvm::cl::init("bin")};
  PassOptions::Option<int64_t> threadsPerBlock{
      *this, "threads-per-block",
      llvm::cl::desc("Threads of a block (the inner tile of each kernel)"),
      llvm::cl::init(128)};
  PassOptions::Option<bool> emitPackedEntryPoints{
      *this, "packed-entry-points",
      llvm::cl::desc("Add void dsv3_<entry>(void**) wrappers for the runtime"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> tensorCores{
      *this, "tensor-cores",
      llvm::cl::desc("GEMMs with bf16 weights and the MLA attention products "
                     "on tensor cores (warp MMA tiles -> mma.sync, or wgmma "
                     "on sm_90a); off: the CUDA-core kernels"),
      llvm::cl::init(true)};
  PassOptions::Option<bool> wgmma{
      *this, "wgmma",
      llvm::cl::desc("On sm_90a, tensor-core tiles of 64 rows as warpgroup "
                     "wgmma.mma_async (128-thread blocks); off: 16-row "
                     "mma.sync tiles as on sm_80"),
      llvm::cl::init(true)};
};

/// The rows of the tensor-core tiles these options give: 64 (wgmma) on
/// sm_90a unless wgmma=false, else 16 (mma.sync).
int64_t tensorCoreTileRows(const GpuPipelineOptions &options);

/// The GPU architectures the pipeline targets.
bool isSupportedGpuChip(llvm::StringRef chip);

/// The most threads a CUDA block may have: the bound of threads-per-block.
constexpr int64_t kMaxThreadsPerBlock = 1024;

/// GPU stage 2a: buffers -> parallel loops in the kernels' tiled form (an
/// outer loop over blocks, an inner one over the threads of a block).
/// A tensor-core tile's loop gets a block of a warp (16-row tiles) or a
/// warpgroup (64-row tiles); `tiledOnCpu`: one lane, the tile as vector math.
LogicalResult buildGpuLoopsPipeline(OpPassManager &pm,
                                    const GpuPipelineOptions &options,
                                    bool tiledOnCpu = false);

/// GPU stage 2b: tiled loops -> gpu.launch -> outlined kernels -> NVVM ->
/// cubins (ptxas) embedded in the module; host code to the LLVM dialect,
/// calling the mgpu* runtime ABI.
LogicalResult buildGpuKernelsPipeline(OpPassManager &pm,
                                      const GpuPipelineOptions &options);

/// Bufferize + both GPU stages.
LogicalResult buildGpuPipeline(OpPassManager &pm,
                               const GpuPipelineOptions &options);

/// Bufferize + the GPU loops + the CPU lowering: the GPU kernels' tiled
/// form as a CPU artifact, so their logic is tested without a GPU.
LogicalResult buildGpuTiledOnCpuPipeline(OpPassManager &pm,
                                         const GpuPipelineOptions &options);

/// The default of FusionPipelineOptions::naivePrefillFrom, chosen by
/// measurement (docs/fusion-strategies.md): K/V expanded from the latent
/// prefilled faster at every prompt length measured on bench-450m (1.06x at
/// 64 tokens, within noise, to 2.07x at 2048); 128 keeps short calls absorbed,
/// where a chunk continuing a long context would spend more on expanding the
/// whole prefix than it saves (break-even ~85 tokens by the cost model).
constexpr int64_t kDefaultNaivePrefillFrom = 128;

/// The fusion strategies (docs/fusion-strategies.md).
struct FusionPipelineOptions
    : public PassPipelineOptions<FusionPipelineOptions> {
  PassOptions::Option<std::string> strategy{
      *this, "strategy",
      llvm::cl::desc("all | none | latent | moe: which fusions run"),
      llvm::cl::init("all")};
  PassOptions::Option<int64_t> naivePrefillFrom{
      *this, "naive-prefill-from",
      llvm::cl::desc("With the latent cache: calls of at least this many "
                     "tokens expand K/V from the latent and run naive MLA "
                     "(0: absorbed always)"),
      llvm::cl::init(kDefaultNaivePrefillFrom)};
};

/// The dsv3 passes of a strategy, in order. Fails on an unknown strategy.
LogicalResult buildFusionPipeline(OpPassManager &pm,
                                  const FusionPipelineOptions &options);

/// Registers the pipelines above with the global pipeline registry.
void registerDsv3Pipelines();

} // namespace dsv3
} // namespace mlir

#endif // DSV3_PIPELINES_PIPELINES_H
