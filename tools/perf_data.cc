#include "tools/perf_data.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <cmath>
#include <cstring>
#include <string>

namespace gradpack::tools {

uint16_t FloatToHalf(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  const uint16_t sign = static_cast<uint16_t>((x >> 16) & 0x8000);
  const uint32_t abs = x & 0x7fffffff;
  if (abs > 0x7f800000) return sign | 0x7e00;   // NaN
  if (abs >= 0x477ff000) return sign | 0x7c00;  // >= 65520 rounds to infinity
  if (abs < 0x38800000) {                       // below 2^-14: subnormal half (or zero)
    // Scaling by 2^24 is exact in float; nearbyint rounds to nearest even.
    const float scaled = std::bit_cast<float>(abs) * 16777216.0f;
    return sign | static_cast<uint16_t>(std::nearbyint(scaled));
  }
  const uint32_t exponent = (abs >> 23) - 127 + 15;
  const uint32_t mantissa = abs & 0x7fffff;
  uint32_t h = (exponent << 10) | (mantissa >> 13);
  const uint32_t rest = mantissa & 0x1fff;
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) ++h;  // a carry bumps the exponent
  return sign | static_cast<uint16_t>(h);
}

float HalfToFloat(uint16_t bits) {
  const uint32_t sign = static_cast<uint32_t>(bits & 0x8000) << 16;
  const uint32_t exponent = (bits >> 10) & 0x1f;
  const uint32_t mantissa = bits & 0x3ff;
  if (exponent == 0) {
    const float magnitude = std::ldexp(static_cast<float>(mantissa), -24);
    return sign != 0 ? -magnitude : magnitude;
  }
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000 | (mantissa << 13));
  return std::bit_cast<float>(sign | ((exponent - 15 + 127) << 23) | (mantissa << 13));
}

uint16_t FloatToBfloat16(float value) {
  const uint32_t x = std::bit_cast<uint32_t>(value);
  if ((x & 0x7fffffff) > 0x7f800000) return static_cast<uint16_t>((x >> 16) | 0x40);
  return static_cast<uint16_t>((x + 0x7fff + ((x >> 16) & 1)) >> 16);
}

float Bfloat16ToFloat(uint16_t bits) {
  return std::bit_cast<float>(static_cast<uint32_t>(bits) << 16);
}

