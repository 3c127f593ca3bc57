// SPDX-License-Identifier: Apache-2.0
// A Plan: what one rank does in one collective, as a list of operations with dependencies. The
// algorithms (collectives/algorithms/) write plans and do no I/O; the host executor runs them over
// a transport, the interposer's NCCL executor (net_plugin/interposer/nccl_executor.h) over pnccl
// send/recv, and the tests' plan simulator checks them.
//
// Buffers are named, not pointed to: kSend and kRecv are the caller's buffers, kScratch is memory
// the executor allocates (Plan::scratch_count elements). Offsets and counts are in elements of the
// collective's dtype.
//
// Compressed plans (PlanRequest::compressed) add three kinds of memory: kAccum, fp32 scratch
// (Plan::accum_count floats) where partial sums are accumulated; kResidual, the error-feedback
// state of the call's bucket (PlanRequest::count elements, indexed like kRecv); and kFrame, encoded
// frames: Span::offset is the index of a slot in Plan::frames and Span::count the elements the
// frame encodes. A frame is written by one kEncode or one kRecv and may be sent and decoded any
// number of times; its size in bytes is known only once it is written.
//
// Rules every plan keeps (tests/collectives/algorithms/plan_test.cc checks them by running all
// ranks' plans against each other in memory, for every algorithm, rank count and size):
//  - Messages between two ranks are matched in order: rank a's k-th kSend to b is rank b's k-th
//    kRecv or kRecvReduce from a, with the same count.
//  - An op starts only when all its deps (indices of earlier ops of the same plan) are done. A
//    receive may be posted earlier (into staging memory); its write of dst waits for the deps.
//  - kSend and kRecv may alias the way NCCL's in-place calls do (all-reduce: send == recv;
//    reduce-scatter: recv == send + rank*count; all-gather: send == recv + rank*count). A plan
//    never writes a kRecv element while a kSend element at the same address may still be read
//    by an op not among the writer's (transitive) deps.
//  - No two ops that may run at once write overlapping elements.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace gradpack::coll {

enum class Buf : uint8_t { kSend, kRecv, kScratch, kAccum, kResidual, kFrame };

struct Span {
  Buf buf = Buf::kRecv;
  size_t offset = 0;  // elements
  size_t count = 0;   // elements
};

enum class OpKind : uint8_t {
  kSend,        // send src to peer
  kRecv,        // receive dst.count elements from peer into dst
  kRecvReduce,  // receive dst.count elements from peer; dst = src (op) received (src may be dst)
  kCopy,        // dst = src, local (skipped when both name the same memory; converts to and
                //   from kAccum's fp32)
  kReduce,      // dst = dst (op) src, local (with a kAccum dst: dst += src in fp32)
  kEncode,      // dst (a kFrame) = the frame of src (+ the residual aux, which keeps what the
                //   frame did not carry; aux.count == 0: no error feedback)
  kDecode,      // dst = decode(src, a kFrame), or dst += decode(src) with `accumulate`
};

// Which codec writes a frame: the worker stage encodes a rank's own data, the server stage a
// reduced chunk (the two may differ: top-k's dense path sends reduced chunks quantized, not
// sparse).
enum class Stage : uint8_t { kWorker, kServer };

struct FrameSlot {
  size_t count = 0;  // elements it encodes
  Stage stage = Stage::kWorker;
};

struct Op {
  OpKind kind = OpKind::kSend;
  int peer = -1;  // kSend, kRecv, kRecvReduce
  Span src;       // kSend, kRecvReduce, kCopy, kReduce
  Span dst;       // kRecv, kRecvReduce, kCopy, kReduce, kEncode, kDecode
  std::vector<uint32_t> deps;
  Span aux;                 // kEncode: the residual
  bool accumulate = false;  // kDecode
};

struct Plan {
  std::vector<Op> ops;
  size_t scratch_count = 0;  // elements of kScratch the plan uses
  size_t accum_count = 0;    // floats of kAccum the plan uses
  std::vector<FrameSlot> frames;
  std::string algorithm;  // "ring", "hd", ... for logs and the perf tool
};

enum class Collective : uint8_t {
  kAllReduce,
  kReduceScatter,
  kAllGather,
  kBroadcast,
  kBarrier,
  kSendRecv,  // every rank sends count elements to send_peer and receives count from recv_peer
};
// Values travel in the collective header: never renumber. kDirect and kSparse are compressed only.
enum class Algorithm : uint8_t {
  kAuto,
  kRing,
  kHalvingDoubling,
  kTree,
  kHierarchical,
  kDirect,
  kSparse
};

const char* collective_name(Collective c);
const char* algorithm_name(Algorithm a);  // "auto", "ring", "hd", "tree", "hier", "direct", ...
// Parses "auto|ring|hd|tree|hier|direct|sparse"; kInvalidArgument naming the choices otherwise.
Status parse_algorithm(const std::string& text, Algorithm* out);

struct PlanRequest {
  Collective collective = Collective::kAllReduce;
  int rank = 0;
  int nranks = 1;
  // kAllReduce, kBroadcast: elements of the buffer; kReduceScatter: elements each rank receives
  // (send holds nranks*count); kAllGather: elements each rank sends (recv holds nranks*count).
  size_t count = 0;
  size_t elem_size = 4;
  int root = 0;                    // kBroadcast
  int send_peer = -1;              // kSendRecv
  int recv_peer = -1;              // kSendRecv
  size_t segment_bytes = 1 << 20;  // pipelining grain: no message of the plan is larger
  // host_of_rank[r]: index of rank r's host (0..nhosts-1); empty means every rank on its own host.
  std::vector<int> host_of_rank;
  // The switches above the hosts, when the cluster is known (topology/): switch_of_rank[l][r] is
  // the switch of rank r's host at level l (0: its leaf switch, then upwards), any numbering that
  // every rank shares. Ranks of one host share every switch. Empty: the network is flat (one
  // switch). Given it, the ring follows the switch tree and the hierarchical plan has a level per
  // switch level (algorithms/levels.cc).
  std::vector<std::vector<int>> switch_of_rank;
  // Whether the cost model (topology::tree_plan_costs) finds the multi-level plan faster than the
  // ring in tree order for large all-reduces on this cluster (true when rates are unknown): the
  // selector's choice between the two.
  bool uplinks_oversubscribed = true;
  // Ranks that never lead their host in the hierarchical plan: the slow ranks that re-planning
  // (collectives/replanner.h) put on a fast partner's host, so that only their own link carries
  // their buffer, once each way.
  std::vector<int> leaves;
  // All-reduce through frames (kEncode/kDecode): kDirect, kSparse, and the compressed forms of
  // kRing (re-encoding at every hop) and kHierarchical (compressed between hosts only).
  bool compressed = false;
};

// kInvalidArgument unless 0 <= rank < nranks, elem_size > 0, segment_bytes >= elem_size, a
// broadcast root is a rank, host_of_rank is empty or has nranks entries in 0..nranks-1, and each
// level of switch_of_rank has nranks entries, none negative, equal for ranks of one host.
// make_plan calls it first.
Status validate_plan_request(const PlanRequest& request);

// Writes the plan of `request.rank` for `algorithm` (not kAuto). kUnsupported when the algorithm
// does not implement the collective (or, for kDirect and kSparse, is asked for uncompressed).
Status make_plan(Algorithm algorithm, const PlanRequest& request, Plan* out);

}  // namespace gradpack::coll
