// SPDX-License-Identifier: Apache-2.0
// gradpack-codec: what a codec does to a gradient, measured. For each spec it encodes the input
// with error feedback, decodes it back, and reports the wire ratio, the error and the speed of
// both directions next to memcpy measured in the same run.
//
// It uses only the public C API of libgradpack.so, so it also exercises the installed ABI.
#include <algorithm>
#include <bit>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <vector>

#include "gradpack/gradpack.h"
#include "tools/size_suffix.h"
#include "tools/synthetic_data.h"

namespace {

using gradpack::tools::Distribution;

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr const char* kDefaultSpecs[] = {"fp16", "bf16", "q8", "q4", "topk:0.01", "topk:0.01+q8"};
constexpr uint64_t kDefaultElements = uint64_t{16} << 20;
// Beyond this the tool's own buffers (about 6 x 4 bytes per element) outgrow any sane machine.
constexpr uint64_t kMaxElements = uint64_t{1} << 34;

constexpr const char* kHelp =
    R"(usage: gradpack-codec [--spec SPEC]... [--input FILE.f32 | --synthetic N[KMG]]
                      [--dist normal|laplace|gradient] [--steps S] [--seed X] [--json] [--help]

Measures gradpack codecs on a vector of fp32 values. For each SPEC the input is encoded with
error feedback (a residual that starts at zero and carries each step's quantization error into
the next), S times, and decoded back. Reported per spec:

  wire ratio     input bytes / frame bytes, summed over all S steps (header, scales and
                 indices included)
  max abs err    max |decoded - input| of the first step (non-finite inputs are skipped)
  mean abs err   mean |decoded - input| of the first step
  rel L2         ||decoded - input|| / ||input|| of the first step
  sum rel L2     (only with S > 1) ||sum of S decoded steps - S * input|| / ||S * input||:
                 error feedback keeps it near rel L2 / S
  enc GB/s       input fp32 bytes encoded per second (with error feedback), best of several runs
  dec GB/s       input fp32 bytes decoded per second into fp32 (overwrite), best of several runs
  memcpy GB/s    memcpy of the input, measured in the same run, best of several runs
  enc/memcpy, dec/memcpy   the two speeds as ratios of memcpy's

Options:
  --spec SPEC       a codec spec; repeat for several. Default: fp16 bf16 q8 q4 topk:0.01
                    topk:0.01+q8. Specs: none | fp16 | bf16
                    | q<2..16>[:block=N][:round=nearest|stochastic][:seed=S]
                    | topk:<fraction>[+q<b>[:block=N][:round=...][:seed=S]]
  --input FILE      raw little-endian fp32 values (a .f32 file: no header)
  --synthetic N     N synthetic elements; K, M, G suffixes multiply by 2^10, 2^20, 2^30.
                    Default when no --input: 16M elements of the gradient distribution
  --dist D          distribution of synthetic data (default gradient):
                      normal    N(0, 1)
                      laplace   Laplace(0, 1)
                      gradient  layers of 4Ki..1Mi elements with scales 1e-5..1e-2, values a
                                normal x log-normal mixture (heavy tails, a few outliers)
  --seed X          seed of the synthetic data (default 1; decimal or 0x hex). Codecs take their
                    own seed in the spec (q8:round=stochastic:seed=7)
  --steps S         encode steps per spec (default 1)
  --json            print one JSON object ({"input": ..., "results": [per-spec objects]})
                    instead of the table
  --help            this text

The CPU kernels are the ones the library selects (widest the CPU has, or GRADPACK_CPU_ISA).

Exit status: 0 success, 1 runtime failure (unreadable file, an encode or decode that failed:
the other specs are still reported), 2 usage error (bad flag, number or spec).
)";

struct Options {
  std::vector<std::string> specs;
  std::string input;  // empty: synthetic
  uint64_t elements = kDefaultElements;
  bool synthetic_given = false;
  Distribution dist = Distribution::kGradient;
  bool dist_given = false;
  uint64_t seed = 1;
  bool seed_given = false;
  uint64_t steps = 1;
  bool json = false;
};

struct UsageError {
  std::string message;
};

bool parse_u64(std::string_view text, uint64_t* out) {
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'x' || text[1] == 'X')) {
    base = 16;
    text.remove_prefix(2);
  }
  if (text.empty()) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out, base);
  return ec == std::errc() && end == text.data() + text.size();
}

bool parse_count(std::string_view text, uint64_t* out) {
  std::optional<uint64_t> n = gradpack::tools::parse_size_suffix(text);
  if (!n) return false;
  *out = *n;
  return true;
}

