// SPDX-License-Identifier: Apache-2.0
// Unit tests of the net face's internals (net_plugin/plugin_api.h, net_plugin/net_v11.h), linked
// directly: the handle's magic and checksum, properties, init/finalize reference counting, and a
// loopback connection driven from one thread the way NCCL's service and progress threads would.
// The dlopen-level conformance checks are the harness's (tests/net_plugin/harness.*); the device
// choice and the device table are tested where they live (tests/transport/open_test.cc,
// tests/topology/devices_test.cc).
#include <dirent.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "net_plugin/net_v11.h"
#include "net_plugin/plugin_api.h"

namespace gradpack::plugin {
namespace {

using Clock = std::chrono::steady_clock;

// Loopback only, TCP only: settings are read once, at the first init, so this runs before any.
const bool kLoopbackOnly = [] {
  setenv("GRADPACK_IFNAME", "=lo", 1);
  setenv("GRADPACK_TRANSPORT", "tcp", 1);
  return true;
}();

std::atomic<int> g_warnings{0};
void counting_logger(ncclDebugLogLevel level, unsigned long, const char*, int, const char*, ...) {
  if (level == NCCL_LOG_WARN) ++g_warnings;
}

int thread_count() {
  int n = 0;
  if (DIR* dir = opendir("/proc/self/task")) {
    while (dirent* e = readdir(dir)) n += e->d_name[0] != '.';
    closedir(dir);
  }
  return n;
}

// A ctx for the duration of a test.
class NetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(kLoopbackOnly);
    ASSERT_EQ(net::init(&ctx_, 1, nullptr, counting_logger, nullptr), ncclSuccess);
    ASSERT_NE(ctx_, nullptr);
  }
  void TearDown() override { EXPECT_EQ(net::finalize(ctx_), ncclSuccess); }

  // Connects a send comm to a receive comm on device 0, calling connect and accept alternately
  // from this one thread; closes the listener right after accept.
  void connect_pair(void** send_comm, void** recv_comm) {
    char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
    void* listen_comm = nullptr;
    ASSERT_EQ(net::listen(ctx_, 0, handle, &listen_comm), ncclSuccess);
    ASSERT_NE(listen_comm, nullptr);
    *send_comm = *recv_comm = nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    ncclNetDeviceHandle_v11_t* dev_handle = nullptr;
    while ((*send_comm == nullptr || *recv_comm == nullptr) && Clock::now() < deadline) {
      if (*recv_comm == nullptr) {
        // Alternate the device-handle argument between a NULL pointer and a pointer to NULL.
        ASSERT_EQ(net::accept(listen_comm, recv_comm, *send_comm ? nullptr : &dev_handle),
                  ncclSuccess);
      }
      if (*send_comm == nullptr) {
        char copy[NCCL_NET_HANDLE_MAXSIZE];
        std::memcpy(copy, handle, sizeof copy);  // NCCL passes its own copy each time
        ASSERT_EQ(net::connect(ctx_, 0, copy, send_comm, &dev_handle), ncclSuccess);
      }
    }
    EXPECT_EQ(dev_handle, nullptr) << "a host plugin never writes a device handle";
    ASSERT_NE(*send_comm, nullptr) << "connect did not complete";
    ASSERT_NE(*recv_comm, nullptr) << "accept did not complete";
    ASSERT_EQ(net::close_listen(listen_comm), ncclSuccess);
  }

  // Polls until done; returns the first non-success result (or ncclSuccess with *size set).
  static ncclResult_t wait(void* request, int* size) {
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    int done = 0;
    while (Clock::now() < deadline) {
      int sizes[1] = {-1};
      ncclResult_t result = net::test(request, &done, sizes);
      if (result != ncclSuccess) return result;
      if (done) {
        if (size != nullptr) *size = sizes[0];
        return ncclSuccess;
      }
    }
    ADD_FAILURE() << "request did not complete within 20 s";
    return ncclInternalError;
  }

