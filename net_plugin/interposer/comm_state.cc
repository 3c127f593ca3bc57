// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/comm_state.h"

#include <string>
#include <thread>

#include "net_plugin/interposer/cuda/accum_kernels.h"
#include "common/dtype.h"

namespace gradpack::interposer {

namespace {

constexpr size_t kFrameAlign = 256;
// Shapes remembered per communicator; a model has a bounded set of buckets, anything past this
// is rebuilt on demand.
constexpr size_t kMaxPrepared = 256;

Status cuda_status(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return OkStatus();
  return Status(Code::kSystem, std::string("CUDA: ") + what + ": " + cudaGetErrorName(err) + " (" +
                                   cudaGetErrorString(err) + ")");
}

Status nccl_status(const NcclApi& api, ncclComm_t comm, ncclResult_t r, const char* what) {
  // A nonblocking communicator returns ncclInProgress until the operation is enqueued; the next
  // kernel on the stream must come after it, so wait here.
  while (r == ncclInProgress && api.comm_get_async_error != nullptr) {
    ncclResult_t state = ncclSuccess;
    if (api.comm_get_async_error(comm, &state) != ncclSuccess) break;
    r = state;
    if (r == ncclInProgress) std::this_thread::yield();
  }
  if (r == ncclSuccess) return OkStatus();
  const char* text = api.error_string ? api.error_string(r) : "";
  return Status(Code::kSystem, std::string("NCCL: ") + what + ": " + text + " (ncclResult_t " +
                                   std::to_string(static_cast<int>(r)) + ")");
}

// The plan's local ops and messages on the caller's stream.
class DeviceOps : public coll::NcclOps {
 public:
  struct Memory {
    const uint8_t* send;
    uint8_t* recv;
    float* accum;
    float* residual;  // null: no error feedback
    uint8_t* frames;
  };
  DeviceOps(const NcclApi& api, ncclComm_t comm, cudaStream_t stream, gp_dtype_t dtype,
            const coll::Plan& plan, const std::vector<size_t>& frame_offset,
            const coll::NcclSchedule& schedule, const Memory& memory, const CodecSpec& worker,
            const CodecSpec& server, uint64_t* worker_encodes, uint64_t* server_encodes,
            cuda::Workspace& ws)
      : api_(api),
        comm_(comm),
        stream_(stream),
        dtype_(dtype),
        elem_(dtype_size(dtype)),
        plan_(plan),
        frame_offset_(frame_offset),
        schedule_(schedule),
        m_(memory),
        worker_(worker),
        server_(server),
        worker_encodes_(worker_encodes),
        server_encodes_(server_encodes),
        ws_(ws) {}

  Status group_start() override {
    return nccl_status(api_, comm_, api_.group_start(), "group start");
  }
  Status group_end() override { return nccl_status(api_, comm_, api_.group_end(), "group end"); }
  Status send(const coll::Op& op, size_t bytes) override {
    return nccl_status(
        api_, comm_, api_.send(address(op.src), bytes, ncclUint8, op.peer, comm_, stream_), "send");
  }
  Status recv(const coll::Op& op, size_t bytes) override {
    return nccl_status(
        api_, comm_, api_.recv(address(op.dst), bytes, ncclUint8, op.peer, comm_, stream_), "recv");
  }

