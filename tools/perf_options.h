// SPDX-License-Identifier: Apache-2.0
// gradpack-perf's command line, size sweep and report formatting, kept out of main() so that
// they are unit-tested without a communicator (tests/tools/perf_options_test.cc).
#ifndef GRADPACK_TOOLS_PERF_OPTIONS_H_
#define GRADPACK_TOOLS_PERF_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gradpack/gradpack.h"
#include "tools/perf_table.h"

namespace gradpack::tools {

enum class Collective { kAllReduce, kReduceScatter, kAllGather, kBroadcast, kSendRecv };

struct PerfOptions {
  uint64_t min_bytes = uint64_t{32} << 20;
  uint64_t max_bytes = uint64_t{32} << 20;
  uint64_t step_factor = 0;  // 0: use step_bytes; >= 2 multiplies (and wins when given)
  uint64_t step_bytes = uint64_t{1} << 20;
  int iters = 20;
  int warmup = 1;
  int check = 1;  // 0: no check; > 0: verify the result of a separate run after the timed ones
  std::vector<gp_redop_t> ops = {GP_SUM};
  std::vector<gp_dtype_t> dtypes = {GP_FLOAT32};
  int root = 0;
  gp_algo_t algorithm = GP_ALGO_AUTO;
  Collective collective = Collective::kAllReduce;
  // -z: gp_allreduce_opts_t.codec ("q8", "topk:0.01+q8", "auto", "auto:q4", ...); empty: the call
  // is not compressed (codec "off", whatever GRADPACK_COMPRESS says).
  std::string codec;
  bool error_feedback = true;  // --error-feedback on|off, with -z only
  // --group N: each timed iteration makes N all-reduces of the size inside one gp_group_start/
  // gp_group_end, and the same N one by one; the row has both times and their ratio. 0: off.
  int group = 0;
  bool json = false;
  bool help = false;
};

extern const char* const kPerfHelp;

// Parses argv[1..argc). Returns an error message for a usage error, std::nullopt on success.
std::optional<std::string> parse_perf_args(int argc, const char* const* argv, PerfOptions* out);

// "32M" -> 33554432: a decimal count with an optional K, M or G suffix (binary multiples).
std::optional<uint64_t> parse_size(std::string_view text);

// Whether -z was given: the all-reduce runs compressed (only the out-of-place layout is run).
inline bool compressed(const PerfOptions& opts) { return !opts.codec.empty(); }

// Names as nccl-tests prints them ("float", "half", "bfloat16", ...; "sum", "prod", ...).
const char* dtype_name(gp_dtype_t dtype);
const char* redop_name(gp_redop_t op);
const char* algo_name(gp_algo_t algo);
const char* collective_name(Collective coll);
size_t dtype_bytes(gp_dtype_t dtype);

// Whether the collective reduces (takes an op), whether it has a root, and whether it has an
// in-place layout (sendrecv has none: gp_sendrecv's send and recv must not overlap).
bool collective_reduces(Collective coll);
bool collective_has_root(Collective coll);
bool collective_has_in_place(Collective coll);

// The sizes (bytes) of the sweep, min to max inclusive.
std::vector<uint64_t> sweep_sizes(const PerfOptions& opts);

// One row's element counts. As nccl-tests: `bytes` is the total size of the collective (for
// reduce_scatter the send buffer, for all_gather the receive buffer, for sendrecv what each rank
// sends), rounded down to a whole
// number of elements (of nranks blocks for reduce_scatter/all_gather); `count` is that size in
// elements; `rank_count` is the count argument of the call (per-rank block for reduce_scatter and
// all_gather, the whole count otherwise).
struct RowShape {
  uint64_t bytes = 0;
  uint64_t count = 0;
  uint64_t rank_count = 0;
};
RowShape shape_row(Collective coll, uint64_t size, gp_dtype_t dtype, int nranks);

// algbw = bytes / time (GB/s, 1e9); busbw by nccl-tests' factors (sendrecv: 1).
double alg_bandwidth(uint64_t bytes, double seconds);
double bus_bandwidth_factor(Collective coll, int nranks);

// One measurement of one layout (out-of-place or in-place).
struct Measurement {
  double time_us = 0;
  double algbw = 0;
  double busbw = 0;
  int64_t wrong = -1;    // -1: not checked
  bool skipped = false;  // the collective has no such layout: every column is N/A (JSON null)
  // With -z (time, algbw and busbw are still those of the uncompressed size):
  double wire_bytes = -1;      // bytes_sent per rank per call (mean over ranks); -1: not measured
  double wire_bytes_max = -1;  // the same, the largest rank
  std::string codec_used;      // gp_comm_stats.last_codec after the timed calls (canonical)
  std::string algorithm_used;  // gp_comm_stats.last_algorithm after the timed calls
  double max_error = -1;       // max |got - ref| / max |ref| of the -c run; -1: not checked
};

struct Row {
  RowShape shape;
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  Collective coll = Collective::kAllReduce;
  int root = -1;
  bool compressed = false;  // -z: the compressed table (no root, no in-place half)
  // --group N: out_of_place is the group of N calls (time per group; algbw from N x bytes);
  // separate_us the same N calls made one by one, in the same run.
  int group = 0;
  double separate_us = -1;
  Measurement out_of_place;
  Measurement in_place;
};

Measurement measure(Collective coll, int nranks, uint64_t bytes, double seconds, int64_t wrong);

// "q8:block=256:round=nearest:seed=0" -> "q8": a canonical codec spec without the options that
// have their default value, for the table's codec column (JSON keeps the canonical spec).
std::string short_codec_name(std::string_view canonical);

// One table line ending in '\n' (the compressed layout when row.compressed; see
// compressed_table_header() in tools/perf_table.h).
std::string format_row(const Row& row);
// --group N: separate / grouped time (how many times faster the group is); 0 when not measured.
double group_speedup(const Row& row);
// One table line of --group ending in '\n' (see group_table_header() in tools/perf_table.h).
std::string format_group_row(const Row& row);

// One JSON object on one line ending in '\n'. codec: -z's spec ("" when not compressed: the
// object then has no compression fields).
std::string format_json_row(const Row& row, int nranks, gp_algo_t algo,
                            const std::string& codec = "", bool error_feedback = true);

}  // namespace gradpack::tools

#endif  // GRADPACK_TOOLS_PERF_OPTIONS_H_
