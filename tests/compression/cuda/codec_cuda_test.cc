// SPDX-License-Identifier: Apache-2.0
// The CUDA codecs against the CPU reference: every GPU frame must equal the frame of a CPU Codec
// with the scalar kernels byte for byte, the GPU residual must equal the CPU residual bit for bit,
// and GPU decodes (plain and accumulating, into fp32/fp16/bf16) must equal decode_frame(). The
// decode without host waits (quant_decode) also scales like the CPU reference and keeps its check
// sticky.
//
// Without a CUDA device every test skips with "no CUDA device: <reason>". With
// GRADPACK_TEST_REQUIRE_CUDA=1 (tests/gpu/check.sh sets it) a missing device fails instead, so a
// GPU machine whose runtime cannot see its GPU does not pass by skipping.
#include "compression/cuda/codec_cuda.h"

#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "common/float16.h"
#include "compression/codec.h"
#include "compression/cpu/kernels.h"
#include "compression/spec.h"
#include "compression/wire.h"
#include "tests/compression/codec_test_util.h"

namespace gradpack::cuda {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

#define CUDA_ASSERT(expr)                                                                \
  do {                                                                                   \
    const cudaError_t cuda_err_ = (expr);                                                \
    ASSERT_EQ(cuda_err_, cudaSuccess) << #expr << ": " << cudaGetErrorString(cuda_err_); \
  } while (0)

bool device_required() {
  const char* v = std::getenv("GRADPACK_TEST_REQUIRE_CUDA");
  return v != nullptr && std::string(v) == "1";
}

// Device memory of a fixed size.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(bytes) {
    if (cudaMalloc(&p_, bytes == 0 ? 1 : bytes) != cudaSuccess) p_ = nullptr;
  }
  ~DeviceBuffer() {
    if (p_) cudaFree(p_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void* get() const { return p_; }
  template <typename T>
  T* as() const {
    return static_cast<T*>(p_);
  }
  bool ok() const { return p_ != nullptr; }
  cudaError_t upload(const void* src, size_t bytes) {
    return bytes == 0 ? cudaSuccess : cudaMemcpy(p_, src, bytes, cudaMemcpyHostToDevice);
  }
  cudaError_t download(void* dst, size_t bytes) const {
    return bytes == 0 ? cudaSuccess : cudaMemcpy(dst, p_, bytes, cudaMemcpyDeviceToHost);
  }
  size_t bytes() const { return bytes_; }

 private:
  void* p_ = nullptr;
  size_t bytes_;
};

using testing_util::gradient_like;

// Values on a coarse grid: many exact ties, the case where top-k's index order decides.
std::vector<float> tied(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> level(-4, 4);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = 0.25f * static_cast<float>(level(rng));
  return v;
}

// The encoder's input in its dtype.
struct Input {
  gp_dtype_t dtype = GP_FLOAT32;
  std::vector<float> f32;
  std::vector<uint16_t> half;
  const void* data() const {
    return dtype == GP_FLOAT32 ? static_cast<const void*>(f32.data())
                               : static_cast<const void*>(half.data());
  }
  size_t bytes() const { return dtype == GP_FLOAT32 ? f32.size() * 4 : half.size() * 2; }
};

Input make_input(const std::vector<float>& x, gp_dtype_t dtype) {
  Input in;
  in.dtype = dtype;
  if (dtype == GP_FLOAT32) {
    in.f32 = x;
  } else {
    in.half.resize(x.size());
    for (size_t i = 0; i < x.size(); ++i)
      in.half[i] = dtype == GP_FLOAT16 ? f32_to_f16(x[i]) : f32_to_bf16(x[i]);
  }
  return in;
}

const char* dtype_name(gp_dtype_t d) {
  return d == GP_FLOAT32 ? "f32" : d == GP_FLOAT16 ? "f16" : "bf16";
}

// Which part of a frame byte `at` lies in, for failure messages.
std::string where(const std::vector<uint8_t>& frame, size_t at) {
  if (at < kFrameHeaderBytes) return "header byte " + std::to_string(at);
  FrameHeader h;
  FrameLayout l;
  if (!read_frame_header(frame.data(), frame.size(), &h, &l).ok())
    return "payload byte " + std::to_string(at - kFrameHeaderBytes);
  const uint64_t p = at - kFrameHeaderBytes;
  if (p < l.index_bytes) return "index byte " + std::to_string(p);
  if (l.blocks > 0 && p < l.codes_offset)
    return "scale of block " + std::to_string((p - l.scales_offset) / 4);
  if (l.blocks > 0) return "code byte " + std::to_string(p - l.codes_offset);
  return "value byte " + std::to_string(p - l.values_offset);
}

void expect_same_frame(const std::vector<uint8_t>& cpu, const std::vector<uint8_t>& gpu,
                       const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what << ": frame sizes differ";
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_EQ(cpu[i], gpu[i]) << what << ": first difference at " << where(cpu, i) << " (cpu 0x"
                              << std::hex << int{cpu[i]} << ", gpu 0x" << int{gpu[i]} << ")";
}

// Decoded outputs, compared as elements of dtype.
void expect_same_output(const std::vector<uint8_t>& cpu, const std::vector<uint8_t>& gpu,
                        gp_dtype_t dtype, const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  const size_t size = dtype == GP_FLOAT32 ? 4 : 2;
  for (size_t i = 0; i < cpu.size(); i += size) {
    if (std::memcmp(cpu.data() + i, gpu.data() + i, size) == 0) continue;
    uint32_t a = 0, b = 0;
    std::memcpy(&a, cpu.data() + i, size);
    std::memcpy(&b, gpu.data() + i, size);
    FAIL() << what << ": element " << i / size << " differs (cpu bits 0x" << std::hex << a
           << ", gpu bits 0x" << b << ")";
  }
}

void expect_same_bits(const std::vector<float>& cpu, const std::vector<float>& gpu,
                      const std::string& what) {
  ASSERT_EQ(cpu.size(), gpu.size()) << what;
  for (size_t i = 0; i < cpu.size(); ++i)
    ASSERT_EQ(float_bits(cpu[i]), float_bits(gpu[i]))
        << what << ": element " << i << " differs (cpu " << cpu[i] << ", gpu " << gpu[i] << ")";
}

// Output buffer of count values of dtype, filled from finite values (no -0, no NaN: the one case
// where x86 and the emulation may differ is NaN + NaN).
std::vector<uint8_t> output_pattern(size_t n, gp_dtype_t dtype, uint32_t seed) {
  std::vector<float> base = gradient_like(n, seed);
  std::vector<uint8_t> out(n * (dtype == GP_FLOAT32 ? 4 : 2));
  for (size_t i = 0; i < n; ++i) {
    const float v = base[i] == 0.0f ? 1e-3f : base[i];
    if (dtype == GP_FLOAT32) {
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = dtype == GP_FLOAT16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

class CudaCodec : public testing::Test {
 protected:
  void SetUp() override {
    std::string why;
    if (!device_available(&why)) {
      if (device_required())
        FAIL() << "no CUDA device: " << why << " (GRADPACK_TEST_REQUIRE_CUDA=1)";
      GTEST_SKIP() << "no CUDA device: " << why;
    }
    CUDA_ASSERT(cudaStreamCreate(&stream_));
  }
  void TearDown() override {
    if (stream_) cudaStreamDestroy(stream_);
  }

  // Decodes `frame` on both sides into every output dtype, plain and accumulating.
  void check_decodes(const std::vector<uint8_t>& frame, const DeviceBuffer& d_frame, size_t n,
                     const std::string& what) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
      for (bool accumulate : {false, true}) {
        const std::string w =
            what + " decode into " + dtype_name(dtype) + (accumulate ? " (accumulate)" : "");
        std::vector<uint8_t> cpu = output_pattern(n, dtype, 77);
        std::vector<uint8_t> gpu(cpu.size());
        DeviceBuffer d_out(cpu.size());
        ASSERT_TRUE(d_out.ok());
        CUDA_ASSERT(d_out.upload(cpu.data(), cpu.size()));
        Status st = decode_frame(frame.data(), frame.size(), cpu.data(), n, dtype, accumulate,
                                 &cpu::scalar_kernels());
        ASSERT_TRUE(st.ok()) << w << ": cpu: " << st.to_string();
        st = decode(d_frame.get(), frame.size(), d_out.get(), n, dtype, accumulate, ws_, stream_);
        ASSERT_TRUE(st.ok()) << w << ": gpu: " << st.to_string();
        CUDA_ASSERT(cudaStreamSynchronize(stream_));
        CUDA_ASSERT(d_out.download(gpu.data(), gpu.size()));
        expect_same_output(cpu, gpu, dtype, w);
      }
    }
  }

  // Encodes `steps` times on both sides (same input each step; the residual carries over) and
  // compares frames, residuals and, at the first and last step, decodes.
  void check_encode(const std::string& spec_text, const std::vector<float>& values,
                    gp_dtype_t dtype, bool feedback, int steps = 3, bool decodes = true) {
    const size_t n = values.size();
    const std::string what = spec_text + " " + dtype_name(dtype) + " n=" + std::to_string(n) +
                             (feedback ? " with residual" : "");
    SCOPED_TRACE(what);
    std::unique_ptr<Codec> cpu;
    Status st = Codec::create(spec_text, cpu::scalar_kernels(), &cpu);
    ASSERT_TRUE(st.ok()) << st.to_string();
    const CodecSpec& spec = cpu->spec();
    const Input in = make_input(values, dtype);
    const size_t cap = cpu->max_encoded_bytes(n, dtype);
    ASSERT_EQ(cap, max_encoded_bytes(spec, n, dtype));
    std::vector<float> r_cpu = gradient_like(n, 4242);
    for (float& r : r_cpu) r *= 0.1f;
    std::vector<float> r_gpu(n);
    DeviceBuffer d_in(in.bytes()), d_r(n * 4), d_frame(cap);
    ASSERT_TRUE(d_in.ok() && d_r.ok() && d_frame.ok());
    CUDA_ASSERT(d_in.upload(in.data(), in.bytes()));
    CUDA_ASSERT(d_r.upload(r_cpu.data(), n * 4));
    for (int step = 0; step < steps; ++step) {
      const std::string ws = what + " step " + std::to_string(step);
      std::vector<uint8_t> f_cpu(cap), f_gpu;
      size_t b_cpu = 0, b_gpu = 0;
      st = cpu->encode(in.data(), n, dtype, feedback ? r_cpu.data() : nullptr, f_cpu.data(), cap,
                       &b_cpu);
      ASSERT_TRUE(st.ok()) << ws << ": cpu: " << st.to_string();
      f_cpu.resize(b_cpu);
      st = encode(spec, d_in.get(), dtype, n, feedback ? d_r.as<float>() : nullptr,
                  static_cast<uint64_t>(step), ws_, d_frame.get(), cap, &b_gpu, stream_);
      ASSERT_TRUE(st.ok()) << ws << ": gpu: " << st.to_string();
      CUDA_ASSERT(cudaStreamSynchronize(stream_));
      f_gpu.resize(b_gpu);
      CUDA_ASSERT(d_frame.download(f_gpu.data(), b_gpu));
      expect_same_frame(f_cpu, f_gpu, ws);
      if (HasFatalFailure()) return;
      if (feedback) {
        CUDA_ASSERT(d_r.download(r_gpu.data(), n * 4));
        expect_same_bits(r_cpu, r_gpu, ws + " residual");
        if (HasFatalFailure()) return;
      }
      if (decodes && (step == 0 || step == steps - 1)) {
        check_decodes(f_cpu, d_frame, n, ws);
        if (HasFatalFailure()) return;
      }
    }
  }

  Workspace ws_;
  cudaStream_t stream_ = nullptr;
};

// ---- q<b> ----

struct QuantShape {
  uint32_t block;
  size_t n;
};

class CudaQuantBits : public CudaCodec, public testing::WithParamInterface<int> {};

// Every width, over block sizes that are one tile's worth or less (several per tile, one that
// does not divide the tile), and large blocks (two passes), with ragged counts; each dtype,
// rounding mode and with and without a residual.
TEST_P(CudaQuantBits, FramesResidualsAndDecodesMatchCpu) {
  const int bits = GetParam();
  const std::vector<QuantShape> shapes = {{8, 1},        {8, 13},        {24, 1003},
                                          {256, 70001},  {1000, 5001},   {2048, 65543},
                                          {4096, 20000}, {65536, 150001}};
  int variant = 0;
  for (const QuantShape& s : shapes) {
    for (bool stochastic : {false, true}) {
      const gp_dtype_t dtype =
          std::vector<gp_dtype_t>{GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}[variant % 3];
      const bool feedback = variant % 2 == 0 || s.n > 60000;
      const std::string spec = "q" + std::to_string(bits) + ":block=" + std::to_string(s.block) +
                               ":round=" + (stochastic ? "stochastic" : "nearest") +
                               ":seed=" + std::to_string(1000 + variant);
      check_encode(spec, gradient_like(s.n, 31 * bits + variant), dtype, feedback,
                   /*steps=*/stochastic ? 3 : 2, /*decodes=*/variant % 4 < 2);
      if (HasFatalFailure()) return;
      ++variant;
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Bits, CudaQuantBits, testing::Range(2, 17),
                         [](const testing::TestParamInfo<int>& i) {
                           return "q" + std::to_string(i.param);
                         });

TEST_F(CudaCodec, QuantFp16AndBf16InputsAllShapes) {
  for (gp_dtype_t dtype : {GP_FLOAT16, GP_BFLOAT16}) {
    for (const char* spec : {"q8", "q4:block=64:round=stochastic:seed=5", "q3:block=8",
                             "q16:block=4096", "q8:block=16384"}) {
      check_encode(spec, gradient_like(33333, 9), dtype, true);
      if (HasFatalFailure()) return;
      check_encode(spec, gradient_like(33333, 9), dtype, false, 1);
      if (HasFatalFailure()) return;
    }
  }
}

// NaN and Inf blocks send scale NaN and codes L and keep their residual; tiny blocks send scale 0;
// subnormals, -0 and values near FLT_MAX round like the CPU.
TEST_F(CudaCodec, QuantSpecialValues) {
  const size_t n = 64 * 20 + 5;
  std::vector<float> x = gradient_like(n, 3);
  x[70] = kNaN;                                              // block 1
  x[130] = kInf;                                             // block 2
  x[200] = -kInf;                                            // block 3
  for (size_t i = 256; i < 320; ++i) x[i] = 0.0f;            // block 4: zero
  for (size_t i = 320; i < 384; ++i) x[i] = 1e-35f * 1e-5f;  // block 5: below 2^-100
  for (size_t i = 384; i < 448; ++i) x[i] = std::ldexp(1.0f, -140) * static_cast<float>(i % 7);
  x[385] = std::ldexp(1.0f, -90);              // block 6: subnormals beside it
  x[450] = std::numeric_limits<float>::max();  // block 7
  x[451] = -std::numeric_limits<float>::max();
  x[520] = -0.0f;
  x[n - 1] = kNaN;  // the ragged last block
  for (const char* spec : {"q8:block=64", "q2:block=64:round=stochastic", "q16:block=64",
                           "q5:block=64:round=stochastic:seed=77"}) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
      check_encode(spec, x, dtype, true, 3);
      if (HasFatalFailure()) return;
      check_encode(spec, x, dtype, false, 1);
      if (HasFatalFailure()) return;
    }
  }
}

TEST_F(CudaCodec, QuantEmptyAndTinyInputs) {
  for (size_t n : {size_t{0}, size_t{1}, size_t{7}, size_t{8}, size_t{9}}) {
    check_encode("q8", gradient_like(n, 1), GP_FLOAT32, true, 2);
    if (HasFatalFailure()) return;
    check_encode("q3:block=8", gradient_like(n, 2), GP_FLOAT16, true, 2);
    if (HasFatalFailure()) return;
  }
}

// Frames that start at odd addresses (sections at every alignment) and inputs that are not
// 16-byte aligned take the byte-wise paths.
TEST_F(CudaCodec, QuantUnalignedBuffers) {
  const size_t n = 10007;
  std::vector<float> x = gradient_like(n, 12);
  std::unique_ptr<Codec> cpu;
  ASSERT_TRUE(Codec::create("q5:block=24", cpu::scalar_kernels(), &cpu).ok());
  const size_t cap = cpu->max_encoded_bytes(n - 1, GP_FLOAT32);
  std::vector<uint8_t> f_cpu(cap);
  size_t b_cpu = 0;
  ASSERT_TRUE(
      cpu->encode(x.data() + 1, n - 1, GP_FLOAT32, nullptr, f_cpu.data(), cap, &b_cpu).ok());
  f_cpu.resize(b_cpu);
  DeviceBuffer d_in(n * 4), d_frame(cap + 16);
  CUDA_ASSERT(d_in.upload(x.data(), n * 4));
  for (size_t shift : {1, 2, 3, 5}) {
    uint8_t* frame = d_frame.as<uint8_t>() + shift;
    size_t b_gpu = 0;
    Status st = encode(cpu->spec(), d_in.as<float>() + 1, GP_FLOAT32, n - 1, nullptr, 0, ws_, frame,
                       cap, &b_gpu, stream_);
    ASSERT_TRUE(st.ok()) << st.to_string();
    std::vector<uint8_t> f_gpu(b_gpu);
    CUDA_ASSERT(cudaMemcpy(f_gpu.data(), frame, b_gpu, cudaMemcpyDeviceToHost));
    expect_same_frame(f_cpu, f_gpu, "frame at offset " + std::to_string(shift));
    std::vector<float> out_cpu(n - 1), out_gpu(n - 1);
    ASSERT_TRUE(decode_frame(f_cpu.data(), b_cpu, out_cpu.data(), n - 1, GP_FLOAT32, false,
                             &cpu::scalar_kernels())
                    .ok());
    DeviceBuffer d_out(n * 4);
    st = decode(frame, b_gpu, d_out.as<float>() + 1, n - 1, GP_FLOAT32, false, ws_, stream_);
    ASSERT_TRUE(st.ok()) << st.to_string();
    CUDA_ASSERT(
        cudaMemcpy(out_gpu.data(), d_out.as<float>() + 1, (n - 1) * 4, cudaMemcpyDeviceToHost));
    expect_same_bits(out_cpu, out_gpu, "decode at offset " + std::to_string(shift));
  }
}

// A corrupt frame is kCorruptData and leaves the output as it was.
TEST_F(CudaCodec, QuantCorruptFramesAreRejectedWithoutWriting) {
  const size_t n = 1001;  // 1001 * 3 bits: the last code byte has pad bits
  std::unique_ptr<Codec> cpu;
  ASSERT_TRUE(Codec::create("q3:block=64", cpu::scalar_kernels(), &cpu).ok());
  std::vector<float> x = gradient_like(n, 8);
  std::vector<uint8_t> good(cpu->max_encoded_bytes(n, GP_FLOAT32));
  size_t bytes = 0;
  ASSERT_TRUE(cpu->encode(x.data(), n, GP_FLOAT32, nullptr, good.data(), good.size(), &bytes).ok());
  good.resize(bytes);
  const size_t scales = kFrameHeaderBytes;
  struct Damage {
    const char* name;
    size_t at;
    uint32_t value;  // written as 4 bytes (scale) or 1 byte (other)
    bool word;
  };
  const std::vector<Damage> damages = {
      {"negative scale", scales + size_t{4} * 3, 0xBF800000u, true},
      {"infinite scale", scales + size_t{4} * 15, 0x7F800000u, true},
      {"negative zero scale", scales, 0x80000000u, true},
      {"pad bits set", bytes - 1, 0xFFu, false},
      {"header bit flip", 20, 0x55u, false},
  };
  const std::vector<uint8_t> before = output_pattern(n, GP_FLOAT32, 5);
  for (const Damage& d : damages) {
    std::vector<uint8_t> bad = good;
    if (d.word) {
      std::memcpy(bad.data() + d.at, &d.value, 4);
    } else {
      bad[d.at] ^= static_cast<uint8_t>(d.value);
    }
    std::vector<uint8_t> out(n * 4);
    EXPECT_EQ(decode_frame(bad.data(), bad.size(), out.data(), n, GP_FLOAT32, false,
                           &cpu::scalar_kernels())
                  .code(),
              Code::kCorruptData)
        << d.name << " (cpu)";
    DeviceBuffer d_frame(bad.size()), d_out(n * 4);
    CUDA_ASSERT(d_frame.upload(bad.data(), bad.size()));
    CUDA_ASSERT(d_out.upload(before.data(), before.size()));
    Status st = decode(d_frame.get(), bad.size(), d_out.get(), n, GP_FLOAT32, true, ws_, stream_);
    EXPECT_EQ(st.code(), Code::kCorruptData) << d.name << ": " << st.to_string();
    CUDA_ASSERT(cudaStreamSynchronize(stream_));
    CUDA_ASSERT(d_out.download(out.data(), out.size()));
    EXPECT_EQ(out, before) << d.name << ": the output was written";
  }
}

TEST_F(CudaCodec, ArgumentErrorsMatchTheCpuCodec) {
  CodecSpec spec;
  ASSERT_TRUE(parse_codec_spec("q8", &spec).ok());
  DeviceBuffer d_in(4096), d_frame(4096);
  size_t bytes = 0;
  EXPECT_EQ(
      encode(spec, d_in.get(), GP_INT32, 16, nullptr, 0, ws_, d_frame.get(), 4096, &bytes, stream_)
          .code(),
      Code::kUnsupported);
  EXPECT_EQ(encode(spec, d_in.get(), GP_FLOAT32, 1000, nullptr, 0, ws_, d_frame.get(), 100, &bytes,
                   stream_)
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(
      encode(spec, nullptr, GP_FLOAT32, 10, nullptr, 0, ws_, d_frame.get(), 4096, &bytes, stream_)
          .code(),
      Code::kInvalidArgument);
  ASSERT_TRUE(encode(spec, d_in.get(), GP_FLOAT32, 16, nullptr, 0, ws_, d_frame.get(), 4096, &bytes,
                     stream_)
                  .ok());
  EXPECT_EQ(decode(d_frame.get(), bytes, d_in.get(), 17, GP_FLOAT32, false, ws_, stream_).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(
      decode(d_frame.get(), bytes - 1, d_in.get(), 16, GP_FLOAT32, false, ws_, stream_).code(),
      Code::kCorruptData);
  ASSERT_TRUE(parse_codec_spec("fp16", &spec).ok());
  EXPECT_EQ(encode(spec, d_in.get(), GP_FLOAT32, 16, nullptr, 0, ws_, d_frame.get(), 4096, &bytes,
                   stream_)
                .code(),
            Code::kUnsupported);
}

// ---- q<b> without host waits (quant_decode) ----

// A q<b> frame from the CPU codec, on the host and on the device.
struct QuantFrame {
  std::vector<uint8_t> bytes;
  std::unique_ptr<DeviceBuffer> device;
};

QuantFrame cpu_quant_frame(const std::string& spec, size_t n, gp_dtype_t dtype, uint32_t seed) {
  QuantFrame f;
  std::unique_ptr<Codec> cpu;
  if (!Codec::create(spec, cpu::scalar_kernels(), &cpu).ok()) return f;
  const Input in = make_input(gradient_like(n, seed), dtype);
  f.bytes.resize(cpu->max_encoded_bytes(n, dtype));
  size_t bytes = 0;
  if (!cpu->encode(in.data(), n, dtype, nullptr, f.bytes.data(), f.bytes.size(), &bytes).ok())
    return {};
  f.bytes.resize(bytes);
  f.device = std::make_unique<DeviceBuffer>(bytes);
  if (!f.device->ok() || f.device->upload(f.bytes.data(), bytes) != cudaSuccess) return {};
  return f;
}

// What the CPU reference gives for a plain decode scaled by `scale`: the fp32 decode, multiplied
// in fp32, rounded once to dtype.
std::vector<uint8_t> cpu_scaled_decode(const std::vector<uint8_t>& frame, size_t n,
                                       gp_dtype_t dtype, float scale) {
  std::vector<float> f32(n);
  if (!decode_frame(frame.data(), frame.size(), f32.data(), n, GP_FLOAT32, false,
                    &cpu::scalar_kernels())
           .ok())
    return {};
  std::vector<uint8_t> out(n * (dtype == GP_FLOAT32 ? 4 : 2));
  for (size_t i = 0; i < n; ++i) {
    const float v = f32[i] * scale;
    if (dtype == GP_FLOAT32) {
      std::memcpy(out.data() + 4 * i, &v, 4);
    } else {
      const uint16_t h = dtype == GP_FLOAT16 ? f32_to_f16(v) : f32_to_bf16(v);
      std::memcpy(out.data() + 2 * i, &h, 2);
    }
  }
  return out;
}

class CudaQuantDecode : public CudaCodec {
 protected:
  void SetUp() override {
    CudaCodec::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    check_ = std::make_unique<DeviceBuffer>(decode_check_bytes());
    ASSERT_TRUE(check_->ok());
    ASSERT_TRUE(reset_decode_check(check_->get(), stream_).ok());
  }

  // quant_decode of `frame` expecting `header`, then a wait (the test's, not the decoder's) and
  // what the sticky check says.
  Status run(const QuantFrame& frame, const uint8_t* header, void* out, size_t n, gp_dtype_t dtype,
             bool accumulate, float scale) {
    QuantDecodeArgs a;
    a.frame = frame.device->get();
    a.frame_bytes = frame.bytes.size();
    a.expected_header = header;
    a.out = out;
    a.count = n;
    a.dtype = dtype;
    a.accumulate = accumulate;
    a.scale = scale;
    a.check = check_->get();
    GP_RETURN_IF_ERROR(quant_decode(a, stream_));
    return read_check();
  }
  Status read_check() {
    std::vector<uint8_t> host(decode_check_bytes());
    if (cudaStreamSynchronize(stream_) != cudaSuccess ||
        check_->download(host.data(), host.size()) != cudaSuccess)
      return Internal("check readback failed");
    return read_decode_check(host.data());
  }

  std::unique_ptr<DeviceBuffer> check_;
};

TEST_F(CudaQuantDecode, FrameHeaderIsTheEncodersHeader) {
  for (const char* spec : {"q8", "q3:block=64:round=stochastic:seed=9", "q16:block=4096"}) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
      const QuantFrame f = cpu_quant_frame(spec, 1001, dtype, 3);
      ASSERT_FALSE(f.bytes.empty()) << spec;
      CodecSpec parsed;
      ASSERT_TRUE(parse_codec_spec(spec, &parsed).ok());
      uint8_t header[kFrameHeaderBytes];
      ASSERT_TRUE(quant_frame_header(parsed.quant, 1001, dtype, header).ok());
      EXPECT_EQ(0, std::memcmp(header, f.bytes.data(), kFrameHeaderBytes))
          << spec << " " << dtype_name(dtype);
    }
  }
  uint8_t header[kFrameHeaderBytes];
  QuantSpec q;
  EXPECT_EQ(quant_frame_header(q, 10, GP_INT32, header).code(), Code::kInvalidArgument);
  q.bits = 1;
  EXPECT_EQ(quant_frame_header(q, 10, GP_FLOAT32, header).code(), Code::kInvalidArgument);
}

// Plain, accumulating and scaled decodes into each dtype, bit for bit the CPU reference's, all
// against one check that stays "nothing wrong".
TEST_F(CudaQuantDecode, MatchesCpuAndScalesBeforeRounding) {
  const size_t n = 5001;
  const QuantFrame f = cpu_quant_frame("q4:block=128", n, GP_FLOAT32, 21);
  ASSERT_FALSE(f.bytes.empty());
  for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}) {
    for (float scale : {1.0f, 0.125f, 1.0f / 3.0f}) {
      for (bool accumulate : {false, true}) {
        if (accumulate && scale != 1.0f) continue;
        const std::string w = std::string(dtype_name(dtype)) + " scale " + std::to_string(scale) +
                              (accumulate ? " accumulate" : "");
        std::vector<uint8_t> cpu = output_pattern(n, dtype, 13);
        DeviceBuffer d_out(cpu.size());
        CUDA_ASSERT(d_out.upload(cpu.data(), cpu.size()));
        if (scale == 1.0f) {
          ASSERT_TRUE(decode_frame(f.bytes.data(), f.bytes.size(), cpu.data(), n, dtype, accumulate,
                                   &cpu::scalar_kernels())
                          .ok());
        } else {
          cpu = cpu_scaled_decode(f.bytes, n, dtype, scale);
        }
        const Status st = run(f, f.bytes.data(), d_out.get(), n, dtype, accumulate, scale);
        ASSERT_TRUE(st.ok()) << w << ": " << st.to_string();
        std::vector<uint8_t> gpu(cpu.size());
        CUDA_ASSERT(d_out.download(gpu.data(), gpu.size()));
        expect_same_output(cpu, gpu, dtype, w);
      }
    }
  }
}

