// SPDX-License-Identifier: Apache-2.0
// TcpStore: a rendezvous store served over TCP by rank 0 (like torch's TCPStore).
//
// Wire format, every integer little-endian:
//   hello (both ways, first):  u32 magic 'GPST', u16 version, u16 reserved (0)
//   request:                   u8 op, u32 key length, key, u32 value length, value
//   reply:                     u8 status, u32 value length, value
// Ops: set (value = the value), get (value = u64 timeout in ms; the root answers when the key
// appears or the timeout expires), add (value = i64 delta; reply value = i64 new total).
// Reply status: ok, not found (get timed out at the root), invalid (message in the value).
//
// The root serves every connection from one thread with poll() and non-blocking sockets; a
// connection that sends anything outside the protocol is closed and logged, never served.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "collectives/rendezvous/store.h"
#include "common/little_endian.h"
#include "common/log.h"

namespace gradpack {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

constexpr uint32_t kMagic = 0x54535047;  // "GPST" in little-endian byte order
constexpr uint16_t kVersion = 1;
constexpr size_t kHelloSize = 8;
constexpr uint8_t kOpSet = 1, kOpGet = 2, kOpAdd = 3;
constexpr uint8_t kReplyOk = 0, kReplyNotFound = 1, kReplyInvalid = 2;
// How long past its own timeout a get waits for the root's answer, and how long a set or add
// waits for its reply, before the root counts as gone.
constexpr milliseconds kReplyGrace(2000);
constexpr milliseconds kReplyTimeout(30000);
constexpr size_t kTcpStoreMaxKey = 4096;
constexpr size_t kTcpStoreMaxValue = size_t{64} << 20;

std::vector<uint8_t> hello_bytes() {
  std::vector<uint8_t> out;
  append_le<uint32_t>(&out, kMagic);
  out.push_back(static_cast<uint8_t>(kVersion & 0xff));
  out.push_back(static_cast<uint8_t>(kVersion >> 8));
  out.push_back(0);
  out.push_back(0);
  return out;
}

bool hello_ok(const uint8_t* p) {
  return load_le<uint32_t>(p) == kMagic && (p[4] | (p[5] << 8)) == kVersion && p[6] == 0 &&
         p[7] == 0;
}

std::string endpoint(const std::string& host, uint16_t port) {
  return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" +
         std::to_string(port);
}

// A host is a numeric address or a DNS name; anything else is rejected before any lookup.
bool plausible_host(const std::string& host) {
  if (host.empty() || host.size() > 253) return false;
  return std::all_of(host.begin(), host.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '-' || c == ':' || c == '_' || c == '%';
  });
}

Status resolve(const std::string& host, uint16_t port, bool passive,
               std::vector<sockaddr_storage>* addrs, std::vector<socklen_t>* lens) {
  if (!plausible_host(host)) return InvalidArgument("bad rendezvous host name \"" + host + "\"");
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const std::string service = std::to_string(port);
  int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &res);
  if (rc != 0)
    return InvalidArgument("cannot resolve rendezvous host \"" + host + "\": " + gai_strerror(rc));
  for (addrinfo* a = res; a != nullptr; a = a->ai_next) {
    sockaddr_storage s{};
    std::memcpy(&s, a->ai_addr, a->ai_addrlen);
    addrs->push_back(s);
    lens->push_back(a->ai_addrlen);
  }
  ::freeaddrinfo(res);
  if (addrs->empty()) return InvalidArgument("rendezvous host \"" + host + "\" has no address");
  return OkStatus();
}

std::string peer_name(int fd) {
  sockaddr_storage s{};
  socklen_t len = sizeof s;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&s), &len) != 0) return "?";
  char host[NI_MAXHOST], serv[NI_MAXSERV];
  if (::getnameinfo(reinterpret_cast<sockaddr*>(&s), len, host, sizeof host, serv, sizeof serv,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0)
    return "?";
  return std::string(host) + ":" + serv;
}

// ---------------------------------------------------------------------------------------------
// The root.

