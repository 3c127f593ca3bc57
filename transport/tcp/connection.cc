// SPDX-License-Identifier: Apache-2.0
#include "transport/tcp/connection.h"

#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

#include "common/little_endian.h"
#include "common/log.h"
#include "transport/tcp/device.h"

namespace gradpack::transport::tcp {
namespace {

using Clock = std::chrono::steady_clock;

// How many iovecs one sendmsg gathers: a run of small queued messages leaves in one syscall.
constexpr int kMaxIov = 64;

class TcpMemoryRegion final : public MemoryRegion {};

Status register_host_memory(MemoryKind kind, std::unique_ptr<MemoryRegion>* out) {
  if (kind != MemoryKind::kHost) {
    return Unsupported("the TCP transport moves host memory only (no CUDA buffers)");
  }
  *out = std::make_unique<TcpMemoryRegion>();
  return OkStatus();
}

// Receives up to this size are read by the caller's test() when they have arrived.
constexpr uint64_t kInlinePollBytes = 256 * 1024;

// A receive whose test() first lets the caller read what has arrived (Channel::poll_inline).
class TcpRecvRequest final : public Request {
 public:
  TcpRecvRequest(std::shared_ptr<RequestState> state, std::shared_ptr<Channel> channel,
                 bool poll_inline)
      : state_(std::move(state)), channel_(std::move(channel)), poll_inline_(poll_inline) {}
  Status test(bool* done, size_t* bytes) override {
    GP_RETURN_IF_ERROR(state_->test(done, bytes));
    if (*done || !poll_inline_) return OkStatus();
    channel_->poll_inline();
    return state_->test(done, bytes);
  }

 private:
  std::shared_ptr<RequestState> state_;
  std::shared_ptr<Channel> channel_;
  // Only small receives read inline: there the hand-off is the latency; a large one is moved by
  // the progress thread, and polling it would only cost the caller syscalls.
  bool poll_inline_;
};

Status post(Device& device, const std::shared_ptr<Channel>& channel, Operation op,
            std::unique_ptr<Request>* out) {
  GP_RETURN_IF_ERROR(channel->error());
  auto state = std::make_shared<RequestState>();
  op.request = state;
  if (channel->direction() == Channel::Direction::kRecv) {
    *out = std::make_unique<TcpRecvRequest>(state, channel, op.capacity <= kInlinePollBytes);
  } else {
    *out = std::make_unique<TcpRequest>(state);
  }
  // Fast path: when nothing of this channel waits for the progress thread, start the operation
  // here. A small message then leaves (or arrives) without waking the progress thread at all.
  // A large receive is not started here: reading a megabyte that is already queued would hold
  // the caller (and its sends and reductions) while the progress thread could do it.
  const bool may_inline =
      channel->direction() == Channel::Direction::kSend || op.capacity <= kInlinePollBytes;
  std::unique_lock<std::mutex> io(channel->io_mutex(), std::defer_lock);
  if (may_inline) io.try_lock();
  if (io.owns_lock()) {
    bool idle = false;
    {
      std::lock_guard<std::mutex> lock(device.queue_mutex());
      idle = channel->incoming.empty() && !channel->kicked;
    }
    if (idle) {
      channel->start_inline(std::move(op));
      return OkStatus();
    }
    io.unlock();
  }
  std::lock_guard<std::mutex> lock(device.queue_mutex());
  channel->incoming.push_back(std::move(op));
  device.kick(channel);
  return OkStatus();
}

class TcpSendConnection final : public SendConnection {
 public:
  TcpSendConnection(std::shared_ptr<Device> device, std::shared_ptr<Channel> channel)
      : device_(std::move(device)), channel_(std::move(channel)) {}
  ~TcpSendConnection() override { device_->detach(channel_); }

  Status register_memory(void*, size_t, MemoryKind kind,
                         std::unique_ptr<MemoryRegion>* out) override {
    return register_host_memory(kind, out);
  }
  Status isend(const void* data, size_t size, uint64_t tag, MemoryRegion*,
               std::unique_ptr<Request>* out) override {
    if (data == nullptr && size > 0) return InvalidArgument("isend: null buffer");
    Operation op;
    op.data = static_cast<uint8_t*>(const_cast<void*>(data));
    op.capacity = size;
    op.tag = tag;
    return post(*device_, channel_, std::move(op), out);
  }

