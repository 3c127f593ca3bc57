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

Status HostExecutor::run(const Plan& plan, const ExecArgs& args, const Links& links) {
  const int nranks = static_cast<int>(links.send.size());
  const size_t elem = args.elem_size;
  const size_t nops = plan.ops.size();
  uint8_t* const scratch_base = scratch(plan.scratch_count * elem);
  const CompressArgs* const comp = args.compress;
  const size_t nframes = plan.frames.size();
  std::vector<size_t> frame_cap(nframes, 0);
  if (nframes > 0 || plan.accum_count > 0) {
    if (comp == nullptr || comp->worker == nullptr || comp->server == nullptr) {
      return Internal("a compressed plan ran without its codecs");
    }
    if (frames_.size() < nframes) frames_.resize(nframes);
    frame_bytes_.assign(nframes, 0);
    frame_from_.assign(nframes, -1);
    for (size_t f = 0; f < nframes; ++f) {
      Codec* codec = plan.frames[f].stage == Stage::kWorker ? comp->worker : comp->server;
      // A frame may encode the collective's dtype or an fp32 accumulator.
      frame_cap[f] = std::max(codec->max_encoded_bytes(plan.frames[f].count, comp->dtype),
                              codec->max_encoded_bytes(plan.frames[f].count, GP_FLOAT32));
      if (frame_cap[f] == 0) return Internal("a codec refused the dtype of a planned frame");
      if (frames_[f].size() < frame_cap[f]) frames_[f].resize(frame_cap[f]);
    }
    if (accum_.size() < plan.accum_count) accum_.resize(plan.accum_count);
  }
  auto address = [&](const Span& span) -> uint8_t* {
    uint8_t* base = nullptr;
    switch (span.buf) {
      case Buf::kAccum:
        return reinterpret_cast<uint8_t*>(accum_.data() + span.offset);
      case Buf::kResidual:
        if (comp == nullptr || comp->residual == nullptr) return nullptr;
        return static_cast<uint8_t*>(comp->residual) + span.offset * (comp->residual_bf16 ? 2 : 4);
      case Buf::kFrame:
        return frames_[span.offset].data();
      case Buf::kSend:
        base = const_cast<uint8_t*>(static_cast<const uint8_t*>(args.send));
        break;
      case Buf::kRecv:
        base = static_cast<uint8_t*>(args.recv);
        break;
      case Buf::kScratch:
        base = scratch_base;
        break;
    }
    return base + span.offset * elem;
  };

  // Per-peer queues in plan order: the transport matches messages in posting order.
  std::vector<std::vector<uint32_t>> send_q(nranks), recv_q(nranks);
  size_t staging_needed = 0;
  for (uint32_t i = 0; i < nops; ++i) {
    const Op& op = plan.ops[i];
    if (op.kind == OpKind::kSend || op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) {
      if (op.peer < 0 || op.peer >= nranks || links.send[op.peer] == nullptr) {
        return Internal("plan op " + std::to_string(i) + " names peer " + std::to_string(op.peer));
      }
    }
    if (op.kind == OpKind::kSend) send_q[op.peer].push_back(i);
    if (op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) recv_q[op.peer].push_back(i);
    if (op.kind == OpKind::kRecvReduce)
      staging_needed = std::max(staging_needed, op.dst.count * elem);
  }
  if (staging_needed > staging_bytes_) {
    free_staging_.clear();
    staging_bytes_ = staging_needed;
  }

  // The first message to and from each peer carries the collective header in front of its data
  // (one message, so the check costs no extra round trip). It travels with kHeaderTag and the
  // rest with the sequence number, so a sequence mismatch is reported as a header difference.
  const uint64_t tag = args.header.sequence;
  first_out_.resize(nranks);
  first_in_.resize(nranks);
  std::vector<bool> header_ok(nranks, false);
  auto check_first = [&](int peer, size_t bytes) -> Status {
    CollectiveHeader theirs;
    GP_RETURN_IF_ERROR(
        decode_header(first_in_[peer].data(), std::min(bytes, kHeaderBytes), &theirs));
    GP_RETURN_IF_ERROR(compare_headers(args.header, theirs, peer));
    header_ok[peer] = true;
    return OkStatus();
  };

  std::vector<OpState> states(nops);
  std::vector<size_t> send_next(nranks, 0), recv_next(nranks, 0), staged(nranks, 0);
  // On a header mismatch, the peers this rank has not sent to yet get a bare header, so that
  // they too report the disagreement (instead of only seeing this rank hang up).
  auto tell_peers = [&](Status status) -> Status {
    std::vector<std::unique_ptr<transport::Request>> sent;
    for (int p = 0; p < nranks; ++p) {
      if (send_q[p].empty() || send_next[p] > 0) continue;
      first_out_[p].resize(kHeaderBytes);
      encode_header(args.header, first_out_[p].data());
      std::unique_ptr<transport::Request> request;
      if (links.send[p]
              ->isend(first_out_[p].data(), kHeaderBytes, kHeaderTag, nullptr, &request)
              .ok()) {
        sent.push_back(std::move(request));
      }
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(200);
    for (auto& request : sent) transport::wait(*request, until).ignore();
    return status;
  };
  // Names the peer in an error, preferring a header mismatch (the real cause) when the first
  // message from that peer arrived.
  auto peer_error = [&](int peer, const Status& status) -> Status {
    if (!header_ok[peer] && !recv_q[peer].empty()) {
      OpState& first = states[recv_q[peer].front()];
      bool done = false;
      size_t bytes = 0;
      if (first.request != nullptr && first.request->test(&done, &bytes).ok() && done) {
        Status st = check_first(peer, bytes);
        if (!st.ok()) return tell_peers(std::move(st));
      }
    }
    if (!header_ok[peer] && status.code() == Code::kCorruptData) {
      // The first message from a peer carries the header: a size the transport refuses there
      // means the ranks called with different arguments.
      return tell_peers(InvalidArgument(
          std::string("ranks disagree on the count") +
          (args.header.codec != 0 ? ", dtype or codec" : " or dtype") + " of collective call #" +
          std::to_string(args.header.sequence) + ": the first message from rank " +
          std::to_string(peer) + " does not fit what this rank expects (" + status.message() +
          "); every rank must pass the same count and dtype" +
          (args.header.codec != 0 ? " and the same codec" : "")));
    }
    return Status(status.code(), "with rank " + std::to_string(peer) + ": " + status.message());
  };

  size_t done_count = 0;
  size_t first_open = 0;  // every op before it is done
  auto deps_done = [&](const Op& op) {
    for (uint32_t d : op.deps) {
      if (states[d].state != State::kDone) return false;
    }
    return true;
  };
  auto take_staging = [&]() -> uint8_t* {
    if (!free_staging_.empty()) {
      uint8_t* p = free_staging_.back().release();
      free_staging_.pop_back();
      return p;
    }
    return new uint8_t[std::max<size_t>(staging_bytes_, 1)];
  };
  // Staging held by unfinished receives goes back to the pool however run() ends (the memory
  // stays owned by the executor, which outlives the connections that may still write it).
  struct StagingGuard {
    std::vector<OpState>& states;
    std::vector<std::unique_ptr<uint8_t[]>>& pool;
    ~StagingGuard() {
      for (OpState& s : states) {
        if (s.staging != nullptr && s.pooled) pool.emplace_back(s.staging);
        s.staging = nullptr;
      }
    }
  } guard{states, free_staging_};

  auto finish = [&](uint32_t i) {
    states[i].state = State::kDone;
    states[i].request.reset();
    ++done_count;
  };

  auto last_progress = std::chrono::steady_clock::now();
  unsigned idle_rounds = 0;
  while (done_count < nops) {
    const uint64_t epoch = links.transport->progress_epoch(links.dev);
    bool progressed = false;

    // Post sends whose data is final and receives as early as order and staging allow.
    for (int p = 0; p < nranks; ++p) {
      while (send_next[p] < send_q[p].size()) {
        uint32_t i = send_q[p][send_next[p]];
        const Op& op = plan.ops[i];
        if (!deps_done(op)) break;
        const size_t bytes =
            op.src.buf == Buf::kFrame ? frame_bytes_[op.src.offset] : op.src.count * elem;
        Status st;
        bytes_sent_ += bytes + (send_next[p] == 0 ? kHeaderBytes : 0);
        if (send_next[p] == 0) {
          std::vector<uint8_t>& buf = first_out_[p];
          buf.resize(kHeaderBytes + bytes);
          encode_header(args.header, buf.data());
          if (bytes > 0) std::memcpy(buf.data() + kHeaderBytes, address(op.src), bytes);
          st =
              links.send[p]->isend(buf.data(), buf.size(), kHeaderTag, nullptr, &states[i].request);
        } else {
          st = links.send[p]->isend(address(op.src), bytes, tag, nullptr, &states[i].request);
        }
        if (!st.ok()) return peer_error(p, st);
        states[i].state = State::kPosted;
        ++send_next[p];
        progressed = true;
      }
      while (recv_next[p] < recv_q[p].size()) {
        uint32_t i = recv_q[p][recv_next[p]];
        const Op& op = plan.ops[i];
        OpState& s = states[i];
        const size_t bytes =
            op.dst.buf == Buf::kFrame ? frame_cap[op.dst.offset] : op.dst.count * elem;
        Status st;
        if (recv_next[p] == 0) {
          first_in_[p].resize(kHeaderBytes + bytes);
          s.staging = first_in_[p].data() + kHeaderBytes;
          st = links.recv[p]->irecv(first_in_[p].data(), first_in_[p].size(), kHeaderTag, nullptr,
                                    &s.request);
        } else if (op.kind == OpKind::kRecv) {
          if (!deps_done(op)) break;
          st = links.recv[p]->irecv(address(op.dst), bytes, tag, nullptr, &s.request);
        } else {
          if (staged[p] >= kStagedPerPeer) break;
          s.staging = take_staging();
          s.pooled = true;
          ++staged[p];
          st = links.recv[p]->irecv(s.staging, bytes, tag, nullptr, &s.request);
        }
        if (!st.ok()) return peer_error(p, st);
        s.state = State::kPosted;
        ++recv_next[p];
        progressed = true;
      }
    }

    // Test what is in flight; run local work and landed receives whose operands are ready.
    while (first_open < nops && states[first_open].state == State::kDone) ++first_open;
    for (size_t i = first_open; i < nops; ++i) {
      OpState& s = states[i];
      const Op& op = plan.ops[i];
      if (s.state == State::kPosted) {
        // A receive whose operands are not ready cannot be used yet: leave it to land where it
        // is (the socket or staging) and test it once they are. Testing it now would only cost
        // a syscall per round (a test reads small receives from the socket).
        if (op.kind != OpKind::kSend && s.staging != nullptr && !deps_done(op)) continue;
        bool done = false;
        size_t bytes = 0;
        Status st = s.request->test(&done, &bytes);
        if (!st.ok()) return peer_error(op.peer, st);
        if (!done) continue;
        progressed = true;
        if (op.kind == OpKind::kSend) {
          finish(static_cast<uint32_t>(i));
          continue;
        }
        bytes_received_ += bytes;
        const bool first = !header_ok[op.peer] && recv_q[op.peer].front() == i;
        if (first) {
          Status header = check_first(op.peer, bytes);
          if (!header.ok()) return tell_peers(std::move(header));
        }
        const size_t head = first ? kHeaderBytes : 0;
        const bool frame = op.dst.buf == Buf::kFrame;
        // A frame's size is known once it arrives (the transport refused any larger than the
        // slot); a frame is never empty, so a bare header means the peer gave up.
        const size_t expected = frame ? std::max(bytes, head + 1) : op.dst.count * elem + head;
        if (frame && bytes > head) {
          frame_bytes_[op.dst.offset] = bytes - head;
          frame_from_[op.dst.offset] = op.peer;
        }
        if (first && bytes == kHeaderBytes && expected != bytes) {
          return tell_peers(Status(
              Code::kRemote, "rank " + std::to_string(op.peer) + " abandoned collective call #" +
                                 std::to_string(args.header.sequence) +
                                 ": it found that ranks disagree on the call's arguments (its "
                                 "error names them)"));
        }
        if (bytes != expected) {
          return peer_error(
              op.peer, CorruptData("received " + std::to_string(bytes) +
                                   " bytes where the plan expects " + std::to_string(expected)));
        }
        s.request.reset();
        if (s.staging == nullptr) {  // a kRecv straight into its destination
          finish(static_cast<uint32_t>(i));
          continue;
        }
        s.state = State::kLanded;
      }
      if (s.state == State::kLanded) {
        if (!deps_done(op)) continue;
        if (op.kind == OpKind::kRecvReduce) {
          args.reduce(address(op.dst), address(op.src), s.staging, op.dst.count);
        } else if (op.dst.buf == Buf::kFrame) {
          std::memcpy(address(op.dst), s.staging, frame_bytes_[op.dst.offset]);
        } else if (op.dst.count > 0) {
          std::memcpy(address(op.dst), s.staging, op.dst.count * elem);
        }
        if (s.pooled) {
          free_staging_.emplace_back(s.staging);
          --staged[op.peer];
        }
        s.staging = nullptr;
        finish(static_cast<uint32_t>(i));
        progressed = true;
      } else if (s.state == State::kWaiting && op.kind != OpKind::kSend &&
                 op.kind != OpKind::kRecv && op.kind != OpKind::kRecvReduce && deps_done(op)) {
        uint8_t* dst = address(op.dst);
        const uint8_t* src = address(op.src);
        const bool to_accum = op.dst.buf == Buf::kAccum;
        const bool from_accum = op.src.buf == Buf::kAccum;
        switch (op.kind) {
          case OpKind::kCopy:
            if (to_accum) {
              widen(*comp, src, from_accum, reinterpret_cast<float*>(dst), op.dst.count, false);
            } else if (from_accum) {
              narrow(*comp, reinterpret_cast<const float*>(src), dst, op.dst.count);
            } else if (dst != src) {
              std::memmove(dst, src, op.dst.count * elem);
            }
            break;
          case OpKind::kReduce:
            if (to_accum) {
              widen(*comp, src, from_accum, reinterpret_cast<float*>(dst), op.dst.count, true);
            } else {
              args.reduce(dst, dst, src, op.dst.count);
            }
            break;
          case OpKind::kEncode: {
            const size_t slot = op.dst.offset;
            Codec* codec = plan.frames[slot].stage == Stage::kWorker ? comp->worker : comp->server;
            Status st = encode(op, codec, *comp, src, frame_cap[slot]);
            if (!st.ok()) return st;
            break;
          }
          case OpKind::kDecode: {
            Status st = decode(op, *comp, dst);
            if (!st.ok()) return st;
            break;
          }
          default:
            break;
        }
        finish(static_cast<uint32_t>(i));
        progressed = true;
        // A new frame may be sendable: post it before encoding the next one.
        if (op.kind == OpKind::kEncode) break;
      }
    }

    auto now = std::chrono::steady_clock::now();
    if (progressed) {
      last_progress = now;
      idle_rounds = 0;
      continue;
    }
    auto waiting = [&] {
      std::string ranks;
      for (int p = 0; p < nranks; ++p) {
        bool open = false;
        for (uint32_t i : recv_q[p]) open = open || states[i].state != State::kDone;
        for (uint32_t i : send_q[p]) open = open || states[i].state != State::kDone;
        if (open) ranks += (ranks.empty() ? "" : ", ") + std::to_string(p);
      }
      return ranks + " in collective call #" + std::to_string(args.header.sequence);
    };
    if (args.cancel != nullptr && args.cancel->load(std::memory_order_relaxed)) {
      return tell_peers(
          Status(Code::kRemote,
                 "cancelled: the communicator was closed while waiting for rank(s) " + waiting()));
    }
    if (now - last_progress > args.timeout) {
      return Status(Code::kTimeout, "no progress for " + std::to_string(args.timeout.count()) +
                                        " ms (GRADPACK_TIMEOUT_MS) while waiting for rank(s) " +
                                        waiting());
    }
    // Nothing ready: yield a couple of rounds (a small message is often microseconds away), then
    // sleep until the transport completes something (bounded, to recheck the timeout).
    if (++idle_rounds > 2) {
      links.transport->wait_progress(links.dev, epoch, now + std::chrono::milliseconds(10));
    } else {
      std::this_thread::yield();
    }
  }
  return OkStatus();
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