class Server {
 public:
  ~Server() {
    if (thread_.joinable()) {
      uint64_t one = 1;
      ssize_t n = ::write(wake_fd_, &one, sizeof one);
      (void)n;
      thread_.join();
    }
    for (auto& [fd, conn] : conns_) ::close(fd);
    if (listen_fd_ >= 0) ::close(listen_fd_);
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  Status start(const std::string& host, uint16_t port) {
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
    GP_RETURN_IF_ERROR(resolve(host, port, true, &addrs, &lens));
    const std::string where = endpoint(host, port);
    errno = 0;
    for (size_t i = 0; i < addrs.size() && listen_fd_ < 0; ++i) {
      int fd = ::socket(addrs[i].ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      int one = 1;
      ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (::bind(fd, reinterpret_cast<sockaddr*>(&addrs[i]), lens[i]) == 0 &&
          ::listen(fd, 128) == 0) {
        listen_fd_ = fd;
        break;
      }
      int saved = errno;
      ::close(fd);
      errno = saved;
    }
    if (listen_fd_ < 0) return SystemError("cannot listen for rendezvous on " + where);
    sockaddr_storage bound{};
    socklen_t len = sizeof bound;
    if (::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0)
      return SystemError("cannot read the rendezvous port of " + where);
    port_ = ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                              : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) return SystemError("cannot create the rendezvous server's eventfd");
    thread_ = std::thread([this] { loop(); });
    return OkStatus();
  }

  uint16_t port() const { return port_; }

 private:
  struct Conn {
    std::string peer;
    bool hello = false;
    std::vector<uint8_t> in;
    size_t in_off = 0;
    std::vector<uint8_t> out;
    size_t out_off = 0;
    std::optional<std::string> wait_key;  // a get waiting for its key
    Clock::time_point wait_deadline;
  };

  void reject(int fd, const std::string& why) {
    GP_LOG_WARN(kColl, "rendezvous root: closing connection from %s: %s", conns_[fd].peer.c_str(),
                why.c_str());
    doomed_.push_back(fd);
  }

  static void reply(Conn* c, uint8_t status, const std::vector<uint8_t>& value) {
    c->out.push_back(status);
    append_le<uint32_t>(&c->out, static_cast<uint32_t>(value.size()));
    c->out.insert(c->out.end(), value.begin(), value.end());
  }

  static std::vector<uint8_t> text(const std::string& s) { return {s.begin(), s.end()}; }

  // Handles at most one complete message; false when none is complete (or the connection is
  // waiting or doomed).
  bool process_one(int fd, Conn* c) {
    if (c->wait_key) return false;
    const uint8_t* p = c->in.data() + c->in_off;
    const size_t avail = c->in.size() - c->in_off;
    if (!c->hello) {
      if (avail < kHelloSize) return false;
      if (!hello_ok(p)) {
        reject(fd, "not a gradpack store client (bad magic or version)");
        return false;
      }
      c->hello = true;
      c->in_off += kHelloSize;
      std::vector<uint8_t> h = hello_bytes();
      c->out.insert(c->out.end(), h.begin(), h.end());
      return true;
    }
    if (avail < 5) return false;
    const uint8_t op = p[0];
    const uint32_t key_len = load_le<uint32_t>(p + 1);
    if (op != kOpSet && op != kOpGet && op != kOpAdd) {
      reject(fd, "unknown op " + std::to_string(op));
      return false;
    }
    if (key_len > kTcpStoreMaxKey) {
      reject(fd, "key of " + std::to_string(key_len) + " bytes is over the limit");
      return false;
    }
    if (avail < 5 + size_t{key_len} + 4) return false;
    const uint32_t value_len = load_le<uint32_t>(p + 5 + key_len);
    const size_t limit = op == kOpSet ? kTcpStoreMaxValue : 8;
    if (value_len > limit || (op != kOpSet && value_len != 8)) {
      reject(fd, "value of " + std::to_string(value_len) + " bytes is over the limit");
      return false;
    }
    const size_t total = 5 + size_t{key_len} + 4 + value_len;
    if (avail < total) return false;
    std::string key(reinterpret_cast<const char*>(p + 5), key_len);
    const uint8_t* value = p + 9 + key_len;
    if (op == kOpSet) {
      values_[key].assign(value, value + value_len);
      reply(c, kReplyOk, {});
      wake_waiters(key);
    } else if (op == kOpGet) {
      auto it = values_.find(key);
      const uint64_t timeout_ms = load_le<uint64_t>(value);
      if (it != values_.end()) {
        reply(c, kReplyOk, it->second);
      } else if (timeout_ms == 0) {
        reply(c, kReplyNotFound, {});
      } else {
        c->wait_key = key;
        c->wait_deadline = Clock::now() + milliseconds(std::min<uint64_t>(timeout_ms, 1ull << 40));
      }
    } else {
      const int64_t delta = static_cast<int64_t>(load_le<uint64_t>(value));
      int64_t current = 0;
      auto it = values_.find(key);
      if (it != values_.end() && !parse_counter(it->second, &current)) {
        reply(c, kReplyInvalid, text("rendezvous key \"" + key + "\" does not hold a counter"));
      } else {
        current =
            static_cast<int64_t>(static_cast<uint64_t>(current) + static_cast<uint64_t>(delta));
        values_[key] = counter_bytes(current);
        std::vector<uint8_t> out;
        append_le<uint64_t>(&out, static_cast<uint64_t>(current));
        reply(c, kReplyOk, out);
        wake_waiters(key);
      }
    }
    c->in_off += total;
    return true;
  }

  void wake_waiters(const std::string& key) {
    for (auto& [fd, conn] : conns_) {
      if (conn.wait_key && *conn.wait_key == key) {
        reply(&conn, kReplyOk, values_[key]);
        conn.wait_key.reset();
      }
    }
  }

  void read_from(int fd, Conn* c) {
    uint8_t buffer[65536];
    while (true) {
      ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n <= 0) {
        doomed_.push_back(fd);  // closed by the peer (or reset): not an error at the root
        return;
      }
      if (c->in_off > 0 && c->in_off == c->in.size()) {
        c->in.clear();
        c->in_off = 0;
      }
      c->in.insert(c->in.end(), buffer, buffer + n);
    }
  }

