// gradpack-perf's test data: inputs whose results are exact in every dtype, the expected result of
// every element computed locally, and the comparison. Unit-tested in tests/tools/.
#ifndef GRADPACK_TOOLS_PERF_DATA_H_
#define GRADPACK_TOOLS_PERF_DATA_H_

#include <cstdint>

#include "gradpack/gradpack.h"

namespace gradpack::tools {

// What rank `rank` puts at element `index` of its send buffer. Reductions get small positive
// integers (1..5; 1..2 for prod, so that products stay small), so that sums, products, minima and
// maxima are exact in half and bfloat16 for any realistic rank count; integer overflow wraps as the
// dtype does, and the expected values wrap the same way. Non-reducing collectives get 1..97,
// different per rank, so a block from the wrong rank is caught. 0 is never an input: buffers that
// should be overwritten are pre-filled with it.
int64_t InputValue(bool reduces, gp_redop_t op, int rank, uint64_t index);

// dst[i] = InputValue(reduces, op, rank, first_index + i) for i in [0, count), stored as dtype.
void FillInput(gp_dtype_t dtype, bool reduces, gp_redop_t op, int rank, uint64_t first_index,
               uint64_t count, void* dst);

// dst[i] = 0 for i in [0, count).
void FillSentinel(gp_dtype_t dtype, uint64_t count, void* dst);

// The reduction with `op` over ranks 0..nranks-1 of InputValue(true, op, r, index), rounded (or
// wrapped) to dtype; avg is the sum divided by nranks (integers truncate toward zero).
double ExpectedReduction(gp_dtype_t dtype, gp_redop_t op, int nranks, uint64_t index);

// Element i of buf as a double, and the other way round (rounded to nearest even for the floats,
// wrapped for the integers).
double LoadElement(gp_dtype_t dtype, const void* buf, uint64_t i);
void StoreElement(gp_dtype_t dtype, void* buf, uint64_t i, double value);

// Whether a received value is right. Exact except for avg of a floating dtype, where the library
// may divide in a different precision: there two units in the last place of dtype are allowed.
bool Matches(gp_dtype_t dtype, gp_redop_t op, bool reduces, double got, double expected);

// IEEE half and bfloat16 conversions (round to nearest even; NaN stays NaN).
uint16_t FloatToHalf(float value);
float HalfToFloat(uint16_t bits);
uint16_t FloatToBfloat16(float value);
float Bfloat16ToFloat(uint16_t bits);

}  // namespace gradpack::tools

#endif  // GRADPACK_TOOLS_PERF_DATA_H_
