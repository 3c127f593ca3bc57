// SPDX-License-Identifier: Apache-2.0
// The SIMD kernel tables against the scalar reference, bit for bit: the quantizer at every bit
// width over ragged lengths, odd block sizes, residual or not, both roundings and special values;
// the 16-bit conversions over every 16-bit pattern and around every rounding boundary; add_f32,
// add3_f32 and feedback;
// and whole codec frames. Buffers end at an inaccessible page, so a kernel that reads or writes
// past its end crashes the test instead of passing by luck.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/float16.h"
#include "compression/codec.h"
#include "compression/cpu/kernels.h"
#include "compression/quantize/quant_ref.h"

namespace gradpack {
namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();

// `count` elements of T whose end touches a PROT_NONE page; `guard` bytes of 0xA5 sit between
// the end and that page when asked for, to catch writes just past the end without a fault.
template <class T>
class Guarded {
 public:
  explicit Guarded(size_t count, size_t guard = 0) : count_(count), guard_(guard) {
    page_ = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t bytes = count * sizeof(T) + guard;
    const size_t pages = (bytes + page_ - 1) / page_ + 1;
    size_ = pages * page_;
    void* base = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) throw std::bad_alloc();
    base_ = static_cast<uint8_t*>(base);
    mprotect(base_ + size_ - page_, page_, PROT_NONE);
    data_ = reinterpret_cast<T*>(base_ + size_ - page_ - bytes);
    std::memset(reinterpret_cast<uint8_t*>(data_) + count * sizeof(T), 0xA5, guard);
  }
  ~Guarded() { munmap(base_, size_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;

  T* data() { return data_; }
  T& operator[](size_t i) { return data_[i]; }
  size_t size() const { return count_; }
  bool guard_intact() const {
    const uint8_t* g = reinterpret_cast<const uint8_t*>(data_ + count_);
    for (size_t i = 0; i < guard_; ++i)
      if (g[i] != 0xA5) return false;
    return true;
  }

 private:
  size_t count_, guard_, page_ = 0, size_ = 0;
  uint8_t* base_ = nullptr;
  T* data_ = nullptr;
};

bool same_float(float a, float b) {
  return float_bits(a) == float_bits(b) || (std::isnan(a) && std::isnan(b));
}
bool same_half(uint16_t a, uint16_t b, bool bf16) {
  const uint16_t inf = bf16 ? 0x7F80 : 0x7C00;
  return a == b || ((a & 0x7FFF) > inf && (b & 0x7FFF) > inf);
}

// Values to encode: gradient-like with regional scales, sprinkled per `mode` with special values.
enum class Fill { kGradient, kSpecial, kTies, kTiny };

void fill(std::mt19937& rng, float* x, size_t n, Fill mode, int bits, uint32_t block) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> pick(0, 99);
  const float l = static_cast<float>(quant::levels(bits));
  const float specials[] = {kNaN,
                            -kNaN,
                            kInf,
                            -kInf,
                            0.0f,
                            -0.0f,
                            bits_float(1),
                            -bits_float(0x007FFFFF),
                            std::numeric_limits<float>::max(),
                            -std::numeric_limits<float>::max(),
                            1e-35f,
                            -1e-32f,
                            3e38f};
  for (size_t i = 0; i < n; ++i) {
    const float region = std::ldexp(1.0f, static_cast<int>((i / block) % 7) * 3 - 12);
    float v = normal(rng) * region;
    switch (mode) {
      case Fill::kGradient:
        break;
      case Fill::kSpecial:
        // About one special value per two blocks: both special and clean blocks occur.
        if (rng() % (2 * block) == 0) v = specials[rng() % std::size(specials)];
        break;
      case Fill::kTies:
        // absmax = L makes inv = scale = 1: halves are exact ties for rint.
        v = static_cast<float>(std::uniform_int_distribution<int>(-2 * static_cast<int>(l),
                                                                  2 * static_cast<int>(l))(rng)) *
            0.5f;
        if (i % block == 0) v = (pick(rng) & 1) ? l : -l;
        break;
      case Fill::kTiny:
        // Blocks of zeros; of small values led by exactly 2^-100 (the smallest absmax that
        // still gets a scale) or by the float just below it (scale 0); of subnormals.
        switch ((i / block) % 4) {
          case 0:
            v = 0.0f;
            break;
          case 1:
            v = i % block == 0 ? bits_float(quant::kTinyAbsmaxBits) : normal(rng) * 1e-32f;
            break;
          case 2:
            v = i % block == 0 ? -bits_float(quant::kTinyAbsmaxBits - 1) : normal(rng) * 1e-32f;
            break;
          default:
            v = normal(rng) * 1e-38f;
            break;
        }
        break;
    }
    x[i] = v;
  }
}

struct Isa {
  const char* name;
  const cpu::CpuKernels* (*table)();
  bool (*supported)();
};

void PrintTo(const Isa& isa, std::ostream* os) { *os << isa.name; }

std::string isa_name(const testing::TestParamInfo<Isa>& info) { return info.param.name; }

class SimdKernels : public testing::TestWithParam<Isa> {
 protected:
  void SetUp() override {
    const Isa& isa = GetParam();
    simd_ = isa.table();
    if (simd_ == nullptr) GTEST_SKIP() << "this build has no " << isa.name << " kernels";
    if (!isa.supported()) GTEST_SKIP() << "this CPU lacks " << isa.name;
  }
  const cpu::CpuKernels& ref() const { return cpu::scalar_kernels(); }
  const cpu::CpuKernels* simd_ = nullptr;
};

struct EncodeCase {
  size_t n;
  cpu::QuantParams p;
  uint64_t first;
  bool residual;
  Fill fill;
  uint32_t seed;
};

std::string describe(const EncodeCase& c) {
  return "n=" + std::to_string(c.n) + " bits=" + std::to_string(c.p.bits) +
         " block=" + std::to_string(c.p.block) + " first=" + std::to_string(c.first) +
         (c.p.stochastic ? " stochastic key=" + std::to_string(c.p.key) : " nearest") +
         (c.residual ? " residual" : "") + " fill=" + std::to_string(static_cast<int>(c.fill));
}

// Encodes with both tables and compares everything they write.
void check_encode(const cpu::CpuKernels& ref, const cpu::CpuKernels& simd, const EncodeCase& c) {
  SCOPED_TRACE(describe(c));
  std::mt19937 rng(c.seed);
  const size_t blocks = (c.n + c.p.block - 1) / c.p.block;
  const size_t code_bytes = (c.n * static_cast<size_t>(c.p.bits) + 7) / 8;
  Guarded<float> x(c.n);
  fill(rng, x.data(), c.n, c.fill, c.p.bits, c.p.block);
  std::vector<float> r0(c.n);
  fill(rng, r0.data(), c.n, c.fill == Fill::kTies ? Fill::kTiny : c.fill, c.p.bits, c.p.block);
  for (float& v : r0) v *= 0.01f;
  Guarded<float> r_ref(c.n), r_simd(c.n);
  std::memcpy(r_ref.data(), r0.data(), c.n * sizeof(float));
  std::memcpy(r_simd.data(), r0.data(), c.n * sizeof(float));
  Guarded<float> s_ref(blocks, 16), s_simd(blocks, 16);
  Guarded<uint8_t> k_ref(code_bytes, 64), k_simd(code_bytes, 64);
  // Stale bytes in the code buffer must not leak into the stream.
  std::memset(k_ref.data(), 0xFF, code_bytes);
  std::memset(k_simd.data(), 0x5A, code_bytes);

  const size_t nf_ref = ref.quant_encode(x.data(), c.residual ? r_ref.data() : nullptr, c.n,
                                         c.first, c.p, s_ref.data(), k_ref.data());
  const size_t nf_simd = simd.quant_encode(x.data(), c.residual ? r_simd.data() : nullptr, c.n,
                                           c.first, c.p, s_simd.data(), k_simd.data());
  EXPECT_EQ(nf_ref, nf_simd);
  for (size_t b = 0; b < blocks; ++b)
    ASSERT_EQ(float_bits(s_ref[b]), float_bits(s_simd[b])) << "scale of block " << b;
  for (size_t i = 0; i < code_bytes; ++i)
    ASSERT_EQ(k_ref[i], k_simd[i]) << "code byte " << i << " of " << code_bytes;
  EXPECT_TRUE(k_simd.guard_intact()) << "wrote past the last code byte";
  EXPECT_TRUE(s_simd.guard_intact()) << "wrote past the last scale";
  for (size_t i = 0; i < c.n; ++i)
    ASSERT_EQ(float_bits(r_ref[i]), float_bits(r_simd[i])) << "residual " << i;
  if (!c.residual) {
    EXPECT_EQ(std::memcmp(r_simd.data(), r0.data(), c.n * sizeof(float)), 0);
  }
}

// First elements whose stochastic stream crosses a multiple of 2^32 within the first blocks.
uint64_t near_wrap(uint32_t block, uint64_t at) { return (at / block - 2) * block; }

TEST_P(SimdKernels, QuantEncodeEveryWidthMatchesScalar) {
  // Whole blocks only, whole blocks and a partial one, less than a block; for block sizes that
  // take the register path (64, 128, 256) and the general one.
  const size_t lengths[] = {0, 1, 7, 8, 9, 15, 16, 17, 64, 255, 257, 768, 1000, 4096, 4099};
  const uint32_t blocks[] = {8, 16, 24, 64, 72, 128, 256};
  uint32_t seed = 1;
  for (int bits = 2; bits <= 16; ++bits) {
    for (uint32_t block : blocks) {
      for (size_t n : lengths) {
        ++seed;
        EncodeCase c{n, {}, 0, (seed & 1) != 0, Fill::kGradient, seed};
        c.p.bits = bits;
        c.p.block = block;
        c.p.stochastic = (seed & 2) != 0;
        c.p.key = seed * 2654435761u;
        c.first = (seed & 4) ? block * uint64_t{seed % 97} : near_wrap(block, uint64_t{1} << 32);
        check_encode(ref(), *simd_, c);
        if (HasFatalFailure()) return;
      }
    }
  }
}

TEST_P(SimdKernels, QuantEncodeSpecialValuesMatchScalar) {
  uint32_t seed = 1000;
  for (int bits : {2, 3, 4, 5, 7, 8, 11, 12, 15, 16}) {
    for (uint32_t block : {8u, 24u, 64u, 128u, 256u, 4096u}) {
      for (Fill f : {Fill::kSpecial, Fill::kTies, Fill::kTiny}) {
        for (int variant = 0; variant < 4; ++variant) {
          ++seed;
          const size_t n =
              block == 4096 ? 9000 + seed % 7 : 3 * block + (variant == 0 ? 0 : seed % 19);
          EncodeCase c{n, {}, 0, (variant & 1) != 0, f, seed};
          c.p.bits = bits;
          c.p.block = block;
          c.p.stochastic = (variant & 2) != 0;
          c.p.key = seed;
          c.first = near_wrap(block, uint64_t{3} << 32);
          check_encode(ref(), *simd_, c);
          if (HasFatalFailure()) return;
        }
      }
    }
  }
}

// Stochastic streams: different keys and starting elements, including starts just before 2^32
// and 2^33 (the high key changes mid-stream, mid-block for blocks that do not divide 2^32, and
// mid-vector for block 72 on 16-lane vectors).
TEST_P(SimdKernels, QuantEncodeStochasticStreamsMatchScalar) {
  uint32_t seed = 5000;
  for (uint32_t block : {8u, 24u, 40u, 72u, 256u, 1000u}) {
    for (uint64_t first :
         {uint64_t{0}, uint64_t{block} * 12345, near_wrap(block, uint64_t{1} << 32),
          near_wrap(block, uint64_t{1} << 33), (uint64_t{1} << 32) / block * block,
          (uint64_t{0xFFFFFFFF0000} / block) * block}) {
      for (int bits : {2, 4, 6, 8, 13, 16}) {
        ++seed;
        EncodeCase c{5 * block + 3, {}, first, (seed & 1) != 0, Fill::kGradient, seed};
        c.p.bits = bits;
        c.p.block = block;
        c.p.stochastic = true;
        c.p.key = seed * 0x9E3779B9u;
        check_encode(ref(), *simd_, c);
        if (HasFatalFailure()) return;
      }
    }
  }
}

// Decoding arbitrary bytes and scales (NaN, Inf, zero, negative included), overwrite and
// accumulate; the output past n is never touched and the codes are never read past their end.
TEST_P(SimdKernels, QuantDecodeMatchesScalar) {
  std::mt19937 rng(77);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t lengths[] = {0, 1, 7, 8, 9, 17, 255, 257, 1000, 4099};
  for (int bits = 2; bits <= 16; ++bits) {
    for (uint32_t block : {8u, 16u, 24u, 64u, 256u, 4096u}) {
      for (size_t n : lengths) {
        for (bool accumulate : {false, true}) {
          SCOPED_TRACE("bits=" + std::to_string(bits) + " block=" + std::to_string(block) +
                       " n=" + std::to_string(n) + (accumulate ? " accumulate" : ""));
          cpu::QuantParams p;
          p.bits = bits;
          p.block = block;
          const size_t blocks = (n + block - 1) / block;
          const size_t code_bytes = (n * static_cast<size_t>(bits) + 7) / 8;
          Guarded<float> scales(blocks);
          for (size_t b = 0; b < blocks; ++b) {
            const int kind = static_cast<int>(rng() % 10);
            scales[b] = kind == 0   ? kNaN
                        : kind == 1 ? 0.0f
                        : kind == 2 ? kInf
                        : kind == 3 ? -std::abs(normal(rng))
                                    : std::abs(normal(rng)) * 1e-2f;
          }
          Guarded<uint8_t> codes(code_bytes);
          for (size_t i = 0; i < code_bytes; ++i) codes[i] = static_cast<uint8_t>(rng());
          Guarded<float> o_ref(n), o_simd(n);
          for (size_t i = 0; i < n; ++i) o_ref[i] = o_simd[i] = normal(rng);
          ref().quant_decode(scales.data(), codes.data(), n, p, o_ref.data(), accumulate);
          simd_->quant_decode(scales.data(), codes.data(), n, p, o_simd.data(), accumulate);
          for (size_t i = 0; i < n; ++i)
            ASSERT_TRUE(same_float(o_ref[i], o_simd[i]))
                << "element " << i << ": " << o_ref[i] << " vs " << o_simd[i];
        }
      }
    }
  }
}

// What the SIMD encoder writes, the SIMD decoder reads back as the scalar decoder does.
TEST_P(SimdKernels, QuantRoundTripMatchesScalar) {
  std::mt19937 rng(3);
  for (int bits = 2; bits <= 16; ++bits) {
    cpu::QuantParams p;
    p.bits = bits;
    p.block = 64;
    const size_t n = 2053;
    std::vector<float> x(n);
    fill(rng, x.data(), n, Fill::kSpecial, bits, p.block);
    std::vector<float> scales((n + 63) / 64);
    std::vector<uint8_t> codes((n * bits + 7) / 8);
    simd_->quant_encode(x.data(), nullptr, n, 0, p, scales.data(), codes.data());
    std::vector<float> a(n), b(n);
    ref().quant_decode(scales.data(), codes.data(), n, p, a.data(), false);
    simd_->quant_decode(scales.data(), codes.data(), n, p, b.data(), false);
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(a[i], b[i])) << bits << " " << i;
  }
}

