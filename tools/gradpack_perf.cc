// SPDX-License-Identifier: Apache-2.0
// gradpack-perf: nccl-tests' *_perf programs for gradpack's host collectives. Every rank is one
// process that joins the communicator from the environment (start them with gradpack-run); rank 0
// prints one row per size with the out-of-place and in-place time, algbw, busbw and the number of
// wrong elements. sendrecv (every rank sends to rank+1 and receives from rank-1, as nccl-tests'
// sendrecv_perf) has no in-place layout: its in-place columns print N/A.
//
// With -z the all-reduce is compressed: one layout (out-of-place), and per row the bytes each rank
// sent per call (gp_comm_stats), the codec the library used and, with -c, the worst error of a
// run without error feedback against the exact sum, allowed the codec's bound (docs/tools.md).
//
// It uses only the public C API of libgradpack.so, so it also exercises the installed ABI.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "gradpack/gradpack.h"
#include "tools/perf_data.h"
#include "tools/perf_options.h"

namespace {

using gradpack::tools::CodecErrorModel;
using gradpack::tools::Collective;
using gradpack::tools::Measurement;
using gradpack::tools::PerfOptions;
using gradpack::tools::Row;

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
// Bytes of the per-rank "host pid" record gathered for the header.
constexpr size_t kRankRecordBytes = 64;

struct Context {
  gp_comm_t* comm = nullptr;
  int rank = 0;
  int nranks = 1;
  PerfOptions opts;
  gp_allreduce_opts_t allreduce_opts;
};

// A failed gp_* call ends this rank; gradpack-run then stops the others.
void check_call(int rank, const char* call, gp_status_t status) {
  if (status == GP_OK) return;
  std::fprintf(stderr, "gradpack-perf: rank %d: %s: %s: %s\n", rank, call, gp_status_string(status),
               gp_last_error());
  std::fflush(stdout);
  std::_Exit(kExitRuntime);
}

// The buffers of one row and the pointers each layout passes.
struct Buffers {
  std::vector<unsigned char> send;
  std::vector<unsigned char> recv;
  std::vector<unsigned char> inplace;
  const void* inplace_send = nullptr;
  void* inplace_recv = nullptr;
};

class RowRunner {
 public:
  RowRunner(Context* ctx, gp_dtype_t dtype, gp_redop_t op, const gradpack::tools::RowShape& shape)
      : ctx_(ctx), dtype_(dtype), op_(op), shape_(shape), elem_(gp_dtype_size(dtype)) {}

  Row run() {
    allocate();
    Row row;
    row.shape = shape_;
    row.dtype = dtype_;
    row.op = op_;
    row.coll = ctx_->opts.collective;
    row.root = gradpack::tools::collective_has_root(row.coll) ? ctx_->opts.root : -1;
    row.compressed = compressed();
    row.out_of_place = run_layout(false);
    // -z measures one layout: the in-place one would say the same about the codec, and the
    // compression columns need the width.
    if (compressed()) {
      row.in_place.skipped = true;
    } else {
      row.in_place = run_layout(true);
    }
    return row;
  }

 private:
  Collective coll() const { return ctx_->opts.collective; }
  bool reduces() const { return gradpack::tools::collective_reduces(coll()); }
  bool compressed() const { return gradpack::tools::compressed(ctx_->opts); }
  uint64_t n() const { return static_cast<uint64_t>(ctx_->nranks); }
  uint64_t rank() const { return static_cast<uint64_t>(ctx_->rank); }
  // sendrecv's peers: the ring rank+1 (sent to) and rank-1 (received from).
  int next_rank() const { return (ctx_->rank + 1) % ctx_->nranks; }
  int prev_rank() const { return (ctx_->rank - 1 + ctx_->nranks) % ctx_->nranks; }

  // Element counts of the send and receive buffers of the out-of-place layout.
  uint64_t send_count() const {
    return coll() == Collective::kReduceScatter ? shape_.rank_count * n() : shape_.rank_count;
  }
  uint64_t recv_count() const {
    return coll() == Collective::kAllGather ? shape_.rank_count * n() : shape_.rank_count;
  }