// A header that differs from the expected one (here: the sender rounds stochastically, the
// receiver expects nearest) lowers the check and writes nothing; so does every later decode,
// good frame or not, until the check is reset.
TEST_F(CudaQuantDecode, HeaderMismatchLowersAStickyCheck) {
  const size_t n = 3000;
  const QuantFrame sent = cpu_quant_frame("q8:round=stochastic", n, GP_FLOAT32, 4);
  const QuantFrame good = cpu_quant_frame("q8", n, GP_FLOAT32, 5);
  ASSERT_FALSE(sent.bytes.empty() || good.bytes.empty());
  CodecSpec expected_spec;
  ASSERT_TRUE(parse_codec_spec("q8", &expected_spec).ok());
  uint8_t expected[kFrameHeaderBytes];
  ASSERT_TRUE(quant_frame_header(expected_spec.quant, n, GP_FLOAT32, expected).ok());
  const std::vector<uint8_t> before = output_pattern(n, GP_FLOAT32, 6);
  DeviceBuffer d_out(before.size());
  CUDA_ASSERT(d_out.upload(before.data(), before.size()));
  std::vector<uint8_t> out(before.size());

  Status st = run(sent, expected, d_out.get(), n, GP_FLOAT32, false, 1.0f);
  EXPECT_EQ(st.code(), Code::kCorruptData) << st.to_string();
  EXPECT_NE(st.message().find("header byte"), std::string::npos) << st.to_string();
  CUDA_ASSERT(d_out.download(out.data(), out.size()));
  EXPECT_EQ(out, before) << "a mismatched frame was written";

  st = run(good, expected, d_out.get(), n, GP_FLOAT32, true, 1.0f);
  EXPECT_EQ(st.code(), Code::kCorruptData) << "the check did not stay lowered";
  CUDA_ASSERT(d_out.download(out.data(), out.size()));
  EXPECT_EQ(out, before) << "a decode against a lowered check was written";

  ASSERT_TRUE(reset_decode_check(check_->get(), stream_).ok());
  st = run(good, expected, d_out.get(), n, GP_FLOAT32, false, 1.0f);
  EXPECT_TRUE(st.ok()) << st.to_string();
  CUDA_ASSERT(d_out.download(out.data(), out.size()));
  EXPECT_NE(out, before) << "after the reset the good frame was not written";
}

