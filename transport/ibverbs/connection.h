// SPDX-License-Identifier: Apache-2.0
// An RC queue-pair connection: the bootstrap wire messages that set it up and the data protocol.
//
// Setup (over the bootstrap TCP socket, integers little-endian):
//   connect, sender -> listener (64 bytes): u32 'GPIC', u16 version, u16 0, key[16], u64 hello,
//                                             QpInfo (32)
//   accept, listener -> sender (40 bytes):   u32 'GPIA', u16 version, u16 0, QpInfo (32)
//   QpInfo: u32 qpn, u32 psn, u16 lid, u8 mtu, u8 link layer, gid[16], u32 0
// The listener brings its QP to RTS before it replies; the sender does so when the reply arrives
// (at its first call after it), then sends READY on the QP. The bootstrap socket stays open: its
// end-of-file is how either side learns that the other is gone.
//
// Data (receiver posts first): each irecv sends a CTS control message {seq, tag, addr, capacity,
// rkey} to the sender; the k-th isend takes the k-th CTS, checks tag and size, RDMA-writes the
// payload in chunks of at most the port's max_msg_sz, then sends FIN {seq, tag, size, status}. RC
// ordering makes the payload visible before the FIN; a mismatch is a FIN with an error status, so
// both sides fail with kCorruptData naming the tags or sizes. Control messages are SENDs into
// kCtrlSlots pre-posted 64-byte slots on each side; at most kCtrlSlots CTSs are outstanding, which
// bounds the FINs and CTSs in flight by the slots posted, so no receiver-not-ready ever occurs.
//
// Flush (GPUDirect RDMA, NCCL's iflush): after a receive into GPU memory, the receiver RDMA-reads
// one byte of the buffer into a host slot through a second QP connected to itself. The read's
// completion means the NIC's earlier PCIe writes into that GPU memory have landed (a read response
// cannot pass posted writes), so the GPU sees the data. This is how NCCL's IB transport flushes
// (src/transport/net_ib.cc, ncclIbIflush and its gpuFlush QP). The loopback QP is made at the
// first flush; host buffers need none.
//
// Progress: each device has one progress thread (ProgressEngine) that polls the CQ and bootstrap
// socket of every live connection on it, spinning while some connection has work pending and
// sleeping on a condition variable when none has. isend/irecv queue the operation and post what
// they can at once; Request::test only reads the operation's state.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "transport/ibverbs/device.h"

namespace gradpack::transport {

inline constexpr uint32_t kIbConnectMagic = 0x43495047;  // "GPIC"
inline constexpr uint32_t kIbAcceptMagic = 0x41495047;   // "GPIA"
inline constexpr uint16_t kIbWireVersion = 1;
inline constexpr size_t kIbKeyBytes = 16;
inline constexpr size_t kQpInfoBytes = 32;
inline constexpr size_t kConnectMsgBytes = 32 + kQpInfoBytes;
inline constexpr size_t kAcceptMsgBytes = 8 + kQpInfoBytes;
inline constexpr int kCtrlSlots = 64;
inline constexpr size_t kCtrlSlotBytes = 64;
inline constexpr int kMaxFlushes = 32;  // NCCL_NET_MAX_REQUESTS: NCCL never has more in flight

struct QpInfo {
  uint32_t qpn = 0;
  uint32_t psn = 0;
  uint16_t lid = 0;
  uint8_t mtu = 0;  // enum ibv_mtu
  uint8_t link_layer = 0;
  uint8_t gid[16] = {};
};

struct ConnectMsg {
  uint8_t key[kIbKeyBytes] = {};
  uint64_t hello = 0;
  QpInfo qp;
};

void encode_connect(const ConnectMsg& msg, uint8_t out[kConnectMsgBytes]);
// kCorruptData for a bad magic or version (the key is checked by the caller).
Status decode_connect(const uint8_t in[kConnectMsgBytes], ConnectMsg* out);
void encode_accept(const QpInfo& qp, uint8_t out[kAcceptMsgBytes]);
Status decode_accept(const uint8_t in[kAcceptMsgBytes], QpInfo* out);

// Control messages on the QP.
enum class CtrlType : uint32_t { kReady = 1, kCts = 2, kFin = 3 };
enum class FinStatus : uint32_t { kOk = 0, kTagMismatch = 1, kTooLarge = 2 };
struct CtrlMsg {
  CtrlType type = CtrlType::kReady;
  uint32_t seq = 0;
  uint64_t tag = 0;
  uint64_t addr = 0;
  uint64_t size = 0;  // CTS: capacity; FIN: message size
  uint32_t rkey = 0;
  uint32_t status = 0;  // FIN: FinStatus
};
void encode_ctrl(const CtrlMsg& msg, uint8_t out[kCtrlSlotBytes]);
Status decode_ctrl(const uint8_t in[kCtrlSlotBytes], CtrlMsg* out);

// One queued isend or irecv, shared by the connection and its Request.
struct IbOp {
  uint32_t seq = 0;
  const uint8_t* data = nullptr;  // send: source; recv: destination
  uint64_t size = 0;              // send: message size; recv: capacity
  uint64_t tag = 0;
  uint32_t lkey = 0;
  uint32_t rkey = 0;
  std::unique_ptr<MemoryRegion> owned_mr;  // registered on the fly when the caller passed none
  // send side progress
  bool matched = false;  // has its CTS
  CtrlMsg cts;
  uint64_t posted = 0;  // payload bytes posted as RDMA writes
  bool fin_posted = false;
  FinStatus fin_status = FinStatus::kOk;
  // recv side progress
  bool cts_sent = false;
  // result
  bool done = false;
  uint64_t bytes = 0;
  Status status;
};

// The state one connection shares with its requests and the progress thread. All methods lock;
// progress() polls the CQ, the bootstrap socket and posts whatever the queues allow.
class IbConn : public std::enable_shared_from_this<IbConn> {
 public:
  IbConn(std::shared_ptr<IbDevice> device, bool sender, int fd);
  ~IbConn();

