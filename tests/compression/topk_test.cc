// SPDX-License-Identifier: Apache-2.0
// Top-k sparsification: the kept set against a brute-force reference (exact top-k by |v|, NaN/Inf
// first, ties to the lower index), both index encodings, error feedback, 16-bit inputs and
// outputs, quantized values, the SIMD scans against the scalar one, and malformed frames.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "common/crc32c.h"
#include "common/float16.h"
#include "compression/codec.h"
#include "compression/cpu/kernels.h"
#include "compression/topk/topk_scan.h"
#include "compression/topk/topk_select.h"
#include "compression/wire.h"
#include "tests/compression/codec_test_util.h"

namespace gradpack {
namespace {

using testing_util::decode_f32;
using testing_util::encode;
using testing_util::gradient_like;
using testing_util::make;

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

uint32_t rank_key(float v) { return std::min(float_bits(v) & 0x7FFFFFFFu, 0x7F800000u); }

// The definition, by brute force: sort by (key descending, index ascending), keep k, send in
// ascending index order.
std::vector<uint64_t> reference_kept(const std::vector<float>& v, uint64_t k) {
  std::vector<uint64_t> order(v.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](uint64_t a, uint64_t b) {
    const uint32_t ka = rank_key(v[a]), kb = rank_key(v[b]);
    return ka != kb ? ka > kb : a < b;
  });
  order.resize(k);
  std::sort(order.begin(), order.end());
  return order;
}

// A frame taken apart independently of the decoder: header, indices, raw values section.
struct Parsed {
  FrameHeader h;
  FrameLayout l;
  std::vector<uint64_t> idx;
  const uint8_t* values = nullptr;  // the fp32 values or the quantized section
};

Parsed parse(const std::vector<uint8_t>& frame) {
  Parsed p;
  Status st = read_frame_header(frame.data(), frame.size(), &p.h, &p.l);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(p.h.codec, CodecKind::kTopk);
  const uint8_t* index = frame.data() + kFrameHeaderBytes;
  if (p.h.index_encoding == IndexEncoding::kBitmap) {
    for (uint64_t i = 0; i < p.h.count; ++i)
      if (index[i / 8] >> (i % 8) & 1) p.idx.push_back(i);
  } else {
    uint64_t pos = 0, prev = 0;
    for (uint64_t j = 0; j < p.h.kept; ++j) {
      uint64_t gap = 0;
      for (int shift = 0;; shift += 7) {
        const uint8_t b = index[pos++];
        gap |= static_cast<uint64_t>(b & 0x7F) << shift;
        if ((b & 0x80) == 0) break;
      }
      prev = (j == 0 ? 0 : prev + 1) + gap;
      p.idx.push_back(prev);
    }
    EXPECT_EQ(pos, p.h.index_bytes);
  }
  p.values = index + p.h.index_bytes;
  return p;
}

float value_at(const Parsed& p, size_t j) {
  float v;
  std::memcpy(&v, p.values + 4 * j, 4);
  return v;
}

// Encodes x (fp32) with fraction f and residual r (may be empty), and checks everything the
// definition fixes for fp32 values: the kept set, the values, the residual after.
void check_fp32_topk(const std::vector<float>& x, std::vector<float> r, double f,
                     const std::string& what) {
  SCOPED_TRACE(what);
  const size_t n = x.size();
  const bool feedback = !r.empty();
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = feedback ? x[i] + r[i] : x[i];
  const uint64_t k = topk::kept_count(f, n);
  auto codec = make("topk:" + std::to_string(f));
  const std::vector<float> r_before = r;
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, feedback ? r.data() : nullptr);
  Parsed p = parse(frame);
  ASSERT_EQ(p.h.kept, k);
  const std::vector<uint64_t> want = reference_kept(v, k);
  ASSERT_EQ(p.idx, want);
  std::vector<char> kept(n, 0);
  for (size_t j = 0; j < k; ++j) {
    ASSERT_EQ(float_bits(value_at(p, j)), float_bits(v[want[j]])) << "kept value " << j;
    kept[want[j]] = 1;
  }
  auto d = decode_f32(frame, n);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(float_bits(d[i]), kept[i] ? float_bits(v[i]) : 0u) << "decoded " << i;
    if (!feedback) continue;
    if (!std::isfinite(v[i])) {  // sent or not, a NaN or Inf never enters the residual
      ASSERT_EQ(float_bits(r[i]), float_bits(r_before[i])) << "residual of non-finite " << i;
    } else if (!kept[i]) {
      ASSERT_EQ(float_bits(r[i]), float_bits(v[i])) << "residual of unsent element " << i;
    } else {
      ASSERT_EQ(float_bits(r[i]), float_bits(v[i] - v[i])) << "residual of sent element " << i;
    }
  }
}

