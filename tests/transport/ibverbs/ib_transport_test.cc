// SPDX-License-Identifier: Apache-2.0
// End to end, both ends in this process on device 0, bootstrap on loopback. Each test runs twice:
// over the software HCA of fake_verbs.h (always; small max_msg_sz and send queue so chunking and
// flow control are exercised), and over a real RDMA port (skipped on a machine without one).
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <numeric>
#include <thread>
#include <vector>

#include "transport/ibverbs/ibverbs_transport.h"
#include "transport/ibverbs/verbs_loader.h"
#include "tests/transport/ibverbs/fake_verbs.h"

namespace gradpack::transport {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

#define SKIP_WITHOUT_DEVICE()                                                            \
  do {                                                                                   \
    if (transport_ == nullptr || transport_->device_count() == 0)                        \
      GTEST_SKIP() << "no RDMA device on this machine (ibv_get_device_list found none)"; \
  } while (0)

class IbTransportTest : public ::testing::TestWithParam<const char*> {
 protected:
  bool fake() const { return std::string(GetParam()) == "fake"; }

  void SetUp() override {
    std::shared_ptr<const VerbsApi> api;
    if (fake()) {
      fake::Options options;
      options.max_msg_sz = 1000;
      options.max_qp_wr = 16;
      api = fake::install(options);
    } else if (!load_verbs(kDefaultVerbsLibrary, &api).ok()) {
      return;  // the test skips
    }
    ASSERT_TRUE(make_ibverbs_transport_with(api, "127.0.0.1", &transport_).ok());
  }

  void TearDown() override {
    if (!fake()) return;
    send_.reset();
    recv_.reset();
    listener_.reset();
    // The progress thread may hold a connection for one more round.
    fake::Stats stats = fake::stats();
    const Clock::time_point deadline = Clock::now() + milliseconds(2000);
    while ((stats.live_qps > 0 || stats.live_mrs > 0 || stats.live_cqs > 0) &&
           Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
      stats = fake::stats();
    }
    EXPECT_EQ(stats.violation, "");
    EXPECT_EQ(stats.live_mrs, 0);
    EXPECT_EQ(stats.live_qps, 0);
    EXPECT_EQ(stats.live_cqs, 0);
    EXPECT_LE(stats.max_write_bytes, 1000u);
  }

  // A connected pair on device 0.
  void connect_pair(uint64_t hello = 5) {
    Handle handle;
    ASSERT_TRUE(transport_->listen(0, &handle, &listener_).ok());
    ASSERT_TRUE(transport_->connect(0, handle, hello, milliseconds(5000), &send_).ok());
    ASSERT_TRUE(listener_->accept(milliseconds(5000), &recv_).ok());
    ASSERT_NE(recv_, nullptr);
    EXPECT_EQ(recv_->hello(), hello);
  }

