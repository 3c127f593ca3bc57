// SPDX-License-Identifier: Apache-2.0
// gradpack-perf's test data: exact inputs, locally computed expected results, conversions.
#include "tools/perf_data.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

namespace gradpack::tools {
namespace {

constexpr gp_dtype_t kAllDtypes[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16, GP_FLOAT64,
                                     GP_INT32,   GP_INT64,   GP_INT8,     GP_UINT8};
constexpr gp_redop_t kAllOps[] = {GP_SUM, GP_PROD, GP_MIN, GP_MAX, GP_AVG};

// The bits store_element writes for v as a 16-bit dtype, and the value load_element reads back:
// half and bfloat16 go through common/float16.h (tested on its own in tests/unit/float16_test.cc);
// these pin the rounding that gradpack-perf's expected values rely on.
uint16_t stored_bits(gp_dtype_t dtype, float v) {
  unsigned char buf[2];
  store_element(dtype, buf, 0, v);
  uint16_t bits;
  std::memcpy(&bits, buf, sizeof(bits));
  return bits;
}

double loaded(gp_dtype_t dtype, uint16_t bits) { return load_element(dtype, &bits, 0); }

TEST(PerfData, HalfConversions) {
  EXPECT_EQ(stored_bits(GP_FLOAT16, 1.0f), 0x3c00);
  EXPECT_EQ(stored_bits(GP_FLOAT16, -2.0f), 0xc000);
  EXPECT_EQ(stored_bits(GP_FLOAT16, 65504.0f), 0x7bff);
  EXPECT_EQ(stored_bits(GP_FLOAT16, 65520.0f), 0x7c00);                          // ties up to inf
  EXPECT_EQ(stored_bits(GP_FLOAT16, 1.0f + std::ldexp(1.0f, -11)), 0x3c00);      // tie to even
  EXPECT_EQ(stored_bits(GP_FLOAT16, 1.0f + 3 * std::ldexp(1.0f, -11)), 0x3c02);  // tie to even
  EXPECT_EQ(stored_bits(GP_FLOAT16, std::ldexp(1.0f, -24)), 0x0001);  // smallest subnormal
  EXPECT_EQ(stored_bits(GP_FLOAT16, std::ldexp(1.0f, -25)), 0x0000);  // subnormal tie to even
  EXPECT_EQ(stored_bits(GP_FLOAT16, std::ldexp(1.0f, -26)), 0x0000);  // underflows to zero
  EXPECT_EQ(stored_bits(GP_FLOAT16, std::numeric_limits<float>::quiet_NaN()), 0x7e00);
  EXPECT_TRUE(std::isnan(loaded(GP_FLOAT16, 0x7e00)));
  EXPECT_EQ(loaded(GP_FLOAT16, 0x0001), std::ldexp(1.0, -24));
  EXPECT_EQ(loaded(GP_FLOAT16, 0x7c00), std::numeric_limits<double>::infinity());
  // Every finite half round-trips.
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00) continue;
    const auto bits = static_cast<uint16_t>(h);
    EXPECT_EQ(stored_bits(GP_FLOAT16, static_cast<float>(loaded(GP_FLOAT16, bits))), h) << h;
  }
}

TEST(PerfData, Bfloat16Conversions) {
  EXPECT_EQ(stored_bits(GP_BFLOAT16, 1.0f), 0x3f80);
  EXPECT_EQ(loaded(GP_BFLOAT16, 0x3f80), 1.0);
  EXPECT_EQ(stored_bits(GP_BFLOAT16, 1.0f + std::ldexp(1.0f, -8)), 0x3f80);        // tie to even
  EXPECT_EQ(stored_bits(GP_BFLOAT16, 1.0f + 3 * std::ldexp(1.0f, -8)), 0x3f82);    // tie to even
  EXPECT_EQ(stored_bits(GP_BFLOAT16, std::numeric_limits<float>::max()), 0x7f80);  // to inf
  EXPECT_TRUE(std::isnan(loaded(GP_BFLOAT16, stored_bits(GP_BFLOAT16, std::nanf("")))));
}

