// SPDX-License-Identifier: Apache-2.0
#include "collectives/executor/host_executor.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "common/little_endian.h"
#include "common/log.h"

namespace gradpack::coll {

namespace {

constexpr uint32_t kHeaderMagic = 0x48435047;  // "GPCH"
constexpr uint16_t kHeaderVersion = 1;
// Received operands in flight per peer: enough to keep a pipelined algorithm's link busy while
// the previous segment is reduced, bounded so staging memory stays a few segments.
constexpr size_t kStagedPerPeer = 4;
// Headers travel with a tag no data message uses, so a sequence mismatch shows up as a header
// difference naming both sequences rather than as a transport tag error.
constexpr uint64_t kHeaderTag = ~uint64_t{0};

const char* dtype_name(gp_dtype_t dtype) {
  switch (dtype) {
    case GP_FLOAT32:
      return "float32";
    case GP_FLOAT16:
      return "float16";
    case GP_BFLOAT16:
      return "bfloat16";
    case GP_FLOAT64:
      return "float64";
    case GP_INT32:
      return "int32";
    case GP_INT64:
      return "int64";
    case GP_INT8:
      return "int8";
    case GP_UINT8:
      return "uint8";
  }
  return "unknown";
}

const char* op_name(gp_redop_t op) {
  switch (op) {
    case GP_SUM:
      return "sum";
    case GP_PROD:
      return "prod";
    case GP_MIN:
      return "min";
    case GP_MAX:
      return "max";
    case GP_AVG:
      return "avg";
  }
  return "unknown";
}

// kWaiting: not posted (a message) or not run (a local op) yet. kPosted: handed to the transport.
// kLanded: a receive into staging arrived and was checked, and waits for its operands.
enum class State : uint8_t { kWaiting, kPosted, kLanded, kDone };

struct OpState {
  State state = State::kWaiting;
  std::unique_ptr<transport::Request> request;
  uint8_t* staging = nullptr;  // where a receive lands before it is reduced or copied
  bool pooled = false;         // staging came from the pool (else: the first message's buffer)
};

}  // namespace

void encode_header(const CollectiveHeader& h, uint8_t out[kHeaderBytes]) {
  std::memset(out, 0, kHeaderBytes);
  store_le<uint32_t>(out + 0, kHeaderMagic);
  store_le<uint16_t>(out + 4, kHeaderVersion);
  out[6] = static_cast<uint8_t>(h.collective);
  out[7] = static_cast<uint8_t>(h.op);
  out[8] = static_cast<uint8_t>(h.dtype);
  out[9] = static_cast<uint8_t>(h.algorithm);
  store_le<uint64_t>(out + 16, h.sequence);
  store_le<uint64_t>(out + 24, h.count);
  store_le<uint32_t>(out + 32, static_cast<uint32_t>(h.root));
  store_le<uint32_t>(out + 36, static_cast<uint32_t>(h.nranks));
  store_le<uint32_t>(out + 12, h.codec);
}

Status decode_header(const uint8_t* in, size_t size, CollectiveHeader* out) {
  if (size != kHeaderBytes || load_le<uint32_t>(in) != kHeaderMagic) {
    return CorruptData("the first message of a collective is not a gradpack collective header (" +
                       std::to_string(size) + " bytes): is the peer a gradpack communicator?");
  }
  uint16_t version = load_le<uint16_t>(in + 4);
  if (version != kHeaderVersion) {
    return CorruptData("collective header version " + std::to_string(version) +
                       ", this build speaks " + std::to_string(kHeaderVersion) +
                       ": run the same gradpack on every rank");
  }
  out->collective = static_cast<Collective>(in[6]);
  out->op = static_cast<gp_redop_t>(in[7]);
  out->dtype = static_cast<gp_dtype_t>(in[8]);
  out->algorithm = static_cast<Algorithm>(in[9]);
  out->sequence = load_le<uint64_t>(in + 16);
  out->count = load_le<uint64_t>(in + 24);
  out->root = static_cast<int32_t>(load_le<uint32_t>(in + 32));
  out->nranks = static_cast<int32_t>(load_le<uint32_t>(in + 36));
  out->codec = load_le<uint32_t>(in + 12);
  return OkStatus();
}

Status compare_headers(const CollectiveHeader& ours, const CollectiveHeader& theirs, int peer) {
  auto differ = [&](const std::string& what, const std::string& mine, const std::string& other) {
    return InvalidArgument("ranks disagree on the " + what + " of collective call #" +
                           std::to_string(ours.sequence) + ": this rank has " + mine + ", rank " +
                           std::to_string(peer) + " has " + other +
                           " (every rank must make the same calls with the same arguments)");
  };
  if (theirs.nranks != ours.nranks) {
    return differ("world size", std::to_string(ours.nranks), std::to_string(theirs.nranks));
  }
  if (theirs.sequence != ours.sequence) {
    return differ("sequence (one rank made more collective calls than the other)",
                  std::to_string(ours.sequence), std::to_string(theirs.sequence));
  }
  if (theirs.collective != ours.collective) {
    return differ("collective", collective_name(ours.collective),
                  collective_name(theirs.collective));
  }
  if (theirs.count != ours.count) {
    return differ("count", std::to_string(ours.count), std::to_string(theirs.count));
  }
  if (theirs.dtype != ours.dtype) {
    return differ("dtype", dtype_name(ours.dtype), dtype_name(theirs.dtype));
  }
  if (theirs.op != ours.op) return differ("reduction op", op_name(ours.op), op_name(theirs.op));
  if (theirs.root != ours.root) {
    return differ("root", std::to_string(ours.root), std::to_string(theirs.root));
  }
  if (theirs.algorithm != ours.algorithm) {
    return differ("algorithm (GRADPACK_ALGO or the options differ)", algorithm_name(ours.algorithm),
                  algorithm_name(theirs.algorithm));
  }
  if (theirs.codec != ours.codec) {
    auto name = [](uint32_t hash) {
      char text[32];
      std::snprintf(text, sizeof(text), hash == 0 ? "no codec" : "codec #%08x", hash);
      return std::string(text);
    };
    return differ("codec (GRADPACK_COMPRESS or the options differ, or auto decided differently)",
                  name(ours.codec), name(theirs.codec));
  }
  return OkStatus();
}

uint8_t* HostExecutor::scratch(size_t bytes) {
  if (scratch_.size() < bytes) scratch_.resize(bytes);
  return scratch_.data();
}

// One call of run(): what its steps share and the steps themselves. run() is the loop over them.
//
// Messages are posted from per-peer queues in plan order: the transport matches them in posting
// order. The first message to
// and from each peer carries the collective header in front of its data (one message, so the
// check costs no extra round trip). It travels with kHeaderTag and the rest with the sequence
// number, so a sequence mismatch is reported as a header difference.
class HostExecutor::Run {
 public:
  Run(HostExecutor& executor, const Plan& plan, const ExecArgs& args, const Links& links);
  Run(const Run&) = delete;
  Run& operator=(const Run&) = delete;
  ~Run();

