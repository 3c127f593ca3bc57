// SPDX-License-Identifier: Apache-2.0
// gradpack-train-fmnist's command line, kept out of main() so that it is read before the
// communicator exists: a usage error stops every rank at once with exit status 2.
#ifndef GRADPACK_TOOLS_TRAIN_TRAIN_OPTIONS_H_
#define GRADPACK_TOOLS_TRAIN_TRAIN_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace gradpack::train {

enum class Bucketing { kLayer, kFlat };

struct TrainOptions {
  std::string codec = "none";
  bool error_feedback = true;
  int residual_bits = 32;
  Bucketing bucket = Bucketing::kLayer;
  int epochs = 10;
  uint64_t seed = 1;
  int batch = 128;  // global: summed over the ranks
  double lr = 0.05;
  double momentum = 0.9;
  double weight_decay = 0;
  std::vector<int> hidden = {256, 128};
  size_t train_limit = 0;  // 0: every training image
  std::string data = "/usr/share/datasets/fashion-mnist";
  bool help = false;
};

extern const char* const kTrainHelp;

// Parses argv[1..argc) ("--flag value" or "--flag=value"). Returns a message for a usage error
// (it names the flag and says what it takes), std::nullopt on success. The codec spec is checked
// with the library's parser.
std::optional<std::string> parse_train_args(int argc, const char* const* argv, TrainOptions* out);

const char* bucketing_name(Bucketing b);

}  // namespace gradpack::train

#endif  // GRADPACK_TOOLS_TRAIN_TRAIN_OPTIONS_H_
