// SPDX-License-Identifier: Apache-2.0
#include "net_plugin/interposer/comm_state.h"

#include <array>
#include <cstring>
#include <string>
#include <thread>

#include "common/dtype.h"
#include "common/log.h"
#include "compression/wire.h"
#include "net_plugin/interposer/release.h"

namespace gradpack::interposer {

namespace {

constexpr size_t kFrameAlign = 256;
// Shapes remembered per communicator; a model has a bounded set of buckets, anything past this
// is agreed again on demand.
constexpr size_t kMaxShapes = 256;
constexpr size_t kVoteOffset = 0;
constexpr size_t kCheckOffset = 64;

Status nccl_status(const NcclApi& api, ncclComm_t comm, ncclResult_t r, const char* what) {
  // A nonblocking communicator returns ncclInProgress until the operation is enqueued; the next
  // kernel on the stream must come after it, so wait here (host-side enqueueing, not the device).
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

size_t round_up(size_t n, size_t a) { return (n + a - 1) / a * a; }

const char* float_name(gp_dtype_t dtype) {
  switch (dtype) {
    case GP_FLOAT16:
      return "float16";
    case GP_BFLOAT16:
      return "bfloat16";
    default:
      return "float32";
  }
}

}  // namespace

// What one shape needs, made at its agreement.
struct CommState::Prepared {
  coll::Plan plan;
  coll::NcclSchedule schedule;
  std::vector<size_t> frame_offset;  // bytes into frames_, 256-byte aligned
  // Per frame slot: the header its frame must carry (built on the host, checked on the device).
  std::vector<std::array<uint8_t, kFrameHeaderBytes>> header;
  size_t frame_bytes = 0;
  size_t max_frame_count = 0;
};

namespace {

// The plan's local ops and messages on the caller's stream.
class DeviceOps : public coll::NcclOps {
 public:
  struct Memory {
    const uint8_t* send;
    uint8_t* recv;
    float* accum;
    void* residual;       // null: no error feedback
    bool residual16;      // bf16 residual, widened into wide_residual around each encode
    float* wide_residual;
    uint8_t* frames;
    void* check;
  };
  struct Codecs {
    const CodecSpec* worker;
    const CodecSpec* server;
    uint64_t* worker_encodes;
    uint64_t* server_encodes;
    Scratch* scratch;
  };
  DeviceOps(const NcclApi& api, ncclComm_t comm, const CallArgs& call, float final_scale,
            const coll::Plan& plan, const std::vector<size_t>& frame_offset,
            const coll::NcclSchedule& schedule,
            const std::vector<std::array<uint8_t, kFrameHeaderBytes>>& header,
            const Memory& memory, const Codecs& codecs)
      : api_(api),
        comm_(comm),
        call_(call),
        elem_(dtype_size(call.dtype)),
        final_scale_(final_scale),
        plan_(plan),
        frame_offset_(frame_offset),
        schedule_(schedule),
        header_(header),
        m_(memory),
        c_(codecs) {}

  Status group_start() override {
    return nccl_status(api_, comm_, api_.group_start(), "group start");
  }
  Status group_end() override { return nccl_status(api_, comm_, api_.group_end(), "group end"); }
  Status send(const coll::Op& op, size_t bytes) override {
    return nccl_status(
        api_, comm_, api_.send(address(op.src), bytes, ncclUint8, op.peer, comm_, call_.stream),
        "send");
  }
  Status recv(const coll::Op& op, size_t bytes) override {
    return nccl_status(
        api_, comm_, api_.recv(address(op.dst), bytes, ncclUint8, op.peer, comm_, call_.stream),
        "recv");
  }

  Status local(const coll::Op& op) override {
    switch (op.kind) {
      case coll::OpKind::kCopy:
        return copy(op);
      case coll::OpKind::kReduce:
        if (op.dst.buf != coll::Buf::kAccum) {
          return Unsupported("the NCCL executor reduces into kAccum only");
        }
        return device().widen(address(op.src), dtype_of(op.src),
                              reinterpret_cast<float*>(address(op.dst)), op.dst.count, true,
                              call_.stream);
      case coll::OpKind::kEncode:
        return encode(op);
      case coll::OpKind::kDecode:
        return decode(op);
      default:
        return Internal("not a local op");
    }
  }