  void write_to(int fd, Conn* c) {
    while (c->out_off < c->out.size()) {
      ssize_t n = ::send(fd, c->out.data() + c->out_off, c->out.size() - c->out_off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
      if (n < 0) {
        doomed_.push_back(fd);
        return;
      }
      c->out_off += static_cast<size_t>(n);
    }
    c->out.clear();
    c->out_off = 0;
  }

  void accept_all() {
    while (true) {
      int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ECONNABORTED)
          GP_LOG_WARN(kColl, "rendezvous root: accept failed: %s", std::strerror(errno));
        return;
      }
      int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      conns_[fd].peer = peer_name(fd);
    }
  }

  void loop() {
    std::vector<pollfd> fds;
    while (true) {
      fds.clear();
      fds.push_back({wake_fd_, POLLIN, 0});
      fds.push_back({listen_fd_, POLLIN, 0});
      int timeout_ms = -1;
      const auto now = Clock::now();
      for (auto& [fd, conn] : conns_) {
        short events = POLLIN;
        if (conn.out_off < conn.out.size()) events |= POLLOUT;
        fds.push_back({fd, events, 0});
        if (conn.wait_key) {
          auto left = std::chrono::duration_cast<milliseconds>(conn.wait_deadline - now).count();
          left = std::max<int64_t>(left + 1, 0);
          if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
        }
      }
      int n = ::poll(fds.data(), fds.size(), timeout_ms);
      if (n < 0 && errno != EINTR) {
        GP_LOG_WARN(kColl, "rendezvous root: poll failed: %s", std::strerror(errno));
        return;
      }
      if (n > 0) {
        if (fds[0].revents != 0) return;  // woken to stop
        if (fds[1].revents & POLLIN) accept_all();
        for (size_t i = 2; i < fds.size(); ++i) {
          if (fds[i].revents == 0) continue;
          Conn& c = conns_[fds[i].fd];
          if (fds[i].revents & (POLLIN | POLLHUP | POLLERR)) read_from(fds[i].fd, &c);
        }
      }
      // Expired gets answer "not found"; then every connection's complete requests are served.
      const auto after = Clock::now();
      for (auto& [fd, conn] : conns_) {
        if (conn.wait_key && conn.wait_deadline <= after) {
          reply(&conn, kReplyNotFound, {});
          conn.wait_key.reset();
        }
      }
      bool progress = true;
      while (progress) {
        progress = false;
        for (auto& [fd, conn] : conns_) {
          if (std::find(doomed_.begin(), doomed_.end(), fd) != doomed_.end()) continue;
          while (process_one(fd, &conn)) progress = true;
          if (conn.in_off == conn.in.size()) {
            conn.in.clear();
            conn.in_off = 0;
          }
        }
      }
      for (auto& [fd, conn] : conns_)
        if (conn.out_off < conn.out.size()) write_to(fd, &conn);
      for (int fd : doomed_) {
        if (conns_.erase(fd) != 0) ::close(fd);
      }
      doomed_.clear();
    }
  }

  int listen_fd_ = -1;
  int wake_fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  // Owned by the server thread once it runs.
  std::map<int, Conn> conns_;
  std::vector<int> doomed_;
  std::map<std::string, std::vector<uint8_t>> values_;
};

// ---------------------------------------------------------------------------------------------
// A client (every rank, the root included).

class TcpStore : public Store {
 public:
  TcpStore(std::string host, uint16_t port, milliseconds connect_timeout)
      : host_(std::move(host)), port_(port), connect_timeout_(connect_timeout) {}
  ~TcpStore() override {
    close_socket();
    server_.reset();
  }

