// SPDX-License-Identifier: Apache-2.0
// GRADPACK_TOPOLOGY=auto: the cluster probe (topology/cluster_probe.h) over the communicator's
// connections, right after the mesh is connected and before any caller's collective.
#include <chrono>
#include <cstdint>
#include <vector>

#include "collectives/communicator.h"
#include "common/log.h"

namespace gradpack::coll {

namespace {
// The probe's messages travel outside any collective, in the same order on both sides.
constexpr uint64_t kProbeTag = 0x70726f6265;  // "probe"
}  // namespace

// The probe's agreements are collectives of the communicator; like the measurements of auto
// (Communicator::Probe), they are not the caller's calls, so the counters stay as they were.
class Communicator::ClusterProbe final : public topology::ClusterProbeTarget {
 public:
  explicit ClusterProbe(Communicator& comm)
      : comm_(comm), collectives_(comm.collectives_), last_algorithm_(comm.last_algorithm_) {}
  ~ClusterProbe() override {
    comm_.collectives_ = collectives_;
    comm_.last_algorithm_ = last_algorithm_;
  }
  ClusterProbe(const ClusterProbe&) = delete;
  ClusterProbe& operator=(const ClusterProbe&) = delete;

  int rank() const override { return comm_.rank_; }
  int nranks() const override { return comm_.nranks_; }
  Status agree_max(double* values, size_t count) override {
    return comm_.run(Collective::kAllReduce, values, values, count, GP_FLOAT64, GP_MAX, 0,
                     Algorithm::kAuto, 0);
  }
  Status timed_exchange(int to, int from, size_t first, size_t rest,
                        double* rest_seconds) override {
    Status st = exchange(to, from, first, rest, rest_seconds);
    if (st.ok()) return st;
    return comm_.fail(Status(st.code(), "cluster probe (GRADPACK_TOPOLOGY=auto): sending to rank " +
                                            std::to_string(to) + ", receiving from rank " +
                                            std::to_string(from) + ": " + st.message()));
  }

 private:
  using Clock = std::chrono::steady_clock;

  Status exchange(int to, int from, size_t first, size_t rest, double* rest_seconds) {
    const Links& links = comm_.links_;
    transport::SendConnection* send = links.send[static_cast<size_t>(to)];
    transport::RecvConnection* recv = links.recv[static_cast<size_t>(from)];
    if (send == nullptr || recv == nullptr) return Internal("no connection to the probed peer");
    if (out_.size() < first + rest) out_.assign(first + rest, 0x5a), in_.resize(first + rest);
    const auto deadline = Clock::now() + comm_.timeout_;
    std::unique_ptr<transport::Request> r0, r1, s0, s1;
    GP_RETURN_IF_ERROR(recv->irecv(in_.data(), first, kProbeTag, nullptr, &r0));
    GP_RETURN_IF_ERROR(recv->irecv(in_.data() + first, rest, kProbeTag, nullptr, &r1));
    GP_RETURN_IF_ERROR(send->isend(out_.data(), first, kProbeTag, nullptr, &s0));
    GP_RETURN_IF_ERROR(send->isend(out_.data() + first, rest, kProbeTag, nullptr, &s1));
    GP_RETURN_IF_ERROR(transport::wait(*r0, deadline));
    const auto landed = Clock::now();
    GP_RETURN_IF_ERROR(transport::wait(*r1, deadline));
    *rest_seconds = std::chrono::duration<double>(Clock::now() - landed).count();
    GP_RETURN_IF_ERROR(transport::wait(*s0, deadline));
    return transport::wait(*s1, deadline);
  }

  Communicator& comm_;
  uint64_t collectives_;
  std::string last_algorithm_;
  std::vector<uint8_t> out_, in_;
};

Status Communicator::discover_cluster(const std::vector<std::string>& host_ids,
                                      const std::vector<std::string>& host_names) {
  if (!probe_cluster_) return OkStatus();
  topology::ProbeReport report;
  {
    ClusterProbe target(*this);
    GP_RETURN_IF_ERROR(
        topology::probe_cluster(target, host_of_rank_, host_names, probe_options_, &report));
  }
  probe_seconds_ = report.seconds;
  cluster_origin_ = report.choice.detail;
  cluster_source_ = report.choice.origin;
  cluster_ = std::move(report.choice.cluster);
  if (cluster_.empty()) return OkStatus();
  // The probed cluster names its hosts itself (numbered where the ranks' names cannot tell the
  // hosts apart); every rank is placed under the name of its host there.
  std::vector<std::string> names(static_cast<size_t>(nranks_));
  for (size_t p = 0; p < names.size(); ++p) {
    names[p] = report.host_names[static_cast<size_t>(host_of_rank_[p])];
  }
  return place_on_cluster(host_ids, names);
}

}  // namespace gradpack::coll