  // Tests both requests until both are done or one fails; returns the first failure.
  static Status drive(Request* a, Request* b, size_t* a_bytes, size_t* b_bytes,
                      milliseconds timeout = milliseconds(10000)) {
    const Clock::time_point deadline = Clock::now() + timeout;
    bool a_done = false, b_done = false;
    while (!a_done || !b_done) {
      if (!a_done) GP_RETURN_IF_ERROR(a->test(&a_done, a_bytes));
      if (!b_done) GP_RETURN_IF_ERROR(b->test(&b_done, b_bytes));
      if (Clock::now() > deadline) return Status(Code::kTimeout, "requests did not complete");
    }
    return OkStatus();
  }

  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<SendConnection> send_;
  std::unique_ptr<RecvConnection> recv_;
};

TEST_P(IbTransportTest, DeviceInfoIsSane) {
  SKIP_WITHOUT_DEVICE();
  for (int dev = 0; dev < transport_->device_count(); ++dev) {
    DeviceInfo info;
    ASSERT_TRUE(transport_->device_info(dev, &info).ok());
    EXPECT_NE(info.name.find(':'), std::string::npos) << info.name;
    EXPECT_GT(info.port, 0);
    EXPECT_GT(info.speed_mbps, 0) << info.name;
  }
}

TEST_P(IbTransportTest, MessagesOfManySizesArrive) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  for (size_t size : {size_t{0}, size_t{1}, size_t{4096}, size_t{3} << 20, size_t{64} << 20}) {
    std::vector<uint8_t> out(size), in(size + 16, 0xee);
    std::iota(out.begin(), out.end(), static_cast<uint8_t>(size));
    std::unique_ptr<MemoryRegion> out_mr, in_mr;
    ASSERT_TRUE(send_->register_memory(out.data(), out.size(), MemoryKind::kHost, &out_mr).ok());
    ASSERT_TRUE(recv_->register_memory(in.data(), in.size(), MemoryKind::kHost, &in_mr).ok());
    std::unique_ptr<Request> r, s;
    ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 17, in_mr.get(), &r).ok());
    ASSERT_TRUE(send_->isend(out.data(), out.size(), 17, out_mr.get(), &s).ok());
    size_t got = 99, sent = 99;
    Status status = drive(r.get(), s.get(), &got, &sent);
    ASSERT_TRUE(status.ok()) << size << ": " << status.to_string();
    EXPECT_EQ(got, size);
    EXPECT_EQ(sent, size);
    EXPECT_EQ(std::memcmp(in.data(), out.data(), size), 0) << size;
    EXPECT_EQ(in[size], 0xee);  // nothing past the message
  }
}

TEST_P(IbTransportTest, UnregisteredBuffersAndManyInFlight) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  constexpr int kCount = 300;  // more than the control slots: exercises flow control
  std::vector<std::vector<uint32_t>> in(kCount, std::vector<uint32_t>(257, 0));
  std::vector<std::vector<uint32_t>> out(kCount, std::vector<uint32_t>(257));
  std::vector<std::unique_ptr<Request>> rs(kCount), ss(kCount);
  for (int i = 0; i < kCount; ++i) {
    std::fill(out[i].begin(), out[i].end(), static_cast<uint32_t>(i * 1000));
    ASSERT_TRUE(recv_->irecv(in[i].data(), in[i].size() * 4, i, nullptr, &rs[i]).ok());
  }
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(send_->isend(out[i].data(), out[i].size() * 4, i, nullptr, &ss[i]).ok());
  }
  for (int i = 0; i < kCount; ++i) {
    size_t got = 0, sent = 0;
    ASSERT_TRUE(drive(rs[i].get(), ss[i].get(), &got, &sent).ok()) << i;
    EXPECT_EQ(in[i], out[i]) << i;
  }
}

TEST_P(IbTransportTest, TagMismatchIsCorruptDataOnBothSides) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::vector<uint8_t> out(100), in(100);
  std::unique_ptr<Request> r, s;
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 1, nullptr, &r).ok());
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 2, nullptr, &s).ok());
  size_t got = 0, sent = 0;
  Status status = drive(r.get(), s.get(), &got, &sent);
  EXPECT_EQ(status.code(), Code::kCorruptData) << status.to_string();
  bool done = true;
  EXPECT_EQ(r->test(&done, &got).code(), Code::kCorruptData);
  EXPECT_FALSE(done);
}

TEST_P(IbTransportTest, MessageLargerThanTheReceiveIsCorruptData) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::vector<uint8_t> out(200), in(100);
  std::unique_ptr<Request> r, s;
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 1, nullptr, &r).ok());
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 1, nullptr, &s).ok());
  size_t got = 0, sent = 0;
  Status status = drive(r.get(), s.get(), &got, &sent);
  EXPECT_EQ(status.code(), Code::kCorruptData) << status.to_string();
  EXPECT_NE(status.message().find("200"), std::string::npos) << status.message();
}

