// SPDX-License-Identifier: Apache-2.0
// The scalar reduction kernels: the reference the SIMD tables are tested against, written one
// element at a time with the 16-bit conversions of common/float16.h.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

#include "collectives/reduce/reduce_kernels.h"
#include "common/float16.h"

namespace gradpack::coll {
namespace {

// How a dtype is stored and in which type it computes.
template <class S, class C = S>
struct Same {
  using Stored = S;
  using Compute = C;
  static C widen(S x) { return x; }
  static S narrow(C x) { return x; }
};
struct Half {
  using Stored = uint16_t;
  using Compute = float;
  static float widen(uint16_t x) { return f16_to_f32(x); }
  static uint16_t narrow(float x) { return f32_to_f16(x); }
};
struct Bfloat {
  using Stored = uint16_t;
  using Compute = float;
  static float widen(uint16_t x) { return bf16_to_f32(x); }
  static uint16_t narrow(float x) { return f32_to_bf16(x); }
};

template <gp_dtype_t D>
struct Element;
template <>
struct Element<GP_FLOAT32> : Same<float> {};
template <>
struct Element<GP_FLOAT16> : Half {};
template <>
struct Element<GP_BFLOAT16> : Bfloat {};
template <>
struct Element<GP_FLOAT64> : Same<double> {};
template <>
struct Element<GP_INT32> : Same<int32_t> {};
template <>
struct Element<GP_INT64> : Same<int64_t> {};
template <>
struct Element<GP_INT8> : Same<int8_t> {};
template <>
struct Element<GP_UINT8> : Same<uint8_t> {};

template <class F>
F canonical_nan() {
  if constexpr (std::is_same_v<F, float>) {
    return bits_float(0x7FC00000u);
  } else {
    const uint64_t bits = 0x7FF8000000000000ull;
    double d;
    std::memcpy(&d, &bits, sizeof d);
    return d;
  }
}

template <gp_redop_t Op, class F>
F float_op(F a, F b) {
  if constexpr (Op == GP_SUM || Op == GP_PROD) {
    const F r = Op == GP_SUM ? a + b : a * b;
    return std::isnan(r) ? canonical_nan<F>() : r;
  } else {
    if (std::isnan(a) || std::isnan(b)) return canonical_nan<F>();
    if (a < b) return Op == GP_MIN ? a : b;
    if (b < a) return Op == GP_MIN ? b : a;
    // Equal: the same value, or zeros of either sign; the minimum of zeros is -0.0.
    const bool a_first = Op == GP_MIN ? std::signbit(a) : !std::signbit(a);
    return a_first ? a : b;
  }
}

template <gp_redop_t Op, class T>
T int_op(T a, T b) {
  // Unsigned arithmetic wraps where signed would overflow; the conversion back is modular.
  using U = std::make_unsigned_t<T>;
  if constexpr (Op == GP_SUM)
    return static_cast<T>(static_cast<U>(static_cast<U>(a) + static_cast<U>(b)));
  if constexpr (Op == GP_PROD)
    return static_cast<T>(static_cast<U>(static_cast<U>(a) * static_cast<U>(b)));
  if constexpr (Op == GP_MIN) return b < a ? b : a;
  if constexpr (Op == GP_MAX) return a < b ? b : a;
}

template <gp_dtype_t D>
struct ScalarKernels {
  using E = Element<D>;
  using S = typename E::Stored;
  using C = typename E::Compute;

  template <gp_redop_t Op>
  static void reduce(void* dst, const void* a, const void* b, size_t count) {
    S* d = static_cast<S*>(dst);
    const S* x = static_cast<const S*>(a);
    const S* y = static_cast<const S*>(b);
    for (size_t i = 0; i < count; ++i) {
      const C u = E::widen(x[i]), v = E::widen(y[i]);
      if constexpr (std::is_floating_point_v<C>) {
        d[i] = E::narrow(float_op<Op>(u, v));
      } else {
        d[i] = int_op<Op>(u, v);
      }
    }
  }

  static void divide(void* data, size_t count, int n) {
    S* p = static_cast<S*>(data);
    for (size_t i = 0; i < count; ++i) {
      if constexpr (std::is_floating_point_v<C>) {
        p[i] = E::narrow(E::widen(p[i]) / static_cast<C>(n));
      } else {
        // C++ integer division truncates toward zero; n >= 2, so it never overflows.
        p[i] = static_cast<S>(static_cast<int64_t>(p[i]) / n);
      }
    }
  }
};

constexpr ReduceKernels kScalar = make_reduce_table<ScalarKernels>("scalar");

}  // namespace

const ReduceKernels& scalar_reduce_kernels() { return kScalar; }

}  // namespace gradpack::coll
