// SPDX-License-Identifier: Apache-2.0
// Compressed all-reduce plans: direct (reduce-scatter to each chunk's owner + all-gather of the
// re-encoded chunks), sparse (all-gather of top-k frames), hierarchical (uncompressed inside a
// host, direct between hosts) and the re-encoding ring kept as a measured counter-example.
//
// Residual layout: the kResidual span is indexed like the buffer. In the direct plan a member
// encodes every chunk but its own with its worker residual, and its own chunk's reduced sum with
// its server residual, so the two stages share one element of state per element: 4 bytes per
// parameter in fp32, 2 in bf16 (1-bit Adam keeps the two apart and needs 1 + 1/p times that).

#include <algorithm>

#include "collectives/algorithms/algorithms.h"
#include "topology/host.h"

namespace gradpack::coll::algo {

namespace {

// Piece j of `chunk` when cut into segments of `seg` elements (count 0 past its end).
Span piece(const Span& chunk, size_t seg, size_t j) {
  const size_t begin = std::min(chunk.count, j * seg);
  const size_t end = std::min(chunk.count, begin + seg);
  return Span{chunk.buf, chunk.offset + begin, end - begin};
}

size_t pieces(const Span& chunk, size_t seg) { return (chunk.count + seg - 1) / seg; }

// The same elements in another buffer.
Span moved(const Span& s, Buf buf, size_t offset) { return Span{buf, offset, s.count}; }

void copy_segments(PlanBuilder& b, const Span& from, const Span& to) {
  for_segments(from, b.segment(), [&](const Span& s) {
    b.copy(s, Span{to.buf, to.offset + (s.offset - from.offset), s.count});
  });
}

}  // namespace

void direct_allreduce(PlanBuilder& b, const std::vector<int>& group, int me, const Span& input,
                      const Span& output, bool accum_at_offset) {
  const int g = static_cast<int>(group.size());
  if (g == 1) {
    copy_segments(b, input, output);
    return;
  }
  const size_t seg = b.segment();
  auto in_chunk = [&](int c) { return block_of(input, g, c); };
  // Chunk c of the output and of the residual: the same elements as in_chunk(c).
  auto out_of = [&](const Span& in) {
    return moved(in, output.buf, in.offset - input.offset + output.offset);
  };
  auto res_of = [&](const Span& in) { return moved(in, Buf::kResidual, in.offset); };
  size_t max_pieces = 0;
  for (int c = 0; c < g; ++c) max_pieces = std::max(max_pieces, pieces(in_chunk(c), seg));

  // Worker stage: each segment of every other member's chunk, encoded once and sent to its owner.
  // Owners are visited starting after this member, so the members do not all send to the same
  // owner at once.
  for (size_t j = 0; j < max_pieces; ++j) {
    for (int k = 1; k < g; ++k) {
      const int c = (me + k) % g;
      const Span s = piece(in_chunk(c), seg, j);
      if (s.count == 0) continue;
      const Span f = b.frame(s.count, Stage::kWorker);
      b.encode(s, res_of(s), f);
      b.send(group[static_cast<size_t>(c)], f);
    }
  }
  // Server stage: this member owns chunk `me`. Its own segment enters the fp32 sum uncoded; the
  // others' are decoded into it in a fixed order; the sum is encoded once with the server residual
  // and that one frame goes to every member, this one included (it decodes its own frame, so all
  // members hold the same bits).
  const Span mine = in_chunk(me);
  const size_t accum_base = accum_at_offset ? mine.offset : 0;
  for (size_t j = 0; j < pieces(mine, seg); ++j) {
    const Span s = piece(mine, seg, j);
    const Span acc{Buf::kAccum, accum_base + s.offset - mine.offset, s.count};
    b.copy(s, acc);
    for (int k = 1; k < g; ++k) {
      const int from = (me - k + g) % g;
      const Span f = b.frame(s.count, Stage::kWorker);
      b.recv(group[static_cast<size_t>(from)], f);
      b.decode(f, acc, true);
    }
    const Span reduced = b.frame(s.count, Stage::kServer);
    b.encode(acc, res_of(s), reduced);
    for (int k = 1; k < g; ++k) b.send(group[static_cast<size_t>((me + k) % g)], reduced);
    b.decode(reduced, out_of(s), false);
  }
  // All-gather: the other owners' reduced frames.
  for (size_t j = 0; j < max_pieces; ++j) {
    for (int k = 1; k < g; ++k) {
      const int c = (me - k + g) % g;
      const Span s = piece(in_chunk(c), seg, j);
      if (s.count == 0) continue;
      const Span f = b.frame(s.count, Stage::kServer);
      b.recv(group[static_cast<size_t>(c)], f);
      b.decode(f, out_of(s), false);
    }
  }
}

Status direct_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  std::vector<int> group(static_cast<size_t>(req.nranks));
  for (int r = 0; r < req.nranks; ++r) group[static_cast<size_t>(r)] = r;
  direct_allreduce(b, group, req.rank, Span{Buf::kSend, 0, req.count},
                   Span{Buf::kRecv, 0, req.count});
  return OkStatus();
}

