//===- Artifact.cpp - LLVM dialect -> shared library + manifest -----------===//

#include "dsv3/Target/Artifact.h"

#include "dsv3/Dialect/DSV3/IR/DSV3Ops.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/ExecutionEngine/OptUtils.h"
#include "mlir/IR/BuiltinTypes.h"
#include "mlir/Target/LLVMIR/Dialect/Builtin/BuiltinToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/GPU/GPUToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/LLVMIR/LLVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/NVVM/NVVMToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Dialect/OpenMP/OpenMPToLLVMIRTranslation.h"
#include "mlir/Target/LLVMIR/Export.h"

#include "llvm/IR/LegacyPassManager.h"
#include "llvm/IR/Module.h"
#include "llvm/MC/MCSubtargetInfo.h"
#include "llvm/MC/TargetRegistry.h"
#include "llvm/ADT/StringSet.h"
#include "llvm/Support/FileSystem.h"
#include "llvm/Support/JSON.h"
#include "llvm/Support/Path.h"
#include "llvm/Support/Program.h"
#include "llvm/Support/TargetSelect.h"
#include "llvm/Support/raw_ostream.h"
#include "llvm/Target/TargetMachine.h"
#include "llvm/Target/TargetOptions.h"
#include "llvm/TargetParser/Host.h"

using namespace mlir;
using namespace mlir::dsv3;

namespace {

constexpr const char *kLibraryName = "libdsv3model.so";

/// The CPU features an artifact records and the runtime checks: the ones
/// that change which instructions the backend may pick for model code.
constexpr const char *kRecordedFeatures[] = {
    "sse4.2",     "avx",        "avx2",      "fma",        "f16c",
    "bmi2",       "avx512f",    "avx512bw",  "avx512vl",   "avx512dq",
    "avx512cd",   "avx512bf16", "avx512vnni", "avx512vbmi", "avx512fp16",
    "amx-tile",   "amx-bf16",   "amx-int8"};

std::string elementName(Type type) {
  if (type.isF32())
    return "f32";
  if (type.isBF16())
    return "bf16";
  if (type.isF16())
    return "f16";
  if (isa<Float8E4M3FNType>(type))
    return "f8e4m3";
  if (type.isInteger(8))
    return "i8";
  if (type.isInteger(32))
    return "i32";
  if (type.isInteger(64))
    return "i64";
  return "unknown";
}

llvm::json::Array shapeJson(ArrayRef<int64_t> shape) {
  llvm::json::Array result;
  for (int64_t d : shape)
    result.push_back(ShapedType::isDynamic(d) ? -1 : d);
  return result;
}

/// The cache layout the module's dsv3.mla ops use (after any fusion).
const char *cacheLayoutOf(ModuleOp module) {
  bool latent = true;
  module.walk([&](MlaOp op) { latent &= op.hasLatentCache(); });
  return latent ? "latent" : "expanded";
}

/// Prefill calls of fewer query tokens than this compute every token exactly
/// as a decode call does: the absorbed form on the latent cache, below any
/// op's expand_from (the naive form there rounds differently). The runtime's
/// Scheduler then may feed a new request's prompt through the decode steps
/// it shares with other rows, with the tokens the request gets alone. 0 with
/// the expanded cache (no such promise).
int64_t prefillAsDecodeBelow(ModuleOp module, int64_t maxSeqLen) {
  bool latent = true;
  int64_t below = maxSeqLen + 1;
  module.walk([&](MlaOp op) {
    latent &= op.hasLatentCache();
    if (std::optional<uint64_t> from = op.getExpandFrom())
      below = std::min<int64_t>(below, static_cast<int64_t>(*from));
  });
  return latent ? below : 0;
}

} // namespace

