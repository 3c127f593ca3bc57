// SPDX-License-Identifier: Apache-2.0
// Codec "auto" (docs/algorithms.md "Automatic bypass"): whether one all-reduce compresses, decided
// per (codec, count, dtype) from the cost model, the same on every rank. Below kConfirmBelow, where
// the model is least sure, a predicted win is confirmed by timing kTrialCalls calls each way,
// alternating, before it is trusted.
//
// Measuring and agreeing are collective: every rank makes the same all-reduce calls, so every rank
// reaches each decision at the same call.
#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <tuple>

#include "collectives/codec_set.h"
#include "common/status.h"
#include "gradpack/gradpack.h"
#include "topology/cost_model.h"
#include "topology/link_probe.h"

namespace gradpack::coll {

class AutoPolicy {
 public:
  static constexpr size_t kConfirmBelow = 1 << 20;
  static constexpr int kTrialCalls = 5;  // each way

  // The model of `codecs` among `target`'s ranks, measured on first use (the network part once
  // for every codec). `target` runs `codecs`' compressed all-reduce.
  Status model(topology::ProbeTarget& target, const CodecSet& codecs, topology::LinkModel* out);

  struct Choice {
    bool compress = false;
    bool trial = false;  // a timed confirmation call: time it and report it with trial_done()
  };
  // Whether an all-reduce of `count` elements of `dtype` compresses with `codecs`.
  Status choose(topology::ProbeTarget& target, const CodecSet& codecs, size_t count,
                gp_dtype_t dtype, Choice* out);
  // A trial call of `choose` took `seconds`; after the last one the slowest rank's times decide.
  Status trial_done(topology::ProbeTarget& target, const CodecSet& codecs, size_t count,
                    gp_dtype_t dtype, bool compressed, double seconds);

 private:
  struct Decision {
    enum State { kNew, kTiming, kDecided } state = kNew;
    bool compress = false;
    int trial_calls = 0;
    double uncompressed_s = 0;  // summed over the timed calls after the first pair
    double compressed_s = 0;
  };
  using Key = std::tuple<std::string, size_t, int>;
  static Key key(const CodecSet& codecs, size_t count, gp_dtype_t dtype) {
    return Key{codecs.canonical, count, static_cast<int>(dtype)};
  }

  bool network_measured_ = false;
  topology::LinkModel network_;                        // latency and link rate
  std::map<std::string, topology::LinkModel> models_;  // by codec: with its rates
  std::map<Key, Decision> decisions_;
};

}  // namespace gradpack::coll