TEST(PerfData, StoreLoadRoundTripsEveryDtype) {
  for (gp_dtype_t dtype : kAllDtypes) {
    unsigned char buf[64];
    for (int v = 0; v <= 100; ++v) {
      store_element(dtype, buf, 3, v);
      EXPECT_EQ(load_element(dtype, buf, 3), v) << dtype;
    }
  }
  unsigned char buf[8];
  store_element(GP_INT8, buf, 0, 200);  // wraps like the dtype
  EXPECT_EQ(load_element(GP_INT8, buf, 0), -56);
  store_element(GP_UINT8, buf, 0, 300);
  EXPECT_EQ(load_element(GP_UINT8, buf, 0), 44);
}

TEST(PerfData, InputsAreSmallPositiveAndVaryByRank) {
  for (uint64_t i = 0; i < 100; ++i) {
    for (int r = 0; r < 8; ++r) {
      const int64_t sum = input_value(true, GP_SUM, r, i);
      EXPECT_GE(sum, 1);
      EXPECT_LE(sum, 5);
      const int64_t prod = input_value(true, GP_PROD, r, i);
      EXPECT_TRUE(prod == 1 || prod == 2);
      const int64_t copy = input_value(false, GP_SUM, r, i);
      EXPECT_GE(copy, 1);
      EXPECT_LE(copy, 97);
    }
    EXPECT_NE(input_value(false, GP_SUM, 0, i), input_value(false, GP_SUM, 1, i));
  }
}

