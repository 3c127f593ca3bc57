// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/net_v11.h"

#include <array>
#include <climits>
#include <memory>
#include <mutex>
#include <string>

#include "net_plugin/plugin_api.h"

namespace gradpack::plugin::net {
namespace {

// Every object handed to NCCL starts with a magic, so a pointer of the wrong kind (or a request
// tested after it completed) is reported instead of being used.
constexpr uint32_t kCtxMagic = 0x7843504e;     // "NPCx"
constexpr uint32_t kListenMagic = 0x6c43504e;  // "NPCl"
constexpr uint32_t kSendMagic = 0x7343504e;    // "NPCs"
constexpr uint32_t kRecvMagic = 0x7243504e;    // "NPCr"
constexpr uint32_t kRequestMagic = 0x7143504e;
constexpr uint32_t kMrMagic = 0x6d43504e;

struct NetContext : Tracked {
  uint32_t magic = kCtxMagic;
  uint64_t comm_id = 0;
  int traffic_class = -1;
  ~NetContext() override { magic = 0; }
};

struct MemoryHandle {
  uint32_t magic = kMrMagic;
  std::unique_ptr<transport::MemoryRegion> region;
  ~MemoryHandle() { magic = 0; }
};

class Comm;

struct Slot {
  uint32_t magic = 0;  // kRequestMagic while NCCL holds the request
  Comm* comm = nullptr;
  std::unique_ptr<transport::Request> inner;
};

// What send and receive comms share: the request slots and the lock that serializes the
// connection between NCCL's service thread (regMr/deregMr) and its progress thread.
class Comm : public Tracked {
 public:
  Comm(uint32_t magic, int dev) : magic_(magic), dev_(dev) {
    for (Slot& slot : slots_) slot.comm = this;
  }
  ~Comm() override { magic_ = 0; }

  uint32_t magic() const { return magic_; }
  std::mutex& mutex() { return mu_; }
  virtual Status register_memory(void* data, size_t size, transport::MemoryKind kind,
                                 std::unique_ptr<transport::MemoryRegion>* out) = 0;
  virtual Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                                 std::unique_ptr<transport::MemoryRegion>* out) = 0;

  // Caller holds mutex(). Null when NCCL_NET_MAX_REQUESTS are in flight.
  Slot* take_slot() {
    if (in_flight_ >= NCCL_NET_MAX_REQUESTS) return nullptr;
    for (Slot& slot : slots_) {
      if (slot.magic == 0) {
        ++in_flight_;
        return &slot;
      }
    }
    return nullptr;
  }
  void give_back(Slot* slot) {
    slot->magic = 0;
    slot->inner.reset();
    --in_flight_;
  }

 protected:
  uint32_t magic_;
  int dev_;

 private:
  std::mutex mu_;
  std::array<Slot, NCCL_NET_MAX_REQUESTS> slots_;
  int in_flight_ = 0;
};

class SendComm final : public Comm {
 public:
  SendComm(int dev, std::unique_ptr<transport::SendConnection> connection)
      : Comm(kSendMagic, dev), connection_(std::move(connection)) {}
  Status register_memory(void* data, size_t size, transport::MemoryKind kind,
                         std::unique_ptr<transport::MemoryRegion>* out) override {
    return connection_->register_memory(data, size, kind, out);
  }
  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<transport::MemoryRegion>* out) override {
    return connection_->register_dmabuf(data, size, offset, fd, out);
  }
  transport::SendConnection& connection() { return *connection_; }

 private:
  // Destroyed before the slots (a base member): the transport stops touching the buffers of
  // requests still in flight before they are dropped.
  std::unique_ptr<transport::SendConnection> connection_;
};

class RecvComm final : public Comm {
 public:
  RecvComm(int dev, std::unique_ptr<transport::RecvConnection> connection)
      : Comm(kRecvMagic, dev), connection_(std::move(connection)) {}
  Status register_memory(void* data, size_t size, transport::MemoryKind kind,
                         std::unique_ptr<transport::MemoryRegion>* out) override {
    return connection_->register_memory(data, size, kind, out);
  }
  Status register_dmabuf(void* data, size_t size, uint64_t offset, int fd,
                         std::unique_ptr<transport::MemoryRegion>* out) override {
    return connection_->register_dmabuf(data, size, offset, fd, out);
  }
  transport::RecvConnection& connection() { return *connection_; }