  void* ctx_ = nullptr;
};

// ---- handles --------------------------------------------------------------------------------

transport::Handle sample_inner() {
  transport::Handle inner;
  for (size_t i = 0; i < 48; ++i) inner.bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  return inner;
}

TEST(PluginHandle, RoundTrips) {
  uint8_t wire[kPluginHandleBytes];
  ASSERT_TRUE(encode_plugin_handle(Backend::kIb, sample_inner(), wire).ok());
  Backend backend = Backend::kTcp;
  transport::Handle inner;
  ASSERT_TRUE(decode_plugin_handle(wire, &backend, &inner).ok());
  EXPECT_EQ(backend, Backend::kIb);
  EXPECT_EQ(inner.bytes, sample_inner().bytes);
}

TEST(PluginHandle, RefusesATransportHandleTooLongToWrap) {
  transport::Handle inner = sample_inner();
  inner.bytes[kPluginHandleBytes - 1] = 1;
  uint8_t wire[kPluginHandleBytes];
  EXPECT_EQ(encode_plugin_handle(Backend::kTcp, inner, wire).code(), Code::kInternal);
}

TEST(PluginHandle, RefusesEveryFlippedBitGarbageAndTruncation) {
  uint8_t wire[kPluginHandleBytes];
  ASSERT_TRUE(encode_plugin_handle(Backend::kTcp, sample_inner(), wire).ok());
  Backend backend;
  transport::Handle inner;
  for (size_t byte = 0; byte < kPluginHandleBytes; ++byte) {
    for (int bit = 0; bit < 8; ++bit) {
      uint8_t bad[kPluginHandleBytes];
      std::memcpy(bad, wire, sizeof bad);
      bad[byte] ^= static_cast<uint8_t>(1u << bit);
      EXPECT_EQ(decode_plugin_handle(bad, &backend, &inner).code(), Code::kInvalidArgument)
          << "byte " << byte << " bit " << bit;
    }
  }
  uint8_t garbage[kPluginHandleBytes];
  uint32_t x = 12345;
  for (auto& b : garbage) b = static_cast<uint8_t>((x = x * 1103515245u + 12345u) >> 24);
  EXPECT_FALSE(decode_plugin_handle(garbage, &backend, &inner).ok());
  uint8_t zeros[kPluginHandleBytes] = {};
  EXPECT_FALSE(decode_plugin_handle(zeros, &backend, &inner).ok());
  for (size_t keep : {4, 12, 16, 32, 40}) {  // copies cut short (the rest zero)
    uint8_t cut[kPluginHandleBytes] = {};
    std::memcpy(cut, wire, keep);
    EXPECT_FALSE(decode_plugin_handle(cut, &backend, &inner).ok()) << "kept " << keep;
  }
  EXPECT_FALSE(decode_plugin_handle(nullptr, &backend, &inner).ok());
}

TEST_F(NetTest, ConnectRefusesBadHandlesWithoutDialling) {
  char handle[NCCL_NET_HANDLE_MAXSIZE];
  void* listen_comm = nullptr;
  ASSERT_EQ(net::listen(ctx_, 0, handle, &listen_comm), ncclSuccess);
  std::vector<std::vector<char>> bad;
  bad.emplace_back(handle, handle + sizeof handle);
  bad.back()[70] ^= 0x10;  // a flipped byte in the transport part
  bad.emplace_back(handle, handle + sizeof handle);
  bad.back()[20] ^= 0x01;  // in the address
  bad.emplace_back(sizeof handle, 0);
  std::memcpy(bad.back().data(), handle, 24);  // truncated
  bad.emplace_back(sizeof handle, 'x');        // garbage
  for (auto& bytes : bad) {
    int before = g_warnings;
    void* send_comm = reinterpret_cast<void*>(0x1);
    ncclResult_t result = net::connect(ctx_, 0, bytes.data(), &send_comm, nullptr);
    EXPECT_EQ(result, ncclInvalidArgument);
    EXPECT_EQ(send_comm, nullptr);
    EXPECT_GT(g_warnings.load(), before) << "a refused handle is explained by a WARN";
  }
  // Nothing reached the listener: accept keeps finding no connection.
  for (int i = 0; i < 50; ++i) {
    void* recv_comm = nullptr;
    ASSERT_EQ(net::accept(listen_comm, &recv_comm, nullptr), ncclSuccess);
    EXPECT_EQ(recv_comm, nullptr);
  }
  EXPECT_EQ(net::close_listen(listen_comm), ncclSuccess);
}

