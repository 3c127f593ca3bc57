// SPDX-License-Identifier: Apache-2.0
#include "tools/perf_options.h"

#include <charconv>
#include <cinttypes>
#include <cmath>
#include <cstdio>
#include <limits>

#include "tools/json_string.h"
#include "tools/size_suffix.h"

namespace gradpack::tools {
namespace {

struct DtypeEntry {
  const char* name;
  gp_dtype_t dtype;
  size_t bytes;
};
// The order of "-d all" follows nccl-tests (integers, then half, float, double, bfloat16).
constexpr DtypeEntry kDtypes[] = {
    {"int8", GP_INT8, 1},      {"uint8", GP_UINT8, 1},       {"int32", GP_INT32, 4},
    {"int64", GP_INT64, 8},    {"half", GP_FLOAT16, 2},      {"float", GP_FLOAT32, 4},
    {"double", GP_FLOAT64, 8}, {"bfloat16", GP_BFLOAT16, 2},
};

struct RedopEntry {
  const char* name;
  gp_redop_t op;
};
constexpr RedopEntry kRedops[] = {
    {"sum", GP_SUM}, {"prod", GP_PROD}, {"max", GP_MAX}, {"min", GP_MIN}, {"avg", GP_AVG},
};

struct AlgoEntry {
  const char* name;
  gp_algo_t algo;
};
constexpr AlgoEntry kAlgos[] = {
    {"auto", GP_ALGO_AUTO},     {"ring", GP_ALGO_RING}, {"hd", GP_ALGO_HD},
    {"tree", GP_ALGO_TREE},     {"hier", GP_ALGO_HIER}, {"direct", GP_ALGO_DIRECT},
    {"sparse", GP_ALGO_SPARSE},
};

struct CollectiveEntry {
  const char* name;
  Collective coll;
};
constexpr CollectiveEntry kCollectives[] = {
    {"all_reduce", Collective::kAllReduce}, {"reduce_scatter", Collective::kReduceScatter},
    {"all_gather", Collective::kAllGather}, {"broadcast", Collective::kBroadcast},
    {"sendrecv", Collective::kSendRecv},
};

std::optional<int64_t> parse_int(std::string_view text) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

// Accepts "-x VALUE", "-xVALUE", "--long VALUE" and "--long=VALUE". A long-only flag has no
// short form; its short_name only tells apply_flag which flag it is.
struct Flag {
  char short_name;
  const char* long_name;
  bool takes_value;
  bool long_only = false;
};
constexpr Flag kFlags[] = {
    {'b', "minbytes", true},    {'e', "maxbytes", true},
    {'f', "stepfactor", true},  {'i', "stepbytes", true},
    {'n', "iters", true},       {'w', "warmup_iters", true},
    {'c', "check", true},       {'o', "op", true},
    {'d', "datatype", true},    {'r', "root", true},
    {'a', "algorithm", true},   {'C', "collective", true},
    {'z', "codec", true},       {'E', "error-feedback", true, true},
    {'G', "group", true, true}, {'j', "json", false},
    {'h', "help", false},
};

std::string quote(std::string_view s) { return "'" + std::string(s) + "'"; }

std::optional<std::string> apply_flag(char name, std::string_view value, bool* factor_given,
                                      PerfOptions* out) {
  auto int_in = [&](int lo, int hi, int* dst) -> std::optional<std::string> {
    auto v = parse_int(value);
    if (!v || *v < lo || *v > hi) {
      return "-" + std::string(1, name) + ": expected an integer in [" + std::to_string(lo) + ", " +
             std::to_string(hi) + "], got " + quote(value);
    }
    *dst = static_cast<int>(*v);
    return std::nullopt;
  };
  auto size_in = [&](uint64_t* dst) -> std::optional<std::string> {
    auto v = parse_size(value);
    if (!v) {
      return "-" + std::string(1, name) + ": expected a size (N, NK, NM or NG), got " +
             quote(value);
    }
    *dst = *v;
    return std::nullopt;
  };
  switch (name) {
    case 'b':
      return size_in(&out->min_bytes);
    case 'e':
      return size_in(&out->max_bytes);
    case 'i':
      if (auto err = size_in(&out->step_bytes)) return err;
      if (out->step_bytes == 0) return "-i: the step must be positive";
      return std::nullopt;
    case 'f': {
      auto v = parse_int(value);
      if (!v || *v < 2 || *v > 1024)
        return "-f: expected an integer factor >= 2, got " + quote(value);
      out->step_factor = static_cast<uint64_t>(*v);
      *factor_given = true;
      return std::nullopt;
    }
    case 'n':
      return int_in(1, 1 << 30, &out->iters);
    case 'w':
      return int_in(0, 1 << 30, &out->warmup);
    case 'c':
      return int_in(0, 1 << 30, &out->check);
    case 'r':
      return int_in(0, 1 << 20, &out->root);
    case 'o':
      out->ops.clear();
      for (const auto& e : kRedops) {
        if (value == "all" || value == e.name) out->ops.push_back(e.op);
      }
      if (out->ops.empty()) return "-o: unknown op " + quote(value) + " (sum|prod|min|max|avg|all)";
      return std::nullopt;
    case 'd':
      out->dtypes.clear();
      for (const auto& e : kDtypes) {
        if (value == "all" || value == e.name) out->dtypes.push_back(e.dtype);
      }
      if (out->dtypes.empty()) {
        return "-d: unknown type " + quote(value) +
               " (float|half|bfloat16|double|int32|int64|int8|uint8|all)";
      }
      return std::nullopt;
    case 'a':
      for (const auto& e : kAlgos) {
        if (value == e.name) {
          out->algorithm = e.algo;
          return std::nullopt;
        }
      }
      return "-a: unknown algorithm " + quote(value) + " (auto|ring|hd|tree|hier|direct|sparse)";
    case 'C':
      for (const auto& e : kCollectives) {
        if (value == e.name) {
          out->collective = e.coll;
          return std::nullopt;
        }
      }
      return "-C: unknown collective " + quote(value) +
             " (all_reduce|reduce_scatter|all_gather|broadcast|sendrecv)";
    case 'z':
      // The library parses the spec (gradpack-perf checks it with gp_codec_create before the
      // communicator is joined); here only what is not a codec at all.
      if (value.empty() || value == "off") {
        return "-z: expected a codec spec (q8, q4, topk:0.01+q8, fp16, bf16, none, auto, auto:q4), "
               "got " +
               quote(value) + "; leave -z out for an uncompressed all-reduce";
      }
      out->codec = std::string(value);
      return std::nullopt;
    case 'E':
      if (value == "on") {
        out->error_feedback = true;
      } else if (value == "off") {
        out->error_feedback = false;
      } else {
        return "--error-feedback: expected on or off, got " + quote(value);
      }
      return std::nullopt;
    case 'G': {  // long only: its message names --group
      auto v = parse_int(value);
      if (!v || *v < 1 || *v > 65536) {
        return "--group: expected a number of calls in [1, 65536], got " + quote(value);
      }
      out->group = static_cast<int>(*v);
      return std::nullopt;
    }
    case 'j':
      out->json = true;
      return std::nullopt;
    case 'h':
      out->help = true;
      return std::nullopt;
  }
  return "internal: unhandled flag";
}

}  // namespace

const char* const kPerfHelp =
    R"(usage: gradpack-perf [-b MINBYTES] [-e MAXBYTES] [-f FACTOR | -i INCREMENT] [-n ITERS]
                     [-w WARMUP] [-c CHECK] [-o OP] [-d TYPE] [-r ROOT] [-a ALGO] [-C COLL]
                     [-z CODEC [--error-feedback on|off]] [--group N] [--json] [-h]

Measures gradpack collectives the way nccl-tests' *_perf programs do. Every rank is a process
that joins the communicator from the environment (gp_comm_init_from_env: GRADPACK_RANK,
GRADPACK_WORLD_SIZE, GRADPACK_ROOT, ...); start them with gradpack-run:

