// SPDX-License-Identifier: Apache-2.0
// The cluster: hosts attached to leaf switches, under a tree (or a forest) of switches with any
// number of levels, and the rate and latency of every link. The topology-aware plans read it to
// keep traffic below the switches where it can stay and to know which uplinks are oversubscribed.
//
// Units, everywhere in the model, its files (cluster_file.h) and gradpack-topo: rates in Mbit/s
// (10^6 bit/s, as GRADPACK_NET_SPEED_MBPS), latencies in microseconds; 0 means unknown.
//
// A Cluster is built only by assemble_cluster, from declarations that remember the line of the
// file that made them, so that every inconsistency is reported against a line. Once built it is
// immutable and its invariants hold:
//   - names are unique among hosts and among switches (a host and a switch may share a name);
//   - every host hangs off one leaf switch; a switch has hosts or child switches, never both;
//   - parents form a forest (no cycles); a switch with no parent is a root;
//   - a switch's level is 0 for a leaf and 1 + the highest level of its children otherwise;
//   - ClusterSwitch::children and ::hosts are in ascending index order (the order of definition).
// Thread-safety: a const Cluster may be read from any number of threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace gradpack::topology {

struct Link {
  double rate_mbps = 0;   // Mbit/s; 0: unknown
  double latency_us = 0;  // one way, microseconds; 0: unknown
  bool operator==(const Link&) const = default;
};

struct ClusterHost {
  std::string name;
  int leaf = -1;  // index of its switch in Cluster::switches()
  Link link;      // the host's link to its leaf switch
  bool operator==(const ClusterHost&) const = default;
};

struct ClusterSwitch {
  std::string name;
  int parent = -1;            // index of its parent switch; -1: a root
  std::vector<int> children;  // child switches, ascending
  std::vector<int> hosts;     // hosts attached to it (leaves only), ascending
  int level = 0;              // 0: a leaf (hosts attach here)
  Link uplink;                // its link to the parent (a root's: to whatever is above; often 0)
  bool operator==(const ClusterSwitch&) const = default;
};

class Cluster {
 public:
  // No hosts and no switches: the flat cluster (GRADPACK_TOPOLOGY=off, or nothing found).
  Cluster() = default;

  const std::vector<ClusterHost>& hosts() const { return hosts_; }
  const std::vector<ClusterSwitch>& switches() const { return switches_; }
  bool empty() const { return hosts_.empty(); }

  // Index of the host (switch) named `name`, or -1.
  int host_index(std::string_view name) const;
  int switch_index(std::string_view name) const;

  // Number of switch levels: 0 without switches, 1 for one level of leaves, ...
  int levels() const;
  // The switches from the host's leaf up to its root, leaf first.
  std::vector<int> path_to_root(int host) const;
  // The lowest switch both hosts are under (their leaf when they share it; a host with itself:
  // its leaf), or -1 when they are in different trees of a forest.
  int lowest_common_switch(int host_a, int host_b) const;
  // Every host below the switch, depth first through the children in ascending order, so that
  // the hosts of one subtree are contiguous: the stable order the plans walk.
  std::vector<int> hosts_under(int sw) const;
  // True with at most one switch: nothing to gain from the tree.
  bool flat() const { return switches_.size() <= 1; }

  // The sum of the rates of the links below the switch (hosts' links of a leaf, children's
  // uplinks otherwise); 0 if any of them is unknown or it has none.
  double down_rate_mbps(int sw) const;
  // down_rate_mbps / the uplink's rate (16 for 4 hosts of 500 Mbit/s behind 125 Mbit/s); 0 when
  // either is unknown. Above 1, the uplink is the bottleneck when every host below sends out.
  double oversubscription(int sw) const;

  bool operator==(const Cluster&) const = default;

 private:
  friend struct ClusterAssembler;
  std::vector<ClusterHost> hosts_;
  std::vector<ClusterSwitch> switches_;
};

// What a cluster file (or a probe, or a test) declares, each item with the line that declared it
// (0: not from a file). Names are resolved, and the rules above checked, by assemble_cluster.
struct SwitchDecl {
  std::string name;
  int line = 0;
  Link uplink;
};
struct HostDecl {
  std::string name;
  std::string leaf;  // its switch's name
  int line = 0;
  Link link;
};
struct ParentDecl {
  std::string child;  // a switch
  std::string parent;
  int line = 0;
  Link uplink;  // the child's uplink, where the parent's line gives it (Slurm's LinkSpeed); 0: keep
};
struct ClusterDecls {
  std::vector<SwitchDecl> switches;  // switch indices follow this order
  std::vector<HostDecl> hosts;       // host indices follow this order
  std::vector<ParentDecl> parents;
};

// A name a cluster file can hold: not empty, none of '=', '#', ',', '[', ']' or blanks.
bool is_plain_name(std::string_view name);

// Builds the cluster from declarations. Errors (kInvalidArgument) start with "SOURCE:LINE: " and
// say what is wrong: a name that is not plain, a name defined twice, a host under two switches, a
// switch under two parents, a switch referenced but never defined, a cycle, a switch with both
// hosts and switches.
Status assemble_cluster(const ClusterDecls& decls, const std::string& source, Cluster* out);

// What each rank published about its host: `id` as topology::default_host_id() (or
// GRADPACK_HOSTID; may be empty) and `name` as local_host_name() (cluster_source.h).
struct RankHost {
  std::string id;
  std::string name;
};
struct RankPlacement {
  std::vector<int> host_of_rank;        // cluster host index of every rank
  std::vector<std::string> idle_hosts;  // hosts of the cluster with no rank (a warning)
};

// Maps every rank to a host of the cluster by name: the exact name, else the rank's name up to
// its first '.' (node01.example.org finds node01). Ranks with one name share the cluster host.
// Errors (kInvalidArgument): names the cluster does not know (listing each with its ranks), and
// ranks whose ids say they are on different hosts while their names say the same one (or the
// reverse) — set GRADPACK_HOSTNAME per host.
Status place_ranks(const Cluster& cluster, const std::vector<RankHost>& ranks, RankPlacement* out);

}  // namespace gradpack::topology
