// SPDX-License-Identifier: Apache-2.0
// The CollNet entry points (collnet.h): NCCL's node leaders form a gradpack Communicator in
// connect(), and a worker thread per collComm runs gradpack's host all-reduce on NCCL's staging
// chunks, in the order NCCL issued them (the same order on every rank: NCCL's
// src/transport/coll_net.cc).
//
// Why the compression is stateless: NCCL hands iallreduce() slices of its own staging buffers,
// not the user's tensors, and the same staging slot carries a different piece of a different
// gradient on every call. A residual kept for error feedback could never be added back to the
// gradient it came from, so GRADPACK_COLLNET_COMPRESS runs without error feedback and with
// stochastic rounding, whose error is zero in expectation and does not accumulate as a bias.
#include "net_plugin/collnet/collnet.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "collectives/communicator.h"
#include "common/crc32c.h"
#include "common/dtype.h"
#include "common/log.h"
#include "common/settings.h"
#include "compression/spec.h"
#include "net_plugin/plugin_api.h"
#include "net_plugin/tuner/measured_link.h"
#include "topology/cost_model.h"

namespace gradpack::plugin::collnet {

namespace {

// Requests one collComm can have in flight: NCCL keeps up to 8 per group of 8 channels.
constexpr int kMaxRequests = 256;
constexpr uint64_t kMaxCollBytes = NCCL_MAX_NET_SIZE_BYTES;

// A failed all-reduce: the OS's fault stays a system error, anything else (a peer that went away,
// a silent one, bad bytes from one) is the remote side's.
ncclResult_t allreduce_result(const Status& st) {
  plugin::warn("CollNet iallreduce: %s", st.to_string().c_str());
  return st.code() == Code::kSystem ? ncclSystemError : ncclRemoteError;
}

// Device `dev` of the plugin's transport, shown as device 0 (the Communicator connects on device
// 0). Non-owning: the plugin keeps its transports until the last finalize, which first closes
// every tracked comm (plugin_api.h).
class DeviceView : public transport::Transport {
 public:
  DeviceView(transport::Transport* inner, int dev) : inner_(inner), dev_(dev) {}
  const char* name() const override { return inner_->name(); }
  int device_count() const override { return 1; }
  Status device_info(int dev, transport::DeviceInfo* out) const override {
    GP_RETURN_IF_ERROR(check(dev));
    return inner_->device_info(dev_, out);
  }
  Status listen(int dev, transport::Handle* handle,
                std::unique_ptr<transport::Listener>* out) override {
    GP_RETURN_IF_ERROR(check(dev));
    return inner_->listen(dev_, handle, out);
  }
  Status connect(int dev, const transport::Handle& handle, uint64_t hello,
                 std::chrono::milliseconds timeout,
                 std::unique_ptr<transport::SendConnection>* out) override {
    GP_RETURN_IF_ERROR(check(dev));
    return inner_->connect(dev_, handle, hello, timeout, out);
  }
  uint64_t progress_epoch(int dev) const override {
    return dev == 0 ? inner_->progress_epoch(dev_) : 0;
  }
  void wait_progress(int dev, uint64_t seen, std::chrono::steady_clock::time_point until) override {
    if (dev == 0) inner_->wait_progress(dev_, seen, until);
  }

