// SPDX-License-Identifier: Apache-2.0
// Internal to collectives/: the plan writers behind make_plan, and the PlanBuilder they share.
//
// Algorithms name the spans each op reads and writes; PlanBuilder derives the deps from them
// (read-after-write, write-after-read, write-after-write at element granularity), treating kSend
// as the kRecv memory it may alias in an in-place call. So every plan keeps plan.h's hazard rules
// by construction, and the algorithm code only has to say which data moves where, in which order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <vector>

#include "collectives/plan.h"

namespace gradpack::coll::algo {

// Small messages: at or under this many bytes, latency (alpha) dominates and the log-step
// algorithms win; above it, bandwidth (beta) does. Shared by hd, hier and the selector.
inline constexpr size_t kSmallMessageBytes = 64 * 1024;

class PlanBuilder {
 public:
  PlanBuilder(const PlanRequest& request, Plan* plan);

  uint32_t send(int peer, Span src);
  uint32_t recv(int peer, Span dst);
  uint32_t recv_reduce(int peer, Span src, Span dst);
  uint32_t copy(Span src, Span dst);
  // dst = dst (op) src; with a kAccum dst, dst += src in fp32.
  uint32_t reduce(Span src, Span dst);
  // Compressed plans: a new frame slot of `count` elements written by `stage`'s codec.
  Span frame(size_t count, Stage stage);
  // frame = encode(src) with error feedback through `residual` (count 0: none).
  uint32_t encode(Span src, Span residual, Span frame);
  // dst = decode(frame), or dst += decode(frame) when accumulate.
  uint32_t decode(Span frame, Span dst, bool accumulate);
  // An op with explicit deps only (zero-count messages: barrier).
  uint32_t add_raw(Op op);

  // Elements per message: segment_bytes / elem_size, at least 1.
  size_t segment() const { return segment_; }
  void need_scratch(size_t count);
  Plan* plan() { return plan_; }

 private:
  struct Piece {
    int64_t writer = -1;
    std::vector<uint32_t> readers;
  };
  using Space = std::map<size_t, Piece>;  // piece starting at key, running to the next key

  uint32_t add(Op op, bool reads_src, bool writes_dst);
  void access(const Span& span, bool write, uint32_t id, std::vector<uint32_t>* deps);
  void touch(Space* space, size_t begin, size_t end, bool write, uint32_t id,
             std::vector<uint32_t>* deps);

