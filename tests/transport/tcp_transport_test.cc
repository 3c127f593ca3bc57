// SPDX-License-Identifier: Apache-2.0
// The TCP transport over loopback: message round trips with 1 and 4 sockets, ordering, tag and
// capacity errors, crossed connects, stray clients, peer death and the interface filter.
#include "transport/tcp/tcp_transport.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

#include "common/affinity.h"
#include "common/log.h"
#include "transport/tcp/connection.h"
#include "transport/tcp/device.h"
#include "transport/tcp/listener.h"

namespace gradpack::transport {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

std::unique_ptr<Transport> make_lo(int nsocks, std::chrono::milliseconds hello_timeout = 5000ms) {
  TcpOptions options;
  options.nsocks = nsocks;
  options.ifname = "=lo";
  options.hello_timeout = hello_timeout;
  std::unique_ptr<Transport> transport;
  Status status = make_tcp_transport(options, &transport);
  EXPECT_TRUE(status.ok()) << status.to_string();
  return transport;
}

struct Pair {
  std::unique_ptr<Listener> listener;
  std::unique_ptr<SendConnection> send;
  std::unique_ptr<RecvConnection> recv;
};

Status accept_one(Listener& listener, std::unique_ptr<RecvConnection>* out,
                  std::chrono::milliseconds timeout = 5000ms) {
  auto deadline = Clock::now() + timeout;
  while (*out == nullptr && Clock::now() < deadline) {
    GP_RETURN_IF_ERROR(listener.accept(100ms, out));
  }
  if (*out == nullptr) return Status(Code::kTimeout, "no connection accepted");
  return OkStatus();
}

Pair connect_pair(Transport& transport, uint64_t hello = 7) {
  Pair pair;
  Handle handle;
  Status status = transport.listen(0, &handle, &pair.listener);
  EXPECT_TRUE(status.ok()) << status.to_string();
  if (!status.ok()) return pair;
  status = transport.connect(0, handle, hello, 5000ms, &pair.send);
  EXPECT_TRUE(status.ok()) << status.to_string();
  status = accept_one(*pair.listener, &pair.recv);
  EXPECT_TRUE(status.ok()) << status.to_string();
  if (pair.recv) {
    EXPECT_EQ(pair.recv->hello(), hello);
  }
  return pair;
}

Clock::time_point in(std::chrono::milliseconds d) { return Clock::now() + d; }

std::vector<uint8_t> pattern(size_t size, uint32_t seed) {
  std::vector<uint8_t> out(size);
  uint32_t x = seed * 2654435761u + 1;
  for (auto& b : out) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return out;
}

// Captures warnings of the net subsystem.
std::mutex g_log_mu;
std::vector<std::string> g_log;
void capture(LogLevel level, Subsys subsys, const char* message) {
  if (level <= LogLevel::kWarn && subsys == Subsys::kNet) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_log.emplace_back(message);
  }
}
bool logged(const std::string& needle) {
  std::lock_guard<std::mutex> lock(g_log_mu);
  for (const auto& line : g_log) {
    if (line.find(needle) != std::string::npos) return true;
  }
  return false;
}

TEST(TcpTransport, HandleFitsAndDecodes) {
  static_assert(sizeof(Handle) <= 128);
  auto transport = make_lo(1);
  ASSERT_TRUE(transport);
  EXPECT_STREQ(transport->name(), "tcp");
  ASSERT_EQ(transport->device_count(), 1);
  DeviceInfo info;
  ASSERT_TRUE(transport->device_info(0, &info).ok());
  EXPECT_EQ(info.name, "lo");
  EXPECT_GT(info.speed_mbps, 0);
  Handle handle;
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport->listen(0, &handle, &listener).ok());
  tcp::HandleData data;
  ASSERT_TRUE(tcp::decode_handle(handle, &data).ok());
  EXPECT_EQ(data.address.ss_family, AF_INET);
  EXPECT_NE(reinterpret_cast<sockaddr_in*>(&data.address)->sin_port, 0);
  Handle other;
  std::unique_ptr<Listener> listener2;
  ASSERT_TRUE(transport->listen(0, &other, &listener2).ok());
  tcp::HandleData data2;
  ASSERT_TRUE(tcp::decode_handle(other, &data2).ok());
  EXPECT_NE(data.key, data2.key);  // every listener has its own random key
  Handle garbage;
  EXPECT_EQ(tcp::decode_handle(garbage, &data).code(), Code::kInvalidArgument);
}

