// SPDX-License-Identifier: Apache-2.0
// The ib bootstrap listener on loopback, with a fake connection factory instead of queue pairs:
// the right key is accepted, a wrong key, garbage or a stalled peer is closed and never blocks.
#include "transport/ibverbs/listener.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <thread>

namespace gradpack::transport {
namespace {

using std::chrono::milliseconds;

class FakeRecv : public RecvConnection {
 public:
  FakeRecv(uint64_t hello, int fd) : hello_(hello), fd_(fd) {}
  ~FakeRecv() override { close(fd_); }
  Status register_memory(void*, size_t, MemoryKind, std::unique_ptr<MemoryRegion>*) override {
    return Unsupported("fake");
  }
  Status irecv(void*, size_t, uint64_t, MemoryRegion*, std::unique_ptr<Request>*) override {
    return Unsupported("fake");
  }
  uint64_t hello() const override { return hello_; }

 private:
  uint64_t hello_;
  int fd_;
};

class IbListenerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fd = -1;
    ASSERT_TRUE(bootstrap_listen("127.0.0.1", &fd, &where_).ok());
    ASSERT_TRUE(random_key(where_.key).ok());
    auto fn = [](const ConnectMsg& msg, int conn_fd, std::unique_ptr<RecvConnection>* out) {
      *out = std::make_unique<FakeRecv>(msg.hello, conn_fd);
      return OkStatus();
    };
    listener_ = std::make_unique<IbListener>(fd, where_.key, fn, milliseconds(300));
  }

  int connect_client() {
    int fd = -1;
    EXPECT_TRUE(bootstrap_connect(where_, milliseconds(2000), &fd).ok());
    return fd;
  }

  void send_connect(int fd, uint64_t hello, bool right_key) {
    ConnectMsg msg;
    std::memcpy(msg.key, where_.key, kIbKeyBytes);
    if (!right_key) msg.key[3] ^= 0x40;
    msg.hello = hello;
    uint8_t bytes[kConnectMsgBytes];
    encode_connect(msg, bytes);
    ASSERT_TRUE(bootstrap_send_all(fd, bytes, sizeof(bytes),
                                   std::chrono::steady_clock::now() + milliseconds(1000))
                    .ok());
  }

  // True when the peer closed `fd` within `timeout`.
  static bool closed_by_peer(int fd, milliseconds timeout) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char byte;
    return recv(fd, &byte, 1, MSG_DONTWAIT) == 0;
  }

  IbHandle where_;
  std::unique_ptr<IbListener> listener_;
};

TEST_F(IbListenerTest, RightKeyIsAccepted) {
  const int fd = connect_client();
  send_connect(fd, 42, true);
  std::unique_ptr<RecvConnection> conn;
  ASSERT_TRUE(listener_->accept(milliseconds(2000), &conn).ok());
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->hello(), 42u);
  close(fd);
}

TEST_F(IbListenerTest, ZeroTimeoutOnlyLooks) {
  std::unique_ptr<RecvConnection> conn;
  const auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(listener_->accept(milliseconds(0), &conn).ok());
  EXPECT_EQ(conn, nullptr);
  EXPECT_LT(std::chrono::steady_clock::now() - start, milliseconds(100));
}

TEST_F(IbListenerTest, WrongKeyIsClosedAndTheListenerGoesOn) {
  const int bad = connect_client();
  send_connect(bad, 1, false);
  std::unique_ptr<RecvConnection> conn;
  ASSERT_TRUE(listener_->accept(milliseconds(200), &conn).ok());
  EXPECT_EQ(conn, nullptr);
  EXPECT_TRUE(closed_by_peer(bad, milliseconds(1000)));
  close(bad);
  const int good = connect_client();
  send_connect(good, 7, true);
  ASSERT_TRUE(listener_->accept(milliseconds(2000), &conn).ok());
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->hello(), 7u);
  close(good);
}

TEST_F(IbListenerTest, GarbageIsClosedAtOnce) {
  const int fd = connect_client();
  const char garbage[] = "GET / HTTP/1.0\r\n\r\n";
  ASSERT_TRUE(bootstrap_send_all(fd, reinterpret_cast<const uint8_t*>(garbage), sizeof(garbage),
                                 std::chrono::steady_clock::now() + milliseconds(1000))
                  .ok());
  std::unique_ptr<RecvConnection> conn;
  ASSERT_TRUE(listener_->accept(milliseconds(100), &conn).ok());
  EXPECT_EQ(conn, nullptr);
  // Closed on the bad magic, well before the 300 ms stall timeout.
  EXPECT_TRUE(closed_by_peer(fd, milliseconds(50)));
  close(fd);
}

TEST_F(IbListenerTest, StalledPeerDoesNotBlockOthersAndIsDropped) {
  const int stalled = connect_client();
  ConnectMsg msg;
  std::memcpy(msg.key, where_.key, kIbKeyBytes);
  uint8_t bytes[kConnectMsgBytes];
  encode_connect(msg, bytes);
  ASSERT_TRUE(
      bootstrap_send_all(stalled, bytes, 10, std::chrono::steady_clock::now() + milliseconds(1000))
          .ok());
  const int good = connect_client();
  send_connect(good, 9, true);
  std::unique_ptr<RecvConnection> conn;
  ASSERT_TRUE(listener_->accept(milliseconds(2000), &conn).ok());
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->hello(), 9u);
  // Past the stall timeout the half-sent connection is closed by the next accept.
  std::unique_ptr<RecvConnection> none;
  ASSERT_TRUE(listener_->accept(milliseconds(500), &none).ok());
  EXPECT_EQ(none, nullptr);
  EXPECT_TRUE(closed_by_peer(stalled, milliseconds(100)));
  close(stalled);
  close(good);
}

TEST_F(IbListenerTest, PeerThatHangsUpEarlyIsDropped) {
  const int fd = connect_client();
  close(fd);
  std::unique_ptr<RecvConnection> conn;
  ASSERT_TRUE(listener_->accept(milliseconds(100), &conn).ok());
  EXPECT_EQ(conn, nullptr);
  const int good = connect_client();
  send_connect(good, 11, true);
  ASSERT_TRUE(listener_->accept(milliseconds(2000), &conn).ok());
  ASSERT_NE(conn, nullptr);
  close(good);
}

TEST(IbBootstrap, RefusedConnectionIsRemote) {
  int fd = -1;
  IbHandle where;
  ASSERT_TRUE(bootstrap_listen("127.0.0.1", &fd, &where).ok());
  close(fd);  // nothing listens on that port now
  int client = -1;
  Status status = bootstrap_connect(where, milliseconds(1000), &client);
  EXPECT_EQ(status.code(), Code::kRemote) << status.to_string();
}

TEST(IbBootstrap, DefaultAddressPublishesAPort) {
  int fd = -1;
  IbHandle where;
  ASSERT_TRUE(bootstrap_listen("", &fd, &where).ok());
  EXPECT_EQ(where.family, 4);
  EXPECT_NE(where.port, 0);
  close(fd);
}

}  // namespace
}  // namespace gradpack::transport