// Fills *opts from argv. Returns false for --help; throws UsageError for a bad command line.
bool parse_args(int argc, char** argv, Options* opts) {
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    std::string_view name = arg;
    std::string_view value;
    bool has_value = false;
    if (size_t eq = arg.find('='); arg.starts_with("--") && eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    auto take_value = [&]() -> std::string_view {
      if (has_value) return value;
      if (i + 1 >= argc) throw UsageError{std::string(name) + " needs a value"};
      return argv[++i];
    };
    auto no_value = [&] {
      if (has_value) throw UsageError{std::string(name) + " takes no value"};
    };
    if (name == "--help" || name == "-h") {
      no_value();
      return false;
    } else if (name == "--spec") {
      std::string_view spec = take_value();
      if (spec.empty()) throw UsageError{"--spec needs a non-empty codec spec"};
      opts->specs.emplace_back(spec);
    } else if (name == "--input") {
      if (!opts->input.empty()) throw UsageError{"--input given twice"};
      opts->input = std::string(take_value());
      if (opts->input.empty()) throw UsageError{"--input needs a file name"};
    } else if (name == "--synthetic") {
      std::string_view text = take_value();
      if (!parse_count(text, &opts->elements) || opts->elements == 0)
        throw UsageError{"--synthetic " + std::string(text) +
                         ": expected a positive element count such as 1000000, 64K, 16M or 1G"};
      if (opts->elements > kMaxElements)
        throw UsageError{"--synthetic " + std::string(text) + ": at most 2^34 elements"};
      opts->synthetic_given = true;
    } else if (name == "--dist") {
      std::string_view text = take_value();
      if (!gradpack::tools::parse_distribution(text, &opts->dist))
        throw UsageError{"--dist " + std::string(text) + ": expected normal, laplace or gradient"};
      opts->dist_given = true;
    } else if (name == "--steps") {
      std::string_view text = take_value();
      if (!parse_u64(text, &opts->steps) || opts->steps == 0 || opts->steps > 1000000)
        throw UsageError{"--steps " + std::string(text) + ": expected an integer in 1..1000000"};
    } else if (name == "--seed") {
      std::string_view text = take_value();
      if (!parse_u64(text, &opts->seed))
        throw UsageError{"--seed " + std::string(text) +
                         ": expected an unsigned 64-bit integer (decimal or 0x hex)"};
      opts->seed_given = true;
    } else if (name == "--json") {
      no_value();
      opts->json = true;
    } else {
      throw UsageError{"unknown option " + std::string(arg)};
    }
  }
  if (!opts->input.empty()) {
    if (opts->synthetic_given) throw UsageError{"--input and --synthetic exclude each other"};
    if (opts->dist_given) throw UsageError{"--dist applies to --synthetic data, not to --input"};
    if (opts->seed_given)
      throw UsageError{"--seed applies to --synthetic data; a codec takes :seed= in its spec"};
  }
  if (opts->specs.empty()) opts->specs.assign(std::begin(kDefaultSpecs), std::end(kDefaultSpecs));
  return true;
}

// Reads a raw little-endian fp32 file. Returns an error message, empty on success.
std::string read_f32_file(const std::string& path, std::vector<float>* out) {
  std::ifstream file(path, std::ios::binary | std::ios::ate);
  if (!file) return "cannot open " + path + ": " + std::strerror(errno);
  const std::streamoff size = file.tellg();
  if (size < 0) return "cannot read the size of " + path;
  if (size % 4 != 0)
    return path + ": " + std::to_string(size) +
           " bytes is not a whole number of fp32 values (expected raw little-endian fp32)";
  if (size == 0) return path + " is empty: nothing to encode";
  if (static_cast<uint64_t>(size / 4) > kMaxElements) return path + " has more than 2^34 values";
  out->resize(static_cast<size_t>(size / 4));
  file.seekg(0);
  if (!file.read(reinterpret_cast<char*>(out->data()), size))
    return "cannot read " + path + ": " + std::strerror(errno);
  if constexpr (std::endian::native == std::endian::big) {
    for (float& v : *out) v = std::bit_cast<float>(__builtin_bswap32(std::bit_cast<uint32_t>(v)));
  }
  return {};
}

struct Result {
  std::string spec;                // as given
  std::string canonical;           // gp_codec_spec()
  std::string error;               // non-empty: the run failed here
  uint64_t frame_bytes = 0;        // first step
  uint64_t total_frame_bytes = 0;  // all steps
  uint64_t kept = 0;
  double wire_ratio = 0, max_abs = 0, mean_abs = 0, rel_l2 = 0, sum_rel_l2 = 0;
  double encode_gbps = 0, decode_gbps = 0, memcpy_gbps = 0;
};

