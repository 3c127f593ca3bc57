// SPDX-License-Identifier: Apache-2.0
#include "tests/transport/ibverbs/fake_verbs.h"

#include <fcntl.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>

namespace gradpack::transport::fake {
namespace {

struct FakeCq {
  ibv_cq cq{};  // first: ibv_cq* and FakeCq* convert
  int capacity = 0;
  std::deque<ibv_wc> entries;
};

struct PostedRecv {
  uint64_t wr_id = 0;
  uintptr_t addr = 0;
  uint32_t length = 0;
  uint32_t lkey = 0;
};

struct FakeQp {
  ibv_qp qp{};
  ibv_qp_cap cap{};
  uint32_t remote_qpn = 0;
  int send_outstanding = 0;  // posted, completion not yet polled
  std::deque<PostedRecv> recvs;
  bool dead = false;  // the software HCA moved it to the error state
};

struct Mr {
  ibv_mr* mr = nullptr;
};

struct State {
  std::mutex mu;
  Options options;
  ibv_device device{};
  ibv_device* list[2] = {&device, nullptr};
  uint32_t next_key = 0x100;
  uint32_t next_qpn = 0x40;
  std::map<uint32_t, ibv_mr*> mrs;  // by key (lkey == rkey)
  std::map<uint32_t, FakeQp*> qps;  // by qpn
  Stats stats;
};

State* g_state = nullptr;

void violate(const std::string& what) {
  if (g_state->stats.violation.empty()) g_state->stats.violation = what;
}

bool key_covers(uint32_t key, uintptr_t addr, uint64_t length) {
  auto it = g_state->mrs.find(key);
  if (it == g_state->mrs.end()) return false;
  const auto begin = reinterpret_cast<uintptr_t>(it->second->addr);
  return addr >= begin && addr + length <= begin + it->second->length;
}

void complete(ibv_cq* cq, const ibv_wc& wc) {
  auto* fake = reinterpret_cast<FakeCq*>(cq);
  if (static_cast<int>(fake->entries.size()) >= fake->capacity) violate("CQ overrun");
  fake->entries.push_back(wc);
}

int fake_poll_cq(ibv_cq* cq, int n, ibv_wc* wc) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* fake = reinterpret_cast<FakeCq*>(cq);
  int got = 0;
  while (got < n && !fake->entries.empty()) {
    wc[got] = fake->entries.front();
    fake->entries.pop_front();
    if (wc[got].opcode != IBV_WC_RECV) {
      auto it = g_state->qps.find(wc[got].qp_num);
      if (it != g_state->qps.end()) --it->second->send_outstanding;
    }
    ++got;
  }
  return got;
}

int fake_post_recv(ibv_qp* qp, ibv_recv_wr* wr, ibv_recv_wr** bad) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* fake = reinterpret_cast<FakeQp*>(qp);
  for (; wr != nullptr; wr = wr->next) {
    if (qp->state == IBV_QPS_RESET || wr->num_sge != 1 ||
        static_cast<int>(fake->recvs.size()) >= static_cast<int>(fake->cap.max_recv_wr)) {
      violate("bad post_recv");
      *bad = wr;
      return EINVAL;
    }
    fake->recvs.push_back(
        {wr->wr_id, wr->sg_list[0].addr, wr->sg_list[0].length, wr->sg_list[0].lkey});
  }
  return 0;
}