// A damaged payload (negative scale) lowers the check through quant_decode too.
TEST_F(CudaQuantDecode, PayloadProblemsLowerTheCheck) {
  const size_t n = 1001;
  QuantFrame f = cpu_quant_frame("q3:block=64", n, GP_FLOAT32, 8);
  ASSERT_FALSE(f.bytes.empty());
  const std::vector<uint8_t> header(f.bytes.begin(), f.bytes.begin() + kFrameHeaderBytes);
  const uint32_t negative = 0xBF800000u;
  std::memcpy(f.bytes.data() + kFrameHeaderBytes + 8, &negative, 4);
  CUDA_ASSERT(f.device->upload(f.bytes.data(), f.bytes.size()));
  const std::vector<uint8_t> before = output_pattern(n, GP_FLOAT32, 7);
  DeviceBuffer d_out(before.size());
  CUDA_ASSERT(d_out.upload(before.data(), before.size()));
  const Status st = run(f, header.data(), d_out.get(), n, GP_FLOAT32, false, 1.0f);
  EXPECT_EQ(st.code(), Code::kCorruptData) << st.to_string();
  std::vector<uint8_t> out(before.size());
  CUDA_ASSERT(d_out.download(out.data(), out.size()));
  EXPECT_EQ(out, before);
}

