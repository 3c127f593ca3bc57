// SPDX-License-Identifier: Apache-2.0
// fuzz_make_corpus OUTDIR: writes valid frames of every codec as seed inputs for decode_fuzzer
// (and decode_fuzz_replay): every frame kind the format has, small enough for -max_len=65536, so
// mutations start from frames that pass the header and reach the payload decoders.
//
//   none           every dtype (fp32, fp16, bf16, f64, i32, i64, i8, u8)
//   fp16, bf16     from fp32, fp16 and bf16 inputs, with and without error feedback
//   q2..q16        blocks 8, 64 and 256, nearest and stochastic rounding
//   top-k          fp32 and quantized values; a dense fraction (bitmap indices) and a sparse one
//                  (delta-varint indices)
//   edge cases     NaN/Inf in the input (non-finite blocks), values past the fp16 range, all
//                  zeros, count 0 and 1, partial last blocks
//
// Uses the C API of libgradpack.so. Frames whose codec this build lacks (GP_ERR_UNSUPPORTED, as
// top-k while it is being written) are skipped with a note; every other failure, including a
// frame that does not decode back, exits 1. Existing *.frame files in OUTDIR are replaced.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "common/float16.h"
#include "gradpack/gradpack.h"
#include "tools/synthetic_data.h"

namespace {

namespace fs = std::filesystem;

enum class Shape { kGradient, kNonFinite, kHuge, kZeros };

const char* shape_name(Shape s) {
  switch (s) {
    case Shape::kGradient:
      return "grad";
    case Shape::kNonFinite:
      return "nonfinite";
    case Shape::kHuge:
      return "huge";
    case Shape::kZeros:
      return "zeros";
  }
  return "?";
}

const char* dtype_name(gp_dtype_t d) {
  switch (d) {
    case GP_FLOAT32:
      return "f32";
    case GP_FLOAT16:
      return "f16";
    case GP_BFLOAT16:
      return "bf16";
    case GP_FLOAT64:
      return "f64";
    case GP_INT32:
      return "i32";
    case GP_INT64:
      return "i64";
    case GP_INT8:
      return "i8";
    case GP_UINT8:
      return "u8";
  }
  return "?";
}

std::vector<float> make_values(size_t n, Shape shape, uint64_t seed) {
  std::vector<float> v(n, 0.0f);
  if (shape == Shape::kZeros) return v;
  gradpack::tools::fill_synthetic(v.data(), n, gradpack::tools::Distribution::kLaplace, seed);
  if (shape == Shape::kHuge)
    for (size_t i = 0; i < n; i += 3) v[i] *= 1e6f;  // past fp16's 65504: saturation
  if (shape == Shape::kNonFinite) {
    const float special[] = {std::numeric_limits<float>::quiet_NaN(),
                             std::numeric_limits<float>::infinity(),
                             -std::numeric_limits<float>::infinity()};
    for (size_t i = 0, k = 0; i < n; i += 97, ++k) v[i] = special[k % 3];
  }
  return v;
}

// The values as the bytes of dtype.
std::vector<uint8_t> as_dtype(const std::vector<float>& v, gp_dtype_t dtype) {
  std::vector<uint8_t> out(v.size() * gp_dtype_size(dtype));
  for (size_t i = 0; i < v.size(); ++i) {
    auto put = [&](auto x) { std::memcpy(out.data() + i * sizeof x, &x, sizeof x); };
    const float f = v[i];
    const double clamped = std::isfinite(f) ? std::fmax(-1e9, std::fmin(1e9, f * 100.0)) : 0.0;
    switch (dtype) {
      case GP_FLOAT32:
        put(f);
        break;
      case GP_FLOAT16:
        put(gradpack::f32_to_f16(f));
        break;
      case GP_BFLOAT16:
        put(gradpack::f32_to_bf16(f));
        break;
      case GP_FLOAT64:
        put(static_cast<double>(f));
        break;
      case GP_INT32:
        put(static_cast<int32_t>(clamped));
        break;
      case GP_INT64:
        put(static_cast<int64_t>(clamped) * 1000003);
        break;
      case GP_INT8:
        put(static_cast<int8_t>(static_cast<int64_t>(clamped) % 128));
        break;
      case GP_UINT8:
        put(static_cast<uint8_t>(static_cast<int64_t>(clamped) & 0xFF));
        break;
    }
  }
  return out;
}

class CorpusWriter {
 public:
  explicit CorpusWriter(fs::path dir) : dir_(std::move(dir)) {}