 private:
  std::unique_ptr<transport::RecvConnection> connection_;
};

struct ListenComm : Tracked {
  uint32_t magic = kListenMagic;
  int dev = 0;
  std::unique_ptr<transport::Listener> listener;
  ~ListenComm() override { magic = 0; }
};

// NCCL passes its tag as an int; both sides convert it the same way.
uint64_t wire_tag(int tag) { return static_cast<uint32_t>(tag); }

Status check_comm(void* comm, uint32_t magic, const char* what) {
  if (comm == nullptr) return Internal(std::string(what) + " is NULL");
  if (static_cast<Comm*>(comm)->magic() != magic) {
    return Internal(std::string(what) + " is not a live comm of this plugin");
  }
  return OkStatus();
}

Status check_any_comm(void* comm) {
  if (comm == nullptr) return Internal("comm is NULL");
  uint32_t magic = static_cast<Comm*>(comm)->magic();
  if (magic != kSendMagic && magic != kRecvMagic) {
    return Internal("comm is not a live send or receive comm of this plugin");
  }
  return OkStatus();
}

ncclResult_t init_for_legacy(void** ctx, void* logger) {
  return init(ctx, 0, nullptr, reinterpret_cast<ncclDebugLogger_t>(logger), nullptr);
}

}  // namespace

ncclResult_t init(void** ctx, uint64_t commId, ncclNetCommConfig_v11_t* config,
                  ncclDebugLogger_t logFunction, ncclProfilerCallback_t profFunction) {
  (void)profFunction;  // gradpack emits no profiler events
  if (ctx != nullptr) *ctx = nullptr;
  return guard("init", [&]() -> Status {
    if (ctx == nullptr) return Internal("init: ctx is NULL");
    auto context = std::make_unique<NetContext>();
    context->comm_id = commId;
    if (config != nullptr) context->traffic_class = config->trafficClass;
    GP_RETURN_IF_ERROR(acquire(logFunction));
    try {
      track(context.get());
    } catch (...) {
      release();  // no ctx, no reference
      throw;
    }
    *ctx = context.release();
    return OkStatus();
  });
}

ncclResult_t finalize(void* ctx) {
  return guard("finalize", [&]() -> Status {
    if (ctx == nullptr) return OkStatus();  // a failed init left it NULL
    auto* context = static_cast<NetContext*>(ctx);
    if (!is_tracked(context) || context->magic != kCtxMagic) {
      return Internal("finalize: not a live ctx of this plugin (finalized twice?)");
    }
    untrack(context);
    delete context;
    release();
    return OkStatus();
  });
}

ncclResult_t devices(int* ndev) {
  return guard("devices", [&]() -> Status {
    if (ndev == nullptr) return Internal("devices: ndev is NULL");
    return device_count(ndev);
  });
}

ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props) {
  return guard("getProperties", [&]() -> Status {
    if (props == nullptr) return Internal("getProperties: props is NULL");
    return properties(dev, props);
  });
}

ncclResult_t listen(void* ctx, int dev, void* handle, void** listenComm) {
  if (listenComm != nullptr) *listenComm = nullptr;
  return guard("listen", [&]() -> Status {
    (void)ctx;
    if (handle == nullptr || listenComm == nullptr) return Internal("listen: NULL argument");
    DeviceRef ref;
    GP_RETURN_IF_ERROR(device(dev, &ref));
    auto comm = std::make_unique<ListenComm>();
    comm->dev = dev;
    transport::Handle inner;
    GP_RETURN_IF_ERROR(ref.transport->listen(ref.local, &inner, &comm->listener));
    GP_RETURN_IF_ERROR(encode_plugin_handle(ref.backend, inner, handle));
    track(comm.get());
    *listenComm = comm.release();
    return OkStatus();
  });
}