 private:
  static Status check(int dev) {
    return dev == 0 ? OkStatus() : Internal("the CollNet transport view has only device 0");
  }
  transport::Transport* inner_;
  int dev_;
};

bool map_dtype(ncclDataType_t in, gp_dtype_t* out) {
  switch (in) {
    case ncclInt8:
      *out = GP_INT8;
      return true;
    case ncclUint8:
      *out = GP_UINT8;
      return true;
    case ncclInt32:
      *out = GP_INT32;
      return true;
    case ncclInt64:
      *out = GP_INT64;
      return true;
    case ncclFloat16:
      *out = GP_FLOAT16;
      return true;
    case ncclFloat32:
      *out = GP_FLOAT32;
      return true;
    case ncclFloat64:
      *out = GP_FLOAT64;
      return true;
    case ncclBfloat16:
      *out = GP_BFLOAT16;
      return true;
    default:  // Uint32, Uint64, the fp8 types: gradpack's reduce kernels have no such dtype
      return false;
  }
}

// NCCL and gradpack number Max and Min the other way round.
bool map_op(ncclRedOp_t in, gp_redop_t* out) {
  switch (in) {
    case ncclSum:
      *out = GP_SUM;
      return true;
    case ncclProd:
      *out = GP_PROD;
      return true;
    case ncclMax:
      *out = GP_MAX;
      return true;
    case ncclMin:
      *out = GP_MIN;
      return true;
    case ncclAvg:  // NCCL sends averages as sums (the GPU scales); gradpack can average anyway
      *out = GP_AVG;
      return true;
    default:
      return false;
  }
}

struct Context {
  uint64_t comm_id = 0;
  std::string codec;      // "" uncompressed
  bool for_tuner = true;  // GRADPACK_TUNER is on: connect measures the link for it
  std::chrono::milliseconds timeout{0};
};

struct ListenComm : plugin::Tracked {
  uint64_t comm_id = 0;  // NCCL's, from init: the key of the figures connect publishes
  std::string codec;
  bool for_tuner = true;
  std::chrono::milliseconds timeout{0};
  transport::Backend backend = transport::Backend::kTcp;
  std::unique_ptr<transport::Transport> transport;  // a DeviceView
  std::unique_ptr<transport::Listener> listener;    // moved into the Communicator by connect()
  uint8_t handle[NCCL_NET_HANDLE_MAXSIZE] = {};
};

struct MemHandle {
  static constexpr uint32_t kMagic = 0x524D4E43;  // "CNMR"
  uint32_t magic = kMagic;
  void* data = nullptr;
  size_t size = 0;
};

class CollComm;

struct Request {
  enum State : int { kFree = 0, kQueued = 1, kDone = 2, kFailed = 3 };
  std::atomic<int> state{kFree};
  CollComm* owner = nullptr;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  size_t bytes = 0;
  Status error;  // written by the worker before state becomes kFailed
};

// One per connect(): the Communicator, the worker that runs the queued all-reduces in order, and
// a fixed pool of requests (a full pool makes iallreduce return a NULL request: NCCL retries).
class CollComm : public plugin::Tracked {
 public:
  CollComm(std::unique_ptr<coll::Communicator> comm, const coll::CodecRequest& codec)
      : comm_(std::move(comm)),
        // Explicit "off" for what is not compressed: GRADPACK_COMPRESS belongs to gp_allreduce and
        // the interposer, not to CollNet.
        compressed_(coll::AllreduceOptions::internal(codec)),
        plain_(coll::AllreduceOptions::uncompressed()),
        requests_(new Request[kMaxRequests]) {
    for (int i = 0; i < kMaxRequests; ++i) requests_[i].owner = this;
    worker_ = std::thread([this] { run(); });
  }

  ~CollComm() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    // A call in progress is cancelled (a peer that never joins it would otherwise hold closeColl
    // for GRADPACK_TIMEOUT_MS); queued calls are abandoned: NCCL tears down without waiting for
    // them.
    comm_->cancel();
    worker_.join();
    comm_.reset();
  }