  Status local(const coll::Op& op) override {
    using coll::Buf;
    using coll::OpKind;
    const bool to_accum = op.dst.buf == Buf::kAccum;
    const bool from_accum = op.src.buf == Buf::kAccum;
    switch (op.kind) {
      case OpKind::kCopy:
        if (to_accum) {
          return coll::cuda::widen(address(op.src), from_accum ? GP_FLOAT32 : dtype_,
                                   reinterpret_cast<float*>(address(op.dst)), op.dst.count, false,
                                   stream_);
        }
        if (from_accum) {
          return coll::cuda::narrow(reinterpret_cast<const float*>(address(op.src)),
                                    address(op.dst), dtype_, op.dst.count, 1.0f, stream_);
        }
        if (address(op.dst) == address(op.src) || op.dst.count == 0) return OkStatus();
        return cuda_status(cudaMemcpyAsync(address(op.dst), address(op.src), op.dst.count * elem_,
                                           cudaMemcpyDeviceToDevice, stream_),
                           "copy");
      case OpKind::kReduce:
        if (!to_accum) return Unsupported("the NCCL executor reduces into kAccum only");
        return coll::cuda::widen(address(op.src), from_accum ? GP_FLOAT32 : dtype_,
                                 reinterpret_cast<float*>(address(op.dst)), op.dst.count, true,
                                 stream_);
      case OpKind::kEncode: {
        const size_t slot = op.dst.offset;
        const bool server = plan_.frames[slot].stage == coll::Stage::kServer;
        float* residual = nullptr;
        if (m_.residual != nullptr && op.aux.count > 0) residual = m_.residual + op.aux.offset;
        uint64_t* calls = server ? server_encodes_ : worker_encodes_;
        size_t bytes = 0;
        const size_t cap = schedule_.frame_capacity[slot];
        GP_RETURN_IF_ERROR(cuda::encode(server ? server_ : worker_, address(op.src),
                                        from_accum ? GP_FLOAT32 : dtype_, op.src.count, residual,
                                        (*calls)++, ws_, address(op.dst), cap, &bytes, stream_));
        // The receiver takes exactly the capacity (q<b> frames have one size per count).
        if (bytes != cap) {
          return Internal("a frame of " + std::to_string(op.src.count) + " elements took " +
                          std::to_string(bytes) + " bytes, not the " + std::to_string(cap) +
                          " the peers expect");
        }
        return OkStatus();
      }
      case OpKind::kDecode: {
        const size_t slot = op.src.offset;
        Status st =
            cuda::decode(address(op.src), schedule_.frame_capacity[slot], address(op.dst),
                         op.dst.count, to_accum ? GP_FLOAT32 : dtype_, op.accumulate, ws_, stream_);
        if (!st.ok()) return Status(st.code(), "a frame does not decode: " + st.message());
        return OkStatus();
      }
      default:
        return Internal("not a local op");
    }
  }

 private:
  uint8_t* address(const coll::Span& s) const {
    using coll::Buf;
    switch (s.buf) {
      case Buf::kSend:
        return const_cast<uint8_t*>(m_.send) + s.offset * elem_;
      case Buf::kRecv:
        return m_.recv + s.offset * elem_;
      case Buf::kAccum:
        return reinterpret_cast<uint8_t*>(m_.accum + s.offset);
      case Buf::kResidual:
        return m_.residual ? reinterpret_cast<uint8_t*>(m_.residual + s.offset) : nullptr;
      case Buf::kFrame:
        return m_.frames + frame_offset_[s.offset];
      case Buf::kScratch:
        break;
    }
    return nullptr;
  }

