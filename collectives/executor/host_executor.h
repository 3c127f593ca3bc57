// SPDX-License-Identifier: Apache-2.0
// The host executor: runs one rank's Plan over transport connections on host memory.
//
// It overlaps the network with the reductions: receives are posted as early as the plan's order
// allows (a kRecvReduce lands in staging memory before its operands are ready), sends go out as
// soon as their data is final, and the calling thread reduces whatever has arrived while the
// transport's progress thread moves the rest. It sleeps on the transport's progress epoch when
// nothing is ready, so waiting ranks leave the CPU to the ones that work.
//
// The first message to each peer of a collective starts with a CollectiveHeader (sequence,
// collective, op, dtype, count, root, algorithm) in front of its data. A peer whose header
// differs is an error naming both values, found before any of its data is used.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "collectives/plan.h"
#include "collectives/reduce/reduce.h"
#include "common/status.h"
#include "compression/codec.h"
#include "gradpack/gradpack.h"
#include "transport/transport.h"

namespace gradpack::coll {

// What every rank of one collective call must agree on.
struct CollectiveHeader {
  uint64_t sequence = 0;
  Collective collective = Collective::kAllReduce;
  gp_redop_t op = GP_SUM;
  gp_dtype_t dtype = GP_FLOAT32;
  Algorithm algorithm = Algorithm::kRing;
  uint64_t count = 0;
  int32_t root = 0;
  int32_t nranks = 0;
  uint32_t codec = 0;  // compressed calls: a hash of the codecs' canonical specs; 0: uncompressed
};

inline constexpr size_t kHeaderBytes = 40;
void encode_header(const CollectiveHeader& header, uint8_t out[kHeaderBytes]);
// kCorruptData for bytes that are not a header of this version.
Status decode_header(const uint8_t* in, size_t size, CollectiveHeader* out);
// kInvalidArgument naming the first field in which `theirs` (of rank `peer`) differs from `ours`.
Status compare_headers(const CollectiveHeader& ours, const CollectiveHeader& theirs, int peer);

// The connections of one rank: send[p] / recv[p] reach rank p (null for this rank itself).
struct Links {
  transport::Transport* transport = nullptr;
  int dev = 0;
  std::vector<transport::SendConnection*> send;
  std::vector<transport::RecvConnection*> recv;
};

// What a compressed plan (kEncode, kDecode, kAccum, kResidual, kFrame) needs.
struct CompressArgs {
  gp_dtype_t dtype = GP_FLOAT32;  // the collective's (kSend and kRecv elements)
  Codec* worker = nullptr;        // writes Stage::kWorker frames
  Codec* server = nullptr;        // writes Stage::kServer frames
  void* residual = nullptr;       // the bucket's residual (null: no error feedback)
  bool residual_bf16 = false;     // residual elements are bf16, else fp32
};

struct ExecArgs {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t elem_size = 4;
  ReduceFn reduce = nullptr;  // for kRecvReduce and kReduce
  CollectiveHeader header;    // sent to every peer the plan talks to; tags are header.sequence
  const CompressArgs* compress = nullptr;     // required by compressed plans
  std::chrono::milliseconds timeout{120000};  // longest time without any progress
  // Set by another thread to give up: a run waiting for its peers fails within one bounded wait
  // (10 ms) instead of at its timeout (null: never).
  const std::atomic<bool>* cancel = nullptr;
};

class HostExecutor {
 public:
  // Runs `plan` to completion. On error the connections may hold unfinished messages: the
  // caller must treat them as broken (the communicator closes them, so peers fail too).
  Status run(const Plan& plan, const ExecArgs& args, const Links& links);

  // Bytes handed to the transport and received, over every run.
  uint64_t bytes_sent() const { return bytes_sent_; }
  uint64_t bytes_received() const { return bytes_received_; }

  // What the sends to one peer cost since the last take_send_times(): the bytes sent and the
  // seconds during which at least one send to that peer was in flight. A link slower than the
  // data arrives keeps its sends in flight (bytes/busy is its rate); a faster one is mostly idle.
  // No extra traffic: every figure comes from the plans' own messages.
  struct PeerSendTime {
    uint64_t bytes = 0;
    double busy_s = 0;
  };
  // Indexed by peer (sized on first use); resets the counts.
  std::vector<PeerSendTime> take_send_times();

 private:
  // One call of run(): its state and its steps (host_executor.cc).
  class Run;

  // The local ops of compressed plans, on frames and fp32 accumulators.
  Status encode(const Op& op, Codec* codec, const CompressArgs& c, const uint8_t* src,
                size_t capacity);
  Status decode(const Op& op, const CompressArgs& c, uint8_t* dst);
  // dst (fp32) = src, or dst += src, src in the collective's dtype or fp32.
  void widen(const CompressArgs& c, const uint8_t* src, bool src_f32, float* dst, size_t n,
             bool add);
  // dst (the collective's dtype) = src (fp32).
  void narrow(const CompressArgs& c, const float* src, uint8_t* dst, size_t n);
  uint64_t bytes_sent_ = 0;
  uint64_t bytes_received_ = 0;
  std::vector<PeerSendTime> send_times_;
  std::vector<std::vector<uint8_t>> frames_;
  std::vector<size_t> frame_bytes_;
  std::vector<int> frame_from_;  // the peer a received frame came from (-1: encoded here)
  std::vector<float> accum_;
  std::vector<float> convert_;  // 16-bit operands and bf16 residuals, widened
  uint8_t* scratch(size_t bytes);
  std::vector<uint8_t> scratch_;
  // The first message to and from each peer (header + data) lives here, not on run()'s stack:
  // after a failed run the transport may still touch it until the communicator has closed its
  // connections.
  std::vector<std::vector<uint8_t>> first_out_, first_in_;
  // Staging buffers of received operands, reused across calls.
  std::vector<std::unique_ptr<uint8_t[]>> free_staging_;
  size_t staging_bytes_ = 0;
};

}  // namespace gradpack::coll