  void allocate() {
    bufs_.send.assign(send_count() * elem_, 0);
    bufs_.recv.assign(recv_count() * elem_, 0);
    const bool has_inplace = gradpack::tools::collective_has_in_place(coll());
    bufs_.inplace.assign(has_inplace ? std::max(send_count(), recv_count()) * elem_ : 0, 0);
    unsigned char* base = bufs_.inplace.data();
    const size_t block = shape_.rank_count * elem_;
    // NCCL's in-place layouts (gradpack.h): this rank's block of the full buffer.
    switch (coll()) {
      case Collective::kReduceScatter:
        bufs_.inplace_send = base;
        bufs_.inplace_recv = base + rank() * block;
        break;
      case Collective::kAllGather:
        bufs_.inplace_send = base + rank() * block;
        bufs_.inplace_recv = base;
        break;
      default:
        bufs_.inplace_send = base;
        bufs_.inplace_recv = base;
        break;
    }
  }

  // Fresh inputs; receive buffers that the collective must overwrite are zeroed (0 is never an
  // input value).
  void fill(bool in_place) {
    const bool red = reduces();
    if (compressed()) {  // all-reduce only: gradient-like data
      gradpack::tools::fill_gradient(
          dtype_, ctx_->rank, 0, shape_.rank_count,
          in_place ? const_cast<void*>(bufs_.inplace_send) : bufs_.send.data());
      if (!in_place) gradpack::tools::fill_sentinel(dtype_, recv_count(), bufs_.recv.data());
      return;
    }
    if (in_place) {
      unsigned char* base = bufs_.inplace.data();
      const uint64_t total = bufs_.inplace.size() / std::max<size_t>(elem_, 1);
      if (coll() == Collective::kAllGather) {
        gradpack::tools::fill_sentinel(dtype_, total, base);
        gradpack::tools::fill_input(dtype_, red, op_, ctx_->rank, 0, shape_.rank_count,
                                    const_cast<void*>(bufs_.inplace_send));
      } else {
        gradpack::tools::fill_input(dtype_, red, op_, ctx_->rank, 0, total, base);
      }
      return;
    }
    gradpack::tools::fill_input(dtype_, red, op_, ctx_->rank, 0, send_count(), bufs_.send.data());
    gradpack::tools::fill_sentinel(dtype_, recv_count(), bufs_.recv.data());
  }

  // allreduce_opts: those of the timed calls unless given (the -z check turns error feedback off).
  void call(bool in_place, const gp_allreduce_opts_t* allreduce_opts = nullptr) {
    const void* send = in_place ? bufs_.inplace_send : bufs_.send.data();
    void* recv = in_place ? bufs_.inplace_recv : bufs_.recv.data();
    gp_comm_t* comm = ctx_->comm;
    if (allreduce_opts == nullptr) allreduce_opts = &ctx_->allreduce_opts;
    switch (coll()) {
      case Collective::kAllReduce:
        return check_call(
            ctx_->rank, "gp_allreduce",
            gp_allreduce(comm, send, recv, shape_.rank_count, dtype_, op_, allreduce_opts));
      case Collective::kReduceScatter:
        return check_call(ctx_->rank, "gp_reduce_scatter",
                          gp_reduce_scatter(comm, send, recv, shape_.rank_count, dtype_, op_));
      case Collective::kAllGather:
        return check_call(ctx_->rank, "gp_allgather",
                          gp_allgather(comm, send, recv, shape_.rank_count, dtype_));
      case Collective::kBroadcast:
        return check_call(
            ctx_->rank, "gp_broadcast",
            gp_broadcast(comm, send, recv, shape_.rank_count, dtype_, ctx_->opts.root));
      case Collective::kSendRecv:
        return check_call(
            ctx_->rank, "gp_sendrecv",
            gp_sendrecv(comm, send, next_rank(), recv, prev_rank(), shape_.rank_count, dtype_));
    }
  }

