// SPDX-License-Identifier: Apache-2.0
// TCP connections: the one-way message stream of a SendConnection/RecvConnection pair, striped
// over nsocks sockets.
//
// Wire format of one message (integers little-endian): socket 0 carries a 16-byte header
// (u64 tag, u64 size); the payload is cut into message_layout(size, nsocks).parts contiguous parts
// of `chunk` bytes (the last one shorter), part i travelling on socket i right after that
// socket's share of the previous message. The layout depends only on the size and nsocks, so the
// receiver knows where every byte goes once it has the header. Bytes go straight between the
// sockets and the caller's buffer.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "transport/progress_signal.h"
#include "transport/tcp/listener.h"
#include "transport/tcp/request.h"
#include "transport/tcp/socket.h"
#include "transport/transport.h"

namespace gradpack::transport::tcp {

class Device;

inline constexpr size_t kMessageHeaderBytes = 16;
// A part is at least this long, so small messages use fewer sockets (one below 128 KiB).
inline constexpr uint64_t kMinPartBytes = 64 * 1024;

struct MessageLayout {
  int parts = 1;
  uint64_t chunk = 0;
  uint64_t begin(int part, uint64_t size) const;
  uint64_t end(int part, uint64_t size) const;
};
MessageLayout message_layout(uint64_t size, int nsocks);

// One queued isend or irecv.
struct Operation {
  uint8_t* data = nullptr;
  uint64_t capacity = 0;  // send: the message size; recv: the buffer size
  uint64_t tag = 0;
  std::shared_ptr<RequestState> request;
  // Progress thread only.
  uint8_t header[kMessageHeaderBytes] = {};
  size_t header_done = 0;
  bool layout_known = false;  // recv: the header has arrived and was checked
  uint64_t size = 0;          // the message size
  MessageLayout layout;
  int parts_left = 0;
};

// The socket side of one connection, driven by its device's progress thread.
class Channel {
 public:
  enum class Direction { kSend, kRecv };
  struct SocketRef {
    Channel* channel;
    size_t index;
  };

  // `progress` is bumped whenever one of the channel's requests completes or fails.
  Channel(Direction direction, std::vector<Fd> fds, std::string peer, ProgressSignal* progress);
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  Direction direction() const { return direction_; }
  const std::string& peer() const { return peer_; }
  size_t socket_count() const { return fds_.size(); }
  int fd(size_t index) const { return fds_[index].get(); }
  SocketRef* ref(size_t index) { return &refs_[index]; }

  // Any thread: the stored failure, if any.
  Status error() const;

  // The lock around the channel's socket state (active_, cursors_, the sockets' I/O). The
  // progress thread holds it while it works on the channel; a caller thread that finds the
  // channel idle takes it to start its operation itself (start_inline), which saves two thread
  // hand-offs per message on the latency path.
  std::mutex& io_mutex() { return io_mu_; }

  // Progress thread; each takes io_mutex().
  // Takes io_mutex() and then, under `queue_mutex`, the operations queued in `incoming`, and
  // starts them. Taking the I/O lock first matters: a caller's start_inline() must not slip
  // a later operation in between the swap and the start of earlier ones.
  void kick_from_queue(std::mutex& queue_mutex);
  void on_event(size_t index, uint32_t events);
  void fail_and_close(const Status& error, std::deque<Operation>* queued);
  void close_sockets();

  // Caller thread, holding io_mutex(), with nothing queued in `incoming`: moves as much of `op`
  // as the sockets take now; the progress thread finishes the rest.
  void start_inline(Operation op);
  // Caller thread: if no other thread is working on the channel, moves what the sockets hold
  // for its started operations now (a waiting receiver reads its own message instead of waiting
  // for the progress thread to wake up and hand it over).
  void poll_inline();

  // Device::attach: the epoll set the channel's sockets are in (for update_interest()).
  void set_epoll(int epoll_fd) { epoll_fd_ = epoll_fd; }

  // Guarded by Device::queue_mutex().
  std::deque<Operation> incoming;
  bool kicked = false;

 private:
  struct Cursor {
    size_t message = 0;   // index into active_
    uint64_t offset = 0;  // bytes of this socket's share (header included on socket 0) done
  };

  void kick_locked(std::deque<Operation>* queued);
  // Receive channels: the progress thread watches the sockets (EPOLLIN armed) only while a large
  // receive is active; small receives are read by their callers, who sleep in
  // ProgressSignal::wait() on the sockets registered there. Called after every change of active_.
  void update_interest();
  void event_locked(size_t index, uint32_t events);
  void fail(const Status& error);
  // Moves as many bytes as the socket takes/gives now. Returns false once the channel failed.
  bool progress_send(size_t index);
  bool progress_recv(size_t index, bool* learned_layout);
  bool check_header(Operation* op);
  void progress_all();
  void retire();
  void finish_part(size_t index);

  const Direction direction_;
  std::vector<Fd> fds_;
  std::vector<SocketRef> refs_;
  const std::string peer_;
  ProgressSignal* const progress_;
  std::mutex io_mu_;
  std::atomic<bool> failed_{false};
  Status error_;  // written before failed_ turns true
  int epoll_fd_ = -1;
  bool armed_ = true;    // EPOLLIN in the epoll set (as attach registers it)
  bool polled_ = false;  // sockets registered with the ProgressSignal for callers to poll
  // Under io_mu_.
  std::deque<Operation> active_;
  std::vector<Cursor> cursors_;
};

// Opens `nsocks` sockets to the listener described by `target`, each sending its hello, and
// returns them connected, non-blocking, with TCP_NODELAY. Never waits for the remote accept().
// Errors: kTimeout (no answer within `timeout`), kRemote (refused), kSystem.
Status dial(const HandleData& target, uint64_t hello, int nsocks, std::chrono::milliseconds timeout,
            std::vector<Fd>* out);

Status make_send_connection(std::shared_ptr<Device> device, std::vector<Fd> fds,
                            std::unique_ptr<SendConnection>* out);
Status make_recv_connection(std::shared_ptr<Device> device, std::vector<Fd> fds, uint64_t hello,
                            std::unique_ptr<RecvConnection>* out);

}  // namespace gradpack::transport::tcp