  Request* post(const void* send, void* recv, size_t count, gp_dtype_t dtype, gp_redop_t op) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < kMaxRequests; ++i) {
      Request& r = requests_[(next_slot_ + i) % kMaxRequests];
      if (r.state.load(std::memory_order_acquire) != Request::kFree) continue;
      next_slot_ = (next_slot_ + i + 1) % kMaxRequests;
      r.send = send;
      r.recv = recv;
      r.count = count;
      r.dtype = dtype;
      r.op = op;
      r.bytes = count * dtype_size(dtype);
      r.error = OkStatus();
      r.state.store(Request::kQueued, std::memory_order_release);
      queue_.push_back(&r);
      cv_.notify_one();
      return &r;
    }
    return nullptr;
  }

  // A request that is complete from the start (iflush of host memory).
  Request* post_done(size_t bytes) {
    std::lock_guard<std::mutex> lock(mu_);
    for (int i = 0; i < kMaxRequests; ++i) {
      Request& r = requests_[(next_slot_ + i) % kMaxRequests];
      if (r.state.load(std::memory_order_acquire) != Request::kFree) continue;
      r.bytes = bytes;
      r.error = OkStatus();
      r.state.store(Request::kDone, std::memory_order_release);
      return &r;
    }
    return nullptr;
  }

 private:
  void run() {
    for (;;) {
      Request* r = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
        if (stopping_) return;
        r = queue_.front();
        queue_.pop_front();
      }
      Status st = allreduce(*r);
      if (st.ok()) {
        r->state.store(Request::kDone, std::memory_order_release);
      } else {
        r->error = std::move(st);
        r->state.store(Request::kFailed, std::memory_order_release);
      }
    }
  }

  Status allreduce(const Request& r) {
    const bool float_sum =
        (r.dtype == GP_FLOAT32 || r.dtype == GP_FLOAT16 || r.dtype == GP_BFLOAT16) &&
        (r.op == GP_SUM || r.op == GP_AVG);
    GP_RETURN_IF_ERROR(
        comm_->allreduce(r.send, r.recv, r.count, r.dtype, r.op, float_sum ? compressed_ : plain_));
    // Which plan NCCL's chunks take (the ring, or the switch tree's when GRADPACK_TOPOLOGY
    // places the nodes), said once per change.
    if (comm_->last_algorithm() != logged_algorithm_) {
      logged_algorithm_ = comm_->last_algorithm();
      GP_LOG_INFO(kPlugin, "CollNet rank %d of %d: all-reduces of %zu bytes take %s", comm_->rank(),
                  comm_->size(), r.bytes, logged_algorithm_.c_str());
    }
    return OkStatus();
  }

  std::unique_ptr<coll::Communicator> comm_;
  const coll::AllreduceOptions compressed_;
  const coll::AllreduceOptions plain_;
  std::unique_ptr<Request[]> requests_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Request*> queue_;
  bool stopping_ = false;
  int next_slot_ = 0;
  std::string logged_algorithm_;  // the worker's
  std::thread worker_;
};

// Every node must compress alike (NCCL sends each chunk through all of them): one small
// all-reduce right after connecting, so that a node with a different GRADPACK_COLLNET_COMPRESS
// fails connect with a message that says so, on every node at once. It also tells whether any
// node's tuner wants the link measured (*measure: the same answer on every node, as the measuring
// is collective).
Status agree(coll::Communicator& comm, const std::string& codec, bool for_tuner, bool* measure) {
  const int64_t hash = codec.empty() ? 0 : static_cast<int64_t>(crc32c(codec.data(), codec.size()));
  const int64_t mine[3] = {hash, -hash, for_tuner ? 1 : 0};
  int64_t max[3] = {0, 0, 0};
  GP_RETURN_IF_ERROR(
      comm.allreduce(mine, max, 3, GP_INT64, GP_MAX, coll::AllreduceOptions::uncompressed()));
  if (max[0] != -max[1]) {  // the largest hash is not also the smallest
    return InvalidArgument(
        "GRADPACK_COLLNET_COMPRESS differs across the nodes of this communicator (this node: '" +
        (codec.empty() ? std::string("off") : codec) + "'): set the same value on every node");
  }
  *measure = !codec.empty() && max[2] != 0;
  return OkStatus();
}

}  // namespace

Status codec_from_setting(const std::string& text, std::string* out) {
  out->clear();
  if (text.empty() || text == "off" || text == "none") return OkStatus();
  CodecSpec spec;
  Status st = parse_codec_spec(text, &spec);
  if (!st.ok()) {
    return InvalidArgument("GRADPACK_COLLNET_COMPRESS='" + text + "': " + st.message() +
                           " (a codec spec such as q8, or empty for uncompressed)");
  }
  if (spec.quant.bits > 0) spec.quant.rounding = Rounding::kStochastic;
  *out = spec.canonical();
  return OkStatus();
}

