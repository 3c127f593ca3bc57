// SPDX-License-Identifier: Apache-2.0
// gradpack-perf's test data: inputs whose results are exact in every dtype, the expected result of
// every element computed locally, and the comparison. Unit-tested in tests/tools/.
#ifndef GRADPACK_TOOLS_PERF_DATA_H_
#define GRADPACK_TOOLS_PERF_DATA_H_

#include <cstdint>
#include <optional>
#include <string_view>

#include "gradpack/gradpack.h"

namespace gradpack::tools {

// What rank `rank` puts at element `index` of its send buffer. Reductions get small positive
// integers (1..5; 1..2 for prod, so that products stay small), so that sums, products, minima and
// maxima are exact in half and bfloat16 for any realistic rank count; integer overflow wraps as the
// dtype does, and the expected values wrap the same way. Non-reducing collectives get 1..97,
// different per rank, so a block from the wrong rank is caught. 0 is never an input: buffers that
// should be overwritten are pre-filled with it.
int64_t input_value(bool reduces, gp_redop_t op, int rank, uint64_t index);

// -z: gradient-like inputs, so that the codecs meet what they are made for (signed values of
// varied magnitude, different on every rank) and errors do not cancel by construction: a
// deterministic hash of (rank, index), uniform in [-0.5, 0.5) times 1 + index % 7.
double gradient_value(int rank, uint64_t index);
// v stored as dtype and read back.
double round_to(gp_dtype_t dtype, double v);
// dst[i] = gradient_value(rank, first_index + i), stored as dtype.
void fill_gradient(gp_dtype_t dtype, int rank, uint64_t first_index, uint64_t count, void* dst);

// dst[i] = input_value(reduces, op, rank, first_index + i) for i in [0, count), stored as dtype.
void fill_input(gp_dtype_t dtype, bool reduces, gp_redop_t op, int rank, uint64_t first_index,
                uint64_t count, void* dst);

// dst[i] = 0 for i in [0, count).
void fill_sentinel(gp_dtype_t dtype, uint64_t count, void* dst);

// The reduction with `op` over ranks 0..nranks-1 of input_value(true, op, r, index), rounded (or
// wrapped) to dtype; avg is the sum divided by nranks (integers truncate toward zero).
double expected_reduction(gp_dtype_t dtype, gp_redop_t op, int nranks, uint64_t index);

// Element i of buf as a double, and the other way round (rounded to nearest even for the floats,
// half and bfloat16 through the library's common/float16.h; wrapped for the integers).
double load_element(gp_dtype_t dtype, const void* buf, uint64_t i);
void store_element(gp_dtype_t dtype, void* buf, uint64_t i, double value);

// Whether a received value is right. Exact except for avg of a floating dtype, where the library
// may divide in a different precision: there two units in the last place of dtype are allowed.
bool matches(gp_dtype_t dtype, gp_redop_t op, bool reduces, double got, double expected);

// How far a compressed all-reduce may be from the exact sum: what gradpack-perf -z -c allows
// (docs/tools.md "The check with -z"), from the per-encode bounds of docs/codecs.md.
struct CodecErrorModel {
  bool exact = true;  // "none": only the summation's rounding in the dtype is allowed
  double eps = 0;     // one encode: |v - decoded| <= eps * absmax (q<b>, fp16, bf16)
  bool topk = false;  // an element may be dropped whole
  int bits = 0;       // q<b>'s b (0: not quantized)
  bool stochastic = false;
};

// The model of a codec spec as gp_comm_stats.last_codec gives it (canonical, "q8:block=256:..."),
// or as short as -z takes it ("q8", "topk:0.01+q4", "fp16", "none"). nullopt: not a codec spec
// (e.g. "auto", which names no codec).
//   q<b> nearest: eps = 1/(2^b - 2); stochastic: 1/(2^(b-1) - 1); fp16: 2^-11; bf16: 2^-8;
//   topk:<f>: eps 0 (fp32 values), topk:<f>+q<b>: q<b>'s eps; both drop elements.
std::optional<CodecErrorModel> parse_codec_error_model(std::string_view spec);

// What the bound of one element depends on. Every absmax may be taken over the whole buffer
// (conservative).
struct ErrorBoundInput {
  gp_dtype_t dtype = GP_FLOAT32;  // of the data (fp16/bf16 add their rounding of the result)
  gp_redop_t op = GP_SUM;         // GP_SUM or GP_AVG (avg: the sum's bound / nranks)
  int nranks = 1;
  double sum_rank_absmax = 0;  // sum over ranks r of max |x_r|
  double result_absmax = 0;    // max |sum over ranks of x_r| (the sum, also for avg)
  double element_abs_sum = 0;  // sum over ranks r of |x_r[i]| (used by top-k)
};

// The largest |got - ref| allowed for one element, ref the exact (fp64) result:
//   q = eps * (S + A'),  S = sum_rank_absmax,  A' = result_absmax + eps * S
//       (each rank's input is encoded once, the reduced value once more; A' bounds the absmax of
//       the reduced values, which already carry the first error)
//   + element_abs_sum for top-k (an element may be dropped whole, on any rank or after the sum)
//   + (nranks + 2) * 2^-22 * (S + result_absmax): fp32 arithmetic (sums, scales)
//   + 2 * u * (result_absmax + the above) for fp16/bf16 data, u = 2^-11 / 2^-8 (the decode and
//     the result are rounded to the dtype)
// For GP_AVG the whole is divided by nranks, plus two units in the last place of the dtype
// (matches()). Every model, the exact one ("none", or auto sending uncompressed) too, also allows
// the summation's own rounding in the dtype, (nranks - 1) * epsilon(dtype) * element_abs_sum: zero
// for one rank and for inputs whose partial sums are exact.
double compressed_error_bound(const CodecErrorModel& model, const ErrorBoundInput& in);

}  // namespace gradpack::tools

#endif  // GRADPACK_TOOLS_PERF_DATA_H_