TEST_F(CudaQuantDecode, ArgumentErrors) {
  const size_t n = 64;
  const QuantFrame f = cpu_quant_frame("q8", n, GP_FLOAT32, 2);
  ASSERT_FALSE(f.bytes.empty());
  DeviceBuffer d_out(n * 4);
  QuantDecodeArgs a;
  a.frame = f.device->get();
  a.frame_bytes = f.bytes.size();
  a.expected_header = f.bytes.data();
  a.out = d_out.get();
  a.count = n;
  a.check = check_->get();
  QuantDecodeArgs b = a;
  b.accumulate = true;
  b.scale = 0.5f;
  EXPECT_EQ(quant_decode(b, stream_).code(), Code::kInvalidArgument) << "scale with accumulate";
  b = a;
  b.frame_bytes -= 1;
  EXPECT_EQ(quant_decode(b, stream_).code(), Code::kInvalidArgument) << "frame size";
  b = a;
  b.count = n + 1;
  EXPECT_EQ(quant_decode(b, stream_).code(), Code::kInvalidArgument) << "count";
  b = a;
  b.check = nullptr;
  EXPECT_EQ(quant_decode(b, stream_).code(), Code::kInvalidArgument) << "no check";
  EXPECT_TRUE(quant_decode(a, stream_).ok());
  EXPECT_TRUE(read_check().ok());
}