  // Setup, before anything is sent.
  Status size_frames();
  Status queue_messages();

  int nranks() const { return nranks_; }
  bool finished() const { return done_count_ >= nops_; }

  // One round: post what may be posted, then advance the ops in plan order.
  Status post_sends(int peer, bool* progressed);
  Status post_receives(int peer, bool* progressed);
  Status advance_ops(bool* progressed);

  // Between rounds.
  void note_progress(std::chrono::steady_clock::time_point now);
  Status check_cancel_and_timeout(std::chrono::steady_clock::time_point now);
  void wait_for_progress(uint64_t epoch, std::chrono::steady_clock::time_point now);

 private:
  uint8_t* address(const Span& span) const;
  Codec* codec_of(size_t frame) const {
    return plan_.frames[frame].stage == Stage::kWorker ? compress_->worker : compress_->server;
  }
  bool deps_done(const Op& op) const {
    for (uint32_t d : op.deps) {
      if (states_[d].state != State::kDone) return false;
    }
    return true;
  }
  void finish(uint32_t i) {
    states_[i].state = State::kDone;
    states_[i].request.reset();
    ++done_count_;
  }
  uint8_t* take_staging();

  Status test_posted(uint32_t i, bool* progressed);
  Status check_received(uint32_t i, size_t bytes);
  void use_landed(uint32_t i);
  Status run_local(uint32_t i);

  Status check_header(int peer, size_t bytes);
  Status peer_error(int peer, const Status& status);
  Status abandon(Status status);
  std::string waiting_for() const;

