// SPDX-License-Identifier: Apache-2.0
// Codec behaviour through the C++ API: round trips and error bounds, exact error feedback,
// non-finite inputs, argument errors. Runs every spec over fp32, fp16 and bf16 inputs.
#include "compression/codec.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "common/float16.h"
#include "compression/quantize/quant_ref.h"
#include "tests/compression/codec_test_util.h"

namespace gradpack {
namespace {

using testing_util::decode_f32;
using testing_util::encode;
using testing_util::gradient_like;
using testing_util::make;

// The inputs as the encoder sees them: fp32, or rounded to the 16-bit dtype.
struct Input {
  gp_dtype_t dtype;
  std::vector<uint16_t> half;
  std::vector<float> values;  // fp32 value of every element
  const void* data() const {
    return dtype == GP_FLOAT32 ? static_cast<const void*>(values.data())
                               : static_cast<const void*>(half.data());
  }
};

Input make_input(const std::vector<float>& x, gp_dtype_t dtype) {
  Input in{dtype, {}, x};
  if (dtype != GP_FLOAT32) {
    in.half.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      in.half[i] = dtype == GP_FLOAT16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
      in.values[i] = dtype == GP_FLOAT16 ? f16_to_f32(in.half[i]) : bf16_to_f32(in.half[i]);
    }
  }
  return in;
}

struct Case {
  std::string spec;
  gp_dtype_t dtype;
};

std::string case_name(const testing::TestParamInfo<Case>& info) {
  std::string s = info.param.spec + "_" +
                  (info.param.dtype == GP_FLOAT32   ? "f32"
                   : info.param.dtype == GP_FLOAT16 ? "f16"
                                                    : "bf16");
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}

class CodecCase : public testing::TestWithParam<Case> {};

std::vector<Case> all_cases() {
  std::vector<std::string> specs = {"none",
                                    "fp16",
                                    "bf16",
                                    "q8:round=stochastic:seed=3",
                                    "q4:block=64",
                                    "q3:block=8",
                                    "topk:0.05",
                                    "topk:0.01+q8",
                                    "topk:0.2+q5:block=16:round=stochastic"};
  for (int b = 2; b <= 16; ++b) specs.push_back("q" + std::to_string(b));
  std::vector<Case> cases;
  for (const auto& s : specs)
    for (gp_dtype_t d : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) cases.push_back({s, d});
  return cases;
}

// Error feedback, exactly: after each step the residual is v - decode(frame) to the bit, where v
// is the encoder's input plus the previous residual; over many steps the decoded sum plus the
// residual equals the sum of inputs up to float rounding.
TEST_P(CodecCase, ErrorFeedbackIsExact) {
  const Case& c = GetParam();
  auto codec = make(c.spec);
  const size_t n = 5000 + 37;  // not a multiple of any block
  std::vector<float> residual(n, 0.0f), decoded_sum(n, 0.0f);
  std::vector<double> input_sum(n, 0.0);
  for (int step = 0; step < 12; ++step) {
    Input in = make_input(gradient_like(n, 100 + step), c.dtype);
    std::vector<float> v(n);
    for (size_t i = 0; i < n; ++i) v[i] = in.values[i] + residual[i];
    auto frame = encode(*codec, in.data(), n, c.dtype, residual.data());
    auto d = decode_f32(frame, n);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(float_bits(residual[i]), float_bits(v[i] - d[i]))
          << "step " << step << " element " << i;
      decoded_sum[i] += d[i];
      input_sum[i] += in.values[i];
    }
  }
  double worst = 0, scale = 0;
  for (size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::abs(decoded_sum[i] + residual[i] - input_sum[i]));
    scale = std::max(scale, std::abs(input_sum[i]));
  }
  EXPECT_LE(worst, 1e-5 * scale) << "decoded sum + residual drifted from the input sum";
}