 private:
  gp_dtype_t dtype_of(const coll::Span& s) const {
    return s.buf == coll::Buf::kAccum ? GP_FLOAT32 : call_.dtype;
  }
  float scale_of(const coll::Span& dst) const {
    return dst.buf == coll::Buf::kRecv ? final_scale_ : 1.0f;
  }

  Status copy(const coll::Op& op) {
    Device& dev = device();
    if (op.dst.buf == coll::Buf::kAccum) {
      return dev.widen(address(op.src), dtype_of(op.src),
                       reinterpret_cast<float*>(address(op.dst)), op.dst.count, false,
                       call_.stream);
    }
    if (op.src.buf == coll::Buf::kAccum) {
      return dev.narrow(reinterpret_cast<const float*>(address(op.src)), address(op.dst),
                        call_.dtype, op.dst.count, scale_of(op.dst), call_.stream);
    }
    if (scale_of(op.dst) != 1.0f) {
      return Unsupported("the NCCL executor averages only in a decode or an fp32 narrowing");
    }
    if (address(op.dst) == address(op.src) || op.dst.count == 0) return OkStatus();
    return dev.copy(address(op.dst), address(op.src), op.dst.count * elem_, call_.stream);
  }

  Status encode(const coll::Op& op) {
    Device& dev = device();
    const size_t slot = op.dst.offset;
    const bool server = plan_.frames[slot].stage == coll::Stage::kServer;
    EncodeArgs a;
    a.spec = server ? c_.server : c_.worker;
    a.in = address(op.src);
    a.dtype = dtype_of(op.src);
    a.count = op.src.count;
    a.call_index = (*(server ? c_.server_encodes : c_.worker_encodes))++;
    a.frame = address(op.dst);
    a.frame_bytes = schedule_.frame_capacity[slot];
    const bool feedback = m_.residual != nullptr && op.aux.count > 0;
    void* narrow_residual = nullptr;
    if (feedback && m_.residual16) {
      narrow_residual = static_cast<uint16_t*>(m_.residual) + op.aux.offset;
      GP_RETURN_IF_ERROR(dev.widen(narrow_residual, GP_BFLOAT16, m_.wide_residual, op.aux.count,
                                   false, call_.stream));
      a.residual = m_.wide_residual;
    } else if (feedback) {
      a.residual = static_cast<float*>(m_.residual) + op.aux.offset;
    }
    GP_RETURN_IF_ERROR(dev.encode(*c_.scratch, a, call_.stream));
    if (narrow_residual == nullptr) return OkStatus();
    return dev.narrow(m_.wide_residual, narrow_residual, GP_BFLOAT16, op.aux.count, 1.0f,
                      call_.stream);
  }

  Status decode(const coll::Op& op) {
    const size_t slot = op.src.offset;
    DecodeArgs a;
    a.frame = address(op.src);
    a.frame_bytes = schedule_.frame_capacity[slot];
    a.expected_header = header_[slot].data();
    a.out = address(op.dst);
    a.count = op.dst.count;
    a.dtype = dtype_of(op.dst);
    a.accumulate = op.accumulate;
    a.scale = op.accumulate ? 1.0f : scale_of(op.dst);
    a.check = m_.check;
    return device().decode(*c_.scratch, a, call_.stream);
  }

  uint8_t* address(const coll::Span& s) const {
    using coll::Buf;
    switch (s.buf) {
      case Buf::kSend:
        return const_cast<uint8_t*>(m_.send) + s.offset * elem_;
      case Buf::kRecv:
        return m_.recv + s.offset * elem_;
      case Buf::kAccum:
        return reinterpret_cast<uint8_t*>(m_.accum + s.offset);
      case Buf::kResidual:  // encode() addresses residuals itself (fp32 or bf16)
      case Buf::kScratch:
        break;
      case Buf::kFrame:
        return m_.frames + frame_offset_[s.offset];
    }
    return nullptr;
  }