  // Encodes `steps` times (error feedback when residual is set) and writes the last frame.
  // Returns false on a failure that is not "this build lacks the codec".
  bool add(const std::string& spec, gp_dtype_t dtype, size_t count, Shape shape, bool feedback,
           int steps = 1) {
    std::string name = spec + "-" + dtype_name(dtype) + "-n" + std::to_string(count) + "-" +
                       shape_name(shape) + (feedback ? "-ef" : "") +
                       (steps > 1 ? "-s" + std::to_string(steps) : "");
    for (char& c : name)
      if (c == ':' || c == '+' || c == '=' || c == '.') c = '_';
    gp_codec_t* codec = nullptr;
    gp_status_t st = gp_codec_create(spec.c_str(), &codec);
    if (st != GP_OK) return fail(name, "gp_codec_create", st);
    const std::vector<uint8_t> in =
        as_dtype(make_values(count, shape, std::hash<std::string>{}(name)&0xFFFF), dtype);
    std::vector<float> residual(count, 0.0f);
    std::vector<uint8_t> frame(gp_codec_max_encoded_bytes(codec, count, dtype));
    size_t bytes = 0;
    for (int s = 0; s < steps && st == GP_OK; ++s)
      st = gp_codec_encode(codec, in.data(), count, dtype, feedback ? residual.data() : nullptr,
                           frame.data(), frame.size(), &bytes);
    gp_codec_destroy(codec);
    if (st == GP_ERR_UNSUPPORTED) {
      ++skipped_;
      skip_reasons_.insert(gp_last_error());
      return true;
    }
    if (st != GP_OK) return fail(name, "gp_codec_encode", st);
    if (bytes > 65536) {
      std::fprintf(stderr, "fuzz_make_corpus: %s: %zu bytes exceeds -max_len\n", name.c_str(),
                   bytes);
      return false;
    }
    // A seed that does not decode would only teach the fuzzer the error path.
    std::vector<uint8_t> out(count * gp_dtype_size(dtype) + 1);
    st = gp_codec_decode(frame.data(), bytes, out.data(), count, dtype, 0);
    if (st != GP_OK) return fail(name, "gp_codec_decode of the frame just encoded", st);
    std::ofstream file(dir_ / (name + ".frame"), std::ios::binary | std::ios::trunc);
    file.write(reinterpret_cast<const char*>(frame.data()), static_cast<std::streamsize>(bytes));
    if (!file) {
      std::fprintf(stderr, "fuzz_make_corpus: cannot write %s\n", (dir_ / name).c_str());
      return false;
    }
    ++written_;
    return true;
  }

  size_t written() const { return written_; }
  size_t skipped() const { return skipped_; }
  const std::set<std::string>& skip_reasons() const { return skip_reasons_; }

 private:
  bool fail(const std::string& name, const char* call, gp_status_t st) {
    std::fprintf(stderr, "fuzz_make_corpus: %s: %s: %s: %s\n", name.c_str(), call,
                 gp_status_string(st), gp_last_error());
    return false;
  }