TEST_P(IbTransportTest, WrongKeyIsRejectedWithoutStalling) {
  SKIP_WITHOUT_DEVICE();
  Handle handle;
  ASSERT_TRUE(transport_->listen(0, &handle, &listener_).ok());
  handle.bytes[30] ^= 1;  // inside the key
  ASSERT_TRUE(transport_->connect(0, handle, 1, milliseconds(5000), &send_).ok());
  std::unique_ptr<RecvConnection> none;
  ASSERT_TRUE(listener_->accept(milliseconds(300), &none).ok());
  EXPECT_EQ(none, nullptr);
  std::vector<uint8_t> out(10);
  std::unique_ptr<Request> s;
  Status status = send_->isend(out.data(), out.size(), 0, nullptr, &s);
  const Clock::time_point deadline = Clock::now() + milliseconds(5000);
  while (status.ok() && Clock::now() < deadline) {
    bool done = false;
    status = s->test(&done, nullptr);
    ASSERT_FALSE(done);
  }
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
}

TEST_P(IbTransportTest, PeerGoneFailsThePendingReceive) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::vector<uint8_t> in(64);
  std::unique_ptr<Request> r;
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 0, nullptr, &r).ok());
  send_.reset();
  Status status = wait(*r, Clock::now() + milliseconds(5000));
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
  std::unique_ptr<Request> again;
  EXPECT_EQ(recv_->irecv(in.data(), in.size(), 0, nullptr, &again).code(), Code::kRemote);
}

TEST_P(IbTransportTest, SendQueuedBeforeAcceptIsDelivered) {
  SKIP_WITHOUT_DEVICE();
  Handle handle;
  ASSERT_TRUE(transport_->listen(0, &handle, &listener_).ok());
  ASSERT_TRUE(transport_->connect(0, handle, 3, milliseconds(5000), &send_).ok());
  std::vector<uint8_t> out(5000, 0x5a), in(5000);
  std::unique_ptr<Request> s, r;
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 8, nullptr, &s).ok());
  bool done = true;
  ASSERT_TRUE(s->test(&done, nullptr).ok());
  EXPECT_FALSE(done);
  ASSERT_TRUE(listener_->accept(milliseconds(5000), &recv_).ok());
  ASSERT_NE(recv_, nullptr);
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 8, nullptr, &r).ok());
  size_t got = 0, sent = 0;
  ASSERT_TRUE(drive(r.get(), s.get(), &got, &sent).ok());
  EXPECT_EQ(got, 5000u);
  EXPECT_EQ(in, out);
}

TEST_P(IbTransportTest, ZeroByteMessagesWithoutBuffers) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  for (int i = 0; i < 3; ++i) {
    std::unique_ptr<Request> r, s;
    ASSERT_TRUE(recv_->irecv(nullptr, 0, 4, nullptr, &r).ok());
    ASSERT_TRUE(send_->isend(nullptr, 0, 4, nullptr, &s).ok());
    size_t got = 9, sent = 9;
    ASSERT_TRUE(drive(r.get(), s.get(), &got, &sent).ok());
    EXPECT_EQ(got, 0u);
    EXPECT_EQ(sent, 0u);
  }
}

TEST_P(IbTransportTest, ErrorIsReturnedByEveryLaterCall) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::vector<uint8_t> out(10), in(10);
  std::unique_ptr<Request> r, s;
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 1, nullptr, &r).ok());
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 2, nullptr, &s).ok());
  size_t got = 0, sent = 0;
  EXPECT_EQ(drive(r.get(), s.get(), &got, &sent).code(), Code::kCorruptData);
  bool done = false;
  const Clock::time_point deadline = Clock::now() + milliseconds(5000);
  Status status;
  while (status.ok() && Clock::now() < deadline) status = s->test(&done, &sent);
  EXPECT_EQ(status.code(), Code::kCorruptData);
  std::unique_ptr<Request> later;
  EXPECT_EQ(recv_->irecv(in.data(), in.size(), 1, nullptr, &later).code(), Code::kCorruptData);
  EXPECT_EQ(send_->isend(out.data(), out.size(), 1, nullptr, &later).code(), Code::kCorruptData);
}

