// SPDX-License-Identifier: Apache-2.0
// The reduction kernels: every dtype x op of every kernel table against a reference written here
// (and hand-checked edge values), the SIMD tables bit for bit against the scalar one over ragged
// lengths, misaligned and aliased buffers, divide(), and the dispatch's argument checks. Buffers
// end at an inaccessible page, so a kernel that reads or writes past the end crashes the test.
#include "collectives/reduce/reduce.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include "collectives/reduce/reduce_kernels.h"
#include "common/float16.h"

namespace gradpack::coll {
namespace {

constexpr gp_dtype_t kDtypes[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16, GP_FLOAT64,
                                  GP_INT32,   GP_INT64,   GP_INT8,     GP_UINT8};
constexpr gp_redop_t kOps[] = {GP_SUM, GP_PROD, GP_MIN, GP_MAX, GP_AVG};

size_t dtype_size(gp_dtype_t d) {
  switch (d) {
    case GP_FLOAT64:
    case GP_INT64:
      return 8;
    case GP_FLOAT32:
    case GP_INT32:
      return 4;
    case GP_FLOAT16:
    case GP_BFLOAT16:
      return 2;
    default:
      return 1;
  }
}

const char* dtype_name(gp_dtype_t d) {
  static const char* names[] = {"f32", "f16", "bf16", "f64", "i32", "i64", "i8", "u8"};
  return names[d];
}
const char* op_name(gp_redop_t op) {
  static const char* names[] = {"sum", "prod", "min", "max", "avg"};
  return names[op];
}

// `bytes` bytes that start `offset` bytes past a 64-byte boundary and end at a PROT_NONE page.
class Guarded {
 public:
  Guarded(size_t bytes, size_t offset) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    const size_t pages = (bytes + offset + 64 + page - 1) / page + 1;
    size_ = pages * page;
    void* base = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (base == MAP_FAILED) std::abort();
    base_ = static_cast<uint8_t*>(base);
    mprotect(base_ + size_ - page, page, PROT_NONE);
    // The end touches the page; the start is moved down to the requested alignment, and the gap
    // up to the page is left unused (its bytes are never read).
    uint8_t* end = base_ + size_ - page;
    uint8_t* start = end - bytes;
    start -= (reinterpret_cast<uintptr_t>(start) % 64 + 64 - offset) % 64;
    data_ = start;
    bytes_ = bytes;
  }
  ~Guarded() { munmap(base_, size_); }
  Guarded(const Guarded&) = delete;
  Guarded& operator=(const Guarded&) = delete;
  uint8_t* data() { return data_; }