  gradpack-run -n 4 -- gradpack-perf -b 8 -e 128M -f 2

Rank 0 prints one row per size: out-of-place and in-place time (us, per iteration, the maximum
over ranks), algbw = size / time and busbw = algbw x the collective's bus factor, in GB/s (1e9),
and the number of wrong elements (summed over ranks). See docs/tools.md.

Options (short and long forms; sizes take K, M, G suffixes = 2^10, 2^20, 2^30):
  -b, --minbytes N       smallest size (default 32M)
  -e, --maxbytes N       largest size (default 32M)
  -f, --stepfactor F     multiply the size by F (an integer >= 2) each step; wins over -i
  -i, --stepbytes N      add N to the size each step (default 1M)
  -n, --iters N          timed iterations per size (default 20)
  -w, --warmup_iters N   untimed iterations before them (default 1)
  -c, --check N          0: do not check; otherwise check the result of one more run of each
                         layout on fresh data (default 1)
  -o, --op OP            sum | prod | min | max | avg | all (default sum)
  -d, --datatype TYPE    float | half | bfloat16 | double | int32 | int64 | int8 | uint8 | all
                         (default float)
  -r, --root R           root of broadcast (default 0)
  -a, --algorithm A      all_reduce algorithm: auto | ring | hd | tree | hier | direct | sparse
                         (default auto: the choice is left to the library and GRADPACK_ALGO;
                         direct needs -z, sparse needs a top-k codec)
  -C, --collective C     all_reduce | reduce_scatter | all_gather | broadcast | sendrecv
                         (default all_reduce). sendrecv: every rank sends the size to rank+1
                         and receives it from rank-1 (gp_sendrecv); it has no in-place layout,
                         so those columns print N/A
  -z, --codec SPEC       compressed all_reduce with this codec (docs/codecs.md: q8, q4,
                         topk:0.01+q8, fp16, bf16, none, ...; auto or auto:SPEC: compress only
                         where the library predicts it is faster). Default: not compressed.
                         The table then has one layout (out-of-place) and the columns wire
                         (bytes each rank sent per call), maxerr (the check's worst error
                         relative to max |sum|) and codec (what the library used: none when
                         auto did not compress); time, algbw and busbw stay those of the
                         uncompressed size. The check (-c) runs without error feedback and
                         allows the codec's error bound (docs/tools.md)
      --error-feedback on|off
                         error feedback of the timed calls with -z (default on)
      --group N          all_reduce only, without -z: every timed iteration makes N
                         all-reduces of the size (N buffers) inside one gp_group_start/
                         gp_group_end, then the same N calls one by one; the table has the
                         group's time per iteration (algbw from N x size), the N separate
                         calls' time and the ratio separate/grouped, out-of-place only; the
                         check (-c) checks all N results of one more group
  -j, --json             one JSON object per row on stdout instead of the table
  -h, --help             this text

Exit status: 0 success, 1 a gradpack call failed or a result was wrong, 2 usage error.
)";