  const NcclApi& api_;
  ncclComm_t comm_;
  cudaStream_t stream_;
  gp_dtype_t dtype_;
  size_t elem_;
  const coll::Plan& plan_;
  const std::vector<size_t>& frame_offset_;
  const coll::NcclSchedule& schedule_;
  Memory m_;
  const CodecSpec& worker_;
  const CodecSpec& server_;
  uint64_t* worker_encodes_;
  uint64_t* server_encodes_;
  cuda::Workspace& ws_;
};

}  // namespace

DeviceBuffer::~DeviceBuffer() {
  if (data_) cudaFree(data_);
}

Status DeviceBuffer::reserve(size_t bytes) {
  if (bytes <= size_ && data_ != nullptr) return OkStatus();
  if (data_) {
    // cudaFree waits for the device: work queued earlier may still use the old buffer.
    cudaFree(data_);
    data_ = nullptr;
    size_ = 0;
  }
  void* p = nullptr;
  GP_RETURN_IF_ERROR(cuda_status(cudaMalloc(&p, bytes < 4096 ? 4096 : bytes), "cudaMalloc"));
  data_ = static_cast<uint8_t*>(p);
  size_ = bytes < 4096 ? 4096 : bytes;
  return OkStatus();
}

CommState::CommState(ncclComm_t comm, int rank, int nranks, const Config& config)
    : comm_(comm), rank_(rank), nranks_(nranks), config_(config) {
  // As the host communicator does: ranks round with different streams, so stochastic rounding
  // noise averages out in the sum; the reduced chunk's frame uses the spec's own seed.
  worker_spec_ = config.spec;
  worker_spec_.quant.seed += static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
  server_spec_ = config.spec;
}

Status CommState::prepare(size_t count, gp_dtype_t dtype, Prepared** out) {
  const auto key = std::make_pair(count, static_cast<int>(dtype));
  auto it = prepared_.find(key);
  if (it != prepared_.end()) {
    *out = it->second.get();
    return OkStatus();
  }
  if (prepared_.size() >= kMaxPrepared) prepared_.clear();
  auto p = std::make_unique<Prepared>();
  coll::PlanRequest req;
  req.collective = coll::Collective::kAllReduce;
  req.rank = rank_;
  req.nranks = nranks_;
  req.count = count;
  req.elem_size = dtype_size(dtype);
  req.segment_bytes = config_.segment_bytes;
  req.compressed = true;
  GP_RETURN_IF_ERROR(coll::make_plan(coll::Algorithm::kDirect, req, &p->plan));
  // q<b> frames have the same size whatever the input dtype (codes and fp32 scales).
  auto capacity = [this](size_t n, coll::Stage stage) {
    return cuda::max_encoded_bytes(stage == coll::Stage::kServer ? server_spec_ : worker_spec_, n,
                                   GP_FLOAT32);
  };
  GP_RETURN_IF_ERROR(
      coll::make_nccl_schedule(coll::Algorithm::kDirect, req, p->plan, capacity, &p->schedule));
  p->frame_offset.resize(p->schedule.frame_capacity.size());
  size_t at = 0;
  for (size_t f = 0; f < p->frame_offset.size(); ++f) {
    p->frame_offset[f] = at;
    at += (p->schedule.frame_capacity[f] + kFrameAlign - 1) / kFrameAlign * kFrameAlign;
  }
  p->frame_bytes = at;
  *out = p.get();
  prepared_.emplace(key, std::move(p));
  return OkStatus();
}

Status CommState::all_reduce(const NcclApi& api, const void* send, void* recv, size_t count,
                             gp_dtype_t dtype, bool avg, cudaStream_t stream,
                             bool* issued_messages) {
  *issued_messages = false;
  std::lock_guard<std::mutex> lock(mu_);
  Prepared* p = nullptr;
  GP_RETURN_IF_ERROR(prepare(count, dtype, &p));
  GP_RETURN_IF_ERROR(frames_.reserve(p->frame_bytes));
  GP_RETURN_IF_ERROR(accum_.reserve(p->plan.accum_count * sizeof(float)));
  float* residual = nullptr;
  DeviceBuffer* res_buf = nullptr;
  if (config_.error_feedback) {
    auto& slot = residuals_[std::make_tuple(recv, count, static_cast<int>(dtype))];
    if (!slot) {
      auto fresh = std::make_unique<DeviceBuffer>();
      GP_RETURN_IF_ERROR(fresh->reserve(count * sizeof(float)));
      GP_RETURN_IF_ERROR(cuda_status(
          cudaMemsetAsync(fresh->data(), 0, count * sizeof(float), stream), "zero the residual"));
      slot = std::move(fresh);
    }
    res_buf = slot.get();
    residual = reinterpret_cast<float*>(res_buf->data());
  }
  DeviceOps::Memory m{static_cast<const uint8_t*>(send), static_cast<uint8_t*>(recv),
                      reinterpret_cast<float*>(accum_.data()), residual, frames_.data()};
  DeviceOps ops(api, comm_, stream, dtype, p->plan, p->frame_offset, p->schedule, m, worker_spec_,
                server_spec_, &worker_encodes_, &server_encodes_, workspace_);
  Status st = coll::run_nccl_schedule(p->plan, p->schedule, ops, issued_messages);
  if (!st.ok()) {
    // The encodes before the first message may have moved part of this step into the residual;
    // NCCL will now send the whole step, so that part must not be sent again next time.
    if (!*issued_messages && res_buf != nullptr) {
      (void)cudaMemsetAsync(res_buf->data(), 0, count * sizeof(float), stream);
    }
    return st;
  }
  if (avg) {
    GP_RETURN_IF_ERROR(
        coll::cuda::scale(recv, dtype, count, 1.0f / static_cast<float>(nranks_), stream));
  }
  return OkStatus();
}

}  // namespace gradpack::interposer
