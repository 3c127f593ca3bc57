// SPDX-License-Identifier: Apache-2.0
// The fake GPU runtime and the fake Device on their own (label unit): stream order and events
// across a slow and a fast stream, capture and replay, the host-wait counter, the device guard,
// failure injection, and the kernels bit for bit against the CPU codec.
#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <vector>

#include "common/float16.h"
#include "compression/codec.h"
#include "compression/spec.h"
#include "compression/wire.h"
#include "net_plugin/interposer/device.h"
#include "tests/net_plugin/interposer/fake/gpu.h"

namespace gradpack::fake {
namespace {

using namespace std::chrono_literals;
using interposer::DecodeArgs;
using interposer::Device;
using interposer::EncodeArgs;

TEST(FakeGpu, EventOrdersASlowStreamBeforeAFastOne) {
  cudaStream_t slow = stream_create(0);
  cudaStream_t fast = stream_create(0);
  set_stream_delay(slow, 20ms);
  std::atomic<int> value{0};
  int seen = -1;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(enqueue(slow, "inc", [&] {
                  value.fetch_add(1);
                  return OkStatus();
                }).ok());
  }
  cudaEvent_t ev = event_create();
  EXPECT_TRUE(event_query(ev));  // never recorded: complete
  ASSERT_TRUE(event_record(ev, slow).ok());
  EXPECT_FALSE(event_query(ev));
  ASSERT_TRUE(stream_wait_event(fast, ev).ok());
  ASSERT_TRUE(enqueue(fast, "read", [&] {
                seen = value.load();
                return OkStatus();
              }).ok());
  ASSERT_TRUE(stream_synchronize(fast).ok());
  EXPECT_EQ(seen, 3);
  EXPECT_TRUE(event_query(ev));
  event_destroy(ev);
  stream_destroy(slow);
  stream_destroy(fast);
}

TEST(FakeGpu, FailedTaskIsStickyAndSkipsLaterTasks) {
  cudaStream_t s = stream_create(1);
  bool ran = false;
  ASSERT_TRUE(enqueue(s, "boom", [] { return Internal("kaboom"); }).ok());
  ASSERT_TRUE(enqueue(s, "later", [&] {
                ran = true;
                return OkStatus();
              }).ok());
  EXPECT_FALSE(stream_synchronize(s).ok());
  EXPECT_FALSE(ran);
  EXPECT_NE(stream_error(s).message().find("boom: kaboom"), std::string::npos);
  EXPECT_FALSE(enqueue(s, "after", [] { return OkStatus(); }).ok());
  stream_destroy(s);
}

TEST(FakeGpu, CaptureRecordsAndEveryLaunchReplays) {
  cudaStream_t s = stream_create(0);
  int runs = 0;
  cudaEvent_t ev = event_create();
  ASSERT_TRUE(begin_capture(s).ok());
  EXPECT_TRUE(is_capturing(s));
  ASSERT_TRUE(enqueue(s, "inc", [&] {
                ++runs;
                return OkStatus();
              }).ok());
  ASSERT_TRUE(event_record(ev, s).ok());
  EXPECT_FALSE(stream_synchronize(s).ok());  // host waits on a capturing stream are errors
  EXPECT_FALSE(event_synchronize(ev).ok());
  Graph* g = nullptr;
  ASSERT_TRUE(end_capture(s, &g).ok());
  ASSERT_TRUE(stream_synchronize(s).ok());
  EXPECT_EQ(runs, 0);
  ASSERT_TRUE(graph_launch(g, s).ok());
  ASSERT_TRUE(graph_launch(g, s).ok());
  ASSERT_TRUE(event_synchronize(ev).ok());  // recorded by the second launch
  EXPECT_EQ(runs, 2);
  graph_destroy(g);
  event_destroy(ev);
  stream_destroy(s);
}

TEST(FakeGpu, HostWaitsAreCounted) {
  reset_counters();
  cudaStream_t s = stream_create(0);
  cudaEvent_t ev = event_create();
  ASSERT_TRUE(event_record(ev, s).ok());
  EXPECT_EQ(counters().host_waits.load(), 0u);
  ASSERT_TRUE(event_synchronize(ev).ok());
  ASSERT_TRUE(stream_synchronize(s).ok());
  EXPECT_EQ(counters().host_waits.load(), 2u);
  event_destroy(ev);
  stream_destroy(s);
}

TEST(FakeGpu, MemoryKnowsItsDeviceAndAllocFailureCanBeInjected) {
  ASSERT_TRUE(set_current_device(1).ok());
  void* p = nullptr;
  ASSERT_TRUE(device_malloc(1000, &p).ok());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 256, 0u);
  EXPECT_EQ(pointer_device(p), 1);
  EXPECT_EQ(pointer_device(static_cast<char*>(p) + 999), 1);
  int local = 0;
  EXPECT_EQ(pointer_device(&local), -1);
  fail_alloc_after(2);
  void* q = nullptr;
  ASSERT_TRUE(device_malloc(8, &q).ok());
  void* r = nullptr;
  EXPECT_EQ(device_malloc(8, &r).code(), Code::kSystem);
  ASSERT_TRUE(device_malloc(8, &r).ok());  // fires once
  device_free(p);
  device_free(q);
  device_free(r);
  EXPECT_EQ(pointer_device(p), -1);
  ASSERT_TRUE(set_current_device(0).ok());
  EXPECT_FALSE(set_current_device(device_count()).ok());
}

