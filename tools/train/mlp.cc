// SPDX-License-Identifier: Apache-2.0
#include "tools/train/mlp.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "tools/train/gemm.h"

namespace gradpack::train {
namespace {

// splitmix64: a small generator whose output is fixed by its seed on every platform (the standard
// distributions are not), so every rank draws the same initial weights.
class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}
  uint64_t next() {
    uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  }
  // Uniform in (0, 1].
  double uniform() { return (static_cast<double>(next() >> 11) + 1.0) * 0x1.0p-53; }
  // Standard normal (Box-Muller).
  double normal() {
    const double u = uniform(), v = uniform();
    return std::sqrt(-2.0 * std::log(u)) * std::cos(2.0 * M_PI * v);
  }

 private:
  uint64_t state_;
};

}  // namespace

Mlp::Mlp(const std::vector<int>& sizes, uint64_t seed) {
  size_t offset = 0;
  for (size_t l = 0; l + 1 < sizes.size(); ++l) {
    Layer layer;
    layer.in = sizes[l];
    layer.out = sizes[l + 1];
    layer.offset = offset;
    offset += layer.size();
    layers_.push_back(layer);
  }
  params_.assign(offset, 0.0f);
  grads_.assign(offset, 0.0f);
  activations_.resize(layers_.size());
  SplitMix64 rng(seed);
  for (const Layer& layer : layers_) {
    const double stddev = std::sqrt(2.0 / layer.in);
    float* w = params_.data() + layer.offset;
    for (size_t i = 0; i < static_cast<size_t>(layer.in) * layer.out; ++i) {
      w[i] = static_cast<float>(stddev * rng.normal());
    }
  }
}

void Mlp::forward(const float* x, int m) {
  const GemmKernels& gemm = gemm_kernels();
  const float* input = x;
  for (size_t l = 0; l < layers_.size(); ++l) {
    const Layer& layer = layers_[l];
    const float* w = params_.data() + layer.offset;
    const float* b = w + static_cast<size_t>(layer.in) * layer.out;
    std::vector<float>& out = activations_[l];
    out.resize(static_cast<size_t>(m) * layer.out);
    for (int i = 0; i < m; ++i)
      std::memcpy(&out[static_cast<size_t>(i) * layer.out], b, sizeof(float) * layer.out);
    gemm.mul_add(m, layer.out, layer.in, input, w, out.data());
    if (l + 1 < layers_.size()) {
      for (float& v : out) v = std::max(v, 0.0f);
    }
    input = out.data();
  }
}

double Mlp::softmax(const uint8_t* labels, int m, int64_t* correct) {
  std::vector<float>& z = activations_.back();
  const int classes = layers_.back().out;
  double loss = 0;
  for (int i = 0; i < m; ++i) {
    float* row = &z[static_cast<size_t>(i) * classes];
    const int best = static_cast<int>(std::max_element(row, row + classes) - row);
    if (correct != nullptr && best == labels[i]) ++*correct;
    const float top = row[best];
    // -log p[label] = log(sum of exp(z - top)) - (z[label] - top): no log of a tiny p.
    const double label_logit = static_cast<double>(row[labels[i]]) - top;
    double sum = 0;
    for (int c = 0; c < classes; ++c) {
      row[c] = std::exp(row[c] - top);
      sum += row[c];
    }
    const float inv = static_cast<float>(1.0 / sum);
    for (int c = 0; c < classes; ++c) row[c] *= inv;
    loss += std::log(sum) - label_logit;
  }
  return loss;
}

double Mlp::backprop(const float* x, const uint8_t* labels, int m, float scale) {
  if (m == 0) return 0;
  const GemmKernels& gemm = gemm_kernels();
  forward(x, m);
  const double loss = softmax(labels, m, nullptr);

  // d(loss)/d(logits) = softmax - one_hot, times scale.
  const int classes = layers_.back().out;
  delta_ = activations_.back();
  for (int i = 0; i < m; ++i) {
    float* row = &delta_[static_cast<size_t>(i) * classes];
    row[labels[i]] -= 1.0f;
    for (int c = 0; c < classes; ++c) row[c] *= scale;
  }

  for (size_t l = layers_.size(); l-- > 0;) {
    const Layer& layer = layers_[l];
    const float* input = l == 0 ? x : activations_[l - 1].data();
    float* gw = grads_.data() + layer.offset;
    float* gb = gw + static_cast<size_t>(layer.in) * layer.out;
    gemm.transposed_mul_add(m, layer.out, layer.in, input, delta_.data(), gw);
    for (int i = 0; i < m; ++i) {
      const float* row = &delta_[static_cast<size_t>(i) * layer.out];
      for (int j = 0; j < layer.out; ++j) gb[j] += row[j];
    }
    if (l == 0) break;
    // Gradient of the input: delta * W^T, through W transposed so that the product runs along
    // contiguous rows like the others; then through the ReLU that produced the input.
    const float* w = params_.data() + layer.offset;
    transposed_.resize(static_cast<size_t>(layer.in) * layer.out);
    for (int k = 0; k < layer.in; ++k) {
      for (int j = 0; j < layer.out; ++j) {
        transposed_[static_cast<size_t>(j) * layer.in + k] =
            w[static_cast<size_t>(k) * layer.out + j];
      }
    }
    prev_delta_.assign(static_cast<size_t>(m) * layer.in, 0.0f);
    gemm.mul_add(m, layer.in, layer.out, delta_.data(), transposed_.data(), prev_delta_.data());
    for (size_t i = 0; i < prev_delta_.size(); ++i) {
      if (input[i] <= 0.0f) prev_delta_[i] = 0.0f;
    }
    delta_.swap(prev_delta_);
  }
  return loss;
}

void Mlp::evaluate(const float* x, const uint8_t* labels, int m, double* loss, int64_t* correct) {
  if (m == 0) return;
  forward(x, m);
  *loss += softmax(labels, m, correct);
}

void SgdMomentum::step(float* params, const float* grads) {
  const size_t n = velocity_.size();
  float* v = velocity_.data();
  for (size_t i = 0; i < n; ++i) {
    v[i] = momentum_ * v[i] + grads[i] + weight_decay_ * params[i];
    params[i] -= lr_ * v[i];
  }
}

uint64_t checksum(const float* data, size_t n) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n * sizeof(float); ++i) {
    h ^= bytes[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace gradpack::train