TEST_P(IbTransportTest, ReceiverGoneFailsThePendingSend) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::vector<uint8_t> out(64);
  std::unique_ptr<Request> s;
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 0, nullptr, &s).ok());
  bool done = false;
  ASSERT_TRUE(s->test(&done, nullptr).ok());
  recv_.reset();
  listener_.reset();
  Status status = wait(*s, Clock::now() + milliseconds(5000));
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
}

TEST_P(IbTransportTest, ManyConnectionsOnOneListener) {
  SKIP_WITHOUT_DEVICE();
  Handle handle;
  ASSERT_TRUE(transport_->listen(0, &handle, &listener_).ok());
  constexpr int kConns = 5;
  std::vector<std::unique_ptr<SendConnection>> sends(kConns);
  std::vector<std::unique_ptr<RecvConnection>> recvs;
  for (int i = 0; i < kConns; ++i) {
    ASSERT_TRUE(transport_->connect(0, handle, 100 + i, milliseconds(5000), &sends[i]).ok());
  }
  while (recvs.size() < kConns) {
    std::unique_ptr<RecvConnection> conn;
    ASSERT_TRUE(listener_->accept(milliseconds(5000), &conn).ok());
    ASSERT_NE(conn, nullptr);
    recvs.push_back(std::move(conn));
  }
  for (auto& conn : recvs) {
    const uint64_t i = conn->hello() - 100;
    ASSERT_LT(i, static_cast<uint64_t>(kConns));
    uint64_t value = 0, expected = 7 * i;
    std::unique_ptr<Request> r, s;
    ASSERT_TRUE(conn->irecv(&value, sizeof(value), i, nullptr, &r).ok());
    ASSERT_TRUE(sends[i]->isend(&expected, sizeof(expected), i, nullptr, &s).ok());
    size_t got = 0, sent = 0;
    ASSERT_TRUE(drive(r.get(), s.get(), &got, &sent).ok());
    EXPECT_EQ(value, expected);
  }
}

TEST_P(IbTransportTest, ProgressThreadMovesSendsThatAreNeverTested) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  // A ring step: each side waits only on its receive; the untested isend must still progress.
  std::vector<uint8_t> out(100000, 0x33), in(100000);
  std::unique_ptr<Request> r, s;
  ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 1, nullptr, &r).ok());
  ASSERT_TRUE(send_->isend(out.data(), out.size(), 1, nullptr, &s).ok());
  size_t got = 0;
  Status status = wait(*r, Clock::now() + milliseconds(10000), &got);
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(got, out.size());
  EXPECT_EQ(in, out);
  ASSERT_TRUE(wait(*s, Clock::now() + milliseconds(10000)).ok());
}

TEST_P(IbTransportTest, RefusedCallLeavesTheConnectionUsable) {
  SKIP_WITHOUT_DEVICE();
  connect_pair();
  std::unique_ptr<Request> bad;
  EXPECT_EQ(send_->isend(nullptr, 10, 0, nullptr, &bad).code(), Code::kInvalidArgument);
  EXPECT_EQ(recv_->irecv(nullptr, 10, 0, nullptr, &bad).code(), Code::kInvalidArgument);
  uint32_t out = 0xabcd, in = 0;
  std::unique_ptr<Request> r, s;
  ASSERT_TRUE(recv_->irecv(&in, sizeof(in), 0, nullptr, &r).ok());
  ASSERT_TRUE(send_->isend(&out, sizeof(out), 0, nullptr, &s).ok());
  size_t got = 0, sent = 0;
  ASSERT_TRUE(drive(r.get(), s.get(), &got, &sent).ok());
  EXPECT_EQ(in, out);
}

