// SPDX-License-Identifier: Apache-2.0
#include "topology/probe_clustering.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

namespace gradpack::topology {
namespace {

// One flow of one round, its passes merged: the best rate (contention repeats, a stall of the
// machine rarely does) and every pass's rate for the repeat check.
struct MergedFlow {
  int src = 0;
  int dst = 0;
  int round = 0;
  double mbps = 0;
  std::vector<double> passes;
  bool fast = false;
};

// The measured flows in a canonical order (round, src, dst, pass), so that everything computed
// from them is the same whatever order they came in.
std::vector<MergedFlow> merge_passes(int hosts, std::vector<ProbeFlow> flows) {
  std::sort(flows.begin(), flows.end(), [](const ProbeFlow& a, const ProbeFlow& b) {
    return std::tie(a.round, a.src, a.dst, a.pass, a.mbps) <
           std::tie(b.round, b.src, b.dst, b.pass, b.mbps);
  });
  std::vector<MergedFlow> out;
  for (const ProbeFlow& f : flows) {
    const bool valid = f.mbps > 0 && std::isfinite(f.mbps) && f.src != f.dst && f.src >= 0 &&
                       f.dst >= 0 && f.src < hosts && f.dst < hosts;
    if (!valid) continue;
    if (out.empty() || out.back().round != f.round || out.back().src != f.src ||
        out.back().dst != f.dst) {
      out.push_back({f.src, f.dst, f.round, 0, {}, false});
    }
    out.back().mbps = std::max(out.back().mbps, f.mbps);
    out.back().passes.push_back(f.mbps);
  }
  return out;
}

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : std::sqrt(v[n / 2 - 1] * v[n / 2]);
}

double round3(double v) {
  if (!(v > 0)) return 0;
  const double scale = std::pow(10.0, std::floor(std::log10(v)) - 2);
  return std::round(v / scale) * scale;
}

std::string percent(double share) { return std::to_string(std::lround(share * 100)) + "%"; }

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// Otsu's threshold on the log rates: the split of the sorted values with the largest variance
// between the two classes. Returns the threshold (the geometric middle of the gap at the split)
// and the geometric means of both sides; false with fewer than two distinct values.
struct Split {
  double threshold = 0;
  double slow_mean = 0;  // log
  double fast_mean = 0;  // log
};
bool split_rates(const std::vector<MergedFlow>& flows, Split* out) {
  std::vector<double> x;
  for (const MergedFlow& f : flows) x.push_back(std::log(f.mbps));
  std::sort(x.begin(), x.end());
  const size_t n = x.size();
  std::vector<double> prefix(n + 1, 0);
  for (size_t i = 0; i < n; ++i) prefix[i + 1] = prefix[i] + x[i];
  double best = -1;
  for (size_t s = 1; s < n; ++s) {
    if (x[s] <= x[s - 1]) continue;  // a split between equal values separates nothing
    const double m0 = prefix[s] / static_cast<double>(s);
    const double m1 = (prefix[n] - prefix[s]) / static_cast<double>(n - s);
    const double between =
        static_cast<double>(s) * static_cast<double>(n - s) * (m1 - m0) * (m1 - m0);
    if (between > best) {
      best = between;
      *out = {std::exp((x[s - 1] + x[s]) / 2), m0, m1};
    }
  }
  return best >= 0;
}

// The share of flows measured more than once whose every pass falls on the side of the merged
// rate (1 when none was measured twice).
double repeat_share(const std::vector<MergedFlow>& flows, double threshold) {
  int twice = 0, alike = 0;
  for (const MergedFlow& f : flows) {
    if (f.passes.size() < 2) continue;
    ++twice;
    const bool all = std::all_of(f.passes.begin(), f.passes.end(),
                                 [&](double r) { return (r >= threshold) == f.fast; });
    alike += all ? 1 : 0;
  }
  return twice == 0 ? 1.0 : static_cast<double>(alike) / twice;
}

// The evidence between every two hosts: +1 per fast flow, -kSlowWeight per slow one.
using Evidence = std::vector<std::vector<int>>;
Evidence evidence_of(int hosts, const std::vector<MergedFlow>& flows) {
  Evidence e(static_cast<size_t>(hosts), std::vector<int>(static_cast<size_t>(hosts), 0));
  for (const MergedFlow& f : flows) {
    const int w = f.fast ? 1 : -kSlowWeight;
    e[static_cast<size_t>(f.src)][static_cast<size_t>(f.dst)] += w;
    e[static_cast<size_t>(f.dst)][static_cast<size_t>(f.src)] += w;
  }
  return e;
}

using Groups = std::vector<std::vector<int>>;

int link(const Evidence& e, const std::vector<int>& a, const std::vector<int>& b) {
  int sum = 0;
  for (int x : a) {
    for (int y : b) sum += e[static_cast<size_t>(x)][static_cast<size_t>(y)];
  }
  return sum;
}

// Greedy agglomeration: merge the two groups with the most positive evidence between them (the
// first such pair in index order on ties) until no pair has any.
Groups agglomerate(const Evidence& e) {
  Groups g;
  for (size_t h = 0; h < e.size(); ++h) g.push_back({static_cast<int>(h)});
  for (;;) {
    int best = 0;
    size_t bi = 0, bj = 0;
    for (size_t i = 0; i < g.size(); ++i) {
      for (size_t j = i + 1; j < g.size(); ++j) {
        const int l = link(e, g[i], g[j]);
        if (l > best) best = l, bi = i, bj = j;
      }
    }
    if (best <= 0) return g;
    g[bi].insert(g[bi].end(), g[bj].begin(), g[bj].end());
    std::sort(g[bi].begin(), g[bi].end());
    g.erase(g.begin() + static_cast<std::ptrdiff_t>(bj));
  }
}

// Local moves: each host, in index order, goes to the group it has the most evidence with (a
// group of its own when it has none positive), until a sweep moves nothing (at most `hosts`
// sweeps). Returns the rack of every host.
std::vector<int> refine(const Evidence& e, const Groups& groups) {
  const size_t n = e.size();
  std::vector<int> rack(n);
  for (size_t g = 0; g < groups.size(); ++g) {
    for (int h : groups[g]) rack[static_cast<size_t>(h)] = static_cast<int>(g);
  }
  for (size_t sweep = 0; sweep < n; ++sweep) {
    bool moved = false;
    for (size_t h = 0; h < n; ++h) {
      std::map<int, int> with;  // rack -> evidence of h with its other members
      for (size_t o = 0; o < n; ++o) {
        if (o != h) with[rack[o]] += e[h][o];
      }
      int best_rack = rack[h];
      int best = std::max(0, with.count(rack[h]) ? with[rack[h]] : 0);
      for (const auto& [r, v] : with) {
        if (v > best) best = v, best_rack = r;
      }
      if (best == 0 && with.count(rack[h]) && with[rack[h]] < 0)
        best_rack = static_cast<int>(n + h);
      if (best_rack != rack[h]) rack[h] = best_rack, moved = true;
    }
    if (!moved) break;
  }
  return rack;
}

// Racks renumbered 0, 1, ... in order of their lowest host.
int renumber(std::vector<int>* rack) {
  std::map<int, int> id;
  for (int& r : *rack) r = id.emplace(r, static_cast<int>(id.size())).first->second;
  return static_cast<int>(id.size());
}

double agreement_of(const std::vector<MergedFlow>& flows, const std::vector<int>& rack) {
  int agree = 0;
  for (const MergedFlow& f : flows) {
    const bool same = rack[static_cast<size_t>(f.src)] == rack[static_cast<size_t>(f.dst)];
    agree += same == f.fast ? 1 : 0;
  }
  return flows.empty() ? 0 : static_cast<double>(agree) / static_cast<double>(flows.size());
}

void measure_links(const std::vector<MergedFlow>& flows, ProbeFindings* f) {
  std::vector<std::vector<double>> fast_of(static_cast<size_t>(f->hosts));
  std::vector<double> all_fast;
  for (const MergedFlow& m : flows) {
    if (!m.fast) continue;
    fast_of[static_cast<size_t>(m.src)].push_back(m.mbps);
    fast_of[static_cast<size_t>(m.dst)].push_back(m.mbps);
    all_fast.push_back(m.mbps);
  }
  f->link_mbps.assign(static_cast<size_t>(f->hosts), 0);
  for (size_t h = 0; h < fast_of.size(); ++h) {
    f->link_mbps[h] = round3(median(fast_of[h].empty() ? all_fast : fast_of[h]));
  }
}

// A rack's uplink: what crossed it in one direction in one round, in the rounds where it was the
// bottleneck (every flow crossing that way was slow): the median of those sums, robust to a flow
// misjudged by a stall. Without such a round, the most that crossed it in one. Flows come in
// canonical order, so the sums are the same on every rank.
void measure_uplinks(const std::vector<MergedFlow>& flows, ProbeFindings* f) {
  struct Crossing {
    double mbps = 0;
    bool all_slow = true;
  };
  std::map<std::tuple<int, int, bool>, Crossing> sums;  // (rack, round, outwards)
  for (const MergedFlow& m : flows) {
    const int a = f->rack_of_host[static_cast<size_t>(m.src)];
    const int b = f->rack_of_host[static_cast<size_t>(m.dst)];
    if (a == b) continue;
    for (const auto& key :
         {std::make_tuple(a, m.round, true), std::make_tuple(b, m.round, false)}) {
      Crossing& c = sums[key];
      c.mbps += m.mbps;
      c.all_slow = c.all_slow && !m.fast;
    }
  }
  std::vector<std::vector<double>> bottleneck(static_cast<size_t>(f->racks));
  std::vector<double> most(static_cast<size_t>(f->racks), 0);
  for (const auto& [key, c] : sums) {
    const auto r = static_cast<size_t>(std::get<0>(key));
    if (c.all_slow) bottleneck[r].push_back(c.mbps);
    most[r] = std::max(most[r], c.mbps);
  }
  f->uplink_mbps.assign(static_cast<size_t>(f->racks), 0);
  for (size_t r = 0; r < most.size(); ++r) {
    f->uplink_mbps[r] = round3(bottleneck[r].empty() ? most[r] : median(bottleneck[r]));
  }
}

std::string rack_sizes(const ProbeFindings& f) {
  std::vector<int> size(static_cast<size_t>(f.racks), 0);
  for (int r : f.rack_of_host) ++size[static_cast<size_t>(r)];
  std::string s;
  for (int n : size) s += (s.empty() ? "" : "+") + std::to_string(n);
  return s;
}

std::string evidence_text(const ProbeFindings& f) {
  return "rates split at " + fixed(f.separation, 1) + "x (fast " + fixed(f.fast_mbps, 0) +
         " Mbit/s, slow " + fixed(f.slow_mbps, 0) + " Mbit/s), " + percent(f.repeat) +
         " repeated, " + percent(f.agreement) + " of " + std::to_string(f.flows) + " flows agree";
}

// Flat, saying why.
ProbeFindings flat(ProbeFindings f, const std::string& why) {
  f.racks = 1;
  f.rack_of_host.assign(static_cast<size_t>(f.hosts), 0);
  f.uplink_mbps.clear();
  f.summary = "flat: " + why;
  return f;
}

// Classifies every flow (steps 1 of the header); false (and *why) when the rates show no split.
bool classify(std::vector<MergedFlow>* flows, ProbeFindings* f, std::string* why) {
  Split split;
  if (flows->size() < 4 || !split_rates(*flows, &split)) {
    *why = std::to_string(flows->size()) + " flows measured, too few to split";
    return false;
  }
  std::vector<double> fast, slow;
  for (MergedFlow& m : *flows) {
    m.fast = m.mbps >= split.threshold;
    (m.fast ? fast : slow).push_back(m.mbps);
  }
  f->fast_mbps = round3(median(fast));
  f->slow_mbps = round3(median(slow));
  f->separation = std::exp(split.fast_mean - split.slow_mean);
  f->repeat = repeat_share(*flows, split.threshold);
  if (f->separation < kMinSeparation) {
    *why = "the rates of " + std::to_string(f->flows) + " flows split only " +
           fixed(f->separation, 2) + "x apart (fast " + fixed(f->fast_mbps, 0) + ", slow " +
           fixed(f->slow_mbps, 0) + " Mbit/s; racks need " + fixed(kMinSeparation, 1) + "x)";
    return false;
  }
  if (f->repeat < kMinRepeat) {
    *why = "the split did not repeat: " + percent(f->repeat) +
           " of the flows fell on the same side in every pass (racks need " + percent(kMinRepeat) +
           ")";
    return false;
  }
  return true;
}

}  // namespace

