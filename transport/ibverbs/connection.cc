// SPDX-License-Identifier: Apache-2.0
#include "transport/ibverbs/connection.h"

#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <condition_variable>
#include <cstring>

#include "common/affinity.h"
#include "common/little_endian.h"
#include "common/log.h"
#include "transport/ibverbs/request.h"

namespace gradpack::transport {
namespace {

// wr_id: the kind in the top byte, a control slot in the low bits.
enum class WrKind : uint64_t { kCtrlRecv = 1, kCtrlSend = 2, kWrite = 3, kFin = 4, kFlush = 5 };
uint64_t make_wr_id(WrKind kind, uint64_t slot) {
  return (static_cast<uint64_t>(kind) << 56) | slot;
}
WrKind wr_kind(uint64_t id) { return static_cast<WrKind>(id >> 56); }
int wr_slot(uint64_t id) { return static_cast<int>(id & 0xffffffff); }

constexpr uint64_t kMaxChunk = uint64_t{1} << 30;
constexpr int kMaxSendWr = 256;
constexpr auto kSocketCheckPeriod = std::chrono::milliseconds(5);
// ctrl_ holds kCtrlSlots receive slots, kCtrlSlots send slots, then the flush reads' landing slot.
constexpr size_t kCtrlBytes = (2 * kCtrlSlots + 1) * kCtrlSlotBytes;
constexpr size_t kFlushSlotOffset = 2 * kCtrlSlots * kCtrlSlotBytes;

void encode_qp(const QpInfo& qp, uint8_t* out) {
  std::memset(out, 0, kQpInfoBytes);
  store_le<uint32_t>(out, qp.qpn);
  store_le<uint32_t>(out + 4, qp.psn);
  store_le<uint16_t>(out + 8, qp.lid);
  out[10] = qp.mtu;
  out[11] = qp.link_layer;
  std::memcpy(out + 12, qp.gid, 16);
}

void decode_qp(const uint8_t* in, QpInfo* out) {
  out->qpn = load_le<uint32_t>(in);
  out->psn = load_le<uint32_t>(in + 4);
  out->lid = load_le<uint16_t>(in + 8);
  out->mtu = in[10];
  out->link_layer = in[11];
  std::memcpy(out->gid, in + 12, 16);
}

uint32_t random_psn() {
  uint32_t value = 0;
  if (getrandom(&value, sizeof(value), 0) != sizeof(value)) value = 0x1234;
  return value & 0xffffff;
}

}  // namespace

void encode_connect(const ConnectMsg& msg, uint8_t out[kConnectMsgBytes]) {
  store_le<uint32_t>(out, kIbConnectMagic);
  store_le<uint16_t>(out + 4, kIbWireVersion);
  store_le<uint16_t>(out + 6, 0);
  std::memcpy(out + 8, msg.key, kIbKeyBytes);
  store_le<uint64_t>(out + 24, msg.hello);
  encode_qp(msg.qp, out + 32);
}

Status decode_connect(const uint8_t in[kConnectMsgBytes], ConnectMsg* out) {
  if (load_le<uint32_t>(in) != kIbConnectMagic) {
    return CorruptData("ib: connect message has a bad magic (not a gradpack ib peer)");
  }
  if (load_le<uint16_t>(in + 4) != kIbWireVersion) {
    return CorruptData("ib: connect message has wire version " +
                       std::to_string(load_le<uint16_t>(in + 4)) + ", expected " +
                       std::to_string(kIbWireVersion));
  }
  std::memcpy(out->key, in + 8, kIbKeyBytes);
  out->hello = load_le<uint64_t>(in + 24);
  decode_qp(in + 32, &out->qp);
  return OkStatus();
}

void encode_accept(const QpInfo& qp, uint8_t out[kAcceptMsgBytes]) {
  store_le<uint32_t>(out, kIbAcceptMagic);
  store_le<uint16_t>(out + 4, kIbWireVersion);
  store_le<uint16_t>(out + 6, 0);
  encode_qp(qp, out + 8);
}

Status decode_accept(const uint8_t in[kAcceptMsgBytes], QpInfo* out) {
  if (load_le<uint32_t>(in) != kIbAcceptMagic || load_le<uint16_t>(in + 4) != kIbWireVersion) {
    return CorruptData("ib: accept message has a bad magic or version");
  }
  decode_qp(in + 8, out);
  return OkStatus();
}

void encode_ctrl(const CtrlMsg& msg, uint8_t out[kCtrlSlotBytes]) {
  std::memset(out, 0, kCtrlSlotBytes);
  store_le<uint32_t>(out, static_cast<uint32_t>(msg.type));
  store_le<uint32_t>(out + 4, msg.seq);
  store_le<uint64_t>(out + 8, msg.tag);
  store_le<uint64_t>(out + 16, msg.addr);
  store_le<uint64_t>(out + 24, msg.size);
  store_le<uint32_t>(out + 32, msg.rkey);
  store_le<uint32_t>(out + 36, msg.status);
}

Status decode_ctrl(const uint8_t in[kCtrlSlotBytes], CtrlMsg* out) {
  const uint32_t type = load_le<uint32_t>(in);
  if (type < static_cast<uint32_t>(CtrlType::kReady) ||
      type > static_cast<uint32_t>(CtrlType::kFin)) {
    return CorruptData("ib: control message of unknown type " + std::to_string(type));
  }
  out->type = static_cast<CtrlType>(type);
  out->seq = load_le<uint32_t>(in + 4);
  out->tag = load_le<uint64_t>(in + 8);
  out->addr = load_le<uint64_t>(in + 16);
  out->size = load_le<uint64_t>(in + 24);
  out->rkey = load_le<uint32_t>(in + 32);
  out->status = load_le<uint32_t>(in + 36);
  return OkStatus();
}

IbConn::IbConn(std::shared_ptr<IbDevice> device, bool sender, int fd)
    : device_(std::move(device)), sender_(sender), fd_(fd) {}

IbConn::~IbConn() {
  const VerbsApi& api = device_->api();
  if (flush_qp_ != nullptr) api.destroy_qp(flush_qp_);
  if (qp_ != nullptr) api.destroy_qp(qp_);
  if (cq_ != nullptr) api.destroy_cq(cq_);
  ctrl_mr_.reset();
  if (fd_ >= 0) close(fd_);
}

Status IbConn::init() {
  const VerbsApi& api = device_->api();
  const std::string& name = device_->info().name;
  max_send_wr_ = std::min(kMaxSendWr, device_->device_attr().max_qp_wr);
  const uint32_t port_max = device_->port_attr().max_msg_sz;
  max_chunk_ = port_max == 0 ? kMaxChunk : std::min<uint64_t>(port_max, kMaxChunk);
  ctrl_ = std::make_unique<uint8_t[]>(kCtrlBytes);
  GP_RETURN_IF_ERROR(
      device_->register_memory(ctrl_.get(), kCtrlBytes, MemoryKind::kHost, &ctrl_mr_));
  errno = 0;
  // Room for the flush QP's completions too (receivers that flush; no cost to the others).
  cq_ = api.create_cq(device_->context(), max_send_wr_ + kCtrlSlots + kMaxFlushes, nullptr, nullptr,
                      0);
  if (cq_ == nullptr) return SystemError("ib: ibv_create_cq on " + name + " failed");
  ibv_qp_init_attr init{};
  init.send_cq = cq_;
  init.recv_cq = cq_;
  init.qp_type = IBV_QPT_RC;
  init.cap.max_send_wr = static_cast<uint32_t>(max_send_wr_);
  init.cap.max_recv_wr = kCtrlSlots;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  qp_ = api.create_qp(device_->pd(), &init);
  if (qp_ == nullptr) return SystemError("ib: ibv_create_qp on " + name + " failed");
  GP_RETURN_IF_ERROR(qp_to_init(qp_));
  psn_ = random_psn();
  for (int slot = 0; slot < kCtrlSlots; ++slot) GP_RETURN_IF_ERROR(post_ctrl_recv_locked(slot));
  return OkStatus();
}

QpInfo IbConn::local_info() const {
  QpInfo info;
  info.qpn = qp_->qp_num;
  info.psn = psn_;
  info.lid = device_->port_attr().lid;
  info.mtu = static_cast<uint8_t>(device_->port_attr().active_mtu);
  info.link_layer = device_->port_attr().link_layer;
  std::memcpy(info.gid, device_->gid().raw, 16);
  return info;
}

Status IbConn::qp_to_init(ibv_qp* qp) {
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_INIT;
  attr.pkey_index = 0;
  attr.port_num = device_->port();
  // REMOTE_READ: the flush QP reads from this side's own GPU buffers.
  attr.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
  if (device_->api().modify_qp(
          qp, &attr, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS) != 0) {
    return SystemError("ib: moving a QP to INIT on " + device_->info().name + " failed");
  }
  return OkStatus();
}

Status IbConn::connect_qp(const QpInfo& remote) {
  if (remote.link_layer != device_->port_attr().link_layer) {
    return Status(
        Code::kRemote,
        "ib: peer's port is " +
            std::string(remote.link_layer == IBV_LINK_LAYER_ETHERNET ? "RoCE" : "InfiniBand") +
            ", " + device_->info().name + " is not: no RC connection between them");
  }
  return qp_to_rts(qp_, psn_, remote);
}

Status IbConn::qp_to_rts(ibv_qp* qp, uint32_t psn, const QpInfo& remote) {
  const VerbsApi& api = device_->api();
  const std::string& name = device_->info().name;
  ibv_qp_attr attr{};
  attr.qp_state = IBV_QPS_RTR;
  attr.path_mtu = static_cast<ibv_mtu>(
      std::min<int>(remote.mtu, static_cast<int>(device_->port_attr().active_mtu)));
  attr.dest_qp_num = remote.qpn;
  attr.rq_psn = remote.psn;
  attr.max_dest_rd_atomic = 1;
  attr.min_rnr_timer = 12;
  attr.ah_attr.dlid = remote.lid;
  attr.ah_attr.sl = 0;
  attr.ah_attr.src_path_bits = 0;
  attr.ah_attr.port_num = device_->port();
  if (device_->ethernet()) {
    // RoCE routes by GID; InfiniBand within one subnet by LID.
    attr.ah_attr.is_global = 1;
    std::memcpy(attr.ah_attr.grh.dgid.raw, remote.gid, 16);
    attr.ah_attr.grh.sgid_index = static_cast<uint8_t>(device_->gid_index());
    attr.ah_attr.grh.hop_limit = 255;
  }
  if (api.modify_qp(qp, &attr,
                    IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
                        IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER) != 0) {
    return SystemError("ib: moving a QP to RTR on " + name + " failed");
  }
  attr = ibv_qp_attr{};
  attr.qp_state = IBV_QPS_RTS;
  attr.timeout = 14;
  attr.retry_cnt = 7;
  attr.rnr_retry = 7;
  attr.sq_psn = psn;
  attr.max_rd_atomic = 1;
  if (api.modify_qp(qp, &attr,
                    IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
                        IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC) != 0) {
    return SystemError("ib: moving a QP to RTS on " + name + " failed");
  }
  return OkStatus();
}

Status IbConn::make_flush_qp_locked() {
  ibv_qp_init_attr init{};
  init.send_cq = cq_;
  init.recv_cq = cq_;
  init.qp_type = IBV_QPT_RC;
  const int depth = std::min(kMaxFlushes, device_->device_attr().max_qp_wr);
  init.cap.max_send_wr = static_cast<uint32_t>(depth);
  init.cap.max_recv_wr = 1;
  init.cap.max_send_sge = 1;
  init.cap.max_recv_sge = 1;
  errno = 0;
  ibv_qp* qp = device_->api().create_qp(device_->pd(), &init);
  if (qp == nullptr) {
    return SystemError("ib: ibv_create_qp of the flush QP on " + device_->info().name + " failed");
  }
  // Connected to itself: its own number, LID and GID.
  QpInfo self = local_info();
  self.qpn = qp->qp_num;
  self.psn = random_psn();
  Status status = qp_to_init(qp);
  if (status.ok()) status = qp_to_rts(qp, self.psn, self);
  if (!status.ok()) {
    device_->api().destroy_qp(qp);
    return status;
  }
  flush_qp_ = qp;
  flush_depth_ = depth;
  return OkStatus();
}

Status IbConn::flush(const void* data, size_t size, MemoryRegion* mr, std::shared_ptr<IbOp>* out) {
  out->reset();
  auto* region = dynamic_cast<IbMemoryRegion*>(mr);
  if (region == nullptr || !region->gpu() || size == 0) return OkStatus();  // host: coherent
  if (sender_) return Internal("ib: flush on a send connection");
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  if (flush_qp_ == nullptr) GP_RETURN_IF_ERROR(make_flush_qp_locked());
  if (static_cast<int>(flushes_.size()) >= flush_depth_) {
    return Internal("ib: more than " + std::to_string(flush_depth_) + " flushes in flight");
  }
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(ctrl_.get() + kFlushSlotOffset);
  sge.length = 1;
  sge.lkey = static_cast<IbMemoryRegion*>(ctrl_mr_.get())->lkey();
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(WrKind::kFlush, 0);
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_RDMA_READ;
  wr.send_flags = IBV_SEND_SIGNALED;
  wr.wr.rdma.remote_addr = reinterpret_cast<uintptr_t>(data);
  wr.wr.rdma.rkey = region->rkey();
  ibv_send_wr* bad = nullptr;
  if (ibv_post_send(flush_qp_, &wr, &bad) != 0) {
    return fail_locked(SystemError("ib: ibv_post_send (flush read) failed"));
  }
  auto op = std::make_shared<IbOp>();
  op->data = static_cast<const uint8_t*>(data);
  op->size = size;
  flushes_.push_back(op);
  *out = std::move(op);
  device_->engine().wake();
  return OkStatus();
}

Status IbConn::complete_flush_locked() {
  // The flush QP completes in order, like every RC send queue.
  if (flushes_.empty()) return Internal("ib: flush completion without a pending flush");
  flushes_.front()->done = true;
  flushes_.pop_front();
  return OkStatus();
}

Status IbConn::post(const void* data, size_t size, uint64_t tag, MemoryRegion* mr,
                    std::shared_ptr<IbOp>* out) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) return error_;
  auto op = std::make_shared<IbOp>();
  op->data = static_cast<const uint8_t*>(data);
  op->size = size;
  op->tag = tag;
  if (size > 0) {
    if (data == nullptr) return InvalidArgument("ib: null buffer for a message of size > 0");
    if (mr == nullptr) {
      GP_RETURN_IF_ERROR(device_->register_memory(data, size, MemoryKind::kHost, &op->owned_mr));
      mr = op->owned_mr.get();
    }
    auto* region = dynamic_cast<IbMemoryRegion*>(mr);
    if (region == nullptr) {
      return InvalidArgument("ib: the memory region was not registered by an ib connection");
    }
    op->lkey = region->lkey();
    op->rkey = region->rkey();
  }
  op->seq = next_seq_++;  // only now: a refused call must not leave a gap in the sequence
  ops_.push_back(op);
  *out = std::move(op);
  bool any = false;
  GP_RETURN_IF_ERROR(progress_locked(&any));
  device_->engine().wake();
  return OkStatus();
}