// The oracle, against a direct reduction of filled buffers in double.
TEST(PerfData, ExpectedReductionMatchesDirectComputation) {
  for (int nranks : {1, 2, 3, 8}) {
    for (gp_redop_t op : kAllOps) {
      for (uint64_t i = 0; i < 30; ++i) {
        double sum = 0, prod = 1, lo = 1e9, hi = -1e9;
        for (int r = 0; r < nranks; ++r) {
          const double v = static_cast<double>(input_value(true, op, r, i));
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
        EXPECT_EQ(expected_reduction(GP_FLOAT64, op, nranks, i), want);
        EXPECT_EQ(expected_reduction(GP_INT32, op, nranks, i),
                  op == GP_AVG ? std::trunc(want) : want);
        // Exact in half and bfloat16 except for avg, which rounds once.
        if (op != GP_AVG) {
          EXPECT_EQ(expected_reduction(GP_FLOAT16, op, nranks, i), want);
          EXPECT_EQ(expected_reduction(GP_BFLOAT16, op, nranks, i), want);
        }
      }
    }
  }
}

TEST(PerfData, IntegerSumsWrapLikeTheDtype) {
  // 60 ranks of values 1..5 sum past int8's range.
  const double wrapped = expected_reduction(GP_INT8, GP_SUM, 60, 0);
  const double exact = expected_reduction(GP_INT64, GP_SUM, 60, 0);
  EXPECT_EQ(exact, 180);
  EXPECT_EQ(wrapped, static_cast<int8_t>(180));
}

TEST(PerfData, Matches) {
  EXPECT_TRUE(matches(GP_FLOAT32, GP_SUM, true, 3.0, 3.0));
  EXPECT_FALSE(matches(GP_FLOAT32, GP_SUM, true, 3.0000002, 3.0));
  EXPECT_FALSE(matches(GP_FLOAT32, GP_SUM, true, std::nan(""), 3.0));
  // avg of floats: within two units in the last place.
  EXPECT_TRUE(matches(GP_FLOAT16, GP_AVG, true, 3.3330078125, 3.3320312500));
  EXPECT_FALSE(matches(GP_FLOAT16, GP_AVG, true, 3.34, 3.3320312500));
  EXPECT_FALSE(matches(GP_INT32, GP_AVG, true, 4, 3));
  EXPECT_FALSE(matches(GP_FLOAT32, GP_AVG, false, 3.0000002, 3.0));
}

TEST(PerfData, FillAndSentinel) {
  std::vector<uint16_t> buf(10);
  fill_input(GP_FLOAT16, true, GP_SUM, 2, 5, buf.size(), buf.data());
  for (uint64_t i = 0; i < buf.size(); ++i) {
    EXPECT_EQ(load_element(GP_FLOAT16, buf.data(), i),
              static_cast<double>(input_value(true, GP_SUM, 2, 5 + i)));
  }
  fill_sentinel(GP_FLOAT16, buf.size(), buf.data());
  for (uint64_t i = 0; i < buf.size(); ++i) EXPECT_EQ(load_element(GP_FLOAT16, buf.data(), i), 0);
}

TEST(PerfData, CodecErrorModels) {
  auto q8 = parse_codec_error_model("q8");
  ASSERT_TRUE(q8.has_value());
  EXPECT_FALSE(q8->exact);
  EXPECT_FALSE(q8->topk);
  EXPECT_EQ(q8->bits, 8);
  EXPECT_DOUBLE_EQ(q8->eps, 1.0 / 254);  // docs/codecs.md: absmax / (2^b - 2)
  // The canonical form gp_comm_stats.last_codec reports.
  auto canonical = parse_codec_error_model("q8:block=256:round=nearest:seed=0");
  ASSERT_TRUE(canonical.has_value());
  EXPECT_DOUBLE_EQ(canonical->eps, 1.0 / 254);
  EXPECT_DOUBLE_EQ(parse_codec_error_model("q4")->eps, 1.0 / 14);
  EXPECT_DOUBLE_EQ(parse_codec_error_model("q2:block=8")->eps, 1.0 / 2);
  EXPECT_DOUBLE_EQ(parse_codec_error_model("q16")->eps, 1.0 / 65534);
  // Stochastic rounding: absmax / (2^(b-1) - 1).
  auto sr = parse_codec_error_model("q4:block=256:round=stochastic:seed=3");
  ASSERT_TRUE(sr.has_value());
  EXPECT_TRUE(sr->stochastic);
  EXPECT_DOUBLE_EQ(sr->eps, 1.0 / 7);
  EXPECT_DOUBLE_EQ(parse_codec_error_model("fp16")->eps, std::ldexp(1.0, -11));
  EXPECT_DOUBLE_EQ(parse_codec_error_model("bf16")->eps, std::ldexp(1.0, -8));
  auto none = parse_codec_error_model("none");
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->exact);

  auto topk = parse_codec_error_model("topk:0.01");
  ASSERT_TRUE(topk.has_value());
  EXPECT_TRUE(topk->topk);
  EXPECT_FALSE(topk->exact);
  EXPECT_EQ(topk->eps, 0);
  auto topk_q = parse_codec_error_model("topk:0.01+q8:block=256:round=nearest:seed=0");
  ASSERT_TRUE(topk_q.has_value());
  EXPECT_TRUE(topk_q->topk);
  EXPECT_DOUBLE_EQ(topk_q->eps, 1.0 / 254);

  for (const char* bad :
       {"auto", "auto:q8", "off", "", "q", "q1", "q17", "qx", "topk:", "topk:0.1+fp16", "fp8"}) {
    EXPECT_FALSE(parse_codec_error_model(bad).has_value()) << bad;
  }
}

TEST(PerfData, QuantBound) {
  const auto q8 = *parse_codec_error_model("q8");
  ErrorBoundInput in;
  in.dtype = GP_FLOAT32;
  in.op = GP_SUM;
  in.nranks = 4;
  in.sum_rank_absmax = 20;  // four ranks of absmax 5
  in.result_absmax = 20;
  in.element_abs_sum = 7;  // not used without top-k
  const double eps = 1.0 / 254;
  const double want = eps * (20 + 20 + eps * 20) + (4 + 2) * std::ldexp(1.0, -22) * (20 + 20);
  EXPECT_DOUBLE_EQ(compressed_error_bound(q8, in), want);
  // About 0.16: q8's step over 5 ranks' worth of absmax, far below one input's size.
  EXPECT_NEAR(compressed_error_bound(q8, in), 0.158, 0.001);
  // q4: eps = 1/14 in the same formula.
  EXPECT_DOUBLE_EQ(compressed_error_bound(*parse_codec_error_model("q4"), in),
                   (20 + 20 + 20.0 / 14) / 14 + 6 * std::ldexp(1.0, -22) * 40);
  // avg: the sum's bound over nranks, plus two units in the last place of the result.
  in.op = GP_AVG;
  EXPECT_DOUBLE_EQ(compressed_error_bound(q8, in), want / 4 + 2 * std::ldexp(1.0, -23) * 20 / 4);
  // half data: the result's two roundings to half on top.
  in.op = GP_SUM;
  in.dtype = GP_FLOAT16;
  EXPECT_DOUBLE_EQ(compressed_error_bound(q8, in), want + std::ldexp(1.0, -10) * (20 + want));
}

