// SPDX-License-Identifier: Apache-2.0
// Synthetic gradient-like fp32 data for gradpack-codec and codec_bench: deterministic for a seed,
// the same values on every machine and compiler (integer RNG, no <random> distributions, whose
// output the standard leaves to the implementation).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace gradpack::tools {

enum class Distribution {
  kNormal,    // N(0, 1)
  kLaplace,   // Laplace(0, 1): heavier tails than normal, a common model of gradient values
  kGradient,  // layers of 4Ki..1Mi elements, each with its own scale (1e-5..1e-2, log-uniform),
              // values a normal scale mixture (normal x log-normal): a few outliers per layer
};

inline const char* distribution_name(Distribution d) {
  switch (d) {
    case Distribution::kNormal:
      return "normal";
    case Distribution::kLaplace:
      return "laplace";
    case Distribution::kGradient:
      return "gradient";
  }
  return "?";
}

inline bool parse_distribution(std::string_view text, Distribution* out) {
  for (Distribution d : {Distribution::kNormal, Distribution::kLaplace, Distribution::kGradient}) {
    if (text == distribution_name(d)) {
      *out = d;
      return true;
    }
  }
  return false;
}

// splitmix64: small, fast, and good enough for test data.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1]: never 0, so log() of it is finite.
  double uniform() { return static_cast<double>((next() >> 11) + 1) * 0x1.0p-53; }

 private:
  uint64_t state_;
};

// Fills out[0..n) with values of distribution d. The same (d, seed, n) gives the same values.
inline void fill_synthetic(float* out, size_t n, Distribution d, uint64_t seed) {
  SplitMix64 rng(seed ^ 0x6772616470616B00ull);  // "gradpak"
  constexpr double kTwoPi = 6.283185307179586;
  size_t layer_left = 0;
  double layer_scale = 1.0;
  for (size_t i = 0; i < n;) {
    // Box-Muller: two independent N(0, 1) per pair of uniforms.
    const double radius = std::sqrt(-2.0 * std::log(rng.uniform()));
    const double angle = kTwoPi * rng.uniform();
    const double z1 = radius * std::cos(angle);
    const double z2 = radius * std::sin(angle);
    switch (d) {
      case Distribution::kNormal:
        out[i++] = static_cast<float>(z1);
        if (i < n) out[i++] = static_cast<float>(z2);
        break;
      case Distribution::kLaplace: {
        // The inverse CDF from one uniform; the pair above is spent on sign and magnitude.
        const double u = rng.uniform();
        const double magnitude = -std::log(u);
        out[i++] = static_cast<float>(z1 < 0 ? -magnitude : magnitude);
        break;
      }
      case Distribution::kGradient: {
        if (layer_left == 0) {
          layer_left = size_t{4096} << (rng.next() % 9);  // 4 Ki .. 1 Mi elements
          layer_scale = std::pow(10.0, -5.0 + 3.0 * rng.uniform());
        }
        // Normal scale mixture: kurtosis 3 e^(4 * 0.7^2) ~ 21 (a normal's is 3): heavy tails.
        out[i++] = static_cast<float>(layer_scale * z1 * std::exp(0.7 * z2));
        --layer_left;
        break;
      }
    }
  }
}

}  // namespace gradpack::tools
