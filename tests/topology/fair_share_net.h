// SPDX-License-Identifier: Apache-2.0
// A test model of the network the cluster probe measures: hosts in racks under one core switch,
// every uplink direction shared fairly among the flows crossing it. It gives the rates each round
// of the probe (host i sends to i + shift) would measure. Used by the clustering's unit tests and
// by the communicator's probe tests to feed rates through the test hook.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <random>
#include <vector>

#include "topology/probe_clustering.h"

namespace gradpack::topology::testing {

// Hosts in racks under one core: host links at `link`, each rack's uplink at `uplink` each way.
// `uneven` > 0 shares an uplink unevenly, as TCP does over short flows: of the flows crossing it
// one way in a round, the first gets (1 + uneven) times its fair share and the others divide
// what is left.
struct Net {
  std::vector<int> rack;
  double link = 500;
  double uplink = 125;
  double uneven = 0;
};

// Multiplicative noise in [1 - amount, 1 + amount], the same sequence for the same seed.
class Noise {
 public:
  Noise(double amount, uint32_t seed) : amount_(amount), rng_(seed) {}
  double operator()() {
    std::uniform_real_distribution<double> u(1 - amount_, 1 + amount_);
    return u(rng_);
  }

 private:
  double amount_;
  std::mt19937 rng_;
};

// The size of a flow (512 KiB), in Mbit.
inline constexpr double kMegabits = 512 * 1024 * 8 / 1e6;

// The rates of every round of `passes` passes over `shifts`, as a network that shares each
// uplink direction fairly among the flows crossing it gives them: host i sends to i + d.
inline std::vector<ProbeFlow> simulate(const Net& net, const std::vector<int>& shifts, int passes,
                                       Noise noise) {
  const int h = static_cast<int>(net.rack.size());
  std::vector<ProbeFlow> flows;
  for (int pass = 0; pass < passes; ++pass) {
    for (size_t k = 0; k < shifts.size(); ++k) {
      std::map<int, int> up, down;  // rack -> flows crossing its uplink out, in
      for (int i = 0; i < h; ++i) {
        const int j = (i + shifts[k]) % h;
        if (net.rack[i] != net.rack[j]) ++up[net.rack[i]], ++down[net.rack[j]];
      }
      std::map<int, bool> first_up;  // rack -> its first crossing flow out has its share
      auto share = [&](int sharing, bool first) {
        if (sharing == 1) return net.uplink;
        const double fair = net.uplink / sharing;
        return first ? fair * (1 + net.uneven) : fair * (1 - net.uneven / (sharing - 1));
      };
      for (int i = 0; i < h; ++i) {
        const int j = (i + shifts[k]) % h;
        double rate = net.link;
        if (net.rack[i] != net.rack[j]) {
          const bool first = !first_up[net.rack[i]];
          first_up[net.rack[i]] = true;
          rate = std::min({rate, share(up[net.rack[i]], first), share(down[net.rack[j]], first)});
        }
        rate *= noise();
        flows.push_back({i, j, static_cast<int>(k), pass, rate, kMegabits, kMegabits / rate});
      }
    }
  }
  return flows;
}

// Host i in rack i * racks / hosts (racks in blocks), or in rack i mod racks (interleaved).
inline std::vector<int> blocks(int hosts, int racks) {
  std::vector<int> r;
  for (int i = 0; i < hosts; ++i) r.push_back(i * racks / hosts);
  return r;
}

inline std::vector<int> interleaved(int hosts, int racks) {
  std::vector<int> r;
  for (int i = 0; i < hosts; ++i) r.push_back(i % racks);
  return r;
}

}  // namespace gradpack::topology::testing