TEST(PerfData, TopkBoundAllowsADroppedElement) {
  const auto topk = *parse_codec_error_model("topk:0.01+q8");
  const auto q8 = *parse_codec_error_model("q8");
  ErrorBoundInput in;
  in.nranks = 2;
  in.sum_rank_absmax = 10;
  in.result_absmax = 10;
  in.element_abs_sum = 3;
  // The quantizer's bound plus the element's whole magnitude on every rank.
  EXPECT_DOUBLE_EQ(compressed_error_bound(topk, in), compressed_error_bound(q8, in) + 3);
  const auto fp32_values = *parse_codec_error_model("topk:0.5");
  EXPECT_DOUBLE_EQ(compressed_error_bound(fp32_values, in),
                   3 + (2 + 2) * std::ldexp(1.0, -22) * 20);
  // An element that was dropped everywhere (got 0, ref 3) is within it; 3.5 is not.
  EXPECT_LE(3.0, compressed_error_bound(topk, in));
  EXPECT_GT(3.5, compressed_error_bound(topk, in));
}

TEST(PerfData, ExactModelAllowsOnlyTheSummationsRounding) {
  const auto none = *parse_codec_error_model("none");
  ErrorBoundInput in;
  in.nranks = 1;
  in.sum_rank_absmax = 15;
  in.result_absmax = 15;
  in.element_abs_sum = 15;
  EXPECT_EQ(compressed_error_bound(none, in), 0);  // one rank: nothing is summed
  in.nranks = 3;
  const double summation = 2 * std::ldexp(1.0, -23) * 15;  // (n - 1) roundings in fp32
  EXPECT_DOUBLE_EQ(compressed_error_bound(none, in), summation);
  in.op = GP_AVG;  // plus avg's rounding allowance
  EXPECT_DOUBLE_EQ(compressed_error_bound(none, in),
                   summation / 3 + 2 * std::ldexp(1.0, -23) * 15 / 3);
}

// The bound holds for a simulated direct all-reduce: every rank's input quantized once (nearest,
// block absmax), summed in fp64, the sum quantized once more.
TEST(PerfData, QuantBoundHoldsForASimulatedDirectAllReduce) {
  auto quantize = [](std::vector<double> v, int bits) {
    const double levels = std::ldexp(1.0, bits - 1) - 1;
    double absmax = 0;
    for (double x : v) absmax = std::max(absmax, std::fabs(x));
    if (absmax == 0) return v;
    for (double& x : v) x = std::nearbyint(x * levels / absmax) * absmax / levels;
    return v;
  };
  for (int bits : {2, 4, 8}) {
    for (int nranks : {2, 3, 8}) {
      const uint64_t count = 300;
      std::vector<double> sum(count, 0), exact(count, 0);
      ErrorBoundInput in;
      in.nranks = nranks;
      for (int r = 0; r < nranks; ++r) {
        std::vector<double> x(count);
        double absmax = 0;
        for (uint64_t i = 0; i < count; ++i) {
          x[i] = static_cast<double>(input_value(true, GP_SUM, r, i));
          exact[i] += x[i];
          absmax = std::max(absmax, x[i]);
        }
        in.sum_rank_absmax += absmax;
        const auto decoded = quantize(x, bits);
        for (uint64_t i = 0; i < count; ++i) sum[i] += decoded[i];
      }
      for (double e : exact) in.result_absmax = std::max(in.result_absmax, std::fabs(e));
      const auto got = quantize(sum, bits);
      const auto model = *parse_codec_error_model("q" + std::to_string(bits));
      for (uint64_t i = 0; i < count; ++i) {
        EXPECT_LE(std::fabs(got[i] - exact[i]), compressed_error_bound(model, in))
            << "q" << bits << " nranks " << nranks << " element " << i;
      }
    }
  }
}

}  // namespace
}  // namespace gradpack::tools