// ---- properties and lifetime ------------------------------------------------------------------

TEST_F(NetTest, PropertiesOfEveryDeviceAreValid) {
  int ndev = 0;
  ASSERT_EQ(net::devices(&ndev), ncclSuccess);
  ASSERT_GT(ndev, 0);
  std::set<std::string> names;
  for (int d = 0; d < ndev; ++d) {
    ncclNetProperties_v11_t p;
    std::memset(&p, 0xa5, sizeof p);
    ASSERT_EQ(net::get_properties(d, &p), ncclSuccess);
    ASSERT_NE(p.name, nullptr);
    EXPECT_TRUE(names.insert(p.name).second) << "duplicate name " << p.name;
    EXPECT_EQ(p.guid, static_cast<uint64_t>(d));
    EXPECT_EQ(p.ptrSupport, NCCL_PTR_HOST);
    EXPECT_GT(p.speed, 0);
    EXPECT_EQ(p.latency, 0.0f);
    EXPECT_EQ(p.maxComms, 65536);
    EXPECT_EQ(p.maxRecvs, 1);
    EXPECT_EQ(p.netDeviceType, NCCL_NET_DEVICE_HOST);
    EXPECT_EQ(p.netDeviceVersion, 0);
    EXPECT_EQ(p.vProps.ndevs, 1);
    EXPECT_EQ(p.vProps.devs[0], d);
    EXPECT_EQ(p.maxP2pBytes, NCCL_MAX_NET_SIZE_BYTES);
    EXPECT_EQ(p.maxCollBytes, NCCL_MAX_NET_SIZE_BYTES);
    EXPECT_EQ(p.maxMultiRequestSize, 1);
    if (p.pciPath != nullptr) {  // a PCI function's directory: NCCL reads its last component
      EXPECT_EQ(std::string(p.pciPath).rfind("/sys/devices/pci", 0), 0u) << p.pciPath;
      EXPECT_EQ(std::strlen(std::strrchr(p.pciPath, '/') + 1), 12u) << p.pciPath;
    }
    // Stable: the same name pointer contents on a second call.
    ncclNetProperties_v11_t again{};
    ASSERT_EQ(net::get_properties(d, &again), ncclSuccess);
    EXPECT_STREQ(again.name, p.name);
  }
  ncclNetProperties_v11_t p{};
  EXPECT_NE(net::get_properties(ndev, &p), ncclSuccess);
  EXPECT_NE(net::get_properties(-1, &p), ncclSuccess);
}