TEST(TcpTransport, RegisterMemory) {
  auto transport = make_lo(1);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  std::vector<uint8_t> buffer(64);
  std::unique_ptr<MemoryRegion> mr;
  EXPECT_TRUE(
      pair.send->register_memory(buffer.data(), buffer.size(), MemoryKind::kHost, &mr).ok());
  EXPECT_TRUE(mr);
  EXPECT_EQ(pair.recv->register_memory(buffer.data(), buffer.size(), MemoryKind::kCuda, &mr).code(),
            Code::kUnsupported);
}

class RoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(RoundTrip, SizesArriveIntact) {
  auto transport = make_lo(GetParam());
  Pair pair = connect_pair(*transport, 42);
  ASSERT_TRUE(pair.send && pair.recv);
  const size_t sizes[] = {0, 1, (size_t{1} << 20) + 7, size_t{64} << 20, 100000, 3};
  uint32_t seed = 1;
  for (size_t size : sizes) {
    std::vector<uint8_t> out = pattern(size, seed);
    std::vector<uint8_t> got(size + 16, 0xee);
    std::unique_ptr<Request> rreq, sreq;
    ASSERT_TRUE(pair.recv->irecv(got.data(), got.size(), seed, nullptr, &rreq).ok());
    ASSERT_TRUE(pair.send->isend(out.data(), out.size(), seed, nullptr, &sreq).ok());
    size_t sent = 1, received = 1;
    ASSERT_TRUE(wait(*sreq, in(20000ms), &sent).ok()) << size;
    Status status = wait(*rreq, in(20000ms), &received);
    ASSERT_TRUE(status.ok()) << size << " " << status.to_string();
    EXPECT_EQ(sent, size);
    EXPECT_EQ(received, size);
    EXPECT_TRUE(std::equal(out.begin(), out.end(), got.begin())) << size;
    EXPECT_EQ(got[size], 0xee) << "wrote past the message";
    ++seed;
  }
}

INSTANTIATE_TEST_SUITE_P(Sockets, RoundTrip, ::testing::Values(1, 4));

TEST(TcpTransport, ManyQueuedMessagesCompleteInOrder) {
  auto transport = make_lo(4);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  // Mixed sizes so that small messages (one socket) follow striped ones (four sockets).
  constexpr int kCount = 200;
  std::vector<std::vector<uint8_t>> out(kCount), got(kCount);
  std::vector<std::unique_ptr<Request>> sends(kCount), recvs(kCount);
  for (int i = 0; i < kCount; ++i) {
    size_t size = (i % 7 == 0) ? 300000 + i : static_cast<size_t>(i * 13 % 200);
    out[i] = pattern(size, i);
    got[i].assign(size, 0);
    ASSERT_TRUE(pair.recv->irecv(got[i].data(), size, i, nullptr, &recvs[i]).ok());
  }
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(pair.send->isend(out[i].data(), out[i].size(), i, nullptr, &sends[i]).ok());
  }
  // Whenever message i is done, every earlier one is too.
  auto deadline = in(20000ms);
  for (int i = kCount - 1; i >= 0; --i) {
    ASSERT_TRUE(wait(*recvs[i], deadline).ok()) << i;
    for (int j = 0; j < i; ++j) {
      bool done = false;
      size_t bytes = 0;
      ASSERT_TRUE(recvs[j]->test(&done, &bytes).ok());
      ASSERT_TRUE(done) << j << " not done but " << i << " is";
    }
    break;
  }
  for (int i = 0; i < kCount; ++i) {
    ASSERT_TRUE(wait(*sends[i], deadline).ok());
    EXPECT_EQ(out[i], got[i]) << i;
  }
}