  fs::path dir_;
  size_t written_ = 0;
  size_t skipped_ = 0;
  std::set<std::string> skip_reasons_;
};

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || argv[1][0] == '-') {
    std::fprintf(stderr, "usage: fuzz_make_corpus OUTDIR\n");
    return 2;
  }
  const fs::path dir = argv[1];
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "fuzz_make_corpus: cannot create %s: %s\n", dir.c_str(),
                 ec.message().c_str());
    return 1;
  }
  for (const auto& entry : fs::directory_iterator(dir, ec))
    if (entry.is_regular_file() && entry.path().extension() == ".frame") fs::remove(entry, ec);

  CorpusWriter w(dir);
  bool ok = true;
  const gp_dtype_t floats[] = {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16};

  // Raw frames of every dtype.
  for (gp_dtype_t d :
       {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16, GP_FLOAT64, GP_INT32, GP_INT64, GP_INT8, GP_UINT8})
    for (size_t n : {size_t{0}, size_t{1}, size_t{13}, size_t{1000}})
      ok &= w.add("none", d, n, Shape::kGradient, false);
  ok &= w.add("none", GP_FLOAT32, 300, Shape::kNonFinite, false);

  // 16-bit floats.
  for (const char* spec : {"fp16", "bf16"}) {
    for (gp_dtype_t d : floats) {
      for (size_t n : {size_t{0}, size_t{1}, size_t{777}})
        ok &= w.add(spec, d, n, Shape::kGradient, true);
      ok &= w.add(spec, d, 500, Shape::kGradient, false);
    }
    ok &= w.add(spec, GP_FLOAT32, 500, Shape::kHuge, true);
    ok &= w.add(spec, GP_FLOAT32, 500, Shape::kNonFinite, true);
  }

  // Block quantizers: every width, three block sizes, both roundings; a partial last block.
  for (int bits = 2; bits <= 16; ++bits) {
    for (int block : {8, 64, 256}) {
      for (const char* round : {"nearest", "stochastic"}) {
        const std::string spec = "q" + std::to_string(bits) + ":block=" + std::to_string(block) +
                                 ":round=" + round + ":seed=" + std::to_string(bits * 31 + block);
        ok &= w.add(spec, GP_FLOAT32, 1000, Shape::kGradient, true);
      }
    }
  }
  for (gp_dtype_t d : floats) {
    for (size_t n : {size_t{0}, size_t{1}, size_t{9}, size_t{4099}})
      ok &= w.add("q8", d, n, Shape::kGradient, true);
    ok &= w.add("q4:round=stochastic", d, 1500, Shape::kGradient, true, 3);
  }
  for (const char* spec : {"q8:block=64", "q3:block=8", "q16", "q2:block=8:round=stochastic"}) {
    ok &= w.add(spec, GP_FLOAT32, 1000, Shape::kNonFinite, true);
    ok &= w.add(spec, GP_FLOAT32, 1000, Shape::kHuge, true);
    ok &= w.add(spec, GP_FLOAT32, 640, Shape::kZeros, true);
  }

  // Top-k: a dense fraction gives a bitmap, a sparse one delta-varint indices.
  for (const char* fraction : {"0.5", "0.25", "0.01", "0.002"}) {
    for (const char* values : {"", "+q8", "+q4:block=64", "+q2:block=8:round=stochastic", "+q16"}) {
      const std::string spec = std::string("topk:") + fraction + values;
      ok &= w.add(spec, GP_FLOAT32, 4096, Shape::kGradient, true, 2);
    }
  }
  for (gp_dtype_t d : floats) {
    ok &= w.add("topk:0.1", d, 1000, Shape::kGradient, true);
    ok &= w.add("topk:0.1+q8", d, 1000, Shape::kNonFinite, true);
  }
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}})
    ok &= w.add("topk:0.5+q4", GP_FLOAT32, n, Shape::kGradient, true);
  ok &= w.add("topk:1", GP_FLOAT32, 300, Shape::kGradient, false);
  ok &= w.add("topk:0.01", GP_FLOAT32, 5000, Shape::kZeros, true);

  std::printf("fuzz_make_corpus: wrote %zu frames to %s\n", w.written(), dir.c_str());
  if (w.skipped() > 0) {
    std::printf("fuzz_make_corpus: skipped %zu frames this build cannot make:\n", w.skipped());
    for (const std::string& why : w.skip_reasons()) std::printf("  %s\n", why.c_str());
  }
  return ok ? 0 : 1;
}
