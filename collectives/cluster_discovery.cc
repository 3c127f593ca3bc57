// SPDX-License-Identifier: Apache-2.0
// GRADPACK_TOPOLOGY=auto: the cluster probe (topology/cluster_probe.h) over the communicator's
// connections, right after the mesh is connected and before any caller's collective.
#include <chrono>
#include <cstdint>
#include <memory>
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
  explicit ClusterProbe(Communicator& comm) : comm_(comm), uncounted_(comm) {}
  ClusterProbe(const ClusterProbe&) = delete;
  ClusterProbe& operator=(const ClusterProbe&) = delete;

  int rank() const override { return comm_.rank_; }
  int nranks() const override { return comm_.nranks_; }
  Status agree_max(double* values, size_t count) override {
    return comm_.run(Collective::kAllReduce, values, values, count, GP_FLOAT64, GP_MAX, 0,
                     Algorithm::kAuto, 0);
  }
  Status timed_exchange(int to, int from, size_t first, size_t rest, Timing* out) override {
    Status st = exchange(to, from, first, rest, out);
    if (st.ok()) return st;
    return comm_.fail(Status(st.code(), "cluster probe (GRADPACK_TOPOLOGY=auto): sending to rank " +
                                            std::to_string(to) + ", receiving from rank " +
                                            std::to_string(from) + ": " + st.message()));
  }

 private:
  using Clock = std::chrono::steady_clock;
  using Request = std::unique_ptr<transport::Request>;

  // One request and when this rank first saw it done.
  struct Pending {
    Request request;
    bool done = false;
    Clock::time_point at;
  };

  // The receiver says when it is ready ("clear to send", an empty message to its `from`), so no
  // byte can wait in a socket buffer while it is still in the round's agreement and then land all
  // at once. Every request is polled together, so each completion is timed when it happens.
  // Posting order matters when `to` == `from` (shift H/2): the peer's clear-to-send comes before
  // its data on that connection, so it is received first.
  Status exchange(int to, int from, size_t first, size_t rest, Timing* out) {
    const Links& links = comm_.links_;
    transport::SendConnection* send_to = links.send[static_cast<size_t>(to)];
    transport::SendConnection* send_from = links.send[static_cast<size_t>(from)];
    transport::RecvConnection* recv_to = links.recv[static_cast<size_t>(to)];
    transport::RecvConnection* recv_from = links.recv[static_cast<size_t>(from)];
    if (!send_to || !send_from || !recv_to || !recv_from) return Internal("no probe connection");
    if (out_.size() < first + rest) out_.assign(first + rest, 0x5a), in_.resize(first + rest);
    Pending clear, half0, half1, told, sent0, sent1;
    const auto start = Clock::now();
    GP_RETURN_IF_ERROR(recv_to->irecv(nullptr, 0, kProbeTag, nullptr, &clear.request));
    GP_RETURN_IF_ERROR(recv_from->irecv(in_.data(), first, kProbeTag, nullptr, &half0.request));
    GP_RETURN_IF_ERROR(
        recv_from->irecv(in_.data() + first, rest, kProbeTag, nullptr, &half1.request));
    GP_RETURN_IF_ERROR(send_from->isend(nullptr, 0, kProbeTag, nullptr, &told.request));
    std::vector<Pending*> pending = {&clear, &half0, &half1, &told};
    auto cleared = [&]() -> Status {
      GP_RETURN_IF_ERROR(send_to->isend(out_.data(), first, kProbeTag, nullptr, &sent0.request));
      GP_RETURN_IF_ERROR(
          send_to->isend(out_.data() + first, rest, kProbeTag, nullptr, &sent1.request));
      pending.push_back(&sent0);
      pending.push_back(&sent1);
      return OkStatus();
    };
    GP_RETURN_IF_ERROR(poll(&pending, &clear, cleared));
    out->rest_s = std::chrono::duration<double>(half1.at - half0.at).count();
    out->whole_s = std::chrono::duration<double>(half1.at - start).count();
    return OkStatus();
  }

  // Tests every pending request until all are done, noting when each was; once `trigger` is
  // done, calls `on_trigger` (which may add requests). Sleeps on the transport's progress epoch
  // between sweeps that found nothing new; kTimeout past the communicator's timeout.
  template <typename OnTrigger>
  Status poll(std::vector<Pending*>* pending, Pending* trigger, OnTrigger&& on_trigger) {
    const Links& links = comm_.links_;
    const auto deadline = Clock::now() + comm_.timeout_;
    for (;;) {
      const uint64_t epoch = links.transport->progress_epoch(links.dev);
      bool progressed = false, all = true;
      for (size_t i = 0; i < pending->size(); ++i) {
        Pending* p = (*pending)[i];
        if (p->done) continue;
        size_t bytes = 0;
        GP_RETURN_IF_ERROR(p->request->test(&p->done, &bytes));
        if (!p->done) {
          all = false;
          continue;
        }
        p->at = Clock::now();
        progressed = true;
        if (p == trigger) {
          GP_RETURN_IF_ERROR(on_trigger());
          all = false;  // what it added is not done yet
        }
      }
      if (all) return OkStatus();
      const auto now = Clock::now();
      if (now >= deadline) return Status(Code::kTimeout, "a probe message did not arrive in time");
      if (!progressed) {
        links.transport->wait_progress(links.dev, epoch, now + std::chrono::milliseconds(1));
      }
    }
  }

  Communicator& comm_;
  Uncounted uncounted_;
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