 private:
  std::shared_ptr<Device> device_;
  std::shared_ptr<Channel> channel_;
};

class TcpRecvConnection final : public RecvConnection {
 public:
  TcpRecvConnection(std::shared_ptr<Device> device, std::shared_ptr<Channel> channel,
                    uint64_t hello)
      : device_(std::move(device)), channel_(std::move(channel)), hello_(hello) {}
  ~TcpRecvConnection() override { device_->detach(channel_); }

  Status register_memory(void*, size_t, MemoryKind kind,
                         std::unique_ptr<MemoryRegion>* out) override {
    return register_host_memory(kind, out);
  }
  Status irecv(void* data, size_t capacity, uint64_t tag, MemoryRegion*,
               std::unique_ptr<Request>* out) override {
    if (data == nullptr && capacity > 0) return InvalidArgument("irecv: null buffer");
    Operation op;
    op.data = static_cast<uint8_t*>(data);
    op.capacity = capacity;
    op.tag = tag;
    return post(*device_, channel_, std::move(op), out);
  }
  uint64_t hello() const override { return hello_; }

 private:
  std::shared_ptr<Device> device_;
  std::shared_ptr<Channel> channel_;
  uint64_t hello_;
};

bool would_block(int err) { return err == EAGAIN || err == EWOULDBLOCK; }

}  // namespace

uint64_t MessageLayout::begin(int part, uint64_t size) const {
  return std::min<uint64_t>(size, static_cast<uint64_t>(part) * chunk);
}

uint64_t MessageLayout::end(int part, uint64_t size) const {
  return part + 1 == parts ? size
                           : std::min<uint64_t>(size, static_cast<uint64_t>(part + 1) * chunk);
}

MessageLayout message_layout(uint64_t size, int nsocks) {
  MessageLayout layout;
  uint64_t parts = std::clamp<uint64_t>(size / kMinPartBytes, 1, static_cast<uint64_t>(nsocks));
  layout.parts = static_cast<int>(parts);
  layout.chunk = (size + parts - 1) / parts;
  return layout;
}

Channel::Channel(Direction direction, std::vector<Fd> fds, std::string peer,
                 ProgressSignal* progress)
    : direction_(direction), fds_(std::move(fds)), peer_(std::move(peer)), progress_(progress) {
  refs_.resize(fds_.size());
  for (size_t i = 0; i < refs_.size(); ++i) refs_[i] = SocketRef{this, i};
  cursors_.resize(fds_.size());
}

Status Channel::error() const {
  if (!failed_.load(std::memory_order_acquire)) return OkStatus();
  return error_;
}

void Channel::fail(const Status& error) {
  if (!failed_.load(std::memory_order_relaxed)) {
    error_ = error;
    failed_.store(true, std::memory_order_release);
    // A peer that leaves while nothing is in flight is an ordinary teardown, not worth a warning.
    if (error.code() != Code::kRemote || !active_.empty()) {
      GP_LOG_WARN(kNet, "tcp: connection with %s failed: %s", peer_.c_str(),
                  error.to_string().c_str());
    } else {
      GP_LOG_DEBUG(kNet, "tcp: connection with %s ended: %s", peer_.c_str(),
                   error.message().c_str());
    }
    // The stream is unusable now; shutting it down tells the peer at once instead of leaving
    // its pending operations to hang. The descriptors stay open (and in the epoll set, silent
    // once their last edge was seen) until the connection is destroyed.
    for (auto& fd : fds_) {
      if (fd) shutdown(fd.get(), SHUT_RDWR);
    }
  }
  // Messages already fully moved complete normally (a receive that fails on message k must not
  // take the finished message k-1 with it); only the rest fail.
  retire();
  for (auto& op : active_) op.request->fail(error_);
  if (!active_.empty()) progress_->bump();
  active_.clear();
  update_interest();
  for (auto& cursor : cursors_) cursor = Cursor{};
}

void Channel::fail_and_close(const Status& error, std::deque<Operation>* queued) {
  std::lock_guard<std::mutex> io(io_mu_);
  // Fail first, so that operations still queued fail too instead of being started.
  fail(error);
  kick_locked(queued);
  // Closing a socket with unread bytes makes the kernel send a reset, and a reset makes the peer
  // drop what it has received but not yet read: it would lose our last message (which may say
  // why we gave up). Discard what is queued here so the close is an orderly FIN.
  uint8_t sink[4096];
  for (auto& fd : fds_) {
    if (!fd) continue;
    int budget = 256;  // at most 1 MiB: a peer still streaming gets its reset
    while (budget-- > 0 && recv(fd.get(), sink, sizeof(sink), MSG_DONTWAIT) > 0) {
    }
    fd.reset();
  }
}

void Channel::close_sockets() {
  std::lock_guard<std::mutex> io(io_mu_);
  for (auto& fd : fds_) fd.reset();
}

void Channel::kick_from_queue(std::mutex& queue_mutex) {
  std::lock_guard<std::mutex> io(io_mu_);
  std::deque<Operation> queued;
  {
    std::lock_guard<std::mutex> lock(queue_mutex);
    queued.swap(incoming);
    kicked = false;
  }
  kick_locked(&queued);
}

void Channel::on_event(size_t index, uint32_t events) {
  std::lock_guard<std::mutex> io(io_mu_);
  event_locked(index, events);
}

void Channel::poll_inline() {
  std::unique_lock<std::mutex> io(io_mu_, std::try_to_lock);
  if (!io.owns_lock() || failed_.load(std::memory_order_relaxed) || active_.empty()) return;
  progress_all();
  update_interest();
}

void Channel::update_interest() {
  if (direction_ != Direction::kRecv || epoll_fd_ < 0) return;
  if (failed_.load(std::memory_order_relaxed)) {
    if (polled_) progress_->set_polled(this, {});
    polled_ = false;
    return;
  }
  bool large = false;
  for (const auto& op : active_) large = large || op.capacity > kInlinePollBytes;
  if (large != armed_) {
    for (size_t i = 0; i < fds_.size(); ++i) {
      epoll_event ev{};
      ev.events = (large ? EPOLLIN : 0u) | EPOLLOUT | EPOLLRDHUP | EPOLLET;
      ev.data.ptr = &refs_[i];
      epoll_ctl(epoll_fd_, EPOLL_CTL_MOD, fds_[i].get(), &ev);
    }
    armed_ = large;
  }
  const bool polled = !armed_ && !active_.empty();
  if (polled != polled_) {
    std::vector<int> fds;
    if (polled) {
      for (const auto& fd : fds_) fds.push_back(fd.get());
    }
    progress_->set_polled(this, fds);
    polled_ = polled;
  }
}

void Channel::start_inline(Operation op) {
  std::deque<Operation> one;
  one.push_back(std::move(op));
  kick_locked(&one);
}

void Channel::kick_locked(std::deque<Operation>* queued) {
  for (auto& op : *queued) {
    if (direction_ == Direction::kSend) {
      op.size = op.capacity;
      op.layout = message_layout(op.size, static_cast<int>(fds_.size()));
      op.parts_left = op.layout.parts;
      op.layout_known = true;
      store_le<uint64_t>(op.header, op.tag);
      store_le<uint64_t>(op.header + 8, op.size);
    }
    active_.push_back(std::move(op));
  }
  queued->clear();
  if (failed_.load(std::memory_order_relaxed)) {
    fail(error_);
    return;
  }
  progress_all();
  update_interest();
}

void Channel::event_locked(size_t index, uint32_t events) {
  if (failed_.load(std::memory_order_relaxed)) return;
  if (direction_ == Direction::kSend) {
    // The receiver never writes: readable means it closed or reset the connection.
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) {
      int err = 0;
      socklen_t len = sizeof(err);
      getsockopt(fds_[index].get(), SOL_SOCKET, SO_ERROR, &err, &len);
      fail(Status(Code::kRemote,
                  "peer " + peer_ + " closed the connection" +
                      (err != 0 ? std::string(" (") + std::strerror(err) + ")" : std::string())));
      return;
    }
    if (progress_send(index)) retire();
    return;
  }
  bool learned = false;
  if (!progress_recv(index, &learned)) return;
  if (learned) {
    progress_all();
  } else {
    retire();
  }
  update_interest();
}