// ---- top-k ----

struct TopkCase {
  const char* spec;
  size_t n;
};

// Index encodings both ways (small fractions take varints, large ones the bitmap), fp32 and
// quantized values, inputs small enough for the CPU's exact path and large enough for its
// sampled one.
TEST_F(CudaCodec, TopkMatchesCpu) {
  const std::vector<TopkCase> cases = {
      {"topk:0.01", 1},
      {"topk:0.01", 1000},
      {"topk:0.01+q8", 70001},
      {"topk:0.01+q8:round=stochastic:seed=4", 300007},
      {"topk:0.001+q4:block=64", 1 << 20},
      {"topk:0.05+q2:block=24", 65536},
      {"topk:0.3", 20011},
      {"topk:0.3+q8:block=8", 100003},
      {"topk:0.5+q16:block=4096:round=stochastic", 50000},
      {"topk:1", 3001},
      {"topk:0.2+q3:block=8192", 200001},
  };
  int variant = 0;
  for (const TopkCase& c : cases) {
    const gp_dtype_t dtype =
        std::vector<gp_dtype_t>{GP_FLOAT32, GP_FLOAT16, GP_BFLOAT16}[variant % 3];
    check_encode(c.spec, gradient_like(c.n, 50 + variant), dtype, true, 3);
    if (HasFatalFailure()) return;
    check_encode(c.spec, gradient_like(c.n, 60 + variant), GP_FLOAT32, false, 1);
    if (HasFatalFailure()) return;
    ++variant;
  }
}