 private:
  uint8_t* base_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0, bytes_ = 0;
};

// ---- the reference: one element at a time, written for clarity ----

template <class F, class B>
F from_bits(B b) {
  static_assert(sizeof(F) == sizeof(B));
  F f;
  std::memcpy(&f, &b, sizeof f);
  return f;
}

template <class F>
F ref_float(gp_redop_t op, F a, F b) {
  F nan;
  if constexpr (std::is_same_v<F, float>) {
    nan = from_bits<F>(uint32_t{0x7FC00000});
  } else {
    nan = from_bits<F>(uint64_t{0x7FF8000000000000});
  }
  if (std::isnan(a) || std::isnan(b)) return nan;
  F r;
  switch (op) {
    case GP_PROD:
      r = a * b;
      break;
    case GP_MIN:
      r = (a < b || (a == b && std::signbit(a))) ? a : b;
      break;
    case GP_MAX:
      r = (a > b || (a == b && !std::signbit(a))) ? a : b;
      break;
    default:
      r = a + b;
      break;
  }
  return std::isnan(r) ? nan : r;
}

template <class T>
T ref_int(gp_redop_t op, T a, T b) {
  switch (op) {
    case GP_PROD:
      return static_cast<T>(static_cast<uint64_t>(a) * static_cast<uint64_t>(b));
    case GP_MIN:
      return std::min(a, b);
    case GP_MAX:
      return std::max(a, b);
    default:
      return static_cast<T>(static_cast<uint64_t>(a) + static_cast<uint64_t>(b));
  }
}

template <class T>
T get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

void ref_element(gp_dtype_t d, gp_redop_t op, const uint8_t* a, const uint8_t* b, uint8_t* out) {
  switch (d) {
    case GP_FLOAT32:
      return put(out, ref_float(op, get<float>(a), get<float>(b)));
    case GP_FLOAT64:
      return put(out, ref_float(op, get<double>(a), get<double>(b)));
    case GP_FLOAT16:
      return put(out, f32_to_f16(ref_float(op, f16_to_f32(get<uint16_t>(a)),
                                           f16_to_f32(get<uint16_t>(b)))));
    case GP_BFLOAT16:
      return put(out, f32_to_bf16(ref_float(op, bf16_to_f32(get<uint16_t>(a)),
                                            bf16_to_f32(get<uint16_t>(b)))));
    case GP_INT32:
      return put(out, ref_int(op, get<int32_t>(a), get<int32_t>(b)));
    case GP_INT64:
      return put(out, ref_int(op, get<int64_t>(a), get<int64_t>(b)));
    case GP_INT8:
      return put(out, ref_int(op, get<int8_t>(a), get<int8_t>(b)));
    case GP_UINT8:
      return put(out, ref_int(op, get<uint8_t>(a), get<uint8_t>(b)));
  }
}

void ref_divide(gp_dtype_t d, uint8_t* p, int n) {
  switch (d) {
    case GP_FLOAT32:
      return put(p, get<float>(p) / static_cast<float>(n));
    case GP_FLOAT64:
      return put(p, get<double>(p) / static_cast<double>(n));
    case GP_FLOAT16:
      return put(p, f32_to_f16(f16_to_f32(get<uint16_t>(p)) / static_cast<float>(n)));
    case GP_BFLOAT16:
      return put(p, f32_to_bf16(bf16_to_f32(get<uint16_t>(p)) / static_cast<float>(n)));
    case GP_INT32:
      return put(p, static_cast<int32_t>(get<int32_t>(p) / n));
    case GP_INT64:
      return put(p, static_cast<int64_t>(get<int64_t>(p) / n));
    case GP_INT8:
      return put(p, static_cast<int8_t>(get<int8_t>(p) / n));
    case GP_UINT8:
      return put(p, static_cast<uint8_t>(get<uint8_t>(p) / n));
  }
}

std::string hex(const uint8_t* p, size_t size) {
  uint64_t v = 0;
  std::memcpy(&v, p, size);
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%0*llx", static_cast<int>(2 * size),
                static_cast<unsigned long long>(v));
  return buf;
}

// The first element where x and y differ, described; "" when equal.
std::string first_difference(gp_dtype_t d, const uint8_t* x, const uint8_t* y, size_t n) {
  const size_t s = dtype_size(d);
  for (size_t i = 0; i < n; ++i)
    if (std::memcmp(x + i * s, y + i * s, s) != 0)
      return "element " + std::to_string(i) + ": " + hex(x + i * s, s) + " vs " + hex(y + i * s, s);
  return "";
}

// ---- inputs ----

// Specials of each dtype, as bits: NaNs (quiet, signalling, negative, with payload), infinities,
// zeros, subnormals, extremes, one.
std::vector<uint64_t> specials(gp_dtype_t d) {
  switch (d) {
    case GP_FLOAT32:
      return {0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FA12345, 0x7F800000,
              0xFF800000, 0,          0x80000000, 1,          0x807FFFFF,
              0x7F7FFFFF, 0xFF7FFFFF, 0x00800000, 0x3F800000, 0xBF800000};
    case GP_FLOAT64:
      return {0x7FF8000000000000,
              0xFFF8000000000000,
              0x7FF0000000000001,
              0x7FF4123456789ABC,
              0x7FF0000000000000,
              0xFFF0000000000000,
              0,
              0x8000000000000000,
              1,
              0x800FFFFFFFFFFFFF,
              0x7FEFFFFFFFFFFFFF,
              0xFFEFFFFFFFFFFFFF,
              0x0010000000000000,
              0x3FF0000000000000,
              0xBFF0000000000000};
    case GP_FLOAT16:
      return {0x7E00, 0xFE00, 0x7C01, 0x7D55, 0x7C00, 0xFC00, 0,      0x8000,
              1,      0x83FF, 0x7BFF, 0xFBFF, 0x0400, 0x3C00, 0xBC00, 0x3C01};
    case GP_BFLOAT16:
      return {0x7FC0, 0xFFC0, 0x7F81, 0x7FA5, 0x7F80, 0xFF80, 0,      0x8000,
              1,      0x807F, 0x7F7F, 0xFF7F, 0x0080, 0x3F80, 0xBF80, 0x3F81};
    case GP_INT32:
      return {0, 1, 0xFFFFFFFF, 0x80000000, 0x7FFFFFFF, 0x80000001, 0x7FFFFFFE, 2, 0xFFFFFFFE};
    case GP_INT64:
      return {0, 1, ~0ull, 1ull << 63, ~0ull >> 1, (1ull << 63) + 1, 2, ~1ull};
    case GP_INT8:
    case GP_UINT8:
      return {0, 1, 0xFF, 0x80, 0x7F, 0x81, 0x7E, 2, 0xFE};
  }
  return {};
}