// Converts `in` with both tables over the whole array and over ragged pieces of it.
template <class In, class Out, class Fn, class Same>
void check_conversion(const std::vector<In>& in, Fn ref, Fn simd, Same same) {
  for (size_t n : {in.size(), size_t{0}, size_t{1}, size_t{7}, size_t{15}, size_t{17}, size_t{33},
                   in.size() - 5}) {
    if (n > in.size()) continue;
    Guarded<In> src(n);
    std::memcpy(src.data(), in.data() + (in.size() - n), n * sizeof(In));
    Guarded<Out> a(n), b(n);
    ref(src.data(), a.data(), n);
    simd(src.data(), b.data(), n);
    for (size_t i = 0; i < n; ++i)
      ASSERT_TRUE(same(a[i], b[i]))
          << "n=" << n << " element " << i << " input bits "
          << static_cast<uint64_t>(sizeof(In) == 4 ? float_bits(static_cast<float>(src[i]))
                                                   : static_cast<uint64_t>(src[i]))
          << ": " << a[i] << " vs " << b[i];
  }
}

TEST_P(SimdKernels, HalfToFloatEveryValue) {
  std::vector<uint16_t> all(0x10000);
  for (uint32_t h = 0; h < 0x10000; ++h) all[h] = static_cast<uint16_t>(h);
  check_conversion<uint16_t, float>(all, ref().f16_to_f32, simd_->f16_to_f32, same_float);
  check_conversion<uint16_t, float>(all, ref().bf16_to_f32, simd_->bf16_to_f32, same_float);
}