std::optional<uint64_t> parse_size(std::string_view text) { return parse_size_suffix(text); }

std::optional<std::string> parse_perf_args(int argc, const char* const* argv, PerfOptions* out) {
  bool factor_given = false;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    const Flag* flag = nullptr;
    std::optional<std::string_view> inline_value;
    if (arg.size() > 2 && arg.substr(0, 2) == "--") {
      std::string_view name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string_view::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      for (const auto& f : kFlags) {
        if (name == f.long_name) flag = &f;
      }
    } else if (arg.size() >= 2 && arg[0] == '-' && arg[1] != '-') {
      for (const auto& f : kFlags) {
        if (arg[1] == f.short_name && !f.long_only) flag = &f;
      }
      if (arg.size() > 2) inline_value = arg.substr(2);
    }
    if (flag == nullptr) return "unknown argument " + quote(arg) + " (see --help)";
    std::string_view value;
    if (flag->takes_value) {
      if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < argc) {
        value = argv[++i];
      } else {
        return std::string(arg) + " needs a value";
      }
    } else if (inline_value) {
      return std::string(arg) + " takes no value";
    }
    if (auto err = apply_flag(flag->short_name, value, &factor_given, out)) return err;
  }
  if (!factor_given) out->step_factor = 0;
  if (compressed(*out) && out->collective != Collective::kAllReduce) {
    return std::string("-z compresses all_reduce only; -C ") + collective_name(out->collective) +
           " cannot take it (leave -z out, or use -C all_reduce)";
  }
  // gradpack.h: lossy codecs take float, half and bfloat16 with sum or avg ("none" takes all).
  if (compressed(*out) && out->codec != "none") {
    for (gp_redop_t op : out->ops) {
      if (op != GP_SUM && op != GP_AVG) {
        return std::string("-z ") + out->codec +
               ": a compressed all_reduce takes -o sum or avg, not " + redop_name(op);
      }
    }
    for (gp_dtype_t dtype : out->dtypes) {
      if (dtype != GP_FLOAT32 && dtype != GP_FLOAT16 && dtype != GP_BFLOAT16) {
        return std::string("-z ") + out->codec +
               ": a compressed all_reduce takes -d float, half or bfloat16, not " +
               dtype_name(dtype);
      }
    }
  }
  if (out->group > 0 && (compressed(*out) || out->collective != Collective::kAllReduce)) {
    return "--group " + std::to_string(out->group) +
           " measures uncompressed all_reduce only (leave out -z and -C, or --group)";
  }
  if (out->min_bytes > out->max_bytes) {
    return "-b " + std::to_string(out->min_bytes) + " is larger than -e " +
           std::to_string(out->max_bytes);
  }
  return std::nullopt;
}

