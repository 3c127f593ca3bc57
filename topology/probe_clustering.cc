// SPDX-License-Identifier: Apache-2.0
#include "topology/probe_clustering.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <map>
#include <tuple>

namespace gradpack::topology {
namespace {

constexpr double kOutlierShare = 0.1;
constexpr int kOutlierRounds = 2;

// One flow of one round, its passes merged, each figure the best pass's (contention repeats, a
// stall of the machine rarely does). It is classified by its `speed`: the whole flow's rate where
// its time is known, which carries the contention of the whole flow (a flow that got an unfair
// share early ends its timed half fast, but not its whole); its timed rate (`mbps`, which a
// shaper's burst, drained by the first half, does not inflate) is what it reports.
struct MergedFlow {
  int src = 0;
  int dst = 0;
  int round = 0;
  double speed = 0;
  std::vector<double> passes;  // every pass's speed, for the repeat check
  bool fast = false;
  double mbps = 0;
  double megabits = 0;
  double whole_s = 0;
};

double speed_of(const ProbeFlow& f) {
  return f.whole_s > 0 && f.megabits > 0 ? f.megabits / f.whole_s : f.mbps;
}

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
      out.push_back({f.src, f.dst, f.round, 0, {}, false, 0, f.megabits, 0});
    }
    MergedFlow& m = out.back();
    m.speed = std::max(m.speed, speed_of(f));
    m.passes.push_back(speed_of(f));
    m.mbps = std::max(m.mbps, f.mbps);
    if (f.whole_s > 0) m.whole_s = m.whole_s > 0 ? std::min(m.whole_s, f.whole_s) : f.whole_s;
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
  x.reserve(flows.size());
  for (const MergedFlow& f : flows) x.push_back(std::log(f.speed));
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

// The share of flows the racks explain: fast inside a rack, slow across racks, or fast across
// racks where, on each uplink it crossed, it was the round's only flow that way (an uplink as fast
// as the host links carries one flow at their rate) or another flow that way was slow (flows that
// share an uplink rarely share it evenly over a short flow: one may end fast). *direct: the share
// without that last kind, which another grouping may explain as well (four hosts in two blocks
// with B = U).
double agreement_of(const std::vector<MergedFlow>& flows, const std::vector<int>& rack,
                    double* direct) {
  struct Uplink {
    int flows = 0;
    int slow = 0;
  };
  std::map<std::tuple<int, int, bool>, Uplink> crossing;  // (rack, round, outwards)
  auto rack_of = [&](int host) { return rack[static_cast<size_t>(host)]; };
  auto ways = [&](const MergedFlow& f) {
    return std::array<std::tuple<int, int, bool>, 2>{
        std::make_tuple(rack_of(f.src), f.round, true),
        std::make_tuple(rack_of(f.dst), f.round, false)};
  };
  for (const MergedFlow& f : flows) {
    if (rack_of(f.src) == rack_of(f.dst)) continue;
    for (const auto& way : ways(f)) ++crossing[way].flows, crossing[way].slow += f.fast ? 0 : 1;
  }
  int agree = 0, explained_fast = 0;
  for (const MergedFlow& f : flows) {
    const bool same = rack_of(f.src) == rack_of(f.dst);
    agree += same == f.fast ? 1 : 0;
    if (same || !f.fast) continue;
    bool explained = true;
    for (const auto& way : ways(f)) explained &= crossing[way].flows == 1 || crossing[way].slow > 0;
    explained_fast += explained ? 1 : 0;
  }
  const double n = std::max<double>(1, static_cast<double>(flows.size()));
  *direct = agree / n;
  return (agree + explained_fast) / n;
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

// What crossed one rack's uplink one way in one round.
struct Crossing {
  int flows = 0;
  double sum_mbps = 0;   // of the flows' own rates
  double megabits = 0;   // of the whole flows
  double longest_s = 0;  // the longest whole flow; 0 if any is unknown
  bool all_slow = true;
};

// A rack's uplink (see ProbeFindings::uplink_mbps). Flows come in canonical order, so the sums
// are the same on every rank.
void measure_uplinks(const std::vector<MergedFlow>& flows, ProbeFindings* f) {
  std::map<std::tuple<int, int, bool>, Crossing> crossings;  // (rack, round, outwards)
  for (const MergedFlow& m : flows) {
    const int a = f->rack_of_host[static_cast<size_t>(m.src)];
    const int b = f->rack_of_host[static_cast<size_t>(m.dst)];
    if (a == b) continue;
    for (const auto& key :
         {std::make_tuple(a, m.round, true), std::make_tuple(b, m.round, false)}) {
      Crossing& c = crossings[key];
      const bool timed = m.whole_s > 0 && m.megabits > 0 && (c.flows == 0 || c.longest_s > 0);
      c.longest_s = timed ? std::max(c.longest_s, m.whole_s) : 0;
      ++c.flows;
      c.sum_mbps += m.mbps;
      c.megabits += m.megabits;
      c.all_slow = c.all_slow && !m.fast;
    }
  }
  f->uplink_mbps.assign(static_cast<size_t>(f->racks), 0);
  for (int r = 0; r < f->racks; ++r) {
    int most_flows = 0;
    double most_mbps = 0;
    for (const auto& [key, c] : crossings) {
      if (std::get<0>(key) != r) continue;
      most_mbps = std::max(most_mbps, c.sum_mbps);
      if (c.all_slow && c.longest_s > 0) most_flows = std::max(most_flows, c.flows);
    }
    std::vector<double> bottleneck;
    for (const auto& [key, c] : crossings) {
      if (std::get<0>(key) == r && c.all_slow && c.longest_s > 0 && c.flows == most_flows) {
        bottleneck.push_back(c.megabits / c.longest_s);
      }
    }
    f->uplink_mbps[static_cast<size_t>(r)] =
        round3(bottleneck.empty() ? most_mbps : median(bottleneck));
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
  const std::string outliers =
      f.outliers > 0 ? " (" + std::to_string(f.outliers) + " outliers set aside)" : "";
  return "rates split at " + fixed(f.separation, 1) + "x (fast " + fixed(f.fast_mbps, 0) +
         " Mbit/s, slow " + fixed(f.slow_mbps, 0) + " Mbit/s), " + percent(f.repeat) +
         " repeated, " + percent(f.agreement) + " of " + std::to_string(f.flows - f.outliers) +
         " flows agree (" + percent(f.direct_agreement) + " directly)" + outliers;
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
// The split of the rates, after setting aside outliers: a class of fewer than kOutlierShare of the
// flows (at least 2) is a few flows a stall made far faster or slower than the rest, not a kind of
// path, and would otherwise take the split for itself. At most kOutlierRounds times.
bool split_without_outliers(std::vector<MergedFlow>* flows, ProbeFindings* f, Split* split) {
  for (int round = 0;; ++round) {
    if (flows->size() < 4 || !split_rates(*flows, split)) return false;
    size_t fast = 0;
    for (const MergedFlow& m : *flows) fast += m.speed >= split->threshold ? 1 : 0;
    const size_t smaller = std::min(fast, flows->size() - fast);
    const auto least = std::max<size_t>(2, static_cast<size_t>(kOutlierShare * flows->size()));
    if (smaller >= least || round == kOutlierRounds) return true;
    const bool drop_fast = fast == smaller;
    const size_t before = flows->size();
    flows->erase(std::remove_if(flows->begin(), flows->end(),
                                [&](const MergedFlow& m) {
                                  return (m.speed >= split->threshold) == drop_fast;
                                }),
                 flows->end());
    f->outliers += static_cast<int>(before - flows->size());
  }
}

bool classify(std::vector<MergedFlow>* flows, ProbeFindings* f, std::string* why) {
  Split split;
  if (!split_without_outliers(flows, f, &split)) {
    *why = std::to_string(flows->size()) + " flows measured, too few to split";
    return false;
  }
  std::vector<double> fast, slow;
  for (MergedFlow& m : *flows) {
    m.fast = m.speed >= split.threshold;
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
  f.agreement = agreement_of(merged, f.rack_of_host, &f.direct_agreement);
  if (f.racks < 2) return flat(f, "every host is in one group; " + evidence_text(f));
  if (f.racks == f.hosts) return flat(f, "no two hosts share a switch; " + evidence_text(f));
  if (f.agreement < kMinAgreement || f.direct_agreement < kMinDirectAgreement) {
    return flat(f, std::to_string(f.racks) + " racks would explain only " + percent(f.agreement) +
                       " of the flows, " + percent(f.direct_agreement) + " directly (racks need " +
                       percent(kMinAgreement) + " and " + percent(kMinDirectAgreement) + ")");
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
