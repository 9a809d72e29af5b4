//===- MgpuAbi.cpp - The mgpu* functions compiled GPU artifacts call ------===//
//
// MLIR's GPU lowering turns gpu.launch_func, gpu.alloc, gpu.memcpy and
// gpu.wait into calls to these functions (the ABI of MLIR's CUDA runtime
// wrappers, which Debian does not ship), and the gpu.binary translation adds
// a global constructor that loads the embedded cubins with mgpuModuleLoad
// when the artifact is dlopen'ed. libdsv3rt implements them over the CUDA
// driver (CudaDriver.cpp) and exports them, so an artifact's undefined
// mgpu* symbols resolve to these.
//
// All compiled work runs on the runtime's one stream: mgpuStreamCreate hands
// it out and mgpuStreamDestroy keeps it. None of these functions can return
// a status, so failures are recorded (cuda::recordError) and the Model turns
// the first one into the entry point's error after the call.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/CudaDriver.h"

#include "CudaDriverTable.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <string>

using namespace dsv3::runtime;
using cuda::CUdeviceptr;
using cuda::CUresult;
using cuda::Handle;

#define MGPU_API extern "C" __attribute__((visibility("default")))

namespace {

/// A failed driver call inside an mgpu* function: recorded, not fatal.
bool failed(const char *call, CUresult result) {
  if (result == 0)
    return false;
  cuda::recordError("GPU: " + cuda::describe(call, result));
  return true;
}

/// The stream to use for `stream` as the compiled code passes it (null: the
/// runtime's).
Handle streamOf(void *stream) { return stream ? stream : cuda::stream(); }

/// Kernel names by function handle, for the per-kernel timings.
std::mutex namesMutex;
std::map<Handle, std::string> &kernelNames() {
  static std::map<Handle, std::string> names;
  return names;
}

bool ready() {
  if (cuda::available())
    return true;
  std::string error = cuda::initialize();
  if (!error.empty()) {
    cuda::recordError(error);
    return false;
  }
  return true;
}

} // namespace

MGPU_API void *mgpuModuleLoad(void *data, size_t /*size*/) {
  if (!ready())
    return nullptr;
  Handle module = nullptr;
  if (failed("cuModuleLoadData", cuda::driver().cuModuleLoadData(&module, data)))
    return nullptr;
  return module;
}

MGPU_API void mgpuModuleUnload(void *module) {
  if (module && cuda::available())
    cuda::driver().cuModuleUnload(module);
}

MGPU_API void *mgpuModuleGetFunction(void *module, const char *name) {
  if (!module) {
    cuda::recordError(std::string("GPU: kernel '") + name +
                      "' is missing: its module did not load");
    return nullptr;
  }
  Handle function = nullptr;
  if (failed("cuModuleGetFunction",
             cuda::driver().cuModuleGetFunction(&function, module, name)))
    return nullptr;
  // The lowered host code looks the function up before every launch, so the
  // name only needs recording while launches are timed.
  if (cuda::kernelTiming()) {
    std::lock_guard<std::mutex> lock(namesMutex);
    kernelNames()[function] = name;
  }
  return function;
}

MGPU_API void mgpuLaunchKernel(void *function, intptr_t gridX, intptr_t gridY,
                               intptr_t gridZ, intptr_t blockX,
                               intptr_t blockY, intptr_t blockZ,
                               int32_t sharedMemoryBytes, void *stream,
                               void **params, void **extra,
                               size_t /*paramsCount*/) {
  if (!function) {
    cuda::recordError("GPU: launch of a kernel that did not load");
    return;
  }
  // An empty grid (a loop with no iterations this call) launches nothing;
  // the driver would reject it.
  if (gridX <= 0 || gridY <= 0 || gridZ <= 0 || blockX <= 0 || blockY <= 0 ||
      blockZ <= 0)
    return;
  const cuda::Driver &d = cuda::driver();
  Handle s = streamOf(stream);
  auto launch = [&] {
    return d.cuLaunchKernel(function, gridX, gridY, gridZ, blockX, blockY,
                            blockZ, sharedMemoryBytes, s, params, extra);
  };
  if (!cuda::kernelTiming()) {
    failed("cuLaunchKernel", launch());
    return;
  }
  static Handle start = nullptr, end = nullptr;
  if (!start && (failed("cuEventCreate", d.cuEventCreate(&start, 0)) ||
                 failed("cuEventCreate", d.cuEventCreate(&end, 0))))
    return;
  d.cuEventRecord(start, s);
  if (failed("cuLaunchKernel", launch()))
    return;
  d.cuEventRecord(end, s);
  float milliseconds = 0;
  if (failed("cuEventSynchronize", d.cuEventSynchronize(end)) ||
      failed("cuEventElapsedTime",
             d.cuEventElapsedTime(&milliseconds, start, end)))
    return;
  std::string name;
  {
    std::lock_guard<std::mutex> lock(namesMutex);
    name = kernelNames()[function];
  }
  cuda::addKernelTime(name, milliseconds * 1e-3);
}