ncclResult_t init(void** ctx, uint64_t commId, ncclDebugLogger_t logFunction) {
  if (ctx == nullptr) return ncclInvalidArgument;
  *ctx = nullptr;
  return plugin::guard("CollNet init", [&]() -> Status {
    // Read now, not from the cached process settings: each communicator may be made under a
    // different environment (NCCL too re-reads NCCL_COLLNET_ENABLE at every comm init).
    Settings settings;
    GP_RETURN_IF_ERROR(Settings::from_environment(&settings));
    auto context = std::make_unique<Context>();
    context->comm_id = commId;
    context->timeout = std::chrono::milliseconds(settings.get_int(SettingId::kTimeoutMs));
    context->for_tuner = settings.get(SettingId::kTuner) != "off";
    GP_RETURN_IF_ERROR(
        codec_from_setting(settings.get(SettingId::kCollnetCompress), &context->codec));
    GP_RETURN_IF_ERROR(plugin::acquire(logFunction));
    if (!context->codec.empty()) {
      plugin::info("CollNet: float sums are compressed with %s (no error feedback)",
                   context->codec.c_str());
    }
    *ctx = context.release();
    return OkStatus();
  });
}

ncclResult_t devices(int* ndev) {
  if (ndev == nullptr) return ncclInvalidArgument;
  return plugin::guard("CollNet devices", [&] { return plugin::device_count(ndev); });
}

ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props) {
  if (props == nullptr) return ncclInvalidArgument;
  return plugin::guard("CollNet getProperties", [&]() -> Status {
    // The net plugin's devices, names and figures, so NCCL matches both faces in its topology.
    GP_RETURN_IF_ERROR(plugin::properties(dev, props));
    // Any message NCCL may give one iallreduce: the host all-reduce has no smaller limit.
    props->maxCollBytes = kMaxCollBytes;
    // The CollNet all-reduce reads and writes its buffers with the CPU: host memory only, even on
    // an ibverbs device whose net face reports GPUDirect RDMA.
    props->ptrSupport = NCCL_PTR_HOST;
    return OkStatus();
  });
}

ncclResult_t listen(void* ctx, int dev, void* handle, void** listenComm) {
  if (ctx == nullptr || handle == nullptr || listenComm == nullptr) return ncclInvalidArgument;
  *listenComm = nullptr;
  return plugin::guard("CollNet listen", [&]() -> Status {
    const auto* context = static_cast<const Context*>(ctx);
    plugin::DeviceRef ref;
    GP_RETURN_IF_ERROR(plugin::device(dev, &ref));
    auto lcomm = std::make_unique<ListenComm>();
    lcomm->comm_id = context->comm_id;
    lcomm->codec = context->codec;
    lcomm->for_tuner = context->for_tuner;
    lcomm->timeout = context->timeout;
    lcomm->backend = ref.backend;
    lcomm->transport = std::make_unique<DeviceView>(ref.transport, ref.local);
    transport::Handle inner;
    GP_RETURN_IF_ERROR(lcomm->transport->listen(0, &inner, &lcomm->listener));
    GP_RETURN_IF_ERROR(plugin::encode_plugin_handle(ref.backend, inner, lcomm->handle));
    std::memcpy(handle, lcomm->handle, NCCL_NET_HANDLE_MAXSIZE);
    plugin::track(lcomm.get());
    *listenComm = lcomm.release();
    return OkStatus();
  });
}