bool is_float(gp_dtype_t d) { return d <= GP_FLOAT64; }

// Bits of a finite value of moderate size, so that sums and products round rather than overflow.
uint64_t moderate(std::mt19937_64& rng, gp_dtype_t d) {
  std::normal_distribution<double> normal(0.0, 1.0);
  const double v = std::ldexp(normal(rng), static_cast<int>(rng() % 17) - 8);
  switch (d) {
    case GP_FLOAT32:
      return float_bits(static_cast<float>(v));
    case GP_FLOAT64: {
      uint64_t b;
      std::memcpy(&b, &v, sizeof b);
      return b;
    }
    case GP_FLOAT16:
      return f32_to_f16(static_cast<float>(v));
    case GP_BFLOAT16:
      return f32_to_bf16(static_cast<float>(v));
    default:
      return static_cast<uint64_t>(static_cast<int64_t>(v * 1000));
  }
}

// n elements each of a and b: random bits, specials, equal or opposite pairs (zeros of both signs
// for MIN/MAX and SUM), moderate values.
void fill_pair(std::mt19937_64& rng, gp_dtype_t d, uint8_t* a, uint8_t* b, size_t n) {
  const size_t s = dtype_size(d);
  const std::vector<uint64_t> sp = specials(d);
  const uint64_t sign = uint64_t{1} << (8 * s - 1);
  for (size_t i = 0; i < n; ++i) {
    uint64_t x = rng(), y = rng();
    switch (rng() % 6) {
      case 0:
        break;
      case 1:
        x = sp[rng() % sp.size()];
        y = rng() % 2 ? sp[rng() % sp.size()] : moderate(rng, d);
        break;
      case 2:
        x = rng() % 2 ? sp[rng() % sp.size()] : moderate(rng, d);
        y = rng() % 2 ? x : (is_float(d) ? x ^ sign : ~x + 1);
        break;
      default:
        x = moderate(rng, d);
        y = moderate(rng, d);
        break;
    }
    if (rng() % 2) std::swap(x, y);
    std::memcpy(a + i * s, &x, s);
    std::memcpy(b + i * s, &y, s);
  }
}

// ---- tables ----

std::vector<const ReduceKernels*> available_tables() {
  std::vector<const ReduceKernels*> tables;
  for (const char* name : {"scalar", "avx2", "avx512"}) {
    const ReduceKernels* t = nullptr;
    if (reduce_kernels_by_name(name, &t).ok()) tables.push_back(t);
  }
  return tables;
}

// Gets the table named `isa`, or skips the test when this CPU or build lacks it.
#define GET_TABLE_OR_SKIP(isa, table)                                  \
  do {                                                                 \
    Status s_ = reduce_kernels_by_name(isa, &(table));                 \
    if (s_.code() == Code::kUnsupported) GTEST_SKIP() << s_.message(); \
    ASSERT_TRUE(s_.ok()) << s_.to_string();                            \
  } while (0)

// ---- hand-checked edge values, through every table ----

struct Edge {
  gp_dtype_t dtype;
  gp_redop_t op;
  uint64_t a, b, expected;
};

