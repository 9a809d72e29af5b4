//===- Artifact.h - Write an artifact directory -----------------*- C++ -*-===//
//
// An artifact is what `dsv3-compile -o DIR` produces and the runtime loads:
//
//   DIR/libdsv3model.so   the compiled forward pass, exporting the packed
//                         entry points dsv3_prefill / dsv3_decode; for the
//                         GPU, host code with the kernels' cubins embedded
//   DIR/manifest.json     config, options, target CPU and features, entry
//                         points, inputs/outputs, and the weight layout
//                         (role, HF source pattern, dtype, stacked shape,
//                         which layers and experts fill the stack)
//
// docs/architecture.md describes the format; lib/Runtime reads it.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_TARGET_ARTIFACT_H
#define DSV3_TARGET_ARTIFACT_H

#include "dsv3/Import/ModelImporter.h"
#include "dsv3/Model/ModelConfig.h"

#include "mlir/IR/BuiltinOps.h"

#include <string>

namespace mlir {
namespace dsv3 {

struct ArtifactOptions {
  /// LLVM CPU name of the host code; "native" means this machine's CPU and
  /// features.
  std::string cpu = "native";
  unsigned optLevel = 3;
  /// Where the model math runs: "cpu" (OpenMP loops) or "cuda" (embedded
  /// cubins launched through the runtime's mgpu* ABI).
  std::string device = "cpu";
  /// The GPU architecture of the cubins (device "cuda").
  std::string chip;
  /// The GPU kernels' tiled form compiled for the CPU (a test artifact).
  bool gpuTiledOnCpu = false;
  /// GPU kernels with the GEMMs with bf16 weights and the MLA attention
  /// products on tensor cores (bf16 operands): their tiles' rows, 16
  /// (mma.sync) or 64 (wgmma); 0: no tensor cores.
  int64_t tensorCoreTileRows = 0;
};

/// Describes the artifact's interface from the imported (not yet lowered)
/// module: its entry points' inputs, weights and outputs.
std::string describeManifest(ModuleOp imported,
                             const ::dsv3::ModelConfig &config,
                             const ImportOptions &importOptions,
                             const ArtifactOptions &options,
                             const std::string &cpu,
                             const std::vector<std::string> &features);

/// Translates the lowered module (LLVM dialect, with gpu.binary ops for the
/// GPU) to LLVM IR, optimises and compiles it for the host CPU, links
/// libdsv3model.so into `outputDir` and writes manifest.json. Returns "" or
/// one error line.
std::string writeArtifact(ModuleOp imported, ModuleOp lowered,
                          const ::dsv3::ModelConfig &config,
                          const ImportOptions &importOptions,
                          const ArtifactOptions &options,
                          const std::string &outputDir);

} // namespace dsv3
} // namespace mlir

#endif // DSV3_TARGET_ARTIFACT_H