ncclResult_t connect(void* handles[], int nranks, int rank, void* listenComm, void** collComm) {
  if (handles == nullptr || listenComm == nullptr || collComm == nullptr) {
    return ncclInvalidArgument;
  }
  *collComm = nullptr;
  return plugin::guard("CollNet connect", [&]() -> Status {
    auto* lcomm = static_cast<ListenComm*>(listenComm);
    if (!plugin::is_tracked(lcomm)) return InvalidArgument("unknown or closed listenComm");
    if (nranks < 1 || rank < 0 || rank >= nranks) {
      return InvalidArgument("rank " + std::to_string(rank) + " of " + std::to_string(nranks));
    }
    if (lcomm->listener == nullptr) {
      return InvalidArgument("this listenComm was already used by an earlier connect");
    }
    // Every handle is checked before anything is dialled: garbage never becomes an address.
    std::vector<transport::Handle> peers(static_cast<size_t>(nranks));
    for (int p = 0; p < nranks; ++p) {
      if (handles[p] == nullptr)
        return InvalidArgument("handles[" + std::to_string(p) + "] is NULL");
      transport::Backend backend = transport::Backend::kTcp;
      Status st =
          plugin::decode_plugin_handle(handles[p], &backend, &peers[static_cast<size_t>(p)]);
      if (!st.ok()) {
        return Status(st.code(), "handles[" + std::to_string(p) + "]: " + st.message());
      }
      if (backend != lcomm->backend) {
        return InvalidArgument("handles[" + std::to_string(p) + "] is a " +
                               transport::backend_name(backend) + " handle, this node's is " +
                               transport::backend_name(lcomm->backend) +
                               ": set the same GRADPACK_TRANSPORT on every node");
      }
    }
    if (std::memcmp(handles[rank], lcomm->handle, NCCL_NET_HANDLE_MAXSIZE) != 0) {
      return InvalidArgument("handles[" + std::to_string(rank) +
                             "] is not the handle this listenComm published");
    }
    coll::CommOptions options;
    options.timeout = lcomm->timeout;
    std::unique_ptr<coll::Communicator> comm;
    GP_RETURN_IF_ERROR(coll::Communicator::create_from_handles(
        rank, nranks, std::move(lcomm->transport), std::move(lcomm->listener), peers,
        std::move(options), &comm));
    bool measure = false;
    GP_RETURN_IF_ERROR(agree(*comm, lcomm->codec, lcomm->for_tuner, &measure));
    coll::CodecRequest codec;  // off for "" (uncompressed)
    GP_RETURN_IF_ERROR(coll::parse_codec_request(lcomm->codec, &codec));
    if (measure && nranks > 1) {
      // The figures the tuner decides from (it has no communicator to measure with): the link,
      // the codec's rates and latencies among these nodes, and timed small all-reduces, each the
      // slowest node's, so the same on every node. Collective, like connect itself; a fraction
      // of a second.
      MeasuredLink link;
      GP_RETURN_IF_ERROR(comm->link_model(codec, &link.model));
      GP_RETURN_IF_ERROR(comm->probe_small_sizes(codec, &link.probed_win_bytes));
      publish_measured_link(lcomm->comm_id, lcomm->codec, link);
    }
    auto* cc = new CollComm(std::move(comm), codec);
    plugin::track(cc);
    *collComm = cc;
    return OkStatus();
  });
}

ncclResult_t reduce_support(ncclDataType_t dataType, ncclRedOp_t redOp, int* supported) {
  if (supported == nullptr) return ncclInvalidArgument;
  gp_dtype_t dtype;
  gp_redop_t op;
  *supported = map_dtype(dataType, &dtype) && map_op(redOp, &op) ? 1 : 0;
  return ncclSuccess;
}

ncclResult_t reg_mr(void* collComm, void* data, size_t size, int type, void** mhandle) {
  if (collComm == nullptr || mhandle == nullptr) return ncclInvalidArgument;
  *mhandle = nullptr;
  return plugin::guard("CollNet regMr", [&]() -> Status {
    if (type != NCCL_PTR_HOST) {
      return Unsupported("memory type " + std::to_string(type) +
                         ": this CollNet reduces host memory only (ptrSupport is NCCL_PTR_HOST)");
    }
    // Nothing to pin: the all-reduce reads and writes host memory through the transport.
    auto* mr = new MemHandle;
    mr->data = data;
    mr->size = size;
    *mhandle = mr;
    return OkStatus();
  });
}