  // Wrong elements of this rank's result.
  int64_t count_wrong(bool in_place) const {
    const void* recv = in_place ? bufs_.inplace_recv : bufs_.recv.data();
    const bool red = reduces();
    int64_t wrong = 0;
    auto check = [&](uint64_t i, double expected) {
      const double got = gradpack::tools::load_element(dtype_, recv, i);
      if (!gradpack::tools::matches(dtype_, op_, red, got, expected)) ++wrong;
    };
    const uint64_t rc = shape_.rank_count;
    switch (coll()) {
      case Collective::kAllReduce:
        for (uint64_t i = 0; i < rc; ++i) {
          check(i, gradpack::tools::expected_reduction(dtype_, op_, ctx_->nranks, i));
        }
        break;
      case Collective::kReduceScatter:
        for (uint64_t i = 0; i < rc; ++i) {
          check(i, gradpack::tools::expected_reduction(dtype_, op_, ctx_->nranks, rank() * rc + i));
        }
        break;
      case Collective::kAllGather:
        for (uint64_t r = 0; r < n(); ++r) {
          for (uint64_t i = 0; i < rc; ++i) {
            check(r * rc + i, static_cast<double>(gradpack::tools::input_value(
                                  false, op_, static_cast<int>(r), i)));
          }
        }
        break;
      case Collective::kBroadcast:
        for (uint64_t i = 0; i < rc; ++i) {
          check(i,
                static_cast<double>(gradpack::tools::input_value(false, op_, ctx_->opts.root, i)));
        }
        break;
      case Collective::kSendRecv:
        // What the previous rank sent: its input, computed here.
        for (uint64_t i = 0; i < rc; ++i) {
          check(i, static_cast<double>(gradpack::tools::input_value(false, op_, prev_rank(), i)));
        }
        break;
    }
    return wrong;
  }

  // -z -c: this rank's elements whose distance to the exact result (fp64, from every rank's input,
  // which every rank can compute) exceeds the codec's bound (compressed_error_bound), and in
  // *max_abs_error the largest distance (infinity for a NaN). Every absmax is over the whole
  // buffer, which only makes the bound looser.
  int64_t count_out_of_bound(bool in_place, const CodecErrorModel& model, double* max_abs_error,
                             double* result_absmax) const {
    const void* recv = in_place ? bufs_.inplace_recv : bufs_.recv.data();
    const uint64_t rc = shape_.rank_count;
    // Every rank's input as it was stored (rounded to the dtype).
    auto input = [&](int r, uint64_t i) {
      return gradpack::tools::round_to(dtype_, gradpack::tools::gradient_value(r, i));
    };
    gradpack::tools::ErrorBoundInput bound_in;
    bound_in.dtype = dtype_;
    bound_in.op = op_;
    bound_in.nranks = ctx_->nranks;
    for (int r = 0; r < ctx_->nranks; ++r) {
      double absmax = 0;
      for (uint64_t i = 0; i < rc; ++i) absmax = std::max(absmax, std::fabs(input(r, i)));
      bound_in.sum_rank_absmax += absmax;
    }
    for (uint64_t i = 0; i < rc; ++i) {
      double sum = 0;
      for (int r = 0; r < ctx_->nranks; ++r) sum += input(r, i);
      bound_in.result_absmax = std::max(bound_in.result_absmax, std::fabs(sum));
    }
    int64_t wrong = 0;
    double worst = 0;
    for (uint64_t i = 0; i < rc; ++i) {
      double sum = 0;
      double abs_sum = 0;
      for (int r = 0; r < ctx_->nranks; ++r) {
        sum += input(r, i);
        abs_sum += std::fabs(input(r, i));
      }
      const double ref = op_ == GP_AVG ? sum / ctx_->nranks : sum;
      bound_in.element_abs_sum = abs_sum;
      const double err = std::fabs(gradpack::tools::load_element(dtype_, recv, i) - ref);
      // A NaN fails the comparison: it is wrong, and the worst error.
      if (!(err <= gradpack::tools::compressed_error_bound(model, bound_in))) ++wrong;
      worst = std::isnan(err) ? std::numeric_limits<double>::infinity() : std::max(worst, err);
    }
    *max_abs_error = worst;
    *result_absmax = op_ == GP_AVG ? bound_in.result_absmax / ctx_->nranks : bound_in.result_absmax;
    return wrong;
  }

  gp_comm_stats_t comm_stats() const {
    gp_comm_stats_t stats;
    std::memset(&stats, 0, sizeof(stats));
    stats.struct_size = sizeof(stats);
    check_call(ctx_->rank, "gp_comm_stats", gp_comm_stats(ctx_->comm, &stats));
    return stats;
  }

