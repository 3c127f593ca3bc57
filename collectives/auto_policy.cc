// SPDX-License-Identifier: Apache-2.0
#include "collectives/auto_policy.h"

#include "common/dtype.h"
#include "common/log.h"

namespace gradpack::coll {

Status AutoPolicy::model(topology::ProbeTarget& target, const CodecSet& codecs,
                         topology::LinkModel* out) {
  auto it = models_.find(codecs.canonical);
  if (it == models_.end()) {
    topology::LinkModel m;
    GP_RETURN_IF_ERROR(topology::measure_link(target, *codecs.worker,
                                              network_measured_ ? &network_ : nullptr, &m));
    if (!network_measured_) {
      network_ = m;
      network_measured_ = true;
    }
    it = models_.emplace(codecs.canonical, m).first;
  }
  *out = it->second;
  return OkStatus();
}

Status AutoPolicy::choose(topology::ProbeTarget& target, const CodecSet& codecs, size_t count,
                          gp_dtype_t dtype, Choice* out) {
  Decision& d = decisions_[key(codecs, count, dtype)];
  if (d.state == Decision::kNew) {
    topology::LinkModel m;
    GP_RETURN_IF_ERROR(model(target, codecs, &m));
    const size_t bytes = count * dtype_size(dtype);
    const size_t wire = codecs.worker->max_encoded_bytes(count, dtype);
    const topology::Prediction p = topology::predict(m, bytes, wire, codecs.topk);
    const bool confirm = p.compress && bytes < kConfirmBelow;
    d.state = confirm ? Decision::kTiming : Decision::kDecided;
    d.compress = p.compress;
    GP_LOG_INFO(
        kColl, "auto: %zu bytes on %d ranks: %s predicted %.3f ms, uncompressed %.3f ms: %s", bytes,
        target.nranks(), codecs.canonical.c_str(), p.compressed_s * 1e3, p.uncompressed_s * 1e3,
        confirm      ? "confirming by timing both"
        : p.compress ? "compress"
                     : "send uncompressed");
  }
  if (d.state == Decision::kTiming) {
    // Uncompressed and compressed calls alternate, so both meet the network in the same state
    // (a shaped link's token bucket drains over the first calls).
    *out = Choice{d.trial_calls % 2 == 1, true};
  } else {
    *out = Choice{d.compress, false};
  }
  return OkStatus();
}

Status AutoPolicy::trial_done(topology::ProbeTarget& target, const CodecSet& codecs, size_t count,
                              gp_dtype_t dtype, bool compressed, double seconds) {
  Decision& d = decisions_[key(codecs, count, dtype)];
  // The first pair warms up (connections, buffers, a full token bucket); the rest are summed.
  if (d.trial_calls >= 2) (compressed ? d.compressed_s : d.uncompressed_s) += seconds;
  if (++d.trial_calls < 2 * kTrialCalls) return OkStatus();
  // The slowest rank's times decide, the same on every rank.
  double times[2] = {d.uncompressed_s / (kTrialCalls - 1), d.compressed_s / (kTrialCalls - 1)};
  GP_RETURN_IF_ERROR(target.agree_max(times, 2));
  d.state = Decision::kDecided;
  d.compress = times[1] <= topology::kAutoMargin * times[0];
  GP_LOG_INFO(kColl,
              "auto: %zu bytes on %d ranks: measured %.3f ms compressed, %.3f ms uncompressed: %s",
              count * dtype_size(dtype), target.nranks(), times[1] * 1e3, times[0] * 1e3,
              d.compress ? "compress" : "send uncompressed");
  return OkStatus();
}

}  // namespace gradpack::coll