const Edge kEdges[] = {
    // f32: NaN in either operand gives the canonical NaN, whatever its sign or payload.
    {GP_FLOAT32, GP_SUM, 0xFFC12345, 0x3F800000, 0x7FC00000},
    {GP_FLOAT32, GP_SUM, 0x3F800000, 0x7F800001, 0x7FC00000},
    {GP_FLOAT32, GP_PROD, 0xFFC00000, 0x7FA00000, 0x7FC00000},
    {GP_FLOAT32, GP_MIN, 0x7FC00000, 0xFF800000, 0x7FC00000},
    {GP_FLOAT32, GP_MIN, 0xFF800000, 0xFFC00001, 0x7FC00000},
    {GP_FLOAT32, GP_MAX, 0x7F800000, 0x7FC00000, 0x7FC00000},
    {GP_FLOAT32, GP_SUM, 0x7F800000, 0xFF800000, 0x7FC00000},   // Inf - Inf
    {GP_FLOAT32, GP_PROD, 0x7F800000, 0x80000000, 0x7FC00000},  // Inf * -0
    {GP_FLOAT32, GP_SUM, 0x7F7FFFFF, 0x7F7FFFFF, 0x7F800000},   // overflow
    {GP_FLOAT32, GP_SUM, 0x00000001, 0x00000001, 0x00000002},   // subnormals, exact
    {GP_FLOAT32, GP_PROD, 0x00800000, 0x3F000000, 0x00400000},  // into the subnormals
    {GP_FLOAT32, GP_SUM, 0x80000000, 0x80000000, 0x80000000},   // -0 + -0
    {GP_FLOAT32, GP_SUM, 0x00000000, 0x80000000, 0x00000000},   // +0 + -0
    {GP_FLOAT32, GP_MIN, 0x00000000, 0x80000000, 0x80000000},
    {GP_FLOAT32, GP_MIN, 0x80000000, 0x00000000, 0x80000000},
    {GP_FLOAT32, GP_MAX, 0x00000000, 0x80000000, 0x00000000},
    {GP_FLOAT32, GP_MAX, 0x80000000, 0x00000000, 0x00000000},
    {GP_FLOAT32, GP_MIN, 0xFF800000, 0x7F7FFFFF, 0xFF800000},
    {GP_FLOAT32, GP_MAX, 0x00000001, 0x80000001, 0x00000001},
    {GP_FLOAT32, GP_AVG, 0x3F800000, 0x40000000, 0x40400000},
    // f64
    {GP_FLOAT64, GP_SUM, 0xFFF8000000000123, 0, 0x7FF8000000000000},
    {GP_FLOAT64, GP_MIN, 0, 0x8000000000000000, 0x8000000000000000},
    {GP_FLOAT64, GP_MAX, 0x8000000000000000, 0, 0},
    {GP_FLOAT64, GP_MAX, 0x3FF0000000000000, 0x7FF0000000000001, 0x7FF8000000000000},
    {GP_FLOAT64, GP_PROD, 0x3FF8000000000000, 0x4000000000000000, 0x4008000000000000},
    {GP_FLOAT64, GP_SUM, 1, 0x8000000000000001, 0},
    // f16: ties round to even, 65504 + 16 = 65520 ties up to Inf, subnormals, NaN.
    {GP_FLOAT16, GP_SUM, 0x3C00, 0x1000, 0x3C00},  // 1 + 2^-11 -> 1
    {GP_FLOAT16, GP_SUM, 0x3C01, 0x1000, 0x3C02},  // odd + half ulp -> up to even
    {GP_FLOAT16, GP_SUM, 0x7BFF, 0x4C00, 0x7C00},
    {GP_FLOAT16, GP_SUM, 0x7BFF, 0x4BFF, 0x7BFF},
    {GP_FLOAT16, GP_SUM, 0x0001, 0x0001, 0x0002},
    {GP_FLOAT16, GP_PROD, 0x0400, 0x3800, 0x0200},  // 2^-14 * 0.5 -> subnormal
    {GP_FLOAT16, GP_PROD, 0x0001, 0x3800, 0x0000},  // 2^-25: a tie, to even zero
    {GP_FLOAT16, GP_PROD, 0x0003, 0x3800, 0x0002},  // 1.5 * 2^-24: a tie, to even
    {GP_FLOAT16, GP_SUM, 0xFD00, 0x3C00, 0x7E00},
    {GP_FLOAT16, GP_SUM, 0x7C00, 0xFC00, 0x7E00},
    {GP_FLOAT16, GP_MIN, 0x0000, 0x8000, 0x8000},
    {GP_FLOAT16, GP_MAX, 0x8000, 0x0000, 0x0000},
    {GP_FLOAT16, GP_MIN, 0x3C00, 0x7C01, 0x7E00},
    {GP_FLOAT16, GP_MAX, 0xFBFF, 0x83FF, 0x83FF},
    // bf16
    {GP_BFLOAT16, GP_SUM, 0x3F80, 0x3B80, 0x3F80},  // 1 + 2^-8 -> 1
    {GP_BFLOAT16, GP_SUM, 0x3F81, 0x3B80, 0x3F82},
    {GP_BFLOAT16, GP_SUM, 0x7F7F, 0x7F7F, 0x7F80},
    {GP_BFLOAT16, GP_SUM, 0x0001, 0x0001, 0x0002},
    {GP_BFLOAT16, GP_PROD, 0xFFC1, 0x3F80, 0x7FC0},
    {GP_BFLOAT16, GP_MIN, 0x8000, 0x0000, 0x8000},
    {GP_BFLOAT16, GP_MAX, 0x7F80, 0xFF80, 0x7F80},
    {GP_BFLOAT16, GP_MAX, 0x3F80, 0x7F81, 0x7FC0},
    // Integers wrap.
    {GP_INT32, GP_SUM, 0x7FFFFFFF, 1, 0x80000000},
    {GP_INT32, GP_SUM, 0x80000000, 0xFFFFFFFF, 0x7FFFFFFF},
    {GP_INT32, GP_PROD, 0x80000000, 0xFFFFFFFF, 0x80000000},
    {GP_INT32, GP_PROD, 0x00010000, 0x00010000, 0},
    {GP_INT32, GP_PROD, 0xFFFFFFFD, 0x00000007, 0xFFFFFFEB},  // -3 * 7
    {GP_INT32, GP_MIN, 0x80000000, 0x7FFFFFFF, 0x80000000},
    {GP_INT32, GP_MAX, 0xFFFFFFFF, 0, 0},
    {GP_INT64, GP_SUM, 0x7FFFFFFFFFFFFFFF, 1, 0x8000000000000000},
    {GP_INT64, GP_PROD, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0x8000000000000000},
    {GP_INT64, GP_PROD, 0x100000000, 0x100000001, 0x100000000},
    {GP_INT64, GP_PROD, 0xFFFFFFFFFFFFFFFE, 0x123456789, 0xFFFFFFFDB97530EE},
    {GP_INT64, GP_MIN, 0x8000000000000000, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000},
    {GP_INT64, GP_MAX, 0xFFFFFFFFFFFFFFFF, 1, 1},
    {GP_INT8, GP_SUM, 0x7F, 0x01, 0x80},
    {GP_INT8, GP_PROD, 0x80, 0xFF, 0x80},  // -128 * -1
    {GP_INT8, GP_PROD, 0x10, 0x10, 0x00},
    {GP_INT8, GP_PROD, 0xFD, 0x05, 0xF1},  // -3 * 5
    {GP_INT8, GP_MIN, 0x80, 0x7F, 0x80},
    {GP_INT8, GP_MAX, 0xFF, 0x00, 0x00},
    {GP_UINT8, GP_SUM, 0xFF, 0x01, 0x00},
    {GP_UINT8, GP_PROD, 200, 2, 144},
    {GP_UINT8, GP_MIN, 0x80, 0x7F, 0x7F},
    {GP_UINT8, GP_MAX, 0xFF, 0x00, 0xFF},
    {GP_UINT8, GP_AVG, 250, 10, 4},
};