  Status connect() {
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
    GP_RETURN_IF_ERROR(resolve(host_, port_, false, &addrs, &lens));
    const auto deadline = Clock::now() + connect_timeout_;
    while (true) {
      for (size_t i = 0; i < addrs.size(); ++i) {
        if (try_connect(addrs[i], lens[i], deadline)) {
          Status st = handshake(deadline);
          if (st.ok()) return st;
          close_socket();
          if (st.code() != Code::kTimeout) return st;
        }
      }
      const auto now = Clock::now();
      if (now >= deadline) break;
      std::this_thread::sleep_for(std::min<Clock::duration>(milliseconds(20), deadline - now));
    }
    return {Code::kTimeout, "rendezvous root " + endpoint(host_, port_) +
                                " did not answer within " +
                                std::to_string(connect_timeout_.count()) + " ms"};
  }

  void set_server(std::unique_ptr<Server> server) { server_ = std::move(server); }
  uint16_t port() const { return server_ ? server_->port() : port_; }

  Status set(const std::string& key, const std::vector<uint8_t>& value) override {
    if (value.size() > kTcpStoreMaxValue)
      return InvalidArgument("rendezvous value for \"" + key + "\" is " +
                             std::to_string(value.size()) + " bytes, over the limit of " +
                             std::to_string(kTcpStoreMaxValue));
    std::lock_guard<std::mutex> lock(mu_);
    uint8_t status;
    std::vector<uint8_t> reply;
    GP_RETURN_IF_ERROR(request(kOpSet, key, value, Clock::now() + kReplyTimeout, &status, &reply));
    return OkStatus();
  }

  Status get(const std::string& key, milliseconds timeout, std::vector<uint8_t>* value) override {
    std::lock_guard<std::mutex> lock(mu_);
    timeout = std::max(timeout, milliseconds(0));
    std::vector<uint8_t> arg;
    append_le<uint64_t>(&arg, static_cast<uint64_t>(timeout.count()));
    uint8_t status;
    Status st = request(kOpGet, key, arg, Clock::now() + timeout + kReplyGrace, &status, value);
    if (st.ok() && status == kReplyOk) return st;
    if (st.ok() || st.code() == Code::kTimeout)
      return {Code::kTimeout, "rendezvous key \"" + key + "\" was not set within " +
                                  std::to_string(timeout.count()) + " ms"};
    return st;
  }

  Status add(const std::string& key, int64_t delta, int64_t* result) override {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<uint8_t> arg;
    append_le<uint64_t>(&arg, static_cast<uint64_t>(delta));
    uint8_t status;
    std::vector<uint8_t> reply;
    GP_RETURN_IF_ERROR(request(kOpAdd, key, arg, Clock::now() + kReplyTimeout, &status, &reply));
    if (status == kReplyInvalid) return InvalidArgument(std::string(reply.begin(), reply.end()));
    if (reply.size() != 8) return {Code::kRemote, "rendezvous root sent a malformed reply"};
    *result = static_cast<int64_t>(load_le<uint64_t>(reply.data()));
    return OkStatus();
  }

