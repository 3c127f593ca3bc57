// SPDX-License-Identifier: Apache-2.0
// The TCP rendezvous store: a root served by one process, clients in threads and processes,
// and a root that survives strangers and reports its own death as kRemote.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "collectives/rendezvous/store.h"
#include "tests/collectives/rendezvous/store_test_util.h"

namespace gradpack {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

std::shared_ptr<Store> serve() {
  std::shared_ptr<Store> root;
  Status st = make_tcp_store("127.0.0.1", 0, true, milliseconds(2000), &root);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return root;
}

std::shared_ptr<Store> client(uint16_t port) {
  std::shared_ptr<Store> s;
  Status st = make_tcp_store("127.0.0.1", port, false, milliseconds(2000), &s);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return s;
}

// A raw loopback socket to the root.
int raw_connect(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

// True when the root closes fd within a second (after we sent it junk).
bool closed_by_root(int fd) {
  timeval tv{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  uint8_t buf[64];
  while (true) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return true;
    if (n < 0) return false;  // timed out: still open
  }
}

TEST(TcpStore, SetGetAddAcrossClients) {
  auto root = serve();
  ASSERT_TRUE(root);
  const uint16_t port = tcp_store_port(*root);
  EXPECT_NE(port, 0);
  auto a = client(port);
  ASSERT_TRUE(a);
  EXPECT_EQ(tcp_store_port(*a), port);
  EXPECT_EQ(tcp_store_port(*make_memory_store()), 0);

  ASSERT_TRUE(a->set("addr/1", bytes("10.0.0.2:4000")).ok());
  std::vector<uint8_t> v;
  ASSERT_TRUE(root->get("addr/1", milliseconds(100), &v).ok());
  EXPECT_EQ(v, bytes("10.0.0.2:4000"));
  ASSERT_TRUE(root->set("addr/1", bytes("")).ok());
  ASSERT_TRUE(a->get("addr/1", milliseconds(0), &v).ok());
  EXPECT_TRUE(v.empty());

  int64_t r = 0;
  ASSERT_TRUE(a->add("n", 5, &r).ok());
  EXPECT_EQ(r, 5);
  ASSERT_TRUE(root->add("n", -7, &r).ok());
  EXPECT_EQ(r, -2);
  EXPECT_EQ(a->add("addr/1", 1, &r).code(), Code::kInvalidArgument);

  // Binary keys and values travel intact.
  const std::string key("k\0\xff", 3);
  std::vector<uint8_t> blob(100000);
  for (size_t i = 0; i < blob.size(); ++i) blob[i] = static_cast<uint8_t>(i * 7);
  ASSERT_TRUE(root->set(key, blob).ok());
  ASSERT_TRUE(a->get(key, milliseconds(100), &v).ok());
  EXPECT_EQ(v, blob);
}

TEST(TcpStore, GetWaitsForALaterSet) {
  auto root = serve();
  ASSERT_TRUE(root);
  auto a = client(tcp_store_port(*root));
  auto b = client(tcp_store_port(*root));
  ASSERT_TRUE(a && b);
  std::thread setter([&] {
    std::this_thread::sleep_for(milliseconds(100));
    EXPECT_TRUE(b->set("late", bytes("here")).ok());
  });
  std::vector<uint8_t> v;
  const auto t0 = Clock::now();
  Status st = a->get("late", milliseconds(3000), &v);
  EXPECT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(v, bytes("here"));
  EXPECT_GE(Clock::now() - t0, milliseconds(90));
  setter.join();
  EXPECT_TRUE(root->wait({"late"}, milliseconds(100)).ok());
}

TEST(TcpStore, AddIsAtomicAcrossConnectionsAndThreads) {
  auto root = serve();
  ASSERT_TRUE(root);
  const uint16_t port = tcp_store_port(*root);
  auto shared = client(port);  // two threads share this one
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      std::shared_ptr<Store> s = t < 2 ? client(port) : shared;
      for (int i = 0; i < 200; ++i) {
        int64_t r;
        ASSERT_TRUE(s->add("count", 1, &r).ok());
      }
    });
  }
  for (auto& t : threads) t.join();
  int64_t total = 0;
  ASSERT_TRUE(root->add("count", 0, &total).ok());
  EXPECT_EQ(total, 800);
}

TEST(TcpStore, GetTimesOutNamingTheKey) {
  auto root = serve();
  ASSERT_TRUE(root);
  auto a = client(tcp_store_port(*root));
  ASSERT_TRUE(a);
  std::vector<uint8_t> v;
  const auto t0 = Clock::now();
  Status st = a->get("rank/3/ready", milliseconds(80), &v);
  const auto waited = Clock::now() - t0;
  EXPECT_EQ(st.code(), Code::kTimeout);
  EXPECT_NE(st.message().find("rank/3/ready"), std::string::npos) << st.message();
  EXPECT_GE(waited, milliseconds(75));
  EXPECT_LT(waited, milliseconds(1000));
  EXPECT_EQ(a->wait({"x", "y"}, milliseconds(20)).code(), Code::kTimeout);
  // The connection is still good afterwards, and a late set is seen.
  ASSERT_TRUE(root->set("rank/3/ready", bytes("1")).ok());
  ASSERT_TRUE(a->get("rank/3/ready", milliseconds(100), &v).ok());
}

