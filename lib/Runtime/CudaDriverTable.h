//===- CudaDriverTable.h - The driver entry points libdsv3rt uses -*- C++ -*-===//
//
// Private to lib/Runtime: CudaDriver.cpp fills the table when it loads
// libcuda.so.1; MgpuAbi.cpp calls through it. The driver's C types are
// reduced to what crosses the calls (opaque handles, integers), so no CUDA
// header is needed to build the runtime.
//
//===----------------------------------------------------------------------===//

#ifndef DSV3_LIB_RUNTIME_CUDADRIVERTABLE_H
#define DSV3_LIB_RUNTIME_CUDADRIVERTABLE_H

#include <cstddef>
#include <string>

namespace dsv3 {
namespace runtime {
namespace cuda {

using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using Handle = void *; // CUcontext, CUmodule, CUfunction, CUstream, CUevent

/// The driver entry points, resolved by name (the _v2 names are what
/// cuda.h's macros call).
struct Driver {
  CUresult (*cuInit)(unsigned);
  CUresult (*cuDeviceGetCount)(int *);
  CUresult (*cuDeviceGet)(CUdevice *, int);
  CUresult (*cuDeviceGetName)(char *, int, CUdevice);
  CUresult (*cuDeviceGetAttribute)(int *, int, CUdevice);
  CUresult (*cuDevicePrimaryCtxRetain)(Handle *, CUdevice);
  CUresult (*cuCtxSetCurrent)(Handle);
  CUresult (*cuGetErrorName)(CUresult, const char **);
  CUresult (*cuStreamCreate)(Handle *, unsigned);
  CUresult (*cuStreamSynchronize)(Handle);
  CUresult (*cuMemAlloc)(CUdeviceptr *, size_t);
  CUresult (*cuMemFree)(CUdeviceptr);
  CUresult (*cuMemcpyHtoD)(CUdeviceptr, const void *, size_t);
  CUresult (*cuMemcpyDtoH)(void *, CUdeviceptr, size_t);
  CUresult (*cuMemsetD8)(CUdeviceptr, unsigned char, size_t);
  CUresult (*cuEventCreate)(Handle *, unsigned);
  CUresult (*cuEventRecord)(Handle, Handle);
  CUresult (*cuEventSynchronize)(Handle);
  CUresult (*cuEventElapsedTime)(float *, Handle, Handle);
  CUresult (*cuModuleLoadData)(Handle *, const void *);
  CUresult (*cuModuleUnload)(Handle);
  CUresult (*cuModuleGetFunction)(Handle *, Handle, const char *);
  CUresult (*cuLaunchKernel)(Handle, unsigned, unsigned, unsigned, unsigned,
                             unsigned, unsigned, unsigned, Handle, void **,
                             void **);
  CUresult (*cuMemAllocAsync)(CUdeviceptr *, size_t, Handle);
  CUresult (*cuMemFreeAsync)(CUdeviceptr, Handle);
  CUresult (*cuMemAllocManaged)(CUdeviceptr *, size_t, unsigned);
  CUresult (*cuMemcpyAsync)(CUdeviceptr, CUdeviceptr, size_t, Handle);
  CUresult (*cuMemsetD32Async)(CUdeviceptr, unsigned, size_t, Handle);
  CUresult (*cuMemsetD16Async)(CUdeviceptr, unsigned short, size_t, Handle);
  CUresult (*cuStreamWaitEvent)(Handle, Handle, unsigned);
  CUresult (*cuEventDestroy)(Handle);
};

/// The loaded table; valid once initialize() has succeeded.
const Driver &driver();

/// Adds one timed launch of kernel `name` (kernel timing on).
void addKernelTime(const std::string &name, double seconds);

} // namespace cuda
} // namespace runtime
} // namespace dsv3

#endif // DSV3_LIB_RUNTIME_CUDADRIVERTABLE_H