  // Creates the CQ, the QP (in INIT, control slots posted) and registers the control slots.
  Status init();
  QpInfo local_info() const;
  // Moves the QP through RTR to RTS towards `remote`.
  Status connect_qp(const QpInfo& remote);

  // The receiver side after accept: the QP is at RTS, CTSs wait for the sender's READY.
  void set_hello(uint64_t hello) { hello_ = hello; }
  uint64_t hello() const { return hello_; }
  const std::shared_ptr<IbDevice>& device() const { return device_; }

  // Queues an isend (sender) or irecv (receiver) and makes progress.
  Status post(const void* data, size_t size, uint64_t tag, MemoryRegion* mr,
              std::shared_ptr<IbOp>* out);
  Status test(const IbOp& op, bool* done, size_t* bytes);
  // Receiver: queues the flush read of `data` (registered in `mr`). *out stays null when `mr` is
  // host memory: nothing to flush.
  Status flush(const void* data, size_t size, MemoryRegion* mr, std::shared_ptr<IbOp>* out);

  enum class Progress { kIdle, kPending, kMoved };
  // One progress step (the progress thread): kMoved when a completion was handled, kPending when
  // operations are waiting on the peer, kIdle when there is nothing to do.
  Progress progress();

 private:
  Status progress_locked(bool* any);
  Status poll_cq_locked(bool* any);
  Status check_socket_locked();
  Status read_accept_locked();
  Status handle_ctrl_locked(const CtrlMsg& msg);
  Status post_ctrl_recv_locked(int slot);
  Status post_ctrl_send_locked(const CtrlMsg& msg);
  Status post_work_locked();
  Status fail_locked(const Status& status);
  Status qp_to_init(ibv_qp* qp);
  Status qp_to_rts(ibv_qp* qp, uint32_t psn, const QpInfo& remote);
  Status make_flush_qp_locked();
  Status complete_flush_locked();

  std::shared_ptr<IbDevice> device_;
  const bool sender_;
  int fd_;
  uint64_t hello_ = 0;
  std::mutex mu_;
  Status error_;
  ibv_cq* cq_ = nullptr;
  ibv_qp* qp_ = nullptr;
  uint32_t psn_ = 0;
  int max_send_wr_ = 0;
  int send_outstanding_ = 0;
  uint64_t max_chunk_ = 0;
  std::unique_ptr<uint8_t[]> ctrl_;  // kCtrlSlots receive slots, then kCtrlSlots send slots
  std::unique_ptr<MemoryRegion> ctrl_mr_;
  int ctrl_send_next_ = 0;
  int ctrl_send_free_ = kCtrlSlots;
  bool ready_ = false;  // sender: QP at RTS; receiver: READY received
  uint8_t accept_buf_[kAcceptMsgBytes] = {};
  size_t accept_got_ = 0;
  std::chrono::steady_clock::time_point next_socket_check_{};
  uint32_t next_seq_ = 0;
  std::deque<std::shared_ptr<IbOp>> ops_;  // not yet done, in posting order
  std::deque<CtrlMsg> cts_;                // sender: CTSs not yet matched
  int cts_outstanding_ = 0;                // receiver: CTSs sent whose FIN has not arrived
  ibv_qp* flush_qp_ = nullptr;             // receiver: the loopback QP of flush reads
  int flush_depth_ = 0;                    // its send queue: flushes in flight at most
  std::deque<std::shared_ptr<IbOp>> flushes_;  // posted flush reads, in posting order
};

// The progress thread of one device; started with the device's first connection. Safe to destroy
// from its own thread (the last reference to a connection may be dropped there).
class ProgressEngine {
 public:
  ProgressEngine();
  ~ProgressEngine();
  void add(const std::shared_ptr<IbConn>& conn);
  void wake();
  // Restricts the progress thread to `cpus` (logged at debug; a refused set is ignored).
  void pin(const std::vector<int>& cpus, const std::string& device);

 private:
  struct State;
  static void run(std::shared_ptr<State> state);
  std::shared_ptr<State> state_;
  std::thread thread_;
};

class IbSendConnection : public SendConnection {
 public:
  explicit IbSendConnection(std::shared_ptr<IbConn> conn) : conn_(std::move(conn)) {}
  Status register_memory(void* data, size_t size, MemoryKind kind,
                         std::unique_ptr<MemoryRegion>* out) override;
  Status isend(const void* data, size_t size, uint64_t tag, MemoryRegion* mr,
               std::unique_ptr<Request>* out) override;
  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<MemoryRegion>* out) override;

 private:
  std::shared_ptr<IbConn> conn_;
};

class IbRecvConnection : public RecvConnection {
 public:
  explicit IbRecvConnection(std::shared_ptr<IbConn> conn) : conn_(std::move(conn)) {}
  Status register_memory(void* data, size_t size, MemoryKind kind,
                         std::unique_ptr<MemoryRegion>* out) override;
  Status irecv(void* data, size_t capacity, uint64_t tag, MemoryRegion* mr,
               std::unique_ptr<Request>* out) override;
  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<MemoryRegion>* out) override;
  Status iflush(void* data, size_t size, MemoryRegion* mr, std::unique_ptr<Request>* out) override;
  uint64_t hello() const override { return conn_->hello(); }

 private:
  std::shared_ptr<IbConn> conn_;
};

}  // namespace gradpack::transport
