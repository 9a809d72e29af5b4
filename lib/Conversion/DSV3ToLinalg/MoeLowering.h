//===- MoeLowering.h - Lowering of the dsv3 MoE ops ---------*- C++ -*-===//
//
// Private to lib/Conversion/DSV3ToLinalg.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_CONVERSION_DSV3TOLINALG_MOELOWERING_H
#define DSV3_LIB_CONVERSION_DSV3TOLINALG_MOELOWERING_H

#include "Emitter.h"

#include "mlir/IR/PatternMatch.h"

namespace mlir {
namespace dsv3 {
namespace lowering {

/// dsv3.moe (unfused: each (token, slot) pair evaluated on its own) and the
/// fused ops dsv3-fuse-moe produces (moe_route, moe_dispatch, moe_gate_up,
/// moe_down_combine).
/// `kernels.tensorCores`: the fused grouped expert GEMMs as warp MMA tiles where
/// their weights allow (WarpMma.h).
void populateMoeLoweringPatterns(RewritePatternSet &patterns,
                                 KernelOptions kernels);

} // namespace lowering
} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_CONVERSION_DSV3TOLINALG_MOELOWERING_H