  // The -z check: one more call without error feedback (so that the timed calls' residuals do not
  // enter it) on fresh data, every element within the bound of the codec the library used.
  void check_compressed(bool in_place, Measurement* m) {
    gp_allreduce_opts_t check_opts = ctx_->allreduce_opts;
    check_opts.error_feedback = 0;
    fill(in_place);
    call(in_place, &check_opts);
    const gp_comm_stats_t stats = comm_stats();
    const std::string used(stats.last_codec, strnlen(stats.last_codec, sizeof(stats.last_codec)));
    const auto model = gradpack::tools::parse_codec_error_model(used);
    if (!model) {
      std::fprintf(stderr,
                   "gradpack-perf: rank %d: gp_comm_stats.last_codec \"%s\" is no codec spec\n",
                   ctx_->rank, used.c_str());
      std::fflush(stdout);
      std::_Exit(kExitRuntime);
    }
    double max_abs_error = 0;
    double result_absmax = 0;
    int64_t wrong = count_out_of_bound(in_place, *model, &max_abs_error, &result_absmax);
    check_call(ctx_->rank, "gp_allreduce",
               gp_allreduce(ctx_->comm, &wrong, &wrong, 1, GP_INT64, GP_SUM, nullptr));
    check_call(
        ctx_->rank, "gp_allreduce",
        gp_allreduce(ctx_->comm, &max_abs_error, &max_abs_error, 1, GP_FLOAT64, GP_MAX, nullptr));
    m->wrong = wrong;
    m->max_error = result_absmax > 0 ? max_abs_error / result_absmax : max_abs_error;
  }

  Measurement run_layout(bool in_place) {
    const PerfOptions& opts = ctx_->opts;
    if (in_place && !gradpack::tools::collective_has_in_place(coll())) {
      // Every rank skips it alike, so no rank waits in a call the others do not make.
      Measurement skipped;
      skipped.skipped = true;
      return skipped;
    }
    fill(in_place);
    for (int i = 0; i < opts.warmup; ++i) call(in_place);
    check_call(ctx_->rank, "gp_barrier", gp_barrier(ctx_->comm));
    gp_comm_stats_t before{};
    if (compressed()) before = comm_stats();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < opts.iters; ++i) call(in_place);
    const auto end = std::chrono::steady_clock::now();
    // Read before any other call: last_codec is that of the last all-reduce.
    gp_comm_stats_t after{};
    if (compressed()) after = comm_stats();
    double seconds = std::chrono::duration<double>(end - start).count() / opts.iters;
    // The slowest rank's time, as nccl-tests reports by default.
    check_call(ctx_->rank, "gp_allreduce",
               gp_allreduce(ctx_->comm, &seconds, &seconds, 1, GP_FLOAT64, GP_MAX, nullptr));
    if (compressed()) {
      Measurement m = gradpack::tools::measure(coll(), ctx_->nranks, shape_.bytes, seconds, -1);
      // Bytes this rank handed to the transport per call; the table shows the mean over ranks.
      double wire[2];
      wire[0] = static_cast<double>(after.bytes_sent - before.bytes_sent) / opts.iters;
      wire[1] = wire[0];
      check_call(ctx_->rank, "gp_allreduce",
                 gp_allreduce(ctx_->comm, &wire[0], &wire[0], 1, GP_FLOAT64, GP_SUM, nullptr));
      check_call(ctx_->rank, "gp_allreduce",
                 gp_allreduce(ctx_->comm, &wire[1], &wire[1], 1, GP_FLOAT64, GP_MAX, nullptr));
      m.wire_bytes = wire[0] / ctx_->nranks;
      m.wire_bytes_max = wire[1];
      m.codec_used.assign(after.last_codec, strnlen(after.last_codec, sizeof(after.last_codec)));
      m.algorithm_used.assign(after.last_algorithm,
                              strnlen(after.last_algorithm, sizeof(after.last_algorithm)));
      if (opts.check != 0) check_compressed(in_place, &m);
      return m;
    }
    int64_t wrong = -1;
    if (opts.check != 0) {
      // The timed runs reduced their own outputs again (in place): check a run on fresh data.
      fill(in_place);
      call(in_place);
      wrong = count_wrong(in_place);
      check_call(ctx_->rank, "gp_allreduce",
                 gp_allreduce(ctx_->comm, &wrong, &wrong, 1, GP_INT64, GP_SUM, nullptr));
    }
    return gradpack::tools::measure(coll(), ctx_->nranks, shape_.bytes, seconds, wrong);
  }

  Context* ctx_;
  gp_dtype_t dtype_;
  gp_redop_t op_;
  gradpack::tools::RowShape shape_;
  size_t elem_;
  Buffers bufs_;
};

