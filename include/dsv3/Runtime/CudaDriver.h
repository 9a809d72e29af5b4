//===- CudaDriver.h - The CUDA driver API, loaded at run time ---*- C++ -*-===//
//
// libdsv3rt never links libcuda: it dlopen's libcuda.so.1 when a model is
// opened with the cuda device, so one runtime binary runs on machines
// without a GPU and reports a missing driver as one error line.
//
// Besides the runtime's own device memory (weights, KV cache, inputs,
// logits), this is what the mgpu* functions (MgpuAbi.cpp) that compiled GPU
// artifacts call are built on. Those functions return no status, so a
// failure inside them is recorded here (the first one wins) and the Model
// checks for it after every entry-point call.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_RUNTIME_CUDADRIVER_H
#define DSV3_RUNTIME_CUDADRIVER_H

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>

namespace dsv3 {
namespace runtime {
namespace cuda {

/// Loads the driver, initialises it and makes device 0's primary context
/// current on the calling thread. "" or one error line (no libcuda.so.1, no
/// device, ...). Idempotent; later calls return the first outcome.
std::string initialize();

/// Whether initialize() has succeeded.
bool available();

/// The device's name and its peak memory bandwidth (bytes/s) from the
/// driver's clock and bus-width attributes; "" / 0 if unknown.
std::string deviceName();
double peakMemoryBandwidth();

/// The stream all compiled work and the runtime's copies run on.
void *stream();

/// Device memory. Each returns "" or an error line.
std::string allocate(void **pointer, size_t bytes, const std::string &what);
void release(void *pointer);
std::string upload(void *device, const void *host, size_t bytes);
std::string download(void *host, const void *device, size_t bytes);
std::string zero(void *device, size_t bytes);
std::string synchronize();

/// The first failure recorded by the mgpu* functions since the last call,
/// or ""; clears it.
std::string takeError();
void recordError(const std::string &message);
/// "<call>: <driver's error name>" for a failed driver call `result`.
std::string describe(const char *call, int result);

/// Per-kernel timing (off by default): each launch is timed with events on
/// the stream. Used by `dsv3-run --kernel-times-out` and the GPU check.
struct KernelTime {
  int64_t launches = 0;
  double seconds = 0;
};
void setKernelTiming(bool enabled);
bool kernelTiming();
/// Accumulated times by kernel name; reset() clears them.
const std::map<std::string, KernelTime> &kernelTimes();
void resetKernelTimes();

} // namespace cuda
} // namespace runtime
} // namespace dsv3

#endif // DSV3_RUNTIME_CUDADRIVER_H