Status IbConn::test(const IbOp& op, bool* done, size_t* bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  *done = false;
  if (op.done) {
    *done = true;
    if (bytes != nullptr) *bytes = op.bytes;
    return OkStatus();
  }
  if (!op.status.ok()) return op.status;
  return error_;
}

IbConn::Progress IbConn::progress() {
  std::lock_guard<std::mutex> lock(mu_);
  if (!error_.ok()) return Progress::kIdle;
  bool any = false;
  progress_locked(&any).ignore();  // stored in error_
  if (!error_.ok()) return Progress::kIdle;
  if (any) return Progress::kMoved;
  return !ops_.empty() || !flushes_.empty() || (sender_ && !ready_) ? Progress::kPending
                                                                    : Progress::kIdle;
}

Status IbConn::fail_locked(const Status& status) {
  if (error_.ok()) {
    GP_LOG_WARN(kNet, "ib: %s connection on %s failed: %s", sender_ ? "send" : "recv",
                device_->info().name.c_str(), status.to_string().c_str());
  }
  error_.update(status);
  return error_;
}

Status IbConn::progress_locked(bool* any) {
  if (!error_.ok()) return error_;
  if (sender_ && !ready_) {
    GP_RETURN_IF_ERROR(read_accept_locked());
    if (ready_) *any = true;
  }
  Status status = poll_cq_locked(any);
  if (!status.ok()) return fail_locked(status);
  status = post_work_locked();
  if (!status.ok()) return fail_locked(status);
  // The sender reads its socket in read_accept_locked until the reply arrived.
  if (!*any && (ready_ || !sender_)) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= next_socket_check_) {
      next_socket_check_ = now + kSocketCheckPeriod;
      status = check_socket_locked();
      if (!status.ok()) return fail_locked(status);
    }
  }
  return OkStatus();
}

