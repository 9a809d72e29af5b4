//===- CudaDriver.cpp - The CUDA driver API through dlopen ----------------===//
//
// Only the handful of driver entry points the runtime and the mgpu* ABI use,
// declared here with the driver's C types reduced to what crosses the call
// (opaque handles, integers): no CUDA header is needed to build the runtime.
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/CudaDriver.h"

#include "CudaDriverTable.h"

#include <dlfcn.h>
#include <mutex>

namespace dsv3 {
namespace runtime {
namespace cuda {

namespace {

constexpr int kAttributeMemoryClockRate = 36;      // kHz
constexpr int kAttributeGlobalMemoryBusWidth = 37; // bits

struct State {
  std::once_flag once;
  std::string initError = "the CUDA driver was not initialised";
  bool ready = false;
  void *library = nullptr;
  Driver driver{};
  Handle context = nullptr;
  Handle stream = nullptr;
  CUdevice device = 0;
  std::mutex errorMutex;
  std::string firstError;
  bool timing = false;
  std::map<std::string, KernelTime> times;
};

State &state() {
  static State s;
  return s;
}

template <typename Fn>
bool resolve(void *library, const char *name, Fn &fn) {
  fn = reinterpret_cast<Fn>(::dlsym(library, name));
  return fn != nullptr;
}

std::string load(State &s) {
  ::dlerror();
  s.library = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_GLOBAL);
  if (!s.library) {
    const char *message = ::dlerror();
    return std::string("no CUDA driver on this machine: cannot load "
                       "libcuda.so.1 (") +
           (message ? message : "not found") + ")";
  }
  Driver &d = s.driver;
  // The first entry point the driver lacks, if any.
  const char *missing = nullptr;
  auto need = [&](const char *name, auto &fn) {
    if (!resolve(s.library, name, fn) && !missing)
      missing = name;
  };
  need("cuInit", d.cuInit);
  need("cuDeviceGetCount", d.cuDeviceGetCount);
  need("cuDeviceGet", d.cuDeviceGet);
  need("cuDeviceGetName", d.cuDeviceGetName);
  need("cuDeviceGetAttribute", d.cuDeviceGetAttribute);
  need("cuDevicePrimaryCtxRetain", d.cuDevicePrimaryCtxRetain);
  need("cuCtxSetCurrent", d.cuCtxSetCurrent);
  need("cuGetErrorName", d.cuGetErrorName);
  need("cuStreamCreate", d.cuStreamCreate);
  need("cuStreamSynchronize", d.cuStreamSynchronize);
  need("cuMemAlloc_v2", d.cuMemAlloc);
  need("cuMemFree_v2", d.cuMemFree);
  need("cuMemcpyHtoD_v2", d.cuMemcpyHtoD);
  need("cuMemcpyDtoH_v2", d.cuMemcpyDtoH);
  need("cuMemsetD8_v2", d.cuMemsetD8);
  need("cuEventCreate", d.cuEventCreate);
  need("cuEventRecord", d.cuEventRecord);
  need("cuEventSynchronize", d.cuEventSynchronize);
  need("cuModuleLoadData", d.cuModuleLoadData);
  need("cuModuleUnload", d.cuModuleUnload);
  need("cuModuleGetFunction", d.cuModuleGetFunction);
  need("cuLaunchKernel", d.cuLaunchKernel);
  need("cuMemAllocAsync", d.cuMemAllocAsync);
  need("cuMemFreeAsync", d.cuMemFreeAsync);
  need("cuMemAllocManaged", d.cuMemAllocManaged);
  need("cuMemcpyAsync", d.cuMemcpyAsync);
  need("cuMemsetD32Async", d.cuMemsetD32Async);
  need("cuMemsetD16Async", d.cuMemsetD16Async);
  need("cuStreamWaitEvent", d.cuStreamWaitEvent);
  need("cuEventDestroy_v2", d.cuEventDestroy);
  // CUDA 12.8 added _v2; older drivers only have the first.
  if (!resolve(s.library, "cuEventElapsedTime_v2", d.cuEventElapsedTime))
    need("cuEventElapsedTime", d.cuEventElapsedTime);
  if (missing)
    return std::string("the CUDA driver (libcuda.so.1) lacks ") + missing +
           "; it is too old for this runtime";
  CUresult r = d.cuInit(0);
  if (r != 0)
    return describe("cuInit", r) +
           " (no usable NVIDIA GPU, or the driver is not loaded)";
  int count = 0;
  r = d.cuDeviceGetCount(&count);
  if (r != 0)
    return describe("cuDeviceGetCount", r);
  if (count == 0)
    return "the CUDA driver sees no GPU";
  if ((r = d.cuDeviceGet(&s.device, 0)) != 0)
    return describe("cuDeviceGet", r);
  if ((r = d.cuDevicePrimaryCtxRetain(&s.context, s.device)) != 0)
    return describe("cuDevicePrimaryCtxRetain", r);
  if ((r = d.cuCtxSetCurrent(s.context)) != 0)
    return describe("cuCtxSetCurrent", r);
  // Flags 0: the stream synchronises with the legacy default stream, so
  // the runtime's synchronous copies are ordered with the compiled work.
  if ((r = d.cuStreamCreate(&s.stream, 0)) != 0)
    return describe("cuStreamCreate", r);
  return "";
}

} // namespace

const Driver &driver() { return state().driver; }

std::string describe(const char *call, int result) {
  const char *name = nullptr;
  State &s = state();
  if (s.driver.cuGetErrorName)
    s.driver.cuGetErrorName(result, &name);
  return std::string(call) + " failed: " +
         (name ? name : "CUDA error " + std::to_string(result));
}

std::string initialize() {
  State &s = state();
  std::call_once(s.once, [&] {
    s.initError = load(s);
    s.ready = s.initError.empty();
  });
  // The context is per thread: make it current on every caller.
  if (s.ready)
    s.driver.cuCtxSetCurrent(s.context);
  return s.ready ? "" : s.initError;
}

bool available() { return state().ready; }

std::string deviceName() {
  State &s = state();
  if (!s.ready)
    return "";
  char name[256] = {0};
  if (s.driver.cuDeviceGetName(name, sizeof(name) - 1, s.device) != 0)
    return "";
  return name;
}

double peakMemoryBandwidth() {
  State &s = state();
  if (!s.ready)
    return 0;
  int clockKHz = 0, busBits = 0;
  if (s.driver.cuDeviceGetAttribute(&clockKHz, kAttributeMemoryClockRate,
                                    s.device) != 0 ||
      s.driver.cuDeviceGetAttribute(&busBits, kAttributeGlobalMemoryBusWidth,
                                    s.device) != 0)
    return 0;
  // Double data rate: two transfers per clock.
  return 2.0 * clockKHz * 1e3 * (busBits / 8.0);
}

void *stream() { return state().stream; }

std::string allocate(void **pointer, size_t bytes, const std::string &what) {
  *pointer = nullptr;
  if (bytes == 0)
    return "";
  CUdeviceptr p = 0;
  CUresult r = driver().cuMemAlloc(&p, bytes);
  if (r != 0)
    return "cannot allocate " + std::to_string(bytes) +
           " bytes of GPU memory for " + what + ": " +
           describe("cuMemAlloc", r);
  *pointer = reinterpret_cast<void *>(p);
  return "";
}

void release(void *pointer) {
  // initialize() makes the context current on this thread (a model may be
  // closed on another thread than the one that opened it).
  if (pointer && available() && initialize().empty())
    driver().cuMemFree(reinterpret_cast<CUdeviceptr>(pointer));
}

std::string upload(void *device, const void *host, size_t bytes) {
  if (bytes == 0)
    return "";
  CUresult r = driver().cuMemcpyHtoD(reinterpret_cast<CUdeviceptr>(device),
                                     host, bytes);
  return r ? describe("cuMemcpyHtoD", r) : "";
}

std::string download(void *host, const void *device, size_t bytes) {
  if (bytes == 0)
    return "";
  CUresult r = driver().cuMemcpyDtoH(
      host, reinterpret_cast<CUdeviceptr>(device), bytes);
  return r ? describe("cuMemcpyDtoH", r) : "";
}

std::string zero(void *device, size_t bytes) {
  if (bytes == 0)
    return "";
  CUresult r =
      driver().cuMemsetD8(reinterpret_cast<CUdeviceptr>(device), 0, bytes);
  return r ? describe("cuMemsetD8", r) : "";
}

std::string synchronize() {
  CUresult r = driver().cuStreamSynchronize(state().stream);
  return r ? describe("cuStreamSynchronize", r) : "";
}

std::string takeError() {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.errorMutex);
  std::string error;
  error.swap(s.firstError);
  return error;
}

void recordError(const std::string &message) {
  State &s = state();
  std::lock_guard<std::mutex> lock(s.errorMutex);
  if (s.firstError.empty())
    s.firstError = message;
}

void setKernelTiming(bool enabled) { state().timing = enabled; }
bool kernelTiming() { return state().timing; }
const std::map<std::string, KernelTime> &kernelTimes() { return state().times; }
void resetKernelTimes() { state().times.clear(); }

void addKernelTime(const std::string &name, double seconds) {
  KernelTime &t = state().times[name];
  ++t.launches;
  t.seconds += seconds;
}

} // namespace cuda
} // namespace runtime
} // namespace dsv3
