// SPDX-License-Identifier: Apache-2.0
#include "topology/cluster_probe.h"

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <set>

#include "common/log.h"
#include "topology/host.h"

namespace gradpack::topology {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

std::string fixed(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

// One run of the probe on one rank, step by step: measure (the rounds), agree, decide.
class ProbeRun {
 public:
  ProbeRun(ClusterProbeTarget& target, const HostGroups& groups, const ProbeOptions& options)
      : target_(target),
        groups_(groups),
        options_(options),
        hosts_(static_cast<int>(groups.leaders.size())),
        shifts_(probe_shifts(hosts_, options.max_rounds)),
        flows_(static_cast<size_t>(kProbePasses * hosts_) * shifts_.size()),
        // every flow's rate, then every flow's whole seconds, then the late flag and the time
        values_(2 * flows_ + 2, 0.0) {}

  // Runs the rounds until all are done or a rank is past the budget, after a round of shift 1 that
  // is not counted: the first exchanges of this size on fresh connections are slower than the
  // network (measured on the vcluster: 2-5x, while TCP's windows grow).
  Status measure() {
    const auto t0 = Clock::now();
    double late = 0;
    GP_RETURN_IF_ERROR(target_.agree_max(&late, 1));
    if (groups_.me_leader >= 0) {
      ClusterProbeTarget::Timing ignored;
      GP_RETURN_IF_ERROR(target_.timed_exchange(peer(1), peer(-1), options_.bytes / 2,
                                                options_.bytes - options_.bytes / 2, &ignored));
    }
    for (int pass = 0; pass < kProbePasses; ++pass) {
      for (size_t k = 0; k < shifts_.size(); ++k) {
        double flag = late;  // also starts the round on every rank at once
        GP_RETURN_IF_ERROR(target_.agree_max(&flag, 1));
        if (flag > 0) return finish(t0, 1);
        if (groups_.me_leader >= 0) GP_RETURN_IF_ERROR(exchange(pass, k));
        ++rounds_;
        if (Clock::now() - t0 > options_.budget) late = 1;
      }
    }
    return finish(t0, late);
  }

  // Every rank's measurements, the late flag and the slowest rank's time, on every rank.
  Status agree() {
    if (options_.test_rates) {
      std::vector<double> measured(values_.begin(), values_.end() - 2);
      options_.test_rates(target_.rank(), &measured);
      if (measured.size() == 2 * flows_) {
        std::copy(measured.begin(), measured.end(), values_.begin());
      }
    }
    return target_.agree_max(values_.data(), values_.size());
  }

  bool timed_out() const { return values_[values_.size() - 2] > 0; }
  double seconds() const { return values_.back(); }
  int rounds() const { return rounds_; }
  int total_rounds() const { return kProbePasses * static_cast<int>(shifts_.size()); }

  std::vector<ProbeFlow> flows() const {
    std::vector<ProbeFlow> out;
    const size_t k_count = shifts_.size();
    for (int pass = 0; pass < kProbePasses; ++pass) {
      for (size_t k = 0; k < k_count; ++k) {
        for (int h = 0; h < hosts_; ++h) {
          const int src = (h - shifts_[k] % hosts_ + hosts_) % hosts_;
          const size_t i = index(pass, h, k);
          out.push_back({src, h, static_cast<int>(k), pass, values_[i],
                         static_cast<double>(options_.bytes) * 8 / 1e6, values_[flows_ + i]});
        }
      }
    }
    return out;
  }

 private:
  size_t index(int pass, int host, size_t k) const {
    return (static_cast<size_t>(pass * hosts_ + host)) * shifts_.size() + k;
  }

  // The leader of the host `shift` hosts after this rank's.
  int peer(int shift) const {
    const int h = (groups_.me_leader + shift % hosts_ + hosts_) % hosts_;
    return groups_.leaders[static_cast<size_t>(h)];
  }

  // A flow's rate: its second half over the time it took, but never over less than half the
  // whole flow's time. Shorter means this rank saw the first half land late (a stall, or both
  // halves read from the socket at once), and the rate would be the stall's, not the network's.
  Status exchange(int pass, size_t k) {
    const size_t first = options_.bytes / 2;
    const size_t rest = options_.bytes - first;
    ClusterProbeTarget::Timing t;
    GP_RETURN_IF_ERROR(
        target_.timed_exchange(peer(shifts_[k]), peer(-shifts_[k]), first, rest, &t));
    const double rest_s = std::max({t.rest_s, t.whole_s / 2, 1e-9});
    const size_t i = index(pass, groups_.me_leader, k);
    values_[i] = static_cast<double>(rest) * 8 / 1e6 / rest_s;
    values_[flows_ + i] = t.whole_s;
    return OkStatus();
  }

  Status finish(Clock::time_point t0, double late) {
    values_[values_.size() - 2] = late;
    values_.back() = seconds_since(t0);
    return OkStatus();
  }

  ClusterProbeTarget& target_;
  const HostGroups& groups_;
  const ProbeOptions& options_;
  const int hosts_;
  const std::vector<int> shifts_;
  const size_t flows_;
  std::vector<double> values_;
  int rounds_ = 0;
};

std::string racks_text(const ProbeFindings& f, const std::vector<std::string>& names) {
  std::string s;
  for (int r = 0; r < f.racks; ++r) {
    s += (r ? "; rack" : "rack") + std::to_string(r) + ":";
    for (int h = 0; h < f.hosts; ++h) {
      if (f.rack_of_host[static_cast<size_t>(h)] == r) s += " " + names[static_cast<size_t>(h)];
    }
    s += " (uplink " + fixed(f.uplink_mbps[static_cast<size_t>(r)], 0) + " Mbit/s)";
  }
  return s;
}

// Every agreed flow at debug level, one line per round: "src>dst rate/whole-seconds".
void log_flows(const std::vector<ProbeFlow>& flows) {
  if (!log::enabled(LogLevel::kDebug, Subsys::kTopo)) return;
  std::string line;
  for (size_t i = 0; i < flows.size(); ++i) {
    const ProbeFlow& f = flows[i];
    char buf[96];
    std::snprintf(buf, sizeof(buf), " %d>%d %.0f/%.1fms", f.src, f.dst, f.mbps, f.whole_s * 1e3);
    line += buf;
    if (i + 1 == flows.size() || flows[i + 1].round != f.round || flows[i + 1].pass != f.pass) {
      GP_LOG_DEBUG(kTopo, "cluster probe, pass %d round %d (Mbit/s / whole flow):%s", f.pass,
                   f.round, line.c_str());
      line.clear();
    }
  }
}

// The choice of a finished run, logged on rank 0.
void decide(const ProbeRun& run, int rank, const ProbeOptions& options, ProbeReport* r) {
  r->seconds = run.seconds();
  r->rounds = run.rounds();
  r->timed_out = run.timed_out();
  const std::string head = "GRADPACK_TOPOLOGY=auto: ";
  const int hosts = static_cast<int>(r->host_names.size());
  if (r->timed_out) {
    r->choice.detail = head + "the cluster probe ran past its budget of " +
                       std::to_string(options.budget.count()) +
                       " ms (GRADPACK_TOPOLOGY_PROBE_MS) after " + std::to_string(r->rounds) +
                       " of " + std::to_string(run.total_rounds()) + " rounds; flat";
    if (rank == 0) GP_LOG_WARN(kTopo, "%s", r->choice.detail.c_str());
    return;
  }
  const std::vector<ProbeFlow> flows = run.flows();
  if (rank == 0) log_flows(flows);
  r->findings = find_racks(hosts, flows);
  const std::string probed = head + "probed " + std::to_string(hosts) + " hosts in " +
                             fixed(r->seconds, 2) + " s (" + std::to_string(r->rounds) +
                             " rounds of " + std::to_string(options.bytes >> 10) + " KiB): ";
  r->choice.detail = probed + r->findings.summary;
  if (r->findings.racks >= 2) {
    Status st = cluster_from_findings(r->findings, r->host_names, &r->choice.cluster);
    if (st.ok()) r->choice.origin = ClusterChoice::Origin::kProbe;
    if (!st.ok()) r->choice.detail = probed + "flat: " + st.message();
  }
  if (rank == 0) {
    GP_LOG_INFO(kTopo, "%s%s%s", r->choice.detail.c_str(),
                r->choice.origin == ClusterChoice::Origin::kProbe ? "; " : "",
                r->choice.origin == ClusterChoice::Origin::kProbe
                    ? racks_text(r->findings, r->host_names).c_str()
                    : "");
  }
}

}  // namespace

ProbeOptions probe_options(const Settings& settings) {
  ProbeOptions o;
  o.bytes = static_cast<size_t>(settings.get_int(SettingId::kTopologyProbeBytes));
  o.budget = std::chrono::milliseconds(settings.get_int(SettingId::kTopologyProbeMs));
  o.max_rounds = static_cast<int>(settings.get_int(SettingId::kTopologyProbeRounds));
  return o;
}

std::vector<int> probe_shifts(int hosts, int max_rounds) {
  std::vector<int> shifts;
  const int all = hosts - 1;
  const int k = std::clamp(max_rounds, 1, std::max(all, 1));
  if (all < 1) return shifts;
  if (k >= all) {
    for (int d = 1; d <= all; ++d) shifts.push_back(d);
    return shifts;
  }
  // Half the shifts small and consecutive: hosts close in rank order (a rack of a block placement)
  // and hosts a small period apart (a rack of an interleaved one) meet directly, so every rack is
  // joined by fast flows. The rest spread over the larger shifts.
  const int small = (k + 1) / 2;
  for (int d = 1; d <= small; ++d) shifts.push_back(d);
  const int rest = k - small;
  const int span = all - small;  // > rest, so the spread shifts are distinct
  for (int i = 0; i < rest; ++i) shifts.push_back(small + 1 + i * span / rest);
  return shifts;
}

std::vector<std::string> probe_host_names(const std::vector<int>& host_of_rank,
                                          const std::vector<std::string>& rank_names) {
  const int hosts = host_count(host_of_rank);
  std::vector<std::string> names(static_cast<size_t>(hosts));
  bool usable = rank_names.size() == host_of_rank.size();
  for (size_t r = 0; usable && r < host_of_rank.size(); ++r) {
    std::string& name = names[static_cast<size_t>(host_of_rank[r])];
    if (name.empty()) name = rank_names[r];
    usable = name == rank_names[r] && is_plain_name(name);
  }
  const std::set<std::string> distinct(names.begin(), names.end());
  if (usable && distinct.size() == names.size()) return names;
  for (int h = 0; h < hosts; ++h) names[static_cast<size_t>(h)] = "host" + std::to_string(h);
  return names;
}

Status probe_cluster(ClusterProbeTarget& target, const std::vector<int>& host_of_rank,
                     const std::vector<std::string>& rank_names, const ProbeOptions& options,
                     ProbeReport* out) {
  ProbeReport r;
  const HostGroups groups = host_groups(host_of_rank, target.nranks(), target.rank());
  r.host_names = probe_host_names(host_of_rank, rank_names);
  const int hosts = static_cast<int>(groups.leaders.size());
  if (hosts < kMinProbeHosts) {
    r.choice.detail = "GRADPACK_TOPOLOGY=auto: " + std::to_string(hosts) +
                      " host(s), the cluster probe needs at least " +
                      std::to_string(kMinProbeHosts) + "; flat";
    *out = std::move(r);
    return OkStatus();
  }
  ProbeRun run(target, groups, options);
  GP_RETURN_IF_ERROR(run.measure());
  GP_RETURN_IF_ERROR(run.agree());
  decide(run, target.rank(), options, &r);
  *out = std::move(r);
  return OkStatus();
}

}  // namespace gradpack::topology
