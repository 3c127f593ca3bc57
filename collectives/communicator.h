// SPDX-License-Identifier: Apache-2.0
// The communicator behind gp_comm_* and the host collectives of the C API.
//
// Init: every rank listens on its transport device, publishes its handle, world size and host
// identity in the rendezvous store, connects to every other rank (one send connection per peer)
// and accepts one connection from each, then all ranks pass a barrier over those connections, so
// the store is no longer needed once init returns anywhere.
//
// A collective builds (or reuses) the plan of the chosen algorithm and runs it on the host
// executor. Any failure breaks the communicator: its connections are closed at once, so the
// peers' pending operations fail too (a dead rank becomes an error on every rank, not a hang), and
// every later call returns the first error.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "collectives/auto_policy.h"
#include "collectives/call.h"
#include "collectives/codec_set.h"
#include "collectives/executor/host_executor.h"
#include "collectives/options.h"
#include "collectives/plan.h"
#include "collectives/rendezvous/store.h"
#include "collectives/replanner.h"
#include "collectives/residuals.h"
#include "common/status.h"
#include "compression/cpu/kernels.h"
#include "gradpack/gradpack.h"
#include "topology/cluster.h"
#include "topology/cluster_probe.h"
#include "topology/cost_model.h"
#include "transport/transport.h"

namespace gradpack::coll {

struct CommOptions {
  // The transport to use; null: the first of transport::open's (GRADPACK_TRANSPORT).
  std::unique_ptr<transport::Transport> transport;
  // 0: GRADPACK_TIMEOUT_MS.
  std::chrono::milliseconds timeout{0};
  // "": GRADPACK_HOSTID, else topology::default_host_id().
  std::string host_id;
  // The cluster probe of GRADPACK_TOPOLOGY=auto (topology/cluster_probe.h); unset: the
  // GRADPACK_TOPOLOGY_PROBE_* settings. Tests set it, with its test_rates hook.
  std::optional<topology::ProbeOptions> probe;
};

class Communicator {
 public:
  static Status create(int rank, int nranks, const std::shared_ptr<Store>& store,
                       CommOptions options, std::unique_ptr<Communicator>* out);
  // rendezvous: a URL (collectives/rendezvous/url.h).
  static Status create(int rank, int nranks, const std::string& rendezvous,
                       std::unique_ptr<Communicator>* out);
  static Status create_from_env(std::unique_ptr<Communicator>* out);
  // Joins a communicator whose rendezvous already happened elsewhere (the NCCL CollNet plugin:
  // NCCL gathers every leader's listen handle and calls connect with all of them). `listener` was
  // made by `transport` on its device 0 and published as peers[rank]; peers[p] is rank p's
  // handle. Blocking and collective: every rank calls it with the same peers. Each rank counts as
  // its own host (the callers are one leader per node). Once connected, the ranks all-gather
  // their host identities and names over the new mesh and are placed on GRADPACK_TOPOLOGY's
  // cluster as create() places them, so the plans follow the switch tree here too (an error names
  // the hosts the cluster does not know). options.transport is ignored.
  static Status create_from_handles(int rank, int nranks,
                                    std::unique_ptr<transport::Transport> transport,
                                    std::unique_ptr<transport::Listener> listener,
                                    const std::vector<transport::Handle>& peers,
                                    CommOptions options, std::unique_ptr<Communicator>* out);
  ~Communicator();

  int rank() const { return rank_; }
  int size() const { return nranks_; }
  const std::vector<int>& host_of_rank() const { return host_of_rank_; }
  const char* transport_name() const { return transport_->name(); }
  // The cluster the plans follow (GRADPACK_TOPOLOGY: a file, the probe's, or empty: flat), the
  // same on every rank; where it came from and why (a file's path, what the probe found, or why
  // it is flat); and the probe's wall time at init (0: none ran).
  const topology::Cluster& cluster() const { return cluster_; }
  topology::ClusterChoice::Origin cluster_source() const { return cluster_source_; }
  const std::string& cluster_detail() const { return cluster_origin_; }
  double probe_seconds() const { return probe_seconds_; }

