// SPDX-License-Identifier: Apache-2.0
#include "tools/perf_data.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>

#include "common/float16.h"

namespace gradpack::tools {

namespace {

template <typename T>
T get(const void* buf, uint64_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(buf) + i * sizeof(T), sizeof(T));
  return v;
}

template <typename T>
void put(void* buf, uint64_t i, T v) {
  std::memcpy(static_cast<unsigned char*>(buf) + i * sizeof(T), &v, sizeof(T));
}

bool is_float(gp_dtype_t dtype) {
  return dtype == GP_FLOAT32 || dtype == GP_FLOAT16 || dtype == GP_BFLOAT16 || dtype == GP_FLOAT64;
}

// An integer wrapped to dtype's range (two's complement, as C++20 conversions do).
int64_t wrap(gp_dtype_t dtype, int64_t v) {
  switch (dtype) {
    case GP_INT8:
      return static_cast<int8_t>(v);
    case GP_UINT8:
      return static_cast<uint8_t>(v);
    case GP_INT32:
      return static_cast<int32_t>(v);
    default:
      return v;
  }
}

double epsilon(gp_dtype_t dtype) {
  switch (dtype) {
    case GP_FLOAT16:
      return std::ldexp(1.0, -10);
    case GP_BFLOAT16:
      return std::ldexp(1.0, -7);
    case GP_FLOAT32:
      return std::ldexp(1.0, -23);
    default:
      return std::ldexp(1.0, -52);
  }
}

}  // namespace

double round_to(gp_dtype_t dtype, double v) {
  unsigned char tmp[8];
  store_element(dtype, tmp, 0, v);
  return load_element(dtype, tmp, 0);
}

double load_element(gp_dtype_t dtype, const void* buf, uint64_t i) {
  switch (dtype) {
    case GP_FLOAT32:
      return get<float>(buf, i);
    case GP_FLOAT16:
      return f16_to_f32(get<uint16_t>(buf, i));
    case GP_BFLOAT16:
      return bf16_to_f32(get<uint16_t>(buf, i));
    case GP_FLOAT64:
      return get<double>(buf, i);
    case GP_INT32:
      return get<int32_t>(buf, i);
    case GP_INT64:
      return static_cast<double>(get<int64_t>(buf, i));
    case GP_INT8:
      return get<int8_t>(buf, i);
    case GP_UINT8:
      return get<uint8_t>(buf, i);
  }
  return std::nan("");
}

void store_element(gp_dtype_t dtype, void* buf, uint64_t i, double value) {
  switch (dtype) {
    case GP_FLOAT32:
      return put<float>(buf, i, static_cast<float>(value));
    case GP_FLOAT16:
      return put<uint16_t>(buf, i, f32_to_f16(static_cast<float>(value)));
    case GP_BFLOAT16:
      return put<uint16_t>(buf, i, f32_to_bf16(static_cast<float>(value)));
    case GP_FLOAT64:
      return put<double>(buf, i, value);
    case GP_INT32:
      return put<int32_t>(buf, i, static_cast<int32_t>(static_cast<int64_t>(value)));
    case GP_INT64:
      return put<int64_t>(buf, i, static_cast<int64_t>(value));
    case GP_INT8:
      return put<int8_t>(buf, i, static_cast<int8_t>(static_cast<int64_t>(value)));
    case GP_UINT8:
      return put<uint8_t>(buf, i, static_cast<uint8_t>(static_cast<int64_t>(value)));
  }
}

int64_t input_value(bool reduces, gp_redop_t op, int rank, uint64_t index) {
  const uint64_t r = static_cast<uint64_t>(rank);
  if (!reduces) return static_cast<int64_t>((r * 3 + index) % 97) + 1;
  if (op == GP_PROD) return (r + index) % 3 == 0 ? 2 : 1;
  return static_cast<int64_t>((r + index) % 5) + 1;
}

void fill_input(gp_dtype_t dtype, bool reduces, gp_redop_t op, int rank, uint64_t first_index,
                uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) {
    store_element(dtype, dst, i,
                  static_cast<double>(input_value(reduces, op, rank, first_index + i)));
  }
}

double gradient_value(int rank, uint64_t index) {
  uint64_t x =
      index * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(rank) + 1) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  const double u = static_cast<double>(x >> 40) / static_cast<double>(uint64_t{1} << 24) - 0.5;
  return u * static_cast<double>(1 + index % 7);
}

void fill_gradient(gp_dtype_t dtype, int rank, uint64_t first_index, uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) {
    store_element(dtype, dst, i, gradient_value(rank, first_index + i));
  }
}

