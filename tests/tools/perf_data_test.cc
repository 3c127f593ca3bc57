// gradpack-perf's test data: exact inputs, locally computed expected results, conversions.
#include "tools/perf_data.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace gradpack::tools {
namespace {

constexpr gp_dtype_t kAllDtypes[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16, GP_FLOAT64,
                                     GP_INT32,   GP_INT64,   GP_INT8,     GP_UINT8};
constexpr gp_redop_t kAllOps[] = {GP_SUM, GP_PROD, GP_MIN, GP_MAX, GP_AVG};

TEST(PerfData, HalfConversions) {
  EXPECT_EQ(FloatToHalf(1.0f), 0x3c00);
  EXPECT_EQ(FloatToHalf(-2.0f), 0xc000);
  EXPECT_EQ(FloatToHalf(65504.0f), 0x7bff);
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);                          // ties up to infinity
  EXPECT_EQ(FloatToHalf(1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie to even (down)
  EXPECT_EQ(FloatToHalf(1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even (up)
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -24)), 0x0001);             // smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0f, -26)), 0x0000);             // underflows to zero
  EXPECT_TRUE(std::isnan(HalfToFloat(FloatToHalf(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
  EXPECT_EQ(HalfToFloat(0x7c00), std::numeric_limits<float>::infinity());
  // Every finite half round-trips.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    EXPECT_EQ(FloatToHalf(HalfToFloat(static_cast<uint16_t>(h))), h) << h;
  }
}

TEST(PerfData, Bfloat16Conversions) {
  EXPECT_EQ(FloatToBfloat16(1.0f), 0x3f80);
  EXPECT_EQ(Bfloat16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(FloatToBfloat16(1.0f + std::ldexp(1.0f, -8)), 0x3f80);      // tie to even (down)
  EXPECT_EQ(FloatToBfloat16(1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);  // tie to even (up)
  EXPECT_TRUE(std::isnan(Bfloat16ToFloat(FloatToBfloat16(std::nanf("")))));
}

TEST(PerfData, StoreLoadRoundTripsEveryDtype) {
  for (gp_dtype_t dtype : kAllDtypes) {
    unsigned char buf[64];
    for (int v = 0; v <= 100; ++v) {
      StoreElement(dtype, buf, 3, v);
      EXPECT_EQ(LoadElement(dtype, buf, 3), v) << dtype;
    }
  }
  unsigned char buf[8];
  StoreElement(GP_INT8, buf, 0, 200);  // wraps like the dtype
  EXPECT_EQ(LoadElement(GP_INT8, buf, 0), -56);
  StoreElement(GP_UINT8, buf, 0, 300);
  EXPECT_EQ(LoadElement(GP_UINT8, buf, 0), 44);
}

TEST(PerfData, InputsAreSmallPositiveAndVaryByRank) {
  for (uint64_t i = 0; i < 100; ++i) {
    for (int r = 0; r < 8; ++r) {
      const int64_t sum = InputValue(true, GP_SUM, r, i);
      EXPECT_GE(sum, 1);
      EXPECT_LE(sum, 5);
      const int64_t prod = InputValue(true, GP_PROD, r, i);
      EXPECT_TRUE(prod == 1 || prod == 2);
      const int64_t copy = InputValue(false, GP_SUM, r, i);
      EXPECT_GE(copy, 1);
      EXPECT_LE(copy, 97);
    }
    EXPECT_NE(InputValue(false, GP_SUM, 0, i), InputValue(false, GP_SUM, 1, i));
  }
}

// The oracle, against a direct reduction of filled buffers in double.
TEST(PerfData, ExpectedReductionMatchesDirectComputation) {
  for (int nranks : {1, 2, 3, 8}) {
    for (gp_redop_t op : kAllOps) {
      for (uint64_t i = 0; i < 30; ++i) {
        double sum = 0, prod = 1, lo = 1e9, hi = -1e9;
        for (int r = 0; r < nranks; ++r) {
          const double v = static_cast<double>(InputValue(true, op, r, i));
          sum += v;
          prod *= v;
          lo = std::min(lo, v);
          hi = std::max(hi, v);
        }
        double want = 0;
        switch (op) {
          case GP_SUM:
            want = sum;
            break;
          case GP_PROD:
            want = prod;
            break;
          case GP_MIN:
            want = lo;
            break;
          case GP_MAX:
            want = hi;
            break;
          case GP_AVG:
            want = sum / nranks;
            break;
        }
        EXPECT_EQ(ExpectedReduction(GP_FLOAT64, op, nranks, i), want);
        EXPECT_EQ(ExpectedReduction(GP_INT32, op, nranks, i),
                  op == GP_AVG ? std::trunc(want) : want);
        // Exact in half and bfloat16 except for avg, which rounds once.
        if (op != GP_AVG) {
          EXPECT_EQ(ExpectedReduction(GP_FLOAT16, op, nranks, i), want);
          EXPECT_EQ(ExpectedReduction(GP_BFLOAT16, op, nranks, i), want);
        }
      }
    }
  }
}

TEST(PerfData, IntegerSumsWrapLikeTheDtype) {
  // 60 ranks of values 1..5 sum past int8's range.
  const double wrapped = ExpectedReduction(GP_INT8, GP_SUM, 60, 0);
  const double exact = ExpectedReduction(GP_INT64, GP_SUM, 60, 0);
  EXPECT_EQ(exact, 180);
  EXPECT_EQ(wrapped, static_cast<int8_t>(180));
}

TEST(PerfData, Matches) {
  EXPECT_TRUE(Matches(GP_FLOAT32, GP_SUM, true, 3.0, 3.0));
  EXPECT_FALSE(Matches(GP_FLOAT32, GP_SUM, true, 3.0000002, 3.0));
  EXPECT_FALSE(Matches(GP_FLOAT32, GP_SUM, true, std::nan(""), 3.0));
  // avg of floats: within two units in the last place.
  EXPECT_TRUE(Matches(GP_FLOAT16, GP_AVG, true, 3.3330078125, 3.3320312500));
  EXPECT_FALSE(Matches(GP_FLOAT16, GP_AVG, true, 3.34, 3.3320312500));
  EXPECT_FALSE(Matches(GP_INT32, GP_AVG, true, 4, 3));
  EXPECT_FALSE(Matches(GP_FLOAT32, GP_AVG, false, 3.0000002, 3.0));
}

TEST(PerfData, FillAndSentinel) {
  std::vector<uint16_t> buf(10);
  FillInput(GP_FLOAT16, true, GP_SUM, 2, 5, buf.size(), buf.data());
  for (uint64_t i = 0; i < buf.size(); ++i) {
    EXPECT_EQ(LoadElement(GP_FLOAT16, buf.data(), i),
              static_cast<double>(InputValue(true, GP_SUM, 2, 5 + i)));
  }
  FillSentinel(GP_FLOAT16, buf.size(), buf.data());
  for (uint64_t i = 0; i < buf.size(); ++i) EXPECT_EQ(LoadElement(GP_FLOAT16, buf.data(), i), 0);
}

}  // namespace
}  // namespace gradpack::tools