TEST(ReduceEdges, HandCheckedValuesOnEveryTable) {
  // 67 copies: the main loop, a single vector and the tail of every table see the value.
  constexpr size_t kN = 67;
  for (const ReduceKernels* table : available_tables()) {
    for (const Edge& e : kEdges) {
      SCOPED_TRACE(std::string(table->name) + " " + dtype_name(e.dtype) + " " + op_name(e.op) +
                   " " + hex(reinterpret_cast<const uint8_t*>(&e.a), dtype_size(e.dtype)) + ", " +
                   hex(reinterpret_cast<const uint8_t*>(&e.b), dtype_size(e.dtype)));
      const size_t s = dtype_size(e.dtype);
      std::vector<uint8_t> a(kN * s), b(kN * s), d(kN * s), ref(s);
      for (size_t i = 0; i < kN; ++i) {
        std::memcpy(&a[i * s], &e.a, s);
        std::memcpy(&b[i * s], &e.b, s);
      }
      ref_element(e.dtype, e.op, a.data(), b.data(), ref.data());
      ASSERT_EQ(hex(ref.data(), s), hex(reinterpret_cast<const uint8_t*>(&e.expected), s))
          << "the test's reference disagrees with the hand-checked value";
      table->reduce[e.dtype][e.op](d.data(), a.data(), b.data(), kN);
      for (size_t i = 0; i < kN; ++i)
        ASSERT_EQ(hex(&d[i * s], s), hex(ref.data(), s)) << "element " << i;
    }
  }
}

// ---- per table ----

std::string isa_name(const testing::TestParamInfo<const char*>& param) {
  return std::string(param.param);
}

class ReduceTable : public testing::TestWithParam<const char*> {};

TEST_P(ReduceTable, EveryDtypeAndOpMatchesReference) {
  const ReduceKernels* table = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), table);
  std::mt19937_64 rng(11);
  constexpr size_t kN = 4099;
  for (gp_dtype_t d : kDtypes) {
    const size_t s = dtype_size(d);
    std::vector<uint8_t> a(kN * s), b(kN * s), out(kN * s), ref(kN * s);
    for (gp_redop_t op : kOps) {
      SCOPED_TRACE(std::string(dtype_name(d)) + " " + op_name(op));
      fill_pair(rng, d, a.data(), b.data(), kN);
      for (size_t i = 0; i < kN; ++i) ref_element(d, op, &a[i * s], &b[i * s], &ref[i * s]);
      table->reduce[d][op](out.data(), a.data(), b.data(), kN);
      ASSERT_EQ(first_difference(d, ref.data(), out.data(), kN), "");
    }
  }
}

