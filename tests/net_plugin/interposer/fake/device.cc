// SPDX-License-Identifier: Apache-2.0
// The CPU fake of the interposer's Device (net_plugin/interposer/device.h) on the fake GPU runtime
// (gpu.h): kernels are tasks on the stream's worker running the CPU codecs and float16.h's
// conversions, so frames are byte for byte the CUDA codecs' (same call_index, same stream key).
//
// What it checks that real CUDA would fail on, so the interposer's device guard is proven:
//   - every launch, alloc, memset and copy names a stream of the current device;
//   - every pointer that is fake device memory belongs to the stream's device.
// And what the interposer promises (device.h): nothing is allocated while capturing.
// Kernels (encode, decode, reset_check, widen, narrow) go through fake::count_launch, so launches
// are counted and GRADPACK_FAKE_FAIL_LAUNCH can fail one.
#include "net_plugin/interposer/device.h"

#include <array>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/float16.h"
#include "compression/codec.h"
#include "compression/wire.h"
#include "tests/net_plugin/interposer/fake/gpu.h"

namespace gradpack::interposer {
namespace {

// The sticky DecodeCheck in fake device memory.
struct FakeCheck {
  uint32_t magic;  // kCheckMagic once reset
  uint32_t bad;    // nonzero: a decode found a problem
  char why[120];   // the first problem
};
constexpr uint32_t kCheckMagic = 0x676f6f64;  // "good"

void lower(FakeCheck* check, const std::string& why) {
  check->bad = 1;
  std::snprintf(check->why, sizeof(check->why), "%s", why.c_str());
}

class FakeScratch : public Scratch {};

struct Pointer {
  const void* ptr;
  const char* name;
};

bool is_float_dtype(gp_dtype_t t) { return t == GP_FLOAT32 || t == GP_FLOAT16 || t == GP_BFLOAT16; }

float load(const void* p, gp_dtype_t t, size_t i) {
  if (t == GP_FLOAT16) return f16_to_f32(static_cast<const uint16_t*>(p)[i]);
  if (t == GP_BFLOAT16) return bf16_to_f32(static_cast<const uint16_t*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

void store(void* p, gp_dtype_t t, size_t i, float v) {
  if (t == GP_FLOAT16) {
    static_cast<uint16_t*>(p)[i] = f32_to_f16(v);
  } else if (t == GP_BFLOAT16) {
    static_cast<uint16_t*>(p)[i] = f32_to_bf16(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

// The stream belongs to the current device, and every fake device pointer to the stream's device.
Status check_placement(cudaStream_t stream, const char* what, std::initializer_list<Pointer> ptrs) {
  const int dev = fake::stream_device(stream);
  if (dev < 0) return InvalidArgument(std::string("fake device: ") + what + ": not a stream");
  const int current = fake::current_device();
  if (dev != current) {
    return InvalidArgument(std::string("fake device: ") + what + ": launch on a stream of device " +
                           std::to_string(dev) + " while device " + std::to_string(current) +
                           " is current");
  }
  for (const Pointer& p : ptrs) {
    const int owner = fake::pointer_device(p.ptr);
    if (owner >= 0 && owner != dev) {
      return InvalidArgument(std::string("fake device: ") + what + ": " + p.name +
                             " is memory of device " + std::to_string(owner) +
                             ", the stream's device is " + std::to_string(dev));
    }
  }
  return OkStatus();
}

Status launch(cudaStream_t stream, const char* what, std::initializer_list<Pointer> ptrs,
              std::function<Status()> task) {
  GP_RETURN_IF_ERROR(check_placement(stream, what, ptrs));
  GP_RETURN_IF_ERROR(fake::count_launch(what));
  return fake::enqueue(stream, what, std::move(task));
}

Status run_encode(const CodecSpec& spec, const EncodeArgs& a) {
  std::unique_ptr<Codec> codec;
  GP_RETURN_IF_ERROR(Codec::create(spec, &codec));
  size_t written = 0;
  GP_RETURN_IF_ERROR(codec->encode(a.in, a.count, a.dtype, a.residual, a.frame, a.frame_bytes,
                                   &written, a.call_index));
  if (written != a.frame_bytes) {
    return Internal("fake device: encode wrote " + std::to_string(written) + " bytes, not " +
                    std::to_string(a.frame_bytes));
  }
  return OkStatus();
}

// Never fails the stream: a bad frame lowers the check, as the CUDA kernel does.
void run_decode(const DecodeArgs& a, const std::array<uint8_t, kFrameHeaderBytes>& expected) {
  auto* check = static_cast<FakeCheck*>(a.check);
  if (check->magic != kCheckMagic || check->bad != 0) return;  // lowered: write nothing
  if (a.frame_bytes < kFrameHeaderBytes ||
      std::memcmp(a.frame, expected.data(), kFrameHeaderBytes) != 0) {
    lower(check, "the frame's header differs from the expected one");
    return;
  }
  std::vector<float> decoded(a.count);
  Status st = decode_frame(a.frame, a.frame_bytes, decoded.data(), a.count, GP_FLOAT32, false);
  if (!st.ok()) {
    lower(check, st.message());
    return;
  }
  for (size_t i = 0; i < a.count; ++i) {
    float v = decoded[i];
    if (a.accumulate) {
      v = load(a.out, a.dtype, i) + v;
    } else if (a.scale != 1.0f) {
      v *= a.scale;
    }
    store(a.out, a.dtype, i, v);
  }
}

class FakeDevice final : public Device {
 public:
  const char* name() const override { return "fake"; }
  Status check_runtime() override { return OkStatus(); }
  Status get_device(int* device) override {
    *device = fake::current_device();
    return OkStatus();
  }
  Status set_device(int device) override { return fake::set_current_device(device); }
  Status is_capturing(cudaStream_t stream, bool* capturing) override {
    if (fake::stream_device(stream) < 0) return InvalidArgument("fake device: not a stream");
    *capturing = fake::is_capturing(stream);
    return OkStatus();
  }

  Status alloc(size_t bytes, cudaStream_t stream, void** out) override {
    GP_RETURN_IF_ERROR(check_placement(stream, "alloc", {}));
    if (fake::is_capturing(stream)) {
      return InvalidArgument(
          "fake device: alloc while the stream is capturing (device.h: nothing "
          "is allocated while capturing)");
    }
    return fake::device_malloc(bytes, out);
  }
  void free(void* ptr, cudaStream_t stream) override {
    if (ptr == nullptr) return;
    Status st = fake::enqueue_host(stream, "free", [ptr] { fake::device_free(ptr); });
    if (!st.ok()) std::fprintf(stderr, "fake device: free: %s\n", st.message().c_str());
  }
  Status alloc_host(size_t bytes, void** out) override { return fake::host_malloc(bytes, out); }

  Status memset(void* dst, int value, size_t bytes, cudaStream_t stream) override {
    GP_RETURN_IF_ERROR(check_placement(stream, "memset", {{dst, "dst"}}));
    return fake::enqueue(stream, "memset", [=] {
      std::memset(dst, value, bytes);
      return OkStatus();
    });
  }
  Status copy(void* dst, const void* src, size_t bytes, cudaStream_t stream) override {
    GP_RETURN_IF_ERROR(check_placement(stream, "copy", {{dst, "dst"}, {src, "src"}}));
    return fake::enqueue(stream, "copy", [=] {
      if (bytes > 0) std::memcpy(dst, src, bytes);
      return OkStatus();
    });
  }

  Status event_create(cudaEvent_t* out) override {
    *out = fake::event_create();
    return OkStatus();
  }
  void event_destroy(cudaEvent_t event) override { fake::event_destroy(event); }
  Status record(cudaEvent_t event, cudaStream_t stream, bool /*external*/) override {
    return fake::event_record(event, stream);
  }
  Status wait(cudaStream_t stream, cudaEvent_t event, bool /*external*/) override {
    return fake::stream_wait_event(stream, event);
  }
  Status query(cudaEvent_t event, bool* done) override { return fake::event_status(event, done); }
  Status synchronize(cudaEvent_t event) override { return fake::event_synchronize(event); }

  Status make_scratch(std::unique_ptr<Scratch>* out) override {
    *out = std::make_unique<FakeScratch>();
    return OkStatus();
  }
  size_t max_encoded_bytes(const CodecSpec& spec, size_t count) override {
    std::unique_ptr<Codec> codec;
    if (spec.kind != CodecKind::kQuant || !Codec::create(spec, &codec).ok()) return 0;
    return codec->max_encoded_bytes(count, GP_FLOAT32);
  }
  Status encode(Scratch& scratch, const EncodeArgs& args, cudaStream_t stream) override;
  Status decode(Scratch& scratch, const DecodeArgs& args, cudaStream_t stream) override;

  size_t check_bytes() const override { return sizeof(FakeCheck); }
  Status reset_check(void* check, cudaStream_t stream) override {
    return launch(stream, "reset_check", {{check, "check"}}, [check] {
      auto* c = static_cast<FakeCheck*>(check);
      std::memset(c, 0, sizeof(*c));
      c->magic = kCheckMagic;
      return OkStatus();
    });
  }
  Status read_check(const void* host_copy) override {
    FakeCheck c;
    std::memcpy(&c, host_copy, sizeof(c));
    if (c.magic != kCheckMagic) return CorruptData("decode check: never reset (or overwritten)");
    if (c.bad != 0) return CorruptData(std::string("decode check: ") + c.why);
    return OkStatus();
  }
  Status widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
               cudaStream_t stream) override;
  Status narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
                cudaStream_t stream) override;
};

Status FakeDevice::encode(Scratch& /*scratch*/, const EncodeArgs& args, cudaStream_t stream) {
  if (args.spec == nullptr || args.spec->kind != CodecKind::kQuant) {
    return Unsupported("fake device: encode takes q<b> codecs only");
  }
  const size_t want = max_encoded_bytes(*args.spec, args.count);
  if (args.frame_bytes != want) {
    return InvalidArgument("fake device: encode into " + std::to_string(args.frame_bytes) +
                           " bytes; q<b> frames of this count are " + std::to_string(want));
  }
  CodecSpec spec = *args.spec;
  EncodeArgs a = args;
  return launch(stream, "encode", {{a.in, "in"}, {a.residual, "residual"}, {a.frame, "frame"}},
                [spec, a] { return run_encode(spec, a); });
}

Status FakeDevice::decode(Scratch& /*scratch*/, const DecodeArgs& args, cudaStream_t stream) {
  if (args.check == nullptr || args.expected_header == nullptr) {
    return InvalidArgument("fake device: decode needs a check and an expected header");
  }
  if (!is_float_dtype(args.dtype)) return InvalidArgument("fake device: decode into a non-float");
  if (args.accumulate && args.scale != 1.0f) {
    return InvalidArgument("fake device: decode scales only without accumulate");
  }
  std::array<uint8_t, kFrameHeaderBytes> expected;  // the host buffer may change after return
  std::memcpy(expected.data(), args.expected_header, kFrameHeaderBytes);
  DecodeArgs a = args;
  return launch(stream, "decode", {{a.frame, "frame"}, {a.out, "out"}, {a.check, "check"}},
                [a, expected] {
                  run_decode(a, expected);
                  return OkStatus();
                });
}

Status FakeDevice::widen(const void* src, gp_dtype_t dtype, float* dst, size_t n, bool add,
                         cudaStream_t stream) {
  if (!is_float_dtype(dtype)) return InvalidArgument("fake device: widen of a non-float dtype");
  return launch(stream, "widen", {{src, "src"}, {dst, "dst"}}, [=] {
    for (size_t i = 0; i < n; ++i)
      dst[i] = add ? dst[i] + load(src, dtype, i) : load(src, dtype, i);
    return OkStatus();
  });
}

Status FakeDevice::narrow(const float* src, void* dst, gp_dtype_t dtype, size_t n, float scale,
                          cudaStream_t stream) {
  if (!is_float_dtype(dtype)) return InvalidArgument("fake device: narrow to a non-float dtype");
  return launch(stream, "narrow", {{src, "src"}, {dst, "dst"}}, [=] {
    for (size_t i = 0; i < n; ++i) store(dst, dtype, i, scale == 1.0f ? src[i] : src[i] * scale);
    return OkStatus();
  });
}

}  // namespace

Device& device() {
  static FakeDevice* d = new FakeDevice();
  return *d;
}

}  // namespace gradpack::interposer
