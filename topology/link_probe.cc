// SPDX-License-Identifier: Apache-2.0
#include "topology/link_probe.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

#include "common/log.h"

namespace gradpack::topology {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Gradient-like values (signed, varied magnitudes), different on every rank.
void fill_gradient(std::vector<float>* v, uint32_t seed) {
  uint32_t state = seed;
  for (float& x : *v) {
    state = state * 1664525u + 1013904223u;
    x = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 1e-2f;
  }
}

// The best of `tries` timed calls of `call`.
template <typename Call>
Status best_time(int tries, Call&& call, double* out) {
  *out = std::numeric_limits<double>::infinity();
  for (int i = 0; i < tries; ++i) {
    const auto t0 = Clock::now();
    GP_RETURN_IF_ERROR(call());
    *out = std::min(*out, seconds_since(t0));
  }
  return OkStatus();
}

constexpr size_t kLinkBytes = 4 << 20;
// 16 MiB of fp32: large enough to be served from memory, not cache, as gradients are.
constexpr size_t kCodecCount = 4 << 20;

}  // namespace

Status measure_link(ProbeTarget& target, Codec& codec, const LinkModel* network, LinkModel* out) {
  const int rank = target.rank();
  // figures[0..4]: the latency, link, encode, decode and compressed-latency times of this rank.
  double figures[5] = {0, 0, 0, 0, 0};
  if (network == nullptr) {
    const float x[2] = {1, 1};
    float y[2];
    GP_RETURN_IF_ERROR(best_time(
        5, [&] { return target.allreduce(x, y, 2, false); }, &figures[0]));
    std::vector<uint8_t> a(kLinkBytes, 1), b(kLinkBytes);
    GP_RETURN_IF_ERROR(best_time(
        3, [&] { return target.ring_exchange(a.data(), b.data(), kLinkBytes); }, &figures[1]));
  }
  {
    std::vector<float> in(kCodecCount), residual(kCodecCount, 0.0f), sum(kCodecCount, 0.0f);
    fill_gradient(&in, 0x12345678u + static_cast<uint32_t>(rank));
    std::vector<uint8_t> frame(codec.max_encoded_bytes(kCodecCount, GP_FLOAT32));
    size_t bytes = 0;
    figures[2] = figures[3] = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 2; ++i) {
      auto t0 = Clock::now();
      GP_RETURN_IF_ERROR(codec.encode(in.data(), kCodecCount, GP_FLOAT32, residual.data(),
                                      frame.data(), frame.size(), &bytes));
      figures[2] = std::min(figures[2], seconds_since(t0));
      t0 = Clock::now();
      GP_RETURN_IF_ERROR(
          decode_frame(frame.data(), bytes, sum.data(), kCodecCount, GP_FLOAT32, true));
      figures[3] = std::min(figures[3], seconds_since(t0));
    }
  }
  {
    // The compressed path's own latency: one quantization block per rank, as auto would run it.
    const size_t count = static_cast<size_t>(target.nranks()) * 256;
    std::vector<float> in(count, 1.0f), sum(count);
    GP_RETURN_IF_ERROR(best_time(
        5, [&] { return target.allreduce(in.data(), sum.data(), count, true); }, &figures[4]));
  }
  GP_RETURN_IF_ERROR(target.agree_max(figures, 5));
  LinkModel m;
  if (network != nullptr) {
    m = *network;
  } else {
    m.nranks = target.nranks();
    m.latency_s = figures[0];
    m.link_Bps = static_cast<double>(kLinkBytes) / std::max(figures[1], 1e-9);
  }
  m.encode_Bps = static_cast<double>(kCodecCount * 4) / std::max(figures[2], 1e-9);
  m.decode_Bps = static_cast<double>(kCodecCount * 4) / std::max(figures[3], 1e-9);
  m.compressed_latency_s = figures[4];
  GP_LOG_INFO(kTopo,
              "link model for %s: all-reduce latency %.1f us (compressed %.1f us), link %.0f MB/s, "
              "encode %.0f MB/s, decode %.0f MB/s (slowest rank of %d)",
              codec.canonical().c_str(), m.latency_s * 1e6, m.compressed_latency_s * 1e6,
              m.link_Bps / 1e6, m.encode_Bps / 1e6, m.decode_Bps / 1e6, target.nranks());
  *out = m;
  return OkStatus();
}

Status probe_small_sizes(ProbeTarget& target, size_t* win_bytes) {
  std::vector<size_t> sizes;
  for (size_t s = kProbeMinBytes; s <= kProbeMaxBytes; s *= 2) sizes.push_back(s);
  std::vector<float> send(kProbeMaxBytes / sizeof(float)), recv(send.size());
  fill_gradient(&send, 0x9e3779b9u + static_cast<uint32_t>(target.rank()));
  std::vector<double> best(2 * sizes.size(), std::numeric_limits<double>::infinity());
  for (int round = 0; round < kProbeRounds; ++round) {
    for (size_t i = 0; i < sizes.size(); ++i) {
      for (size_t way = 0; way < 2; ++way) {
        const auto t0 = Clock::now();
        GP_RETURN_IF_ERROR(
            target.allreduce(send.data(), recv.data(), sizes[i] / sizeof(float), way == 1));
        best[2 * i + way] = std::min(best[2 * i + way], seconds_since(t0));
      }
    }
  }
  GP_RETURN_IF_ERROR(target.agree_max(best.data(), best.size()));
  *win_bytes = kNoProbedWin;
  for (size_t i = sizes.size(); i-- > 0;) {
    if (!(best[2 * i + 1] <= kAutoMargin * best[2 * i])) break;
    *win_bytes = sizes[i];
  }
  return OkStatus();
}

}  // namespace gradpack::topology