// The decode accumulate mode adds into the output, summing in fp32 and rounding once.
TEST_P(CodecCase, DecodeAccumulateAddsToOutput) {
  const Case& c = GetParam();
  auto codec = make(c.spec);
  const size_t n = 3001;
  Input in = make_input(gradient_like(n, 7), c.dtype);
  auto frame = encode(*codec, in.data(), n, c.dtype, nullptr);
  auto d = decode_f32(frame, n);
  std::vector<float> base = gradient_like(n, 8), out = base;
  ASSERT_TRUE(decode_frame(frame.data(), frame.size(), out.data(), n, GP_FLOAT32, true).ok());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(float_bits(out[i]), float_bits(base[i] + d[i])) << i;
  // Into a 16-bit output: (float(out) + d) rounded once.
  std::vector<uint16_t> out16(n);
  for (size_t i = 0; i < n; ++i) out16[i] = f32_to_bf16(base[i]);
  std::vector<uint16_t> before = out16;
  ASSERT_TRUE(decode_frame(frame.data(), frame.size(), out16.data(), n, GP_BFLOAT16, true).ok());
  for (size_t i = 0; i < n; ++i)
    ASSERT_EQ(out16[i], f32_to_bf16(bf16_to_f32(before[i]) + d[i])) << i;
}