TEST(TcpTransport, TagMismatchIsCorruptData) {
  auto transport = make_lo(1);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  std::vector<uint8_t> buffer(100);
  std::unique_ptr<Request> rreq, sreq;
  ASSERT_TRUE(pair.recv->irecv(buffer.data(), buffer.size(), 5, nullptr, &rreq).ok());
  ASSERT_TRUE(pair.send->isend(buffer.data(), 10, 6, nullptr, &sreq).ok());
  Status status = wait(*rreq, in(5000ms));
  EXPECT_EQ(status.code(), Code::kCorruptData) << status.to_string();
  EXPECT_NE(status.message().find("tag 6"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("tag 5"), std::string::npos) << status.message();
  // The connection stays failed.
  std::unique_ptr<Request> again;
  EXPECT_EQ(pair.recv->irecv(buffer.data(), buffer.size(), 6, nullptr, &again).code(),
            Code::kCorruptData);
  // The receiver shut the stream down, so the sender learns it instead of hanging.
  std::vector<uint8_t> big(size_t{16} << 20);
  std::unique_ptr<Request> stuck;
  Status send_status = pair.send->isend(big.data(), big.size(), 6, nullptr, &stuck);
  if (send_status.ok()) send_status = wait(*stuck, in(5000ms));
  EXPECT_EQ(send_status.code(), Code::kRemote) << send_status.to_string();
}

TEST(TcpTransport, MessageLargerThanCapacityIsCorruptData) {
  auto transport = make_lo(1);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  std::vector<uint8_t> buffer(1000);
  std::unique_ptr<Request> rreq, sreq;
  ASSERT_TRUE(pair.recv->irecv(buffer.data(), 99, 1, nullptr, &rreq).ok());
  ASSERT_TRUE(pair.send->isend(buffer.data(), 100, 1, nullptr, &sreq).ok());
  Status status = wait(*rreq, in(5000ms));
  EXPECT_EQ(status.code(), Code::kCorruptData) << status.to_string();
  EXPECT_NE(status.message().find("100"), std::string::npos) << status.message();
  EXPECT_NE(status.message().find("99"), std::string::npos) << status.message();
}

TEST(TcpTransport, CrossedConnectsBeforeAcceptDoNotDeadlock) {
  auto a = make_lo(2);
  auto b = make_lo(2);
  Handle ha, hb;
  std::unique_ptr<Listener> la, lb;
  ASSERT_TRUE(a->listen(0, &ha, &la).ok());
  ASSERT_TRUE(b->listen(0, &hb, &lb).ok());
  // Both "ranks" connect first, from two threads, and only then accept.
  std::unique_ptr<SendConnection> a_to_b, b_to_a;
  std::unique_ptr<RecvConnection> a_from_b, b_from_a;
  Status sa, sb;
  std::thread ta([&] {
    sa = a->connect(0, hb, 0, 5000ms, &a_to_b);
    if (sa.ok()) sa = accept_one(*la, &a_from_b);
  });
  std::thread tb([&] {
    sb = b->connect(0, ha, 1, 5000ms, &b_to_a);
    if (sb.ok()) sb = accept_one(*lb, &b_from_a);
  });
  ta.join();
  tb.join();
  ASSERT_TRUE(sa.ok()) << sa.to_string();
  ASSERT_TRUE(sb.ok()) << sb.to_string();
  EXPECT_EQ(a_from_b->hello(), 1u);
  EXPECT_EQ(b_from_a->hello(), 0u);
  uint32_t x = 0xabcd, y = 0;
  std::unique_ptr<Request> s, r;
  ASSERT_TRUE(b_from_a->irecv(&y, 4, 3, nullptr, &r).ok());
  ASSERT_TRUE(a_to_b->isend(&x, 4, 3, nullptr, &s).ok());
  ASSERT_TRUE(wait(*r, in(5000ms)).ok());
  EXPECT_EQ(y, x);
}

TEST(TcpTransport, ConnectionsOfOneDeviceWorkFromDistinctThreads) {
  auto transport = make_lo(2);
  constexpr int kPairs = 4;
  std::vector<Pair> pairs;
  for (int i = 0; i < kPairs; ++i) pairs.push_back(connect_pair(*transport, i));
  std::vector<std::thread> threads;
  std::vector<int> ok(kPairs, 0);
  for (int i = 0; i < kPairs; ++i) {
    threads.emplace_back([&, i] {
      Pair& pair = pairs[i];
      if (!pair.send || !pair.recv) return;
      for (int round = 0; round < 20; ++round) {
        std::vector<uint8_t> out = pattern(150000 + round, i * 100 + round), got(out.size());
        std::unique_ptr<Request> s, r;
        if (!pair.recv->irecv(got.data(), got.size(), round, nullptr, &r).ok()) return;
        if (!pair.send->isend(out.data(), out.size(), round, nullptr, &s).ok()) return;
        if (!wait(*r, in(10000ms)).ok() || !wait(*s, in(10000ms)).ok() || got != out) return;
      }
      ok[i] = 1;
    });
  }
  for (auto& t : threads) t.join();
  for (int i = 0; i < kPairs; ++i) EXPECT_EQ(ok[i], 1) << "pair " << i;
}

TEST(TcpTransport, ConnectRefusedIsRemote) {
  auto transport = make_lo(1);
  Handle handle;
  {
    std::unique_ptr<Listener> listener;
    ASSERT_TRUE(transport->listen(0, &handle, &listener).ok());
  }  // the port is closed again
  std::unique_ptr<SendConnection> send;
  Status status = transport->connect(0, handle, 0, 2000ms, &send);
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
}

// A raw client socket to the listener behind `handle`.
int raw_client(const Handle& handle) {
  tcp::HandleData data;
  if (!tcp::decode_handle(handle, &data).ok()) return -1;
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(fd, reinterpret_cast<sockaddr*>(&data.address), sizeof(sockaddr_in)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

// True when the listener closed `fd` within `timeout` (EOF or reset).
bool closed_by_peer(int fd, std::chrono::milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
  char c;
  ssize_t n = recv(fd, &c, 1, MSG_DONTWAIT);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

TEST(TcpTransport, StrayClientsAreRejectedAndRealConnectionsWork) {
  LogSink previous = log::set_sink(capture);
  auto transport = make_lo(2, 400ms);
  Handle handle;
  std::unique_ptr<Listener> listener;
  ASSERT_TRUE(transport->listen(0, &handle, &listener).ok());

  int garbage = raw_client(handle);
  int silent = raw_client(handle);
  int wrong_key = raw_client(handle);
  int early_close = raw_client(handle);
  ASSERT_GE(garbage, 0);
  ASSERT_GE(silent, 0);
  ASSERT_GE(wrong_key, 0);
  ASSERT_GE(early_close, 0);
  std::string junk(200, 'x');
  ASSERT_EQ(send(garbage, junk.data(), junk.size(), 0), static_cast<ssize_t>(junk.size()));
  tcp::Hello hello;
  hello.nsocks = 1;
  hello.connection_id = 99;
  tcp::HandleData data;
  ASSERT_TRUE(tcp::decode_handle(handle, &data).ok());
  hello.key = data.key;
  hello.key[3] ^= 1;
  uint8_t bytes[tcp::kHelloBytes];
  tcp::encode_hello(hello, bytes);
  ASSERT_EQ(send(wrong_key, bytes, sizeof(bytes), 0), static_cast<ssize_t>(sizeof(bytes)));
  ASSERT_EQ(send(early_close, bytes, 10, 0), 10);
  close(early_close);

  // A real connection made at the same time.
  std::unique_ptr<SendConnection> send_conn;
  ASSERT_TRUE(transport->connect(0, handle, 11, 5000ms, &send_conn).ok());
  std::unique_ptr<RecvConnection> recv_conn;
  ASSERT_TRUE(accept_one(*listener, &recv_conn).ok());
  EXPECT_EQ(recv_conn->hello(), 11u);
  std::vector<uint8_t> out = pattern(300000, 3), got(300000);
  std::unique_ptr<Request> s, r;
  ASSERT_TRUE(recv_conn->irecv(got.data(), got.size(), 1, nullptr, &r).ok());
  ASSERT_TRUE(send_conn->isend(out.data(), out.size(), 1, nullptr, &s).ok());
  ASSERT_TRUE(wait(*r, in(5000ms)).ok());
  EXPECT_EQ(out, got);

  // Keep the listener turning until the silent client's hello time has passed.
  std::unique_ptr<RecvConnection> none;
  auto until = in(800ms);
  while (Clock::now() < until) {
    ASSERT_TRUE(listener->accept(50ms, &none).ok());
    EXPECT_EQ(none, nullptr);
  }
  EXPECT_TRUE(closed_by_peer(garbage, 1000ms));
  EXPECT_TRUE(closed_by_peer(wrong_key, 1000ms));
  EXPECT_TRUE(closed_by_peer(silent, 1000ms));
  EXPECT_TRUE(logged("invalid hello"));
  EXPECT_TRUE(logged("wrong session key"));
  EXPECT_TRUE(logged("no complete hello"));
  EXPECT_TRUE(logged("closed before sending a full hello"));
  EXPECT_TRUE(logged("127.0.0.1:"));  // warnings name the peer
  close(garbage);
  close(silent);
  close(wrong_key);
  log::set_sink(previous);
}

TEST(TcpTransport, PeerCloseFailsPendingRecvQuickly) {
  auto transport = make_lo(4);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  std::vector<uint8_t> buffer(1 << 20);
  std::unique_ptr<Request> rreq;
  ASSERT_TRUE(pair.recv->irecv(buffer.data(), buffer.size(), 0, nullptr, &rreq).ok());
  auto start = Clock::now();
  pair.send.reset();
  Status status = wait(*rreq, in(5000ms));
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
  EXPECT_NE(status.message().find("closed the connection"), std::string::npos);
  EXPECT_LT(Clock::now() - start, 2000ms);
  // Later requests fail the same way.
  std::unique_ptr<Request> later;
  EXPECT_EQ(pair.recv->irecv(buffer.data(), buffer.size(), 0, nullptr, &later).code(),
            Code::kRemote);
}

TEST(TcpTransport, ReceiverCloseFailsSender) {
  auto transport = make_lo(1);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  pair.recv.reset();
  // A large send cannot complete: the peer is gone.
  std::vector<uint8_t> buffer(size_t{32} << 20);
  std::unique_ptr<Request> sreq;
  Status status;
  auto deadline = in(5000ms);
  for (;;) {
    status = pair.send->isend(buffer.data(), buffer.size(), 0, nullptr, &sreq);
    if (!status.ok()) break;
    status = wait(*sreq, deadline);
    if (!status.ok()) break;
    ASSERT_LT(Clock::now(), deadline) << "sends to a closed peer keep succeeding";
  }
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
}

TEST(TcpTransport, DestroyingConnectionWithPendingRequestsFailsThem) {
  auto transport = make_lo(2);
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  std::vector<uint8_t> buffer(1000);
  std::unique_ptr<Request> r1, r2;
  ASSERT_TRUE(pair.recv->irecv(buffer.data(), buffer.size(), 0, nullptr, &r1).ok());
  ASSERT_TRUE(pair.recv->irecv(buffer.data(), buffer.size(), 1, nullptr, &r2).ok());
  pair.recv.reset();
  bool done = true;
  size_t bytes = 0;
  EXPECT_EQ(r1->test(&done, &bytes).code(), Code::kRemote);
  EXPECT_FALSE(done);
  EXPECT_EQ(r2->test(&done, &bytes).code(), Code::kRemote);
}

// Two transports, as two processes would have: each side has its own progress thread.
struct TwoSided {
  std::unique_ptr<Transport> sender;
  std::unique_ptr<Transport> receiver;
  std::unique_ptr<Listener> listener;
  std::unique_ptr<SendConnection> send;
  std::unique_ptr<RecvConnection> recv;

  explicit TwoSided(int nsocks) : sender(make_lo(nsocks)), receiver(make_lo(nsocks)) {
    Handle handle;
    EXPECT_TRUE(receiver->listen(0, &handle, &listener).ok());
    EXPECT_TRUE(sender->connect(0, handle, 0, 5000ms, &send).ok());
    EXPECT_TRUE(accept_one(*listener, &recv).ok());
  }
};

// GB/s of plain blocking send/recv between two threads over loopback: what the machine can do
// right now, the yardstick for the transport.
double blocking_socket_gbps(size_t size, int rounds) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listener, 1) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    close(listener);
    return 0;
  }
  int client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(client, reinterpret_cast<sockaddr*>(&addr), len) != 0) return 0;
  int server = accept(listener, nullptr, nullptr);
  std::vector<uint8_t> out(size, 1), got(size);
  auto start = Clock::now();
  std::thread reader([&] {
    for (int i = 0; i < rounds; ++i) {
      for (size_t done = 0; done < size;) {
        ssize_t n = recv(server, got.data() + done, size - done, 0);
        if (n <= 0) return;
        done += static_cast<size_t>(n);
      }
    }
  });
  for (int i = 0; i < rounds; ++i) {
    for (size_t done = 0; done < size;) {
      ssize_t n = send(client, out.data() + done, size - done, 0);
      if (n <= 0) break;
      done += static_cast<size_t>(n);
    }
  }
  reader.join();
  double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  close(client);
  close(server);
  close(listener);
  return static_cast<double>(size) * rounds / seconds / 1e9;
}