std::string mlir::dsv3::describeManifest(ModuleOp imported,
                                         const ::dsv3::ModelConfig &config,
                                         const ImportOptions &importOptions,
                                         const ArtifactOptions &options,
                                         const std::string &cpu,
                                         const std::vector<std::string> &features) {
  auto prefill = imported.lookupSymbol<func::FuncOp>("prefill");
  auto decode = imported.lookupSymbol<func::FuncOp>("decode");
  auto prepare = imported.lookupSymbol<func::FuncOp>("prepare");
  auto verify = imported.lookupSymbol<func::FuncOp>("verify");
  auto draft = imported.lookupSymbol<func::FuncOp>("draft");
  llvm::json::Array inputs, weights, prepared, outputs;
  llvm::StringSet<> checkpointRoles;
  // A checkpoint weight argument of an entry point: where the runtime finds
  // it and how the slices are stacked.
  auto addCheckpointWeight = [&](func::FuncOp f, unsigned i) {
    StringRef role = f.getArgAttrOfType<StringAttr>(i, "dsv3.weight").getValue();
    if (!checkpointRoles.insert(role).second)
      return;
    auto type = cast<RankedTensorType>(f.getArgument(i).getType());
    llvm::json::Object weight{
        {"role", role},
        {"source", f.getArgAttrOfType<StringAttr>(i, "dsv3.source").getValue()},
        {"dtype", elementName(type.getElementType())},
        {"shape", shapeJson(type.getShape())},
        {"layers", nullptr},
        {"experts", nullptr}};
    if (auto layers = f.getArgAttrOfType<DenseI64ArrayAttr>(i, "dsv3.layers"))
      weight["layers"] = llvm::json::Array{layers[0], layers[1]};
    if (auto experts = f.getArgAttrOfType<IntegerAttr>(i, "dsv3.experts"))
      weight["experts"] = experts.getInt();
    weights.push_back(std::move(weight));
  };
  // The weights of prefill and decode, in argument order (the two share
  // one argument list).
  llvm::json::Array forwardWeights;
  for (unsigned i = 0, e = prefill.getNumArguments(); i < e; ++i) {
    auto type = cast<RankedTensorType>(prefill.getArgument(i).getType());
    if (auto input = prefill.getArgAttrOfType<StringAttr>(i, "dsv3.input")) {
      inputs.push_back(llvm::json::Object{
          {"name", input.getValue()},
          {"dtype", elementName(type.getElementType())},
          {"shape", shapeJson(type.getShape())}});
      continue;
    }
    StringRef role =
        prefill.getArgAttrOfType<StringAttr>(i, "dsv3.weight").getValue();
    forwardWeights.push_back(role);
    if (prefill.getArgAttr(i, "dsv3.prepared"))
      prepared.push_back(llvm::json::Object{
          {"name", role},
          {"dtype", elementName(type.getElementType())},
          {"shape", shapeJson(type.getShape())}});
    else
      addCheckpointWeight(prefill, i);
  }
  // The weight arguments of another entry point, in order (the
  // speculative entries'; the draft's are the MTP module's own).
  auto entryWeights = [&](func::FuncOp f) {
    llvm::json::Array roles;
    for (unsigned i = 0, e = f.getNumArguments(); i < e; ++i) {
      auto role = f.getArgAttrOfType<StringAttr>(i, "dsv3.weight");
      if (!role)
        continue;
      roles.push_back(role.getValue());
      if (!f.getArgAttr(i, "dsv3.prepared")) {
        addCheckpointWeight(f, i);
        continue;
      }
      bool known = llvm::any_of(prepared, [&](const llvm::json::Value &p) {
        return *p.getAsObject()->getString("name") == role.getValue();
      });
      if (!known) {
        auto type = cast<RankedTensorType>(f.getArgument(i).getType());
        prepared.push_back(llvm::json::Object{
            {"name", role.getValue()},
            {"dtype", elementName(type.getElementType())},
            {"shape", shapeJson(type.getShape())}});
      }
    }
    return roles;
  };
  auto tensorJson = [&](Type t) {
    auto type = cast<RankedTensorType>(t);
    return llvm::json::Object{{"dtype", elementName(type.getElementType())},
                              {"shape", shapeJson(type.getShape())}};
  };
  llvm::json::Value verifyEntry = nullptr, draftEntry = nullptr,
                    speculative = nullptr;
  if (verify && draft) {
    verifyEntry = llvm::json::Object{{"symbol", "dsv3_verify"},
                                     {"seq_len", -1},
                                     {"weights", entryWeights(verify)}};
    draftEntry = llvm::json::Object{{"symbol", "dsv3_draft"},
                                    {"seq_len", -1},
                                    {"weights", entryWeights(draft)}};
    // What the runtime allocates for them: the draft's hidden-state input
    // (verify's second output, of the same shape) and the MTP cache.
    speculative = llvm::json::Object{
        {"method", "mtp"},
        {"hidden", tensorJson(draft.getArgument(2).getType())},
        {"mtp_cache", tensorJson(draft.getArgument(3).getType())}};
  }
  llvm::json::Value prepareEntry = nullptr;
  if (prepare) {
    llvm::json::Array prepareWeights, prepareResults;
    for (unsigned i = 0, e = prepare.getNumArguments(); i < e; ++i) {
      addCheckpointWeight(prepare, i);
      prepareWeights.push_back(
          prepare.getArgAttrOfType<StringAttr>(i, "dsv3.weight").getValue());
    }
    for (unsigned i = 0, e = prepare.getNumResults(); i < e; ++i)
      prepareResults.push_back(
          prepare.getResultAttrOfType<StringAttr>(i, "dsv3.weight").getValue());
    prepareEntry = llvm::json::Object{{"symbol", "dsv3_prepare"},
                                      {"weights", std::move(prepareWeights)},
                                      {"results", std::move(prepareResults)}};
  }
  auto logitsType =
      cast<RankedTensorType>(prefill.getFunctionType().getResult(0));
  outputs.push_back(llvm::json::Object{
      {"name", "logits"},
      {"dtype", elementName(logitsType.getElementType())},
      {"shape", shapeJson(logitsType.getShape())}});

  llvm::json::Array featureList;
  for (const std::string &f : features)
    featureList.push_back(f);
  llvm::Expected<llvm::json::Value> configJson =
      llvm::json::parse(::dsv3::modelConfigToJson(config));
  llvm::json::Value configValue = nullptr;
  if (configJson)
    configValue = std::move(*configJson);
  else
    llvm::consumeError(configJson.takeError());

  auto maxSeqLen =
      imported->getAttrOfType<IntegerAttr>("dsv3.max_seq_len").getInt();
  auto seqLenOf = [](func::FuncOp f) -> int64_t {
    int64_t s = cast<RankedTensorType>(f.getArgument(0).getType()).getDimSize(1);
    return ShapedType::isDynamic(s) ? -1 : s;
  };
  // The tensor-core instruction of the GPU kernels' tiles (null without).
  llvm::json::Value mmaInstruction = nullptr;
  const bool tensorCores = options.tensorCoreTileRows != 0;
  if (tensorCores)
    mmaInstruction = options.tensorCoreTileRows == 64 ? "wgmma.m64nNk16"
                                                      : "mma.sync.m16n8k16";
  llvm::json::Object manifest{
      {"format", "dsv3-artifact"},
      {"version", 1},
      {"library", kLibraryName},
      {"target",
       llvm::json::Object{{"kind", options.device},
                          {"triple", llvm::sys::getDefaultTargetTriple()},
                          {"cpu", cpu},
                          {"features", std::move(featureList)},
                          {"chip", options.device == "cuda"
                                       ? llvm::json::Value(options.chip)
                                       : llvm::json::Value(nullptr)},
                          {"gpu_tiled_on_cpu", options.gpuTiledOnCpu},
                          {"tensor_cores", tensorCores},
                          {"mma", mmaInstruction}}},
      {"config", std::move(configValue)},
      {"options",
       llvm::json::Object{
           {"max_batch", importOptions.maxBatch},
           {"max_seq_len", maxSeqLen},
           {"kv_cache", cacheLayoutOf(imported)},
           // Checked bitwise on the CPU (test/Runtime/scheduler-compiled
           // .test) and on an H200 (the same check, sm_90a with and without
           // tensor cores; docs/runtime.md).
           {"prefill_as_decode_below",
            prefillAsDecodeBelow(imported, maxSeqLen)}}},
      {"entry_points",
       llvm::json::Object{
           {"prefill", llvm::json::Object{{"symbol", "dsv3_prefill"},
                                          {"seq_len", seqLenOf(prefill)},
                                          {"weights", llvm::json::Value(llvm::json::Array(forwardWeights))}}},
           {"decode", llvm::json::Object{{"symbol", "dsv3_decode"},
                                         {"seq_len", seqLenOf(decode)},
                                         {"weights", llvm::json::Value(llvm::json::Array(forwardWeights))}}},
           {"prepare", std::move(prepareEntry)},
           {"verify", std::move(verifyEntry)},
           {"draft", std::move(draftEntry)}}},
      {"speculative", std::move(speculative)},
      {"inputs", std::move(inputs)},
      {"weights", std::move(weights)},
      {"prepared", std::move(prepared)},
      {"outputs", std::move(outputs)}};
  std::string text;
  llvm::raw_string_ostream os(text);
  os << llvm::formatv("{0:2}", llvm::json::Value(std::move(manifest)));
  return text;
}

