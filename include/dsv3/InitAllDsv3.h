//===- InitAllDsv3.h - Register everything dsv3 tools need ----*- C++ -*-===//
//
// One place that registers the dsv3 dialect and passes plus the upstream
// pieces the dsv3 pipelines use, shared by every tool (after Triton's
// single registration header).
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_INITALLDSV3_H
#define DSV3_INITALLDSV3_H

namespace mlir {
class DialectRegistry;

namespace dsv3 {

/// Registers the dsv3 dialect.
void registerDsv3Dialects(DialectRegistry &registry);

/// Registers every upstream dialect, extension, NVVM target model and
/// LLVM/NVVM/GPU translation interface the dsv3 pipelines rely on.
void registerUpstreamDependencies(DialectRegistry &registry);

/// Registers the dsv3 passes and pipelines with the global pass registry.
void registerDsv3Passes();

} // namespace dsv3
} // namespace mlir

#endif // DSV3_INITALLDSV3_H