TEST(TcpTransport, ThroughputOverLoopback) {
  const size_t size = size_t{32} << 20;
  const int rounds = 8;
  const double baseline = blocking_socket_gbps(size, rounds);
  for (int nsocks : {1, 4}) {
    TwoSided link(nsocks);
    ASSERT_TRUE(link.send && link.recv);
    std::vector<uint8_t> out(size, 1), got(size);
    auto start = Clock::now();
    for (int i = 0; i < rounds; ++i) {
      std::unique_ptr<Request> s, r;
      ASSERT_TRUE(link.recv->irecv(got.data(), size, 0, nullptr, &r).ok());
      ASSERT_TRUE(link.send->isend(out.data(), size, 0, nullptr, &s).ok());
      ASSERT_TRUE(wait(*r, in(20000ms)).ok());
      ASSERT_TRUE(wait(*s, in(20000ms)).ok());
    }
    double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    double gbps = static_cast<double>(size) * rounds / seconds / 1e9;
    RecordProperty("GBps_nsocks" + std::to_string(nsocks), std::to_string(gbps));
    std::printf("loopback, one connection, %d socket(s): %.2f GB/s (blocking sockets: %.2f GB/s)\n",
                nsocks, gbps, baseline);
    // Loose: the machine running the tests may be busy, and the waiting thread spins.
    EXPECT_GT(gbps, 0.25 * baseline);
  }
}