  const NcclApi& api_;
  ncclComm_t comm_;
  const CallArgs& call_;
  size_t elem_;
  float final_scale_;
  const coll::Plan& plan_;
  const std::vector<size_t>& frame_offset_;
  const coll::NcclSchedule& schedule_;
  const std::vector<std::array<uint8_t, kFrameHeaderBytes>>& header_;
  Memory m_;
  Codecs c_;
};

}  // namespace

CommState::CommState(const NcclApi& api, ncclComm_t comm, int rank, int nranks, int device,
                     const Config& config)
    : api_(api), comm_(comm), rank_(rank), nranks_(nranks), device_(device), config_(config) {
  // As the host communicator does: ranks round with different streams, so stochastic rounding
  // noise averages out in the sum; the reduced chunk's frame uses the spec's own seed.
  worker_spec_ = config.spec;
  worker_spec_.quant.seed += static_cast<uint64_t>(rank) * 0x9E3779B97F4A7C15ull;
  server_spec_ = config.spec;
}

CommState::~CommState() {
  Release r;
  r.device = device_;
  r.after = done_;  // every call waited for the one before it: this is the last of them all
  for (void* p : {frames_, accum_, wide_residual_, vote_, check_}) {
    if (p != nullptr) r.memory.push_back(p);
  }
  for (auto& [key, res] : residuals_) r.memory.push_back(res.data);
  r.scratch = std::move(scratch_);
  r.host_slot = host_;
  release_later(std::move(r));
}

Path CommState::path(size_t count, gp_dtype_t dtype) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = paths_.find({count, static_cast<int>(dtype)});
  return it == paths_.end() ? Path::kUnknown : it->second.first;
}

Status CommState::grow(void** buffer, size_t* have, size_t want, cudaStream_t stream) {
  if (want <= *have && *buffer != nullptr) return OkStatus();
  Device& dev = device();
  void* fresh = nullptr;
  GP_RETURN_IF_ERROR(dev.alloc(std::max<size_t>(want, 4096), stream, &fresh));
  // Stream-ordered: work queued before (this stream waited for the previous call) still sees
  // the old buffer.
  if (*buffer != nullptr) dev.free(*buffer, stream);
  *buffer = fresh;
  *have = std::max<size_t>(want, 4096);
  return OkStatus();
}

Status CommState::prepare(size_t count, gp_dtype_t dtype, cudaStream_t stream,
                          std::unique_ptr<Prepared>* out) {
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
  Device& dev = device();
  auto capacity = [&](size_t n, coll::Stage stage) {
    return dev.max_encoded_bytes(stage == coll::Stage::kServer ? server_spec_ : worker_spec_, n);
  };
  GP_RETURN_IF_ERROR(
      coll::make_nccl_schedule(coll::Algorithm::kDirect, req, p->plan, capacity, &p->schedule));
  // Each stage's frames are encoded from one kind of buffer on every rank (the plans are
  // symmetric): the worker stage from the input's dtype, the server stage from the fp32 sum.
  gp_dtype_t encoded_from[2] = {dtype, GP_FLOAT32};
  for (const coll::Op& op : p->plan.ops) {
    if (op.kind != coll::OpKind::kEncode) continue;
    const bool server = p->plan.frames[op.dst.offset].stage == coll::Stage::kServer;
    encoded_from[server ? 1 : 0] = op.src.buf == coll::Buf::kAccum ? GP_FLOAT32 : dtype;
  }
  const size_t slots = p->schedule.frame_capacity.size();
  p->frame_offset.resize(slots);
  p->header.resize(slots);
  size_t at = 0;
  for (size_t f = 0; f < slots; ++f) {
    const coll::FrameSlot& slot = p->plan.frames[f];
    const bool server = slot.stage == coll::Stage::kServer;
    write_frame_header(quant_frame_header((server ? server_spec_ : worker_spec_).quant,
                                          slot.count, encoded_from[server ? 1 : 0]),
                       p->header[f].data());
    p->frame_offset[f] = at;
    at += round_up(p->schedule.frame_capacity[f], kFrameAlign);
    p->max_frame_count = std::max(p->max_frame_count, slot.count);
  }
  p->frame_bytes = at;
  GP_RETURN_IF_ERROR(grow(&frames_, &frames_bytes_, p->frame_bytes, stream));
  GP_RETURN_IF_ERROR(grow(&accum_, &accum_bytes_, p->plan.accum_count * sizeof(float), stream));
  if (config_.error_feedback && config_.residual_bits == 16) {
    GP_RETURN_IF_ERROR(grow(&wide_residual_, &wide_residual_bytes_,
                            p->max_frame_count * sizeof(float), stream));
  }
  if (!scratch_) GP_RETURN_IF_ERROR(dev.make_scratch(&scratch_));
  *out = std::move(p);
  return OkStatus();
}

// The agreement's all-reduce: (ok, hash, ~hash) as int64 under ncclMin (every NCCL and the fake
// reduce int64). Every rank gets the same three numbers; min(hash) == hash and min(~hash) == ~hash
// (that is, max(hash) == hash, since ~x = -x - 1) hold on every rank exactly when all hashes are
// equal, so every rank reads the same answer.
Status CommState::vote(bool yes, cudaStream_t stream, bool* all_yes) {
  Device& dev = device();
  if (host_ == nullptr) GP_RETURN_IF_ERROR(take_host_slot(&host_));
  if (vote_ == nullptr) GP_RETURN_IF_ERROR(dev.alloc(3 * sizeof(uint64_t), stream, &vote_));
  if (done_ == nullptr) GP_RETURN_IF_ERROR(dev.event_create(&done_));
  GP_RETURN_IF_ERROR(after_previous(stream, false));
  auto* v = reinterpret_cast<uint64_t*>(host_ + kVoteOffset);
  const uint64_t mine[3] = {yes ? 1u : 0u, config_.wire_hash, ~config_.wire_hash};
  std::memcpy(v, mine, sizeof mine);
  GP_RETURN_IF_ERROR(dev.copy(vote_, v, sizeof mine, stream));
  GP_RETURN_IF_ERROR(nccl_status(
      api_, comm_, api_.all_reduce(vote_, vote_, 3, ncclInt64, ncclMin, comm_, stream),
      "the agreement all-reduce"));
  GP_RETURN_IF_ERROR(dev.copy(v, vote_, sizeof mine, stream));
  GP_RETURN_IF_ERROR(mark_done(stream, false));
  GP_RETURN_IF_ERROR(dev.synchronize(done_));  // the interposer's one host wait
  if (aborted_.load()) return Status(Code::kSystem, "the communicator was aborted");
  ncclResult_t async = ncclSuccess;
  if (api_.comm_get_async_error != nullptr &&
      api_.comm_get_async_error(comm_, &async) == ncclSuccess && async != ncclSuccess &&
      async != ncclInProgress) {
    return nccl_status(api_, comm_, async, "the agreement all-reduce");
  }
  if (v[1] != config_.wire_hash || v[2] != ~config_.wire_hash) {
    static std::once_flag warned;
    std::call_once(warned, [] {
      GP_LOG_WARN(kPlugin,
                  "ncclAllReduce interposer: the ranks' GRADPACK_COMPRESS or "
                  "GRADPACK_SEGMENT_BYTES differ (or their gradpack versions): NCCL runs "
                  "every call; set the same values on every rank");
    });
  }
  *all_yes = v[0] == 1 && v[1] == config_.wire_hash && v[2] == ~config_.wire_hash;
  return OkStatus();
}

void CommState::remember_path(const ShapeKey& key, Path path, std::unique_ptr<Prepared> prepared) {
  if (paths_.size() >= kMaxShapes) {
    paths_.erase(path_order_.front());
    path_order_.pop_front();
  }
  paths_[key] = {path, std::move(prepared)};
  path_order_.push_back(key);
}

Status CommState::agree(size_t count, gp_dtype_t dtype, const char* vote_no, cudaStream_t stream,
                        Path* path) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_.load()) return Status(Code::kSystem, "the communicator was aborted");
  const ShapeKey key{count, static_cast<int>(dtype)};
  std::unique_ptr<Prepared> prepared;
  if (vote_no == nullptr) {
    Status st = prepare(count, dtype, stream, &prepared);
    if (!st.ok()) {
      GP_LOG_WARN(kPlugin,
                  "ncclAllReduce interposer: cannot prepare %zu elements (%s): this rank votes "
                  "for NCCL",
                  count, st.message().c_str());
      prepared.reset();
    }
  }
  if (check_ == nullptr && prepared) {
    Device& dev = device();
    // The check's copy shares the pinned host slot with the vote.
    Status st = kCheckOffset + dev.check_bytes() <= kHostSlotBytes
                    ? dev.alloc(dev.check_bytes(), stream, &check_)
                    : Internal("the decode check does not fit the pinned host slot");
    if (st.ok()) st = dev.reset_check(check_, stream);
    if (!st.ok()) prepared.reset();
  }
  bool all_yes = false;
  GP_RETURN_IF_ERROR(vote(prepared != nullptr, stream, &all_yes));
  *path = all_yes ? Path::kGradpack : Path::kNccl;
  const std::string mine = vote_no != nullptr ? std::string(" (this rank: ") + vote_no + ")"
                           : prepared                ? std::string()
                                                     : std::string(" (this rank could not prepare)");
  GP_LOG_INFO(kPlugin, "ncclAllReduce of %zu %s elements: %s on every rank%s", count,
              float_name(dtype), all_yes ? "gradpack compresses it" : "NCCL runs it",
              all_yes ? "" : mine.c_str());
  remember_path(key, *path, all_yes ? std::move(prepared) : nullptr);
  return OkStatus();
}

