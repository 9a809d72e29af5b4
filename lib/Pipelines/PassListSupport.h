//===- PassListSupport.h - Pipelines written as pass lists ------*- C++ -*-===//
//
// Private to lib/Pipelines. The pipelines are written as textual pass lists
// (one upstream or dsv3 pass with its options per entry, in the order they
// run): that is also how a user reproduces a stage with dsv3-opt.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_PIPELINES_PASSLISTSUPPORT_H
#define DSV3_LIB_PIPELINES_PASSLISTSUPPORT_H

#include "mlir/Pass/PassManager.h"
#include "mlir/Pass/PassRegistry.h"
#include "llvm/ADT/StringExtras.h"
#include "llvm/Support/raw_ostream.h"

#include <string>

namespace mlir {
namespace dsv3 {

/// Parses `passes` (joined by commas) into `pm`; a list that does not parse
/// is an internal error, reported on stderr.
inline LogicalResult addPassList(OpPassManager &pm,
                                 ArrayRef<std::string> passes) {
  std::string text = llvm::join(passes, ",");
  std::string errors;
  llvm::raw_string_ostream errorStream(errors);
  if (failed(parsePassPipeline(text, pm, errorStream))) {
    llvm::errs() << "dsv3: internal pipeline does not parse: " << errors
                 << "\n";
    return failure();
  }
  return success();
}

} // namespace dsv3
} // namespace mlir

#endif // DSV3_LIB_PIPELINES_PASSLISTSUPPORT_H