ncclResult_t dereg_mr(void* collComm, void* mhandle) {
  if (collComm == nullptr) return ncclInvalidArgument;
  auto* mr = static_cast<MemHandle*>(mhandle);
  if (mr == nullptr) return ncclSuccess;
  if (mr->magic != MemHandle::kMagic) {
    plugin::warn("CollNet deregMr: not a memory handle of this plugin (or deregistered twice)");
    return ncclInvalidArgument;
  }
  mr->magic = 0;
  delete mr;
  return ncclSuccess;
}

ncclResult_t iallreduce(void* collComm, void* sendData, void* recvData, size_t count,
                        ncclDataType_t dataType, ncclRedOp_t redOp, void* sendMhandle,
                        void* recvMhandle, void** request) {
  (void)sendMhandle, (void)recvMhandle;
  if (collComm == nullptr || request == nullptr) return ncclInvalidArgument;
  *request = nullptr;
  return plugin::guard("CollNet iallreduce", [&]() -> Status {
    auto* comm = static_cast<CollComm*>(collComm);
    gp_dtype_t dtype;
    gp_redop_t op;
    if (!map_dtype(dataType, &dtype) || !map_op(redOp, &op)) {
      return Unsupported("dtype " + std::to_string(static_cast<int>(dataType)) + ", op " +
                         std::to_string(static_cast<int>(redOp)) +
                         ": reduceSupport said this CollNet cannot reduce it");
    }
    if (count > 0 && (sendData == nullptr || recvData == nullptr)) {
      return InvalidArgument("NULL buffer with count " + std::to_string(count));
    }
    *request = comm->post(sendData, recvData, count, dtype, op);  // NULL when full: NCCL retries
    return OkStatus();
  });
}

ncclResult_t iflush(void* collComm, void* data, int size, void* mhandle, void** request) {
  (void)data, (void)mhandle;
  if (collComm == nullptr || request == nullptr) return ncclInvalidArgument;
  // Host memory needs no flush (NCCL asks only with GPU Direct, which is never advertised): a
  // request that is done at once.
  *request = static_cast<CollComm*>(collComm)->post_done(size > 0 ? static_cast<size_t>(size) : 0);
  return ncclSuccess;
}

ncclResult_t test(void* request, int* done, int* size) {
  if (request == nullptr || done == nullptr) return ncclInvalidArgument;
  auto* r = static_cast<Request*>(request);
  *done = 0;
  switch (r->state.load(std::memory_order_acquire)) {
    case Request::kQueued:
      return ncclSuccess;
    case Request::kDone:
      *done = 1;
      if (size != nullptr) *size = static_cast<int>(std::min<size_t>(r->bytes, INT_MAX));
      r->state.store(Request::kFree, std::memory_order_release);
      return ncclSuccess;
    case Request::kFailed: {
      Status error = r->error;
      r->state.store(Request::kFree, std::memory_order_release);
      return allreduce_result(error);
    }
    default:
      plugin::warn("CollNet test: a request that is not in flight (completed or never posted)");
      return ncclInvalidArgument;
  }
}

ncclResult_t close_coll(void* collComm) {
  auto* comm = static_cast<CollComm*>(collComm);
  if (comm == nullptr || !plugin::is_tracked(comm)) {
    plugin::warn("CollNet closeColl: unknown or already closed collComm");
    return ncclInvalidArgument;
  }
  plugin::untrack(comm);
  delete comm;
  return ncclSuccess;
}

ncclResult_t close_listen(void* listenComm) {
  auto* lcomm = static_cast<ListenComm*>(listenComm);
  if (lcomm == nullptr || !plugin::is_tracked(lcomm)) {
    plugin::warn("CollNet closeListen: unknown or already closed listenComm");
    return ncclInvalidArgument;
  }
  // After connect() the listener belongs to the Communicator; this frees only what is left.
  plugin::untrack(lcomm);
  delete lcomm;
  return ncclSuccess;
}

ncclResult_t finalize(void* ctx) {
  if (ctx == nullptr) return ncclSuccess;  // after a failed init: no reference was taken
  delete static_cast<Context*>(ctx);
  plugin::release();
  return ncclSuccess;
}

}  // namespace gradpack::plugin::collnet