// Reads MemAvailable from /proc/meminfo, in bytes (0 when unknown).
uint64_t available_memory() {
  FILE* f = std::fopen("/proc/meminfo", "r");
  if (f == nullptr) return 0;
  char line[256];
  uint64_t kib = 0;
  while (std::fgets(line, sizeof(line), f) != nullptr) {
    if (std::sscanf(line, "MemAvailable: %lu kB", &kib) == 1) break;
  }
  std::fclose(f);
  return kib * 1024;
}

TEST(TcpTransport, MessageOverFourGiB) {
  const size_t size = (size_t{4} << 30) + 4099;
  if (available_memory() < 3 * size) {
    GTEST_SKIP() << "needs " << (3 * size >> 30) << " GiB of available memory";
  }
  // The buffers outlive the connections (declared first, destroyed last).
  std::unique_ptr<uint8_t[]> out(new uint8_t[size]);
  std::unique_ptr<uint8_t[]> got(new uint8_t[size]);
  TwoSided link(1);  // one socket: a single part longer than 4 GiB
  ASSERT_TRUE(link.send && link.recv);
  // Probe with 64 MiB of fresh pages; skip where the whole would take over ~20 s.
  {
    const size_t probe = size_t{64} << 20;
    std::memset(out.get(), 0x5a, probe);
    auto start = Clock::now();
    std::unique_ptr<Request> s, r;
    ASSERT_TRUE(link.recv->irecv(got.get(), probe, 1, nullptr, &r).ok());
    ASSERT_TRUE(link.send->isend(out.get(), probe, 1, nullptr, &s).ok());
    ASSERT_TRUE(wait(*r, in(20000ms)).ok());
    ASSERT_TRUE(wait(*s, in(5000ms)).ok());
    auto projected = (Clock::now() - start) * (size / probe + 1) * 3 / 2;  // + filling the buffer
    if (projected > 20s) {
      GTEST_SKIP() << "this machine moves 4 GiB too slowly now (projected "
                   << std::chrono::duration_cast<std::chrono::seconds>(projected).count() << " s)";
    }
  }
  std::memset(out.get(), 0x5a, size);
  // A distinct stamp on every page catches misplaced bytes without a full compare pass.
  for (size_t at = 0; at + 8 <= size; at += 4096) std::memcpy(out.get() + at, &at, 8);
  out[size - 1] = 0xc3;
  std::unique_ptr<Request> s, r;
  ASSERT_TRUE(link.recv->irecv(got.get(), size, 9, nullptr, &r).ok());
  ASSERT_TRUE(link.send->isend(out.get(), size, 9, nullptr, &s).ok());
  size_t received = 0;
  Status status = wait(*r, in(60000ms), &received);
  ASSERT_TRUE(status.ok()) << status.to_string();
  EXPECT_EQ(received, size);
  ASSERT_TRUE(wait(*s, in(5000ms)).ok());
  for (size_t at = 0; at + 8 <= size; at += 4096) {
    size_t stamp = 0;
    std::memcpy(&stamp, got.get() + at, 8);
    ASSERT_EQ(stamp, at);
  }
  EXPECT_EQ(got[size - 1], 0xc3);
  EXPECT_EQ(got[size / 2 + 100], 0x5a);
}