Status IbConn::read_accept_locked() {
  while (accept_got_ < kAcceptMsgBytes) {
    const ssize_t n =
        recv(fd_, accept_buf_ + accept_got_, kAcceptMsgBytes - accept_got_, MSG_DONTWAIT);
    if (n > 0) {
      accept_got_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return OkStatus();
    return fail_locked(Status(Code::kRemote,
                              "ib: the listener closed the bootstrap connection "
                              "before accepting (wrong key or listener gone)"));
  }
  QpInfo remote;
  Status status = decode_accept(accept_buf_, &remote);
  if (status.ok()) status = connect_qp(remote);
  if (!status.ok()) return fail_locked(status);
  ready_ = true;
  CtrlMsg ready;
  ready.type = CtrlType::kReady;
  status = post_ctrl_send_locked(ready);
  if (!status.ok()) return fail_locked(status);
  return OkStatus();
}

Status IbConn::check_socket_locked() {
  uint8_t byte = 0;
  const ssize_t n = recv(fd_, &byte, 1, MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return OkStatus();
  if (n > 0) return CorruptData("ib: unexpected bytes on the bootstrap connection");
  return Status(Code::kRemote, "ib: the peer closed its connection (process gone?)");
}

Status IbConn::poll_cq_locked(bool* any) {
  ibv_wc wcs[16];
  for (;;) {
    const int n = ibv_poll_cq(cq_, 16, wcs);
    if (n < 0) return SystemError("ib: ibv_poll_cq failed");
    if (n == 0) return OkStatus();
    *any = true;
    for (int i = 0; i < n; ++i) {
      const ibv_wc& wc = wcs[i];
      if (wc.status != IBV_WC_SUCCESS) {
        return Status(Code::kRemote, "ib: work completion failed with status " +
                                         std::to_string(static_cast<int>(wc.status)) +
                                         " (vendor error " + std::to_string(wc.vendor_err) +
                                         "): peer gone or link down");
      }
      const WrKind kind = wr_kind(wc.wr_id);
      const int slot = wr_slot(wc.wr_id);
      switch (kind) {
        case WrKind::kCtrlRecv: {
          CtrlMsg msg;
          GP_RETURN_IF_ERROR(decode_ctrl(ctrl_.get() + slot * kCtrlSlotBytes, &msg));
          GP_RETURN_IF_ERROR(post_ctrl_recv_locked(slot));
          GP_RETURN_IF_ERROR(handle_ctrl_locked(msg));
          break;
        }
        case WrKind::kCtrlSend:
          --send_outstanding_;
          ++ctrl_send_free_;
          break;
        case WrKind::kWrite:
          --send_outstanding_;
          break;
        case WrKind::kFlush:
          GP_RETURN_IF_ERROR(complete_flush_locked());
          break;
        case WrKind::kFin: {
          --send_outstanding_;
          ++ctrl_send_free_;
          // The FIN completes after every write before it (RC completes in order).
          if (ops_.empty() || !ops_.front()->fin_posted) {
            return Internal("ib: FIN completion without a pending send");
          }
          std::shared_ptr<IbOp> op = ops_.front();
          ops_.pop_front();
          op->owned_mr.reset();
          if (op->fin_status == FinStatus::kOk) {
            op->done = true;
            op->bytes = op->size;
          } else {
            op->status = CorruptData(
                op->fin_status == FinStatus::kTagMismatch
                    ? "ib: send of tag " + std::to_string(op->tag) + " met a receive of tag " +
                          std::to_string(op->cts.tag)
                    : "ib: send of " + std::to_string(op->size) +
                          " bytes met a receive of capacity " + std::to_string(op->cts.size));
            return op->status;
          }
          break;
        }
        default:
          return Internal("ib: completion with an unknown wr_id");
      }
    }
  }
}

Status IbConn::handle_ctrl_locked(const CtrlMsg& msg) {
  if (sender_) {
    if (msg.type != CtrlType::kCts) return CorruptData("ib: sender got a control message not CTS");
    cts_.push_back(msg);
    return OkStatus();
  }
  if (msg.type == CtrlType::kReady) {
    ready_ = true;
    return OkStatus();
  }
  if (msg.type != CtrlType::kFin || ops_.empty() || !ops_.front()->cts_sent ||
      ops_.front()->seq != msg.seq) {
    return CorruptData("ib: unexpected control message on a receive connection");
  }
  std::shared_ptr<IbOp> op = ops_.front();
  ops_.pop_front();
  --cts_outstanding_;
  op->owned_mr.reset();
  if (msg.status == static_cast<uint32_t>(FinStatus::kOk) && msg.tag == op->tag &&
      msg.size <= op->size) {
    op->done = true;
    op->bytes = msg.size;
    return OkStatus();
  }
  if (msg.tag != op->tag) {
    op->status = CorruptData("ib: message of tag " + std::to_string(msg.tag) +
                             " arrived for a receive of tag " + std::to_string(op->tag));
  } else {
    op->status =
        CorruptData("ib: message of " + std::to_string(msg.size) +
                    " bytes does not fit the receive of capacity " + std::to_string(op->size));
  }
  return op->status;
}

Status IbConn::post_ctrl_recv_locked(int slot) {
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(ctrl_.get() + slot * kCtrlSlotBytes);
  sge.length = kCtrlSlotBytes;
  sge.lkey = static_cast<IbMemoryRegion*>(ctrl_mr_.get())->lkey();
  ibv_recv_wr wr{};
  wr.wr_id = make_wr_id(WrKind::kCtrlRecv, static_cast<uint64_t>(slot));
  wr.sg_list = &sge;
  wr.num_sge = 1;
  ibv_recv_wr* bad = nullptr;
  if (ibv_post_recv(qp_, &wr, &bad) != 0) return SystemError("ib: ibv_post_recv failed");
  return OkStatus();
}

Status IbConn::post_ctrl_send_locked(const CtrlMsg& msg) {
  if (ctrl_send_free_ == 0 || send_outstanding_ >= max_send_wr_) {
    return Internal("ib: no control slot free (caller must check)");
  }
  const int slot = kCtrlSlots + ctrl_send_next_;
  ctrl_send_next_ = (ctrl_send_next_ + 1) % kCtrlSlots;
  uint8_t* buffer = ctrl_.get() + slot * kCtrlSlotBytes;
  encode_ctrl(msg, buffer);
  ibv_sge sge{};
  sge.addr = reinterpret_cast<uintptr_t>(buffer);
  sge.length = kCtrlSlotBytes;
  sge.lkey = static_cast<IbMemoryRegion*>(ctrl_mr_.get())->lkey();
  ibv_send_wr wr{};
  wr.wr_id = make_wr_id(msg.type == CtrlType::kFin ? WrKind::kFin : WrKind::kCtrlSend,
                        static_cast<uint64_t>(slot));
  wr.sg_list = &sge;
  wr.num_sge = 1;
  wr.opcode = IBV_WR_SEND;
  wr.send_flags = IBV_SEND_SIGNALED;
  ibv_send_wr* bad = nullptr;
  if (ibv_post_send(qp_, &wr, &bad) != 0) return SystemError("ib: ibv_post_send (control) failed");
  --ctrl_send_free_;
  ++send_outstanding_;
  return OkStatus();
}

Status IbConn::post_work_locked() {
  if (!ready_) return OkStatus();
  auto can_send_ctrl = [&] { return ctrl_send_free_ > 0 && send_outstanding_ < max_send_wr_; };
  if (!sender_) {
    for (const std::shared_ptr<IbOp>& op : ops_) {
      if (op->cts_sent) continue;
      if (cts_outstanding_ >= kCtrlSlots || !can_send_ctrl()) break;
      CtrlMsg cts;
      cts.type = CtrlType::kCts;
      cts.seq = op->seq;
      cts.tag = op->tag;
      cts.addr = reinterpret_cast<uintptr_t>(op->data);
      cts.size = op->size;
      cts.rkey = op->rkey;
      GP_RETURN_IF_ERROR(post_ctrl_send_locked(cts));
      op->cts_sent = true;
      ++cts_outstanding_;
    }
    return OkStatus();
  }
  for (const std::shared_ptr<IbOp>& op : ops_) {
    if (op->fin_posted) continue;
    if (!op->matched) {
      if (cts_.empty()) break;
      op->cts = cts_.front();
      cts_.pop_front();
      op->matched = true;
      if (op->cts.seq != op->seq) return CorruptData("ib: CTS out of sequence");
      if (op->cts.tag != op->tag) {
        op->fin_status = FinStatus::kTagMismatch;
      } else if (op->cts.size < op->size) {
        op->fin_status = FinStatus::kTooLarge;
      }
    }
    // Keep one send WR for the FIN.
    while (op->fin_status == FinStatus::kOk && op->posted < op->size &&
           send_outstanding_ < max_send_wr_ - 1) {
      const uint64_t chunk = std::min(max_chunk_, op->size - op->posted);
      ibv_sge sge{};
      sge.addr = reinterpret_cast<uintptr_t>(op->data + op->posted);
      sge.length = static_cast<uint32_t>(chunk);
      sge.lkey = op->lkey;
      ibv_send_wr wr{};
      wr.wr_id = make_wr_id(WrKind::kWrite, 0);
      wr.sg_list = &sge;
      wr.num_sge = 1;
      wr.opcode = IBV_WR_RDMA_WRITE;
      wr.send_flags = IBV_SEND_SIGNALED;
      wr.wr.rdma.remote_addr = op->cts.addr + op->posted;
      wr.wr.rdma.rkey = op->cts.rkey;
      ibv_send_wr* bad = nullptr;
      if (ibv_post_send(qp_, &wr, &bad) != 0)
        return SystemError("ib: ibv_post_send (write) failed");
      ++send_outstanding_;
      op->posted += chunk;
    }
    if (op->fin_status == FinStatus::kOk && op->posted < op->size) break;
    if (!can_send_ctrl()) break;
    CtrlMsg fin;
    fin.type = CtrlType::kFin;
    fin.seq = op->seq;
    fin.tag = op->tag;
    fin.size = op->size;
    fin.status = static_cast<uint32_t>(op->fin_status);
    GP_RETURN_IF_ERROR(post_ctrl_send_locked(fin));
    op->fin_posted = true;
  }
  return OkStatus();
}

ProgressEngine& IbDevice::engine() {
  std::call_once(engine_once_, [this] {
    engine_ = std::make_shared<ProgressEngine>();
    std::lock_guard<std::mutex> lock(cpus_mu_);
    engine_started_ = true;
    if (!cpus_.empty()) engine_->pin(cpus_, info_.name);
  });
  return *engine_;
}

void IbDevice::set_progress_cpus(std::vector<int> cpus) {
  std::lock_guard<std::mutex> lock(cpus_mu_);
  cpus_ = std::move(cpus);
  if (engine_started_ && !cpus_.empty()) engine_->pin(cpus_, info_.name);
}

void ProgressEngine::pin(const std::vector<int>& cpus, const std::string& device) {
  const std::string list = format_cpu_list(cpus);
  Status st = set_thread_cpus(thread_.native_handle(), cpus);
  if (st.ok()) {
    GP_LOG_DEBUG(kNet, "ib: %s progress thread pinned to CPUs %s", device.c_str(), list.c_str());
  } else {
    GP_LOG_DEBUG(kNet, "ib: %s progress thread not pinned to CPUs %s: %s", device.c_str(),
                 list.c_str(), st.message().c_str());
  }
}

struct ProgressEngine::State {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::weak_ptr<IbConn>> conns;
  bool stop = false;
  bool kicked = false;
};

ProgressEngine::ProgressEngine() : state_(std::make_shared<State>()) {
  thread_ = std::thread(run, state_);
}

ProgressEngine::~ProgressEngine() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->stop = true;
  }
  state_->cv.notify_all();
  if (thread_.get_id() == std::this_thread::get_id()) {
    thread_.detach();  // the last connection was released by the progress thread itself
  } else {
    thread_.join();
  }
}