TEST(NetLifetime, InitFinalizeAreReferenceCountedAndJoinThreads) {
  ASSERT_TRUE(kLoopbackOnly);
  ASSERT_EQ(reference_count(), 0);
  const int threads_before = thread_count();
  void* a = nullptr;
  void* b = nullptr;
  ASSERT_EQ(net::init(&a, 1, nullptr, counting_logger, nullptr), ncclSuccess);
  ASSERT_EQ(net::init(&b, 2, nullptr, counting_logger, nullptr), ncclSuccess);
  EXPECT_EQ(reference_count(), 2);
  EXPECT_EQ(net::finalize(nullptr), ncclSuccess);
  EXPECT_EQ(reference_count(), 2);

  // Use the transport so that it starts its threads, then close everything.
  char handle[NCCL_NET_HANDLE_MAXSIZE];
  void* listen_comm = nullptr;
  ASSERT_EQ(net::listen(a, 0, handle, &listen_comm), ncclSuccess);
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  while ((!send_comm || !recv_comm) && Clock::now() < deadline) {
    if (!send_comm) {
      ASSERT_EQ(net::connect(b, 0, handle, &send_comm, nullptr), ncclSuccess);
    }
    if (!recv_comm) {
      ASSERT_EQ(net::accept(listen_comm, &recv_comm, nullptr), ncclSuccess);
    }
  }
  ASSERT_TRUE(send_comm && recv_comm);
  EXPECT_EQ(net::close_listen(listen_comm), ncclSuccess);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);

  EXPECT_EQ(net::finalize(a), ncclSuccess);
  EXPECT_EQ(reference_count(), 1);
  EXPECT_NE(net::finalize(a), ncclSuccess) << "a second finalize of one ctx is refused";
  EXPECT_EQ(reference_count(), 1);
  EXPECT_EQ(net::finalize(b), ncclSuccess);
  EXPECT_EQ(reference_count(), 0);
  EXPECT_EQ(thread_count(), threads_before) << "threads left running after the last finalize";
  int ndev = 0;
  EXPECT_NE(net::devices(&ndev), ncclSuccess) << "devices after the last finalize";

  // A failed init takes no reference, and finalize of what it left (NULL) is fine.
  EXPECT_EQ(net::init(nullptr, 3, nullptr, counting_logger, nullptr), ncclInternalError);
  EXPECT_EQ(reference_count(), 0);
  EXPECT_EQ(net::finalize(nullptr), ncclSuccess);
  EXPECT_EQ(reference_count(), 0);

  // And the plugin starts again after reaching zero (NCCL's dlclose/dlopen without an unload).
  void* again = nullptr;
  ASSERT_EQ(net::init(&again, 4, nullptr, counting_logger, nullptr), ncclSuccess);
  EXPECT_EQ(net::devices(&ndev), ncclSuccess);
  EXPECT_GT(ndev, 0);
  EXPECT_EQ(net::finalize(again), ncclSuccess);
}

// ---- data path --------------------------------------------------------------------------------

TEST_F(NetTest, LoopbackMessagesOfZeroOneAndManyBytesWithTags) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  const size_t kRegion = 4u << 20;
  std::vector<uint8_t> src(kRegion), dst(kRegion, 0);
  for (size_t i = 0; i < kRegion; ++i) src[i] = static_cast<uint8_t>(i * 131 + 7);
  void* smr = nullptr;
  void* rmr = nullptr;
  ASSERT_EQ(net::reg_mr(send_comm, src.data(), kRegion, NCCL_PTR_HOST, &smr), ncclSuccess);
  ASSERT_EQ(net::reg_mr(recv_comm, dst.data(), kRegion, NCCL_PTR_HOST, &rmr), ncclSuccess);
  // The same region again on the same comm, and CUDA memory refused.
  void* smr2 = nullptr;
  ASSERT_EQ(net::reg_mr(send_comm, src.data() + 3, 1000, NCCL_PTR_HOST, &smr2), ncclSuccess);
  void* cuda_mr = nullptr;
  EXPECT_EQ(net::reg_mr(send_comm, src.data(), 64, NCCL_PTR_CUDA, &cuda_mr), ncclInternalError);

  const size_t sizes[] = {0, 1, 1u << 20, 12345};
  size_t offset = 0;
  int tag = 7;
  for (size_t size : sizes) {
    void* rreq = reinterpret_cast<void*>(0x1);  // NCCL's optional-completion hint
    void* data[1] = {dst.data() + offset};
    size_t capacity[1] = {size + 100};
    int tags[1] = {tag};
    void* mhandles[1] = {rmr};
    ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, mhandles, nullptr, &rreq),
              ncclSuccess);
    ASSERT_NE(rreq, nullptr);
    ASSERT_NE(rreq, reinterpret_cast<void*>(0x1)) << "irecv must overwrite the 0x1 hint";
    void* sreq = nullptr;
    ASSERT_EQ(net::isend(send_comm, src.data() + offset, size, tag, smr, nullptr, &sreq),
              ncclSuccess);
    ASSERT_NE(sreq, nullptr);
    int sent = -1, received = -1;
    ASSERT_EQ(wait(sreq, &sent), ncclSuccess);
    ASSERT_EQ(wait(rreq, &received), ncclSuccess);
    EXPECT_EQ(sent, static_cast<int>(size));
    EXPECT_EQ(received, static_cast<int>(size));
    EXPECT_EQ(std::memcmp(dst.data() + offset, src.data() + offset, size), 0) << size;
    offset += 64;
    ++tag;
  }
  void* flush = reinterpret_cast<void*>(0x1);
  void* fdata[1] = {dst.data()};
  int fsizes[1] = {1};
  void* fmh[1] = {rmr};
  EXPECT_EQ(net::iflush(recv_comm, 1, fdata, fsizes, fmh, &flush), ncclSuccess);
  EXPECT_EQ(flush, nullptr);

  EXPECT_EQ(net::dereg_mr(send_comm, smr2), ncclSuccess);
  EXPECT_EQ(net::dereg_mr(send_comm, smr), ncclSuccess);
  EXPECT_EQ(net::dereg_mr(recv_comm, rmr), ncclSuccess);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
}