const char* dtype_name(gp_dtype_t dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.name;
  }
  return "?";
}

size_t dtype_bytes(gp_dtype_t dtype) {
  for (const auto& e : kDtypes) {
    if (e.dtype == dtype) return e.bytes;
  }
  return 0;
}

const char* redop_name(gp_redop_t op) {
  for (const auto& e : kRedops) {
    if (e.op == op) return e.name;
  }
  return "?";
}

const char* algo_name(gp_algo_t algo) {
  for (const auto& e : kAlgos) {
    if (e.algo == algo) return e.name;
  }
  return "?";
}

const char* collective_name(Collective coll) {
  for (const auto& e : kCollectives) {
    if (e.coll == coll) return e.name;
  }
  return "?";
}

bool collective_reduces(Collective coll) {
  return coll == Collective::kAllReduce || coll == Collective::kReduceScatter;
}

bool collective_has_root(Collective coll) { return coll == Collective::kBroadcast; }

bool collective_has_in_place(Collective coll) { return coll != Collective::kSendRecv; }

std::vector<uint64_t> sweep_sizes(const PerfOptions& opts) {
  std::vector<uint64_t> sizes;
  uint64_t size = opts.min_bytes;
  while (size <= opts.max_bytes) {
    sizes.push_back(size);
    uint64_t next = opts.step_factor >= 2 ? size * opts.step_factor : size + opts.step_bytes;
    // Stop on no progress (size 0 with a factor) and on overflow.
    if (next <= size) break;
    if (opts.step_factor >= 2 && next / opts.step_factor != size) break;
    size = next;
  }
  return sizes;
}

RowShape shape_row(Collective coll, uint64_t size, gp_dtype_t dtype, int nranks) {
  const uint64_t elem = dtype_bytes(dtype);
  RowShape shape;
  if (elem == 0 || nranks <= 0) return shape;
  if (coll == Collective::kReduceScatter || coll == Collective::kAllGather) {
    shape.rank_count = size / (elem * static_cast<uint64_t>(nranks));
    shape.count = shape.rank_count * static_cast<uint64_t>(nranks);
  } else {
    shape.count = size / elem;
    shape.rank_count = shape.count;
  }
  shape.bytes = shape.count * elem;
  return shape;
}

double alg_bandwidth(uint64_t bytes, double seconds) {
  if (seconds <= 0) return 0;
  return static_cast<double>(bytes) / seconds / 1e9;
}

double bus_bandwidth_factor(Collective coll, int nranks) {
  if (nranks <= 0) return 0;
  const double n = nranks;
  switch (coll) {
    case Collective::kAllReduce:
      return 2.0 * (n - 1) / n;
    case Collective::kReduceScatter:
    case Collective::kAllGather:
      return (n - 1) / n;
    case Collective::kBroadcast:
    case Collective::kSendRecv:
      return 1.0;
  }
  return 0;
}