void ProgressEngine::add(const std::shared_ptr<IbConn>& conn) {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->conns.push_back(conn);
    state_->kicked = true;
  }
  state_->cv.notify_all();
}

void ProgressEngine::wake() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->kicked = true;
  }
  state_->cv.notify_all();
}

void ProgressEngine::run(std::shared_ptr<State> state) {
  // Spins while work is pending; after this many empty rounds it naps between polls, and when no
  // connection has anything pending it sleeps until an operation is posted.
  constexpr int kSpinRounds = 2000;
  constexpr auto kNap = std::chrono::microseconds(50);
  constexpr auto kIdleWait = std::chrono::milliseconds(100);
  std::vector<std::shared_ptr<IbConn>> live;
  int empty_rounds = 0;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(state->mu);
      if (state->stop) return;
      state->kicked = false;
      live.clear();
      auto& conns = state->conns;
      conns.erase(std::remove_if(conns.begin(), conns.end(),
                                 [](const std::weak_ptr<IbConn>& c) { return c.expired(); }),
                  conns.end());
      for (const auto& weak : conns) {
        if (auto conn = weak.lock()) live.push_back(std::move(conn));
      }
    }
    bool moved = false;
    bool pending = false;
    for (const auto& conn : live) {
      const IbConn::Progress p = conn->progress();
      moved |= p == IbConn::Progress::kMoved;
      pending |= p != IbConn::Progress::kIdle;
    }
    live.clear();  // a connection's last reference may go here: see ~ProgressEngine
    if (moved) {
      empty_rounds = 0;
      continue;
    }
    std::unique_lock<std::mutex> lock(state->mu);
    if (state->stop) return;
    if (state->kicked) continue;
    if (!pending) {
      state->cv.wait_for(lock, kIdleWait, [&] { return state->stop || state->kicked; });
    } else if (++empty_rounds > kSpinRounds) {
      state->cv.wait_for(lock, kNap, [&] { return state->stop || state->kicked; });
    }
  }
}