// fp32 inputs that probe every rounding decision: each 16-bit value's exact fp32 image, the
// ties halfway to its neighbour and one ulp either side of them, random bit patterns, and the
// specials (overflow thresholds, NaN payloads of both signs, subnormals).
std::vector<float> rounding_probes(bool bf16) {
  std::vector<float> v;
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint16_t hh = static_cast<uint16_t>(h);
    const float f = bf16 ? bf16_to_f32(hh) : f16_to_f32(hh);
    const uint32_t b = float_bits(f);
    v.push_back(f);
    if (!std::isfinite(f)) continue;
    const float next =
        bf16 ? bf16_to_f32(static_cast<uint16_t>(h + 1)) : f16_to_f32(static_cast<uint16_t>(h + 1));
    if (std::isfinite(next) && std::signbit(next) == std::signbit(f)) {
      const float mid = f + (next - f) * 0.5f;  // exact: both are on a coarser grid
      const uint32_t m = float_bits(mid);
      for (uint32_t d : {m - 1, m, m + 1}) v.push_back(bits_float(d));
    }
    for (uint32_t d : {b - 1, b + 1}) v.push_back(bits_float(d));
  }
  std::mt19937 rng(11);
  for (int i = 0; i < 200000; ++i) v.push_back(bits_float(static_cast<uint32_t>(rng())));
  for (float f : {65504.0f,
                  65519.0f,
                  65519.996f,
                  65520.0f,
                  -65520.0f,
                  1e9f,
                  -1e9f,
                  kInf,
                  -kInf,
                  kNaN,
                  -kNaN,
                  bits_float(0x7F800001),
                  bits_float(0xFFBFFFFF),
                  bits_float(0x7FFFFFFF),
                  bits_float(0x7F7FFFFF),
                  bits_float(0xFF7F8000),
                  bits_float(0x7F7F7FFF),
                  bits_float(0x7F7F8000),
                  bits_float(1),
                  bits_float(0x80000001),
                  0.0f,
                  -0.0f,
                  std::ldexp(1.0f, -25),
                  std::ldexp(1.0f, -24),
                  std::ldexp(1.5f, -25),
                  std::ldexp(1.0f, -14),
                  std::ldexp(1.0f, -15)})
    v.push_back(f);
  return v;
}

