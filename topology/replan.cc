// SPDX-License-Identifier: Apache-2.0
#include "topology/replan.h"

#include <algorithm>
#include <cstdio>

namespace gradpack::topology {
namespace {

double median_of_known(const std::vector<double>& v) {
  std::vector<double> known;
  for (double x : v) {
    if (x > 0) known.push_back(x);
  }
  if (known.empty()) return 0;
  std::sort(known.begin(), known.end());
  return known[known.size() / 2];
}

// Unknown estimates take the median: a link nobody measured is assumed ordinary.
std::vector<double> filled(const std::vector<double>& link) {
  const double median = median_of_known(link);
  std::vector<double> out = link;
  for (double& x : out) {
    if (x <= 0) x = median > 0 ? median : 1;
  }
  return out;
}

bool contains(const std::vector<int>& v, int x) {
  return std::find(v.begin(), v.end(), x) != v.end();
}

std::string mbit(double Bps) {
  char text[32];
  std::snprintf(text, sizeof(text), "%.0f Mbit/s", Bps * 8 / 1e6);
  return text;
}

}  // namespace

std::vector<double> rank_link_estimates(const LinkRates& rates, const std::vector<int>& leaves) {
  std::vector<double> out(static_cast<size_t>(rates.nranks), 0.0);
  for (int r = 0; r < rates.nranks; ++r) {
    const bool leaf = contains(leaves, r);
    double e = 0;
    for (int q = 0; q < rates.nranks; ++q) {
      for (double m : {rates.at(r, q), rates.at(q, r)}) {
        if (m <= 0) continue;
        e = e == 0 ? m : leaf ? std::min(e, m) : std::max(e, m);
      }
    }
    out[static_cast<size_t>(r)] = e;
  }
  return out;
}

std::vector<int> partners_of(const std::vector<int>& leaves, const std::vector<int>& order,
                             const std::vector<int>& leaf_switch) {
  const size_t n = order.size();
  if (n < 2 * leaves.size() + 1) return {};  // a partner each, and a ring
  std::vector<int> partners;
  for (int leaf : leaves) {
    const size_t at =
        static_cast<size_t>(std::find(order.begin(), order.end(), leaf) - order.begin());
    int near = -1;
    int same_switch = -1;
    for (size_t k = 1; k < n && same_switch < 0; ++k) {
      const int r = order[(at + k) % n];
      if (contains(leaves, r) || contains(partners, r)) continue;  // one leaf per partner
      if (near < 0) near = r;
      if (leaf_switch.empty() ||
          leaf_switch[static_cast<size_t>(r)] == leaf_switch[static_cast<size_t>(leaf)]) {
        same_switch = r;
      }
    }
    if (near < 0) return {};
    partners.push_back(same_switch >= 0 ? same_switch : near);
  }
  return partners;
}

double predict_leaf_plan(const std::vector<double>& link, const std::vector<int>& leaves,
                         const std::vector<int>& partners, int pieces) {
  const std::vector<double> rate = filled(link);
  const int p = static_cast<int>(rate.size());
  const int ring = p - static_cast<int>(leaves.size());
  if (ring < 1) return 0;
  const double ring_share = ring > 1 ? 2.0 * (ring - 1) / ring : 0.0;
  // Each link's load in buffers per direction: a ring member's ring share, plus one buffer each
  // way per leaf it partners; a leaf's one buffer, plus the one piece its pipeline cannot overlap.
  std::vector<double> load(static_cast<size_t>(p), ring_share);
  for (size_t i = 0; i < leaves.size(); ++i) {
    load[static_cast<size_t>(leaves[i])] = 1.0 + 1.0 / std::max(1, pieces);
    load[static_cast<size_t>(partners[i])] += 1.0;
  }
  double worst = 0;
  for (int r = 0; r < p; ++r)
    worst = std::max(worst, load[static_cast<size_t>(r)] / rate[static_cast<size_t>(r)]);
  return worst;
}

ReplanChoice choose_leaves(const ReplanInput& in) {
  ReplanChoice out;
  const std::vector<double> link = rank_link_estimates(in.rates, in.leaves);
  const double median = median_of_known(link);
  std::vector<int> candidates;
  for (int r = 0; r < in.rates.nranks; ++r) {
    const double e = link[static_cast<size_t>(r)];
    if (e > 0 && median > 0 && e * kSlowFactor < median) candidates.push_back(r);
  }
  const std::vector<int> current_partners = partners_of(in.leaves, in.order, in.leaf_switch);
  out.current_s = predict_leaf_plan(link, in.leaves, current_partners, in.pieces);
  std::vector<int> partners = partners_of(candidates, in.order, in.leaf_switch);
  if (partners.size() != candidates.size()) candidates.clear(), partners.clear();
  double best = predict_leaf_plan(link, candidates, partners, in.pieces);
  // No leaves at all is always a candidate (a link came back).
  const double none = predict_leaf_plan(link, {}, {}, in.pieces);
  if (!candidates.empty() && none <= best) candidates.clear(), partners.clear(), best = none;
  if (candidates.empty()) best = none;
  out.leaves = candidates;
  out.partners = partners;
  out.best_s = best;
  out.rebuild = candidates != in.leaves && best <= kReplanGain * out.current_s;
  if (!out.rebuild) {
    out.leaves = in.leaves;
    out.partners = current_partners;
    out.best_s = out.current_s;
  }
  out.why = "median link " + mbit(median);
  for (int r : candidates) {
    out.why += ", rank " + std::to_string(r) + " at " + mbit(link[static_cast<size_t>(r)]);
  }
  char text[160];
  std::snprintf(text, sizeof(text), "; predicted %.3g s/GB now, %.3g s/GB with %zu leaves",
                out.current_s * 1e9, best * 1e9, candidates.size());
  out.why += text;
  return out;
}

}  // namespace gradpack::topology