MGPU_API void *mgpuStreamCreate() { return ready() ? cuda::stream() : nullptr; }

MGPU_API void mgpuStreamDestroy(void * /*stream*/) {}

MGPU_API void mgpuStreamSynchronize(void *stream) {
  if (cuda::available())
    failed("cuStreamSynchronize",
           cuda::driver().cuStreamSynchronize(streamOf(stream)));
}

MGPU_API void mgpuStreamWaitEvent(void *stream, void *event) {
  if (cuda::available())
    failed("cuStreamWaitEvent",
           cuda::driver().cuStreamWaitEvent(streamOf(stream), event, 0));
}

MGPU_API void *mgpuEventCreate() {
  Handle event = nullptr;
  if (!ready() || failed("cuEventCreate",
                         cuda::driver().cuEventCreate(&event, /*disable
                                                       timing*/ 2)))
    return nullptr;
  return event;
}

MGPU_API void mgpuEventDestroy(void *event) {
  if (event && cuda::available())
    cuda::driver().cuEventDestroy(event);
}

MGPU_API void mgpuEventSynchronize(void *event) {
  if (event && cuda::available())
    failed("cuEventSynchronize", cuda::driver().cuEventSynchronize(event));
}

MGPU_API void mgpuEventRecord(void *event, void *stream) {
  if (event && cuda::available())
    failed("cuEventRecord",
           cuda::driver().cuEventRecord(event, streamOf(stream)));
}

/// Stream-ordered allocations from the driver's pool: the compiled code
/// allocates and frees its temporaries on every call, and cuMemAlloc would
/// synchronise the device each time.
MGPU_API void *mgpuMemAlloc(uint64_t bytes, void *stream, bool isHostShared) {
  if (!ready() || bytes == 0)
    return nullptr;
  CUdeviceptr pointer = 0;
  const cuda::Driver &d = cuda::driver();
  if (isHostShared) {
    if (failed("cuMemAllocManaged",
               d.cuMemAllocManaged(&pointer, bytes, /*global*/ 1)))
      return nullptr;
  } else if (failed("cuMemAllocAsync",
                    d.cuMemAllocAsync(&pointer, bytes, streamOf(stream)))) {
    return nullptr;
  }
  return reinterpret_cast<void *>(pointer);
}

MGPU_API void mgpuMemFree(void *pointer, void *stream) {
  if (!pointer || !cuda::available())
    return;
  failed("cuMemFreeAsync",
         cuda::driver().cuMemFreeAsync(reinterpret_cast<CUdeviceptr>(pointer),
                                       streamOf(stream)));
}

MGPU_API void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream) {
  if (bytes == 0 || !cuda::available())
    return;
  const cuda::Driver &d = cuda::driver();
  // Unified addressing: the driver tells host from device pointers.
  if (failed("cuMemcpyAsync",
             d.cuMemcpyAsync(reinterpret_cast<CUdeviceptr>(dst),
                             reinterpret_cast<CUdeviceptr>(src), bytes,
                             streamOf(stream))))
    return;
  // No stream: the caller (a packed entry wrapper) expects the copy done.
  if (!stream)
    failed("cuStreamSynchronize", d.cuStreamSynchronize(cuda::stream()));
}

MGPU_API void mgpuMemset32(void *dst, unsigned value, size_t count,
                           void *stream) {
  if (count && cuda::available())
    failed("cuMemsetD32Async",
           cuda::driver().cuMemsetD32Async(reinterpret_cast<CUdeviceptr>(dst),
                                           value, count, streamOf(stream)));
}

MGPU_API void mgpuMemset16(void *dst, unsigned short value, size_t count,
                           void *stream) {
  if (count && cuda::available())
    failed("cuMemsetD16Async",
           cuda::driver().cuMemsetD16Async(reinterpret_cast<CUdeviceptr>(dst),
                                           value, count, streamOf(stream)));
}

MGPU_API void mgpuSetDefaultDevice(int32_t device) {
  if (device != 0)
    cuda::recordError("GPU: only device 0 is supported, the artifact asked "
                      "for device " +
                      std::to_string(device));
}