TEST_P(SimdKernels, FloatToHalfMatchesScalar) {
  for (bool saturate : {false, true}) {
    SCOPED_TRACE(saturate ? "saturate" : "no saturate");
    auto bound = [&](auto fn) {
      return [fn, saturate](const float* in, uint16_t* out, size_t n) { fn(in, out, n, saturate); };
    };
    using Conv = std::function<void(const float*, uint16_t*, size_t)>;
    check_conversion<float, uint16_t, Conv>(
        rounding_probes(false), bound(ref().f32_to_f16), bound(simd_->f32_to_f16),
        [](uint16_t a, uint16_t b) { return same_half(a, b, false); });
    check_conversion<float, uint16_t, Conv>(
        rounding_probes(true), bound(ref().f32_to_bf16), bound(simd_->f32_to_bf16),
        [](uint16_t a, uint16_t b) { return same_half(a, b, true); });
  }
}

TEST_P(SimdKernels, AddMatchesScalar) {
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (size_t n : {0, 1, 7, 8, 9, 31, 63, 64, 65, 1000, 4099}) {
    Guarded<float> in(n), a(n), b(n);
    fill(rng, in.data(), n, Fill::kSpecial, 8, 64);
    fill(rng, a.data(), n, Fill::kSpecial, 8, 64);
    std::memcpy(b.data(), a.data(), n * sizeof(float));
    ref().add_f32(in.data(), a.data(), n);
    simd_->add_f32(in.data(), b.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(a[i], b[i])) << n << " " << i;
  }
}