// --group N: N all-reduces of one size, each with its own buffers (buffer j holds the elements
// j*count.. of the test data, so a result landing in the wrong buffer is caught), made inside one
// group and then one by one, in the same run.
class GroupRowRunner {
 public:
  GroupRowRunner(Context* ctx, gp_dtype_t dtype, gp_redop_t op,
                 const gradpack::tools::RowShape& shape)
      : ctx_(ctx), dtype_(dtype), op_(op), shape_(shape), elem_(gp_dtype_size(dtype)) {}

  Row run() {
    const size_t n = static_cast<size_t>(ctx_->opts.group);
    send_.assign(n, std::vector<unsigned char>(shape_.count * elem_));
    recv_.assign(n, std::vector<unsigned char>(shape_.count * elem_));
    Row row;
    row.shape = shape_;
    row.dtype = dtype_;
    row.op = op_;
    row.coll = Collective::kAllReduce;
    row.root = -1;
    row.group = ctx_->opts.group;
    fill();
    const double grouped = timed(true);
    row.separate_us = timed(false) * 1e6;
    row.out_of_place = gradpack::tools::measure(Collective::kAllReduce, ctx_->nranks,
                                                shape_.bytes * n, grouped, checked_wrong());
    row.in_place.skipped = true;
    return row;
  }

 private:
  void fill() {
    for (size_t j = 0; j < send_.size(); ++j) {
      gradpack::tools::fill_input(dtype_, true, op_, ctx_->rank, j * shape_.count, shape_.count,
                                  send_[j].data());
      gradpack::tools::fill_sentinel(dtype_, shape_.count, recv_[j].data());
    }
  }

  void calls(bool grouped) {
    if (grouped) check_call(ctx_->rank, "gp_group_start", gp_group_start());
    for (size_t j = 0; j < send_.size(); ++j) {
      check_call(ctx_->rank, "gp_allreduce",
                 gp_allreduce(ctx_->comm, send_[j].data(), recv_[j].data(), shape_.count, dtype_,
                              op_, &ctx_->allreduce_opts));
    }
    if (grouped) check_call(ctx_->rank, "gp_group_end", gp_group_end());
  }

  // Seconds per iteration of N calls, the slowest rank's.
  double timed(bool grouped) {
    const PerfOptions& opts = ctx_->opts;
    for (int i = 0; i < opts.warmup; ++i) calls(grouped);
    check_call(ctx_->rank, "gp_barrier", gp_barrier(ctx_->comm));
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < opts.iters; ++i) calls(grouped);
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() /
        opts.iters;
    check_call(ctx_->rank, "gp_allreduce",
               gp_allreduce(ctx_->comm, &seconds, &seconds, 1, GP_FLOAT64, GP_MAX, nullptr));
    return seconds;
  }

  // -c: one more group on fresh data, every element of every buffer checked (summed over ranks).
  int64_t checked_wrong() {
    if (ctx_->opts.check == 0) return -1;
    fill();
    calls(true);
    int64_t wrong = 0;
    for (size_t j = 0; j < recv_.size(); ++j) {
      for (uint64_t i = 0; i < shape_.count; ++i) {
        const double expected =
            gradpack::tools::expected_reduction(dtype_, op_, ctx_->nranks, j * shape_.count + i);
        const double got = gradpack::tools::load_element(dtype_, recv_[j].data(), i);
        if (!gradpack::tools::matches(dtype_, op_, true, got, expected)) ++wrong;
      }
    }
    check_call(ctx_->rank, "gp_allreduce",
               gp_allreduce(ctx_->comm, &wrong, &wrong, 1, GP_INT64, GP_SUM, nullptr));
    return wrong;
  }

  Context* ctx_;
  gp_dtype_t dtype_;
  gp_redop_t op_;
  gradpack::tools::RowShape shape_;
  size_t elem_;
  std::vector<std::vector<unsigned char>> send_, recv_;
};