using Clock = std::chrono::steady_clock;

// Best time of a few runs of fn (at least 3, more while under a quarter second, at most 50).
// fn returns false to stop early (a failure it recorded).
template <typename Fn>
double best_seconds(Fn&& fn) {
  double best = std::numeric_limits<double>::infinity();
  const auto start = Clock::now();
  for (int rep = 0; rep < 50; ++rep) {
    if (rep >= 3 && std::chrono::duration<double>(Clock::now() - start).count() > 0.25) break;
    const auto t0 = Clock::now();
    if (!fn()) return 0;
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

std::string api_error(const char* call, gp_status_t status) {
  return std::string(call) + ": " + gp_status_string(status) + ": " + gp_last_error();
}

struct CodecDeleter {
  void operator()(gp_codec_t* codec) const { gp_codec_destroy(codec); }
};
using CodecPtr = std::unique_ptr<gp_codec_t, CodecDeleter>;

void measure(gp_codec_t* codec, const std::vector<float>& input, uint64_t steps, Result* r) {
  const size_t n = input.size();
  const double input_bytes = static_cast<double>(n) * sizeof(float);
  const size_t capacity = gp_codec_max_encoded_bytes(codec, n, GP_FLOAT32);
  if (capacity == 0) {
    r->error = "gp_codec_max_encoded_bytes: the codec cannot encode " + std::to_string(n) +
               " fp32 elements";
    return;
  }
  std::vector<uint8_t> frame(capacity);
  std::vector<float> residual(n, 0.0f), decoded(n), sum(n, 0.0f);
  size_t frame_bytes = 0;
  for (uint64_t step = 0; step < steps; ++step) {
    gp_status_t st = gp_codec_encode(codec, input.data(), n, GP_FLOAT32, residual.data(),
                                     frame.data(), frame.size(), &frame_bytes);
    if (st != GP_OK) {
      r->error = api_error("gp_codec_encode", st);
      return;
    }
    r->total_frame_bytes += frame_bytes;
    if (step == 0) {
      r->frame_bytes = frame_bytes;
      gp_frame_info_t info;
      if ((st = gp_frame_info(frame.data(), frame_bytes, &info)) != GP_OK) {
        r->error = api_error("gp_frame_info", st);
        return;
      }
      r->kept = info.kept;
      if ((st = gp_codec_decode(frame.data(), frame_bytes, decoded.data(), n, GP_FLOAT32, 0)) !=
          GP_OK) {
        r->error = api_error("gp_codec_decode", st);
        return;
      }
    }
    if ((st = gp_codec_decode(frame.data(), frame_bytes, sum.data(), n, GP_FLOAT32, 1)) != GP_OK) {
      r->error = api_error("gp_codec_decode (accumulate)", st);
      return;
    }
  }
  r->wire_ratio = input_bytes * static_cast<double>(steps) /
                  static_cast<double>(std::max<uint64_t>(r->total_frame_bytes, 1));

  double abs_sum = 0, err2 = 0, ref2 = 0, sum_err2 = 0;
  size_t finite = 0;
  const double s = static_cast<double>(steps);
  for (size_t i = 0; i < n; ++i) {
    if (!std::isfinite(input[i])) continue;
    const double x = input[i];
    const double e = std::fabs(static_cast<double>(decoded[i]) - x);
    r->max_abs = std::isnan(e) ? e : std::max(r->max_abs, e);
    abs_sum += e;
    err2 += e * e;
    ref2 += x * x;
    const double se = static_cast<double>(sum[i]) - s * x;
    sum_err2 += se * se;
    ++finite;
  }
  r->mean_abs = finite ? abs_sum / static_cast<double>(finite) : 0.0;
  r->rel_l2 = ref2 > 0 ? std::sqrt(err2 / ref2) : 0.0;
  r->sum_rel_l2 = ref2 > 0 ? std::sqrt(sum_err2 / (ref2 * s * s)) : 0.0;

  // Speeds: memcpy first, then the codec, all on the same buffers in the same process.
  const double t_memcpy = best_seconds([&] {
    std::memcpy(decoded.data(), input.data(), n * sizeof(float));
    return true;
  });
  gp_status_t failed = GP_OK;
  const double t_encode = best_seconds([&] {
    failed = gp_codec_encode(codec, input.data(), n, GP_FLOAT32, residual.data(), frame.data(),
                             frame.size(), &frame_bytes);
    return failed == GP_OK;
  });
  if (failed != GP_OK) {
    r->error = api_error("gp_codec_encode (timed)", failed);
    return;
  }
  const double t_decode = best_seconds([&] {
    failed = gp_codec_decode(frame.data(), frame_bytes, decoded.data(), n, GP_FLOAT32, 0);
    return failed == GP_OK;
  });
  if (failed != GP_OK) {
    r->error = api_error("gp_codec_decode (timed)", failed);
    return;
  }
  r->memcpy_gbps = input_bytes / t_memcpy / 1e9;
  r->encode_gbps = input_bytes / t_encode / 1e9;
  r->decode_gbps = input_bytes / t_decode / 1e9;
}

std::string format(const char* fmt, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, fmt, v);
  return buf;
}

std::string json_string(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (u < 0x20 || u == 0x7F) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", u);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// JSON has no NaN or Inf: they become null.
std::string json_number(double v) { return std::isfinite(v) ? format("%.6g", v) : "null"; }

struct InputInfo {
  std::string source;  // "file" or "synthetic"
  std::string path;
  Distribution dist = Distribution::kGradient;
  uint64_t seed = 0;
  uint64_t elements = 0;
  uint64_t steps = 0;
};

void print_json(const InputInfo& in, const std::vector<Result>& results) {
  std::string o = "{\"tool\": \"gradpack-codec\", \"version\": " + json_string(gp_version());
  o += ", \"input\": {\"source\": " + json_string(in.source);
  if (in.source == "file") {
    o += ", \"path\": " + json_string(in.path);
  } else {
    o += ", \"dist\": " + json_string(gradpack::tools::distribution_name(in.dist));
    o += ", \"seed\": " + std::to_string(in.seed);
  }
  o += ", \"elements\": " + std::to_string(in.elements);
  o += ", \"bytes\": " + std::to_string(in.elements * 4) + "}";
  o += ", \"steps\": " + std::to_string(in.steps) + ", \"results\": [";
  for (size_t i = 0; i < results.size(); ++i) {
    const Result& r = results[i];
    o += i ? ",\n  {" : "\n  {";
    o += "\"spec\": " + json_string(r.spec) + ", \"canonical\": " + json_string(r.canonical);
    if (!r.error.empty()) {
      o += ", \"error\": " + json_string(r.error) + "}";
      continue;
    }
    o += ", \"frame_bytes\": " + std::to_string(r.frame_bytes);
    o += ", \"total_frame_bytes\": " + std::to_string(r.total_frame_bytes);
    o += ", \"kept\": " + std::to_string(r.kept);
    o += ", \"wire_ratio\": " + json_number(r.wire_ratio);
    o += ", \"max_abs_error\": " + json_number(r.max_abs);
    o += ", \"mean_abs_error\": " + json_number(r.mean_abs);
    o += ", \"rel_l2_error\": " + json_number(r.rel_l2);
    o += ", \"sum_rel_l2_error\": " + json_number(r.sum_rel_l2);
    o += ", \"encode_gbps\": " + json_number(r.encode_gbps);
    o += ", \"decode_gbps\": " + json_number(r.decode_gbps);
    o += ", \"memcpy_gbps\": " + json_number(r.memcpy_gbps);
    o += ", \"encode_x_memcpy\": " + json_number(r.encode_gbps / r.memcpy_gbps);
    o += ", \"decode_x_memcpy\": " + json_number(r.decode_gbps / r.memcpy_gbps) + "}";
  }
  o += "\n]}\n";
  std::fputs(o.c_str(), stdout);
}

void print_table(const InputInfo& in, const std::vector<Result>& results) {
  const bool multi = in.steps > 1;
  if (in.source == "file") {
    std::printf("# input: %s, %llu fp32 values (%.1f MiB)", in.path.c_str(),
                static_cast<unsigned long long>(in.elements), in.elements * 4.0 / (1 << 20));
  } else {
    std::printf("# input: synthetic %s, seed %llu, %llu fp32 values (%.1f MiB)",
                gradpack::tools::distribution_name(in.dist),
                static_cast<unsigned long long>(in.seed),
                static_cast<unsigned long long>(in.elements), in.elements * 4.0 / (1 << 20));
  }
  std::printf("; %llu step(s) with error feedback; gradpack %s\n",
              static_cast<unsigned long long>(in.steps), gp_version());
  std::vector<std::vector<std::string>> rows;
  std::vector<std::string> header = {"spec", "wire ratio", "max abs err", "mean abs err", "rel L2"};
  if (multi) header.emplace_back("sum rel L2");
  for (const char* h : {"enc GB/s", "dec GB/s", "memcpy GB/s", "enc/memcpy", "dec/memcpy"})
    header.emplace_back(h);
  rows.push_back(header);
  for (const Result& r : results) {
    std::vector<std::string> row = {r.spec};
    if (!r.error.empty()) {
      row.push_back("error: " + r.error);
      rows.push_back(row);
      continue;
    }
    row.push_back(format("%.2f", r.wire_ratio));
    row.push_back(format("%.3e", r.max_abs));
    row.push_back(format("%.3e", r.mean_abs));
    row.push_back(format("%.3e", r.rel_l2));
    if (multi) row.push_back(format("%.3e", r.sum_rel_l2));
    row.push_back(format("%.2f", r.encode_gbps));
    row.push_back(format("%.2f", r.decode_gbps));
    row.push_back(format("%.2f", r.memcpy_gbps));
    row.push_back(format("%.3f", r.encode_gbps / r.memcpy_gbps));
    row.push_back(format("%.3f", r.decode_gbps / r.memcpy_gbps));
    rows.push_back(row);
  }
  std::vector<size_t> width(header.size(), 0);
  for (const auto& row : rows) {
    if (row.size() != header.size()) continue;  // an error row spans the line
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (size_t c = 0; c < row.size(); ++c) {
      const size_t w = row.size() == header.size() ? width[c] : (c == 0 ? width[0] : 0);
      const size_t pad = w > row[c].size() ? w - row[c].size() : 0;
      if (c > 0) line += "  ";
      // The spec column reads left to right; numbers line up on the right.
      if (c == 0) {
        line += row[c] + std::string(pad, ' ');
      } else {
        line += std::string(pad, ' ') + row[c];
      }
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    std::printf("%s\n", line.c_str());
  }
}

int run(const Options& opts) {
  // Every spec is checked before any work, so a typo costs nothing.
  std::vector<CodecPtr> codecs;
  for (const std::string& spec : opts.specs) {
    gp_codec_t* codec = nullptr;
    gp_status_t st = gp_codec_create(spec.c_str(), &codec);
    if (st != GP_OK) {
      // The message names the spec and its bad part (or the setting at fault).
      std::fprintf(stderr, "gradpack-codec: cannot create a codec: %s\n", gp_last_error());
      return st == GP_ERR_INVALID_ARGUMENT ? kExitUsage : kExitRuntime;
    }
    codecs.emplace_back(codec);
  }

  InputInfo info;
  info.steps = opts.steps;
  std::vector<float> input;
  if (!opts.input.empty()) {
    info.source = "file";
    info.path = opts.input;
    if (std::string err = read_f32_file(opts.input, &input); !err.empty()) {
      std::fprintf(stderr, "gradpack-codec: %s\n", err.c_str());
      return kExitRuntime;
    }
  } else {
    info.source = "synthetic";
    info.dist = opts.dist;
    info.seed = opts.seed;
    input.resize(opts.elements);
    gradpack::tools::fill_synthetic(input.data(), input.size(), opts.dist, opts.seed);
  }
  info.elements = input.size();

  std::vector<Result> results;
  int exit_code = 0;
  for (size_t i = 0; i < codecs.size(); ++i) {
    Result r;
    r.spec = opts.specs[i];
    r.canonical = gp_codec_spec(codecs[i].get());
    measure(codecs[i].get(), input, opts.steps, &r);
    if (!r.error.empty()) {
      std::fprintf(stderr, "gradpack-codec: %s: %s\n", r.spec.c_str(), r.error.c_str());
      exit_code = kExitRuntime;
    }
    results.push_back(std::move(r));
  }
  if (opts.json) {
    print_json(info, results);
  } else {
    print_table(info, results);
  }
  return exit_code;
}

}  // namespace

int main(int argc, char** argv) {
  Options opts;
  try {
    if (!parse_args(argc, argv, &opts)) {
      std::fputs(kHelp, stdout);
      return 0;
    }
  } catch (const UsageError& e) {
    std::fprintf(stderr, "gradpack-codec: %s\nTry 'gradpack-codec --help'.\n", e.message.c_str());
    return kExitUsage;
  }
  try {
    return run(opts);
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr,
                 "gradpack-codec: out of memory (the tool needs about 6 x 4 bytes per "
                 "element; try a smaller --synthetic N)\n");
    return kExitRuntime;
  }
}
