// SPDX-License-Identifier: Apache-2.0
// gradpack-train-fmnist: data-parallel training of an MLP on Fashion-MNIST over gradpack's host
// all-reduce, to show that compressed gradients with error feedback still converge. Every rank is
// one process started by gradpack-run; each takes a disjoint shard of every global mini-batch,
// computes its gradient, and the ranks sum the gradients with gp_allreduce (compressed by --codec)
// so that every rank applies the same update to the same weights. Rank 0 prints one line per
// epoch and, last, one JSON object (docs/training.md).
//
// It uses only the public C API of libgradpack.so.
#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gradpack/gradpack.h"
#include "tools/json_string.h"
#include "tools/train/fmnist_data.h"
#include "tools/train/gemm.h"
#include "tools/train/mlp.h"
#include "tools/train/train_options.h"

namespace {

using gradpack::train::Bucketing;
using gradpack::train::ImageSet;
using gradpack::train::kImagePixels;
using gradpack::train::TrainOptions;

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr const char* kTool = "gradpack-train-fmnist";
// Rows per forward pass when evaluating the test set.
constexpr int kEvalBatch = 256;

using Clock = std::chrono::steady_clock;

double since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// The rank from the launcher's environment, for messages before the communicator exists.
int env_rank() {
  const char* env = std::getenv("GRADPACK_RANK");
  return env != nullptr ? std::atoi(env) : 0;
}

// A failed gp_* call ends this rank; gradpack-run then stops the others.
void check_call(int rank, const char* call, gp_status_t status) {
  if (status == GP_OK) return;
  std::fprintf(stderr, "%s: rank %d: %s: %s: %s\n", kTool, rank, call, gp_status_string(status),
               gp_last_error());
  std::fflush(stdout);
  std::_Exit(kExitRuntime);
}

// The permutation of [0, n) that epoch `epoch` visits, the same on every rank: Fisher-Yates driven
// by splitmix64 of (seed, epoch), which (unlike std::shuffle) gives the same order on every
// platform and standard library.
std::vector<uint32_t> shuffle(size_t n, uint64_t seed, int epoch) {
  std::vector<uint32_t> order(n);
  for (size_t i = 0; i < n; ++i) order[i] = static_cast<uint32_t>(i);
  uint64_t state = seed * 0x2545f4914f6cdd1dull + static_cast<uint64_t>(epoch) + 1;
  auto next = [&state] {
    uint64_t z = (state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  for (size_t i = n; i > 1; --i) {
    const size_t j = static_cast<size_t>(next() % i);
    std::swap(order[i - 1], order[j]);
  }
  return order;
}

// Pixels of the chosen images scaled to [0, 1], one row each.
void gather(const ImageSet& set, const uint32_t* index, int m, std::vector<float>* x,
            std::vector<uint8_t>* y) {
  x->resize(static_cast<size_t>(m) * kImagePixels);
  y->resize(static_cast<size_t>(m));
  constexpr float kScale = 1.0f / 255.0f;
  for (int i = 0; i < m; ++i) {
    const uint8_t* src = &set.pixels[static_cast<size_t>(index[i]) * kImagePixels];
    float* dst = &(*x)[static_cast<size_t>(i) * kImagePixels];
    for (int p = 0; p < kImagePixels; ++p) dst[p] = src[p] * kScale;
    (*y)[i] = set.labels[index[i]];
  }
}

// One gradient all-reduce: a contiguous range of the gradient array and the key that names its
// error-feedback residual.
struct Bucket {
  std::string key;
  size_t offset;
  size_t count;
};

std::vector<Bucket> make_buckets(const gradpack::train::Mlp& mlp, Bucketing how) {
  if (how == Bucketing::kFlat) return {{"all", 0, mlp.num_params()}};
  std::vector<Bucket> buckets;
  for (size_t l = 0; l < mlp.layers().size(); ++l) {
    const auto& layer = mlp.layers()[l];
    buckets.push_back({"fc" + std::to_string(l + 1), layer.offset, layer.size()});
  }
  return buckets;
}

struct Sums {
  // Summed over the ranks at the end of each epoch, in one all-reduce.
  double train_loss = 0;
  double train_seen = 0;
  double test_loss = 0;
  double test_correct = 0;
  double wire_bytes = 0;
};

}  // namespace

int main(int argc, char** argv) {
  TrainOptions opts;
  if (auto err = gradpack::train::parse_train_args(argc, argv, &opts)) {
    std::fprintf(stderr, "%s: %s\n", kTool, err->c_str());
    return kExitUsage;
  }
  if (opts.help) {
    std::fputs(gradpack::train::kTrainHelp, stdout);
    return 0;
  }

  // The dataset first: a missing package stops every rank before any of them waits for a peer.
  const auto load_start = Clock::now();
  ImageSet train, test;
  if (auto err = gradpack::train::load_image_set(opts.data, "train", opts.train_limit, &train)) {
    std::fprintf(stderr, "%s: rank %d: %s\n", kTool, env_rank(), err->c_str());
    return kExitRuntime;
  }
  if (auto err = gradpack::train::load_image_set(opts.data, "t10k", 0, &test)) {
    std::fprintf(stderr, "%s: rank %d: %s\n", kTool, env_rank(), err->c_str());
    return kExitRuntime;
  }
  const double load_seconds = since(load_start);

  gp_comm_t* comm = nullptr;
  if (gp_comm_init_from_env(&comm) != GP_OK) {
    std::fprintf(stderr,
                 "%s: rank %d: gp_comm_init_from_env: %s (start the ranks with gradpack-run -n N "
                 "-- %s ...)\n",
                 kTool, env_rank(), gp_last_error(), kTool);
    return kExitRuntime;
  }
  const int rank = gp_comm_rank(comm);
  const int nranks = gp_comm_size(comm);
  if (opts.batch < nranks) {
    // Every rank sees the same sizes, so all stop here; rank 0 says why before the others leave.
    if (rank == 0) {
      std::fprintf(stderr,
                   "%s: --batch %d is below the %d ranks: each rank needs an image per step\n",
                   kTool, opts.batch, nranks);
    }
    check_call(rank, "gp_barrier", gp_barrier(comm));
    gp_comm_destroy(comm);
    return kExitUsage;
  }

  std::vector<int> sizes = {kImagePixels};
  sizes.insert(sizes.end(), opts.hidden.begin(), opts.hidden.end());
  sizes.push_back(gradpack::train::kClasses);
  gradpack::train::Mlp mlp(sizes, opts.seed);
  gradpack::train::SgdMomentum sgd(mlp.num_params(), static_cast<float>(opts.lr),
                                   static_cast<float>(opts.momentum),
                                   static_cast<float>(opts.weight_decay));
  const std::vector<Bucket> buckets = make_buckets(mlp, opts.bucket);

  gp_allreduce_opts_t grad_opts;
  gp_allreduce_opts_init(&grad_opts);
  grad_opts.codec = opts.codec.c_str();
  grad_opts.error_feedback = opts.error_feedback ? 1 : 0;
  grad_opts.residual_bits = opts.residual_bits;
  // Metrics and checks are never compressed, whatever GRADPACK_COMPRESS says.
  gp_allreduce_opts_t exact_opts;
  gp_allreduce_opts_init(&exact_opts);
  exact_opts.codec = "none";
  exact_opts.error_feedback = 0;

  if (rank == 0) {
    std::printf("# %s: %d ranks, MLP", kTool, nranks);
    for (size_t i = 0; i < sizes.size(); ++i) std::printf("%s%d", i == 0 ? " " : "-", sizes[i]);
    std::printf(
        " (%zu parameters), %zu training images, codec %s, error feedback %s, bucket %s, "
        "gemm %s\n",
        mlp.num_params(), train.count, opts.codec.c_str(), opts.error_feedback ? "on" : "off",
        gradpack::train::bucketing_name(opts.bucket), gradpack::train::gemm_kernels().isa);
    std::fflush(stdout);
  }

  const size_t n = train.count;
  const size_t steps = (n + static_cast<size_t>(opts.batch) - 1) / static_cast<size_t>(opts.batch);
  std::vector<float> x;
  std::vector<uint8_t> y;
  double allreduce_seconds = 0;
  Sums last;
  double total_wire = 0;
  gp_comm_stats_t stats;
  // As after the last gradient all-reduce (the metric all-reduces that follow are uncompressed).
  gp_comm_stats_t grad_stats = {};
  const auto train_start = Clock::now();

  for (int epoch = 0; epoch < opts.epochs; ++epoch) {
    const auto epoch_start = Clock::now();
    const std::vector<uint32_t> order = shuffle(n, opts.seed, epoch);
    stats.struct_size = sizeof(stats);
    check_call(rank, "gp_comm_stats", gp_comm_stats(comm, &stats));
    const uint64_t sent_before = stats.bytes_sent;
    Sums sums;
    for (size_t s = 0; s < steps; ++s) {
      const size_t start = s * static_cast<size_t>(opts.batch);
      const size_t len = std::min(static_cast<size_t>(opts.batch), n - start);
      // This rank's shard of the global batch; shards differ by at most one image.
      const size_t lo = start + len * static_cast<size_t>(rank) / static_cast<size_t>(nranks);
      const size_t hi = start + len * static_cast<size_t>(rank + 1) / static_cast<size_t>(nranks);
      const int m = static_cast<int>(hi - lo);
      gather(train, &order[lo], m, &x, &y);
      std::memset(mlp.grads(), 0, mlp.num_params() * sizeof(float));
      // Each rank's gradient is scaled by 1 / (global batch), so the sum over ranks is the
      // gradient of the mean loss of the whole batch, even when shards are unequal.
      sums.train_loss += mlp.backprop(x.data(), y.data(), m, 1.0f / static_cast<float>(len));
      sums.train_seen += m;
      const auto reduce_start = Clock::now();
      for (const Bucket& b : buckets) {
        grad_opts.key = b.key.c_str();
        float* g = mlp.grads() + b.offset;
        check_call(rank, "gp_allreduce",
                   gp_allreduce(comm, g, g, b.count, GP_FLOAT32, GP_SUM, &grad_opts));
      }
      allreduce_seconds += since(reduce_start);
      sgd.step(mlp.params(), mlp.grads());
    }
    check_call(rank, "gp_comm_stats", gp_comm_stats(comm, &stats));
    // Only the gradient all-reduces of this epoch: the metric all-reduce below is not counted.
    sums.wire_bytes = static_cast<double>(stats.bytes_sent - sent_before);
    grad_stats = stats;

    // The test set, sharded over the ranks.
    const size_t test_lo = test.count * static_cast<size_t>(rank) / static_cast<size_t>(nranks);
    const size_t test_hi = test.count * static_cast<size_t>(rank + 1) / static_cast<size_t>(nranks);
    std::vector<uint32_t> test_index(test_hi - test_lo);
    for (size_t i = 0; i < test_index.size(); ++i)
      test_index[i] = static_cast<uint32_t>(test_lo + i);
    int64_t correct = 0;
    for (size_t i = 0; i < test_index.size(); i += kEvalBatch) {
      const int m = static_cast<int>(std::min<size_t>(kEvalBatch, test_index.size() - i));
      gather(test, &test_index[i], m, &x, &y);
      mlp.evaluate(x.data(), y.data(), m, &sums.test_loss, &correct);
    }
    sums.test_correct = static_cast<double>(correct);

    static_assert(sizeof(Sums) == 5 * sizeof(double));
    check_call(rank, "gp_allreduce",
               gp_allreduce(comm, &sums, &sums, 5, GP_FLOAT64, GP_SUM, &exact_opts));
    last = sums;
    total_wire += sums.wire_bytes;
    if (rank == 0) {
      std::printf(
          "epoch %d/%d  train_loss %.4f  test_accuracy %.4f  test_loss %.4f  wire %.1f MB  "
          "%.1f s\n",
          epoch + 1, opts.epochs, sums.train_loss / sums.train_seen,
          sums.test_correct / static_cast<double>(test.count),
          sums.test_loss / static_cast<double>(test.count), sums.wire_bytes / 1e6,
          since(epoch_start));
      std::fflush(stdout);
    }
  }
  const double train_seconds = since(train_start);

  // gp_allreduce gives every rank the same sum, so the weights must be the same bits everywhere.
  const uint64_t checksum = gradpack::train::checksum(mlp.params(), mlp.num_params());
  int64_t lo = static_cast<int64_t>(checksum), hi = lo;
  check_call(rank, "gp_allreduce", gp_allreduce(comm, &lo, &lo, 1, GP_INT64, GP_MIN, &exact_opts));
  check_call(rank, "gp_allreduce", gp_allreduce(comm, &hi, &hi, 1, GP_INT64, GP_MAX, &exact_opts));
  const bool identical = lo == hi;

  if (rank == 0) {
    if (!identical) {
      std::fprintf(stderr,
                   "%s: warning: the ranks' weights differ after training (checksums "
                   "%016" PRIx64 " .. %016" PRIx64
                   "): the all-reduce gave ranks different results\n",
                   kTool, static_cast<uint64_t>(lo), static_cast<uint64_t>(hi));
    }
    std::string hidden;
    for (size_t i = 0; i < opts.hidden.size(); ++i) {
      hidden += (i == 0 ? "" : ",") + std::to_string(opts.hidden[i]);
    }
    std::printf(
        "{\"tool\":\"%s\",\"codec\":%s,\"last_codec\":%s,\"last_algorithm\":%s,\"error_feedback\":%"
        "s,"
        "\"residual_bits\":%d,\"bucket\":\"%s\",\"ranks\":%d,\"epochs\":%d,\"seed\":%" PRIu64
        ",\"batch\":%d,\"lr\":%g,\"momentum\":%g,\"weight_decay\":%g,\"hidden\":[%s],"
        "\"params\":%zu,\"train_images\":%zu,\"train_loss\":%.6f,\"test_loss\":%.6f,"
        "\"test_accuracy\":%.4f,\"wire_bytes\":%.0f,\"compressed_calls\":%" PRIu64
        ",\"seconds\":%.3f,\"allreduce_seconds\":%.3f,\"load_seconds\":%.3f,"
        "\"weights_identical\":%s}\n",
        kTool, gradpack::tools::json_string(opts.codec).c_str(),
        gradpack::tools::json_string(grad_stats.last_codec).c_str(),
        gradpack::tools::json_string(grad_stats.last_algorithm).c_str(),
        opts.error_feedback ? "true" : "false", opts.residual_bits,
        gradpack::train::bucketing_name(opts.bucket), nranks, opts.epochs, opts.seed, opts.batch,
        opts.lr, opts.momentum, opts.weight_decay, hidden.c_str(), mlp.num_params(), train.count,
        last.train_loss / last.train_seen, last.test_loss / static_cast<double>(test.count),
        last.test_correct / static_cast<double>(test.count), total_wire,
        grad_stats.compressed_calls, train_seconds, allreduce_seconds, load_seconds,
        identical ? "true" : "false");
    std::fflush(stdout);
  }
  check_call(rank, "gp_comm_destroy", gp_comm_destroy(comm));
  return 0;
}
