// SPDX-License-Identifier: Apache-2.0
// Helpers the codec tests share: gradient-like data, and codec calls that fail the test on error.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "compression/codec.h"
#include "compression/cpu/kernels.h"

namespace gradpack::testing_util {

// Normal values with a per-region scale and a few 20x outliers, as real gradients have.
inline std::vector<float> gradient_like(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    const float region = 1.0f + 9.0f * static_cast<float>((i / 1000) % 3);
    v[i] = normal(rng) * region * 1e-3f * (normal(rng) > 2.0f ? 20.0f : 1.0f);
  }
  return v;
}

// A codec on the process's kernels, or on the given table.
inline std::unique_ptr<Codec> make(const std::string& spec,
                                   const cpu::CpuKernels* kernels = nullptr) {
  std::unique_ptr<Codec> codec;
  Status st = kernels ? Codec::create(spec, *kernels, &codec) : Codec::create(spec, &codec);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return codec;
}

inline std::vector<uint8_t> encode(Codec& codec, const void* in, size_t n, gp_dtype_t dtype,
                                   float* residual) {
  std::vector<uint8_t> frame(codec.max_encoded_bytes(n, dtype));
  size_t bytes = 0;
  Status st = codec.encode(in, n, dtype, residual, frame.data(), frame.size(), &bytes);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_LE(bytes, frame.size());
  frame.resize(bytes);
  return frame;
}

inline std::vector<float> decode_f32(const std::vector<uint8_t>& frame, size_t n) {
  std::vector<float> out(n, 0.0f);
  Status st = decode_frame(frame.data(), frame.size(), out.data(), n, GP_FLOAT32, false);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return out;
}

}  // namespace gradpack::testing_util
