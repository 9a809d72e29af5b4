//===- PackedEntryPoints.cpp - void dsv3_<entry>(void **) wrappers --------===//
//
// The runtime calls compiled entry points without knowing their arity (it
// depends on the model: FP8 adds scales, q_lora_rank adds projections), so
// every entry gets a packed wrapper taking one array of descriptor pointers.
// Results are passed by destination: the wrapper copies each result into the
// caller's buffer (a separate output, or the input it updates, e.g. the KV
// cache) unless the compiled code already wrote it there, and frees the
// compiled code's own allocation.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Conversion/Passes.h"

#include "mlir/Dialect/LLVMIR/FunctionCallUtils.h"
#include "mlir/Dialect/LLVMIR/LLVMDialect.h"
#include "mlir/IR/Builders.h"
#include "mlir/IR/BuiltinOps.h"

namespace mlir {
namespace dsv3 {
#define GEN_PASS_DEF_DSV3EMITPACKEDENTRYPOINTS
#include "dsv3/Conversion/Passes.h.inc"
} // namespace dsv3
} // namespace mlir

using namespace mlir;

namespace {

struct EmitPackedEntryPointsPass
    : dsv3::impl::DSV3EmitPackedEntryPointsBase<EmitPackedEntryPointsPass> {
  using DSV3EmitPackedEntryPointsBase::DSV3EmitPackedEntryPointsBase;

  void runOnOperation() override {
    if (device != "cpu" && device != "cuda") {
      getOperation().emitError("dsv3-emit-packed-entry-points: unknown "
                               "device '")
          << device << "' (expected cpu or cuda)";
      return signalPassFailure();
    }
    ModuleOp module = getOperation();
    SmallVector<LLVM::LLVMFuncOp> entries;
    module.walk([&](LLVM::LLVMFuncOp func) {
      // func-to-llvm copies the attributes onto the C interface wrapper too;
      // the packed wrapper is built once, for the function itself.
      if (func->hasAttr("dsv3.entry") &&
          !func.getName().starts_with("_mlir_ciface_"))
        entries.push_back(func);
    });
    for (LLVM::LLVMFuncOp entry : entries)
      if (failed(emitWrapper(module, entry)))
        return signalPassFailure();
    // GPU artifacts run no OpenMP loops on the host.
    if (!entries.empty() && device == "cpu")
      emitThreadControl(module);
  }

  /// `void dsv3_set_num_threads(int32_t)`: how the runtime applies
  /// `--threads` to the OpenMP loops without linking the OpenMP runtime
  /// itself.
  void emitThreadControl(ModuleOp module) {
    MLIRContext *ctx = module.getContext();
    OpBuilder b(ctx);
    b.setInsertionPointToEnd(module.getBody());
    Location loc = module.getLoc();
    auto i32 = IntegerType::get(ctx, 32);
    auto voidType = LLVM::LLVMVoidType::get(ctx);
    auto fnType = LLVM::LLVMFunctionType::get(voidType, {i32});
    auto setThreads =
        module.lookupSymbol<LLVM::LLVMFuncOp>("omp_set_num_threads");
    if (!setThreads)
      setThreads =
          LLVM::LLVMFuncOp::create(b, loc, "omp_set_num_threads", fnType);
    auto wrapper =
        LLVM::LLVMFuncOp::create(b, loc, "dsv3_set_num_threads", fnType);
    Block *body = wrapper.addEntryBlock(b);
    b.setInsertionPointToStart(body);
    LLVM::CallOp::create(b, loc, setThreads,
                         ValueRange{body->getArgument(0)});
    LLVM::ReturnOp::create(b, loc, ValueRange{});
  }

  LogicalResult emitWrapper(ModuleOp module, LLVM::LLVMFuncOp entry) {
    auto name = entry->getAttrOfType<StringAttr>("dsv3.entry");
    auto destinations =
        entry->getAttrOfType<DenseI64ArrayAttr>("dsv3.result_destinations");
    auto elementBytes =
        entry->getAttrOfType<DenseI64ArrayAttr>("dsv3.result_element_bytes");
    auto ciface = module.lookupSymbol<LLVM::LLVMFuncOp>(
        ("_mlir_ciface_" + entry.getName()).str());
    if (!name || !destinations || !elementBytes || !ciface ||
        destinations.size() != elementBytes.size())
      return entry.emitError("dsv3 entry point without its C interface, "
                             "dsv3.result_destinations or "
                             "dsv3.result_element_bytes");

    MLIRContext *ctx = module.getContext();
    OpBuilder b(ctx);
    b.setInsertionPointToEnd(module.getBody());
    Location loc = entry.getLoc();
    auto ptr = LLVM::LLVMPointerType::get(ctx);
    auto i64 = IntegerType::get(ctx, 64);
    Type resultType = entry.getFunctionType().getReturnType();
    // Results updated in place (destination >= 0) may have been dropped by
    // drop-equivalent-buffer-results: only the remaining ones are returned.
    int64_t numReturned = 0;
    if (auto structType = dyn_cast<LLVM::LLVMStructType>(resultType);
        structType && !structType.getBody().empty() &&
        isa<LLVM::LLVMStructType>(structType.getBody()[0]))
      numReturned = structType.getBody().size();
    else if (!isa<LLVM::LLVMVoidType>(resultType))
      numReturned = 1;
    SmallVector<int64_t> returnedDestinations, returnedBytes;
    const int64_t numOutputs =
        llvm::count_if(destinations.asArrayRef(), [](int64_t d) { return d < 0; });
    for (auto [dest, bytes] : llvm::zip_equal(destinations.asArrayRef(),
                                              elementBytes.asArrayRef()))
      if (numReturned == static_cast<int64_t>(destinations.size()) || dest < 0) {
        returnedDestinations.push_back(dest);
        returnedBytes.push_back(bytes);
      }
    if (static_cast<int64_t>(returnedDestinations.size()) != numReturned)
      return entry.emitError("dsv3 entry point returns ")
             << numReturned << " results; dsv3.result_destinations describes "
             << destinations.size() << " with " << numOutputs << " outputs";
    const int64_t numResults = numReturned;
    // The C interface passes the result struct first when it returns
    // anything, then one descriptor pointer per input.
    const int64_t numInputs =
        ciface.getNumArguments() - (numReturned > 0 ? 1 : 0);

    auto wrapper = LLVM::LLVMFuncOp::create(
        b, loc, ("dsv3_" + name.getValue()).str(),
        LLVM::LLVMFunctionType::get(LLVM::LLVMVoidType::get(ctx), {ptr}));
    Block *body = wrapper.addEntryBlock(b);
    b.setInsertionPointToStart(body);
    Value args = body->getArgument(0);
    auto argPointer = [&](int64_t i) -> Value {
      Value slot = LLVM::GEPOp::create(b, loc, ptr, ptr, args,
                                       ArrayRef<LLVM::GEPArg>{i});
      return LLVM::LoadOp::create(b, loc, ptr, slot);
    };
    Value one = LLVM::ConstantOp::create(b, loc, i64, b.getI64IntegerAttr(1));
    Value resultSlot;
    SmallVector<Value> callArgs;
    if (numResults > 0) {
      resultSlot = LLVM::AllocaOp::create(b, loc, ptr, resultType, one);
      callArgs.push_back(resultSlot);
    }
    SmallVector<Value> inputs;
    for (int64_t i = 0; i < numInputs; ++i)
      inputs.push_back(argPointer(i));
    callArgs.append(inputs);
    LLVM::CallOp::create(b, loc, ciface, callArgs);
    if (numResults == 0) {
      LLVM::ReturnOp::create(b, loc, ValueRange{});
      return success();
    }

    // On the CPU results are heap buffers (memcpy + free); on the GPU they
    // are device buffers, copied and freed through the runtime's mgpu* ABI
    // (the null stream: the compiled code has synchronised its own).
    FailureOr<LLVM::LLVMFuncOp> freeFn, copyFn;
    if (device == "cpu") {
      freeFn = LLVM::lookupOrCreateFreeFn(b, module);
    } else {
      auto voidType = LLVM::LLVMVoidType::get(ctx);
      freeFn = LLVM::lookupOrCreateFn(b, module, "mgpuMemFree", {ptr, ptr},
                                      voidType);
      copyFn = LLVM::lookupOrCreateFn(b, module, "mgpuMemcpy",
                                      {ptr, ptr, i64, ptr}, voidType);
      if (failed(copyFn))
        return entry.emitError("cannot declare mgpuMemcpy");
    }
    if (failed(freeFn))
      return entry.emitError("cannot declare the result deallocation");
    Value nullStream;
    if (device == "cuda")
      nullStream = LLVM::ZeroOp::create(b, loc, ptr);
    Value results = LLVM::LoadOp::create(b, loc, resultType, resultSlot);
    int64_t nextOutput = numInputs;
    for (int64_t r = 0; r < numResults; ++r) {
      Value desc = numResults == 1
                       ? results
                       : LLVM::ExtractValueOp::create(b, loc, results, r);
      auto descType = cast<LLVM::LLVMStructType>(desc.getType());
      // Descriptor: {allocated, aligned, offset, sizes[R], strides[R]}.
      int64_t rank = 0;
      if (descType.getBody().size() > 3)
        rank = cast<LLVM::LLVMArrayType>(descType.getBody()[3]).getNumElements();
      Value allocated = LLVM::ExtractValueOp::create(b, loc, desc, 0);
      Value aligned = LLVM::ExtractValueOp::create(b, loc, desc, 1);
      Value offset = LLVM::ExtractValueOp::create(b, loc, desc, 2);
      Value bytesPerElement = LLVM::ConstantOp::create(
          b, loc, i64, b.getI64IntegerAttr(returnedBytes[r]));
      Value count = one;
      for (int64_t d = 0; d < rank; ++d)
        count = LLVM::MulOp::create(
            b, loc, count,
            LLVM::ExtractValueOp::create(b, loc, desc,
                                         ArrayRef<int64_t>{3, d}));
      Value bytes = LLVM::MulOp::create(b, loc, count, bytesPerElement);
      Value source = LLVM::GEPOp::create(
          b, loc, ptr, b.getI8Type(), aligned,
          ArrayRef<LLVM::GEPArg>{
              Value(LLVM::MulOp::create(b, loc, offset, bytesPerElement))});

      int64_t destination = returnedDestinations[r];
      int64_t destIndex = destination >= 0 ? destination : nextOutput++;
      Value destDesc =
          destination >= 0 ? inputs[destIndex] : argPointer(destIndex);
      // The caller's descriptor: its aligned pointer is field 1.
      Value destAlignedSlot = LLVM::GEPOp::create(
          b, loc, ptr, ptr, destDesc, ArrayRef<LLVM::GEPArg>{1});
      Value destAligned = LLVM::LoadOp::create(b, loc, ptr, destAlignedSlot);
      Value destOffsetSlot = LLVM::GEPOp::create(
          b, loc, ptr, ptr, destDesc, ArrayRef<LLVM::GEPArg>{2});
      Value destOffset = LLVM::LoadOp::create(b, loc, i64, destOffsetSlot);
      Value dest = LLVM::GEPOp::create(
          b, loc, ptr, b.getI8Type(), destAligned,
          ArrayRef<LLVM::GEPArg>{
              Value(LLVM::MulOp::create(b, loc, destOffset, bytesPerElement))});

      // Already in place (e.g. the KV cache updated in its own buffer)?
      Value same = LLVM::ICmpOp::create(b, loc, LLVM::ICmpPredicate::eq,
                                        source, dest);
      Block *copyBlock = wrapper.addBlock();
      Block *next = wrapper.addBlock();
      LLVM::CondBrOp::create(b, loc, same, next, copyBlock);
      b.setInsertionPointToStart(copyBlock);
      if (device == "cpu") {
        LLVM::MemcpyOp::create(b, loc, dest, source, bytes,
                               /*isVolatile=*/false);
        LLVM::CallOp::create(b, loc, *freeFn, ValueRange{allocated});
      } else {
        LLVM::CallOp::create(b, loc, *copyFn,
                             ValueRange{dest, source, bytes, nullStream});
        LLVM::CallOp::create(b, loc, *freeFn,
                             ValueRange{allocated, nullStream});
      }
      LLVM::BrOp::create(b, loc, next);
      b.setInsertionPointToStart(next);
    }
    LLVM::ReturnOp::create(b, loc, ValueRange{});
    return success();
  }
};

} // namespace