std::string mlir::dsv3::writeArtifact(ModuleOp imported, ModuleOp lowered,
                                      const ::dsv3::ModelConfig &config,
                                      const ImportOptions &importOptions,
                                      const ArtifactOptions &options,
                                      const std::string &outputDir) {
  llvm::InitializeNativeTarget();
  llvm::InitializeNativeTargetAsmPrinter();

  if (std::error_code ec = llvm::sys::fs::create_directories(outputDir))
    return "cannot create '" + outputDir + "': " + ec.message();

  // Target: this machine's CPU and features, or a named CPU.
  std::string triple = llvm::sys::getDefaultTargetTriple();
  std::string cpu = options.cpu == "native"
                        ? llvm::sys::getHostCPUName().str()
                        : options.cpu;
  std::string error;
  const llvm::Target *target =
      llvm::TargetRegistry::lookupTarget(llvm::Triple(triple), error);
  if (!target)
    return "no LLVM target for " + triple + ": " + error;
  std::vector<std::string> recorded;
  std::string featureString;
  if (options.cpu == "native") {
    llvm::StringMap<bool> host = llvm::sys::getHostCPUFeatures();
    for (auto &entry : host) {
      if (!featureString.empty())
        featureString += ",";
      featureString += (entry.second ? "+" : "-") + entry.getKey().str();
    }
    for (const char *name : kRecordedFeatures)
      if (host.lookup(name))
        recorded.push_back(name);
  }
  std::unique_ptr<llvm::TargetMachine> machine(target->createTargetMachine(
      llvm::Triple(triple), cpu, featureString, llvm::TargetOptions(),
      llvm::Reloc::PIC_));
  if (!machine)
    return "cannot create a target machine for " + cpu;
  if (options.cpu != "native") {
    // Record what the named CPU implies.
    const llvm::MCSubtargetInfo *sti = machine->getMCSubtargetInfo();
    for (const char *name : kRecordedFeatures)
      if (sti->checkFeatures(std::string("+") + name))
        recorded.push_back(name);
  }

  // LLVM dialect -> LLVM IR -> optimised module.
  registerBuiltinDialectTranslation(*lowered.getContext());
  registerLLVMDialectTranslation(*lowered.getContext());
  registerOpenMPDialectTranslation(*lowered.getContext());
  // gpu.binary becomes a global holding the cubins and gpu.launch_func the
  // mgpuModuleLoad / mgpuLaunchKernel calls.
  registerGPUDialectTranslation(*lowered.getContext());
  registerNVVMDialectTranslation(*lowered.getContext());
  llvm::LLVMContext llvmContext;
  std::unique_ptr<llvm::Module> module =
      translateModuleToLLVMIR(lowered, llvmContext, "dsv3model");
  if (!module)
    return "internal error: translation to LLVM IR failed";
  module->setTargetTriple(llvm::Triple(triple));
  module->setDataLayout(machine->createDataLayout());
  auto optimize = makeOptimizingTransformer(options.optLevel, 0, machine.get());
  if (llvm::Error err = optimize(module.get()))
    return "internal error: LLVM optimisation failed: " +
           llvm::toString(std::move(err));

  // Object file.
  llvm::SmallString<256> objectPath(outputDir);
  llvm::sys::path::append(objectPath, "dsv3model.o");
  {
    std::error_code ec;
    llvm::raw_fd_ostream os(objectPath, ec, llvm::sys::fs::OF_None);
    if (ec)
      return "cannot write '" + objectPath.str().str() + "': " + ec.message();
    llvm::legacy::PassManager pm;
    if (machine->addPassesToEmitFile(pm, os, nullptr,
                                     llvm::CodeGenFileType::ObjectFile))
      return "internal error: the target cannot emit object files";
    pm.run(*module);
  }

  // Shared library, linked by the system's clang driver. The parallel loops
  // run on the OpenMP runtime (libomp), which is copied next to the library
  // and found through $ORIGIN, so an artifact runs where no LLVM is
  // installed. A GPU artifact needs no OpenMP; its mgpu* calls are left
  // undefined and resolve to libdsv3rt's when the runtime loads it.
  llvm::SmallString<256> libraryPath(outputDir);
  llvm::sys::path::append(libraryPath, kLibraryName);
  llvm::ErrorOr<std::string> linker = llvm::sys::findProgramByName("clang-22");
  if (!linker)
    linker = llvm::sys::findProgramByName("clang");
  if (!linker)
    return "cannot find clang-22 to link the shared library";
  std::string linkError;
  llvm::SmallVector<llvm::StringRef> linkArgs{
      *linker, "-shared", "-o", libraryPath.str(), objectPath.str()};
  llvm::SmallString<256> ompCopy(outputDir);
  if (options.device == "cpu") {
    llvm::SmallString<256> ompSource(DSV3_OPENMP_LIBRARY);
    llvm::sys::path::append(ompCopy, llvm::sys::path::filename(ompSource));
    if (std::error_code copyError =
            llvm::sys::fs::copy_file(ompSource, ompCopy))
      return "cannot copy the OpenMP runtime " + ompSource.str().str() +
             ": " + copyError.message();
    linkArgs.push_back(ompCopy.str());
    linkArgs.push_back("-Wl,-rpath,$ORIGIN");
  }
  linkArgs.push_back("-lm");
  int rc = llvm::sys::ExecuteAndWait(*linker, linkArgs, std::nullopt, {}, 0,
                                     0, &linkError);
  if (rc != 0)
    return "linking " + libraryPath.str().str() + " failed" +
           (linkError.empty() ? "" : ": " + linkError);
  llvm::sys::fs::remove(objectPath);

  // Manifest.
  llvm::SmallString<256> manifestPath(outputDir);
  llvm::sys::path::append(manifestPath, "manifest.json");
  std::error_code ec;
  llvm::raw_fd_ostream manifest(manifestPath, ec, llvm::sys::fs::OF_Text);
  if (ec)
    return "cannot write '" + manifestPath.str().str() + "': " + ec.message();
  manifest << describeManifest(imported, config, importOptions, options, cpu,
                               recorded)
           << "\n";
  return "";
}