TEST(TopK, KeptCountRoundsAndClamps) {
  EXPECT_EQ(topk::kept_count(0.01, 0), 0u);
  EXPECT_EQ(topk::kept_count(0.01, 1), 1u);
  EXPECT_EQ(topk::kept_count(0.01, 49), 1u);
  EXPECT_EQ(topk::kept_count(0.01, 150), 2u);  // llround(1.5) = 2
  EXPECT_EQ(topk::kept_count(0.01, 1 << 20), 10486u);
  EXPECT_EQ(topk::kept_count(1.0, 1000), 1000u);
}

TEST(TopK, KeptSetMatchesBruteForce) {
  const std::vector<size_t> sizes = {0, 1, 2, 3, 100, 4097, 65535, 65536, 65537, 200003};
  const std::vector<double> fractions = {0.0001, 0.001, 0.01, 0.1, 0.5, 1.0};
  uint32_t seed = 1;
  for (size_t n : sizes) {
    for (double f : fractions) {
      std::vector<float> x = gradient_like(n, seed++);
      std::vector<float> r = gradient_like(n, seed++);
      check_fp32_topk(x, r, f, "n=" + std::to_string(n) + " f=" + std::to_string(f));
      if (n == 65537) check_fp32_topk(x, {}, f, "no residual, n=65537 f=" + std::to_string(f));
    }
  }
  // One large input, on the sampled path.
  std::vector<float> x = gradient_like(1 << 20, 77), r = gradient_like(1 << 20, 78);
  for (float& e : r) e *= 0.3f;
  for (double f : {0.01, 0.3}) check_fp32_topk(x, r, f, "n=2^20 f=" + std::to_string(f));
}

// Errors of several steps keep the selection exact as the residual grows.
TEST(TopK, RepeatedStepsStayExact) {
  const size_t n = 300000;
  std::vector<float> r(n, 0.0f);
  auto codec = make("topk:0.01");
  for (int step = 0; step < 4; ++step) {
    std::vector<float> x = gradient_like(n, 500 + step), v(n);
    for (size_t i = 0; i < n; ++i) v[i] = x[i] + r[i];
    auto frame = encode(*codec, x.data(), n, GP_FLOAT32, r.data());
    Parsed p = parse(frame);
    ASSERT_EQ(p.idx, reference_kept(v, topk::kept_count(0.01, n))) << "step " << step;
  }
}

TEST(TopK, TiesGoToTheLowerIndex) {
  for (size_t n : {size_t{5000}, size_t{300000}}) {
    // All equal: the first k elements.
    std::vector<float> same(n, 0.5f);
    check_fp32_topk(same, {}, 0.01, "all equal n=" + std::to_string(n));
    // Equal magnitudes with both signs.
    std::vector<float> signs(n);
    for (size_t i = 0; i < n; ++i)
      signs[i] = (i % 3 == 0 ? -1.0f : 1.0f) * (i % 7 == 0 ? 2.0f : 1.0f);
    check_fp32_topk(signs, {}, 0.05, "signs n=" + std::to_string(n));
    // Mostly zeros: every non-zero, then the lowest-index zeros (+0 and -0 tie too).
    std::vector<float> zeros(n, 0.0f);
    std::mt19937 rng(3);
    for (size_t i = 0; i < n; ++i) {
      if (rng() % 200 == 0) zeros[i] = static_cast<float>(rng() % 1000) * 1e-3f;
      if (rng() % 5 == 0 && zeros[i] == 0.0f) zeros[i] = -0.0f;
    }
    check_fp32_topk(zeros, std::vector<float>(n, 0.0f), 0.01, "zeros n=" + std::to_string(n));
  }
}

TEST(TopK, NonFiniteAreKeptFirstAndKeepTheirResidual) {
  const size_t n = 100000;
  std::vector<float> x = gradient_like(n, 9);
  std::mt19937 rng(4);
  std::vector<size_t> bad;
  for (int i = 0; i < 30; ++i) {
    const size_t at = rng() % n;
    x[at] = i % 3 == 0 ? kNaN : (i % 3 == 1 ? kInf : -kInf);
    bad.push_back(at);
  }
  std::vector<float> r(n, 0.25f);
  check_fp32_topk(x, r, 0.001, "30 non-finite, k = 100");
  auto codec = make("topk:0.001");
  auto d = decode_f32(encode(*codec, x.data(), n, GP_FLOAT32, r.data()), n);
  for (size_t at : bad) {
    EXPECT_FALSE(std::isfinite(d[at])) << at;
    EXPECT_EQ(r[at], 0.25f) << at;
  }
  EXPECT_EQ(codec->stats().nonfinite_blocks, std::set<size_t>(bad.begin(), bad.end()).size());

  // More NaNs than k: the lowest-index ones are sent; the others are not sent, and every one
  // keeps its previous residual (an overflowed fp16 step must not poison the next).
  std::vector<float> y(1000, 1.0f), ry(1000, 0.5f);
  for (size_t i = 100; i < 1000; i += 40) y[i] = kNaN;
  check_fp32_topk(y, ry, 0.01, "more NaN than k");
  for (size_t i = 0; i < 1000; ++i) {
    EXPECT_TRUE(std::isfinite(ry[i])) << i;
  }
}

