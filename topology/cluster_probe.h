// SPDX-License-Identifier: Apache-2.0
// The cluster probe of GRADPACK_TOPOLOGY=auto: which hosts share a switch, measured at init among
// the ranks of a communicator, agreed on by every rank. docs/topology.md describes it.
//
// One rank per host (its lowest, the host's leader) takes part; with fewer than kMinProbeHosts
// hosts the cluster is flat without measuring. The probe runs rounds: in the round of shift d,
// the leader of host i sends `bytes` to the leader of host (i + d) mod H and receives as many
// from host (i - d) mod H, every leader at once, so that flows sharing an uplink slow each other
// down. Each receiver times its own flow (the second half of the bytes, after the first half has
// drained the buffers a switch or shaper lets through at once). The shifts are 1 .. H-1, or
// `max_rounds` of them (probe_shifts); each runs twice (two passes), and a flow's rate is the
// better of the two.
//
// Agreement: before every round all ranks agree (all-reduce MAX) on whether any of them has run
// past the time budget, which also starts the round on every rank at once; at the end one
// all-reduce MAX gives every rank every flow's rate, and the racks are a pure function of those
// (probe_clustering.h). No rank ever decides from its own measurements alone, so no two ranks
// can follow different trees.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "topology/cluster_source.h"
#include "topology/probe_clustering.h"

namespace gradpack::topology {

// What the probe needs from a communicator (the collectives layer implements it over its
// connections). Every call is collective or paired as described.
class ClusterProbeTarget {
 public:
  virtual ~ClusterProbeTarget() = default;
  virtual int rank() const = 0;
  virtual int nranks() const = 0;
  // In place: every value becomes its largest over the ranks. Every rank calls it.
  virtual Status agree_max(double* values, size_t count) = 0;
  // Sends `first` then `rest` bytes to rank `to` while receiving as many from rank `from` (two
  // messages each way), and says when they landed here. Paired: rank `to` makes the same call
  // with this rank as its `from`.
  struct Timing {
    double rest_s = 0;   // from the first message landing to the second
    double whole_s = 0;  // from this rank's start of the exchange to the second landing
  };
  virtual Status timed_exchange(int to, int from, size_t first, size_t rest, Timing* out) = 0;
};

inline constexpr int kMinProbeHosts = 4;
inline constexpr int kProbePasses = 2;

struct ProbeOptions {
  size_t bytes = 512 << 10;                // per flow and round (GRADPACK_TOPOLOGY_PROBE_BYTES)
  std::chrono::milliseconds budget{3000};  // GRADPACK_TOPOLOGY_PROBE_MS
  int max_rounds = 16;                     // shifts per pass (GRADPACK_TOPOLOGY_PROBE_ROUNDS)
  // Tests only: changes this rank's measurements before they are agreed on. `measured` holds two
  // blocks of one value per flow, at [(pass * hosts + receiving host) * shifts + shift index]:
  // the rates in Mbit/s, then (after passes * hosts * shifts values) the whole flows' seconds;
  // what this rank measured (its host's entries if it leads one), 0 elsewhere. What the hook
  // leaves is what the rank contributes to the agreement (an all-reduce MAX).
  std::function<void(int rank, std::vector<double>* measured)> test_rates;
};

// The settings' options: GRADPACK_TOPOLOGY_PROBE_BYTES, _MS and _ROUNDS.
ProbeOptions probe_options(const Settings& settings);

// The shifts of one pass for `hosts` hosts, ascending: 1 .. hosts-1, or `max_rounds` of them (at
// least 1): the smallest half of them consecutive from 1, the rest spread evenly over the others.
std::vector<int> probe_shifts(int hosts, int max_rounds);

// The name of each host in the probed cluster: its leader's published name (GRADPACK_HOSTNAME
// or the hostname), unless two hosts share one, a host's ranks disagree or a name is not plain
// (network namespaces keep the machine's name): then "host<i>" for every host.
std::vector<std::string> probe_host_names(const std::vector<int>& host_of_rank,
                                          const std::vector<std::string>& rank_names);

struct ProbeReport {
  ClusterChoice choice;    // Origin kProbe with the racks, or kFlat with why in `detail`
  ProbeFindings findings;  // what the agreed rates showed (empty when no probe ran)
  std::vector<std::string> host_names;  // of the probed cluster's hosts (host_of_rank's order)
  double seconds = 0;                   // the probe's wall time, the slowest rank's (0: none ran)
  int rounds = 0;                       // rounds run (of 2 x shifts)
  bool timed_out = false;
};

// Runs the probe (collective: every rank calls it with the same host_of_rank, as
// topology::group_hosts numbers hosts, and names). Errors are the target's (a dead peer); a probe
// past its budget is not an error but a flat cluster with timed_out set.
Status probe_cluster(ClusterProbeTarget& target, const std::vector<int>& host_of_rank,
                     const std::vector<std::string>& rank_names, const ProbeOptions& options,
                     ProbeReport* out);

}  // namespace gradpack::topology