ncclResult_t connect(void* ctx, int dev, void* handle, void** sendComm,
                     ncclNetDeviceHandle_v11_t** sendDevComm) {
  if (sendComm != nullptr) *sendComm = nullptr;
  return guard("connect", [&]() -> Status {
    (void)ctx;
    if (sendComm == nullptr) return Internal("connect: sendComm is NULL");
    (void)sendDevComm;  // host plugin: no device handle; NCCL's pointer is never written
    std::unique_ptr<transport::SendConnection> connection;
    GP_RETURN_IF_ERROR(poll_connect(dev, handle, &connection));
    if (connection == nullptr) return OkStatus();  // in progress: NCCL calls again
    auto comm = std::make_unique<SendComm>(dev, std::move(connection));
    track(comm.get());
    *sendComm = comm.release();
    return OkStatus();
  });
}

ncclResult_t accept(void* listenComm, void** recvComm, ncclNetDeviceHandle_v11_t** recvDevComm) {
  if (recvComm != nullptr) *recvComm = nullptr;
  return guard("accept", [&]() -> Status {
    if (recvComm == nullptr) return Internal("accept: recvComm is NULL");
    auto* listen_comm = static_cast<ListenComm*>(listenComm);
    if (listen_comm == nullptr || listen_comm->magic != kListenMagic) {
      return Internal("accept: not a live listen comm of this plugin");
    }
    (void)recvDevComm;  // as in connect
    std::unique_ptr<transport::RecvConnection> connection;
    GP_RETURN_IF_ERROR(listen_comm->listener->accept(std::chrono::milliseconds(0), &connection));
    if (connection == nullptr) return OkStatus();  // not yet: NCCL calls again
    auto comm = std::make_unique<RecvComm>(listen_comm->dev, std::move(connection));
    track(comm.get());
    *recvComm = comm.release();
    return OkStatus();
  });
}

ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle) {
  if (mhandle != nullptr) *mhandle = nullptr;
  return guard("regMr", [&]() -> Status {
    if (mhandle == nullptr) return Internal("regMr: mhandle is NULL");
    GP_RETURN_IF_ERROR(check_any_comm(comm));
    if (type != NCCL_PTR_HOST && type != NCCL_PTR_CUDA) {
      return InvalidArgument("regMr of memory type " + std::to_string(type) +
                             ": only NCCL_PTR_HOST (1) and NCCL_PTR_CUDA (2) are registered here "
                             "(dma-buf memory goes through regMrDmaBuf)");
    }
    // CUDA memory: the transport refuses it unless its device reported NCCL_PTR_CUDA (TCP never).
    const auto kind =
        type == NCCL_PTR_CUDA ? transport::MemoryKind::kCuda : transport::MemoryKind::kHost;
    auto* c = static_cast<Comm*>(comm);
    auto handle = std::make_unique<MemoryHandle>();
    {
      std::lock_guard<std::mutex> lock(c->mutex());
      GP_RETURN_IF_ERROR(c->register_memory(data, size, kind, &handle->region));
    }
    *mhandle = handle.release();
    return OkStatus();
  });
}

ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type, uint64_t offset, int fd,
                            void** mhandle) {
  if (mhandle != nullptr) *mhandle = nullptr;
  return guard("regMrDmaBuf", [&]() -> Status {
    if (mhandle == nullptr) return Internal("regMrDmaBuf: mhandle is NULL");
    GP_RETURN_IF_ERROR(check_any_comm(comm));
    // NCCL passes NCCL_PTR_CUDA with the fd of the GPU buffer's dma-buf (src/transport/net.cc).
    if (type != NCCL_PTR_CUDA) {
      return InvalidArgument("regMrDmaBuf of memory type " + std::to_string(type) +
                             ": a dma-buf is GPU memory, type NCCL_PTR_CUDA (2)");
    }
    if (fd < 0 || size == 0 || data == nullptr) {
      return InvalidArgument("regMrDmaBuf needs a dma-buf fd >= 0, a size > 0 and an address (got "
                             "fd " + std::to_string(fd) + ", size " + std::to_string(size) + ")");
    }
    auto* c = static_cast<Comm*>(comm);
    auto handle = std::make_unique<MemoryHandle>();
    {
      std::lock_guard<std::mutex> lock(c->mutex());
      GP_RETURN_IF_ERROR(c->register_dmabuf(data, size, offset, fd, &handle->region));
    }
    *mhandle = handle.release();
    return OkStatus();
  });
}