// An overflowed step: far more NaN and Inf than the candidate buffer holds. The first k by index
// are sent; no residual takes a non-finite value.
TEST(TopK, FloodOfNonFiniteNeverReachesTheResidual) {
  const size_t n = 1 << 18;
  std::vector<float> x = gradient_like(n, 31);
  for (size_t i = n / 2; i < n; ++i) x[i] = i % 2 ? kNaN : kInf;
  for (const char* spec : {"topk:0.001", "topk:0.001+q8"}) {
    std::vector<float> r(n, 0.125f);
    auto codec = make(spec);
    auto d = decode_f32(encode(*codec, x.data(), n, GP_FLOAT32, r.data()), n);
    const uint64_t k = topk::kept_count(0.001, n);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_TRUE(std::isfinite(r[i])) << spec << " residual " << i;
      if (i >= n / 2) {
        ASSERT_EQ(r[i], 0.125f) << spec << " " << i;
        ASSERT_EQ(i < n / 2 + k, !(d[i] == 0.0f)) << spec << " kept " << i;
      }
    }
  }
}

TEST(TopK, QuantizedNaNPoisonsItsBlockOfKeptValues) {
  const size_t n = 5000;
  std::vector<float> x = gradient_like(n, 12);
  x[2000] = kNaN;
  std::vector<float> r(n, 0.125f), v(n);
  for (size_t i = 0; i < n; ++i) v[i] = x[i] + r[i];
  const std::vector<float> before = r;
  auto codec = make("topk:0.1+q8:block=16");
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, r.data());
  Parsed p = parse(frame);
  ASSERT_EQ(p.idx, reference_kept(v, 500));
  const size_t pos =
      static_cast<size_t>(std::find(p.idx.begin(), p.idx.end(), uint64_t{2000}) - p.idx.begin());
  ASSERT_LT(pos, p.idx.size());
  auto d = decode_f32(frame, n);
  for (size_t j = 0; j < p.idx.size(); ++j) {
    const size_t i = p.idx[j];
    if (j / 16 == pos / 16) {
      EXPECT_TRUE(std::isnan(d[i])) << j;
      EXPECT_EQ(r[i], before[i]) << "residual of a poisoned block changed at " << i;
    } else {
      ASSERT_EQ(float_bits(r[i]), float_bits(v[i] - d[i])) << i;
    }
  }
  EXPECT_EQ(codec->stats().nonfinite_blocks, 1u);
}

TEST(TopK, IndexEncodingIsTheSmallerOne) {
  struct Case {
    size_t n;
    double f;
    IndexEncoding want;
  };
  // n = 16: two kept take 2 varint bytes = the 2-byte bitmap (varints win the tie); three take 3.
  for (Case c :
       {Case{16, 2.0 / 16, IndexEncoding::kDeltaVarint}, Case{16, 3.0 / 16, IndexEncoding::kBitmap},
        Case{10001, 0.5, IndexEncoding::kBitmap}, Case{10001, 0.01, IndexEncoding::kDeltaVarint},
        Case{200000, 0.3, IndexEncoding::kBitmap},
        Case{200000, 0.02, IndexEncoding::kDeltaVarint}}) {
    std::vector<float> x = gradient_like(c.n, 21);
    auto codec = make("topk:" + std::to_string(c.f));
    auto frame = encode(*codec, x.data(), c.n, GP_FLOAT32, nullptr);
    Parsed p = parse(frame);
    EXPECT_EQ(p.h.index_encoding, c.want) << c.n << " " << c.f;
    ASSERT_EQ(p.idx, reference_kept(x, topk::kept_count(c.f, c.n)));
    auto d = decode_f32(frame, c.n);
    for (size_t i = 0; i < c.n; ++i)
      ASSERT_EQ(d[i], std::binary_search(p.idx.begin(), p.idx.end(), i) ? x[i] : 0.0f) << i;
  }
  // Gaps of 1, 2 and 3 varint bytes.
  const size_t n = 100000;
  std::vector<float> x(n, 0.0f);
  for (size_t i : {size_t{0}, size_t{127}, size_t{256}, size_t{20000}, size_t{99999}})
    x[i] = 1.0f + static_cast<float>(i);
  auto codec = make("topk:0.00005");  // k = 5
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, nullptr);
  Parsed p = parse(frame);
  EXPECT_EQ(p.idx, (std::vector<uint64_t>{0, 127, 256, 20000, 99999}));
  // Gaps 0, 126, 128, 19743, 79998: 1 + 1 + 2 + 3 + 3 bytes.
  EXPECT_EQ(p.h.index_bytes, 10u);
  EXPECT_EQ(decode_f32(frame, n), x);
}

