// SPDX-License-Identifier: Apache-2.0
#include "topology/host.h"

#include <unistd.h>

#include <algorithm>
#include <fstream>

namespace gradpack::topology {
namespace {

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

}  // namespace

std::string default_host_id() {
  char name[256] = {};
  gethostname(name, sizeof(name) - 1);
  std::string id = name;
  id += "/" + read_first_line("/proc/sys/kernel/random/boot_id");
  char ns[128] = {};
  ssize_t n = readlink("/proc/self/ns/net", ns, sizeof(ns) - 1);
  if (n > 0) id += "/" + std::string(ns, static_cast<size_t>(n));
  return id;
}

std::vector<int> group_hosts(const std::vector<std::string>& host_ids) {
  const size_t n = host_ids.size();
  std::vector<int> host_of_rank(n, -1);
  int nhosts = 0;
  for (size_t p = 0; p < n; ++p) {
    if (host_of_rank[p] >= 0) continue;
    for (size_t q = p; q < n; ++q) {
      if (host_ids[q] == host_ids[p]) host_of_rank[q] = nhosts;
    }
    ++nhosts;
  }
  return host_of_rank;
}

int host_count(const std::vector<int>& host_of_rank) {
  return host_of_rank.empty() ? 0 : *std::max_element(host_of_rank.begin(), host_of_rank.end()) + 1;
}

HostGroups host_groups(const std::vector<int>& host_of_rank, int nranks, int rank) {
  auto host = [&](int r) {
    return host_of_rank.empty() ? r : host_of_rank[static_cast<size_t>(r)];
  };
  HostGroups g;
  std::vector<bool> host_seen;
  for (int r = 0; r < nranks; ++r) {
    const auto h = static_cast<size_t>(host(r));
    if (h >= host_seen.size()) host_seen.resize(h + 1, false);
    if (!host_seen[h]) {
      host_seen[h] = true;
      g.leaders.push_back(r);
    }
    if (host(r) == host(rank)) g.local.push_back(r);
  }
  auto index_of = [&](const std::vector<int>& v) {
    auto it = std::find(v.begin(), v.end(), rank);
    return it == v.end() ? -1 : static_cast<int>(it - v.begin());
  };
  g.me_local = index_of(g.local);
  g.me_leader = index_of(g.leaders);
  return g;
}

}  // namespace gradpack::topology