ncclResult_t dereg_mr(void* comm, void* mhandle) {
  return guard("deregMr", [&]() -> Status {
    GP_RETURN_IF_ERROR(check_any_comm(comm));
    if (mhandle == nullptr) return OkStatus();
    auto* handle = static_cast<MemoryHandle*>(mhandle);
    if (handle->magic != kMrMagic) return Internal("deregMr: not a live memory handle");
    std::lock_guard<std::mutex> lock(static_cast<Comm*>(comm)->mutex());
    delete handle;
    return OkStatus();
  });
}

namespace {

transport::MemoryRegion* region_of(void* mhandle) {
  auto* handle = static_cast<MemoryHandle*>(mhandle);
  return handle != nullptr && handle->magic == kMrMagic ? handle->region.get() : nullptr;
}

}  // namespace

ncclResult_t isend(void* sendComm, void* data, size_t size, int tag, void* mhandle, void* phandle,
                   void** request) {
  if (request != nullptr) *request = nullptr;
  return guard("isend", [&]() -> Status {
    (void)phandle;
    if (request == nullptr) return Internal("isend: request is NULL");
    GP_RETURN_IF_ERROR(check_comm(sendComm, kSendMagic, "isend: sendComm"));
    auto* comm = static_cast<SendComm*>(sendComm);
    std::lock_guard<std::mutex> lock(comm->mutex());
    Slot* slot = comm->take_slot();
    if (slot == nullptr) return OkStatus();  // NCCL retries
    Status status =
        comm->connection().isend(data, size, wire_tag(tag), region_of(mhandle), &slot->inner);
    if (!status.ok()) {
      comm->give_back(slot);
      return status;
    }
    slot->magic = kRequestMagic;
    *request = slot;
    return OkStatus();
  });
}

ncclResult_t irecv(void* recvComm, int n, void** data, size_t* sizes, int* tags, void** mhandles,
                   void** phandles, void** request) {
  // NCCL may have preset *request to 0x1 (optional completion): always overwrite it.
  if (request != nullptr) *request = nullptr;
  return guard("irecv", [&]() -> Status {
    (void)phandles;
    if (request == nullptr) return Internal("irecv: request is NULL");
    GP_RETURN_IF_ERROR(check_comm(recvComm, kRecvMagic, "irecv: recvComm"));
    if (n != 1) {
      return Internal("irecv of " + std::to_string(n) +
                      " buffers: this plugin reports maxRecvs = 1");
    }
    if (data == nullptr || sizes == nullptr || tags == nullptr) {
      return Internal("irecv: NULL data, sizes or tags");
    }
    auto* comm = static_cast<RecvComm*>(recvComm);
    std::lock_guard<std::mutex> lock(comm->mutex());
    Slot* slot = comm->take_slot();
    if (slot == nullptr) return OkStatus();  // NCCL retries
    void* mhandle = mhandles != nullptr ? mhandles[0] : nullptr;
    Status status = comm->connection().irecv(data[0], sizes[0], wire_tag(tags[0]),
                                             region_of(mhandle), &slot->inner);
    if (!status.ok()) {
      comm->give_back(slot);
      return status;
    }
    slot->magic = kRequestMagic;
    *request = slot;
    return OkStatus();
  });
}