TEST(TcpStore, UnreachableRootIsATimeoutNamingIt) {
  // A port that nobody listens on: bind one, learn it, close it.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);
  ::close(fd);

  std::shared_ptr<Store> s;
  const auto t0 = Clock::now();
  Status st = make_tcp_store("127.0.0.1", port, false, milliseconds(300), &s);
  const auto waited = Clock::now() - t0;
  EXPECT_EQ(st.code(), Code::kTimeout);
  EXPECT_NE(st.message().find("127.0.0.1:" + std::to_string(port)), std::string::npos)
      << st.message();
  EXPECT_NE(st.message().find("300 ms"), std::string::npos) << st.message();
  EXPECT_GE(waited, milliseconds(290));
  EXPECT_LT(waited, milliseconds(1500));

  Status bad = make_tcp_store("not a host!", 1234, false, milliseconds(100), &s);
  EXPECT_EQ(bad.code(), Code::kInvalidArgument);
  EXPECT_NE(bad.message().find("not a host!"), std::string::npos);
}

TEST(TcpStore, ClientWaitsForALateRoot) {
  // Learn a free port, then start the root on it after the client began connecting.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const uint16_t port = ntohs(addr.sin_port);
  ::close(fd);
  std::shared_ptr<Store> root;
  std::thread starter([&] {
    std::this_thread::sleep_for(milliseconds(150));
    EXPECT_TRUE(make_tcp_store("127.0.0.1", port, true, milliseconds(1000), &root).ok());
  });
  std::shared_ptr<Store> s;
  Status st = make_tcp_store("127.0.0.1", port, false, milliseconds(3000), &s);
  starter.join();
  ASSERT_TRUE(st.ok()) << st.to_string();
  ASSERT_TRUE(s->set("k", bytes("v")).ok());
}

TEST(TcpStore, RootShutdownIsRemoteNotAHang) {
  auto root = serve();
  ASSERT_TRUE(root);
  auto a = client(tcp_store_port(*root));
  ASSERT_TRUE(a);
  std::atomic<bool> done{false};
  Status waiting;
  std::thread waiter([&] {
    std::vector<uint8_t> v;
    waiting = a->get("never", milliseconds(10000), &v);
    done = true;
  });
  std::this_thread::sleep_for(milliseconds(50));
  const auto t0 = Clock::now();
  root.reset();
  waiter.join();
  EXPECT_LT(Clock::now() - t0, milliseconds(1000));
  EXPECT_EQ(waiting.code(), Code::kRemote) << waiting.to_string();
  EXPECT_NE(waiting.message().find("closed the connection"), std::string::npos);
  int64_t r;
  EXPECT_EQ(a->add("x", 1, &r).code(), Code::kRemote);
  EXPECT_EQ(a->set("x", bytes("1")).code(), Code::kRemote);
}

TEST(TcpStore, StrangersAreRejectedWhileGoodClientsWork) {
  auto root = serve();
  ASSERT_TRUE(root);
  const uint16_t port = tcp_store_port(*root);
  auto good = client(port);
  ASSERT_TRUE(good);

  int garbage = raw_connect(port);
  const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  ASSERT_GT(::send(garbage, junk, sizeof junk, MSG_NOSIGNAL), 0);
  int silent = raw_connect(port);  // connects and says nothing: must not stall anyone
  int wrong_version = raw_connect(port);
  const uint8_t hello_v9[8] = {'G', 'P', 'S', 'T', 9, 0, 0, 0};
  ASSERT_EQ(::send(wrong_version, hello_v9, 8, MSG_NOSIGNAL), 8);
  int oversized = raw_connect(port);  // a good hello, then a set claiming a 1 GiB value
  const uint8_t hello[8] = {'G', 'P', 'S', 'T', 1, 0, 0, 0};
  const uint8_t big_set[] = {1, 1, 0, 0, 0, 'k', 0, 0, 0, 0x40};
  ASSERT_EQ(::send(oversized, hello, 8, MSG_NOSIGNAL), 8);
  ASSERT_EQ(::send(oversized, big_set, sizeof big_set, MSG_NOSIGNAL),
            static_cast<ssize_t>(sizeof big_set));

  EXPECT_TRUE(closed_by_root(garbage));
  EXPECT_TRUE(closed_by_root(wrong_version));
  EXPECT_TRUE(closed_by_root(oversized));

  ASSERT_TRUE(good->set("still", bytes("fine")).ok());
  std::vector<uint8_t> v;
  ASSERT_TRUE(root->get("still", milliseconds(100), &v).ok());
  EXPECT_EQ(v, bytes("fine"));
  EXPECT_FALSE(root->get("k", milliseconds(0), &v).ok());  // the oversized set never landed
  ::close(garbage);
  ::close(silent);
  ::close(wrong_version);
  ::close(oversized);
  auto late = client(port);
  ASSERT_TRUE(late && late->get("still", milliseconds(100), &v).ok());
}

TEST(TcpStore, OversizedRequestsAreRejected) {
  auto root = serve();
  ASSERT_TRUE(root);
  std::vector<uint8_t> huge((size_t{64} << 20) + 1);
  EXPECT_EQ(root->set("big", huge).code(), Code::kInvalidArgument);
  EXPECT_EQ(root->set(std::string(5000, 'k'), bytes("v")).code(), Code::kInvalidArgument);
  ASSERT_TRUE(root->set("small", bytes("v")).ok());  // the connection is unaffected
}

// Processes that share only rank 0's address rendezvous through its root.
TEST(TcpStore, ProcessesRendezvous) {
  auto root = serve();
  ASSERT_TRUE(root);
  const uint16_t port = tcp_store_port(*root);
  testing_util::check_processes_rendezvous(*root, [&](std::shared_ptr<Store>* out) {
    return make_tcp_store("127.0.0.1", port, false, milliseconds(3000), out);
  });
}

}  // namespace
}  // namespace gradpack