Status IbSendConnection::register_memory(void* data, size_t size, MemoryKind kind,
                                         std::unique_ptr<MemoryRegion>* out) {
  return conn_->device()->register_memory(data, size, kind, out);
}

Status IbSendConnection::isend(const void* data, size_t size, uint64_t tag, MemoryRegion* mr,
                               std::unique_ptr<Request>* out) {
  std::shared_ptr<IbOp> op;
  GP_RETURN_IF_ERROR(conn_->post(data, size, tag, mr, &op));
  *out = std::make_unique<IbRequest>(conn_, std::move(op));
  return OkStatus();
}

Status IbRecvConnection::register_memory(void* data, size_t size, MemoryKind kind,
                                         std::unique_ptr<MemoryRegion>* out) {
  return conn_->device()->register_memory(data, size, kind, out);
}

Status IbSendConnection::register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                         std::unique_ptr<MemoryRegion>* out) {
  return conn_->device()->register_dmabuf(data, size, offset, fd, out);
}

Status IbRecvConnection::register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                         std::unique_ptr<MemoryRegion>* out) {
  return conn_->device()->register_dmabuf(data, size, offset, fd, out);
}

Status IbRecvConnection::iflush(void* data, size_t size, MemoryRegion* mr,
                                std::unique_ptr<Request>* out) {
  out->reset();
  std::shared_ptr<IbOp> op;
  GP_RETURN_IF_ERROR(conn_->flush(data, size, mr, &op));
  if (op != nullptr) *out = std::make_unique<IbRequest>(conn_, std::move(op));
  return OkStatus();
}

Status IbRecvConnection::irecv(void* data, size_t capacity, uint64_t tag, MemoryRegion* mr,
                               std::unique_ptr<Request>* out) {
  std::shared_ptr<IbOp> op;
  GP_RETURN_IF_ERROR(conn_->post(data, capacity, tag, mr, &op));
  *out = std::make_unique<IbRequest>(conn_, std::move(op));
  return OkStatus();
}

}  // namespace gradpack::transport
