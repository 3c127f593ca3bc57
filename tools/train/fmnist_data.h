// SPDX-License-Identifier: Apache-2.0
// Fashion-MNIST in its IDX files (gzip-compressed or not), as the Debian package
// dataset-fashion-mnist installs them under /usr/share/datasets/fashion-mnist.
#ifndef GRADPACK_TOOLS_TRAIN_FMNIST_DATA_H_
#define GRADPACK_TOOLS_TRAIN_FMNIST_DATA_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gradpack::train {

constexpr int kImageSide = 28;
constexpr int kImagePixels = kImageSide * kImageSide;
constexpr int kClasses = 10;

// Images of 28 x 28 pixels (0..255, row-major, one image after another) and their labels (0..9).
struct ImageSet {
  size_t count = 0;
  std::vector<uint8_t> pixels;  // count * kImagePixels
  std::vector<uint8_t> labels;  // count
};

// Reads DIR/PREFIX-images-idx3-ubyte.gz and DIR/PREFIX-labels-idx1-ubyte.gz (or the same names
// without .gz), PREFIX "train" or "t10k", keeping the first `limit` images (0: all). Every header
// field, length and label is checked: a missing, truncated or corrupt file gives an error message
// that names the file and the package that provides it.
std::optional<std::string> load_image_set(const std::string& dir, const std::string& prefix,
                                          size_t limit, ImageSet* out);

}  // namespace gradpack::train

#endif  // GRADPACK_TOOLS_TRAIN_FMNIST_DATA_H_