int fake_post_send(ibv_qp* qp, ibv_send_wr* wr, ibv_send_wr** bad) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* fake = reinterpret_cast<FakeQp*>(qp);
  for (; wr != nullptr; wr = wr->next) {
    if (qp->state != IBV_QPS_RTS || wr->num_sge != 1) {
      violate("post_send on a QP not at RTS");
      *bad = wr;
      return EINVAL;
    }
    if (fake->send_outstanding >= static_cast<int>(fake->cap.max_send_wr)) {
      violate("send queue overrun");
      *bad = wr;
      return ENOMEM;
    }
    ++fake->send_outstanding;
    ibv_wc wc{};
    wc.wr_id = wr->wr_id;
    wc.qp_num = qp->qp_num;
    wc.status = IBV_WC_SUCCESS;
    wc.opcode = wr->opcode == IBV_WR_SEND         ? IBV_WC_SEND
                : wr->opcode == IBV_WR_RDMA_READ ? IBV_WC_RDMA_READ
                                                 : IBV_WC_RDMA_WRITE;
    const ibv_sge& sge = wr->sg_list[0];
    auto peer_it = g_state->qps.find(fake->remote_qpn);
    FakeQp* peer = peer_it == g_state->qps.end() ? nullptr : peer_it->second;
    if (fake->dead) {
      wc.status = IBV_WC_WR_FLUSH_ERR;
    } else if (peer == nullptr || peer->qp.state < IBV_QPS_RTR || peer->dead ||
               peer->remote_qpn != qp->qp_num) {
      wc.status = IBV_WC_RETRY_EXC_ERR;
    } else if (sge.length > 0 && !key_covers(sge.lkey, sge.addr, sge.length)) {
      wc.status = IBV_WC_LOC_PROT_ERR;
    } else if (sge.length > g_state->options.max_msg_sz) {
      violate("message larger than max_msg_sz");
      wc.status = IBV_WC_LOC_LEN_ERR;
    } else if (wr->opcode == IBV_WR_RDMA_WRITE) {
      if (sge.length > 0 && !key_covers(wr->wr.rdma.rkey, wr->wr.rdma.remote_addr, sge.length)) {
        violate("RDMA write outside a registered region");
        wc.status = IBV_WC_REM_ACCESS_ERR;
      } else {
        std::memcpy(reinterpret_cast<void*>(wr->wr.rdma.remote_addr),
                    reinterpret_cast<const void*>(sge.addr), sge.length);
        ++g_state->stats.rdma_writes;
        g_state->stats.max_write_bytes =
            std::max<uint64_t>(g_state->stats.max_write_bytes, sge.length);
      }
    } else if (wr->opcode == IBV_WR_RDMA_READ) {
      if (!key_covers(wr->wr.rdma.rkey, wr->wr.rdma.remote_addr, sge.length)) {
        violate("RDMA read outside a registered region");
        wc.status = IBV_WC_REM_ACCESS_ERR;
      } else {
        std::memcpy(reinterpret_cast<void*>(sge.addr),
                    reinterpret_cast<const void*>(wr->wr.rdma.remote_addr), sge.length);
        ++g_state->stats.rdma_reads;
      }
    } else if (wr->opcode == IBV_WR_SEND) {
      if (peer->recvs.empty()) {
        violate("SEND without a posted receive (RNR)");
        wc.status = IBV_WC_RNR_RETRY_EXC_ERR;
      } else {
        const PostedRecv recv = peer->recvs.front();
        peer->recvs.pop_front();
        if (sge.length > recv.length || !key_covers(recv.lkey, recv.addr, sge.length)) {
          violate("SEND larger than the posted receive");
          wc.status = IBV_WC_REM_INV_REQ_ERR;
        } else {
          std::memcpy(reinterpret_cast<void*>(recv.addr), reinterpret_cast<const void*>(sge.addr),
                      sge.length);
          ++g_state->stats.sends;
          ibv_wc rwc{};
          rwc.wr_id = recv.wr_id;
          rwc.status = IBV_WC_SUCCESS;
          rwc.opcode = IBV_WC_RECV;
          rwc.byte_len = sge.length;
          rwc.qp_num = peer->qp.qp_num;
          complete(peer->qp.recv_cq, rwc);
        }
      }
    } else {
      violate("unsupported opcode");
      wc.status = IBV_WC_LOC_QP_OP_ERR;
    }
    if (wc.status != IBV_WC_SUCCESS) fake->dead = true;
    // Errors always complete; successes only when signaled.
    if (wc.status != IBV_WC_SUCCESS || (wr->send_flags & IBV_SEND_SIGNALED) != 0) {
      complete(qp->send_cq, wc);
    } else {
      --fake->send_outstanding;
    }
  }
  return 0;
}