// dst == a, dst == b and dst == a == b give what a separate dst gets.
TEST_P(ReduceTable, InPlace) {
  const ReduceKernels* table = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), table);
  std::mt19937_64 rng(12);
  for (size_t n : {size_t{1}, size_t{33}, size_t{1000}, size_t{4099}}) {
    for (gp_dtype_t d : kDtypes) {
      const size_t s = dtype_size(d);
      std::vector<uint8_t> a(n * s), b(n * s), sep(n * s);
      for (gp_redop_t op : kOps) {
        SCOPED_TRACE(std::string(dtype_name(d)) + " " + op_name(op) + " n " + std::to_string(n));
        fill_pair(rng, d, a.data(), b.data(), n);
        const ReduceFn fn = table->reduce[d][op];
        fn(sep.data(), a.data(), b.data(), n);
        std::vector<uint8_t> x = a;
        fn(x.data(), x.data(), b.data(), n);
        ASSERT_EQ(first_difference(d, sep.data(), x.data(), n), "") << "dst == a";
        x = b;
        fn(x.data(), a.data(), x.data(), n);
        ASSERT_EQ(first_difference(d, sep.data(), x.data(), n), "") << "dst == b";
        std::vector<uint8_t> self(n * s);
        fn(self.data(), a.data(), a.data(), n);
        x = a;
        fn(x.data(), x.data(), x.data(), n);
        ASSERT_EQ(first_difference(d, self.data(), x.data(), n), "") << "dst == a == b";
      }
    }
  }
}

TEST_P(ReduceTable, DivideMatchesReference) {
  const ReduceKernels* table = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), table);
  std::mt19937_64 rng(13);
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{33}, size_t{1000}}) {
    for (gp_dtype_t d : kDtypes) {
      const size_t s = dtype_size(d);
      std::vector<uint8_t> x(n * s), unused(n * s);
      for (int ranks = 2; ranks <= 7; ++ranks) {
        SCOPED_TRACE(std::string(dtype_name(d)) + " n " + std::to_string(n) + " / " +
                     std::to_string(ranks));
        fill_pair(rng, d, x.data(), unused.data(), n);
        std::vector<uint8_t> ref = x;
        for (size_t i = 0; i < n; ++i) ref_divide(d, &ref[i * s], ranks);
        table->divide[d](x.data(), n, ranks);
        ASSERT_EQ(first_difference(d, ref.data(), x.data(), n), "");
      }
    }
  }
}

TEST_P(ReduceTable, AvgIsSum) {
  const ReduceKernels* table = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), table);
  for (gp_dtype_t d : kDtypes) EXPECT_EQ(table->reduce[d][GP_AVG], table->reduce[d][GP_SUM]);
}

INSTANTIATE_TEST_SUITE_P(Isa, ReduceTable, testing::Values("scalar", "avx2", "avx512"), isa_name);

// ---- SIMD tables against the scalar one, bit for bit ----

class ReduceSimd : public testing::TestWithParam<const char*> {};

TEST_P(ReduceSimd, BitIdenticalToScalarOnRaggedMisalignedBuffers) {
  const ReduceKernels* simd = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), simd);
  const ReduceKernels& scalar = scalar_reduce_kernels();
  std::mt19937_64 rng(14);
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{33}, size_t{1000}, size_t{4099}}) {
    for (gp_dtype_t d : kDtypes) {
      const size_t s = dtype_size(d);
      // Offsets from a 64-byte boundary, in whole elements: aligned, and misaligned by one or more
      // elements, differently for each buffer.
      for (size_t shift : {size_t{0}, size_t{1}, size_t{3}}) {
        Guarded a(n * s, (shift * s) % 64), b(n * s, (2 * shift * s) % 64),
            d1(n * s, (3 * shift * s) % 64), d2(n * s, (5 * shift * s + s) % 64);
        for (gp_redop_t op : kOps) {
          SCOPED_TRACE(std::string(simd->name) + " " + dtype_name(d) + " " + op_name(op) + " n " +
                       std::to_string(n) + " shift " + std::to_string(shift));
          if (rng() % 2) {
            fill_pair(rng, d, a.data(), b.data(), n);
          } else {
            for (size_t i = 0; i < n * s; ++i) {
              a.data()[i] = static_cast<uint8_t>(rng());
              b.data()[i] = static_cast<uint8_t>(rng());
            }
          }
          scalar.reduce[d][op](d1.data(), a.data(), b.data(), n);
          simd->reduce[d][op](d2.data(), a.data(), b.data(), n);
          ASSERT_EQ(first_difference(d, d1.data(), d2.data(), n), "");
        }
        for (int ranks = 2; ranks <= 7; ranks += 5) {
          fill_pair(rng, d, a.data(), b.data(), n);
          std::memcpy(d1.data(), a.data(), n * s);
          std::memcpy(d2.data(), a.data(), n * s);
          scalar.divide[d](d1.data(), n, ranks);
          simd->divide[d](d2.data(), n, ranks);
          ASSERT_EQ(first_difference(d, d1.data(), d2.data(), n), "")
              << simd->name << " divide " << dtype_name(d) << " n " << n << " / " << ranks;
        }
      }
    }
  }
}

