// SPDX-License-Identifier: Apache-2.0
// An in-memory simulator for Plans (collectives/plan.h), for tests: checks one plan against the
// rules plan.h states, and runs every rank's plan against the others with int64 sums.
//
// check_plan (static): deps point to earlier ops, spans lie inside their buffers and the scratch,
// no message exceeds segment_bytes, and any two ops that touch overlapping memory (one writing)
// are ordered by deps. With in_place, kSend and kRecv are laid out the way NCCL's in-place calls
// alias them, so that check covers the aliasing rule too.
//
// run_plans (dynamic): messages between a pair match in plan order (a rank's k-th send to b is b's
// k-th receive from a), sends leave in plan order per peer and are buffered (receives are posted
// early), an op runs only when its deps are done, and runnable ops are picked in a seeded random
// order. No runnable op while ops remain is a deadlock. Matched counts must be equal.
//
// Compressed plans run with a lossless model codec: a frame holds the int64 values it encodes,
// and the residual stays untouched, so a correct plan still gives exact sums. kAccum lies after
// the scratch, kResidual (count elements) after kAccum, and each frame slot is one unit of its
// own after those for the hazard check.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/plan.h"

namespace gradpack::coll::sim {

// Where one rank's buffers lie in its memory (elements).
struct Layout {
  size_t send_offset = 0, send_count = 0;
  size_t recv_offset = 0, recv_count = 0;
  size_t scratch_offset = 0;
  size_t size = 0;  // without scratch
};

inline Layout layout_of(const PlanRequest& req, bool in_place) {
  const size_t n = req.count;
  const size_t p = static_cast<size_t>(req.nranks);
  const size_t r = static_cast<size_t>(req.rank);
  Layout l;
  switch (req.collective) {
    case Collective::kAllReduce:
    case Collective::kBroadcast:
    case Collective::kSendRecv:
      l.send_count = l.recv_count = n;
      break;
    case Collective::kReduceScatter:
      l.send_count = n * p;
      l.recv_count = n;
      break;
    case Collective::kAllGather:
      l.send_count = n;
      l.recv_count = n * p;
      break;
    case Collective::kBarrier:
      break;
  }
  if (!in_place) {
    l.recv_offset = l.send_count;
    l.size = l.send_count + l.recv_count;
  } else if (req.collective == Collective::kReduceScatter) {
    l.recv_offset = r * n;
    l.size = l.send_count;
  } else if (req.collective == Collective::kAllGather) {
    l.send_offset = r * n;
    l.size = l.recv_count;
  } else {
    l.size = l.send_count;
  }
  l.scratch_offset = l.size;
  return l;
}

namespace detail {

struct Access {
  size_t begin, end;
  uint32_t op;
  bool write;
};

inline size_t accum_base(const Layout& l, const Plan& plan) {
  return l.scratch_offset + plan.scratch_count;
}
inline size_t residual_base(const Layout& l, const Plan& plan) {
  return accum_base(l, plan) + plan.accum_count;
}

inline bool span_in(const PlanRequest& req, const Layout& l, const Plan& plan, const Span& s,
                    size_t* addr, std::string* why) {
  size_t limit = 0, base = 0;
  switch (s.buf) {
    case Buf::kAccum:
      limit = plan.accum_count;
      base = accum_base(l, plan);
      break;
    case Buf::kResidual:
      limit = req.count;
      base = residual_base(l, plan);
      break;
    case Buf::kFrame:
      if (s.offset >= plan.frames.size() || plan.frames[s.offset].count != s.count) {
        *why = "frame slot " + std::to_string(s.offset) + " is not a slot of " +
               std::to_string(s.count) + " elements";
        return false;
      }
      *addr = residual_base(l, plan) + req.count + s.offset;
      return true;
    case Buf::kSend:
      limit = l.send_count;
      base = l.send_offset;
      break;
    case Buf::kRecv:
      limit = l.recv_count;
      base = l.recv_offset;
      break;
    case Buf::kScratch:
      limit = plan.scratch_count;
      base = l.scratch_offset;
      break;
  }
  if (s.offset + s.count > limit && s.count > 0) {
    *why = "span [" + std::to_string(s.offset) + ", +" + std::to_string(s.count) +
           ") out of bounds (" + std::to_string(limit) + ") on buffer " +
           std::to_string(static_cast<int>(s.buf));
    return false;
  }
  (void)req;
  *addr = base + s.offset;
  return true;
}

}  // namespace detail

// Empty when the plan keeps the rules; otherwise what is wrong, naming the op.
inline std::string check_plan(const PlanRequest& req, const Plan& plan, bool in_place) {
  const Layout l = layout_of(req, in_place);
  const size_t nops = plan.ops.size();
  const size_t words = (nops + 63) / 64;
  std::vector<uint64_t> anc(nops * words, 0);
  std::vector<detail::Access> accesses;
  for (size_t i = 0; i < nops; ++i) {
    const Op& op = plan.ops[i];
    const std::string where = "rank " + std::to_string(req.rank) + " op " + std::to_string(i);
    for (uint32_t d : op.deps) {
      if (d >= i) return where + ": dep " + std::to_string(d) + " is not an earlier op";
      for (size_t w = 0; w < words; ++w) anc[i * words + w] |= anc[d * words + w];
      anc[i * words + d / 64] |= uint64_t{1} << (d % 64);
    }
    const bool is_msg =
        op.kind == OpKind::kSend || op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce;
    if (is_msg && (op.peer < 0 || op.peer >= req.nranks || op.peer == req.rank))
      return where + ": bad peer " + std::to_string(op.peer);
    const bool reads = op.kind != OpKind::kRecv;
    const bool writes = op.kind != OpKind::kSend;
    if (reads && writes && op.src.count != op.dst.count)
      return where + ": src and dst counts differ";
    const size_t msg = op.kind == OpKind::kSend ? op.src.count : op.dst.count;
    // The sparse plan sends one top-k frame of the whole buffer (top-k is chosen over the bucket).
    const bool whole_frame = plan.algorithm == "sparse";
    if (is_msg && !whole_frame && msg * req.elem_size > req.segment_bytes)
      return where + ": message of " + std::to_string(msg * req.elem_size) +
             " bytes exceeds segment_bytes";
    std::string why;
    size_t addr = 0;
    auto units = [](const Span& span) { return span.buf == Buf::kFrame ? 1 : span.count; };
    if (reads) {
      if (!detail::span_in(req, l, plan, op.src, &addr, &why)) return where + ": src " + why;
      if (units(op.src) > 0)
        accesses.push_back({addr, addr + units(op.src), static_cast<uint32_t>(i), false});
    }
    if (writes) {
      if (op.dst.buf == Buf::kSend) return where + ": writes kSend";
      if (!detail::span_in(req, l, plan, op.dst, &addr, &why)) return where + ": dst " + why;
      if (units(op.dst) > 0)
        accesses.push_back({addr, addr + units(op.dst), static_cast<uint32_t>(i), true});
    }
    if (op.kind == OpKind::kEncode && op.aux.count > 0) {
      if (op.aux.buf != Buf::kResidual || op.aux.count != op.src.count)
        return where + ": the residual of an encode is not a kResidual span of its size";
      if (!detail::span_in(req, l, plan, op.aux, &addr, &why)) return where + ": residual " + why;
      accesses.push_back({addr, addr + op.aux.count, static_cast<uint32_t>(i), true});
    }
    if ((op.kind == OpKind::kEncode) != (op.dst.buf == Buf::kFrame && op.kind != OpKind::kRecv))
      return where + ": frames are written by kEncode and kRecv only";
  }
  auto ordered = [&](uint32_t a, uint32_t b) {  // b after a, or a after b
    if (a > b) std::swap(a, b);
    return (anc[b * words + a / 64] >> (a % 64)) & 1;
  };
  std::sort(accesses.begin(), accesses.end(),
            [](const detail::Access& a, const detail::Access& b) { return a.begin < b.begin; });
  for (size_t i = 0; i < accesses.size(); ++i) {
    for (size_t j = i + 1; j < accesses.size() && accesses[j].begin < accesses[i].end; ++j) {
      const auto& a = accesses[i];
      const auto& b = accesses[j];
      if (a.op == b.op || (!a.write && !b.write)) continue;
      if (!ordered(a.op, b.op))
        return "rank " + std::to_string(req.rank) + ": ops " + std::to_string(a.op) + " and " +
               std::to_string(b.op) + " may run at once and touch [" +
               std::to_string(std::max(a.begin, b.begin)) + ", " +
               std::to_string(std::min(a.end, b.end)) + ") with a write" +
               (in_place ? " (in place)" : "");
    }
  }
  return {};
}

struct Outcome {
  std::string error;                            // empty: every op ran, every message matched
  std::vector<std::vector<int64_t>> recv;       // each rank's kRecv at the end
  std::vector<uint64_t> bytes_sent;             // per rank
  std::vector<uint64_t> messages_sent;          // per rank
  std::vector<std::vector<uint64_t>> bytes_to;  // [from][to]
  std::vector<uint64_t> heard_from;             // bit q: this rank's plan waited on rank q
};

// send_data[r] is rank r's kSend (layout_of(...).send_count elements). Needs nranks <= 64.
inline Outcome run_plans(const std::vector<PlanRequest>& reqs, const std::vector<Plan>& plans,
                         const std::vector<std::vector<int64_t>>& send_data, bool in_place,
                         uint64_t seed) {
  const int p = static_cast<int>(reqs.size());
  const auto up = static_cast<size_t>(p);
  Outcome out;
  out.bytes_sent.assign(up, 0);
  out.messages_sent.assign(up, 0);
  out.bytes_to.assign(up, std::vector<uint64_t>(up, 0));
  out.heard_from.assign(up, 0);
  for (size_t r = 0; r < up; ++r) out.heard_from[r] = uint64_t{1} << r;
  constexpr int64_t kPoison = -77777777;
  std::vector<Layout> lay(up);
  std::vector<std::vector<int64_t>> mem(up);
  std::vector<std::vector<std::vector<int64_t>>> frames(up);  // [rank][slot]: the values it holds
  // Per op: its ordinal among sends to / receives from its peer; remaining deps; dependents.
  std::vector<std::vector<size_t>> ordinal(up);
  std::vector<std::vector<uint32_t>> pending(up);
  std::vector<std::vector<std::vector<uint32_t>>> dependents(up);
  std::vector<std::vector<uint64_t>> know(up);
  size_t remaining = 0;
  for (size_t r = 0; r < up; ++r) {
    lay[r] = layout_of(reqs[r], in_place);
    mem[r].assign(lay[r].size + plans[r].scratch_count + plans[r].accum_count + reqs[r].count,
                  kPoison);
    frames[r].resize(plans[r].frames.size());
    std::copy(send_data[r].begin(), send_data[r].end(),
              mem[r].begin() + static_cast<std::ptrdiff_t>(lay[r].send_offset));
    const auto& ops = plans[r].ops;
    ordinal[r].resize(ops.size());
    pending[r].resize(ops.size());
    dependents[r].resize(ops.size());
    know[r].assign(ops.size(), uint64_t{1} << r);
    std::vector<size_t> nsend(up, 0), nrecv(up, 0);
    for (size_t i = 0; i < ops.size(); ++i) {
      const Op& op = ops[i];
      if (op.kind == OpKind::kSend) ordinal[r][i] = nsend[static_cast<size_t>(op.peer)]++;
      if (op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce)
        ordinal[r][i] = nrecv[static_cast<size_t>(op.peer)]++;
      pending[r][i] = static_cast<uint32_t>(op.deps.size());
      for (uint32_t d : op.deps) dependents[r][d].push_back(static_cast<uint32_t>(i));
    }
    remaining += ops.size();
  }
  struct Message {
    std::vector<int64_t> data;
    uint64_t know;
  };
  std::vector<std::vector<std::vector<Message>>> wire(up, std::vector<std::vector<Message>>(up));
  std::vector<std::vector<size_t>> next_send(up, std::vector<size_t>(up, 0));
  std::map<std::tuple<int, int, size_t>, uint32_t> parked_send, parked_recv;
  std::vector<std::pair<int, uint32_t>> ready;
  std::mt19937_64 rng(seed);

  auto addr = [&](size_t r, const Span& s) {
    switch (s.buf) {
      case Buf::kSend:
        return lay[r].send_offset + s.offset;
      case Buf::kRecv:
        return lay[r].recv_offset + s.offset;
      case Buf::kScratch:
        return lay[r].scratch_offset + s.offset;
      case Buf::kAccum:
        return detail::accum_base(lay[r], plans[r]) + s.offset;
      case Buf::kResidual:
        return detail::residual_base(lay[r], plans[r]) + s.offset;
      case Buf::kFrame:
        break;
    }
    return size_t{0};
  };
  // An op whose deps are done: runnable now, or parked until its message or turn comes.
  auto offer = [&](int r, uint32_t i) {
    const size_t ur = static_cast<size_t>(r);
    const Op& op = plans[ur].ops[i];
    const size_t k = ordinal[ur][i];
    if (op.kind == OpKind::kSend && next_send[ur][static_cast<size_t>(op.peer)] != k) {
      parked_send[{r, op.peer, k}] = i;
    } else if ((op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) &&
               wire[static_cast<size_t>(op.peer)][ur].size() <= k) {
      parked_recv[{r, op.peer, k}] = i;
    } else {
      ready.emplace_back(r, i);
    }
  };
  for (int r = 0; r < p; ++r) {
    for (size_t i = 0; i < plans[static_cast<size_t>(r)].ops.size(); ++i)
      if (pending[static_cast<size_t>(r)][i] == 0) offer(r, static_cast<uint32_t>(i));
  }
  while (!ready.empty()) {
    const size_t pick = std::uniform_int_distribution<size_t>(0, ready.size() - 1)(rng);
    const auto [r, i] = ready[pick];
    ready[pick] = ready.back();
    ready.pop_back();
    const size_t ur = static_cast<size_t>(r);
    const Op& op = plans[ur].ops[i];
    auto& m = mem[ur];
    uint64_t k = know[ur][i];
    for (uint32_t d : op.deps) k |= know[ur][d];
    const size_t peer = static_cast<size_t>(op.peer < 0 ? 0 : op.peer);
    switch (op.kind) {
      case OpKind::kSend: {
        const size_t a = addr(ur, op.src);
        if (op.src.buf == Buf::kFrame) {
          wire[ur][peer].push_back({frames[ur][op.src.offset], k});
        } else {
          wire[ur][peer].push_back(
              {std::vector<int64_t>(m.begin() + static_cast<std::ptrdiff_t>(a),
                                    m.begin() + static_cast<std::ptrdiff_t>(a + op.src.count)),
               k});
        }
        out.bytes_sent[ur] += op.src.count * reqs[ur].elem_size;
        out.bytes_to[ur][peer] += op.src.count * reqs[ur].elem_size;
        out.messages_sent[ur]++;
        const size_t next = ++next_send[ur][peer];
        auto ps = parked_send.find({r, op.peer, next});
        if (ps != parked_send.end()) {
          ready.emplace_back(r, ps->second);
          parked_send.erase(ps);
        }
        auto pr = parked_recv.find({op.peer, r, next - 1});
        if (pr != parked_recv.end()) {
          ready.emplace_back(op.peer, pr->second);
          parked_recv.erase(pr);
        }
        break;
      }
      case OpKind::kRecv:
      case OpKind::kRecvReduce: {
        const Message& msg = wire[peer][ur][ordinal[ur][i]];
        if (msg.data.size() != op.dst.count) {
          out.error = "rank " + std::to_string(r) + " op " + std::to_string(i) + " receives " +
                      std::to_string(op.dst.count) + " from rank " + std::to_string(peer) +
                      ", which sent " + std::to_string(msg.data.size());
          return out;
        }
        k |= msg.know;
        const size_t d = addr(ur, op.dst);
        if (op.dst.buf == Buf::kFrame) {
          frames[ur][op.dst.offset] = msg.data;
        } else if (op.kind == OpKind::kRecv) {
          std::copy(msg.data.begin(), msg.data.end(), m.begin() + static_cast<std::ptrdiff_t>(d));
        } else {
          const size_t s = addr(ur, op.src);
          for (size_t e = 0; e < op.dst.count; ++e) m[d + e] = m[s + e] + msg.data[e];
        }
        break;
      }
      case OpKind::kCopy: {
        const size_t s = addr(ur, op.src), d = addr(ur, op.dst);
        if (s != d) {
          std::vector<int64_t> tmp(m.begin() + static_cast<std::ptrdiff_t>(s),
                                   m.begin() + static_cast<std::ptrdiff_t>(s + op.src.count));
          std::copy(tmp.begin(), tmp.end(), m.begin() + static_cast<std::ptrdiff_t>(d));
        }
        break;
      }
      case OpKind::kReduce: {
        const size_t s = addr(ur, op.src), d = addr(ur, op.dst);
        for (size_t e = 0; e < op.dst.count; ++e) m[d + e] += m[s + e];
        break;
      }
      case OpKind::kEncode: {
        const size_t s = addr(ur, op.src);
        frames[ur][op.dst.offset].assign(m.begin() + static_cast<std::ptrdiff_t>(s),
                                         m.begin() + static_cast<std::ptrdiff_t>(s + op.src.count));
        break;
      }
      case OpKind::kDecode: {
        const auto& f = frames[ur][op.src.offset];
        if (f.size() != op.dst.count) {
          out.error = "rank " + std::to_string(r) + " op " + std::to_string(i) +
                      " decodes a frame slot that holds " + std::to_string(f.size()) +
                      " values into " + std::to_string(op.dst.count);
          return out;
        }
        const size_t d = addr(ur, op.dst);
        for (size_t e = 0; e < op.dst.count; ++e) {
          m[d + e] = op.accumulate ? m[d + e] + f[e] : f[e];
        }
        break;
      }
    }
    know[ur][i] = k;
    out.heard_from[ur] |= k;
    --remaining;
    for (uint32_t j : dependents[ur][i]) {
      if (--pending[ur][j] == 0) offer(r, j);
    }
  }
  if (remaining > 0) {
    out.error = "deadlock: " + std::to_string(remaining) + " ops cannot run";
    if (!parked_recv.empty()) {
      const auto& [key, op] = *parked_recv.begin();
      out.error += "; e.g. rank " + std::to_string(std::get<0>(key)) + " op " + std::to_string(op) +
                   " waits for message " + std::to_string(std::get<2>(key)) + " from rank " +
                   std::to_string(std::get<1>(key));
    }
    return out;
  }
  for (size_t a = 0; a < up; ++a) {
    for (size_t b = 0; b < up; ++b) {
      size_t nrecv = 0;
      for (const Op& op : plans[b].ops)
        if ((op.kind == OpKind::kRecv || op.kind == OpKind::kRecvReduce) &&
            static_cast<size_t>(op.peer) == a)
          ++nrecv;
      if (nrecv != wire[a][b].size()) {
        out.error = "rank " + std::to_string(a) + " sent " + std::to_string(wire[a][b].size()) +
                    " messages to rank " + std::to_string(b) + ", which received " +
                    std::to_string(nrecv);
        return out;
      }
    }
  }
  out.recv.resize(up);
  for (size_t r = 0; r < up; ++r) {
    const auto b = mem[r].begin() + static_cast<std::ptrdiff_t>(lay[r].recv_offset);
    out.recv[r].assign(b, b + static_cast<std::ptrdiff_t>(lay[r].recv_count));
  }
  return out;
}

}  // namespace gradpack::coll::sim
