//===- dsv3-compile.cpp - Compile a DeepSeek-V3-architecture model --------===//
//
//   dsv3-compile <checkpoint-dir | config.json> -o ARTIFACT_DIR
//                [--target cpu [--gpu-tiled-on-cpu [--chip ...]] |
//                 --target cuda [--chip sm_90a|sm_80] [--wgmma=false]]
//   dsv3-compile <checkpoint-dir | config.json> --emit=dsv3|llvm [-o FILE]
//
// Reads and validates the Hugging Face config (and, given a checkpoint
// directory, the safetensors headers against it), imports the whole forward
// pass as one depth-independent dsv3 module, lowers it with
// dsv3-cpu-pipeline (or dsv3-gpu-pipeline) and writes an artifact directory (shared library +
// manifest.json) for the runtime.
//
// Every user error ends with one line "dsv3-compile: error: ..." and exit 1.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Analysis/CostReport.h"
#include "dsv3/Dialect/DSV3/IR/DSV3Dialect.h"
#include "dsv3/Dialect/DSV3/Transforms/Passes.h"
#include "dsv3/Import/ModelImporter.h"
#include "dsv3/InitAllDsv3.h"
#include "dsv3/Model/Checkpoint.h"
#include "dsv3/Model/ModelConfig.h"
#include "dsv3/Pipelines/Pipelines.h"
#include "dsv3/Target/Artifact.h"

#include "mlir/IR/DialectRegistry.h"
#include "mlir/IR/MLIRContext.h"
#include "mlir/Pass/PassManager.h"
#include "mlir/Support/FileUtilities.h"
#include "llvm/Support/CommandLine.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/Format.h"
#include "llvm/Support/InitLLVM.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/ToolOutputFile.h"
#include "llvm/Support/raw_ostream.h"

#include <chrono>

using namespace llvm;