// Error bounds as docs/codecs.md states them.
TEST_P(CodecCase, ErrorWithinDocumentedBound) {
  const Case& c = GetParam();
  auto codec = make(c.spec);
  const CodecSpec& spec = codec->spec();
  const size_t n = 4099;
  Input in = make_input(gradient_like(n, 11), c.dtype);
  auto d = decode_f32(encode(*codec, in.data(), n, c.dtype, nullptr), n);
  if (spec.kind == CodecKind::kNone) {
    for (size_t i = 0; i < n; ++i) ASSERT_EQ(d[i], in.values[i]);
  } else if (spec.kind == CodecKind::kFp16 || spec.kind == CodecKind::kBf16) {
    double rel = spec.kind == CodecKind::kFp16 ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    for (size_t i = 0; i < n; ++i)
      ASSERT_LE(std::abs(d[i] - in.values[i]), rel * std::abs(in.values[i]) + 1e-7) << i;
  } else if (spec.kind == CodecKind::kQuant) {
    const size_t block = spec.quant.block;
    const double l = quant::levels(spec.quant.bits);
    const bool stochastic = spec.quant.rounding == Rounding::kStochastic;
    for (size_t b0 = 0; b0 < n; b0 += block) {
      double absmax = 0;
      for (size_t i = b0; i < std::min(n, b0 + block); ++i)
        absmax = std::max(absmax, std::abs(static_cast<double>(in.values[i])));
      // The grid step's half (nearest) or whole (stochastic), plus fp32 rounding of the arithmetic.
      double bound = absmax / l * (stochastic ? 1.0 : 0.5) + absmax * std::ldexp(1.0, -22) + 1e-30;
      for (size_t i = b0; i < std::min(n, b0 + block); ++i)
        ASSERT_LE(std::abs(d[i] - in.values[i]), bound) << "element " << i;
    }
  } else {  // top-k: kept elements are exact (fp32) or within the quantizer's bound; others 0
    size_t kept = 0;
    for (size_t i = 0; i < n; ++i) kept += d[i] != 0.0f;
    size_t k = static_cast<size_t>(std::llround(spec.fraction * n));
    EXPECT_LE(kept, k);
    if (spec.quant.bits == 0) {
      EXPECT_EQ(kept, k);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllSpecs, CodecCase, testing::ValuesIn(all_cases()), case_name);

TEST(Codec, QuantizedNaNAndInfPoisonTheirBlockNotTheResidual) {
  auto codec = make("q8:block=64");
  const size_t n = 256;
  std::vector<float> x = gradient_like(n, 5), residual(n, 0.25f);
  x[70] = std::numeric_limits<float>::quiet_NaN();
  x[200] = -std::numeric_limits<float>::infinity();
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, residual.data());
  auto d = decode_f32(frame, n);
  for (size_t i = 0; i < n; ++i) {
    bool bad_block = (i / 64) == 1 || (i / 64) == 3;
    if (bad_block) {
      EXPECT_TRUE(std::isnan(d[i])) << i;
      EXPECT_EQ(residual[i], 0.25f) << "residual of a non-finite block changed at " << i;
    } else {
      EXPECT_TRUE(std::isfinite(d[i])) << i;
      EXPECT_TRUE(std::isfinite(residual[i])) << i;
    }
  }
  EXPECT_EQ(codec->stats().nonfinite_blocks, 2u);
  // The next step encodes normally: the residual was never poisoned.
  std::vector<float> y = gradient_like(n, 6);
  auto d2 = decode_f32(encode(*codec, y.data(), n, GP_FLOAT32, residual.data()), n);
  for (size_t i = 0; i < n; ++i) EXPECT_TRUE(std::isfinite(d2[i])) << i;
}

TEST(Codec, ElementwiseNaNIsSentAndResidualKept) {
  for (const char* spec : {"none", "fp16", "bf16", "topk:0.5"}) {
    auto codec = make(spec);
    std::vector<float> x = {1.0f, std::numeric_limits<float>::quiet_NaN(), 3.0f,
                            std::numeric_limits<float>::infinity()};
    std::vector<float> residual = {0.5f, 0.5f, 0.5f, 0.5f};
    auto d = decode_f32(encode(*codec, x.data(), 4, GP_FLOAT32, residual.data()), 4);
    EXPECT_TRUE(std::isnan(d[1])) << spec;
    EXPECT_TRUE(std::isinf(d[3]) || std::isnan(d[3])) << spec;
    EXPECT_EQ(residual[1], 0.5f) << spec;
    EXPECT_EQ(residual[3], 0.5f) << spec;
    EXPECT_TRUE(std::isfinite(residual[0]) && std::isfinite(residual[2])) << spec;
  }
}

TEST(Codec, Fp16SaturatesAndFeedsTheExcessBack) {
  auto codec = make("fp16");
  std::vector<float> x = {1e6f}, residual = {0.0f};
  auto d = decode_f32(encode(*codec, x.data(), 1, GP_FLOAT32, residual.data()), 1);
  EXPECT_EQ(d[0], 65504.0f);
  EXPECT_EQ(residual[0], 1e6f - 65504.0f);
}

TEST(Codec, StochasticRoundingIsSeededAndUnbiased) {
  const size_t n = 512;
  std::vector<float> x = gradient_like(n, 9);
  auto a = make("q2:round=stochastic:seed=5");
  auto b = make("q2:round=stochastic:seed=5");
  auto c = make("q2:round=stochastic:seed=6");
  auto fa = encode(*a, x.data(), n, GP_FLOAT32, nullptr);
  EXPECT_EQ(fa, encode(*b, x.data(), n, GP_FLOAT32, nullptr));  // same seed, same bits
  EXPECT_NE(fa, encode(*c, x.data(), n, GP_FLOAT32, nullptr));  // other seed
  EXPECT_NE(fa, encode(*a, x.data(), n, GP_FLOAT32, nullptr));  // next call, next stream
  // Unbiased: the mean of many decodes approaches x.
  std::vector<double> mean(n, 0.0);
  const int trials = 2000;
  for (int t = 0; t < trials; ++t) {
    auto d = decode_f32(encode(*a, x.data(), n, GP_FLOAT32, nullptr), n);
    for (size_t i = 0; i < n; ++i) mean[i] += d[i] / trials;
  }
  double err = 0, mag = 0;
  for (size_t i = 0; i < n; ++i) {
    err += std::abs(mean[i] - x[i]);
    mag += std::abs(x[i]);
  }
  EXPECT_LT(err / mag, 0.1);
}

TEST(Codec, ZeroCountAndZeroBlocks) {
  for (const char* spec : {"none", "fp16", "q8", "topk:0.1", "topk:0.1+q4"}) {
    auto codec = make(spec);
    float dummy = 0;
    auto frame = encode(*codec, &dummy, 0, GP_FLOAT32, nullptr);
    EXPECT_EQ(frame.size(), 56u) << spec;
    EXPECT_TRUE(decode_frame(frame.data(), frame.size(), &dummy, 0, GP_FLOAT32, false).ok());
  }
  auto codec = make("q8");
  std::vector<float> zeros(300, 0.0f), tiny(300, 1e-35f), residual(300, 0.0f);
  auto d = decode_f32(encode(*codec, zeros.data(), 300, GP_FLOAT32, nullptr), 300);
  for (float v : d) EXPECT_EQ(v, 0.0f);
  // Values far below any useful gradient (< 2^-100) are not sent but stay in the residual.
  d = decode_f32(encode(*codec, tiny.data(), 300, GP_FLOAT32, residual.data()), 300);
  for (size_t i = 0; i < 300; ++i) {
    EXPECT_EQ(d[i], 0.0f);
    EXPECT_EQ(residual[i], 1e-35f);
  }
}

TEST(Codec, ArgumentErrorsWriteNothing) {
  auto codec = make("q8");
  std::vector<float> x = gradient_like(1000, 1), residual(1000, 0.5f);
  std::vector<uint8_t> out(codec->max_encoded_bytes(1000, GP_FLOAT32) - 1, 0xAB);
  size_t bytes = 12345;
  Status st =
      codec->encode(x.data(), 1000, GP_FLOAT32, residual.data(), out.data(), out.size(), &bytes);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("too small"), std::string::npos);
  for (uint8_t b : out) ASSERT_EQ(b, 0xAB);
  for (float r : residual) ASSERT_EQ(r, 0.5f);
  EXPECT_EQ(bytes, 12345u);
  // Unsupported dtypes for a lossy codec; none takes them.
  std::vector<int32_t> ints(10, 3);
  out.resize(4096);
  EXPECT_EQ(
      codec->encode(ints.data(), 10, GP_INT32, nullptr, out.data(), out.size(), &bytes).code(),
      Code::kUnsupported);
  auto none = make("none");
  ASSERT_TRUE(
      none->encode(ints.data(), 10, GP_INT32, nullptr, out.data(), out.size(), &bytes).ok());
  std::vector<int32_t> back(10, 1);
  ASSERT_TRUE(decode_frame(out.data(), bytes, back.data(), 10, GP_INT32, true).ok());
  for (int32_t v : back) EXPECT_EQ(v, 4);
  EXPECT_EQ(decode_frame(out.data(), bytes, back.data(), 10, GP_FLOAT32, false).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(none->encode(ints.data(), 10, GP_INT32, residual.data(), out.data(), out.size(), &bytes)
                .code(),
            Code::kInvalidArgument);
}

TEST(Codec, CountMismatchIsAnError) {
  auto codec = make("q8");
  std::vector<float> x = gradient_like(100, 1), out(101, 7.0f);
  auto frame = encode(*codec, x.data(), 100, GP_FLOAT32, nullptr);
  Status st = decode_frame(frame.data(), frame.size(), out.data(), 101, GP_FLOAT32, false);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("100"), std::string::npos);
  for (float v : out) EXPECT_EQ(v, 7.0f);
}