Status sparse_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  const int p = req.nranks;
  const Span send{Buf::kSend, 0, req.count};
  const Span recv{Buf::kRecv, 0, req.count};
  if (p == 1 || req.count == 0) {
    copy_segments(b, send, recv);
    return OkStatus();
  }
  // One frame of the whole buffer: top-k is chosen over the bucket, not per segment.
  std::vector<Span> frames(static_cast<size_t>(p));
  frames[static_cast<size_t>(req.rank)] = b.frame(req.count, Stage::kWorker);
  b.encode(send, Span{Buf::kResidual, 0, req.count}, frames[static_cast<size_t>(req.rank)]);
  for (int k = 1; k < p; ++k) {
    b.send((req.rank + k) % p, frames[static_cast<size_t>(req.rank)]);
  }
  for (int k = 1; k < p; ++k) {
    const int from = (req.rank - k + p) % p;
    frames[static_cast<size_t>(from)] = b.frame(req.count, Stage::kWorker);
    b.recv(from, frames[static_cast<size_t>(from)]);
  }
  // Every rank sums the same frames in the same order (rank 0 first), so all get the same bits.
  // Compressed data is float: 4-byte elements are fp32 and sum in place; 16-bit ones are summed
  // in an fp32 accumulator and rounded once.
  const bool f32 = req.elem_size == 4;
  const Span acc = f32 ? recv : Span{Buf::kAccum, 0, req.count};
  for (int r = 0; r < p; ++r) b.decode(frames[static_cast<size_t>(r)], acc, r != 0);
  if (!f32) copy_segments(b, acc, recv);
  return OkStatus();
}

Status ring_compressed_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  const int p = req.nranks;
  const int r = req.rank;
  const Span send{Buf::kSend, 0, req.count};
  const Span recv{Buf::kRecv, 0, req.count};
  if (p == 1) {
    copy_segments(b, send, recv);
    return OkStatus();
  }
  const size_t seg = b.segment();
  const int right = (r + 1) % p;
  const int left = (r - 1 + p) % p;
  auto chunk = [&](int c) { return block_of(send, p, ((c % p) + p) % p); };
  auto res_of = [](const Span& s) { return moved(s, Buf::kResidual, s.offset); };
  auto acc_of = [](const Span& s) { return moved(s, Buf::kAccum, s.offset); };
  // frames_of[c][j]: the frame this rank sends next for segment j of chunk c.
  std::vector<std::vector<Span>> frames_of(static_cast<size_t>(p));
  auto slot = [&](int c, size_t j) -> Span& {
    auto& v = frames_of[static_cast<size_t>(((c % p) + p) % p)];
    if (v.size() <= j) v.resize(j + 1);
    return v[j];
  };
  // Step 0: this rank's own chunk r, encoded with its residual.
  for (size_t j = 0; j < pieces(chunk(r), seg); ++j) {
    const Span s = piece(chunk(r), seg, j);
    slot(r, j) = b.frame(s.count, Stage::kWorker);
    b.encode(s, res_of(s), slot(r, j));
  }
  // Reduce-scatter steps: send chunk r-k+1's frame right, receive chunk r-k from the left, decode
  // it, add this rank's part, and re-encode the partial sum: the error of every hop is carried
  // into the next (error feedback can only correct each hop's own rounding).
  for (int k = 1; k < p; ++k) {
    const int c_send = r - k + 1;
    const int c_recv = r - k;
    for (size_t j = 0; j < pieces(chunk(c_send), seg); ++j) b.send(right, slot(c_send, j));
    for (size_t j = 0; j < pieces(chunk(c_recv), seg); ++j) {
      const Span s = piece(chunk(c_recv), seg, j);
      const Span in = b.frame(s.count, Stage::kWorker);
      b.recv(left, in);
      b.decode(in, acc_of(s), false);
      b.reduce(s, acc_of(s));
      slot(c_recv, j) = b.frame(s.count, k == p - 1 ? Stage::kServer : Stage::kWorker);
      b.encode(acc_of(s), res_of(s), slot(c_recv, j));
    }
  }
  // This rank now holds the final frame of chunk r+1. All-gather the final frames around the
  // ring unchanged, then decode them all.
  for (int k = 0; k < p - 1; ++k) {
    const int c_send = r + 1 - k;
    const int c_recv = r - k;
    for (size_t j = 0; j < pieces(chunk(c_send), seg); ++j) b.send(right, slot(c_send, j));
    for (size_t j = 0; j < pieces(chunk(c_recv), seg); ++j) {
      const Span s = piece(chunk(c_recv), seg, j);
      slot(c_recv, j) = b.frame(s.count, Stage::kServer);
      b.recv(left, slot(c_recv, j));
    }
  }
  for (int c = 0; c < p; ++c) {
    for (size_t j = 0; j < pieces(chunk(c), seg); ++j) {
      const Span s = piece(chunk(c), seg, j);
      b.decode(slot(c, j), moved(s, Buf::kRecv, s.offset), false);
    }
  }
  return OkStatus();
}

Status hier_compressed_plan(const PlanRequest& req, Plan* out) {
  PlanBuilder b(req, out);
  const topology::HostGroups hosts = topology::host_groups(req.host_of_rank, req.nranks, req.rank);
  const Span whole{Buf::kRecv, 0, req.count};
  copy_segments(b, Span{Buf::kSend, 0, req.count}, whole);
  if (!req.switch_of_rank.empty()) {  // switches above the hosts: the codec on the uplinks only
    multilevel_allreduce(b, req, whole, /*compressed=*/true);
    return OkStatus();
  }
  chain_reduce(b, hosts.local, hosts.me_local, whole);
  if (hosts.me_local == 0) {
    direct_allreduce(b, hosts.leaders, hosts.me_leader, whole, whole);
  }
  chain_broadcast(b, hosts.local, hosts.me_local, whole);
  return OkStatus();
}

}  // namespace gradpack::coll::algo