namespace {

template <typename T>
T Get(const void* buf, uint64_t i) {
  T v;
  std::memcpy(&v, static_cast<const unsigned char*>(buf) + i * sizeof(T), sizeof(T));
  return v;
}

template <typename T>
void Put(void* buf, uint64_t i, T v) {
  std::memcpy(static_cast<unsigned char*>(buf) + i * sizeof(T), &v, sizeof(T));
}

bool IsFloat(gp_dtype_t dtype) {
  return dtype == GP_FLOAT32 || dtype == GP_FLOAT16 || dtype == GP_BFLOAT16 || dtype == GP_FLOAT64;
}

// An integer wrapped to dtype's range (two's complement, as C++20 conversions do).
int64_t Wrap(gp_dtype_t dtype, int64_t v) {
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

double Epsilon(gp_dtype_t dtype) {
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

double RoundTo(gp_dtype_t dtype, double v) {
  unsigned char tmp[8];
  StoreElement(dtype, tmp, 0, v);
  return LoadElement(dtype, tmp, 0);
}

double LoadElement(gp_dtype_t dtype, const void* buf, uint64_t i) {
  switch (dtype) {
    case GP_FLOAT32:
      return Get<float>(buf, i);
    case GP_FLOAT16:
      return HalfToFloat(Get<uint16_t>(buf, i));
    case GP_BFLOAT16:
      return Bfloat16ToFloat(Get<uint16_t>(buf, i));
    case GP_FLOAT64:
      return Get<double>(buf, i);
    case GP_INT32:
      return Get<int32_t>(buf, i);
    case GP_INT64:
      return static_cast<double>(Get<int64_t>(buf, i));
    case GP_INT8:
      return Get<int8_t>(buf, i);
    case GP_UINT8:
      return Get<uint8_t>(buf, i);
  }
  return std::nan("");
}

void StoreElement(gp_dtype_t dtype, void* buf, uint64_t i, double value) {
  switch (dtype) {
    case GP_FLOAT32:
      return Put<float>(buf, i, static_cast<float>(value));
    case GP_FLOAT16:
      return Put<uint16_t>(buf, i, FloatToHalf(static_cast<float>(value)));
    case GP_BFLOAT16:
      return Put<uint16_t>(buf, i, FloatToBfloat16(static_cast<float>(value)));
    case GP_FLOAT64:
      return Put<double>(buf, i, value);
    case GP_INT32:
      return Put<int32_t>(buf, i, static_cast<int32_t>(static_cast<int64_t>(value)));
    case GP_INT64:
      return Put<int64_t>(buf, i, static_cast<int64_t>(value));
    case GP_INT8:
      return Put<int8_t>(buf, i, static_cast<int8_t>(static_cast<int64_t>(value)));
    case GP_UINT8:
      return Put<uint8_t>(buf, i, static_cast<uint8_t>(static_cast<int64_t>(value)));
  }
}

int64_t InputValue(bool reduces, gp_redop_t op, int rank, uint64_t index) {
  const uint64_t r = static_cast<uint64_t>(rank);
  if (!reduces) return static_cast<int64_t>((r * 3 + index) % 97) + 1;
  if (op == GP_PROD) return (r + index) % 3 == 0 ? 2 : 1;
  return static_cast<int64_t>((r + index) % 5) + 1;
}

void FillInput(gp_dtype_t dtype, bool reduces, gp_redop_t op, int rank, uint64_t first_index,
               uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) {
    StoreElement(dtype, dst, i,
                 static_cast<double>(InputValue(reduces, op, rank, first_index + i)));
  }
}

double GradientValue(int rank, uint64_t index) {
  uint64_t x = index * 0x9E3779B97F4A7C15ull ^ (static_cast<uint64_t>(rank) + 1) * 0xBF58476D1CE4E5B9ull;
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  const double u = static_cast<double>(x >> 40) / static_cast<double>(uint64_t{1} << 24) - 0.5;
  return u * static_cast<double>(1 + index % 7);
}

void FillGradient(gp_dtype_t dtype, int rank, uint64_t first_index, uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) {
    StoreElement(dtype, dst, i, GradientValue(rank, first_index + i));
  }
}

void FillSentinel(gp_dtype_t dtype, uint64_t count, void* dst) {
  for (uint64_t i = 0; i < count; ++i) StoreElement(dtype, dst, i, 0.0);
}

double ExpectedReduction(gp_dtype_t dtype, gp_redop_t op, int nranks, uint64_t index) {
  // Small integers: every partial result is exact in int64 and in double.
  int64_t acc = InputValue(true, op, 0, index);
  for (int r = 1; r < nranks; ++r) {
    const int64_t v = InputValue(true, op, r, index);
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
  if (IsFloat(dtype)) {
    double result = static_cast<double>(acc);
    if (op == GP_AVG) result /= nranks;
    return RoundTo(dtype, result);
  }
  int64_t result = Wrap(dtype, acc);
  if (op == GP_AVG) result = Wrap(dtype, result / nranks);
  return static_cast<double>(result);
}

namespace {

// "q<b>[:option...]" -> the quantizer's model; nullopt when text is not one.
std::optional<CodecErrorModel> ParseQuant(std::string_view text) {
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

std::optional<CodecErrorModel> ParseCodecErrorModel(std::string_view spec) {
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
      auto q = ParseQuant(rest.substr(plus + 1));
      if (!q) return std::nullopt;
      m = *q;
    }
    m.exact = false;
    m.topk = true;
    return m;
  }
  return ParseQuant(spec);
}

double CompressedErrorBound(const CodecErrorModel& model, const ErrorBoundInput& in) {
  const double n = std::max(in.nranks, 1);
  // A lossless codec (none, or auto sending uncompressed) still sums non-integer inputs in the
  // dtype, rounding up to n - 1 times.
  double bound = (n - 1) * Epsilon(in.dtype) * in.element_abs_sum;
  if (!model.exact) {
    const double s = in.sum_rank_absmax;
    const double reduced_absmax = in.result_absmax + model.eps * s;
    bound = model.eps * (s + reduced_absmax);
    if (model.topk) bound += in.element_abs_sum;
    bound += (n + 2) * std::ldexp(1.0, -22) * (s + in.result_absmax);
    if (in.dtype == GP_FLOAT16 || in.dtype == GP_BFLOAT16) {
      // Two roundings to the dtype of at most u = Epsilon / 2 each.
      bound += Epsilon(in.dtype) * (in.result_absmax + bound);
    }
  }
  if (in.op == GP_AVG) {
    bound /= n;
    bound += 2 * Epsilon(in.dtype) * in.result_absmax / n;
  }
  return bound;
}

bool Matches(gp_dtype_t dtype, gp_redop_t op, bool reduces, double got, double expected) {
  if (got == expected) return true;
  if (!reduces || op != GP_AVG || !IsFloat(dtype) || !std::isfinite(got)) return false;
  return std::fabs(got - expected) <= 2 * Epsilon(dtype) * std::fabs(expected);
}

}  // namespace gradpack::tools