TEST_P(IbTransportTest, CudaMemoryIsRefusedWithoutGpuDirect) {
  SKIP_WITHOUT_DEVICE();
  DeviceInfo info;
  ASSERT_TRUE(transport_->device_info(0, &info).ok());
  if (info.cuda_memory) {
    GTEST_SKIP() << info.name << " supports GPUDirect RDMA (the refusal needs GRADPACK_GDR=off)";
  }
  connect_pair();
  uint8_t byte = 0;
  std::unique_ptr<MemoryRegion> mr;
  Status status = send_->register_memory(&byte, 1, MemoryKind::kCuda, &mr);
  EXPECT_EQ(status.code(), Code::kUnsupported);
  EXPECT_NE(status.message().find("GRADPACK_GDR"), std::string::npos) << status.message();
  EXPECT_EQ(recv_->register_dmabuf(&byte, 1, 0, 0, &mr).code(), Code::kUnsupported);
}

INSTANTIATE_TEST_SUITE_P(Hca, IbTransportTest, ::testing::Values("fake", "real"),
                         [](const auto& param_info) { return std::string(param_info.param); });

// ---- GPUDirect RDMA over the software HCA with DMA-BUF support ---------------------------------
// "GPU" buffers are host memory registered as kCuda or through a memfd standing for a dma-buf: the
// fake cannot tell, and what is checked is the protocol (keys, the flush read, the refusals).
class IbGdrTest : public ::testing::Test {
 protected:
  void make(GdrMode gdr) {
    fake::Options options;
    options.dmabuf = true;
    api_ = fake::install(options);
    ASSERT_TRUE(make_ibverbs_transport_with(api_, "127.0.0.1", &transport_, gdr).ok());
    ASSERT_EQ(transport_->device_count(), 1);
  }
  void connect_pair() {
    Handle handle;
    ASSERT_TRUE(transport_->listen(0, &handle, &listener_).ok());
    ASSERT_TRUE(transport_->connect(0, handle, 1, milliseconds(5000), &send_).ok());
    ASSERT_TRUE(listener_->accept(milliseconds(5000), &recv_).ok());
    ASSERT_NE(recv_, nullptr);
  }
  // Sends `out` into `in` (registered as in_mr) and waits for both ends.
  void transfer(std::vector<uint8_t>& out, std::vector<uint8_t>& in, MemoryRegion* in_mr) {
    std::unique_ptr<Request> r, s;
    ASSERT_TRUE(recv_->irecv(in.data(), in.size(), 3, in_mr, &r).ok());
    ASSERT_TRUE(send_->isend(out.data(), out.size(), 3, nullptr, &s).ok());
    const Clock::time_point deadline = Clock::now() + milliseconds(10000);
    ASSERT_TRUE(wait(*r, deadline).ok());
    ASSERT_TRUE(wait(*s, deadline).ok());
    EXPECT_EQ(in, out);
  }
  void TearDown() override {
    send_.reset();
    recv_.reset();
    listener_.reset();
    transport_.reset();
    fake::Stats stats = fake::stats();
    const Clock::time_point deadline = Clock::now() + milliseconds(2000);
    while ((stats.live_qps > 0 || stats.live_mrs > 0) && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(1));
      stats = fake::stats();
    }
    EXPECT_EQ(stats.violation, "");
    EXPECT_EQ(stats.live_mrs, 0);
    EXPECT_EQ(stats.live_qps, 0);
  }

  std::shared_ptr<const VerbsApi> api_;
  std::unique_ptr<Transport> transport_;
  std::unique_ptr<Listener> listener_;
  std::unique_ptr<SendConnection> send_;
  std::unique_ptr<RecvConnection> recv_;
};

TEST_F(IbGdrTest, TheProbeTurnsGpuDirectOnAndTheSettingOff) {
  make(GdrMode::kAuto);
  DeviceInfo info;
  ASSERT_TRUE(transport_->device_info(0, &info).ok());
  EXPECT_TRUE(info.cuda_memory);
  EXPECT_TRUE(info.dmabuf);
  make(GdrMode::kOff);
  ASSERT_TRUE(transport_->device_info(0, &info).ok());
  EXPECT_FALSE(info.cuda_memory);
  EXPECT_FALSE(info.dmabuf);
}