void print_header(const Context& ctx) {
  const PerfOptions& o = ctx.opts;
  // Where every rank runs, gathered so that rank 0 can print it.
  char record[kRankRecordBytes] = {};
  char host[48] = {};
  gethostname(host, sizeof(host) - 1);
  std::snprintf(record, sizeof(record), "%d %s", static_cast<int>(getpid()), host);
  std::vector<char> all(kRankRecordBytes * static_cast<size_t>(ctx.nranks));
  check_call(ctx.rank, "gp_allgather",
             gp_allgather(ctx.comm, record, all.data(), kRankRecordBytes, GP_UINT8));
  if (ctx.rank != 0 || o.json) return;
  const bool compressed = gradpack::tools::compressed(o);
  const char* isa = std::getenv("GRADPACK_CPU_ISA");
  std::printf(
      "# gradpack-perf %s: nranks %d algorithm %s gradpack %s (header %d.%d.%d) cpu isa %s\n",
      gradpack::tools::collective_name(o.collective), ctx.nranks,
      gradpack::tools::algo_name(o.algorithm), gp_version(), GRADPACK_VERSION_MAJOR,
      GRADPACK_VERSION_MINOR, GRADPACK_VERSION_PATCH,
      isa != nullptr && *isa != '\0' ? isa : "auto");
  if (o.step_factor >= 2) {
    std::printf("# minBytes %" PRIu64 " maxBytes %" PRIu64 " step: %" PRIu64
                "(factor) warmup iters: %d iters: %d validation: %d\n",
                o.min_bytes, o.max_bytes, o.step_factor, o.warmup, o.iters, o.check != 0);
  } else {
    std::printf("# minBytes %" PRIu64 " maxBytes %" PRIu64 " step: %" PRIu64
                "(bytes) warmup iters: %d iters: %d validation: %d\n",
                o.min_bytes, o.max_bytes, o.step_bytes, o.warmup, o.iters, o.check != 0);
  }
  std::printf("#\n# Using ranks\n");
  for (int r = 0; r < ctx.nranks; ++r) {
    std::string rec(
        all.data() + static_cast<size_t>(r) * kRankRecordBytes,
        strnlen(all.data() + static_cast<size_t>(r) * kRankRecordBytes, kRankRecordBytes));
    const size_t space = rec.find(' ');
    std::printf("#  Rank %2d Pid %7s on %s\n", r, rec.substr(0, space).c_str(),
                space == std::string::npos ? "?" : rec.substr(space + 1).c_str());
  }
  if (compressed) {
    std::printf(
        "#\n# Compressed: codec %s, error feedback %s (the check: without it). Out-of-place only;"
        "\n# time, algbw, busbw of the uncompressed size; wire: bytes sent per rank per call\n",
        o.codec.c_str(), o.error_feedback ? "on" : "off");
  }
  if (o.group > 0) {
    std::printf(
        "#\n# Groups: each iteration makes %d all-reduces of the size in one gp_group_start/"
        "gp_group_end,\n# then the same %d one by one; speedup = separate time / group time\n",
        o.group, o.group);
  }
  const std::string header = o.group > 0  ? gradpack::tools::group_table_header()
                             : compressed ? gradpack::tools::compressed_table_header()
                                          : gradpack::tools::table_header();
  std::printf("#\n%s", header.c_str());
}

}  // namespace

