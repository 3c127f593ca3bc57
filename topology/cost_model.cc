// SPDX-License-Identifier: Apache-2.0
#include "topology/cost_model.h"

#include <algorithm>
#include <cmath>

#include "topology/cluster.h"

namespace gradpack::topology {

LinkModel slowest(const LinkModel& a, const LinkModel& b) {
  LinkModel s = a;
  s.latency_s = std::max(a.latency_s, b.latency_s);
  s.compressed_latency_s = std::max(a.compressed_latency_s, b.compressed_latency_s);
  s.link_Bps = std::min(a.link_Bps, b.link_Bps);
  s.encode_Bps = std::min(a.encode_Bps, b.encode_Bps);
  s.decode_Bps = std::min(a.decode_Bps, b.decode_Bps);
  return s;
}

Prediction predict(const LinkModel& m, size_t bytes, size_t wire_bytes, bool sparse) {
  Prediction p;
  const double n = m.nranks;
  const double s = static_cast<double>(bytes);
  const double w = static_cast<double>(wire_bytes);
  if (m.nranks <= 1 || m.link_Bps <= 0 || m.encode_Bps <= 0 || m.decode_Bps <= 0) return p;
  // Uncompressed: the measured small-message time plus the ring's 2(n-1)/n of the buffer.
  p.uncompressed_s = m.latency_s + 2 * (n - 1) / n * s / m.link_Bps;
  // Without a measured compressed latency: the measured one is ceil(lg n) rounds of one message
  // (recursive doubling); the compressed plans send n-1 messages a round, charged as n / ceil(lg n)
  // rounds (more than their two rounds, less than a round per message).
  const double rounds = std::max(1.0, std::ceil(std::log2(n)));
  const double latency =
      m.compressed_latency_s > 0 ? m.compressed_latency_s : m.latency_s * std::max(1.0, n / rounds);
  if (sparse) {
    // Every rank's frame to every rank; one encode of the buffer, n frames decoded (their cost
    // follows their size).
    p.compressed_s = latency + (n - 1) * w / m.link_Bps + s / m.encode_Bps + n * w / m.decode_Bps;
  } else {
    // Frames of 1/n of the buffer to each owner and back; the buffer encoded once (worker and
    // server stages together) and decoded (2 - 1/n) times (the owner's sums, the final chunks).
    p.compressed_s = latency + 2 * (n - 1) / n * w / m.link_Bps + s / m.encode_Bps +
                     (2 - 1 / n) * s / m.decode_Bps;
  }
  p.compress = p.compressed_s <= kAutoMargin * p.uncompressed_s;
  return p;
}

bool sparse_wins(int nranks, size_t sparse_frame_bytes, size_t dense_frame_bytes) {
  const double n = nranks;
  return (n - 1) * static_cast<double>(sparse_frame_bytes) <
         (n - 1) / n * static_cast<double>(sparse_frame_bytes + dense_frame_bytes);
}

size_t compression_threshold(const LinkModel& model,
                             const std::function<size_t(size_t bytes)>& wire_bytes, bool sparse) {
  for (size_t bytes = kThresholdMin; bytes <= kThresholdMax; bytes *= 2) {
    const size_t wire = wire_bytes(bytes);
    if (wire == 0) return kNeverCompress;
    if (predict(model, bytes, wire, sparse).compress) return bytes;
  }
  return kNeverCompress;
}

TreePlanCosts tree_plan_costs(const Cluster& cluster) {
  TreePlanCosts c;
  double host_mbps = 0, uplink_mbps = 0;
  size_t leaves = 0, per_leaf = 0;
  for (const ClusterHost& h : cluster.hosts()) {
    if (h.link.rate_mbps <= 0) return c;
    host_mbps = host_mbps == 0 ? h.link.rate_mbps : std::min(host_mbps, h.link.rate_mbps);
  }
  for (int sw = 0; sw < static_cast<int>(cluster.switches().size()); ++sw) {
    const ClusterSwitch& s = cluster.switches()[static_cast<size_t>(sw)];
    if (s.level != 0) continue;
    ++leaves;
    per_leaf = std::max(per_leaf, s.hosts.size());
    if (s.parent < 0) continue;  // a root leaf has no uplink
    if (s.uplink.rate_mbps <= 0) return c;
    uplink_mbps = uplink_mbps == 0 ? s.uplink.rate_mbps : std::min(uplink_mbps, s.uplink.rate_mbps);
  }
  const double p = static_cast<double>(cluster.hosts().size());
  const double h = static_cast<double>(per_leaf);
  const double r = static_cast<double>(leaves);
  if (p < 2 || leaves < 2 || uplink_mbps == 0) return c;
  const double per_mbps = 8e-6;  // seconds per byte at 1 Mbit/s
  c.ring = 2 * (p - 1) / p * per_mbps / std::min(host_mbps, uplink_mbps);
  c.multilevel = 2 * (h - 1) / h * per_mbps / host_mbps + 2 * (r - 1) / r * per_mbps / uplink_mbps;
  c.known = true;
  return c;
}

}  // namespace gradpack::topology
