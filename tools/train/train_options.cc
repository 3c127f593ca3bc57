// SPDX-License-Identifier: Apache-2.0
#include "tools/train/train_options.h"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <string_view>

#include "gradpack/gradpack.h"

namespace gradpack::train {

const char* const kTrainHelp =
    R"(usage: gradpack-run -n N [--vcluster] -- gradpack-train-fmnist [OPTIONS]

Trains an MLP on Fashion-MNIST, data-parallel over the N ranks of the communicator that
gp_comm_init_from_env() joins (start the ranks with gradpack-run). Each global mini-batch is split
into disjoint shards, one per rank; the gradients are summed with gp_allreduce, compressed by
--codec with optional error feedback. Rank 0 prints one line per epoch and, last, one JSON object.
See docs/training.md.

Options:
  --codec SPEC            gradient all-reduce codec: none (default), off, a codec spec (q8,
                          q4:block=128, fp16, topk:0.01+q8, ...), auto or auto:SPEC
  --error-feedback on|off keep what the codec did not send and add it to the next step (on)
  --residual-bits 32|16   precision of the error-feedback residuals (32)
  --bucket layer|flat     one all-reduce per layer (weights and bias), or one for all
                          parameters (layer)
  --epochs E              passes over the training set (10)
  --batch B               global mini-batch, split across the ranks (128)
  --lr X                  learning rate (0.05)
  --momentum X            SGD momentum, 0 <= X < 1 (0.9)
  --weight-decay X        L2 weight decay (0)
  --hidden H1,H2,...      hidden layer widths (256,128)
  --seed S                shuffling and weight initialization, the same on every rank (1)
  --train-limit N         use only the first N training images (0: all 60000)
  --data DIR              directory of the IDX files (/usr/share/datasets/fashion-mnist, from
                          the Debian package dataset-fashion-mnist)
  -h, --help              this text

Exit status: 0 success; 1 runtime failure (dataset, communicator); 2 usage error.
)";

namespace {

template <typename T>
std::optional<T> parse_integer(std::string_view text) {
  T value{};
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) return std::nullopt;
  return value;
}

std::optional<double> parse_double(const std::string& text) {
  if (text.empty()) return std::nullopt;
  errno = 0;
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (errno != 0 || end != text.c_str() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::optional<std::string> check_codec(const std::string& spec) {
  if (spec == "none" || spec == "off" || spec == "auto") return std::nullopt;
  const std::string inner = spec.rfind("auto:", 0) == 0 ? spec.substr(5) : spec;
  gp_codec_t* codec = nullptr;
  if (gp_codec_create(inner.c_str(), &codec) != GP_OK) {
    return "--codec " + spec + ": " + gp_last_error() +
           " (none, off, auto, auto:SPEC or a codec spec such as q8 or topk:0.01+q8)";
  }
  gp_codec_destroy(codec);
  return std::nullopt;
}

}  // namespace

const char* bucketing_name(Bucketing b) { return b == Bucketing::kFlat ? "flat" : "layer"; }

std::optional<std::string> parse_train_args(int argc, const char* const* argv, TrainOptions* out) {
  TrainOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") {
      o.help = true;
      continue;
    }
    if (flag.rfind("--", 0) != 0) {
      return "unexpected argument '" + flag + "' (flags start with --; see --help)";
    }
    std::string value;
    const size_t eq = flag.find('=');
    if (eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else {
      if (i + 1 >= argc) return flag + " needs a value (see --help)";
      value = argv[++i];
    }
    auto bad = [&](const std::string& takes) -> std::string {
      std::string message = flag;
      message.append(" ").append(value).append(": expected ").append(takes);
      return message;
    };

    if (flag == "--codec") {
      if (auto err = check_codec(value)) return err;
      o.codec = value;
    } else if (flag == "--error-feedback") {
      if (value != "on" && value != "off") return bad("on or off");
      o.error_feedback = value == "on";
    } else if (flag == "--residual-bits") {
      const auto v = parse_integer<int>(value);
      if (!v || (*v != 32 && *v != 16)) return bad("32 or 16");
      o.residual_bits = *v;
    } else if (flag == "--bucket") {
      if (value != "layer" && value != "flat") return bad("layer or flat");
      o.bucket = value == "flat" ? Bucketing::kFlat : Bucketing::kLayer;
    } else if (flag == "--epochs") {
      const auto v = parse_integer<int>(value);
      if (!v || *v < 1 || *v > 100000) return bad("a whole number of epochs, 1 or more");
      o.epochs = *v;
    } else if (flag == "--batch") {
      const auto v = parse_integer<int>(value);
      if (!v || *v < 1 || *v > 1 << 20) return bad("a global batch size, 1 or more");
      o.batch = *v;
    } else if (flag == "--lr") {
      const auto v = parse_double(value);
      if (!v || *v <= 0) return bad("a learning rate above 0");
      o.lr = *v;
    } else if (flag == "--momentum") {
      const auto v = parse_double(value);
      if (!v || *v < 0 || *v >= 1) return bad("a momentum in [0, 1)");
      o.momentum = *v;
    } else if (flag == "--weight-decay") {
      const auto v = parse_double(value);
      if (!v || *v < 0) return bad("a weight decay of 0 or more");
      o.weight_decay = *v;
    } else if (flag == "--hidden") {
      std::vector<int> widths;
      std::string_view rest = value;
      while (true) {
        const size_t comma = rest.find(',');
        const auto v = parse_integer<int>(rest.substr(0, comma));
        if (!v || *v < 1 || *v > 65536) {
          return bad("comma-separated hidden layer widths of 1..65536, such as 256,128");
        }
        widths.push_back(*v);
        if (comma == std::string_view::npos) break;
        rest.remove_prefix(comma + 1);
      }
      if (widths.size() > 16) return bad("at most 16 hidden layers");
      o.hidden = widths;
    } else if (flag == "--seed") {
      const auto v = parse_integer<uint64_t>(value);
      if (!v) return bad("an unsigned 64-bit seed");
      o.seed = *v;
    } else if (flag == "--train-limit") {
      const auto v = parse_integer<size_t>(value);
      if (!v) return bad("a number of training images (0: all)");
      o.train_limit = *v;
    } else if (flag == "--data") {
      if (value.empty()) return bad("a directory");
      o.data = value;
    } else {
      return "unknown flag " + flag + " (see --help)";
    }
  }
  *out = o;
  return std::nullopt;
}

}  // namespace gradpack::train