void fill_sentinel(gp_dtype_t dtype, uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) store_element(dtype, dst, i, 0.0);
}

double expected_reduction(gp_dtype_t dtype, gp_redop_t op, int nranks, uint64_t index) {
  // Small integers: every partial result is exact in int64 and in double.
  int64_t acc = input_value(true, op, 0, index);
  for (int r = 1; r < nranks; ++r) {
    const int64_t v = input_value(true, op, r, index);
    switch (op) {
      case GP_SUM:
      case GP_AVG:
        acc += v;
        break;
      case GP_PROD:
        acc *= v;
        break;
      case GP_MIN:
        acc = std::min(acc, v);
        break;
      case GP_MAX:
        acc = std::max(acc, v);
        break;
    }
  }
  if (is_float(dtype)) {
    double result = static_cast<double>(acc);
    if (op == GP_AVG) result /= nranks;
    return round_to(dtype, result);
  }
  int64_t result = wrap(dtype, acc);
  if (op == GP_AVG) result = wrap(dtype, result / nranks);
  return static_cast<double>(result);
}

namespace {

// "q<b>[:option...]" -> the quantizer's model; nullopt when text is not one.
std::optional<CodecErrorModel> parse_quant(std::string_view text) {
  if (text.size() < 2 || text[0] != 'q') return std::nullopt;
  const size_t colon = text.find(':');
  const std::string_view digits =
      text.substr(1, colon == std::string_view::npos ? colon : colon - 1);
  int bits = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), bits);
  if (ec != std::errc() || end != digits.data() + digits.size() || bits < 2 || bits > 16) {
    return std::nullopt;
  }
  CodecErrorModel m;
  m.exact = false;
  m.bits = bits;
  m.stochastic = colon != std::string_view::npos &&
                 text.substr(colon).find(":round=stochastic") != std::string_view::npos;
  // docs/codecs.md: L = 2^(b-1) - 1; nearest absmax/(2L), stochastic absmax/L.
  const double levels = std::ldexp(1.0, bits - 1) - 1;
  m.eps = m.stochastic ? 1 / levels : 1 / (2 * levels);
  return m;
}

}  // namespace

std::optional<CodecErrorModel> parse_codec_error_model(std::string_view spec) {
  CodecErrorModel m;
  if (spec == "none") return m;
  if (spec == "fp16" || spec == "bf16") {
    m.exact = false;
    m.eps = spec == "fp16" ? std::ldexp(1.0, -11) : std::ldexp(1.0, -8);
    return m;
  }
  if (spec.substr(0, 5) == "topk:") {
    const std::string_view rest = spec.substr(5);
    const size_t plus = rest.find('+');
    const std::string_view fraction = rest.substr(0, plus);
    // The fraction is the library's to check; here only that there is one.
    if (fraction.empty() || fraction.find(':') != std::string_view::npos) return std::nullopt;
    if (plus != std::string_view::npos) {
      auto q = parse_quant(rest.substr(plus + 1));
      if (!q) return std::nullopt;
      m = *q;
    }
    m.exact = false;
    m.topk = true;
    return m;
  }
  return parse_quant(spec);
}

double compressed_error_bound(const CodecErrorModel& model, const ErrorBoundInput& in) {
  const double n = std::max(in.nranks, 1);
  // A lossless codec (none, or auto sending uncompressed) still sums non-integer inputs in the
  // dtype, rounding up to n - 1 times.
  double bound = (n - 1) * epsilon(in.dtype) * in.element_abs_sum;
  if (!model.exact) {
    const double s = in.sum_rank_absmax;
    const double reduced_absmax = in.result_absmax + model.eps * s;
    bound = model.eps * (s + reduced_absmax);
    if (model.topk) bound += in.element_abs_sum;
    bound += (n + 2) * std::ldexp(1.0, -22) * (s + in.result_absmax);
    if (in.dtype == GP_FLOAT16 || in.dtype == GP_BFLOAT16) {
      // Two roundings to the dtype of at most u = epsilon / 2 each.
      bound += epsilon(in.dtype) * (in.result_absmax + bound);
    }
  }
  if (in.op == GP_AVG) {
    bound /= n;
    bound += 2 * epsilon(in.dtype) * in.result_absmax / n;
  }
  return bound;
}

bool matches(gp_dtype_t dtype, gp_redop_t op, bool reduces, double got, double expected) {
  if (got == expected) return true;
  if (!reduces || op != GP_AVG || !is_float(dtype) || !std::isfinite(got)) return false;
  return std::fabs(got - expected) <= 2 * epsilon(dtype) * std::fabs(expected);
}

}  // namespace gradpack::tools