TEST_F(NetTest, AMessageLargerThanThePostedReceiveIsAnError) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  std::vector<uint8_t> src(4096, 0x5a), dst(64 + 16, 0);
  void* rreq = nullptr;
  void* data[1] = {dst.data()};
  size_t capacity[1] = {64};
  int tags[1] = {1};
  ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, nullptr, nullptr, &rreq), ncclSuccess);
  void* sreq = nullptr;
  ASSERT_EQ(net::isend(send_comm, src.data(), src.size(), 1, nullptr, nullptr, &sreq), ncclSuccess);
  int before = g_warnings;
  ncclResult_t result = wait(rreq, nullptr);
  EXPECT_TRUE(result == ncclInvalidUsage || result == ncclSystemError || result == ncclRemoteError)
      << "got " << result;
  EXPECT_GT(g_warnings.load(), before);
  for (size_t i = 64; i < dst.size(); ++i) ASSERT_EQ(dst[i], 0) << "wrote past the buffer";
  // Closing with the send still in flight is safe.
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
}

TEST_F(NetTest, TagMismatchIsAnError) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  char src[8] = "abcdefg", dst[8] = {};
  void* rreq = nullptr;
  void* data[1] = {dst};
  size_t capacity[1] = {8};
  int tags[1] = {2};
  ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, nullptr, nullptr, &rreq), ncclSuccess);
  void* sreq = nullptr;
  ASSERT_EQ(net::isend(send_comm, src, 8, 3, nullptr, nullptr, &sreq), ncclSuccess);
  EXPECT_NE(wait(rreq, nullptr), ncclSuccess);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
}