int main(int argc, char** argv) {
  PerfOptions opts;
  if (auto err = gradpack::tools::parse_perf_args(argc, argv, &opts)) {
    std::fprintf(stderr, "gradpack-perf: %s\n", err->c_str());
    return kExitUsage;
  }
  if (opts.help) {
    std::fputs(gradpack::tools::kPerfHelp, stdout);
    return 0;
  }

  if (gradpack::tools::compressed(opts)) {
    // A bad spec is a usage error, found before the communicator is joined. "auto" names no codec;
    // "auto:<spec>" names one.
    std::string spec = opts.codec;
    if (spec.rfind("auto:", 0) == 0) spec = spec.substr(5);
    if (spec != "auto") {
      gp_codec_t* codec = nullptr;
      if (gp_codec_create(spec.c_str(), &codec) != GP_OK) {
        std::fprintf(stderr, "gradpack-perf: -z %s: %s\n", opts.codec.c_str(), gp_last_error());
        return kExitUsage;
      }
      gp_codec_destroy(codec);
    }
  }

  Context ctx;
  ctx.opts = opts;
  gp_allreduce_opts_init(&ctx.allreduce_opts);
  ctx.allreduce_opts.algorithm = opts.algorithm;
  // Without -z the all-reduce is not compressed, whatever GRADPACK_COMPRESS says.
  ctx.allreduce_opts.codec = gradpack::tools::compressed(opts) ? ctx.opts.codec.c_str() : "off";
  ctx.allreduce_opts.error_feedback = ctx.opts.error_feedback ? 1 : 0;
  {
    // Before the communicator exists, the rank comes from the launcher's environment.
    const char* env_rank = std::getenv("GRADPACK_RANK");
    const int env_rank_value = env_rank != nullptr ? std::atoi(env_rank) : 0;
    check_call(env_rank_value, "gp_comm_init_from_env", gp_comm_init_from_env(&ctx.comm));
  }
  ctx.rank = gp_comm_rank(ctx.comm);
  ctx.nranks = gp_comm_size(ctx.comm);
  if (gradpack::tools::collective_has_root(opts.collective) && opts.root >= ctx.nranks) {
    if (ctx.rank == 0) {
      std::fprintf(stderr, "gradpack-perf: -r %d: the root must be below nranks %d\n", opts.root,
                   ctx.nranks);
    }
    gp_comm_destroy(ctx.comm);
    return kExitUsage;
  }

  print_header(ctx);
  std::fflush(stdout);

  const std::vector<uint64_t> sizes = gradpack::tools::sweep_sizes(opts);
  // Collectives without a reduction run once per type, not once per op.
  std::vector<gp_redop_t> ops = opts.ops;
  if (!gradpack::tools::collective_reduces(opts.collective)) ops = {GP_SUM};
  int64_t total_wrong = 0;
  double max_error = -1;
  double busbw_sum = 0;
  int busbw_count = 0;
  std::vector<double> speedups;  // --group: separate / grouped, per row
  for (gp_dtype_t dtype : opts.dtypes) {
    for (gp_redop_t op : ops) {
      for (uint64_t size : sizes) {
        const auto shape = gradpack::tools::shape_row(opts.collective, size, dtype, ctx.nranks);
        const Row row = opts.group > 0 ? GroupRowRunner(&ctx, dtype, op, shape).run()
                                       : RowRunner(&ctx, dtype, op, shape).run();
        if (row.group > 0) speedups.push_back(gradpack::tools::group_speedup(row));
        for (const Measurement* m : {&row.out_of_place, &row.in_place}) {
          if (m->skipped) continue;
          if (m->wrong > 0) total_wrong += m->wrong;
          max_error = std::max(max_error, m->max_error);
          busbw_sum += m->busbw;
          ++busbw_count;
        }
        if (ctx.rank == 0) {
          const std::string line =
              opts.json       ? gradpack::tools::format_json_row(row, ctx.nranks, opts.algorithm,
                                                                 opts.codec, opts.error_feedback)
              : row.group > 0 ? gradpack::tools::format_group_row(row)
                              : gradpack::tools::format_row(row);
          std::fputs(line.c_str(), stdout);
          std::fflush(stdout);
        }
      }
    }
  }
  if (ctx.rank == 0 && !opts.json) {
    std::printf("# Out of bounds values : %" PRId64 " %s\n", total_wrong,
                total_wrong == 0 ? "OK" : "FAILED");
    std::printf("# Avg bus bandwidth    : %g \n", busbw_count > 0 ? busbw_sum / busbw_count : 0.0);
    if (!speedups.empty()) {
      double log_sum = 0;
      for (double x : speedups) log_sum += std::log(std::max(x, 1e-9));
      std::printf(
          "# Group speedup        : %.3g (geometric mean of separate / grouped over %zu "
          "rows; min %.3g, max %.3g)\n",
          std::exp(log_sum / static_cast<double>(speedups.size())), speedups.size(),
          *std::min_element(speedups.begin(), speedups.end()),
          *std::max_element(speedups.begin(), speedups.end()));
    }
    if (gradpack::tools::compressed(opts) && max_error >= 0) {
      std::printf("# Max relative error   : %.3g\n", max_error);
    }
    std::printf("#\n");
  }
  std::fflush(stdout);
  // No rank leaves before rank 0 has printed everything: a rank that exits 1 (wrong elements)
  // makes gradpack-run stop the others, rank 0 included.
  check_call(ctx.rank, "gp_barrier", gp_barrier(ctx.comm));
  check_call(ctx.rank, "gp_comm_destroy", gp_comm_destroy(ctx.comm));
  return total_wrong == 0 ? 0 : kExitRuntime;
}