// Ties: index order decides which equal keys are kept.
TEST_F(CudaCodec, TopkTiesKeepLowerIndices) {
  for (const char* spec : {"topk:0.1", "topk:0.37+q8", "topk:0.02+q4:block=16"}) {
    for (size_t n : {size_t{5000}, size_t{123457}}) {
      check_encode(spec, tied(n, 3), GP_FLOAT32, true, 3);
      if (HasFatalFailure()) return;
      check_encode(spec, tied(n, 4), GP_BFLOAT16, false, 1);
      if (HasFatalFailure()) return;
    }
    check_encode(spec, std::vector<float>(4099, 0.0f), GP_FLOAT32, true, 2);  // all equal
    if (HasFatalFailure()) return;
  }
}

// NaN and Inf rank at the top, tie among themselves by index, are sent as they are (fp32) or
// poison their quant block; kept or not, they keep their residual. (Inputs up to
// 65536 elements, where the CPU selects exactly: see README in compression/topk.)
TEST_F(CudaCodec, TopkNonFiniteValues) {
  const size_t n = 40000;
  std::vector<float> x = gradient_like(n, 21);
  for (size_t i = 100; i < n; i += 997) x[i] = i % 3 == 0 ? kNaN : (i % 3 == 1 ? kInf : -kInf);
  for (const char* spec : {"topk:0.001", "topk:0.01", "topk:0.001+q8:block=8", "topk:0.01+q8",
                           "topk:0.0005+q4:block=16:round=stochastic"}) {
    for (gp_dtype_t dtype : {GP_FLOAT32, GP_FLOAT16}) {
      check_encode(spec, x, dtype, true, 3);
      if (HasFatalFailure()) return;
    }
  }
}

