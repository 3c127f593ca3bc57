// SPDX-License-Identifier: Apache-2.0
// A multilayer perceptron (fully connected layers, ReLU between them, softmax cross-entropy at the
// end) with its parameters and gradients in two flat float arrays, so that a gradient bucket is a
// contiguous range: one layer's weights and bias, or everything.
#ifndef GRADPACK_TOOLS_TRAIN_MLP_H_
#define GRADPACK_TOOLS_TRAIN_MLP_H_

#include <cstddef>
#include <cstdint>
#include <vector>

namespace gradpack::train {

struct Layer {
  int in = 0;
  int out = 0;
  size_t offset = 0;  // weights [in x out] row-major at offset, then the bias [out]
  size_t size() const { return static_cast<size_t>(in) * out + out; }
};

class Mlp {
 public:
  // sizes: input, hidden..., classes. Weights are drawn from N(0, 2 / fan_in) (He) by a generator
  // seeded with `seed`, biases are zero: the same seed gives the same bits on every rank.
  Mlp(const std::vector<int>& sizes, uint64_t seed);

  const std::vector<Layer>& layers() const { return layers_; }
  size_t num_params() const { return params_.size(); }
  float* params() { return params_.data(); }
  const float* params() const { return params_.data(); }
  float* grads() { return grads_.data(); }

  // Forward and backward pass over x[m x input] with labels[m]: adds `scale` times the gradient of
  // the summed loss to grads() (the caller zeroes them) and returns the summed loss.
  double backprop(const float* x, const uint8_t* labels, int m, float scale);

  // Forward pass only: adds the summed loss and the number of correct predictions.
  void evaluate(const float* x, const uint8_t* labels, int m, double* loss, int64_t* correct);

 private:
  // Computes activations_ for m rows; the last one holds the logits.
  void forward(const float* x, int m);
  // Turns the logits into softmax probabilities in place; returns the summed cross-entropy.
  double softmax(const uint8_t* labels, int m, int64_t* correct);

  std::vector<Layer> layers_;
  std::vector<float> params_;
  std::vector<float> grads_;
  // activations_[l]: output of layer l (after ReLU except for the last), [m x layers_[l].out].
  std::vector<std::vector<float>> activations_;
  std::vector<float> delta_;       // gradient of a layer's output
  std::vector<float> prev_delta_;  // gradient of its input
  std::vector<float> transposed_;  // a weight matrix transposed, [out x in]
};

// SGD with momentum (v = momentum * v + g + weight_decay * w; w -= lr * v), as PyTorch's SGD.
class SgdMomentum {
 public:
  SgdMomentum(size_t n, float lr, float momentum, float weight_decay)
      : velocity_(n, 0.0f), lr_(lr), momentum_(momentum), weight_decay_(weight_decay) {}
  void step(float* params, const float* grads);

 private:
  std::vector<float> velocity_;
  float lr_, momentum_, weight_decay_;
};

// FNV-1a over the bytes of the parameters: equal on every rank exactly when the bits are.
uint64_t checksum(const float* data, size_t n);

}  // namespace gradpack::train

#endif  // GRADPACK_TOOLS_TRAIN_MLP_H_
