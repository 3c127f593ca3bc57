// SPDX-License-Identifier: Apache-2.0
// The one cost model: what an all-reduce costs on a measured link, compressed or not. Codec
// "auto" (collectives/auto_policy), the compressed-algorithm choice (collectives/selector) and the
// NCCL tuner (net_plugin/tuner) consult it; docs/algorithms.md "Automatic bypass" derives it.
// Pure functions of figures every rank agreed on, so every rank decides the same thing without
// talking.
#pragma once

#include <cstddef>
#include <functional>
#include <limits>

namespace gradpack::topology {

class Cluster;

// A large all-reduce on a cluster of switches, one rank per host, in seconds per byte of the
// buffer: the ring in tree order (2(p-1)/p of the buffer through the slowest link it crosses,
// host link or uplink: each uplink carries one flow each way) against the multi-level plan
// (reduce-scatter and all-gather under each leaf switch, 2(h-1)/h over the host links, and each
// host's share across the uplinks, 2(R-1)/R of the buffer through each uplink), from the slowest
// host link and the slowest leaf uplink. known is false when a rate is missing; both are then 0.
struct TreePlanCosts {
  double ring = 0;
  double multilevel = 0;
  bool known = false;
};
TreePlanCosts tree_plan_costs(const Cluster& cluster);

// One level of the network as a communicator sees it (measured by link_probe.h, then agreed:
// every figure is the slowest rank's). α is latency_s, 1/β is link_Bps.
struct LinkModel {
  int nranks = 1;
  double latency_s = 0;  // an 8-byte uncompressed all-reduce
  // A compressed all-reduce of one quantization block per rank with the codec (0: unknown, then
  // estimated from latency_s and the message count).
  double compressed_latency_s = 0;
  double link_Bps = 0;    // bytes/s one rank sends to its ring neighbour while every rank does
  double encode_Bps = 0;  // input bytes/s the codec encodes with error feedback
  double decode_Bps = 0;  // input bytes/s it decodes and accumulates
};

// The slowest of two measurements of the same ranks: the larger latencies, the lower rates. A pure
// function of the pair, so figures combined in any order agree.
LinkModel slowest(const LinkModel& a, const LinkModel& b);

struct Prediction {
  double uncompressed_s = 0;
  double compressed_s = 0;
  bool compress = false;
};

// Compressing must be predicted this much faster before "auto" compresses: the model's error is
// the rest of the 5 % the bypass may lose.
inline constexpr double kAutoMargin = 0.9;

// `bytes`: the buffer; `wire_bytes`: the frames of the whole buffer; `sparse`: the all-gather of
// top-k frames (else the direct reduce-scatter + all-gather).
Prediction predict(const LinkModel& model, size_t bytes, size_t wire_bytes, bool sparse);

// Top-k: true when the all-gather of sparse frames moves fewer bytes per rank than the direct
// path (top-k frames to the owners, quantized dense frames back): (n-1)·sparse < (n-1)/n·(sparse
// + dense), i.e. below the density f* = dense / ((n-1)·(bytes per kept element)).
bool sparse_wins(int nranks, size_t sparse_frame_bytes, size_t dense_frame_bytes);

// The smallest power-of-two fp32 all-reduce, from kThresholdMin to kThresholdMax bytes, that
// predict() says compression wins; kNeverCompress if none. `wire_bytes(bytes)` is the codec's
// frame size for `bytes` of fp32 (0: the codec cannot take fp32, so never).
inline constexpr size_t kNeverCompress = std::numeric_limits<size_t>::max();
inline constexpr size_t kThresholdMin = 1024;
inline constexpr size_t kThresholdMax = size_t{1} << 32;
size_t compression_threshold(const LinkModel& model,
                             const std::function<size_t(size_t bytes)>& wire_bytes, bool sparse);

}  // namespace gradpack::topology