// ---- the fake Device -----------------------------------------------------------------------

class FakeDeviceTest : public testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(set_current_device(0).ok());
    stream_ = stream_create(0);
    ASSERT_TRUE(parse_codec_spec("q8", &spec_).ok());
  }
  void TearDown() override { stream_destroy(stream_); }
  void* dev_alloc(size_t bytes) {
    void* p = nullptr;
    EXPECT_TRUE(dev().alloc(bytes, stream_, &p).ok());
    return p;
  }
  static Device& dev() { return interposer::device(); }
  cudaStream_t stream_ = nullptr;
  CodecSpec spec_;
};

TEST_F(FakeDeviceTest, LaunchOnAnotherDevicesStreamFails) {
  cudaStream_t other = stream_create(1);
  void* p = nullptr;
  Status st = dev().alloc(64, other, &p);
  EXPECT_NE(st.message().find("stream of device 1 while device 0 is current"), std::string::npos)
      << st.message();
  void* mine = dev_alloc(64);
  ASSERT_TRUE(set_current_device(1).ok());
  st = dev().memset(mine, 0, 64, other);
  EXPECT_NE(st.message().find("dst is memory of device 0"), std::string::npos) << st.message();
  ASSERT_TRUE(set_current_device(0).ok());
  dev().free(mine, stream_);
  stream_destroy(other);
}

