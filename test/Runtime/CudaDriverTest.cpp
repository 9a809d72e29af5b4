//===- CudaDriverTest.cpp - The CUDA layer on a machine without a driver --===//
//
// What can be checked without a GPU: initialisation fails with one clear
// message, and the mgpu* functions a GPU artifact calls neither crash nor
// pretend to succeed: they return null and record the failure, which the
// Model reports after the call (and which is cleared once taken).
//
//===----------------------------------------------------------------------===//

#include "dsv3/Runtime/CudaDriver.h"
#include "dsv3/Runtime/dsv3rt.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <dlfcn.h>

extern "C" {
void *mgpuModuleLoad(void *data, size_t size);
void *mgpuModuleGetFunction(void *module, const char *name);
void mgpuLaunchKernel(void *function, intptr_t gx, intptr_t gy, intptr_t gz,
                      intptr_t bx, intptr_t by, intptr_t bz, int32_t smem,
                      void *stream, void **params, void **extra,
                      size_t paramsCount);
void *mgpuMemAlloc(uint64_t bytes, void *stream, bool isHostShared);
void mgpuMemFree(void *pointer, void *stream);
void mgpuMemcpy(void *dst, void *src, size_t bytes, void *stream);
}

using namespace dsv3::runtime;
using ::testing::HasSubstr;
using ::testing::StartsWith;

namespace {

bool driverPresent() {
  void *handle = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (handle)
    ::dlclose(handle);
  return handle != nullptr;
}

class CudaWithoutDriverTest : public ::testing::Test {
protected:
  void SetUp() override {
    if (driverPresent())
      GTEST_SKIP() << "a CUDA driver is installed: these tests check the "
                      "behaviour without one";
    cuda::takeError();
  }
};

TEST_F(CudaWithoutDriverTest, InitializeSaysWhatIsMissing) {
  std::string error = cuda::initialize();
  EXPECT_THAT(error, StartsWith("no CUDA driver on this machine: cannot load "
                                "libcuda.so.1"));
  EXPECT_FALSE(cuda::available());
  // The same answer every time, and through the C API.
  EXPECT_EQ(cuda::initialize(), error);
  char err[512];
  EXPECT_EQ(dsv3rt_cuda_init(err, sizeof(err)), -1);
  EXPECT_EQ(std::string(err), error);
  EXPECT_EQ(cuda::deviceName(), "");
  EXPECT_EQ(dsv3rt_cuda_peak_bandwidth(), 0.0);
}

TEST_F(CudaWithoutDriverTest, MgpuFunctionsRecordFailuresInsteadOfCrashing) {
  // The constructor of a GPU artifact loads its cubins: without a driver
  // the module is null and the reason is recorded.
  char cubin[16] = {0};
  void *module = mgpuModuleLoad(cubin, sizeof(cubin));
  EXPECT_EQ(module, nullptr);
  EXPECT_THAT(cuda::takeError(), StartsWith("no CUDA driver on this machine"));
  EXPECT_EQ(cuda::takeError(), ""); // taken: cleared

  EXPECT_EQ(mgpuModuleGetFunction(module, "mla_0"), nullptr);
  EXPECT_EQ(cuda::takeError(),
            "GPU: kernel 'mla_0' is missing: its module did not load");

  mgpuLaunchKernel(nullptr, 1, 1, 1, 32, 1, 1, 0, nullptr, nullptr, nullptr,
                   0);
  EXPECT_EQ(cuda::takeError(), "GPU: launch of a kernel that did not load");

  // Memory functions: null results, no crash, the first failure kept.
  EXPECT_EQ(mgpuMemAlloc(1024, nullptr, false), nullptr);
  mgpuMemFree(nullptr, nullptr);
  mgpuMemcpy(nullptr, nullptr, 16, nullptr);
  EXPECT_THAT(cuda::takeError(), HasSubstr("no CUDA driver"));
}

TEST(KernelTimesTest, EmptyUntilSomethingRuns) {
  cuda::resetKernelTimes();
  char out[64];
  EXPECT_EQ(dsv3rt_kernel_times_json(out, sizeof(out)), 2);
  EXPECT_STREQ(out, "{}");
  dsv3rt_set_kernel_timing(1);
  EXPECT_TRUE(cuda::kernelTiming());
  dsv3rt_set_kernel_timing(0);
  EXPECT_FALSE(cuda::kernelTiming());
}

} // namespace