TEST(TcpTransport, LayoutCoversLargeMessagesExactly) {
  EXPECT_EQ(tcp::message_layout(0, 4).parts, 1);
  EXPECT_EQ(tcp::message_layout(100, 4).parts, 1);
  EXPECT_EQ(tcp::message_layout(2 * tcp::kMinPartBytes, 4).parts, 2);
  for (uint64_t size : {uint64_t{1} << 20, (uint64_t{5} << 30) + 3, (uint64_t{1} << 40) + 1}) {
    for (int nsocks : {1, 3, 4, 64}) {
      tcp::MessageLayout layout = tcp::message_layout(size, nsocks);
      ASSERT_GE(layout.parts, 1);
      ASSERT_LE(layout.parts, nsocks);
      uint64_t covered = 0;
      for (int p = 0; p < layout.parts; ++p) {
        ASSERT_EQ(layout.begin(p, size), covered);
        ASSERT_GT(layout.end(p, size), layout.begin(p, size));
        covered = layout.end(p, size);
      }
      EXPECT_EQ(covered, size);
    }
  }
}

TEST(TcpTransport, InterfaceFilter) {
  auto f = tcp::parse_ifname_filter("^=eth0,ib");
  EXPECT_TRUE(f.exclude);
  EXPECT_TRUE(f.exact);
  EXPECT_EQ(f.names, (std::vector<std::string>{"eth0", "ib"}));
  EXPECT_FALSE(tcp::ifname_matches(f, "eth0"));
  EXPECT_TRUE(tcp::ifname_matches(f, "eth01"));
  EXPECT_TRUE(tcp::ifname_matches(f, "ib0"));

  const std::vector<std::string> names = {"lo", "eth0", "eth10", "docker0", "virbr0", "ib0"};
  using V = std::vector<std::string>;
  EXPECT_EQ(filter_interface_names(names, ""), (V{"eth0", "eth10", "ib0"}));
  EXPECT_EQ(filter_interface_names(names, "eth"), (V{"eth0", "eth10"}));
  EXPECT_EQ(filter_interface_names(names, "=eth1"), V{});
  EXPECT_EQ(filter_interface_names(names, "=eth0,ib0"), (V{"eth0", "ib0"}));
  EXPECT_EQ(filter_interface_names(names, "^eth,lo"), (V{"docker0", "virbr0", "ib0"}));
  EXPECT_EQ(filter_interface_names(names, "^=eth1"),
            (V{"lo", "eth0", "eth10", "docker0", "virbr0", "ib0"}));
  EXPECT_EQ(filter_interface_names(names, "lo"), V{"lo"});
  EXPECT_EQ(filter_interface_names({"lo", "docker0"}, ""), V{"lo"});  // loopback fallback
}

