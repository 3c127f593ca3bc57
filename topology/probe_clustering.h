// SPDX-License-Identifier: Apache-2.0
// From measured flow rates to racks: the pure half of the cluster probe (cluster_probe.h measures).
// Every rank calls it on the same agreed measurements, so every rank finds the same racks; it does
// no I/O, so the tests hand it rates directly.
//
// The signal is contention. In each round of the probe every host sends to one host and receives
// from another, all at once. Flows between hosts under one switch run at their links' rate; flows
// that share a switch's uplink in one direction divide it. So:
//   1. every flow is classified fast or slow by its whole rate (its bytes over the time from its
//      receiver's start to its last byte, which carries the contention over the whole flow), at
//      the split of the log rates that best separates two classes (Otsu's threshold; a class of
//      a few flows far from the rest is set aside as outliers, a stall's, and the split made
//      again); the split must be wide (the classes' geometric means at least kMinSeparation
//      apart) and, when each round ran more than once, repeat: most flows on the same side in
//      every pass;
//   2. a slow flow is strong evidence that its hosts are under different switches, a fast flow
//      weaker evidence that they share one (a flow that crosses an uplink alone, as fast as the
//      host links, is fast too): +1 per fast flow, -kSlowWeight per slow flow between two hosts;
//   3. racks are the partition that agrees with the most evidence (correlation clustering):
//      groups are merged greedily while the evidence between them is positive, then single hosts
//      are moved to the group they agree with most until none moves. Hosts behind one switch see
//      the rest of the network alike, so a few misleading flows do not split or join racks;
//   4. the racks are kept only if they explain at least kMinAgreement of the flows (a fast flow
//      across racks is explained when, on each uplink it crossed, it was alone in its round or
//      another flow was slow), and at least kMinDirectAgreement without such flows, which
//      another grouping might explain as well.
// The result depends on the flows as a set, not on their order.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"
#include "topology/cluster.h"

namespace gradpack::topology {

// One measured flow: host `src` sent to host `dst` in `round` (flows of one round ran at the same
// time), in pass `pass` (each round may run again in a later pass).
struct ProbeFlow {
  int src = 0;
  int dst = 0;
  int round = 0;
  int pass = 0;
  double mbps = 0;  // its rate in Mbit/s (of its timed part); 0 or less: not measured (ignored)
  // The whole flow: its bytes, and the seconds from the receiver's start of the round to its last
  // byte (0: unknown). What crossed an uplink in a round over the longest of them is the uplink's
  // rate, where the flows' own rates, timed over windows that overlap only in part, are not.
  double megabits = 0;
  double whole_s = 0;
};

inline constexpr double kMinSeparation = 1.8;       // fast / slow, geometric means
inline constexpr double kMinRepeat = 0.8;           // flows on the same side in every pass
inline constexpr double kMinAgreement = 0.9;        // flows the racks explain
inline constexpr double kMinDirectAgreement = 0.8;  // of them, fast inside or slow across
inline constexpr int kSlowWeight = 2;

struct ProbeFindings {
  int hosts = 0;
  int racks = 1;                  // 1: flat
  std::vector<int> rack_of_host;  // racks numbered in order of their lowest host; all 0 when flat
  int flows = 0;                  // flows measured (each round's flow once, whatever the passes)
  int outliers = 0;               // of them, set aside before classifying (see the .cc)
  double fast_mbps = 0;           // median of the fast flows; 0: none
  double slow_mbps = 0;           // median of the slow flows; 0: none
  double separation = 0;          // geometric mean of the fast over that of the slow
  double repeat = 1;              // share of flows classified alike in every pass
  double agreement = 0;           // share of flows the racks explain
  double direct_agreement = 0;    // share fast inside a rack or slow across racks
  // Measured rates, rounded to 3 significant digits (0: unknown). A host's link: the median of its
  // fast flows (the median of all fast flows for a host that has none). A rack's uplink: over the
  // rounds and directions where it was the bottleneck (every flow crossing it slow) and carried
  // the most flows, the median of the bytes that crossed it over the time the last of them took;
  // without such a round, the most the flows crossing it added up to in one round.
  std::vector<double> link_mbps;
  std::vector<double> uplink_mbps;
  std::string summary;  // what was found, or why the cluster is flat
};

// The racks the flows of `hosts` hosts show (flat when they show none, `summary` saying why).
ProbeFindings find_racks(int hosts, std::vector<ProbeFlow> flows);

// The cluster of racks found: a root switch "core" with one leaf switch "rack<i>" per rack (its
// uplink at the measured rate), and host i named names[i] (plain and distinct) under its rack with
// its measured link rate; host and rack indices follow the findings'. Flat findings give the empty
// cluster.
Status cluster_from_findings(const ProbeFindings& findings, const std::vector<std::string>& names,
                             Cluster* out);

}  // namespace gradpack::topology