// The element-wise codecs' kernels: v = x + r, then r = v - sent except where v is not finite.
TEST_P(SimdKernels, FeedbackMatchesScalar) {
  std::mt19937 rng(45);
  for (size_t n : {size_t{0}, size_t{1}, size_t{15}, size_t{16}, size_t{17}, size_t{1000}}) {
    std::vector<float> x(n), r0(n), sent(n), va(n), vb(n);
    fill(rng, x.data(), n, Fill::kSpecial, 8, 64);
    fill(rng, r0.data(), n, Fill::kSpecial, 8, 64);
    fill(rng, sent.data(), n, Fill::kSpecial, 8, 64);
    ref().add3_f32(x.data(), r0.data(), va.data(), n);
    simd_->add3_f32(x.data(), r0.data(), vb.data(), n);
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(va[i], vb[i])) << n << " " << i;
    std::vector<float> ra = r0, rb = r0;
    const size_t bad_a = ref().feedback(va.data(), sent.data(), ra.data(), n);
    const size_t bad_b = simd_->feedback(va.data(), sent.data(), rb.data(), n);
    ASSERT_EQ(bad_a, bad_b) << n;
    for (size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(ra[i], rb[i])) << n << " " << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Simd, SimdKernels,
                         testing::Values(Isa{"avx2", cpu::avx2_kernels, cpu::cpu_has_avx2},
                                         Isa{"avx512", cpu::avx512_kernels, cpu::cpu_has_avx512}),
                         isa_name);