// Every pair of 16-bit values in a strided sample (about 16 million sums each), so that every
// rounding path of the conversions is reached.
TEST_P(ReduceSimd, SixteenBitPairsBitIdenticalToScalar) {
  const ReduceKernels* simd = nullptr;
  GET_TABLE_OR_SKIP(GetParam(), simd);
  const ReduceKernels& scalar = scalar_reduce_kernels();
  constexpr size_t kN = 65536;
  std::vector<uint16_t> a(kN), b(kN), d1(kN), d2(kN);
  for (size_t i = 0; i < kN; ++i) a[i] = static_cast<uint16_t>(i);
  for (gp_dtype_t d : {GP_FLOAT16, GP_BFLOAT16}) {
    for (gp_redop_t op : {GP_SUM, GP_PROD, GP_MIN, GP_MAX}) {
      for (uint32_t step = 0; step < 65536; step += 257) {
        for (size_t i = 0; i < kN; ++i) b[i] = static_cast<uint16_t>(i * 40503u + step);
        scalar.reduce[d][op](d1.data(), a.data(), b.data(), kN);
        simd->reduce[d][op](d2.data(), a.data(), b.data(), kN);
        ASSERT_EQ(first_difference(d, reinterpret_cast<uint8_t*>(d1.data()),
                                   reinterpret_cast<uint8_t*>(d2.data()), kN),
                  "")
            << dtype_name(d) << " " << op_name(op) << " step " << step;
      }
    }
    // divide over every 16-bit pattern.
    for (int ranks = 2; ranks <= 7; ++ranks) {
      d1 = a;
      d2 = a;
      scalar.divide[d](d1.data(), kN, ranks);
      simd->divide[d](d2.data(), kN, ranks);
      ASSERT_EQ(first_difference(d, reinterpret_cast<uint8_t*>(d1.data()),
                                 reinterpret_cast<uint8_t*>(d2.data()), kN),
                "")
          << dtype_name(d) << " divide by " << ranks;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Isa, ReduceSimd, testing::Values("avx2", "avx512"), isa_name);

// ---- the public functions ----

TEST(Reduce, DivideIntegersTruncateTowardZero) {
  const int32_t i32[] = {7, -7, 6, -6, 1, -1, 0, INT32_MAX, INT32_MIN};
  const int64_t i64[] = {7, -7, INT64_MAX, INT64_MIN, -1};
  const int8_t i8[] = {7, -7, 127, -128, -1, 1};
  const uint8_t u8[] = {7, 255, 0, 1, 128};
  for (int n = 1; n <= 7; ++n) {
    SCOPED_TRACE("n " + std::to_string(n));
    std::vector<int32_t> x32(std::begin(i32), std::end(i32));
    divide(x32.data(), x32.size(), GP_INT32, n);
    for (size_t i = 0; i < x32.size(); ++i) EXPECT_EQ(x32[i], i32[i] / n) << i32[i];
    std::vector<int64_t> x64(std::begin(i64), std::end(i64));
    divide(x64.data(), x64.size(), GP_INT64, n);
    for (size_t i = 0; i < x64.size(); ++i) EXPECT_EQ(x64[i], i64[i] / n) << i64[i];
    std::vector<int8_t> x8(std::begin(i8), std::end(i8));
    divide(x8.data(), x8.size(), GP_INT8, n);
    for (size_t i = 0; i < x8.size(); ++i) EXPECT_EQ(x8[i], i8[i] / n) << int{i8[i]};
    std::vector<uint8_t> xu(std::begin(u8), std::end(u8));
    divide(xu.data(), xu.size(), GP_UINT8, n);
    for (size_t i = 0; i < xu.size(); ++i) EXPECT_EQ(xu[i], u8[i] / n) << int{u8[i]};
  }
  // -7 / 2 is -3 (toward zero), not -4 (floor).
  int32_t v = -7;
  divide(&v, 1, GP_INT32, 2);
  EXPECT_EQ(v, -3);
}

TEST(Reduce, DivideEveryDtype) {
  std::mt19937_64 rng(15);
  constexpr size_t kN = 1001;
  for (gp_dtype_t d : kDtypes) {
    const size_t s = dtype_size(d);
    std::vector<uint8_t> x(kN * s), unused(kN * s);
    for (int n = 1; n <= 7; ++n) {
      SCOPED_TRACE(std::string(dtype_name(d)) + " / " + std::to_string(n));
      fill_pair(rng, d, x.data(), unused.data(), kN);
      std::vector<uint8_t> ref = x;
      if (n > 1)
        for (size_t i = 0; i < kN; ++i) ref_divide(d, &ref[i * s], n);
      divide(x.data(), kN, d, n);
      ASSERT_EQ(first_difference(d, ref.data(), x.data(), kN), "");
    }
  }
  // Floats divide in their own precision (fp16 through fp32): 1/3 is 0x3555 in fp16.
  uint16_t h = 0x3C00;
  divide(&h, 1, GP_FLOAT16, 3);
  EXPECT_EQ(h, 0x3555);
  float f = 1.0f;
  divide(&f, 1, GP_FLOAT32, 3);
  EXPECT_EQ(f, 1.0f / 3.0f);
  double g = 1.0;
  divide(&g, 1, GP_FLOAT64, 3);
  EXPECT_EQ(g, 1.0 / 3.0);
}

TEST(Reduce, RejectsBadDtypeAndOp) {
  ReduceFn fn = nullptr;
  Status s = reduce_fn(static_cast<gp_dtype_t>(8), GP_SUM, &fn);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("dtype 8"), std::string::npos) << s.message();
  s = reduce_fn(static_cast<gp_dtype_t>(-1), GP_SUM, &fn);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("dtype -1"), std::string::npos) << s.message();
  s = reduce_fn(GP_FLOAT32, static_cast<gp_redop_t>(5), &fn);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("op 5"), std::string::npos) << s.message();
  s = reduce_fn(GP_INT8, static_cast<gp_redop_t>(-3), &fn);
  EXPECT_EQ(s.code(), Code::kInvalidArgument);
  EXPECT_NE(s.message().find("op -3"), std::string::npos) << s.message();
  EXPECT_EQ(fn, nullptr);
  EXPECT_EQ(reduce_fn(GP_FLOAT32, GP_SUM, nullptr).code(), Code::kInvalidArgument);
}