TEST(TopK, HalfPrecisionInputsAndOutputs) {
  for (gp_dtype_t in_type : {GP_FLOAT16, GP_BFLOAT16}) {
    for (size_t n : {size_t{5000}, size_t{150001}}) {
      std::vector<float> src = gradient_like(n, 31), x(n);
      std::vector<uint16_t> half(n);
      for (size_t i = 0; i < n; ++i) {
        half[i] = in_type == GP_FLOAT16 ? f32_to_f16(src[i] * 100.0f) : f32_to_bf16(src[i]);
        x[i] = in_type == GP_FLOAT16 ? f16_to_f32(half[i]) : bf16_to_f32(half[i]);
      }
      std::vector<float> r = gradient_like(n, 32), v(n);
      for (size_t i = 0; i < n; ++i) v[i] = x[i] + r[i];
      auto codec = make("topk:0.02");
      auto frame = encode(*codec, half.data(), n, in_type, r.data());
      Parsed p = parse(frame);
      EXPECT_EQ(p.h.dtype, in_type);
      const std::vector<uint64_t> want = reference_kept(v, topk::kept_count(0.02, n));
      ASSERT_EQ(p.idx, want);
      std::vector<char> kept(n, 0);
      for (uint64_t i : want) kept[i] = 1;
      for (size_t i = 0; i < n; ++i)
        ASSERT_EQ(float_bits(r[i]), float_bits(kept[i] ? v[i] - v[i] : v[i])) << i;
      // Into 16-bit outputs, plain and accumulating (fp32 sum rounded once).
      for (gp_dtype_t out_type : {GP_FLOAT16, GP_BFLOAT16}) {
        auto to16 = [&](float f) {
          return out_type == GP_FLOAT16 ? f32_to_f16(f) : f32_to_bf16(f);
        };
        auto from16 = [&](uint16_t h) {
          return out_type == GP_FLOAT16 ? f16_to_f32(h) : bf16_to_f32(h);
        };
        std::vector<uint16_t> out(n, 0x1234);
        ASSERT_TRUE(decode_frame(frame.data(), frame.size(), out.data(), n, out_type, false).ok());
        for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], kept[i] ? to16(v[i]) : 0) << i;
        std::vector<float> base = gradient_like(n, 33);
        for (size_t i = 0; i < n; ++i) out[i] = to16(base[i]);
        const std::vector<uint16_t> before = out;
        ASSERT_TRUE(decode_frame(frame.data(), frame.size(), out.data(), n, out_type, true).ok());
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(out[i], kept[i] ? to16(from16(before[i]) + v[i]) : before[i]) << i;
      }
    }
  }
}

// The quantized values are exactly the q<b> section of the kept values, with the stochastic
// stream positioned by the place in the kept sequence; the residual is v - decoded.
TEST(TopK, QuantizedValuesAreTheQuantizerOverTheKeptValues) {
  const size_t n = 120000;
  std::vector<float> x = gradient_like(n, 41), r = gradient_like(n, 42), v(n);
  for (size_t i = 0; i < n; ++i) v[i] = x[i] + r[i];
  const std::string q = "q4:block=16:round=stochastic:seed=9";
  auto codec = make("topk:0.05+" + q);
  auto twin = make("topk:0.05+" + q);
  std::vector<float> r_twin = r;
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, r.data());
  EXPECT_EQ(frame, encode(*twin, x.data(), n, GP_FLOAT32, r_twin.data()));  // reproducible
  EXPECT_EQ(r, r_twin);
  Parsed p = parse(frame);
  EXPECT_EQ(p.h.bits, 4);
  EXPECT_EQ(p.h.block, 16u);
  EXPECT_EQ(p.h.flags, kFlagStochastic);
  const std::vector<uint64_t> want = reference_kept(v, topk::kept_count(0.05, n));
  ASSERT_EQ(p.idx, want);
  std::vector<float> kept_values;
  for (uint64_t i : want) kept_values.push_back(v[i]);
  auto quant = make(q);  // its first encode uses the same stream as the top-k codec's first
  auto qframe = encode(*quant, kept_values.data(), kept_values.size(), GP_FLOAT32, nullptr);
  ASSERT_EQ(qframe.size() - kFrameHeaderBytes, p.l.payload_bytes - p.h.index_bytes);
  EXPECT_EQ(
      std::memcmp(qframe.data() + kFrameHeaderBytes, p.values, qframe.size() - kFrameHeaderBytes),
      0);
  auto d = decode_f32(frame, n);
  std::vector<char> kept(n, 0);
  for (uint64_t i : want) kept[i] = 1;
  for (size_t i = 0; i < n; ++i) {
    if (!kept[i]) {
      ASSERT_EQ(d[i], 0.0f) << i;
    }
    ASSERT_EQ(float_bits(r[i]), float_bits(v[i] - d[i])) << i;
  }
  // The next call draws a fresh stream.
  std::vector<float> r2(n, 0.0f), r3(n, 0.0f), r4(n, 0.0f);
  auto f2 = encode(*codec, x.data(), n, GP_FLOAT32, r2.data());
  EXPECT_EQ(f2, encode(*twin, x.data(), n, GP_FLOAT32, r3.data()));
  EXPECT_NE(f2, encode(*make("topk:0.05+" + q), x.data(), n, GP_FLOAT32, r4.data()));
}

