//===- MemRefCopyToLinalg.cpp - strided memref.copy -> linalg.copy --------===//
//
// Keeps compiled artifacts free of the `memrefCopy` runtime call: a copy whose
// buffers are not both identity-layout becomes linalg.copy, which
// convert-linalg-to-loops turns into loops. With `all`, every copy does (the
// GPU pipeline: a host memcpy cannot reach device memory).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/Func/IR/FuncOps.h"
#include "mlir/Dialect/Linalg/IR/Linalg.h"
#include "mlir/Dialect/MemRef/IR/MemRef.h"
#include "mlir/IR/Builders.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3MEMREFCOPYTOLINALG
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

struct MemRefCopyToLinalgPass
    : dsv3::impl::DSV3MemRefCopyToLinalgBase<MemRefCopyToLinalgPass> {
  using DSV3MemRefCopyToLinalgBase::DSV3MemRefCopyToLinalgBase;

  void runOnOperation() override {
    SmallVector<memref::CopyOp> copies;
    WalkResult walk = getOperation().walk([&](memref::CopyOp copy) {
      auto source = dyn_cast<MemRefType>(copy.getSource().getType());
      auto target = dyn_cast<MemRefType>(copy.getTarget().getType());
      // linalg.copy needs ranked buffers: an unranked copy stays for the
      // runtime's memrefCopy, which `all` exists to avoid.
      if (!source || !target) {
        if (!all)
          return WalkResult::advance();
        copy.emitOpError("copies an unranked memref, which "
                         "dsv3-memref-copy-to-linalg{all=true} cannot turn "
                         "into linalg.copy");
        return WalkResult::interrupt();
      }
      if (all || !source.getLayout().isIdentity() ||
          !target.getLayout().isIdentity())
        copies.push_back(copy);
      return WalkResult::advance();
    });
    if (walk.wasInterrupted())
      return signalPassFailure();
    for (memref::CopyOp copy : copies) {
      OpBuilder b(copy);
      linalg::CopyOp::create(b, copy.getLoc(), copy.getSource(),
                             copy.getTarget());
      copy.erase();
    }
  }
};

} // namespace