// The threads of this process whose affinity is exactly `list` (from /proc/self/task/*/status).
int threads_pinned_to(const std::string& list) {
  int count = 0;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream status(task.path() / "status");
    std::string line;
    while (std::getline(status, line)) {
      if (line.rfind("Cpus_allowed_list:", 0) != 0) continue;
      const size_t value = line.find_first_not_of(" \t", line.find(':') + 1);
      if (value != std::string::npos && line.substr(value) == list) ++count;
    }
  }
  return count;
}

// set_progress_cpus before the thread starts and while it runs: the device's progress thread,
// and only it, ends up on those CPUs; a CPU the kernel refuses changes nothing and fails nothing.
TEST(TcpTransport, ProgressThreadRunsWhereItIsPut) {
  std::vector<int> allowed;
  ASSERT_TRUE(allowed_cpus(&allowed).ok());
  if (allowed.size() < 2) GTEST_SKIP() << "needs 2 allowed CPUs to tell a pinned thread apart";
  const std::vector<int> last = {allowed.back()};
  const std::vector<int> first = {allowed.front()};
  auto transport = make_lo(1);
  transport->set_progress_cpus(0, last);   // before: applied when the thread starts
  transport->set_progress_cpus(7, first);  // no such device: ignored
  const int before = threads_pinned_to(format_cpu_list(last));
  Pair pair = connect_pair(*transport);
  ASSERT_TRUE(pair.send && pair.recv);
  EXPECT_EQ(threads_pinned_to(format_cpu_list(last)), before + 1);
  transport->set_progress_cpus(0, first);  // while it runs: moved at once
  EXPECT_EQ(threads_pinned_to(format_cpu_list(last)), before);
  EXPECT_GE(threads_pinned_to(format_cpu_list(first)), 1);
  transport->set_progress_cpus(0, {CPU_SETSIZE - 1});  // refused by the kernel: stays
  EXPECT_GE(threads_pinned_to(format_cpu_list(first)), 1);
  std::vector<uint8_t> data = pattern(1 << 16, 3), got(data.size());  // and still works
  std::unique_ptr<Request> rs, rr;
  ASSERT_TRUE(pair.recv->irecv(got.data(), got.size(), 1, nullptr, &rr).ok());
  ASSERT_TRUE(pair.send->isend(data.data(), data.size(), 1, nullptr, &rs).ok());
  ASSERT_TRUE(wait(*rr, in(5000ms)).ok());
  ASSERT_TRUE(wait(*rs, in(5000ms)).ok());
  EXPECT_EQ(got, data);
}