Measurement measure(Collective coll, int nranks, uint64_t bytes, double seconds, int64_t wrong) {
  Measurement m;
  m.time_us = seconds * 1e6;
  m.algbw = alg_bandwidth(bytes, seconds);
  m.busbw = m.algbw * bus_bandwidth_factor(coll, nranks);
  m.wrong = wrong;
  return m;
}

namespace {

std::string format_time(double us) {
  char buf[32];
  // Keep the column 8 wide however slow a row is.
  if (us < 1e5) {
    std::snprintf(buf, sizeof(buf), "%8.2f", us);
  } else if (us < 1e7) {
    std::snprintf(buf, sizeof(buf), "%8.0f", us);
  } else {
    std::snprintf(buf, sizeof(buf), "%8.2g", us);
  }
  return buf;
}

std::string format_measurement(const Measurement& m) {
  char buf[96];
  char wrong[24];
  if (m.skipped) {
    std::snprintf(buf, sizeof(buf), "%8s  %7s  %7s  %6s", "N/A", "N/A", "N/A", "N/A");
    return buf;
  }
  if (m.wrong < 0) {
    std::snprintf(wrong, sizeof(wrong), "%6s", "N/A");
  } else {
    std::snprintf(wrong, sizeof(wrong), "%6" PRId64, m.wrong);
  }
  std::snprintf(buf, sizeof(buf), "%s  %7.2f  %7.2f  %s", format_time(m.time_us).c_str(), m.algbw,
                m.busbw, wrong);
  return buf;
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[40];
  std::snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string json_measurement(const Measurement& m) {
  if (m.skipped) return "null";
  return "{\"time_us\":" + json_number(m.time_us) + ",\"algbw_gbps\":" + json_number(m.algbw) +
         ",\"busbw_gbps\":" + json_number(m.busbw) +
         ",\"wrong\":" + (m.wrong < 0 ? std::string("null") : std::to_string(m.wrong)) + "}";
}

const char* row_redop(const Row& row) {
  return collective_reduces(row.coll) ? redop_name(row.op) : "none";
}

// The compressed row: time algbw busbw wire #wrong maxerr codec (see compressed_table_header()).
std::string format_compressed_measurement(const Measurement& m) {
  char wire[24];
  char wrong[24];
  char maxerr[24];
  if (m.wire_bytes < 0) {
    std::snprintf(wire, sizeof(wire), "%10s", "N/A");
  } else if (m.wire_bytes < 1e10) {
    std::snprintf(wire, sizeof(wire), "%10.0f", m.wire_bytes);
  } else {
    std::snprintf(wire, sizeof(wire), "%10.3g", m.wire_bytes);
  }
  if (m.wrong < 0) {
    std::snprintf(wrong, sizeof(wrong), "%6s", "N/A");
  } else {
    std::snprintf(wrong, sizeof(wrong), "%6" PRId64, m.wrong);
  }
  if (m.max_error < 0) {
    std::snprintf(maxerr, sizeof(maxerr), "%8s", "N/A");
  } else {
    std::snprintf(maxerr, sizeof(maxerr), "%8.2e", m.max_error);
  }
  const std::string codec = m.codec_used.empty() ? "?" : short_codec_name(m.codec_used);
  char buf[160];
  std::snprintf(buf, sizeof(buf), "%s  %7.2f  %7.2f  %s  %s  %s  %12s",
                format_time(m.time_us).c_str(), m.algbw, m.busbw, wire, wrong, maxerr,
                codec.c_str());
  return buf;
}

std::string json_compression(const Measurement& m) {
  // Byte counts keep every digit (json_number's 6 would round 25564500 to 2.55645e+07).
  auto bytes = [](double v) {
    if (v < 0 || !std::isfinite(v)) return std::string("null");
    char buf[40];
    std::snprintf(buf, sizeof(buf), "%.10g", v);
    return std::string(buf);
  };
  std::string out;
  out += ",\"wire_bytes\":" + bytes(m.wire_bytes);
  out += ",\"wire_bytes_max\":" + bytes(m.wire_bytes_max);
  out += ",\"codec_used\":" + json_string(m.codec_used);
  out += ",\"algorithm_used\":" + json_string(m.algorithm_used);
  out += ",\"maxerr\":" + (m.max_error < 0 ? std::string("null") : json_number(m.max_error));
  return out;
}

}  // namespace

std::string short_codec_name(std::string_view canonical) {
  // Options are ":key=value" after a q<b> (also inside top-k, after '+'); drop the default ones.
  static constexpr std::string_view kDefaults[] = {"block=256", "round=nearest", "seed=0"};
  std::string out;
  size_t start = 0;
  while (start <= canonical.size()) {
    size_t end = canonical.find(':', start);
    if (end == std::string_view::npos) end = canonical.size();
    // Only a whole part that is a default option is dropped ('+' joins topk's fraction and its
    // quantizer, "0.01+q8", which is kept).
    const std::string_view part = canonical.substr(start, end - start);
    bool is_default = false;
    for (std::string_view d : kDefaults) is_default = is_default || part == d;
    if (!is_default) {
      if (!out.empty()) out += ':';
      out += part;
    }
    start = end + 1;
  }
  return out;
}

std::string format_row(const Row& row) {
  char head[128];
  if (row.compressed) {
    std::snprintf(head, sizeof(head), "  %10" PRIu64 "  %12" PRIu64 "  %8s  %6s", row.shape.bytes,
                  row.shape.count, dtype_name(row.dtype), row_redop(row));
    return std::string(head) + "  " + format_compressed_measurement(row.out_of_place) + "\n";
  }
  std::snprintf(head, sizeof(head), "  %10" PRIu64 "  %12" PRIu64 "  %8s  %6s  %6d",
                row.shape.bytes, row.shape.count, dtype_name(row.dtype), row_redop(row), row.root);
  return std::string(head) + "  " + format_measurement(row.out_of_place) + "  " +
         format_measurement(row.in_place) + "\n";
}

double group_speedup(const Row& row) {
  if (row.group <= 0 || row.separate_us <= 0 || row.out_of_place.time_us <= 0) return 0;
  return row.separate_us / row.out_of_place.time_us;
}

std::string format_group_row(const Row& row) {
  char head[128];
  std::snprintf(head, sizeof(head), "  %10" PRIu64 "  %12" PRIu64 "  %8s  %6s  %6d",
                row.shape.bytes, row.shape.count, dtype_name(row.dtype), row_redop(row), row.group);
  char tail[64];
  std::snprintf(tail, sizeof(tail), "  %s  %7.2f", format_time(row.separate_us).c_str(),
                group_speedup(row));
  return std::string(head) + "  " + format_measurement(row.out_of_place) + tail + "\n";
}

std::string format_json_row(const Row& row, int nranks, gp_algo_t algo, const std::string& codec,
                            bool error_feedback) {
  std::string out = "{\"collective\":\"";
  out += collective_name(row.coll);
  out += "\",\"nranks\":" + std::to_string(nranks);
  out += ",\"algorithm\":\"";
  out += algo_name(algo);
  out += "\",\"size\":" + std::to_string(row.shape.bytes);
  out += ",\"count\":" + std::to_string(row.shape.count);
  out += ",\"rank_count\":" + std::to_string(row.shape.rank_count);
  out += ",\"type\":\"";
  out += dtype_name(row.dtype);
  out += "\",\"redop\":\"";
  out += row_redop(row);
  out += "\",\"root\":" + std::to_string(row.root);
  if (!codec.empty()) {
    out += ",\"codec\":" + json_string(codec);
    out += ",\"error_feedback\":";
    out += error_feedback ? "true" : "false";
  }
  auto measurement = [&](const Measurement& m) {
    std::string j = json_measurement(m);
    // The compression fields go inside the layout's object, before its closing brace.
    if (row.compressed && !m.skipped) j.insert(j.size() - 1, json_compression(m));
    return j;
  };
  if (row.group > 0) {
    out += ",\"group\":" + std::to_string(row.group);
    out += ",\"separate_time_us\":" + json_number(row.separate_us);
    out += ",\"group_speedup\":" + json_number(group_speedup(row));
  }
  out += ",\"out_of_place\":" + measurement(row.out_of_place);
  out += ",\"in_place\":" + measurement(row.in_place);
  out += "}\n";
  return out;
}

}  // namespace gradpack::tools