Status CommState::poll_check() {
  if (!sticky_.ok() || !check_copied_) return sticky_;
  Device& dev = device();
  bool done = false;
  // An event last recorded inside a capture cannot be asked: the check waits for a later call.
  if (!dev.query(done_, &done).ok() || !done) return OkStatus();
  Status st = dev.read_check(host_ + kCheckOffset);
  if (!st.ok()) {
    sticky_ = Status(st.code(), "a received frame was bad (" + st.message() +
                                    "): this communicator's compressed calls stop here");
    GP_LOG_WARN(kPlugin, "ncclAllReduce interposer: %s", sticky_.message().c_str());
  }
  return sticky_;
}

Status CommState::async_error() {
  std::lock_guard<std::mutex> lock(mu_);
  return poll_check();
}

void CommState::evict_residuals_to(size_t target, cudaStream_t stream) {
  while (residual_bytes_ > target && !residuals_.empty()) {
    auto& [key, res] = residuals_.back();
    device().free(res.data, stream);  // after the work queued before (stream-ordered)
    residual_bytes_ -= res.bytes;
    residual_index_.erase(key);
    residuals_.pop_back();
    if (target == 0) continue;  // a reset, not an eviction
    ++residuals_evicted_;
    if ((residuals_evicted_ & (residuals_evicted_ - 1)) == 0) {
      GP_LOG_WARN(kPlugin,
                  "ncclAllReduce interposer: %llu residuals dropped to stay under "
                  "GRADPACK_RESIDUAL_MAX_BYTES=%llu (their error feedback starts over)",
                  static_cast<unsigned long long>(residuals_evicted_),
                  static_cast<unsigned long long>(config_.residual_max_bytes));
    }
  }
}