// NCCL takes the last component of a NIC's pciPath as its PCI bus id: a virtio NIC's device link
// ends in "virtio2" and must be cut back to the PCI function; a virtual device has none.
TEST(PciFunctionPath, CutsBackToThePciFunction) {
  char tmpl[] = "/tmp/gp_sysfs_XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::filesystem::path root = tmpl;
  const auto fn = root / "devices/pci0000:00/0000:00:03.0";
  std::filesystem::create_directories(fn / "virtio2/net/eth0");
  std::filesystem::create_directories(root / "devices/pci0000:16/0000:16:02.0/0000:17:00.0");
  std::filesystem::create_directories(root / "devices/virtual/net/veth1");
  std::filesystem::create_directories(root / "class/net/eth0");
  std::filesystem::create_directories(root / "class/net/mlx");
  std::filesystem::create_directories(root / "class/net/veth1");
  std::filesystem::create_directory_symlink(fn / "virtio2", root / "class/net/eth0/device");
  std::filesystem::create_directory_symlink(root / "devices/pci0000:16/0000:16:02.0/0000:17:00.0",
                                            root / "class/net/mlx/device");
  EXPECT_EQ(pci_function_path((root / "class/net/eth0/device").string()), fn.string());
  EXPECT_EQ(pci_function_path((root / "class/net/mlx/device").string()),
            (root / "devices/pci0000:16/0000:16:02.0/0000:17:00.0").string());
  EXPECT_EQ(pci_function_path((root / "class/net/veth1/device").string()), "");  // no link
  EXPECT_EQ(pci_function_path((root / "devices/virtual/net/veth1").string()), "");
  std::filesystem::remove_all(root);
  EXPECT_EQ(pci_function_path("/sys/class/net/lo/device"), "");
}

// Every interface of this machine reports its PCI function's sysfs directory, or nothing.
TEST(TcpTransport, EveryInterfaceReportsAPciFunctionOrNothing) {
  std::vector<tcp::Interface> all;
  ASSERT_TRUE(tcp::list_interfaces(&all).ok());
  for (size_t i = 0; i < all.size(); ++i) {
    const DeviceInfo info = tcp::describe_interface(all[i], static_cast<int>(i));
    if (all[i].loopback) {
      EXPECT_EQ(info.pci_path, "") << info.name;
    }
    if (info.pci_path.empty()) continue;
    const std::filesystem::path path = info.pci_path;
    EXPECT_TRUE(std::filesystem::is_directory(path)) << info.pci_path;
    EXPECT_EQ(path.filename().string().size(), 12u) << info.pci_path;  // "0000:00:03.0"
    EXPECT_TRUE(std::filesystem::exists(path / "vendor")) << info.pci_path;
  }
}

TEST(TcpTransport, UnknownInterfaceIsAnError) {
  TcpOptions options;
  options.ifname = "=no-such-interface";
  std::unique_ptr<Transport> transport;
  EXPECT_EQ(make_tcp_transport(options, &transport).code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace gradpack::transport