TEST_F(FakeDeviceTest, EncodeAndDecodeMatchTheCpuCodecAtACallIndex) {
  const size_t n = 3000;
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = std::sin(0.01f * static_cast<float>(i)) * 2.0f;
  std::unique_ptr<Codec> cpu;
  ASSERT_TRUE(Codec::create(spec_, &cpu).ok());
  const size_t bytes = dev().max_encoded_bytes(spec_, n);
  ASSERT_EQ(bytes, cpu->max_encoded_bytes(n, GP_FLOAT32));
  std::vector<uint8_t> want(bytes);
  std::vector<float> want_res(n, 0.0f);
  size_t written = 0;
  for (int call = 0; call < 3; ++call) {  // the CPU codec's third encode: call index 2
    ASSERT_TRUE(
        cpu->encode(x.data(), n, GP_FLOAT32, want_res.data(), want.data(), bytes, &written).ok());
  }
  auto* in = static_cast<float*>(dev_alloc(n * 4));
  auto* res = static_cast<float*>(dev_alloc(n * 4));
  auto* frame = static_cast<uint8_t*>(dev_alloc(bytes));
  std::memcpy(in, x.data(), n * 4);
  std::unique_ptr<interposer::Scratch> scratch;
  ASSERT_TRUE(dev().make_scratch(&scratch).ok());
  // The residual the CPU codec had before its third call.
  std::vector<float> res_before(n, 0.0f);
  {
    std::unique_ptr<Codec> replay;
    ASSERT_TRUE(Codec::create(spec_, &replay).ok());
    std::vector<uint8_t> tmp(bytes);
    for (int call = 0; call < 2; ++call)
      ASSERT_TRUE(
          replay->encode(x.data(), n, GP_FLOAT32, res_before.data(), tmp.data(), bytes, &written)
              .ok());
  }
  std::memcpy(res, res_before.data(), n * 4);
  EncodeArgs e{&spec_, in, GP_FLOAT32, n, res, 2, frame, bytes};
  ASSERT_TRUE(dev().encode(*scratch, e, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());
  EXPECT_EQ(std::memcmp(frame, want.data(), bytes), 0);
  EXPECT_EQ(std::memcmp(res, want_res.data(), n * 4), 0);

  // Decode into bf16 with a scale, and accumulate into fp32, against decode_frame.
  void* check = dev_alloc(dev().check_bytes());
  ASSERT_TRUE(dev().reset_check(check, stream_).ok());
  auto* out = static_cast<float*>(dev_alloc(n * 4));
  std::vector<float> ref(n, 1.5f);
  std::memcpy(out, ref.data(), n * 4);
  DecodeArgs d{frame, bytes, want.data(), out, n, GP_FLOAT32, true, 1.0f, check};
  ASSERT_TRUE(dev().decode(*scratch, d, stream_).ok());
  auto* half = static_cast<uint16_t*>(dev_alloc(n * 2));
  DecodeArgs h{frame, bytes, want.data(), half, n, GP_BFLOAT16, false, 0.25f, check};
  ASSERT_TRUE(dev().decode(*scratch, h, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());
  ASSERT_TRUE(decode_frame(want.data(), bytes, ref.data(), n, GP_FLOAT32, true).ok());
  EXPECT_EQ(std::memcmp(out, ref.data(), n * 4), 0);
  std::vector<float> plain(n);
  ASSERT_TRUE(decode_frame(want.data(), bytes, plain.data(), n, GP_FLOAT32, false).ok());
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(half[i], f32_to_bf16(plain[i] * 0.25f)) << i;
  ASSERT_TRUE(dev().read_check(check).ok());
  for (void* p : {static_cast<void*>(in), static_cast<void*>(res), static_cast<void*>(frame), check,
                  static_cast<void*>(out), static_cast<void*>(half)})
    dev().free(p, stream_);
}

TEST_F(FakeDeviceTest, CorruptFrameLowersTheStickyCheckAndWritesNothing) {
  const size_t n = 512;
  std::vector<float> x(n, 0.5f);
  std::unique_ptr<Codec> cpu;
  ASSERT_TRUE(Codec::create(spec_, &cpu).ok());
  const size_t bytes = cpu->max_encoded_bytes(n, GP_FLOAT32);
  auto* frame = static_cast<uint8_t*>(dev_alloc(bytes));
  size_t written = 0;
  ASSERT_TRUE(cpu->encode(x.data(), n, GP_FLOAT32, nullptr, frame, bytes, &written).ok());
  std::vector<uint8_t> header(frame, frame + kFrameHeaderBytes);
  frame[9] ^= 0x5A;  // header damage: differs from the expected header
  void* check = dev_alloc(dev().check_bytes());
  auto* out = static_cast<float*>(dev_alloc(n * 4));
  std::memset(out, 0, n * 4);
  std::unique_ptr<interposer::Scratch> scratch;
  ASSERT_TRUE(dev().make_scratch(&scratch).ok());
  ASSERT_TRUE(dev().reset_check(check, stream_).ok());
  DecodeArgs d{frame, bytes, header.data(), out, n, GP_FLOAT32, false, 1.0f, check};
  ASSERT_TRUE(dev().decode(*scratch, d, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());  // the kernel reads the frame when it runs
  frame[9] ^= 0x5A;  // repaired: the lowered check still stops the decode
  ASSERT_TRUE(dev().decode(*scratch, d, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());
  EXPECT_EQ(dev().read_check(check).code(), Code::kCorruptData);
  for (size_t i = 0; i < n; ++i) ASSERT_EQ(out[i], 0.0f);
  ASSERT_TRUE(dev().reset_check(check, stream_).ok());
  ASSERT_TRUE(dev().decode(*scratch, d, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());
  EXPECT_TRUE(dev().read_check(check).ok());
  EXPECT_EQ(out[0], 0.5f);
  for (void* p : {static_cast<void*>(frame), check, static_cast<void*>(out)})
    dev().free(p, stream_);
}

TEST_F(FakeDeviceTest, InjectedLaunchFailureIsReturnedAndCounted) {
  reset_counters();
  std::vector<float> a(4, 1.0f);
  std::vector<float> b(4, 0.0f);
  fail_launch_after(2);
  EXPECT_TRUE(dev().widen(a.data(), GP_FLOAT32, b.data(), 4, false, stream_).ok());
  EXPECT_EQ(dev().widen(a.data(), GP_FLOAT32, b.data(), 4, true, stream_).code(), Code::kSystem);
  EXPECT_TRUE(dev().narrow(a.data(), b.data(), GP_FLOAT32, 4, 3.0f, stream_).ok());
  ASSERT_TRUE(stream_synchronize(stream_).ok());
  EXPECT_EQ(b[0], 3.0f);
  EXPECT_EQ(counters().launches.load(), 3u);
}

}  // namespace
}  // namespace gradpack::fake