ibv_device** get_device_list(int* n) {
  if (n != nullptr) *n = 1;
  return g_state->list;
}
void free_device_list(ibv_device**) {}
ibv_context* open_device(ibv_device* device) {
  auto* context = new ibv_context{};
  context->device = device;
  context->ops.poll_cq = fake_poll_cq;
  context->ops.post_send = fake_post_send;
  context->ops.post_recv = fake_post_recv;
  return context;
}
int close_device(ibv_context* context) {
  delete context;
  return 0;
}
int query_device(ibv_context*, ibv_device_attr* attr) {
  *attr = ibv_device_attr{};
  attr->phys_port_cnt = 1;
  attr->max_qp_wr = g_state->options.max_qp_wr;
  attr->max_cqe = 1 << 16;
  return 0;
}
int query_port(ibv_context*, uint8_t port, ibv_port_attr* attr) {
  if (port != 1) return EINVAL;
  attr->state = IBV_PORT_ACTIVE;
  attr->active_mtu = IBV_MTU_4096;
  attr->max_mtu = IBV_MTU_4096;
  attr->gid_tbl_len = 1;
  attr->max_msg_sz = g_state->options.max_msg_sz;
  attr->lid = 7;
  attr->active_speed = 32;  // EDR
  attr->active_width = 2;   // 4x
  attr->link_layer = IBV_LINK_LAYER_INFINIBAND;
  return 0;
}
int query_gid(ibv_context*, uint8_t, int index, ibv_gid* gid) {
  if (index != 0) return EINVAL;
  *gid = ibv_gid{};
  gid->raw[0] = 0xfe;
  gid->raw[1] = 0x80;
  gid->raw[15] = 7;
  return 0;
}
ibv_pd* alloc_pd(ibv_context* context) {
  auto* pd = new ibv_pd{};
  pd->context = context;
  return pd;
}
int dealloc_pd(ibv_pd* pd) {
  delete pd;
  return 0;
}
ibv_mr* reg_mr(ibv_pd* pd, void* addr, size_t length, int) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* mr = new ibv_mr{};
  mr->context = pd->context;
  mr->pd = pd;
  mr->addr = addr;
  mr->length = length;
  mr->lkey = mr->rkey = g_state->next_key++;
  g_state->mrs[mr->lkey] = mr;
  ++g_state->stats.live_mrs;
  return mr;
}
ibv_mr* reg_dmabuf_mr(ibv_pd* pd, uint64_t, size_t length, uint64_t iova, int fd, int access) {
  if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
    errno = EBADF;
    return nullptr;
  }
  ibv_mr* mr = reg_mr(pd, reinterpret_cast<void*>(iova), length, access);
  std::lock_guard<std::mutex> lock(g_state->mu);
  ++g_state->stats.dmabuf_mrs;
  return mr;
}
int dereg_mr(ibv_mr* mr) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  g_state->mrs.erase(mr->lkey);
  --g_state->stats.live_mrs;
  delete mr;
  return 0;
}
ibv_cq* create_cq(ibv_context* context, int cqe, void*, ibv_comp_channel*, int) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* cq = new FakeCq;
  cq->cq.context = context;
  cq->cq.cqe = cqe;
  cq->capacity = cqe;
  ++g_state->stats.live_cqs;
  return &cq->cq;
}
int destroy_cq(ibv_cq* cq) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  --g_state->stats.live_cqs;
  delete reinterpret_cast<FakeCq*>(cq);
  return 0;
}
ibv_qp* create_qp(ibv_pd* pd, ibv_qp_init_attr* attr) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  if (attr->qp_type != IBV_QPT_RC ||
      attr->cap.max_send_wr > static_cast<uint32_t>(g_state->options.max_qp_wr)) {
    errno = EINVAL;
    return nullptr;
  }
  auto* qp = new FakeQp;
  qp->qp.context = pd->context;
  qp->qp.pd = pd;
  qp->qp.send_cq = attr->send_cq;
  qp->qp.recv_cq = attr->recv_cq;
  qp->qp.qp_num = g_state->next_qpn++;
  qp->qp.state = IBV_QPS_RESET;
  qp->qp.qp_type = IBV_QPT_RC;
  qp->cap = attr->cap;
  g_state->qps[qp->qp.qp_num] = qp;
  ++g_state->stats.live_qps;
  return &qp->qp;
}
int destroy_qp(ibv_qp* qp) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  g_state->qps.erase(qp->qp_num);
  --g_state->stats.live_qps;
  delete reinterpret_cast<FakeQp*>(qp);
  return 0;
}
int modify_qp(ibv_qp* qp, ibv_qp_attr* attr, int mask) {
  std::lock_guard<std::mutex> lock(g_state->mu);
  auto* fake = reinterpret_cast<FakeQp*>(qp);
  if ((mask & IBV_QP_STATE) == 0) return EINVAL;
  const ibv_qp_state from = qp->state;
  const ibv_qp_state to = attr->qp_state;
  const bool ok = (from == IBV_QPS_RESET && to == IBV_QPS_INIT && (mask & IBV_QP_PORT) != 0 &&
                   (mask & IBV_QP_ACCESS_FLAGS) != 0) ||
                  (from == IBV_QPS_INIT && to == IBV_QPS_RTR && (mask & IBV_QP_DEST_QPN) != 0 &&
                   (mask & IBV_QP_AV) != 0 && (mask & IBV_QP_PATH_MTU) != 0) ||
                  (from == IBV_QPS_RTR && to == IBV_QPS_RTS && (mask & IBV_QP_SQ_PSN) != 0);
  if (!ok) {
    violate("bad QP state transition");
    return EINVAL;
  }
  if (to == IBV_QPS_RTR) fake->remote_qpn = attr->dest_qp_num;
  qp->state = to;
  return 0;
}
const char* get_device_name(ibv_device*) { return "fake0"; }
__be64 get_device_guid(ibv_device*) { return htobe64(0x1122334455667788ULL); }

}  // namespace

std::shared_ptr<const VerbsApi> install(const Options& options) {
  delete g_state;
  g_state = new State;
  g_state->options = options;
  auto api = std::make_shared<VerbsApi>();
  api->path = "fake-verbs";
  api->get_device_list = get_device_list;
  api->free_device_list = free_device_list;
  api->open_device = open_device;
  api->close_device = close_device;
  api->query_device = query_device;
  api->query_port_compat = query_port;
  api->query_gid = query_gid;
  api->alloc_pd = alloc_pd;
  api->dealloc_pd = dealloc_pd;
  api->reg_mr = reg_mr;
  api->dereg_mr = dereg_mr;
  if (options.dmabuf) api->reg_dmabuf_mr = reg_dmabuf_mr;
  api->create_cq = create_cq;
  api->destroy_cq = destroy_cq;
  api->create_qp = create_qp;
  api->destroy_qp = destroy_qp;
  api->modify_qp = modify_qp;
  api->get_device_name = get_device_name;
  api->get_device_guid = get_device_guid;
  return api;
}

Stats stats() {
  std::lock_guard<std::mutex> lock(g_state->mu);
  return g_state->stats;
}

}  // namespace gradpack::transport::fake
