// SPDX-License-Identifier: Apache-2.0
#include "topology/cluster.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>

namespace gradpack::topology {
namespace {

std::string where(const std::string& source, int line) {
  if (line <= 0) return source + ": ";
  return source + ":" + std::to_string(line) + ": ";
}

std::string quoted(const std::string& name) { return "'" + name + "'"; }

// The part of a host name before its first '.'.
std::string_view short_name(std::string_view name) { return name.substr(0, name.find('.')); }

Status check_name(const std::string& source, int line, const char* what, const std::string& name) {
  if (is_plain_name(name)) return OkStatus();
  return InvalidArgument(where(source, line) + what + " name " + quoted(name) +
                         " is empty or holds '=', '#', ',', '[', ']' or a blank");
}

Status check_link(const std::string& source, int line, const std::string& name, const Link& link) {
  auto bad = [](double v) { return !std::isfinite(v) || v < 0; };
  if (!bad(link.rate_mbps) && !bad(link.latency_us)) return OkStatus();
  return InvalidArgument(where(source, line) + "the link of " + quoted(name) +
                         " has a negative or non-finite rate or latency");
}

}  // namespace

bool is_plain_name(std::string_view name) {
  return !name.empty() && name.find_first_of("=#,[] \t\r\n\v\f") == std::string_view::npos;
}

int Cluster::host_index(std::string_view name) const {
  for (size_t i = 0; i < hosts_.size(); ++i) {
    if (hosts_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int Cluster::switch_index(std::string_view name) const {
  for (size_t i = 0; i < switches_.size(); ++i) {
    if (switches_[i].name == name) return static_cast<int>(i);
  }
  return -1;
}

int Cluster::levels() const {
  int top = -1;
  for (const ClusterSwitch& s : switches_) top = std::max(top, s.level);
  return top + 1;
}

std::vector<int> Cluster::path_to_root(int host) const {
  std::vector<int> path;
  for (int s = hosts_.at(static_cast<size_t>(host)).leaf; s >= 0;
       s = switches_[static_cast<size_t>(s)].parent) {
    path.push_back(s);
  }
  return path;
}

int Cluster::lowest_common_switch(int host_a, int host_b) const {
  const std::vector<int> a = path_to_root(host_a);
  const std::vector<int> b = path_to_root(host_b);
  for (int s : a) {
    if (std::find(b.begin(), b.end(), s) != b.end()) return s;
  }
  return -1;
}

std::vector<int> Cluster::hosts_under(int sw) const {
  std::vector<int> out;
  std::vector<int> stack = {sw};
  while (!stack.empty()) {
    const ClusterSwitch& s = switches_.at(static_cast<size_t>(stack.back()));
    stack.pop_back();
    out.insert(out.end(), s.hosts.begin(), s.hosts.end());
    // Reversed onto the stack, so the children come off it in ascending order.
    stack.insert(stack.end(), s.children.rbegin(), s.children.rend());
  }
  return out;
}

double Cluster::down_rate_mbps(int sw) const {
  const ClusterSwitch& s = switches_.at(static_cast<size_t>(sw));
  if (s.hosts.empty() && s.children.empty()) return 0;
  double sum = 0;
  for (int h : s.hosts) {
    const double r = hosts_[static_cast<size_t>(h)].link.rate_mbps;
    if (r <= 0) return 0;
    sum += r;
  }
  for (int c : s.children) {
    const double r = switches_[static_cast<size_t>(c)].uplink.rate_mbps;
    if (r <= 0) return 0;
    sum += r;
  }
  return sum;
}

double Cluster::oversubscription(int sw) const {
  const double up = switches_.at(static_cast<size_t>(sw)).uplink.rate_mbps;
  const double down = down_rate_mbps(sw);
  return up > 0 && down > 0 ? down / up : 0;
}

// Resolves the declarations in steps, each checking one rule, into the Cluster it befriends.
struct ClusterAssembler {
  const ClusterDecls& decls;
  const std::string& source;
  Cluster cluster;
  std::map<std::string, int> switch_of_name;
  std::vector<int> parent_line;  // per switch: the line that gave it its parent

  Status add_switches() {
    for (const SwitchDecl& d : decls.switches) {
      GP_RETURN_IF_ERROR(check_name(source, d.line, "switch", d.name));
      GP_RETURN_IF_ERROR(check_link(source, d.line, d.name, d.uplink));
      auto [it, fresh] = switch_of_name.emplace(d.name, static_cast<int>(cluster.switches_.size()));
      if (!fresh) {
        return InvalidArgument(
            where(source, d.line) + "switch " + quoted(d.name) +
            " is defined twice (first on line " +
            std::to_string(decls.switches[static_cast<size_t>(it->second)].line) + ")");
      }
      ClusterSwitch s;
      s.name = d.name;
      s.uplink = d.uplink;
      cluster.switches_.push_back(std::move(s));
    }
    parent_line.assign(cluster.switches_.size(), 0);
    return OkStatus();
  }

  Status find_switch(const std::string& name, int line, int* index) const {
    auto it = switch_of_name.find(name);
    if (it == switch_of_name.end()) {
      return InvalidArgument(where(source, line) + "switch " + quoted(name) +
                             " is referenced but never defined");
    }
    *index = it->second;
    return OkStatus();
  }

  Status add_hosts() {
    std::map<std::string, size_t> host_of_name;
    for (const HostDecl& d : decls.hosts) {
      GP_RETURN_IF_ERROR(check_name(source, d.line, "host", d.name));
      GP_RETURN_IF_ERROR(check_link(source, d.line, d.name, d.link));
      int leaf = -1;
      GP_RETURN_IF_ERROR(find_switch(d.leaf, d.line, &leaf));
      auto [it, fresh] = host_of_name.emplace(d.name, cluster.hosts_.size());
      if (!fresh) {
        const HostDecl& first = decls.hosts[it->second];
        return InvalidArgument(where(source, d.line) + "host " + quoted(d.name) +
                               " is already under switch " + quoted(first.leaf) + " (line " +
                               std::to_string(first.line) + "); a host hangs off one switch");
      }
      cluster.switches_[static_cast<size_t>(leaf)].hosts.push_back(
          static_cast<int>(cluster.hosts_.size()));
      cluster.hosts_.push_back(ClusterHost{d.name, leaf, d.link});
    }
    return OkStatus();
  }

  Status add_parents() {
    for (const ParentDecl& d : decls.parents) {
      int child = -1;
      int parent = -1;
      GP_RETURN_IF_ERROR(find_switch(d.child, d.line, &child));
      GP_RETURN_IF_ERROR(find_switch(d.parent, d.line, &parent));
      GP_RETURN_IF_ERROR(check_link(source, d.line, d.child, d.uplink));
      ClusterSwitch& c = cluster.switches_[static_cast<size_t>(child)];
      if (c.parent >= 0) {
        return InvalidArgument(
            where(source, d.line) + "switch " + quoted(d.child) + " is already under " +
            quoted(cluster.switches_[static_cast<size_t>(c.parent)].name) + " (line " +
            std::to_string(parent_line[static_cast<size_t>(child)]) + "); a switch has one parent");
      }
      c.parent = parent;
      if (d.uplink.rate_mbps > 0) c.uplink.rate_mbps = d.uplink.rate_mbps;
      if (d.uplink.latency_us > 0) c.uplink.latency_us = d.uplink.latency_us;
      parent_line[static_cast<size_t>(child)] = d.line;
      cluster.switches_[static_cast<size_t>(parent)].children.push_back(child);
    }
    return OkStatus();
  }

  // Walks up from every switch; meeting a switch of the same walk again is a cycle.
  Status check_cycles() const {
    const size_t n = cluster.switches_.size();
    std::vector<int> walk_of(n, -1);
    for (size_t start = 0; start < n; ++start) {
      int s = static_cast<int>(start);
      while (s >= 0 && walk_of[static_cast<size_t>(s)] < 0) {
        walk_of[static_cast<size_t>(s)] = static_cast<int>(start);
        s = cluster.switches_[static_cast<size_t>(s)].parent;
      }
      if (s < 0 || walk_of[static_cast<size_t>(s)] != static_cast<int>(start)) continue;
      std::string names = cluster.switches_[static_cast<size_t>(s)].name;
      for (int t = cluster.switches_[static_cast<size_t>(s)].parent; t != s;
           t = cluster.switches_[static_cast<size_t>(t)].parent) {
        names += " -> " + cluster.switches_[static_cast<size_t>(t)].name;
      }
      names += " -> " + cluster.switches_[static_cast<size_t>(s)].name;
      return InvalidArgument(where(source, parent_line[static_cast<size_t>(s)]) +
                             "switches form a cycle: " + names);
    }
    return OkStatus();
  }

  Status check_leaves() const {
    for (size_t i = 0; i < cluster.switches_.size(); ++i) {
      const ClusterSwitch& s = cluster.switches_[i];
      if (s.hosts.empty() || s.children.empty()) continue;
      return InvalidArgument(where(source, decls.switches[i].line) + "switch " + quoted(s.name) +
                             " has both hosts and switches under it; hosts attach to leaf "
                             "switches only (put its hosts under a leaf switch of their own)");
    }
    return OkStatus();
  }

  // After check_cycles: walking up from each leaf ends. Levels are heights.
  void set_levels() {
    for (size_t i = 0; i < cluster.switches_.size(); ++i) {
      if (!cluster.switches_[i].children.empty()) continue;
      int level = 0;
      for (int s = cluster.switches_[i].parent; s >= 0;
           s = cluster.switches_[static_cast<size_t>(s)].parent) {
        ClusterSwitch& up = cluster.switches_[static_cast<size_t>(s)];
        up.level = std::max(up.level, ++level);
        level = up.level;
      }
    }
    for (ClusterSwitch& s : cluster.switches_) {
      std::sort(s.children.begin(), s.children.end());
      std::sort(s.hosts.begin(), s.hosts.end());
    }
  }
};

Status assemble_cluster(const ClusterDecls& decls, const std::string& source, Cluster* out) {
  ClusterAssembler a{decls, source, {}, {}, {}};
  GP_RETURN_IF_ERROR(a.add_switches());
  GP_RETURN_IF_ERROR(a.add_hosts());
  GP_RETURN_IF_ERROR(a.add_parents());
  GP_RETURN_IF_ERROR(a.check_cycles());
  GP_RETURN_IF_ERROR(a.check_leaves());
  a.set_levels();
  *out = std::move(a.cluster);
  return OkStatus();
}

namespace {

int find_host(const Cluster& cluster, const std::string& name) {
  const int exact = cluster.host_index(name);
  return exact >= 0 ? exact : cluster.host_index(short_name(name));
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string out;
  for (int r : ranks) out += (out.empty() ? "" : ",") + std::to_string(r);
  return out;
}

// Two ranks on one host (same id) under different cluster hosts, or on different hosts under
// one cluster host, would make the plans wrong in a way no later check finds.
Status check_identities(const std::vector<RankHost>& ranks, const std::vector<int>& host_of_rank) {
  std::map<std::string, size_t> first_of_id;
  std::map<int, size_t> first_of_host;
  for (size_t r = 0; r < ranks.size(); ++r) {
    if (ranks[r].id.empty()) continue;
    const size_t a = first_of_id.emplace(ranks[r].id, r).first->second;
    const size_t b = first_of_host.emplace(host_of_rank[r], r).first->second;
    if (host_of_rank[a] != host_of_rank[r] ||
        (!ranks[b].id.empty() && ranks[b].id != ranks[r].id)) {
      const size_t other = host_of_rank[a] != host_of_rank[r] ? a : b;
      return InvalidArgument("ranks " + std::to_string(other) + " and " + std::to_string(r) +
                             " call their hosts " + quoted(ranks[other].name) + " and " +
                             quoted(ranks[r].name) + " but their host ids (" + ranks[other].id +
                             ", " + ranks[r].id + ") say " +
                             (other == a ? "they share one" : "they are different hosts") +
                             "; set GRADPACK_HOSTNAME to each host's name in the cluster file");
    }
  }
  return OkStatus();
}

}  // namespace

Status place_ranks(const Cluster& cluster, const std::vector<RankHost>& ranks, RankPlacement* out) {
  RankPlacement p;
  std::map<std::string, std::vector<int>> unknown;  // name -> its ranks
  std::vector<bool> used(cluster.hosts().size(), false);
  for (size_t r = 0; r < ranks.size(); ++r) {
    const int h = find_host(cluster, ranks[r].name);
    p.host_of_rank.push_back(h);
    if (h < 0) {
      unknown[ranks[r].name].push_back(static_cast<int>(r));
    } else {
      used[static_cast<size_t>(h)] = true;
    }
  }
  if (!unknown.empty()) {
    std::string list;
    for (const auto& [name, rs] : unknown) {
      list += (list.empty() ? "" : ", ") + quoted(name) + " (rank" + (rs.size() > 1 ? "s " : " ") +
              rank_list(rs) + ")";
    }
    return InvalidArgument("the cluster file does not know " + std::to_string(unknown.size()) +
                           " host(s) of the ranks: " + list +
                           "; add them to the file, or set GRADPACK_HOSTNAME to the names it uses");
  }
  GP_RETURN_IF_ERROR(check_identities(ranks, p.host_of_rank));
  for (size_t h = 0; h < used.size(); ++h) {
    if (!used[h]) p.idle_hosts.push_back(cluster.hosts()[h].name);
  }
  *out = std::move(p);
  return OkStatus();
}

}  // namespace gradpack::topology