ncclResult_t iflush(void* recvComm, int n, void** data, int* sizes, void** mhandles,
                    void** request) {
  // NULL request = nothing to flush, which NCCL treats as done (src/transport/net.cc,
  // recvProxyProgress): host memory, TCP, GRADPACK_GDR=off, or nothing received.
  if (request != nullptr) *request = nullptr;
  return guard("iflush", [&]() -> Status {
    if (request == nullptr) return Internal("iflush: request is NULL");
    GP_RETURN_IF_ERROR(check_comm(recvComm, kRecvMagic, "iflush: recvComm"));
    if (n < 0 || n > NCCL_NET_MAX_REQUESTS || (n > 0 && (data == nullptr || sizes == nullptr))) {
      return Internal("iflush of " + std::to_string(n) + " buffers without data or sizes");
    }
    // One read of the last non-empty buffer flushes them all: the NIC's writes land in order
    // (NCCL's IB transport flushes the same way, ncclIbIflush).
    int last = -1;
    for (int i = 0; i < n; ++i) {
      if (data[i] != nullptr && sizes[i] > 0) last = i;
    }
    if (last < 0) return OkStatus();
    auto* comm = static_cast<RecvComm*>(recvComm);
    std::lock_guard<std::mutex> lock(comm->mutex());
    Slot* slot = comm->take_slot();
    if (slot == nullptr) return Internal("iflush: NCCL_NET_MAX_REQUESTS requests already in flight");
    void* mhandle = mhandles != nullptr ? mhandles[last] : nullptr;
    Status status = comm->connection().iflush(data[last], static_cast<size_t>(sizes[last]),
                                              region_of(mhandle), &slot->inner);
    if (!status.ok() || slot->inner == nullptr) {
      comm->give_back(slot);
      return status;
    }
    slot->magic = kRequestMagic;
    *request = slot;
    return OkStatus();
  });
}

ncclResult_t test(void* request, int* done, int* sizes) {
  if (done != nullptr) *done = 0;
  return guard("test", [&]() -> Status {
    if (request == nullptr || done == nullptr) return Internal("test: NULL request or done");
    auto* slot = static_cast<Slot*>(request);
    if (slot->magic != kRequestMagic) {
      return Internal("test: not a live request (tested again after it completed?)");
    }
    Comm* comm = slot->comm;
    std::lock_guard<std::mutex> lock(comm->mutex());
    bool finished = false;
    size_t bytes = 0;
    GP_RETURN_IF_ERROR(slot->inner->test(&finished, &bytes));
    if (!finished) return OkStatus();
    if (bytes > static_cast<size_t>(INT_MAX)) {
      return Internal("a message of " + std::to_string(bytes) +
                      " bytes completed, more than test() can report in an int");
    }
    if (sizes != nullptr) sizes[0] = static_cast<int>(bytes);
    comm->give_back(slot);
    *done = 1;
    return OkStatus();
  });
}

ncclResult_t close_send(void* sendComm) {
  return guard("closeSend", [&]() -> Status {
    if (sendComm == nullptr) return OkStatus();
    GP_RETURN_IF_ERROR(check_comm(sendComm, kSendMagic, "closeSend: sendComm"));
    auto* comm = static_cast<SendComm*>(sendComm);
    untrack(comm);
    delete comm;
    return OkStatus();
  });
}

ncclResult_t close_recv(void* recvComm) {
  return guard("closeRecv", [&]() -> Status {
    if (recvComm == nullptr) return OkStatus();
    GP_RETURN_IF_ERROR(check_comm(recvComm, kRecvMagic, "closeRecv: recvComm"));
    auto* comm = static_cast<RecvComm*>(recvComm);
    untrack(comm);
    delete comm;
    return OkStatus();
  });
}

ncclResult_t close_listen(void* listenComm) {
  return guard("closeListen", [&]() -> Status {
    if (listenComm == nullptr) return OkStatus();
    auto* comm = static_cast<ListenComm*>(listenComm);
    if (comm->magic != kListenMagic) return Internal("closeListen: not a live listen comm");
    untrack(comm);
    delete comm;
    return OkStatus();
  });
}

ncclResult_t legacy_init(ncclDebugLogger_t logFunction) {
  return plugin::legacy_init(LegacyFace::kNet, init_for_legacy,
                             reinterpret_cast<void*>(logFunction), finalize, nullptr);
}

void* legacy_ctx() { return plugin::legacy_ctx(LegacyFace::kNet); }

}  // namespace gradpack::plugin::net