// Whole frames: a codec on a SIMD table writes the same bytes and residuals as one on the scalar
// table, step after step (the stochastic stream advances per encode), for fp32 and 16-bit inputs.
class SimdCodec : public SimdKernels {};

TEST_P(SimdCodec, FramesMatchScalar) {
  const char* specs[] = {"q8",
                         "q4:block=64",
                         "q3:block=8",
                         "q8:round=stochastic:seed=3",
                         "q5:block=24:round=stochastic:seed=9",
                         "q16",
                         "q2:block=4096",
                         "q12:block=40:round=stochastic"};
  std::mt19937 rng(21);
  for (const char* spec : specs) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
      SCOPED_TRACE(std::string(spec) + " dtype " + std::to_string(dtype));
      std::unique_ptr<Codec> a, b;
      ASSERT_TRUE(Codec::create(spec, ref(), &a).ok());
      ASSERT_TRUE(Codec::create(spec, *simd_, &b).ok());
      const size_t n = 70001;
      std::vector<float> ra(n, 0.0f), rb(n, 0.0f);
      for (int step = 0; step < 3; ++step) {
        std::vector<float> x(n);
        fill(rng, x.data(), n, step == 2 ? Fill::kSpecial : Fill::kGradient, 8, 256);
        std::vector<uint16_t> half(n);
        if (dtype == GP_FLOAT16) ref().f32_to_f16(x.data(), half.data(), n, true);
        if (dtype == GP_BFLOAT16) ref().f32_to_bf16(x.data(), half.data(), n, true);
        const void* in = dtype == GP_FLOAT32 ? static_cast<const void*>(x.data()) : half.data();
        std::vector<uint8_t> fa(a->max_encoded_bytes(n, dtype)), fb(b->max_encoded_bytes(n, dtype));
        size_t na = 0, nb = 0;
        ASSERT_TRUE(a->encode(in, n, dtype, ra.data(), fa.data(), fa.size(), &na).ok());
        ASSERT_TRUE(b->encode(in, n, dtype, rb.data(), fb.data(), fb.size(), &nb).ok());
        ASSERT_EQ(na, nb);
        ASSERT_EQ(std::memcmp(fa.data(), fb.data(), na), 0) << "frames differ at step " << step;
        for (size_t i = 0; i < n; ++i)
          ASSERT_EQ(float_bits(ra[i]), float_bits(rb[i])) << "residual " << i;
        std::vector<float> da(n, 1.0f), db(n, 1.0f);
        ASSERT_TRUE(decode_frame(fa.data(), na, da.data(), n, GP_FLOAT32, true, &ref()).ok());
        ASSERT_TRUE(decode_frame(fa.data(), na, db.data(), n, GP_FLOAT32, true, simd_).ok());
        for (size_t i = 0; i < n; ++i) ASSERT_TRUE(same_float(da[i], db[i])) << "decoded " << i;
      }
      EXPECT_EQ(a->stats().nonfinite_blocks, b->stats().nonfinite_blocks);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Simd, SimdCodec,
                         testing::Values(Isa{"avx2", cpu::avx2_kernels, cpu::cpu_has_avx2},
                                         Isa{"avx512", cpu::avx512_kernels, cpu::cpu_has_avx512}),
                         isa_name);

}  // namespace
}  // namespace gradpack