// A top-k frame built by hand: fp32 values (all zero) behind the given index section.
std::vector<uint8_t> topk_frame(uint64_t count, uint64_t kept, IndexEncoding encoding,
                                const std::vector<uint8_t>& index) {
  FrameHeader h;
  h.codec = CodecKind::kTopk;
  h.dtype = GP_FLOAT32;
  h.count = count;
  h.kept = kept;
  h.index_encoding = encoding;
  h.index_bytes = index.size();
  h.payload_bytes = index.size() + 4 * kept;
  std::vector<uint8_t> frame(kFrameHeaderBytes + h.payload_bytes, 0);
  write_frame_header(h, frame.data());
  std::memcpy(frame.data() + kFrameHeaderBytes, index.data(), index.size());
  return frame;
}

// Corrupt index and value sections are kCorruptData on both sides, and the GPU writes nothing.
TEST_F(CudaCodec, TopkCorruptFramesAreRejectedWithoutWriting) {
  struct Bad {
    const char* name;
    std::vector<uint8_t> frame;
    uint64_t count;
  };
  const auto varint = IndexEncoding::kDeltaVarint;
  const auto bitmap = IndexEncoding::kBitmap;
  std::vector<uint8_t> v11(10, 0x80);
  v11.push_back(0x00);
  v11.push_back(0x01);
  std::vector<uint8_t> v10(9, 0xFF);
  v10.push_back(0x02);
  std::vector<Bad> bad = {
      {"varint past the count", topk_frame(10, 2, varint, {5, 5}), 10},
      {"varint longer than 10 bytes", topk_frame(100, 2, varint, v11), 100},
      {"varint overflows 64 bits", topk_frame(100, 1, varint, v10), 100},
      {"section ends inside a varint", topk_frame(100, 2, varint, {5, 0x85}), 100},
      {"bytes after the last varint", topk_frame(100, 2, varint, {1, 1, 1}), 100},
      {"bitmap pad bit", topk_frame(10, 2, bitmap, {0x01, 0x04}), 10},
      {"bitmap count", topk_frame(16, 3, bitmap, {0x01, 0x01}), 16},
  };
  {  // a quantized top-k frame with a negative scale
    std::unique_ptr<Codec> cpu;
    ASSERT_TRUE(Codec::create("topk:0.01+q8", cpu::scalar_kernels(), &cpu).ok());
    const size_t n = 5000;
    std::vector<float> x = gradient_like(n, 31);
    std::vector<uint8_t> frame(cpu->max_encoded_bytes(n, GP_FLOAT32));
    size_t bytes = 0;
    ASSERT_TRUE(
        cpu->encode(x.data(), n, GP_FLOAT32, nullptr, frame.data(), frame.size(), &bytes).ok());
    frame.resize(bytes);
    FrameHeader h;
    FrameLayout l;
    ASSERT_TRUE(read_frame_header(frame.data(), bytes, &h, &l).ok());
    frame[kFrameHeaderBytes + l.scales_offset + 3] |= 0x80;  // the sign of the first scale
    bad.push_back({"negative scale", frame, n});
  }
  for (const Bad& b : bad) {
    std::vector<uint8_t> out = output_pattern(b.count, GP_FLOAT32, 1);
    const std::vector<uint8_t> before = out;
    ASSERT_EQ(decode_frame(b.frame.data(), b.frame.size(), out.data(), b.count, GP_FLOAT32, false,
                           &cpu::scalar_kernels())
                  .code(),
              Code::kCorruptData)
        << b.name << ": the CPU accepts it, so the damage is not one";
    DeviceBuffer d_frame(b.frame.size()), d_out(before.size());
    CUDA_ASSERT(d_frame.upload(b.frame.data(), b.frame.size()));
    CUDA_ASSERT(d_out.upload(before.data(), before.size()));
    Status st = decode(d_frame.get(), b.frame.size(), d_out.get(), b.count, GP_FLOAT32, false, ws_,
                       stream_);
    EXPECT_EQ(st.code(), Code::kCorruptData) << b.name << ": " << st.to_string();
    CUDA_ASSERT(cudaStreamSynchronize(stream_));
    CUDA_ASSERT(d_out.download(out.data(), out.size()));
    EXPECT_EQ(out, before) << b.name << ": the output was written";
  }
}

}  // namespace
}  // namespace gradpack::cuda