TEST_F(IbGdrTest, AGpuReceiveIsFlushedByOneReadAndAHostOneNeedsNone) {
  make(GdrMode::kAuto);
  connect_pair();
  std::vector<uint8_t> out(5000), gpu(5000, 0), host(5000, 0);
  std::iota(out.begin(), out.end(), static_cast<uint8_t>(9));
  std::unique_ptr<MemoryRegion> gpu_mr, host_mr;
  ASSERT_TRUE(recv_->register_memory(gpu.data(), gpu.size(), MemoryKind::kCuda, &gpu_mr).ok());
  ASSERT_TRUE(recv_->register_memory(host.data(), host.size(), MemoryKind::kHost, &host_mr).ok());
  transfer(out, gpu, gpu_mr.get());
  transfer(out, host, host_mr.get());
  std::unique_ptr<Request> flush;
  ASSERT_TRUE(recv_->iflush(host.data(), host.size(), host_mr.get(), &flush).ok());
  EXPECT_EQ(flush, nullptr);  // host memory: nothing to do
  ASSERT_TRUE(recv_->iflush(gpu.data(), 0, gpu_mr.get(), &flush).ok());
  EXPECT_EQ(flush, nullptr);  // nothing received
  const int reads = fake::stats().rdma_reads;
  for (int i = 0; i < 40; ++i) {  // more than the flush QP's depth: each completes in turn
    ASSERT_TRUE(recv_->iflush(gpu.data(), gpu.size(), gpu_mr.get(), &flush).ok());
    ASSERT_NE(flush, nullptr);
    ASSERT_TRUE(wait(*flush, Clock::now() + milliseconds(5000)).ok());
  }
  EXPECT_EQ(fake::stats().rdma_reads - reads, 40);
  transfer(out, gpu, gpu_mr.get());  // the connection still works after flushes
}

TEST_F(IbGdrTest, DmabufRegistrationAndItsRefusals) {
  make(GdrMode::kAuto);
  connect_pair();
  std::vector<uint8_t> out(3000), in(3000, 0);
  std::iota(out.begin(), out.end(), static_cast<uint8_t>(1));
  const int fd = memfd_create("gp_fake_dmabuf", 0);
  ASSERT_GE(fd, 0);
  std::unique_ptr<MemoryRegion> mr;
  ASSERT_TRUE(recv_->register_dmabuf(in.data(), in.size(), 0, fd, &mr).ok());
  EXPECT_GE(fake::stats().dmabuf_mrs, 1);
  transfer(out, in, mr.get());
  std::unique_ptr<Request> flush;
  ASSERT_TRUE(recv_->iflush(in.data(), in.size(), mr.get(), &flush).ok());
  ASSERT_NE(flush, nullptr);  // dma-buf memory is GPU memory
  ASSERT_TRUE(wait(*flush, Clock::now() + milliseconds(5000)).ok());
  std::unique_ptr<MemoryRegion> bad;
  EXPECT_EQ(recv_->register_dmabuf(in.data(), in.size(), 0, -1, &bad).code(),
            Code::kInvalidArgument);
  EXPECT_EQ(send_->register_dmabuf(in.data(), 0, 0, fd, &bad).code(), Code::kInvalidArgument);
  mr.reset();
  close(fd);
}

TEST_F(IbGdrTest, OffRefusesCudaAndDmabuf) {
  make(GdrMode::kOff);
  connect_pair();
  uint8_t byte = 0;
  std::unique_ptr<MemoryRegion> mr;
  EXPECT_EQ(recv_->register_memory(&byte, 1, MemoryKind::kCuda, &mr).code(), Code::kUnsupported);
  EXPECT_EQ(recv_->register_dmabuf(&byte, 1, 0, 0, &mr).code(), Code::kUnsupported);
}

}  // namespace
}  // namespace gradpack::transport