ProbeFindings find_racks(int hosts, std::vector<ProbeFlow> flows) {
  ProbeFindings f;
  f.hosts = std::max(0, hosts);
  std::vector<MergedFlow> merged = merge_passes(f.hosts, std::move(flows));
  f.flows = static_cast<int>(merged.size());
  std::string why;
  if (!classify(&merged, &f, &why)) return flat(f, why);
  measure_links(merged, &f);
  const Evidence e = evidence_of(f.hosts, merged);
  f.rack_of_host = refine(e, agglomerate(e));
  f.racks = renumber(&f.rack_of_host);
  f.agreement = agreement_of(merged, f.rack_of_host);
  if (f.racks < 2) return flat(f, "every host is in one group; " + evidence_text(f));
  if (f.racks == f.hosts) return flat(f, "no two hosts share a switch; " + evidence_text(f));
  if (f.agreement < kMinAgreement) {
    return flat(f, std::to_string(f.racks) + " racks would explain only " + percent(f.agreement) +
                       " of the flows (racks need " + percent(kMinAgreement) + ")");
  }
  measure_uplinks(merged, &f);
  f.summary =
      std::to_string(f.racks) + " racks of " + rack_sizes(f) + " hosts; " + evidence_text(f);
  return f;
}

Status cluster_from_findings(const ProbeFindings& findings, const std::vector<std::string>& names,
                             Cluster* out) {
  if (names.size() != static_cast<size_t>(findings.hosts)) {
    return InvalidArgument("the probe found " + std::to_string(findings.hosts) + " hosts, named " +
                           std::to_string(names.size()));
  }
  if (findings.racks < 2) {
    *out = Cluster();
    return OkStatus();
  }
  ClusterDecls d;
  d.switches.push_back({"core", 0, {}});
  for (int r = 0; r < findings.racks; ++r) {
    const std::string name = "rack" + std::to_string(r);
    d.switches.push_back({name, 0, {findings.uplink_mbps[static_cast<size_t>(r)], 0}});
    d.parents.push_back({name, "core", 0, {}});
  }
  for (size_t h = 0; h < names.size(); ++h) {
    d.hosts.push_back({names[h],
                       "rack" + std::to_string(findings.rack_of_host[h]),
                       0,
                       {findings.link_mbps[h], 0}});
  }
  return assemble_cluster(d, "the cluster probe", out);
}

}  // namespace gradpack::topology