  Status allreduce(const void* send, void* recv, size_t count, gp_dtype_t dtype, gp_redop_t op,
                   const AllreduceOptions& options = {});
  Status reduce_scatter(const void* send, void* recv, size_t recvcount, gp_dtype_t dtype,
                        gp_redop_t op);
  Status allgather(const void* send, void* recv, size_t sendcount, gp_dtype_t dtype);
  Status broadcast(const void* send, void* recv, size_t count, gp_dtype_t dtype, int root);
  Status sendrecv(const void* send, int send_peer, void* recv, int recv_peer, size_t count,
                  gp_dtype_t dtype);
  Status barrier();
  // The checks `call` would get when run (buffers, dtype, op, root, peers, the all-reduce's
  // options and codec), without running it: a group (collectives/group.h) refuses a bad call when
  // it is made. *fusable: an all-reduce that runs uncompressed (codec off, or none with an
  // uncompressed algorithm) and whose bucket owes no residual, so that it may be packed with
  // others; false for every other call.
  Status check_call(const CollectiveCall& call, bool* fusable);

  // The algorithm the last collective ran (for the perf tool's header).
  const std::string& last_algorithm() const { return last_algorithm_; }

  void stats(gp_comm_stats_t* out) const;
  // Error-feedback state (gp_residuals_*).
  ResidualStore& residuals() { return *residuals_; }
  // Re-planning when a link degrades (replanner.h); tests reach it to skew a rank's view.
  Replanner& replanner() { return replanner_; }
  // Thread-safe, the one call another thread may make while a collective runs: that collective
  // fails within ~10 ms (telling its peers, whose links then close) instead of waiting for peers
  // up to the timeout, and so does every later one. For owners that must tear down while a call
  // may still be in progress (the CollNet plugin's closeColl); destroy the communicator after.
  void cancel() { cancelled_.store(true); }

  // The figures "auto" decides from for `codec`, measuring them first if needed, and the timed
  // small sizes of topology::probe_small_sizes (collective: every rank must call them, in the
  // same order; the NCCL CollNet measures for the tuner with them).
  Status link_model(const CodecRequest& codec, topology::LinkModel* out);
  Status probe_small_sizes(const CodecRequest& codec, size_t* win_bytes);

 private:
  Communicator() = default;
  // The settings and options of a new communicator, before it connects.
  static Status configure(int rank, int nranks, const CommOptions& options,
                          std::unique_ptr<Communicator>* out);
  Status connect_all(Store& store);
  // Connects to every peer's handle and accepts one connection from each on listener_, then
  // closes the listener and passes the mesh barrier.
  Status connect_mesh(const std::vector<transport::Handle>& handles,
                      std::chrono::steady_clock::time_point deadline);
  Status mesh_barrier();
  // create_from_handles: every rank's host identity and name, all-gathered over the mesh (there
  // is no rendezvous store to read them from), then place_on_cluster (a cluster file) or, with
  // GRADPACK_TOPOLOGY=auto, the probe among the nodes when each is its own machine.
  Status place_from_mesh();
  Status probe_among_nodes(const std::vector<std::string>& ids,
                           const std::vector<std::string>& names);
  // Maps every rank onto the cluster (an error naming the hosts it does not know) and fills
  // switch_of_rank_; nothing when the cluster is flat.
  Status place_on_cluster(const std::vector<std::string>& host_ids,
                          const std::vector<std::string>& host_names);
  // GRADPACK_TOPOLOGY=auto, once the mesh is connected: the cluster probe among the ranks
  // (collective), then place_on_cluster on what it found (cluster_discovery.cc).
  Status discover_cluster(const std::vector<std::string>& host_ids,
                          const std::vector<std::string>& host_names);
  // The communicator as the cluster probe sees it (topology::ClusterProbeTarget).
  class ClusterProbe;
  // Validates, plans, runs; marks the communicator broken on failure.
  // compress: the codecs and residual of a compressed all-reduce (null: uncompressed).
  Status run(Collective collective, const void* send, void* recv, size_t count, gp_dtype_t dtype,
             gp_redop_t op, int root, Algorithm algorithm, size_t segment_bytes, int send_peer = -1,
             int recv_peer = -1, const CompressArgs* compress = nullptr, uint32_t codec_hash = 0);
  // The plan of `request` for `algorithm` (not kAuto), from the cache or made now; null, with
  // *error saying why, when it cannot be made.
  const Plan* plan_for(const PlanRequest& request, Algorithm algorithm, Status* error);
  // One all-reduce with its options resolved against the communicator's defaults.
  struct AllreduceCall;
  Status allreduce_uncompressed(const AllreduceCall& call);
  Status allreduce_compressed(const AllreduceCall& call, const CodecSet& codecs);
  // The codecs of a spec, made once.
  Status codecs_for(const CodecRequest& codec, CodecSet** out);
  // The communicator as auto's measurements see it (link_probe.h); it leaves the statistics as
  // they were.
  class Probe;
  // While it lives, the communicator's own collectives (auto's measurements, the cluster probe,
  // the link checks, the nodes' host records) are not the caller's calls: it puts the counters
  // and "last" fields back as they were when it goes (the bytes they moved stay counted: they did
  // cross the wire).
  class Uncounted {
   public:
    explicit Uncounted(Communicator& comm);
    ~Uncounted();
    Uncounted(const Uncounted&) = delete;
    Uncounted& operator=(const Uncounted&) = delete;