void* CommState::residual_for(const CallArgs& call) {
  if (!config_.error_feedback) return nullptr;
  const uint64_t who = call.key != 0 ? call.key : reinterpret_cast<uintptr_t>(call.recv);
  const ResidualKey key{who, call.count, static_cast<int>(call.dtype)};
  if (auto it = residual_index_.find(key); it != residual_index_.end()) {
    residuals_.splice(residuals_.begin(), residuals_, it->second);  // most recently used
    return it->second->second.data;
  }
  const size_t bytes = call.count * (config_.residual_bits == 16 ? 2 : 4);
  auto no_residual = [&](const char* why) -> void* {
    if (!warned_no_residual_) {
      warned_no_residual_ = true;
      GP_LOG_WARN(kPlugin,
                  "ncclAllReduce interposer: a call of %zu elements runs without error "
                  "feedback: %s",
                  call.count, why);
    }
    return nullptr;
  };
  // Nothing is allocated inside a graph capture: its memory would belong to the graph.
  if (call.capturing) return no_residual("its residual does not exist yet and the stream is "
                                         "being captured (run one step uncaptured first)");
  if (const uint64_t cap = config_.residual_max_bytes; cap > 0) {
    evict_residuals_to(cap > bytes ? cap - bytes : 0, call.stream);
  }
  Device& dev = device();
  Residual r{nullptr, bytes};
  if (!dev.alloc(bytes, call.stream, &r.data).ok()) return no_residual("out of device memory");
  if (!dev.memset(r.data, 0, bytes, call.stream).ok()) {
    dev.free(r.data, call.stream);
    return no_residual("its residual could not be zeroed");
  }
  residuals_.emplace_front(key, r);
  residual_index_[key] = residuals_.begin();
  residual_bytes_ += bytes;
  ++residuals_created_;
  if (residuals_created_ >= 1024 && (residuals_created_ & (residuals_created_ - 1)) == 0) {
    GP_LOG_WARN(kPlugin,
                "ncclAllReduce interposer: %llu error-feedback residuals created on one "
                "communicator: a new output buffer per call (fresh tensors, rebuilt buckets) "
                "makes a new residual each time; give each bucket a stable key with "
                "gradpackNcclSetResidualKey (gradpack/gradpack_nccl.h)",
                static_cast<unsigned long long>(residuals_created_));
  }
  return r.data;
}

