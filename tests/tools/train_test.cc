// SPDX-License-Identifier: Apache-2.0
// gradpack-train-fmnist end to end: 2 ranks under gradpack-run on a slice of Fashion-MNIST, the
// JSON line it prints last, and its usage and dataset errors.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"

namespace gradpack::tools::testing {
namespace {

const std::string kRun = GRADPACK_RUN_PATH;
const std::string kTrain = GRADPACK_TRAIN_PATH;
// Where the Debian package dataset-fashion-mnist installs the data (the tool's default --data).
const std::string kDataDir = "/usr/share/datasets/fashion-mnist";

bool have_dataset() {
  for (const char* name : {"train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                           "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"}) {
    struct stat st;
    if (stat((kDataDir + "/" + name).c_str(), &st) != 0) return false;
  }
  return true;
}

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// The raw value of "key" in a flat JSON object (a number, true/false, or a quoted string with its
// quotes), or "" if absent.
std::string json_field(const std::string& json, const std::string& key) {
  const std::string needle = "\"" + key + "\":";
  const size_t at = json.find(needle);
  if (at == std::string::npos) return "";
  size_t begin = at + needle.size();
  size_t end = begin;
  if (json[begin] == '"') {
    end = json.find('"', begin + 1);
    return end == std::string::npos ? "" : json.substr(begin, end + 1 - begin);
  }
  if (json[begin] == '[') {
    end = json.find(']', begin);
    return end == std::string::npos ? "" : json.substr(begin, end + 1 - begin);
  }
  while (end < json.size() && json[end] != ',' && json[end] != '}') ++end;
  return json.substr(begin, end - begin);
}

double json_number(const std::string& json, const std::string& key) {
  const std::string v = json_field(json, key);
  return v.empty() ? -1 : std::strtod(v.c_str(), nullptr);
}

CommandResult train(int ranks, const std::string& args) {
  return run_command(kRun + " --timeout 100 -n " + std::to_string(ranks) + " -- " + kTrain + " " +
                     args);
}

TEST(GradpackTrainFmnist, TwoRanksLearnAndPrintJsonLast) {
  if (!have_dataset()) {
    GTEST_SKIP() << kDataDir << " lacks the Fashion-MNIST files (Debian package "
                 << "dataset-fashion-mnist)";
  }
  const auto r = train(2, "--train-limit 2000 --epochs 2 --codec none --seed 7");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = split_lines(r.output);
  ASSERT_FALSE(lines.empty());
  const std::string& json = lines.back();
  ASSERT_EQ(json.front(), '{') << json;
  ASSERT_EQ(json.back(), '}') << json;
  for (const char* key :
       {"codec", "error_feedback", "ranks", "epochs", "test_accuracy", "wire_bytes", "seconds",
        "residual_bits", "seed", "batch", "lr", "train_loss", "params", "weights_identical"}) {
    EXPECT_NE(json_field(json, key), "") << key << " missing from " << json;
  }
  EXPECT_EQ(json_field(json, "codec"), "\"none\"");
  EXPECT_EQ(json_number(json, "ranks"), 2);
  EXPECT_EQ(json_number(json, "epochs"), 2);
  EXPECT_EQ(json_number(json, "seed"), 7);
  EXPECT_EQ(json_number(json, "params"), 784 * 256 + 256 + 256 * 128 + 128 + 128 * 10 + 10);
  EXPECT_GT(json_number(json, "test_accuracy"), 0.5) << r.output;
  EXPECT_LE(json_number(json, "test_accuracy"), 1.0);
  // Two ranks exchanged every gradient: at least the parameters' bytes went on the wire.
  EXPECT_GT(json_number(json, "wire_bytes"), 235146.0 * 4) << json;
  EXPECT_EQ(json_field(json, "weights_identical"), "true") << r.output;
  // One line per epoch from rank 0 only, a header, the JSON; nothing from rank 1.
  int epochs = 0;
  for (const std::string& line : lines) epochs += line.rfind("epoch ", 0) == 0 ? 1 : 0;
  EXPECT_EQ(epochs, 2) << r.output;
  EXPECT_EQ(lines.size(), 4u) << r.output;
}

TEST(GradpackTrainFmnist, Q8WithErrorFeedbackLearnsOnFewerBytes) {
  if (!have_dataset()) {
    GTEST_SKIP() << kDataDir << " lacks the Fashion-MNIST files (Debian package "
                 << "dataset-fashion-mnist)";
  }
  const std::string common = "--train-limit 2000 --epochs 2 --seed 3 ";
  const auto plain = train(2, common + "--codec none");
  ASSERT_EQ(plain.status, 0) << plain.output;
  const auto q8 = train(2, common + "--codec q8 --error-feedback on");
  ASSERT_EQ(q8.status, 0) << q8.output;
  const std::string plain_json = split_lines(plain.output).back();
  const std::string json = split_lines(q8.output).back();
  EXPECT_GT(json_number(json, "test_accuracy"), 0.5) << json;
  EXPECT_EQ(json_field(json, "weights_identical"), "true") << json;
  // Every gradient all-reduce ran compressed: 3 layers x 16 steps x 2 epochs.
  EXPECT_EQ(json_number(json, "compressed_calls"), 3 * 16 * 2) << json;
  EXPECT_EQ(json_number(plain_json, "compressed_calls"), 0) << plain_json;
  // 8-bit values with a scale per block: well under half the bytes of fp32.
  EXPECT_LT(json_number(json, "wire_bytes"), 0.5 * json_number(plain_json, "wire_bytes"))
      << plain_json << "\n"
      << json;
}

TEST(GradpackTrainFmnist, BadFlagIsUsageError) {
  // Flags are read before the dataset and the communicator: no data needed.
  auto r = train(2, "--epochs zero");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--epochs zero: expected"), std::string::npos) << r.output;

  r = train(2, "--codec q99");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("--codec q99"), std::string::npos) << r.output;

  r = train(2, "--no-such-flag 1");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("unknown flag --no-such-flag"), std::string::npos) << r.output;
}

TEST(GradpackTrainFmnist, MissingDatasetNamesThePackage) {
  const auto r = train(2, "--data /nonexistent/fashion-mnist --epochs 1");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/fashion-mnist/train-images-idx3-ubyte.gz"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("dataset-fashion-mnist"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace gradpack::tools::testing