  Plan* plan_;
  size_t segment_;
  // kSend elements [alias_begin_, alias_end_) may be kRecv elements shifted by alias_shift_.
  size_t alias_begin_ = 0;
  size_t alias_end_ = 0;
  int64_t alias_shift_ = 0;
  Space recv_space_;
  Space scratch_space_;
  Space accum_space_;
  Space residual_space_;
  Space frame_space_;  // one element per frame slot
};

// Calls fn(piece) for each consecutive piece of `span` of at most `max_count` elements (none for
// an empty span). Sender and receiver cut the same span the same way, so messages match.
template <class Fn>
void for_segments(const Span& span, size_t max_count, Fn&& fn) {
  for (size_t done = 0; done < span.count; done += max_count) {
    const size_t n = span.count - done < max_count ? span.count - done : max_count;
    fn(Span{span.buf, span.offset + done, n});
  }
}

// Block b of `whole` cut into n nearly equal blocks (the first count % n one element longer).
Span block_of(const Span& whole, int n, int b);

// Group-level building blocks. `group` lists global ranks; `me` is this rank's index in it.
// In-buffer ring reduce-scatter of `whole`: afterwards group[i] holds the reduced block i.
void ring_reduce_scatter_inplace(PlanBuilder& b, const std::vector<int>& group, int me,
                                 const Span& whole);
// Ring allgather of `whole`'s blocks: group[i] starts with block i, all end with every block.
void ring_allgather(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole);
// Allreduce of `whole` in place among the group.
void ring_allreduce_inplace(PlanBuilder& b, const std::vector<int>& group, int me,
                            const Span& whole);
// How recursive halving-doubling follows the switch tree: fold_keys[k][i] is member i's locality
// key at level k, finest first (host, then each switch level): the extra members of a
// non-power-of-two group fold onto a neighbour with the same key at the finest level that has one
// (none: the first 2r members pair up in order). near_first: a large buffer's halving starts with
// the nearest partner (distance 1) instead of the farthest.
struct HdLayout {
  std::vector<std::vector<int>> fold_keys;
  bool near_first = false;
};
void hd_allreduce_inplace(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole,
                          size_t elem_size, const HdLayout& layout = {});
// Pipelined chain: group[last] -> ... -> group[0], reducing on the way; group[0] ends with the sum.
void chain_reduce(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole);
// Pipelined chain broadcast of `whole` from group[0] down to group[last].
void chain_broadcast(PlanBuilder& b, const std::vector<int>& group, int me, const Span& whole);
// Binomial-tree broadcast of `whole` from group[root].
void binomial_broadcast(PlanBuilder& b, const std::vector<int>& group, int me, int root,
                        const Span& whole);

// The switch tree (PlanRequest::switch_of_rank; levels.cc). Every rank in tree order: by switch
// from the top down, then host, then rank (rank order when the network is flat).
std::vector<int> tree_order(const PlanRequest& req);
// What the small-message plans (hd, tree) take of the switch tree: the ranks in tree order, this
// rank's place among them, and locality[k][i], the key of order[i] at level k from the finest up
// (host, then each switch level). A flat network (no switch_of_rank): rank order, no keys.
struct TreeLayout {
  std::vector<int> order;
  int me = 0;
  std::vector<std::vector<int>> locality;
};
TreeLayout tree_layout(const PlanRequest& req);
// Pieces (of at least 4 MiB) a large buffer is cut into by the multi-level plan's climb, and by
// its ring among the leaders.
inline constexpr int kMaxLevelPieces = 8;
inline constexpr int kMaxRingPieces = 16;

// All-reduce of `whole` in place: chain to each host's leader (PlanRequest::leaves never lead),
// then, among the leaders, over oversubscribed uplinks (PlanRequest::uplinks_oversubscribed),
// reduce-scatter under each switch level by level up and all-gather back down; else (or flat) a
// ring in tree order; then chain back inside each host. Large buffers go in pieces.
// `compressed`: the leaders reduce-scatter under their leaf switch uncompressed, and each part
// crosses the uplinks through direct_allreduce (the codec only where the links are slowest).
void multilevel_allreduce(PlanBuilder& b, const PlanRequest& req, const Span& whole,
                          bool compressed);

// Compressed all-reduce of `input` among `group` (docs/algorithms.md "Compressed all-reduce"):
// every member encodes each other member's chunk of `input` once with its worker residual and
// sends it to that chunk's owner; the owner accumulates the decoded chunks and its own (uncoded)
// chunk in fp32, encodes the sum once with its server residual (the residual elements of its own
// chunk, which the worker stage leaves unused), sends that frame to every member and decodes it
// into `output`. All members decode the same frames, so they end with the same bits. Every chunk
// is cut into segments that flow independently. `input` and `output` may be the same span.
// The residual is indexed like the buffer (kResidual offset = the element's offset in `input`'s
// buffer). The fp32 sum of the owned chunk sits at the start of kAccum, or, with
// `accum_at_offset`, at the chunk's own offset (so that direct all-reduces of disjoint parts of
// one buffer in one plan do not share accumulator memory and can overlap).
void direct_allreduce(PlanBuilder& b, const std::vector<int>& group, int me, const Span& input,
                      const Span& output, bool accum_at_offset = false);

// Plan writers (request already validated; count, nranks, ... in range).
Status ring_plan(const PlanRequest& request, Plan* out);
Status hd_plan(const PlanRequest& request, Plan* out);
Status tree_plan(const PlanRequest& request, Plan* out);
Status hier_plan(const PlanRequest& request, Plan* out);
// Compressed all-reduce (request.compressed): the direct reduce-scatter + all-gather above.
Status direct_plan(const PlanRequest& request, Plan* out);
// Top-k: every rank's sparse frame of the whole buffer is all-gathered and each rank sums all of
// them, in rank order, in fp32.
Status sparse_plan(const PlanRequest& request, Plan* out);
// The counter-example: a ring reduce-scatter that decodes, adds and re-encodes at every hop.
Status ring_compressed_plan(const PlanRequest& request, Plan* out);
// Uncompressed chain reduce inside each host, direct compressed all-reduce among the host leaders,
// chain broadcast inside each host.
Status hier_compressed_plan(const PlanRequest& request, Plan* out);
// Broadcast: binomial tree when `chain` is false, pipelined chain otherwise.
Status broadcast_plan(const PlanRequest& request, bool chain, Plan* out);
Status barrier_plan(const PlanRequest& request, Plan* out);
// kSendRecv: count elements to send_peer and from recv_peer, in segments, both directions at
// once (no deps: send and recv do not overlap). A rank that is its own peer copies.
Status sendrecv_plan(const PlanRequest& request, Plan* out);

}  // namespace gradpack::coll::algo