TEST(Reduce, ReduceFnUsesTheSelectedTable) {
  const ReduceKernels* table = nullptr;
  ASSERT_TRUE(select_reduce_kernels(&table).ok());
  EXPECT_STREQ(reduce_isa_name(), table->name);
  for (gp_dtype_t d : kDtypes) {
    for (gp_redop_t op : kOps) {
      ReduceFn fn = nullptr;
      ASSERT_TRUE(reduce_fn(d, op, &fn).ok());
      EXPECT_EQ(fn, table->reduce[d][op]);
    }
  }
  // Through the public entry points: 1 + 2 = 3, averaged over 2 ranks.
  float a[3] = {1, 2, 3}, b[3] = {2, 4, 6};
  ReduceFn fn = nullptr;
  ASSERT_TRUE(reduce_fn(GP_FLOAT32, GP_AVG, &fn).ok());
  fn(a, a, b, 3);
  divide(a, 3, GP_FLOAT32, 2);
  EXPECT_EQ(a[0], 1.5f);
  EXPECT_EQ(a[1], 3.0f);
  EXPECT_EQ(a[2], 4.5f);
}

TEST(Reduce, KernelsByName) {
  const ReduceKernels* t = nullptr;
  EXPECT_EQ(reduce_kernels_by_name("sse9", &t).code(), Code::kInvalidArgument);
  ASSERT_TRUE(reduce_kernels_by_name("scalar", &t).ok());
  EXPECT_STREQ(t->name, "scalar");
  for (const char* isa : {"avx2", "avx512"}) {
    const Status s = reduce_kernels_by_name(isa, &t);
    EXPECT_TRUE(s.ok() || s.code() == Code::kUnsupported) << s.to_string();
    if (s.ok()) {
      EXPECT_STREQ(t->name, isa);
    }
  }
}

}  // namespace
}  // namespace gradpack::coll
