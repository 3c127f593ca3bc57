// SPDX-License-Identifier: Apache-2.0
// The NCCL executor's accumulator kernels (net_plugin/interposer/cuda/accum_kernels.h) against the
// host conversions they must match bit for bit. Label cuda: without a device each test skips and
// says why, unless GRADPACK_TEST_REQUIRE_CUDA=1 (tests/gpu/check.sh) makes that a failure.
#include "net_plugin/interposer/cuda/accum_kernels.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/float16.h"
#include "compression/cuda/codec_cuda.h"

namespace gradpack::coll {
namespace {

class AccumKernels : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!gradpack::cuda::device_available(&why)) {
      const char* require = std::getenv("GRADPACK_TEST_REQUIRE_CUDA");
      if (require != nullptr && std::string(require) == "1") {
        FAIL() << "no CUDA device: " << why << " (GRADPACK_TEST_REQUIRE_CUDA=1)";
      }
      GTEST_SKIP() << "no CUDA device: " << why;
    }
  }
};

std::vector<float> values(size_t n) {
  std::vector<float> v(n);
  uint32_t s = 7;
  for (float& x : v) {
    s = s * 1664525u + 1013904223u;
    x = (static_cast<float>(s >> 8) / 8388608.0f - 1.0f) * 300.0f;
  }
  return v;
}

template <typename T>
T* to_device(const std::vector<T>& host) {
  void* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, host.size() * sizeof(T) + 1), cudaSuccess);
  EXPECT_EQ(cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice),
            cudaSuccess);
  return static_cast<T*>(p);
}

template <typename T>
std::vector<T> to_host(const T* dev, size_t n) {
  std::vector<T> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

TEST_F(AccumKernels, WidenAddNarrowAndScaleMatchTheHost) {
  const size_t n = 100003;
  const std::vector<float> a = values(n);
  std::vector<uint16_t> half(n), bf(n);
  for (size_t i = 0; i < n; ++i) {
    half[i] = f32_to_f16(a[i]);
    bf[i] = f32_to_bf16(a[i]);
  }
  float* acc = to_device(std::vector<float>(n, 0.0f));
  uint16_t* dh = to_device(half);
  uint16_t* db = to_device(bf);
  float* df = to_device(a);
  // acc = fp16 + bf16 + fp32, in that order, each add rounded in fp32.
  ASSERT_TRUE(cuda::widen(dh, GP_FLOAT16, acc, n, false, nullptr).ok());
  ASSERT_TRUE(cuda::widen(db, GP_BFLOAT16, acc, n, true, nullptr).ok());
  ASSERT_TRUE(cuda::widen(df, GP_FLOAT32, acc, n, true, nullptr).ok());
  std::vector<float> want(n);
  for (size_t i = 0; i < n; ++i) {
    float s = f16_to_f32(half[i]);
    s = s + bf16_to_f32(bf[i]);
    want[i] = s + a[i];
  }
  const std::vector<float> got = to_host(acc, n);
  ASSERT_EQ(0, std::memcmp(got.data(), want.data(), n * sizeof(float)));
  // narrow to bf16 unscaled: one rounding.
  ASSERT_TRUE(cuda::narrow(acc, db, GP_BFLOAT16, n, 1.0f, nullptr).ok());
  const std::vector<uint16_t> out = to_host(db, n);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], f32_to_bf16(want[i])) << i;
  // narrow with the scale folded in: the product in fp32, one rounding per dtype.
  for (const float factor : {0.5f, 1.0f / 3.0f}) {
    ASSERT_TRUE(cuda::narrow(acc, dh, GP_FLOAT16, n, factor, nullptr).ok());
    ASSERT_TRUE(cuda::narrow(acc, db, GP_BFLOAT16, n, factor, nullptr).ok());
    ASSERT_TRUE(cuda::narrow(acc, df, GP_FLOAT32, n, factor, nullptr).ok());
    const std::vector<uint16_t> h16 = to_host(dh, n);
    const std::vector<uint16_t> b16 = to_host(db, n);
    const std::vector<float> f32 = to_host(df, n);
    for (size_t i = 0; i < n; ++i) {
      const float product = want[i] * factor;
      ASSERT_EQ(h16[i], f32_to_f16(product)) << "fp16 " << factor << " at " << i;
      ASSERT_EQ(b16[i], f32_to_bf16(product)) << "bf16 " << factor << " at " << i;
      ASSERT_EQ(0, std::memcmp(&f32[i], &product, 4)) << "fp32 " << factor << " at " << i;
    }
  }
  cudaFree(acc);
  cudaFree(dh);
  cudaFree(db);
  cudaFree(df);
}

TEST_F(AccumKernels, RefusesOtherTypes) {
  EXPECT_FALSE(cuda::widen(nullptr, GP_INT32, nullptr, 10, false, nullptr).ok());
  EXPECT_FALSE(cuda::narrow(nullptr, nullptr, GP_FLOAT64, 10, 1.0f, nullptr).ok());
  EXPECT_FALSE(cuda::narrow(nullptr, nullptr, GP_INT32, 10, 0.5f, nullptr).ok());
}

}  // namespace
}  // namespace gradpack::coll