 private:
  void close_socket() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool try_connect(const sockaddr_storage& addr, socklen_t len, Clock::time_point deadline) {
    int fd = ::socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
      if (errno != EINPROGRESS) {
        ::close(fd);
        return false;
      }
      pollfd p{fd, POLLOUT, 0};
      int err = 0;
      socklen_t err_len = sizeof err;
      if (!wait_fd(&p, deadline) || ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &err_len) != 0 ||
          err != 0) {
        ::close(fd);
        return false;
      }
    }
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fd_ = fd;
    return true;
  }

  // Polls until an event or the deadline; false at the deadline.
  static bool wait_fd(pollfd* p, Clock::time_point deadline) {
    while (true) {
      auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
      if (left < 0) left = 0;
      p->revents = 0;
      int n = ::poll(p, 1, static_cast<int>(std::min<int64_t>(left + 1, 1 << 30)));
      if (n > 0) return true;
      if (n < 0 && errno == EINTR) continue;
      if (n == 0 && Clock::now() < deadline) continue;
      return false;
    }
  }

  Status lost() {
    close_socket();
    broken_ = true;
    return {Code::kRemote, "rendezvous root " + endpoint(host_, port_) + " closed the connection"};
  }

  Status send_all(const std::vector<uint8_t>& bytes, Clock::time_point deadline) {
    size_t done = 0;
    while (done < bytes.size()) {
      ssize_t n = ::send(fd_, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLOUT, 0};
        if (!wait_fd(&p, deadline)) {
          close_socket();  // a half-sent request: the connection cannot be reused
          return {Code::kTimeout, "rendezvous root " + endpoint(host_, port_) +
                                      " did not accept a request in time"};
        }
        continue;
      }
      return lost();
    }
    return OkStatus();
  }

  Status recv_all(uint8_t* out, size_t size, Clock::time_point deadline) {
    size_t done = 0;
    while (done < size) {
      ssize_t n = ::recv(fd_, out + done, size - done, 0);
      if (n > 0) {
        done += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        pollfd p{fd_, POLLIN, 0};
        if (!wait_fd(&p, deadline)) {
          close_socket();  // the answer may still come: drop the connection, reconnect later
          return {Code::kTimeout,
                  "rendezvous root " + endpoint(host_, port_) + " did not answer in time"};
        }
        continue;
      }
      return lost();
    }
    return OkStatus();
  }

  Status handshake(Clock::time_point deadline) {
    GP_RETURN_IF_ERROR(send_all(hello_bytes(), deadline));
    uint8_t h[kHelloSize];
    Status st = recv_all(h, sizeof h, deadline);
    if (st.code() == Code::kRemote) broken_ = false;  // not yet serving: retry until the deadline
    if (st.code() == Code::kRemote) return {Code::kTimeout, st.message()};
    GP_RETURN_IF_ERROR(st);
    if (!hello_ok(h))
      return {Code::kRemote, endpoint(host_, port_) + " is not a gradpack rendezvous root"};
    return OkStatus();
  }

  Status request(uint8_t op, const std::string& key, const std::vector<uint8_t>& value,
                 Clock::time_point deadline, uint8_t* status, std::vector<uint8_t>* reply) {
    if (key.size() > kTcpStoreMaxKey)
      return InvalidArgument("rendezvous key of " + std::to_string(key.size()) +
                             " bytes is over the limit of " + std::to_string(kTcpStoreMaxKey));
    if (broken_)
      return {Code::kRemote,
              "rendezvous root " + endpoint(host_, port_) + " closed the connection"};
    if (fd_ < 0) GP_RETURN_IF_ERROR(connect());
    std::vector<uint8_t> msg;
    msg.reserve(9 + key.size() + value.size());
    msg.push_back(op);
    append_le<uint32_t>(&msg, static_cast<uint32_t>(key.size()));
    msg.insert(msg.end(), key.begin(), key.end());
    append_le<uint32_t>(&msg, static_cast<uint32_t>(value.size()));
    msg.insert(msg.end(), value.begin(), value.end());
    GP_RETURN_IF_ERROR(send_all(msg, deadline));
    uint8_t head[5];
    GP_RETURN_IF_ERROR(recv_all(head, sizeof head, deadline));
    const uint32_t len = load_le<uint32_t>(head + 1);
    if (head[0] > kReplyInvalid || len > kTcpStoreMaxValue) {
      close_socket();
      broken_ = true;
      return {Code::kRemote,
              "rendezvous root " + endpoint(host_, port_) + " sent a malformed reply"};
    }
    reply->resize(len);
    GP_RETURN_IF_ERROR(recv_all(reply->data(), len, deadline));
    *status = head[0];
    return OkStatus();
  }

  const std::string host_;
  const uint16_t port_;
  const milliseconds connect_timeout_;
  std::mutex mu_;
  int fd_ = -1;
  bool broken_ = false;  // the root closed the connection: every later call is kRemote
  std::unique_ptr<Server> server_;
};

}  // namespace

Status make_tcp_store(const std::string& host, uint16_t port, bool serve,
                      std::chrono::milliseconds connect_timeout, std::shared_ptr<Store>* out) {
  std::unique_ptr<Server> server;
  std::string client_host = host;
  if (serve) {
    server = std::make_unique<Server>();
    GP_RETURN_IF_ERROR(server->start(host, port));
    port = server->port();
    // A wildcard listen address is reached through loopback.
    if (host == "0.0.0.0") client_host = "127.0.0.1";
    if (host == "::") client_host = "::1";
  }
  auto store = std::make_shared<TcpStore>(client_host, port, connect_timeout);
  store->set_server(std::move(server));
  GP_RETURN_IF_ERROR(store->connect());
  *out = std::move(store);
  return OkStatus();
}

uint16_t tcp_store_port(const Store& store) {
  const auto* tcp = dynamic_cast<const TcpStore*>(&store);
  return tcp != nullptr ? tcp->port() : 0;
}

}  // namespace gradpack