void Channel::progress_all() {
  if (direction_ == Direction::kSend) {
    for (size_t i = 0; i < fds_.size(); ++i) {
      if (!progress_send(i)) return;
    }
    retire();
    return;
  }
  // A header read on socket 0 unblocks the other sockets' parts of that message.
  for (;;) {
    bool learned_any = false;
    for (size_t i = 0; i < fds_.size(); ++i) {
      bool learned = false;
      if (!progress_recv(i, &learned)) return;
      learned_any |= learned;
    }
    if (!learned_any) break;
  }
  retire();
}

void Channel::finish_part(size_t index) {
  Cursor& cursor = cursors_[index];
  --active_[cursor.message].parts_left;
  ++cursor.message;
  cursor.offset = 0;
}

// Completes the finished messages at the front, in posting order.
void Channel::retire() {
  size_t retired = 0;
  while (!active_.empty() && active_.front().layout_known && active_.front().parts_left == 0) {
    active_.front().request->complete(active_.front().size);
    active_.pop_front();
    ++retired;
  }
  if (retired == 0) return;
  progress_->bump();
  for (auto& cursor : cursors_) cursor.message -= retired;
}

bool Channel::progress_send(size_t index) {
  Cursor& cursor = cursors_[index];
  const int fd = fds_[index].get();
  const uint64_t header = index == 0 ? kMessageHeaderBytes : 0;
  for (;;) {
    // Skip messages too small to have a part on this socket.
    while (cursor.message < active_.size() &&
           static_cast<int>(index) >= active_[cursor.message].layout.parts) {
      ++cursor.message;
    }
    if (cursor.message >= active_.size()) return true;
    // Gather this socket's remaining shares of the queued messages.
    iovec iov[kMaxIov];
    int niov = 0;
    uint64_t offset = cursor.offset;
    for (size_t m = cursor.message; m < active_.size() && niov + 2 <= kMaxIov; ++m) {
      Operation& op = active_[m];
      if (static_cast<int>(index) >= op.layout.parts) continue;
      if (offset < header) {
        iov[niov++] = {op.header + offset, static_cast<size_t>(header - offset)};
      }
      uint64_t begin = op.layout.begin(static_cast<int>(index), op.size);
      uint64_t end = op.layout.end(static_cast<int>(index), op.size);
      uint64_t skip = offset > header ? offset - header : 0;
      if (begin + skip < end) iov[niov++] = {op.data + begin + skip, end - begin - skip};
      offset = 0;
    }
    msghdr msg{};
    msg.msg_iov = iov;
    msg.msg_iovlen = static_cast<size_t>(niov);
    ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (would_block(errno)) return true;
      int err = errno;
      fail(Status(Code::kRemote,
                  "peer " + peer_ + " closed the connection (send: " + std::strerror(err) + ")"));
      return false;
    }
    // Advance the cursor over what went out.
    uint64_t sent = static_cast<uint64_t>(n);
    while (cursor.message < active_.size()) {
      Operation& op = active_[cursor.message];
      if (static_cast<int>(index) >= op.layout.parts) {
        ++cursor.message;
        continue;
      }
      uint64_t share = header + op.layout.end(static_cast<int>(index), op.size) -
                       op.layout.begin(static_cast<int>(index), op.size);
      uint64_t take = std::min(sent, share - cursor.offset);
      cursor.offset += take;
      sent -= take;
      if (cursor.offset < share) break;
      finish_part(index);
    }
  }
}