   private:
    Communicator& comm_;
    uint64_t collectives_, compressed_calls_, bypassed_calls_;
    std::string last_codec_, last_algorithm_;
  };
  // The request fields every plan of this communicator shares: ranks, hosts and switches.
  PlanRequest topology_request() const;
  Status fail(Status status);
  void close_links();
  // After a large all-reduce the selector planned: counts it for the replanner, which every
  // GRADPACK_REPLAN_BYTES agrees on the measured link rates and may re-plan (plans_ is then
  // rebuilt).
  Status watch_links(size_t bytes);

  int rank_ = 0;
  int nranks_ = 1;
  std::chrono::milliseconds timeout_{120000};
  std::string host_id_;
  std::string host_name_;  // as the cluster file knows it (GRADPACK_HOSTNAME or hostname)
  // The switches above the hosts (GRADPACK_TOPOLOGY); empty: flat. switch_of_rank_ as in
  // PlanRequest.
  topology::Cluster cluster_;
  std::string cluster_origin_;
  topology::ClusterChoice::Origin cluster_source_ = topology::ClusterChoice::Origin::kFlat;
  bool probe_cluster_ = false;  // GRADPACK_TOPOLOGY=auto
  topology::ProbeOptions probe_options_;
  double probe_seconds_ = 0;
  std::vector<std::vector<int>> switch_of_rank_;
  bool uplinks_oversubscribed_ = true;
  std::vector<int> host_of_rank_;
  std::unique_ptr<transport::Transport> transport_;
  std::unique_ptr<transport::Listener> listener_;
  std::vector<std::unique_ptr<transport::SendConnection>> send_;
  std::vector<std::unique_ptr<transport::RecvConnection>> recv_;
  Links links_;
  HostExecutor executor_;
  Replanner replanner_;
  uint64_t sequence_ = 0;
  Algorithm forced_algorithm_ = Algorithm::kAuto;  // GRADPACK_ALGO
  size_t default_segment_bytes_ = 1 << 20;
  std::atomic<bool> busy_{false};
  std::atomic<bool> cancelled_{false};
  Status broken_;
  std::string last_algorithm_;
  // Plans by (collective, algorithm, count, elem size, root, segment bytes, peers), bounded.
  using PlanKey = std::tuple<int, int, size_t, size_t, int, size_t, int, int>;
  std::map<PlanKey, Plan> plans_;
  // Compression.
  CodecRequest default_codec_;  // GRADPACK_COMPRESS
  bool default_error_feedback_ = true;
  int default_residual_bits_ = 32;
  const cpu::CpuKernels* kernels_ = nullptr;  // widening and narrowing of 16-bit floats
  std::map<std::string, CodecSet> codecs_;    // by canonical spec
  std::unique_ptr<ResidualStore> residuals_;
  AutoPolicy auto_;
  uint64_t collectives_ = 0;
  uint64_t compressed_calls_ = 0;
  uint64_t bypassed_calls_ = 0;
  std::string last_codec_ = "none";
};

}  // namespace gradpack::coll