// The kernel table does not change the frame.
TEST(TopK, ScalarKernelTableGivesTheSameFrames) {
  const size_t n = 90001;
  std::vector<float> x = gradient_like(n, 51);
  for (const char* spec : {"topk:0.01", "topk:0.02+q8", "topk:0.3+q5:block=64"}) {
    std::vector<float> r1(n, 0.0f), r2(n, 0.0f);
    auto a = make(spec);
    auto b = make(spec, &cpu::scalar_kernels());
    EXPECT_EQ(encode(*a, x.data(), n, GP_FLOAT32, r1.data()),
              encode(*b, x.data(), n, GP_FLOAT32, r2.data()))
        << spec;
    EXPECT_EQ(r1, r2) << spec;
  }
}

// Every scan version gives the scalar one's candidates, values and residual.
TEST(TopK, ScanVersionsAgree) {
  struct Version {
    const char* name;
    topk::ScanFn scan;
  };
  std::vector<Version> scans;
  if (cpu::cpu_has_avx2()) scans.push_back({"avx2", topk::scan_avx2});
  if (cpu::cpu_has_avx512()) scans.push_back({"avx512", topk::scan_avx512});
  if (scans.empty()) GTEST_SKIP() << "this CPU has neither AVX2 nor AVX-512";
  std::mt19937 rng(61);
  for (size_t n : {size_t{0}, size_t{5}, size_t{16}, size_t{1000}, size_t{4099}, size_t{70001}}) {
    std::vector<float> x(n), r0(n);
    for (size_t i = 0; i < n; ++i) {
      x[i] = std::ldexp(static_cast<float>(rng() % 2000) - 1000.0f, -static_cast<int>(rng() % 12));
      r0[i] = static_cast<float>(rng() % 64) * 0.25f - 8.0f;
      switch (rng() % 50) {
        case 0:
          x[i] = kNaN;
          break;
        case 1:
          x[i] = -kInf;
          break;
        case 2:
          x[i] = -0.0f;
          r0[i] = 0.0f;
          break;
        case 3:  // overflows to Inf in v
          x[i] = 3e38f;
          r0[i] = 3e38f;
          break;
        default:
          break;
      }
    }
    for (uint32_t thr : {0u, rank_key(8.0f), rank_key(500.0f), 0x7F800000u, 0x7F800001u}) {
      for (int variant = 0; variant < 8; ++variant) {
        // Several alignments of x and r: the SIMD versions peel to an aligned start.
        const bool feedback = variant % 2 == 1;
        const size_t shift = std::vector<size_t>{0, 1, 5, 12}[static_cast<size_t>(variant / 2)];
        const size_t m = n > shift ? n - shift : 0;
        std::vector<uint64_t> idx0(m + 16);
        std::vector<float> val0(m + 16), old0(m + 16), rr0 = r0;
        float* r = feedback ? rr0.data() + shift : nullptr;
        const size_t c0 = topk::scan_scalar(x.data() + shift, r, m, thr, 1000,
                                            reinterpret_cast<topk::IndexWord*>(idx0.data()),
                                            val0.data(), feedback ? old0.data() : nullptr);
        for (const Version& version : scans) {
          SCOPED_TRACE(std::string(version.name) + " n=" + std::to_string(m) +
                       " thr=" + std::to_string(thr) + (feedback ? " residual" : "") +
                       " shift=" + std::to_string(shift));
          std::vector<uint64_t> idx(m + 16);
          std::vector<float> val(m + 16), old(m + 16), rr = r0;
          const size_t c = version.scan(x.data() + shift, feedback ? rr.data() + shift : nullptr, m,
                                        thr, 1000, reinterpret_cast<topk::IndexWord*>(idx.data()),
                                        val.data(), feedback ? old.data() : nullptr);
          ASSERT_EQ(c, c0);
          for (size_t j = 0; j < c; ++j) {
            ASSERT_EQ(idx[j], idx0[j]) << j;
            ASSERT_EQ(float_bits(val[j]), float_bits(val0[j])) << j;
            if (feedback) {
              ASSERT_EQ(float_bits(old[j]), float_bits(old0[j])) << j;
            }
          }
          for (size_t i = 0; feedback && i < n; ++i)
            ASSERT_EQ(float_bits(rr[i]), float_bits(rr0[i])) << i;
        }
      }
    }
  }
}