bool Channel::check_header(Operation* op) {
  uint64_t tag = load_le<uint64_t>(op->header);
  uint64_t size = load_le<uint64_t>(op->header + 8);
  if (tag != op->tag) {
    fail(CorruptData("message from " + peer_ + " has tag " + std::to_string(tag) +
                     " but the receive expects tag " + std::to_string(op->tag)));
    return false;
  }
  if (size > op->capacity) {
    fail(CorruptData("message from " + peer_ + " has " + std::to_string(size) +
                     " bytes but the receive buffer holds " + std::to_string(op->capacity)));
    return false;
  }
  op->size = size;
  op->layout = message_layout(size, static_cast<int>(fds_.size()));
  op->parts_left = op->layout.parts;
  op->layout_known = true;
  return true;
}

bool Channel::progress_recv(size_t index, bool* learned_layout) {
  Cursor& cursor = cursors_[index];
  const int fd = fds_[index].get();
  for (;;) {
    if (cursor.message >= active_.size()) return true;
    Operation& op = active_[cursor.message];
    ssize_t n = 0;
    if (index == 0 && !op.layout_known) {
      n = recv(fd, op.header + op.header_done, kMessageHeaderBytes - op.header_done, 0);
      if (n > 0) {
        op.header_done += static_cast<size_t>(n);
        if (op.header_done < kMessageHeaderBytes) continue;
        if (!check_header(&op)) return false;
        *learned_layout = true;
        if (op.size == 0) finish_part(index);
        continue;
      }
    } else {
      if (!op.layout_known) return true;  // waits for socket 0 to bring the header
      if (static_cast<int>(index) >= op.layout.parts) {
        ++cursor.message;
        continue;
      }
      uint64_t begin = op.layout.begin(static_cast<int>(index), op.size);
      uint64_t end = op.layout.end(static_cast<int>(index), op.size);
      uint64_t want = end - begin - cursor.offset;
      if (want == 0) {
        finish_part(index);
        continue;
      }
      n = recv(fd, op.data + begin + cursor.offset, want, 0);
      if (n > 0) {
        cursor.offset += static_cast<uint64_t>(n);
        if (cursor.offset == end - begin) finish_part(index);
        continue;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) return true;
    std::string why = n == 0 ? std::string() : std::string(" (") + std::strerror(errno) + ")";
    fail(Status(Code::kRemote, "peer " + peer_ + " closed the connection" + why));
    return false;
  }
}

Status dial(const HandleData& target, uint64_t hello, int nsocks, std::chrono::milliseconds timeout,
            std::vector<Fd>* out) {
  out->clear();
  if (nsocks < 1 || nsocks > kMaxSockets) {
    return InvalidArgument("nsocks must be in [1, " + std::to_string(kMaxSockets) + "], got " +
                           std::to_string(nsocks));
  }
  const std::string where = format_address(target.address);
  const Clock::time_point deadline = Clock::now() + timeout;
  const socklen_t len =
      target.address.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  Hello message;
  message.key = target.key;
  message.nsocks = static_cast<uint16_t>(nsocks);
  message.value = hello;
  GP_RETURN_IF_ERROR(random_bytes(&message.connection_id, sizeof(message.connection_id)));

  // Start every connect, then wait for all of them together.
  std::vector<Fd> fds;
  for (int i = 0; i < nsocks; ++i) {
    Fd fd(socket(target.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return SystemError("socket");
    if (connect(fd.get(), reinterpret_cast<const sockaddr*>(&target.address), len) != 0 &&
        errno != EINPROGRESS) {
      if (errno == ECONNREFUSED) return Status(Code::kRemote, where + " refused the connection");
      return SystemError("connect to " + where);
    }
    fds.push_back(std::move(fd));
  }
  for (int i = 0; i < nsocks; ++i) {
    pollfd p{fds[i].get(), POLLOUT, 0};
    for (;;) {
      auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
      int n = poll(&p, 1, static_cast<int>(std::max<int64_t>(left, 0)));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return SystemError("poll");
      if (n == 0) {
        return Status(Code::kTimeout, "connecting to " + where + " timed out after " +
                                          std::to_string(timeout.count()) + " ms");
      }
      break;
    }
    int err = 0;
    socklen_t errlen = sizeof(err);
    getsockopt(fds[i].get(), SOL_SOCKET, SO_ERROR, &err, &errlen);
    if (err == ECONNREFUSED) return Status(Code::kRemote, where + " refused the connection");
    if (err != 0) {
      errno = err;
      return SystemError("connect to " + where);
    }
    GP_RETURN_IF_ERROR(set_nodelay(fds[i].get()));
    // The hello fits any fresh socket's send buffer; the loop only guards against the odd
    // partial write.
    message.index = static_cast<uint16_t>(i);
    uint8_t bytes[kHelloBytes];
    encode_hello(message, bytes);
    size_t sent = 0;
    while (sent < kHelloBytes) {
      ssize_t n = send(fds[i].get(), bytes + sent, kHelloBytes - sent, MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && would_block(errno)) {
        pollfd w{fds[i].get(), POLLOUT, 0};
        auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
        if (left <= 0 || poll(&w, 1, static_cast<int>(left)) == 0) {
          return Status(Code::kTimeout, "sending the hello to " + where + " timed out");
        }
        continue;
      }
      return Status(Code::kRemote,
                    where + " closed the connection during the hello: " + std::strerror(errno));
    }
  }
  *out = std::move(fds);
  return OkStatus();
}

Status make_send_connection(std::shared_ptr<Device> device, std::vector<Fd> fds,
                            std::unique_ptr<SendConnection>* out) {
  std::string peer = peer_address(fds[0].get());
  auto channel = std::make_shared<Channel>(Channel::Direction::kSend, std::move(fds), peer,
                                           &device->progress());
  GP_RETURN_IF_ERROR(device->attach(channel));
  *out = std::make_unique<TcpSendConnection>(std::move(device), std::move(channel));
  return OkStatus();
}

Status make_recv_connection(std::shared_ptr<Device> device, std::vector<Fd> fds, uint64_t hello,
                            std::unique_ptr<RecvConnection>* out) {
  // No TCP_NODELAY here: the receiving side never writes.
  std::string peer = peer_address(fds[0].get());
  auto channel = std::make_shared<Channel>(Channel::Direction::kRecv, std::move(fds), peer,
                                           &device->progress());
  GP_RETURN_IF_ERROR(device->attach(channel));
  *out = std::make_unique<TcpRecvConnection>(std::move(device), std::move(channel), hello);
  return OkStatus();
}

}  // namespace gradpack::transport::tcp
