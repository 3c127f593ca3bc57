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

#include "tools/perf_table.h"

#include "gradpack/gradpack.h"

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
  bool json = false;
  bool help = false;
};

extern const char* const kPerfHelp;

// Parses argv[1..argc). Returns an error message for a usage error, std::nullopt on success.
std::optional<std::string> ParsePerfArgs(int argc, const char* const* argv, PerfOptions* out);

// "32M" -> 33554432: a decimal count with an optional K, M or G suffix (binary multiples).
std::optional<uint64_t> ParseSize(std::string_view text);

// Names as nccl-tests prints them ("float", "half", "bfloat16", ...; "sum", "prod", ...).
const char* DtypeName(gp_dtype_t dtype);
const char* RedopName(gp_redop_t op);
const char* AlgoName(gp_algo_t algo);
const char* CollectiveName(Collective coll);
size_t DtypeBytes(gp_dtype_t dtype);

// Whether the collective reduces (takes an op), whether it has a root, and whether it has an
// in-place layout (sendrecv has none: gp_sendrecv's send and recv must not overlap).
bool CollectiveReduces(Collective coll);
bool CollectiveHasRoot(Collective coll);
bool CollectiveHasInPlace(Collective coll);

// The sizes (bytes) of the sweep, min to max inclusive.
std::vector<uint64_t> SweepSizes(const PerfOptions& opts);

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
RowShape ShapeRow(Collective coll, uint64_t size, gp_dtype_t dtype, int nranks);

// algbw = bytes / time (GB/s, 1e9); busbw by nccl-tests' factors (sendrecv: 1).
double AlgBandwidth(uint64_t bytes, double seconds);
double BusBandwidthFactor(Collective coll, int nranks);

// One measurement of one layout (out-of-place or in-place).
struct Measurement {
  double time_us = 0;
  double algbw = 0;
  double busbw = 0;
  int64_t wrong = -1;    // -1: not checked
  bool skipped = false;  // the collective has no such layout: every column is N/A (JSON null)
};

struct Row {
  RowShape shape;
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  Collective coll = Collective::kAllReduce;
  int root = -1;
  Measurement out_of_place;
  Measurement in_place;
};

Measurement Measure(Collective coll, int nranks, uint64_t bytes, double seconds, int64_t wrong);

// The '#' column header lines (three lines, each ending in '\n').
// One table line ending in '\n'.
std::string FormatRow(const Row& row);
// One JSON object on one line ending in '\n'.
std::string FormatJsonRow(const Row& row, int nranks, gp_algo_t algo);

}  // namespace gradpack::tools

#endif  // GRADPACK_TOOLS_PERF_OPTIONS_H_
