// SPDX-License-Identifier: Apache-2.0
// Which ranks share a host. Ranks on one host reach each other without crossing the network, so
// the hierarchical algorithms reduce there first and send only one rank's data between hosts.
#pragma once

#include <string>
#include <vector>

namespace gradpack::topology {

// hostname + boot id + network namespace: processes in different network namespaces of one
// kernel (the vcluster's hosts) count as different hosts, as their traffic crosses a link.
std::string default_host_id();

// host_of_rank[r] for the identities every rank published (host_ids[r]): hosts are numbered in
// order of their lowest rank, so every rank computes the same numbering.
std::vector<int> group_hosts(const std::vector<std::string>& host_ids);

// The number of hosts in a grouping (0 for no ranks).
int host_count(const std::vector<int>& host_of_rank);

// The two-level grouping of `rank` within `nranks` ranks (host_of_rank empty: every rank its own
// host): `local` lists the ranks of its host in ascending order (local[0] leads it), `leaders`
// the lowest rank of every host, ascending; me_local and me_leader are the rank's index in them
// (-1 in leaders if it leads no host).
struct HostGroups {
  std::vector<int> local;
  std::vector<int> leaders;
  int me_local = -1;
  int me_leader = -1;
};
HostGroups host_groups(const std::vector<int>& host_of_rank, int nranks, int rank);

}  // namespace gradpack::topology