void CommState::reset_residuals() {
  std::lock_guard<std::mutex> lock(mu_);
  reset_pending_ = true;  // the next call frees them on its stream, ordered after earlier work
}

void CommState::finish_call(cudaStream_t stream, bool capturing) {
  Device& dev = device();
  // The check goes back with the call; a later call reads it once done_ has completed.
  check_copied_ = dev.copy(host_ + kCheckOffset, check_, dev.check_bytes(), stream).ok();
  (void)mark_done(stream, capturing);
}

// Calls share the frames: one on another stream than the previous starts after it (on the
// device, never the host).
Status CommState::after_previous(cudaStream_t stream, bool capturing) {
  if (!has_previous_ || last_stream_ == stream) return OkStatus();
  return device().wait(stream, done_, capturing);
}

Status CommState::mark_done(cudaStream_t stream, bool capturing) {
  GP_RETURN_IF_ERROR(device().record(done_, stream, capturing));
  has_previous_ = true;
  last_stream_ = stream;
  return OkStatus();
}

Status CommState::all_reduce(const CallArgs& call) {
  std::lock_guard<std::mutex> lock(mu_);
  if (aborted_.load()) return Status(Code::kSystem, "the communicator was aborted");
  GP_RETURN_IF_ERROR(poll_check());
  auto it = paths_.find({call.count, static_cast<int>(call.dtype)});
  if (it == paths_.end() || it->second.first != Path::kGradpack || !it->second.second) {
    return Internal("the call's shape was not agreed");
  }
  const Prepared& p = *it->second.second;
  GP_RETURN_IF_ERROR(after_previous(call.stream, call.capturing));
  if (reset_pending_ && !call.capturing) {
    evict_residuals_to(0, call.stream);
    reset_pending_ = false;
  }
  void* residual = residual_for(call);
  DeviceOps::Memory m{static_cast<const uint8_t*>(call.send),
                      static_cast<uint8_t*>(call.recv),
                      static_cast<float*>(accum_),
                      residual,
                      config_.residual_bits == 16,
                      static_cast<float*>(wide_residual_),
                      static_cast<uint8_t*>(frames_),
                      check_};
  DeviceOps::Codecs c{&worker_spec_, &server_spec_, &worker_encodes_, &server_encodes_,
                      scratch_.get()};
  const float final_scale = call.avg ? 1.0f / static_cast<float>(nranks_) : 1.0f;
  DeviceOps ops(api_, comm_, call, final_scale, p.plan, p.frame_offset, p.schedule, p.header, m,
                c);
  Status st = coll::run_nccl_schedule(p.plan, p.schedule, ops, nullptr);
  finish_call(call.stream, call.capturing);
  return st;
}

}  // namespace gradpack::interposer