// Wire ratios of the design brief (input bytes / all frame bytes), at 1 Mi fp32 elements.
TEST(Codec, WireRatiosMeetTheBrief) {
  const size_t n = 1 << 20;
  std::vector<float> x = gradient_like(n, 3);
  struct Want {
    const char* spec;
    double ratio;
  };
  for (Want w : {Want{"q8", 3.9}, Want{"q4", 7.5}, Want{"topk:0.01+q8", 50.0}}) {
    auto codec = make(w.spec);
    auto frame = encode(*codec, x.data(), n, GP_FLOAT32, nullptr);
    EXPECT_GE(4.0 * n / frame.size(), w.ratio) << w.spec;
  }
}

}  // namespace
}  // namespace gradpack

namespace gradpack {
namespace {

// encode(..., call_index) writes the frame (and residual) of the call_index-th plain encode of a
// fresh codec, whatever calls came before it.
TEST(Codec, EncodeAtCallIndexMatchesNthPlainEncode) {
  std::vector<float> x(1000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = std::sin(0.37f * static_cast<float>(i)) * 3.0f;
  std::unique_ptr<Codec> plain;
  std::unique_ptr<Codec> indexed;
  ASSERT_TRUE(Codec::create("q4", &plain).ok());
  ASSERT_TRUE(Codec::create("q4", &indexed).ok());
  const size_t cap = plain->max_encoded_bytes(x.size(), GP_FLOAT32);
  std::vector<uint8_t> want(cap);
  std::vector<uint8_t> got(cap);
  std::vector<float> res_plain(x.size(), 0.25f);
  size_t want_bytes = 0;
  size_t got_bytes = 0;
  for (uint64_t call = 0; call < 5; ++call) {
    std::vector<float> before = res_plain;
    ASSERT_TRUE(plain
                    ->encode(x.data(), x.size(), GP_FLOAT32, res_plain.data(), want.data(), cap,
                             &want_bytes)
                    .ok());
    if (call < 3) continue;
    ASSERT_TRUE(indexed
                    ->encode(x.data(), x.size(), GP_FLOAT32, before.data(), got.data(), cap,
                             &got_bytes, call)
                    .ok());
    ASSERT_EQ(got_bytes, want_bytes);
    EXPECT_EQ(std::memcmp(got.data(), want.data(), want_bytes), 0) << "call " << call;
    EXPECT_EQ(std::memcmp(before.data(), res_plain.data(), x.size() * sizeof(float)), 0);
  }
  EXPECT_EQ(indexed->stats().encodes, 2u);
}

}  // namespace
}  // namespace gradpack