// The AVX-512 cut gives the scalar one's kept candidates and ties.
TEST(TopK, CutVersionsAgree) {
  if (!cpu::cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  std::mt19937 rng(62);
  for (size_t c : {size_t{0}, size_t{7}, size_t{16}, size_t{100}, size_t{1001}}) {
    std::vector<float> val0(c), old0(c);
    std::vector<uint64_t> idx0(c);
    for (size_t i = 0; i < c; ++i) {
      val0[i] = static_cast<float>(rng() % 8) * (rng() % 2 ? 1.0f : -1.0f);  // many ties
      if (rng() % 20 == 0) val0[i] = rng() % 2 ? kNaN : -kInf;
      old0[i] = static_cast<float>(i);
      idx0[i] = 3 * i + 1;
    }
    for (uint32_t cut_key : {0u, rank_key(3.0f), rank_key(7.0f), 0x7F800000u}) {
      for (uint64_t need : {uint64_t{0}, uint64_t{1}, uint64_t{5}, uint64_t{17}, uint64_t{1000}}) {
        SCOPED_TRACE("c=" + std::to_string(c) + " key=" + std::to_string(cut_key) +
                     " need=" + std::to_string(need));
        std::vector<uint64_t> ia = idx0, ib = idx0;
        std::vector<float> va = val0, vb = val0, oa = old0, ob = old0;
        const size_t na = topk::cut_scalar(reinterpret_cast<topk::IndexWord*>(ia.data()), va.data(),
                                           oa.data(), c, cut_key, need);
        const size_t nb = topk::cut_avx512(reinterpret_cast<topk::IndexWord*>(ib.data()), vb.data(),
                                           ob.data(), c, cut_key, need);
        ASSERT_EQ(na, nb);
        for (size_t j = 0; j < na; ++j) {
          ASSERT_EQ(ia[j], ib[j]) << j;
          ASSERT_EQ(float_bits(va[j]), float_bits(vb[j])) << j;
          ASSERT_EQ(oa[j], ob[j]) << j;
        }
      }
    }
  }
}

// The AVX-512 gather of the keys in a range gives the scalar one's keys, in order.
TEST(TopK, GatherVersionsAgree) {
  if (!cpu::cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512";
  std::mt19937 rng(63);
  for (size_t c : {size_t{0}, size_t{5}, size_t{16}, size_t{33}, size_t{1000}}) {
    std::vector<float> val(c);
    for (size_t i = 0; i < c; ++i) {
      val[i] = static_cast<float>(rng() % 8) * (rng() % 2 ? 1.0f : -1.0f);
      if (rng() % 20 == 0) val[i] = rng() % 2 ? kNaN : -kInf;
    }
    for (auto [lo, hi] : {std::pair{0u, 0x7F800000u}, std::pair{rank_key(2.0f), rank_key(5.0f)},
                          std::pair{rank_key(3.0f), rank_key(3.0f)},
                          std::pair{0x7F800000u, 0x7F800000u}, std::pair{rank_key(7.0f), 0u}}) {
      SCOPED_TRACE("c=" + std::to_string(c) + " lo=" + std::to_string(lo));
      std::vector<uint32_t> a(c + 16), b(c + 16);
      const size_t na = topk::gather_scalar(val.data(), c, lo, hi, a.data());
      const size_t nb = topk::gather_avx512(val.data(), c, lo, hi, b.data());
      ASSERT_EQ(na, nb);
      for (size_t j = 0; j < na; ++j) ASSERT_EQ(a[j], b[j]) << j;
    }
  }
}

// An input built against the fixed sample: huge values exactly where the sample looks, so the
// threshold it suggests is reached by fewer than k elements and the encoder must rescan.
TEST(TopK, RescanWhenTheSampleMisleads) {
  const size_t n = 1 << 18;
  const size_t runs = topk::sample_runs(n);
  const size_t s = runs * topk::kSampleRun;
  ASSERT_GT(s, 0u);
  std::vector<float> x = gradient_like(n, 71);
  for (size_t j = 0; j < runs; ++j)
    for (size_t e = 0; e < topk::kSampleRun; ++e)
      x[topk::sample_run_start(topk::sample_stride(n), j) + e] =
          100.0f + static_cast<float>(j * topk::kSampleRun + e);
  const double f = 0.05;  // k = 13107, far more than the sampled positions
  ASSERT_GT(topk::kept_count(f, n), 2 * s);
  check_fp32_topk(x, gradient_like(n, 72), f, "rescan with residual");
  check_fp32_topk(x, {}, f, "rescan without residual");
  // Quantized, and from bf16 input without residual (the rescan converts the input again).
  std::vector<uint16_t> half(n);
  std::vector<float> xv(n);
  for (size_t i = 0; i < n; ++i) {
    half[i] = f32_to_bf16(x[i]);
    xv[i] = bf16_to_f32(half[i]);
  }
  auto codec = make("topk:0.05+q8");
  Parsed p = parse(encode(*codec, half.data(), n, GP_BFLOAT16, nullptr));
  EXPECT_EQ(p.idx, reference_kept(xv, topk::kept_count(f, n)));
  std::vector<float> r(n, 0.0f), v = x;
  auto frame = encode(*codec, x.data(), n, GP_FLOAT32, r.data());
  auto d = decode_f32(frame, n);
  EXPECT_EQ(parse(frame).idx, reference_kept(v, topk::kept_count(f, n)));
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(float_bits(r[i]), float_bits(v[i] - d[i])) << i;
}

TEST(TopK, MaxEncodedBytesBoundsEveryFrame) {
  for (size_t n : {size_t{1}, size_t{7}, size_t{64}, size_t{1000}, size_t{70000}}) {
    for (double f : {0.001, 0.02, 0.12, 0.5, 1.0}) {
      for (const char* q : {"", "+q8", "+q2:block=8", "+q16:block=1024"}) {
        const std::string spec = "topk:" + std::to_string(f) + q;
        auto codec = make(spec);
        // Kept elements as far apart as possible: the largest gaps.
        const uint64_t k = topk::kept_count(f, n);
        std::vector<float> x(n, 0.0f);
        for (uint64_t j = 0; j < k; ++j) x[k == 1 ? n - 1 : j * (n - 1) / (k - 1)] = 1.0f;
        auto frame = encode(*codec, x.data(), n, GP_FLOAT32, nullptr);  // checks the bound
        EXPECT_EQ(parse(frame).h.kept, k) << spec;
      }
    }
  }
}

// ---- Malformed frames ----

std::vector<uint8_t> build_frame(uint64_t count, uint64_t kept, IndexEncoding encoding,
                                 const std::vector<uint8_t>& index,
                                 const std::vector<float>& values) {
  FrameHeader h;
  h.codec = CodecKind::kTopk;
  h.dtype = GP_FLOAT32;
  h.index_encoding = encoding;
  h.count = count;
  h.kept = kept;
  h.index_bytes = index.size();
  h.payload_bytes = index.size() + 4 * values.size();
  std::vector<uint8_t> frame(kFrameHeaderBytes + h.payload_bytes);
  write_frame_header(h, frame.data());
  std::memcpy(frame.data() + kFrameHeaderBytes, index.data(), index.size());
  std::memcpy(frame.data() + kFrameHeaderBytes + index.size(), values.data(), 4 * values.size());
  return frame;
}

void expect_rejected(const std::vector<uint8_t>& frame, size_t count, const std::string& needle) {
  SCOPED_TRACE(needle);
  std::vector<float> out(count, 7.0f);
  Status st = decode_frame(frame.data(), frame.size(), out.data(), count, GP_FLOAT32, false);
  ASSERT_EQ(st.code(), Code::kCorruptData) << st.to_string();
  EXPECT_EQ(st.message().rfind("frame rejected", 0), 0u) << st.message();
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  for (float f : out) ASSERT_EQ(f, 7.0f) << "out was written before the frame was rejected";
}

TEST(TopK, MalformedFramesAreRejected) {
  const IndexEncoding varint = IndexEncoding::kDeltaVarint, bitmap = IndexEncoding::kBitmap;
  // A well-formed frame of each kind decodes.
  {
    std::vector<float> out(20, 7.0f);
    auto ok = build_frame(20, 2, varint, {3, 0x80 | 2, 0}, {1.0f, 2.0f});  // 3, then 3+1+2=6
    ASSERT_TRUE(decode_frame(ok.data(), ok.size(), out.data(), 20, GP_FLOAT32, false).ok());
    EXPECT_EQ(out[3], 1.0f);
    EXPECT_EQ(out[6], 2.0f);
    ok = build_frame(20, 2, bitmap, {0x08, 0x00, 0x04}, {1.0f, 2.0f});
    ASSERT_TRUE(decode_frame(ok.data(), ok.size(), out.data(), 20, GP_FLOAT32, false).ok());
    EXPECT_EQ(out[3], 1.0f);
    EXPECT_EQ(out[18], 2.0f);
  }
  std::vector<uint8_t> eleven(10, 0x80);
  eleven.push_back(0x00);
  eleven.push_back(0x00);  // a second, valid varint
  expect_rejected(build_frame(20, 2, varint, eleven, {1, 2}), 20, "longer than 10 bytes");
  std::vector<uint8_t> overflow(9, 0xFF);
  overflow.push_back(0x02);
  expect_rejected(build_frame(20, 1, varint, overflow, {1}), 20, "overflows 64 bits");
  expect_rejected(build_frame(20, 1, varint, {20}, {1}), 20, "not below the count");
  expect_rejected(build_frame(20, 2, varint, {10, 9}, {1, 2}), 20, "not below the count");
  expect_rejected(build_frame(20, 2, varint, {0, 0, 0}, {1, 2}), 20, "bytes after");
  expect_rejected(build_frame(20, 2, varint, {0, 0x81}, {1, 2}), 20, "ends inside");
  expect_rejected(build_frame(20, 3, varint, {0x00, 0x80, 0x80}, {1, 2, 3}), 20, "ends inside");
  expect_rejected(build_frame(20, 3, bitmap, {0x01, 0x01, 0x00}, {1, 2, 3}), 20, "marks 2");
  expect_rejected(build_frame(20, 3, bitmap, {0x01, 0x01, 0x11}, {1, 2, 3}), 20, "pad bits");

  // A real frame with one byte slipped in after its varints, the header resealed.
  std::vector<float> x = gradient_like(1000, 81);
  auto codec = make("topk:0.01");
  auto frame = encode(*codec, x.data(), 1000, GP_FLOAT32, nullptr);
  Parsed p = parse(frame);
  ASSERT_EQ(p.h.index_encoding, varint);
  frame.insert(frame.begin() + kFrameHeaderBytes + p.h.index_bytes, 0x00);
  auto put_u64 = [&](size_t at, uint64_t v) {
    for (int i = 0; i < 8; ++i) frame[at + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  put_u64(32, p.h.index_bytes + 1);
  put_u64(40, p.h.payload_bytes + 1);
  const uint32_t crc = crc32c(frame.data(), 52);
  for (int i = 0; i < 4; ++i) frame[52 + i] = static_cast<uint8_t>(crc >> (8 * i));
  expect_rejected(frame, 1000, "bytes after");

  // A quantized section with a negative scale.
  auto qcodec = make("topk:0.05+q8:block=8");
  auto qframe = encode(*qcodec, x.data(), 1000, GP_FLOAT32, nullptr);
  Parsed qp = parse(qframe);
  const size_t scale_at = kFrameHeaderBytes + qp.h.index_bytes + 3;
  qframe[scale_at] |= 0x80;  // the sign bit of the first scale
  expect_rejected(qframe, 1000, "negative or infinite scale");
}

// Random damage to real frames: the decoder accepts the frame or rejects it, and a rejected frame
// leaves the output alone (run under the sanitizers, this also proves it reads only its input).
TEST(TopK, DamagedFramesNeverReadOutside) {
  std::mt19937 rng(91);
  const size_t n = 3000;
  std::vector<float> x = gradient_like(n, 92);
  for (const char* spec : {"topk:0.01", "topk:0.3", "topk:0.02+q4:block=8", "topk:0.5+q3"}) {
    auto codec = make(spec);
    const auto good = encode(*codec, x.data(), n, GP_FLOAT32, nullptr);
    for (int trial = 0; trial < 400; ++trial) {
      std::vector<uint8_t> frame = good;
      const int flips = 1 + static_cast<int>(rng() % 4);
      for (int f = 0; f < flips; ++f) {
        const size_t at = rng() % frame.size();
        frame[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
      }
      if (trial % 4 == 0) {  // header fields too, resealed so that the checksum passes
        frame[8 + rng() % 40] ^= static_cast<uint8_t>(rng());
        const uint32_t crc = crc32c(frame.data(), 52);
        for (int i = 0; i < 4; ++i) frame[52 + i] = static_cast<uint8_t>(crc >> (8 * i));
      }
      std::vector<float> out(n, 7.0f);
      Status st = decode_frame(frame.data(), frame.size(), out.data(), n, GP_FLOAT32, false);
      if (st.ok()) continue;
      ASSERT_TRUE(st.code() == Code::kCorruptData || st.code() == Code::kInvalidArgument)
          << st.to_string();
      for (float v : out) ASSERT_EQ(v, 7.0f) << spec << " trial " << trial;
    }
  }
}

}  // namespace
}  // namespace gradpack