TEST_F(NetTest, TheThirtyThirdRequestIsNullUntilOneCompletes) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  constexpr int kMax = NCCL_NET_MAX_REQUESTS;
  std::vector<int> src(kMax + 1), dst(kMax + 1, -1);
  for (int i = 0; i <= kMax; ++i) src[static_cast<size_t>(i)] = 1000 + i;
  std::vector<void*> sreqs;
  for (int i = 0; i < kMax; ++i) {
    void* req = nullptr;
    ASSERT_EQ(
        net::isend(send_comm, &src[static_cast<size_t>(i)], sizeof(int), 5, nullptr, nullptr, &req),
        ncclSuccess);
    ASSERT_NE(req, nullptr) << i;
    sreqs.push_back(req);
  }
  void* extra = reinterpret_cast<void*>(0x1);
  ASSERT_EQ(net::isend(send_comm, &src[kMax], sizeof(int), 5, nullptr, nullptr, &extra),
            ncclSuccess);
  EXPECT_EQ(extra, nullptr) << "the 33rd send must come back NULL (NCCL retries)";

  std::vector<void*> rreqs;
  for (int i = 0; i <= kMax; ++i) {
    void* req = nullptr;
    void* data[1] = {&dst[static_cast<size_t>(i)]};
    size_t capacity[1] = {sizeof(int)};
    int tags[1] = {5};
    ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, nullptr, nullptr, &req), ncclSuccess);
    if (i < kMax) {
      ASSERT_NE(req, nullptr);
      rreqs.push_back(req);
    } else {
      EXPECT_EQ(req, nullptr) << "the 33rd receive must come back NULL";
    }
  }
  // Complete the oldest send, then the retried one is accepted.
  ASSERT_EQ(wait(sreqs.front(), nullptr), ncclSuccess);
  ASSERT_EQ(net::isend(send_comm, &src[kMax], sizeof(int), 5, nullptr, nullptr, &extra),
            ncclSuccess);
  ASSERT_NE(extra, nullptr);
  sreqs.erase(sreqs.begin());
  sreqs.push_back(extra);
  ASSERT_EQ(wait(rreqs.front(), nullptr), ncclSuccess);
  void* last = nullptr;
  void* data[1] = {&dst[kMax]};
  size_t capacity[1] = {sizeof(int)};
  int tags[1] = {5};
  ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, nullptr, nullptr, &last), ncclSuccess);
  ASSERT_NE(last, nullptr);
  rreqs.erase(rreqs.begin());
  rreqs.push_back(last);
  for (void* r : sreqs) ASSERT_EQ(wait(r, nullptr), ncclSuccess);
  for (void* r : rreqs) ASSERT_EQ(wait(r, nullptr), ncclSuccess);
  EXPECT_EQ(dst, src);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
}

TEST_F(NetTest, APeerThatClosesMidTransferFailsTheSurvivor) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  std::vector<uint8_t> dst(1 << 20);
  void* rreq = nullptr;
  void* data[1] = {dst.data()};
  size_t capacity[1] = {dst.size()};
  int tags[1] = {0};
  ASSERT_EQ(net::irecv(recv_comm, 1, data, capacity, tags, nullptr, nullptr, &rreq), ncclSuccess);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  ncclResult_t result = wait(rreq, nullptr);
  EXPECT_TRUE(result == ncclRemoteError || result == ncclSystemError) << "got " << result;
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
}

TEST_F(NetTest, MisuseIsReportedNotFollowed) {
  void* send_comm = nullptr;
  void* recv_comm = nullptr;
  ASSERT_NO_FATAL_FAILURE(connect_pair(&send_comm, &recv_comm));
  char buf[16];
  void* data[2] = {buf, buf + 8};
  size_t sizes[2] = {8, 8};
  int tags[2] = {0, 0};
  void* req = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(net::irecv(recv_comm, 2, data, sizes, tags, nullptr, nullptr, &req), ncclInternalError);
  EXPECT_EQ(req, nullptr);
  EXPECT_NE(net::isend(recv_comm, buf, 1, 0, nullptr, nullptr, &req), ncclSuccess);
  EXPECT_NE(net::irecv(send_comm, 1, data, sizes, tags, nullptr, nullptr, &req), ncclSuccess);
  int done = 0;
  int fake_request[64] = {};
  EXPECT_EQ(net::test(fake_request, &done, nullptr), ncclInternalError);
  EXPECT_EQ(net::close_send(send_comm), ncclSuccess);
  EXPECT_EQ(net::close_recv(recv_comm), ncclSuccess);
}

}  // namespace
}  // namespace gradpack::plugin