namespace {

enum class EmitKind { Dsv3, Llvm, Artifact };
enum class TargetKind { Cpu, Cuda };

cl::OptionCategory category("dsv3-compile options");

cl::opt<std::string> inputPath(cl::Positional, cl::Required,
                               cl::desc("<checkpoint-dir | config.json>"),
                               cl::cat(category));
cl::opt<EmitKind> emitKind(
    "emit", cl::desc("What to produce"), cl::init(EmitKind::Artifact),
    cl::values(
        clEnumValN(EmitKind::Dsv3, "dsv3",
                   "the imported dsv3 module (import level)"),
        clEnumValN(EmitKind::Llvm, "llvm",
                   "the module lowered to the LLVM dialect"),
        clEnumValN(EmitKind::Artifact, "artifact",
                   "an artifact directory: shared library + manifest.json "
                   "(default)")),
    cl::cat(category));
cl::opt<std::string>
    outputPath("o",
               cl::desc("Artifact directory, or output file for --emit=dsv3|"
                        "llvm (default stdout)"),
               cl::value_desc("path"), cl::init("-"), cl::cat(category));
cl::opt<TargetKind> targetKind(
    "target", cl::desc("Backend"), cl::init(TargetKind::Cpu),
    cl::values(clEnumValN(TargetKind::Cpu, "cpu", "this machine's CPU"),
               clEnumValN(TargetKind::Cuda, "cuda", "NVIDIA GPUs")),
    cl::cat(category));
cl::opt<std::string> cpuName(
    "cpu",
    cl::desc("LLVM CPU to compile (host code) for ('native': this machine, "
             "the default for --target=cpu; x86-64-v3 for --target=cuda)"),
    cl::init("native"), cl::cat(category));
cl::opt<std::string> chip("chip",
                          cl::desc("GPU architecture for --target=cuda: "
                                   "sm_90a (default) | sm_80; with "
                                   "--gpu-tiled-on-cpu it picks the tiles "
                                   "(64-row wgmma tiles on sm_90a, 16-row "
                                   "mma.sync tiles on sm_80)"),
                          cl::init("sm_90a"), cl::cat(category));
cl::opt<int64_t> threadsPerBlock(
    "threads-per-block",
    cl::desc("Threads per block of the GPU kernels (default 128)"),
    cl::init(128), cl::cat(category));
cl::opt<bool> gpuTiledOnCpu(
    "gpu-tiled-on-cpu",
    cl::desc("With --target=cpu: compile the GPU kernels' tiled form (the "
             "loops dsv3-gpu-pipeline maps to blocks and threads) for this "
             "CPU instead of the CPU kernels; tests the GPU lowering without "
             "a GPU"),
    cl::init(false), cl::cat(category));
cl::opt<bool> tensorCores(
    "tensor-cores",
    cl::desc("GPU kernels (--target=cuda, --gpu-tiled-on-cpu): the GEMMs "
             "with bf16 weights (linears but the router, grouped experts) "
             "and the MLA attention products on tensor cores (mma.sync, "
             "wgmma on sm_90a; operands rounded to bf16, f32 accumulation). "
             "--tensor-cores=false: CUDA-core kernels in f32 (default true)"),
    cl::init(true), cl::cat(category));
cl::opt<bool> wgmma(
    "wgmma",
    cl::desc("With tensor cores on sm_90a: 64-row tiles as warpgroup "
             "wgmma.mma_async (128-thread blocks). --wgmma=false: 16-row "
             "mma.sync tiles as on sm_80 (default true)"),
    cl::init(true), cl::cat(category));
cl::opt<int64_t> maxSeqLen(
    "max-seq-len",
    cl::desc("Positions the KV cache holds (default min(max_position_"
             "embeddings, 4096))"),
    cl::init(0), cl::cat(category));
cl::opt<bool> mtp(
    "mtp",
    cl::desc("Also compile the checkpoint's multi-token-prediction module "
             "(num_nextn_predict_layers >= 1) for speculative decoding "
             "(dsv3-run --speculative=mtp): adds the verify and draft entry "
             "points"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t> maxBatch("max-batch",
                          cl::desc("Sequences per call (default 1)"),
                          cl::init(1), cl::cat(category));
cl::opt<std::string> fusion(
    "fusion",
    cl::desc("Fusion strategy, the dsv3-fusion pipeline's: all (default), "
             "none (the import-level form: naive MLA on a per-head K/V "
             "cache, each (token, slot) pair of an MoE layer on its own), "
             "latent (dsv3-fuse-latent-projection), moe (dsv3-fuse-moe)"),
    cl::init("all"), cl::cat(category));
cl::opt<std::string> ompSchedule(
    "omp-schedule",
    cl::desc("OpenMP schedule of the parallel loops: static (default), "
             "dynamic, guided, auto, runtime (OMP_SCHEDULE decides)"),
    cl::init("static"), cl::cat(category));
cl::opt<int64_t> tokenRowBlock(
    "token-row-block",
    cl::desc("CPU target: token rows a linear's row-dot kernel computes per "
             "pass over a weight tile, 1, 2 or 4 (default 4: a batched "
             "decode step widens each weight chunk once per 4 tokens)"),
    cl::init(4), cl::cat(category));
cl::opt<int64_t> naivePrefillFrom(
    "naive-prefill-from",
    cl::desc("With the latent cache (--fusion=all|latent): prefill calls of "
             "at least N tokens expand K/V from the latent and run naive MLA; "
             "0 keeps absorbed MLA for every call (default: measured, see "
             "docs/fusion-strategies.md)"),
    cl::init(mlir::dsv3::kDefaultNaivePrefillFrom), cl::cat(category));
enum class WeightDTypeOption { Auto, F32, BF16, F16 };
cl::opt<WeightDTypeOption> weightDType(
    "weight-dtype",
    cl::desc("Element type of non-FP8 weights (default: the checkpoint's, "
             "or bf16 for a bare config)"),
    cl::init(WeightDTypeOption::Auto),
    cl::values(clEnumValN(WeightDTypeOption::Auto, "auto", "from checkpoint"),
               clEnumValN(WeightDTypeOption::F32, "f32", "float32"),
               clEnumValN(WeightDTypeOption::BF16, "bf16", "bfloat16"),
               clEnumValN(WeightDTypeOption::F16, "f16", "float16")),
    cl::cat(category));
enum class KvCacheDTypeOption { F32, BF16, FP8 };
cl::opt<KvCacheDTypeOption> kvCacheDType(
    "kv-cache-dtype",
    cl::desc("Element type of the KV cache (latent, or per-head with "
             "--fusion=none): attention reads it in that type and widens in "
             "registers (default bf16: 70,272 bytes per token for the 671B "
             "config's latent cache)"),
    cl::init(KvCacheDTypeOption::BF16),
    cl::values(clEnumValN(KvCacheDTypeOption::F32, "f32", "4 bytes"),
               clEnumValN(KvCacheDTypeOption::BF16, "bf16", "2 bytes"),
               clEnumValN(KvCacheDTypeOption::FP8, "fp8",
                          "the latent packed as FlashMLA's FP8 cache: e4m3 "
                          "codes with a power-of-two f32 scale per 128 "
                          "columns of each token, the rope key in bf16 (656 "
                          "bytes per token for DeepSeek-V3); the per-head "
                          "cache of --fusion=none likewise")),
    cl::cat(category));
cl::opt<bool> printReport(
    "report",
    cl::desc("Print the cost report (FLOPs, weight bytes read, KV-cache bytes "
             "per token, per layer kind) to stdout, then continue"),
    cl::init(false), cl::cat(category));
cl::opt<int64_t> reportPrefillTokens(
    "report-prefill-tokens", cl::desc("Prefill length S of the report"),
    cl::init(512), cl::cat(category));
cl::opt<int64_t> reportContext(
    "report-context", cl::desc("Context T of the report's decode step"),
    cl::init(4096), cl::cat(category));
enum class CacheDTypeOption { Compiled, F32, BF16 };
cl::opt<CacheDTypeOption> reportCacheDType(
    "report-cache-dtype",
    cl::desc("KV-cache element type the report assumes (default: the "
             "compiled one, --kv-cache-dtype)"),
    cl::init(CacheDTypeOption::Compiled),
    cl::values(clEnumValN(CacheDTypeOption::Compiled, "compiled", "as compiled"),
               clEnumValN(CacheDTypeOption::F32, "f32", "4 bytes"),
               clEnumValN(CacheDTypeOption::BF16, "bf16", "2 bytes")),
    cl::cat(category));
cl::opt<bool> printTiming("print-timing",
                          cl::desc("Print the import time to stderr"),
                          cl::init(false), cl::cat(category));

int fail(const Twine &message) {
  errs() << "dsv3-compile: error: " << message << "\n";
  return 1;
}

/// The float weight precision of a checkpoint: the dtype of its embedding.
std::optional<mlir::dsv3::WeightPrecision>
precisionOf(const dsv3::Checkpoint &checkpoint) {
  const dsv3::TensorInfo *embed = checkpoint.find("model.embed_tokens.weight");
  if (!embed)
    return std::nullopt;
  switch (embed->dtype) {
  case dsv3::DType::F32:
    return mlir::dsv3::WeightPrecision::F32;
  case dsv3::DType::BF16:
    return mlir::dsv3::WeightPrecision::BF16;
  case dsv3::DType::F16:
    return mlir::dsv3::WeightPrecision::F16;
  default:
    return std::nullopt;
  }
}

} // namespace

int main(int argc, char **argv) {
  InitLLVM initLLVM(argc, argv);
  cl::HideUnrelatedOptions(category);
  cl::ParseCommandLineOptions(
      argc, argv,
      "dsv3-compile: compile a DeepSeek-V3-architecture model (HF checkpoint "
      "directory or config.json)\n");

  auto start = std::chrono::steady_clock::now();
  if (!sys::fs::exists(inputPath))
    return fail("'" + inputPath + "' does not exist");
  dsv3::ConfigParseResult parsed = dsv3::loadModelConfig(inputPath);
  if (!parsed)
    return fail(parsed.error);
  const dsv3::ModelConfig &config = *parsed.config;

  mlir::dsv3::ImportOptions options;
  options.maxBatch = maxBatch;
  options.maxSeqLen = maxSeqLen;
  options.mtp = mtp;
  options.cacheLayout = mlir::dsv3::CacheLayout::Expanded;
  options.weightPrecision = mlir::dsv3::WeightPrecision::BF16;
  switch (kvCacheDType) {
  case KvCacheDTypeOption::F32:
    options.kvCacheDType = mlir::dsv3::KvCacheDType::F32;
    break;
  case KvCacheDTypeOption::BF16:
    options.kvCacheDType = mlir::dsv3::KvCacheDType::BF16;
    break;
  case KvCacheDTypeOption::FP8:
    // The packed latent layout is imported as such (latent fusion keeps it;
    // converting a packed expanded cache to it is not written).
    if (fusion == "all" || fusion == "latent")
      options.cacheLayout = mlir::dsv3::CacheLayout::Latent;
    options.kvCacheDType = mlir::dsv3::KvCacheDType::FP8;
    break;
  }

  // A checkpoint directory with weights: validate every header against the
  // config now, so a mismatch is reported at compile time, not at load.
  bool hasWeights = false;
  if (sys::fs::is_directory(inputPath)) {
    std::error_code ec;
    for (sys::fs::directory_iterator it(inputPath, ec), end; it != end && !ec;
         it.increment(ec))
      if (StringRef(it->path()).ends_with(".safetensors"))
        hasWeights = true;
  }
  if (hasWeights) {
    dsv3::CheckpointOpenResult opened = dsv3::Checkpoint::open(inputPath);
    if (!opened)
      return fail(opened.error);
    std::string problem = dsv3::validateCheckpoint(*opened.checkpoint, config);
    if (!problem.empty())
      return fail(problem);
    if (auto precision = precisionOf(*opened.checkpoint))
      options.weightPrecision = *precision;
  }
  switch (weightDType) {
  case WeightDTypeOption::Auto:
    break;
  case WeightDTypeOption::F32:
    options.weightPrecision = mlir::dsv3::WeightPrecision::F32;
    break;
  case WeightDTypeOption::BF16:
    options.weightPrecision = mlir::dsv3::WeightPrecision::BF16;
    break;
  case WeightDTypeOption::F16:
    options.weightPrecision = mlir::dsv3::WeightPrecision::F16;
    break;
  }

  // The pipelines are assembled from registered pass names.
  mlir::dsv3::registerDsv3Passes();
  mlir::DialectRegistry registry;
  mlir::dsv3::registerDsv3Dialects(registry);
  mlir::dsv3::registerUpstreamDependencies(registry);
  mlir::MLIRContext context(registry);
  if ((targetKind == TargetKind::Cuda || gpuTiledOnCpu) &&
      !mlir::dsv3::isSupportedGpuChip(chip))
    return fail("--chip must be sm_90a or sm_80, got '" + chip + "'");
  if (targetKind == TargetKind::Cuda && gpuTiledOnCpu)
    return fail("--gpu-tiled-on-cpu compiles for the CPU: use it with "
                "--target=cpu");
  if (threadsPerBlock < 1 ||
      threadsPerBlock > mlir::dsv3::kMaxThreadsPerBlock)
    return fail("--threads-per-block must be in [1, " +
                Twine(mlir::dsv3::kMaxThreadsPerBlock) + "], got " +
                Twine(threadsPerBlock));
  if (emitKind == EmitKind::Artifact && outputPath == "-")
    return fail("an artifact needs an output directory: -o ARTIFACT_DIR");

  mlir::dsv3::ImportResult imported =
      mlir::dsv3::importModel(context, config, options);
  if (!imported.module)
    return fail(imported.error);
  // The strategy: dsv3 passes on the imported module.
  {
    mlir::PassManager fusionPasses(&context);
    mlir::dsv3::FusionPipelineOptions fusionOptions;
    fusionOptions.strategy = fusion;
    fusionOptions.naivePrefillFrom = naivePrefillFrom;
    if (naivePrefillFrom < 0)
      return fail("--naive-prefill-from must be >= 0, got " +
                  Twine(naivePrefillFrom));
    if (!llvm::is_contained(ArrayRef<StringRef>{"static", "dynamic", "guided",
                                                "auto", "runtime"},
                            StringRef(ompSchedule)))
      return fail("--omp-schedule must be static, dynamic, guided, auto or "
                  "runtime, got '" +
                  ompSchedule + "'");
    if (tokenRowBlock != 1 && tokenRowBlock != 2 && tokenRowBlock != 4)
      return fail("--token-row-block must be 1, 2 or 4, got " +
                  Twine(tokenRowBlock));
    if (failed(mlir::dsv3::buildFusionPipeline(fusionPasses, fusionOptions)))
      return fail("--fusion=" + fusion +
                  ": unknown strategy (expected all, none, latent or moe)");
    if (failed(fusionPasses.run(*imported.module)))
      return fail("the dsv3-fusion{strategy=" + fusion + "} passes failed");
  }
  auto importDone = std::chrono::steady_clock::now();
  auto milliseconds = [](auto from, auto to) {
    return format("%.1f",
                  std::chrono::duration<double, std::milli>(to - from).count());
  };
  if (printTiming)
    errs() << "dsv3-compile: config, checkpoint check and import took "
           << milliseconds(start, importDone) << " ms\n";

  if (printReport) {
    if (reportPrefillTokens <= 0 || reportContext <= 0)
      return fail("--report-prefill-tokens and --report-context must be "
                  "positive");
    mlir::dsv3::CostReportOptions reportOptions;
    reportOptions.prefillTokens = reportPrefillTokens;
    reportOptions.decodeContext = reportContext;
    reportOptions.cacheElementBytes =
        reportCacheDType == CacheDTypeOption::F32    ? 4
        : reportCacheDType == CacheDTypeOption::BF16 ? 2
                                                     : 0;
    outs() << mlir::dsv3::formatCostReport(
        mlir::dsv3::computeCostReport(*imported.module, reportOptions),
        reportOptions);
    outs().flush();
  }

  if (emitKind == EmitKind::Dsv3) {
    std::string error;
    auto output = mlir::openOutputFile(outputPath, &error);
    if (!output)
      return fail(error);
    imported.module->print(output->os());
    output->keep();
    return 0;
  }

  // Lower a copy: the imported module describes the artifact's interface.
  mlir::OwningOpRef<mlir::ModuleOp> lowered = imported.module->clone();
  mlir::PassManager pm(&context);
  mlir::dsv3::CpuPipelineOptions cpuOptions;
  cpuOptions.ompSchedule = ompSchedule;
  cpuOptions.tokenRowBlock = tokenRowBlock;
  mlir::dsv3::GpuPipelineOptions gpuOptions;
  gpuOptions.chip = chip;
  gpuOptions.threadsPerBlock = threadsPerBlock;
  gpuOptions.tensorCores = tensorCores;
  gpuOptions.wgmma = wgmma;
  const char *pipelineName = "dsv3-cpu-pipeline";
  mlir::LogicalResult built = mlir::failure();
  if (targetKind == TargetKind::Cuda) {
    pipelineName = "dsv3-gpu-pipeline";
    built = mlir::dsv3::buildGpuPipeline(pm, gpuOptions);
  } else if (gpuTiledOnCpu) {
    pipelineName = "dsv3-gpu-tiled-on-cpu";
    built = mlir::dsv3::buildGpuTiledOnCpuPipeline(pm, gpuOptions);
  } else {
    built = mlir::dsv3::buildCpuPipeline(pm, cpuOptions);
  }
  if (failed(built))
    return fail(Twine("internal error: ") + pipelineName + " does not build");
  if (failed(pm.run(*lowered)))
    return fail(Twine("lowering the model with ") + pipelineName +
                " failed");
  auto lowerDone = std::chrono::steady_clock::now();

  if (emitKind == EmitKind::Llvm) {
    std::string error;
    auto output = mlir::openOutputFile(outputPath, &error);
    if (!output)
      return fail(error);
    lowered->print(output->os());
    output->keep();
    return 0;
  }

  mlir::dsv3::ArtifactOptions artifactOptions;
  artifactOptions.cpu = cpuName;
  artifactOptions.gpuTiledOnCpu = gpuTiledOnCpu;
  if (tensorCores && (gpuTiledOnCpu || targetKind == TargetKind::Cuda))
    artifactOptions.tensorCoreTileRows =
        mlir::dsv3::tensorCoreTileRows(gpuOptions);
  if (targetKind == TargetKind::Cuda) {
    artifactOptions.device = "cuda";
    artifactOptions.chip = chip;
    // Host code is only glue around the launches: a portable baseline, so
    // the artifact runs on the GPU machine's CPU, whatever it is.
    if (cpuName.getNumOccurrences() == 0)
      artifactOptions.cpu = "x86-64-v3";
  }
  std::string problem = mlir::dsv3::writeArtifact(
      *imported.module, *lowered, config, options, artifactOptions,
      outputPath);
  if (!problem.empty())
    return fail(problem);
  auto done = std::chrono::steady_clock::now();
  outs() << "dsv3-compile: wrote " << outputPath << " (import "
         << milliseconds(start, importDone) << " ms, lowering "
         << milliseconds(importDone, lowerDone) << " ms, LLVM codegen "
         << milliseconds(lowerDone, done) << " ms)\n";
  return 0;
}
