// SPDX-License-Identifier: Apache-2.0
// Quantized value sections, shared by "q<b>" frames and the quantized values of top-k frames.
// A section of n values is ceil(n / block) fp32 scales followed by ceil(n * bits / 8) code bytes.
#pragma once

#include <cstdint>
#include <vector>

#include "common/status.h"
#include "compression/cpu/kernels.h"
#include "compression/spec.h"
#include "gradpack/gradpack.h"

namespace gradpack {

cpu::QuantParams quant_params(const QuantSpec& q, uint32_t key);

// Encodes count values of in (fp32/fp16/bf16) with error feedback into residual (may be null) as
// one section at out. Returns the number of non-finite blocks.
uint64_t quant_encode_values(const cpu::CpuKernels& k, const void* in, gp_dtype_t dtype,
                             size_t count, float* residual, const cpu::QuantParams& p,
                             std::vector<float>& scratch, uint8_t* out);

// Validates a section whose size the header already proved: scales are 0, positive finite or NaN;
// the code padding is zero.
Status quant_check_values(const uint8_t* section, uint64_t n, int bits, uint32_t block);

// Decodes a validated section of n values into out as dtype.
void quant_decode_values(const cpu::CpuKernels& k, const uint8_t* section, uint64_t n,
                         const cpu::QuantParams& p, void* out, gp_dtype_t dtype, bool accumulate,
                         std::vector<float>& scratch);

}  // namespace gradpack