  HostExecutor& executor_;
  const Plan& plan_;
  const ExecArgs& args_;
  const Links& links_;
  const CompressArgs* const compress_;
  const int nranks_;
  const size_t elem_;
  const size_t nops_;
  const uint64_t tag_;  // of every message but the first to or from a peer
  uint8_t* const scratch_base_;
  std::vector<size_t> frame_capacity_;  // bytes, by frame slot
  // Per peer: op indices in plan order, and how many of them are posted.
  std::vector<std::vector<uint32_t>> send_queue_, recv_queue_;
  std::vector<size_t> send_next_, recv_next_;
  std::vector<size_t> staged_;  // pooled staging buffers held by posted or landed receives
  std::vector<bool> header_ok_;
  std::vector<OpState> states_;
  size_t done_count_ = 0;
  size_t first_open_ = 0;  // every op before it is done
  std::chrono::steady_clock::time_point last_progress_;
  unsigned idle_rounds_ = 0;
  // Per peer: sends in flight, and since when there has been one (the executor's send_times_).
  std::vector<uint32_t> in_flight_;
  std::vector<std::chrono::steady_clock::time_point> busy_since_;
  void send_posted(int peer);
  void send_done(int peer, size_t bytes);
};

Status HostExecutor::run(const Plan& plan, const ExecArgs& args, const Links& links) {
  Run run(*this, plan, args, links);
  if (Status st = run.size_frames(); !st.ok()) return st;
  if (Status st = run.queue_messages(); !st.ok()) return st;
  while (!run.finished()) {
    // Read before the round: a completion during the round then cuts the wait after it short.
    const uint64_t epoch = links.transport->progress_epoch(links.dev);
    bool progressed = false;
    // Post sends whose data is final and receives as early as order and staging allow.
    for (int peer = 0; peer < run.nranks(); ++peer) {
      if (Status st = run.post_sends(peer, &progressed); !st.ok()) return st;
      if (Status st = run.post_receives(peer, &progressed); !st.ok()) return st;
    }
    // Test what is in flight; run local work and landed receives whose operands are ready.
    if (Status st = run.advance_ops(&progressed); !st.ok()) return st;

    const auto now = std::chrono::steady_clock::now();
    if (progressed) {
      run.note_progress(now);
      continue;
    }
    if (Status st = run.check_cancel_and_timeout(now); !st.ok()) return st;
    run.wait_for_progress(epoch, now);
  }
  return OkStatus();
}

HostExecutor::Run::Run(HostExecutor& executor, const Plan& plan, const ExecArgs& args,
                       const Links& links)
    : executor_(executor),
      plan_(plan),
      args_(args),
      links_(links),
      compress_(args.compress),
      nranks_(static_cast<int>(links.send.size())),
      elem_(args.elem_size),
      nops_(plan.ops.size()),
      tag_(args.header.sequence),
      scratch_base_(executor.scratch(plan.scratch_count * args.elem_size)),
      frame_capacity_(plan.frames.size(), 0),
      send_queue_(nranks_),
      recv_queue_(nranks_),
      send_next_(nranks_, 0),
      recv_next_(nranks_, 0),
      staged_(nranks_, 0),
      header_ok_(nranks_, false),
      states_(nops_),
      last_progress_(std::chrono::steady_clock::now()),
      in_flight_(nranks_, 0),
      busy_since_(nranks_) {
  if (executor_.send_times_.size() < static_cast<size_t>(nranks_)) {
    executor_.send_times_.resize(static_cast<size_t>(nranks_));
  }
}

std::vector<HostExecutor::PeerSendTime> HostExecutor::take_send_times() {
  std::vector<PeerSendTime> out(send_times_.size());
  out.swap(send_times_);
  return out;
}

void HostExecutor::Run::send_posted(int peer) {
  if (in_flight_[peer]++ == 0) busy_since_[peer] = std::chrono::steady_clock::now();
}

void HostExecutor::Run::send_done(int peer, size_t bytes) {
  PeerSendTime& t = executor_.send_times_[static_cast<size_t>(peer)];
  t.bytes += bytes;
  if (--in_flight_[peer] == 0) {
    t.busy_s +=
        std::chrono::duration<double>(std::chrono::steady_clock::now() - busy_since_[peer]).count();
  }
}

// Staging held by unfinished receives goes back to the pool however run() ends (the memory
// stays owned by the executor, which outlives the connections that may still write it).
HostExecutor::Run::~Run() {
  for (OpState& s : states_) {
    if (s.staging != nullptr && s.pooled) executor_.free_staging_.emplace_back(s.staging);
    s.staging = nullptr;
  }
}

// Compressed plans: every frame slot gets the bytes its codec may write, kAccum its floats.
Status HostExecutor::Run::size_frames() {
  const size_t nframes = plan_.frames.size();
  if (nframes == 0 && plan_.accum_count == 0) return OkStatus();
  if (compress_ == nullptr || compress_->worker == nullptr || compress_->server == nullptr) {
    return Internal("a compressed plan ran without its codecs");
  }
  std::vector<std::vector<uint8_t>>& frames = executor_.frames_;
  if (frames.size() < nframes) frames.resize(nframes);
  executor_.frame_bytes_.assign(nframes, 0);
  executor_.frame_from_.assign(nframes, -1);
  for (size_t f = 0; f < nframes; ++f) {
    Codec* codec = codec_of(f);
    // A frame may encode the collective's dtype or an fp32 accumulator.
    frame_capacity_[f] = std::max(codec->max_encoded_bytes(plan_.frames[f].count, compress_->dtype),
                                  codec->max_encoded_bytes(plan_.frames[f].count, GP_FLOAT32));
    if (frame_capacity_[f] == 0) return Internal("a codec refused the dtype of a planned frame");
    if (frames[f].size() < frame_capacity_[f]) frames[f].resize(frame_capacity_[f]);
  }
  if (executor_.accum_.size() < plan_.accum_count) executor_.accum_.resize(plan_.accum_count);
  return OkStatus();
}

// Fills the per-peer queues (checking that every message names a connected peer) and sizes the
// staging pool and the first messages.
Status HostExecutor::Run::queue_messages() {
  size_t staging_needed = 0;
  for (uint32_t i = 0; i < nops_; ++i) {
    const Op& op = plan_.ops[i];
    if (op.kind == OpKind::kSend || op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) {
      if (op.peer < 0 || op.peer >= nranks_ || links_.send[op.peer] == nullptr) {
        return Internal("plan op " + std::to_string(i) + " names peer " + std::to_string(op.peer));
      }
    }
    if (op.kind == OpKind::kSend) send_queue_[op.peer].push_back(i);
    if (op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) {
      recv_queue_[op.peer].push_back(i);
    }
    if (op.kind == OpKind::kRecvReduce) {
      staging_needed = std::max(staging_needed, op.dst.count * elem_);
    }
  }
  if (staging_needed > executor_.staging_bytes_) {
    executor_.free_staging_.clear();
    executor_.staging_bytes_ = staging_needed;
  }
  executor_.first_out_.resize(nranks_);
  executor_.first_in_.resize(nranks_);
  return OkStatus();
}

uint8_t* HostExecutor::Run::address(const Span& span) const {
  uint8_t* base = nullptr;
  switch (span.buf) {
    case Buf::kAccum:
      return reinterpret_cast<uint8_t*>(executor_.accum_.data() + span.offset);
    case Buf::kResidual:
      if (compress_ == nullptr || compress_->residual == nullptr) return nullptr;
      return static_cast<uint8_t*>(compress_->residual) +
             span.offset * (compress_->residual_bf16 ? 2 : 4);
    case Buf::kFrame:
      return executor_.frames_[span.offset].data();
    case Buf::kSend:
      base = const_cast<uint8_t*>(static_cast<const uint8_t*>(args_.send));
      break;
    case Buf::kRecv:
      base = static_cast<uint8_t*>(args_.recv);
      break;
    case Buf::kScratch:
      base = scratch_base_;
      break;
  }
  return base + span.offset * elem_;
}

uint8_t* HostExecutor::Run::take_staging() {
  std::vector<std::unique_ptr<uint8_t[]>>& pool = executor_.free_staging_;
  if (!pool.empty()) {
    uint8_t* p = pool.back().release();
    pool.pop_back();
    return p;
  }
  return new uint8_t[std::max<size_t>(executor_.staging_bytes_, 1)];
}

// Posts the sends to `peer` in plan order, each once its data is final; the first goes out with
// the header in front of it.
Status HostExecutor::Run::post_sends(int peer, bool* progressed) {
  const std::vector<uint32_t>& queue = send_queue_[peer];
  size_t& next = send_next_[peer];
  while (next < queue.size()) {
    const uint32_t i = queue[next];
    const Op& op = plan_.ops[i];
    if (!deps_done(op)) break;
    const size_t bytes =
        op.src.buf == Buf::kFrame ? executor_.frame_bytes_[op.src.offset] : op.src.count * elem_;
    Status st;
    executor_.bytes_sent_ += bytes + (next == 0 ? kHeaderBytes : 0);
    if (next == 0) {
      std::vector<uint8_t>& message = executor_.first_out_[peer];
      message.resize(kHeaderBytes + bytes);
      encode_header(args_.header, message.data());
      if (bytes > 0) std::memcpy(message.data() + kHeaderBytes, address(op.src), bytes);
      st = links_.send[peer]->isend(message.data(), message.size(), kHeaderTag, nullptr,
                                    &states_[i].request);
    } else {
      st = links_.send[peer]->isend(address(op.src), bytes, tag_, nullptr, &states_[i].request);
    }
    if (!st.ok()) return peer_error(peer, st);
    states_[i].state = State::kPosted;
    send_posted(peer);
    ++next;
    *progressed = true;
  }
  return OkStatus();
}

// Posts the receives from `peer` in plan order: the first (header and data) at once, a kRecv
// once its destination may be written, a kRecvReduce into staging while the peer holds fewer
// than kStagedPerPeer.
Status HostExecutor::Run::post_receives(int peer, bool* progressed) {
  const std::vector<uint32_t>& queue = recv_queue_[peer];
  size_t& next = recv_next_[peer];
  while (next < queue.size()) {
    const uint32_t i = queue[next];
    const Op& op = plan_.ops[i];
    OpState& s = states_[i];
    const size_t bytes =
        op.dst.buf == Buf::kFrame ? frame_capacity_[op.dst.offset] : op.dst.count * elem_;
    Status st;
    if (next == 0) {
      std::vector<uint8_t>& message = executor_.first_in_[peer];
      message.resize(kHeaderBytes + bytes);
      s.staging = message.data() + kHeaderBytes;
      st =
          links_.recv[peer]->irecv(message.data(), message.size(), kHeaderTag, nullptr, &s.request);
    } else if (op.kind == OpKind::kRecv) {
      if (!deps_done(op)) break;
      st = links_.recv[peer]->irecv(address(op.dst), bytes, tag_, nullptr, &s.request);
    } else {
      if (staged_[peer] >= kStagedPerPeer) break;
      s.staging = take_staging();
      s.pooled = true;
      ++staged_[peer];
      st = links_.recv[peer]->irecv(s.staging, bytes, tag_, nullptr, &s.request);
    }
    if (!st.ok()) return peer_error(peer, st);
    s.state = State::kPosted;
    ++next;
    *progressed = true;
  }
  return OkStatus();
}

Status HostExecutor::Run::advance_ops(bool* progressed) {
  while (first_open_ < nops_ && states_[first_open_].state == State::kDone) ++first_open_;
  for (size_t n = first_open_; n < nops_; ++n) {
    const auto i = static_cast<uint32_t>(n);
    const Op& op = plan_.ops[i];
    if (states_[i].state == State::kPosted) {
      if (Status st = test_posted(i, progressed); !st.ok()) return st;
    }
    if (states_[i].state == State::kLanded) {
      if (deps_done(op)) {
        use_landed(i);
        *progressed = true;
      }
    } else if (states_[i].state == State::kWaiting && op.kind != OpKind::kSend &&
               op.kind != OpKind::kRecv && op.kind != OpKind::kRecvReduce && deps_done(op)) {
      if (Status st = run_local(i); !st.ok()) return st;
      *progressed = true;
      // A new frame may be sendable: post it before encoding the next one.
      if (op.kind == OpKind::kEncode) break;
    }
  }
  return OkStatus();
}

// Tests a posted send or receive; a completed send is done, a completed receive is checked.
Status HostExecutor::Run::test_posted(uint32_t i, bool* progressed) {
  OpState& s = states_[i];
  const Op& op = plan_.ops[i];
  // A receive whose operands are not ready cannot be used yet: leave it to land where it is (the
  // socket or staging) and test it once they are. Testing it now would only cost a syscall per
  // round (a test reads small receives from the socket).
  if (op.kind != OpKind::kSend && s.staging != nullptr && !deps_done(op)) return OkStatus();
  bool done = false;
  size_t bytes = 0;
  Status st = s.request->test(&done, &bytes);
  if (!st.ok()) return peer_error(op.peer, st);
  if (!done) return OkStatus();
  *progressed = true;
  if (op.kind == OpKind::kSend) {
    send_done(op.peer, bytes);
    finish(i);
    return OkStatus();
  }
  return check_received(i, bytes);
}

// A receive of `bytes` completed: the header of the first message from a peer and the size of
// every message are checked before any of its data is used. A kRecv is then done; a receive into
// staging has landed.
Status HostExecutor::Run::check_received(uint32_t i, size_t bytes) {
  OpState& s = states_[i];
  const Op& op = plan_.ops[i];
  executor_.bytes_received_ += bytes;
  const bool first = !header_ok_[op.peer] && recv_queue_[op.peer].front() == i;
  if (first) {
    Status header = check_header(op.peer, bytes);
    if (!header.ok()) return abandon(std::move(header));
  }
  const size_t head = first ? kHeaderBytes : 0;
  const bool frame = op.dst.buf == Buf::kFrame;
  // A frame's size is known once it arrives (the transport refused any larger than the slot); a
  // frame is never empty, so a bare header means the peer gave up.
  const size_t expected = frame ? std::max(bytes, head + 1) : op.dst.count * elem_ + head;
  if (frame && bytes > head) {
    executor_.frame_bytes_[op.dst.offset] = bytes - head;
    executor_.frame_from_[op.dst.offset] = op.peer;
  }
  if (first && bytes == kHeaderBytes && expected != bytes) {
    return abandon(Status(Code::kRemote, "rank " + std::to_string(op.peer) +
                                             " abandoned collective call #" +
                                             std::to_string(args_.header.sequence) +
                                             ": it found that ranks disagree on the call's "
                                             "arguments (its error names them)"));
  }
  if (bytes != expected) {
    return peer_error(op.peer,
                      CorruptData("received " + std::to_string(bytes) +
                                  " bytes where the plan expects " + std::to_string(expected)));
  }
  s.request.reset();
  if (s.staging == nullptr) {  // a kRecv straight into its destination
    finish(i);
    return OkStatus();
  }
  s.state = State::kLanded;
  return OkStatus();
}

// A landed receive whose operands are ready: reduced or copied out of its staging, which goes
// back to the pool.
void HostExecutor::Run::use_landed(uint32_t i) {
  OpState& s = states_[i];
  const Op& op = plan_.ops[i];
  if (op.kind == OpKind::kRecvReduce) {
    args_.reduce(address(op.dst), address(op.src), s.staging, op.dst.count);
  } else if (op.dst.buf == Buf::kFrame) {
    std::memcpy(address(op.dst), s.staging, executor_.frame_bytes_[op.dst.offset]);
  } else if (op.dst.count > 0) {
    std::memcpy(address(op.dst), s.staging, op.dst.count * elem_);
  }
  if (s.pooled) {
    executor_.free_staging_.emplace_back(s.staging);
    --staged_[op.peer];
  }
  s.staging = nullptr;
  finish(i);
}

// kCopy, kReduce, kEncode and kDecode, whose deps are done.
Status HostExecutor::Run::run_local(uint32_t i) {
  const Op& op = plan_.ops[i];
  uint8_t* dst = address(op.dst);
  const uint8_t* src = address(op.src);
  const bool to_accum = op.dst.buf == Buf::kAccum;
  const bool from_accum = op.src.buf == Buf::kAccum;
  switch (op.kind) {
    case OpKind::kCopy:
      if (to_accum) {
        executor_.widen(*compress_, src, from_accum, reinterpret_cast<float*>(dst), op.dst.count,
                        false);
      } else if (from_accum) {
        executor_.narrow(*compress_, reinterpret_cast<const float*>(src), dst, op.dst.count);
      } else if (dst != src) {
        std::memmove(dst, src, op.dst.count * elem_);
      }
      break;
    case OpKind::kReduce:
      if (to_accum) {
        executor_.widen(*compress_, src, from_accum, reinterpret_cast<float*>(dst), op.dst.count,
                        true);
      } else {
        args_.reduce(dst, dst, src, op.dst.count);
      }
      break;
    case OpKind::kEncode: {
      const size_t slot = op.dst.offset;
      Status st = executor_.encode(op, codec_of(slot), *compress_, src, frame_capacity_[slot]);
      if (!st.ok()) return st;
      break;
    }
    case OpKind::kDecode: {
      Status st = executor_.decode(op, *compress_, dst);
      if (!st.ok()) return st;
      break;
    }
    default:
      break;
  }
  finish(i);
  return OkStatus();
}

// The first message from `peer` (of `bytes`, header included) landed in first_in_.
Status HostExecutor::Run::check_header(int peer, size_t bytes) {
  CollectiveHeader theirs;
  GP_RETURN_IF_ERROR(
      decode_header(executor_.first_in_[peer].data(), std::min(bytes, kHeaderBytes), &theirs));
  GP_RETURN_IF_ERROR(compare_headers(args_.header, theirs, peer));
  header_ok_[peer] = true;
  return OkStatus();
}

// Names the peer in an error, preferring a header mismatch (the real cause) when the first
// message from that peer arrived.
Status HostExecutor::Run::peer_error(int peer, const Status& status) {
  if (!header_ok_[peer] && !recv_queue_[peer].empty()) {
    OpState& first = states_[recv_queue_[peer].front()];
    bool done = false;
    size_t bytes = 0;
    if (first.request != nullptr && first.request->test(&done, &bytes).ok() && done) {
      Status st = check_header(peer, bytes);
      if (!st.ok()) return abandon(std::move(st));
    }
  }
  if (!header_ok_[peer] && status.code() == Code::kCorruptData) {
    // The first message from a peer carries the header: a size the transport refuses there
    // means the ranks called with different arguments.
    const bool codec = args_.header.codec != 0;
    return abandon(InvalidArgument(
        std::string("ranks disagree on the count") + (codec ? ", dtype or codec" : " or dtype") +
        " of collective call #" + std::to_string(args_.header.sequence) +
        ": the first message from rank " + std::to_string(peer) +
        " does not fit what this rank expects (" + status.message() +
        "); every rank must pass the same count and dtype" + (codec ? " and the same codec" : "")));
  }
  return Status(status.code(), "with rank " + std::to_string(peer) + ": " + status.message());
}

// Fails the call. On a header mismatch, the peers this rank has not sent to yet get a bare
// header, so that they too report the disagreement (instead of only seeing this rank hang up).
Status HostExecutor::Run::abandon(Status status) {
  std::vector<std::unique_ptr<transport::Request>> sent;
  for (int p = 0; p < nranks_; ++p) {
    if (send_queue_[p].empty() || send_next_[p] > 0) continue;
    std::vector<uint8_t>& message = executor_.first_out_[p];
    message.resize(kHeaderBytes);
    encode_header(args_.header, message.data());
    std::unique_ptr<transport::Request> request;
    if (links_.send[p]->isend(message.data(), kHeaderBytes, kHeaderTag, nullptr, &request).ok()) {
      sent.push_back(std::move(request));
    }
  }
  const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
  for (auto& request : sent) transport::wait(*request, until).ignore();
  return status;
}

// "1, 3 in collective call #7": the peers with a message not yet done.
std::string HostExecutor::Run::waiting_for() const {
  std::string ranks;
  for (int p = 0; p < nranks_; ++p) {
    bool open = false;
    for (uint32_t i : recv_queue_[p]) open = open || states_[i].state != State::kDone;
    for (uint32_t i : send_queue_[p]) open = open || states_[i].state != State::kDone;
    if (open) ranks += (ranks.empty() ? "" : ", ") + std::to_string(p);
  }
  return ranks + " in collective call #" + std::to_string(args_.header.sequence);
}

void HostExecutor::Run::note_progress(std::chrono::steady_clock::time_point now) {
  last_progress_ = now;
  idle_rounds_ = 0;
}

Status HostExecutor::Run::check_cancel_and_timeout(std::chrono::steady_clock::time_point now) {
  if (args_.cancel != nullptr && args_.cancel->load(std::memory_order_relaxed)) {
    return abandon(Status(
        Code::kRemote,
        "cancelled: the communicator was closed while waiting for rank(s) " + waiting_for()));
  }
  if (now - last_progress_ > args_.timeout) {
    return Status(Code::kTimeout, "no progress for " + std::to_string(args_.timeout.count()) +
                                      " ms (GRADPACK_TIMEOUT_MS) while waiting for rank(s) " +
                                      waiting_for());
  }
  return OkStatus();
}

// Nothing ready: yield a couple of rounds (a small message is often microseconds away), then
// sleep until the transport completes something (bounded, to recheck the timeout).
void HostExecutor::Run::wait_for_progress(uint64_t epoch,
                                          std::chrono::steady_clock::time_point now) {
  if (++idle_rounds_ > 2) {
    links_.transport->wait_progress(links_.dev, epoch, now + std::chrono::milliseconds(10));
  } else {
    std::this_thread::yield();
  }
}

void HostExecutor::widen(const CompressArgs& c, const uint8_t* src, bool src_f32, float* dst,
                         size_t n, bool add) {
  const cpu::CpuKernels& k = c.worker->kernels();
  const float* from = reinterpret_cast<const float*>(src);
  if (!src_f32 && c.dtype != GP_FLOAT32) {
    if (convert_.size() < n) convert_.resize(n);
    const auto* half = reinterpret_cast<const uint16_t*>(src);
    if (c.dtype == GP_FLOAT16) {
      k.f16_to_f32(half, convert_.data(), n);
    } else {
      k.bf16_to_f32(half, convert_.data(), n);
    }
    from = convert_.data();
  }
  if (add) {
    k.add_f32(from, dst, n);
  } else if (from != dst) {
    std::memcpy(dst, from, n * sizeof(float));
  }
}

void HostExecutor::narrow(const CompressArgs& c, const float* src, uint8_t* dst, size_t n) {
  const cpu::CpuKernels& k = c.worker->kernels();
  auto* half = reinterpret_cast<uint16_t*>(dst);
  switch (c.dtype) {
    case GP_FLOAT16:  // overflow becomes Inf, as the uncompressed sum would
      k.f32_to_f16(src, half, n, false);
      break;
    case GP_BFLOAT16:
      k.f32_to_bf16(src, half, n, false);
      break;
    default:
      std::memcpy(dst, src, n * sizeof(float));
      break;
  }
}

Status HostExecutor::encode(const Op& op, Codec* codec, const CompressArgs& c, const uint8_t* src,
                            size_t capacity) {
  const size_t slot = op.dst.offset;
  const gp_dtype_t dtype = op.src.buf == Buf::kAccum ? GP_FLOAT32 : c.dtype;
  const cpu::CpuKernels& k = codec->kernels();
  float* residual = nullptr;
  const bool bf16 = c.residual != nullptr && op.aux.count > 0 && c.residual_bf16;
  if (c.residual != nullptr && op.aux.count > 0) {
    if (bf16) {  // widened for the codec, rounded back after it
      if (convert_.size() < op.aux.count) convert_.resize(op.aux.count);
      k.bf16_to_f32(static_cast<const uint16_t*>(c.residual) + op.aux.offset, convert_.data(),
                    op.aux.count);
      residual = convert_.data();
    } else {
      residual = static_cast<float*>(c.residual) + op.aux.offset;
    }
  }
  size_t bytes = 0;
  GP_RETURN_IF_ERROR(
      codec->encode(src, op.src.count, dtype, residual, frames_[slot].data(), capacity, &bytes));
  if (bf16) {
    k.f32_to_bf16(convert_.data(), static_cast<uint16_t*>(c.residual) + op.aux.offset, op.aux.count,
                  true);
  }
  frame_bytes_[slot] = bytes;
  frame_from_[slot] = -1;
  return OkStatus();
}

Status HostExecutor::decode(const Op& op, const CompressArgs& c, uint8_t* dst) {
  const size_t slot = op.src.offset;
  const gp_dtype_t dtype = op.dst.buf == Buf::kAccum ? GP_FLOAT32 : c.dtype;
  Status st = decode_frame(frames_[slot].data(), frame_bytes_[slot], dst, op.dst.count, dtype,
                           op.accumulate, &c.worker->kernels());
  if (st.ok()) return st;
  const int from = frame_from_[slot];
  return Status(st.code(), (from >= 0 ? "the frame rank " + std::to_string(from) + " sent"
                                      : std::string("a frame this rank encoded")) +
                               " does not decode: " + st.message());
}

}  // namespace gradpack::coll
