// SPDX-License-Identifier: Apache-2.0
#include "collectives/communicator.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>

#include "collectives/reduce/reduce.h"
#include "collectives/rendezvous/env.h"
#include "collectives/selector.h"
#include "common/dtype.h"
#include "common/little_endian.h"
#include "common/log.h"
#include "common/settings.h"
#include "topology/cluster_source.h"
#include "topology/host.h"
#include "topology/link_probe.h"
#include "topology/placement.h"
#include "transport/open.h"

namespace gradpack::coll {

namespace {

constexpr size_t kMaxCachedPlans = 64;
// place_from_mesh's record: host identity and host name, each NUL-terminated in a field this long.
constexpr size_t kHostFieldBytes = 256;

// handle, world size, host identity, NUL, host name (for the cluster file).
std::vector<uint8_t> encode_entry(const transport::Handle& handle, int nranks,
                                  const std::string& host_id, const std::string& host_name) {
  std::vector<uint8_t> out(handle.bytes.begin(), handle.bytes.end());
  append_le<uint32_t>(&out, static_cast<uint32_t>(nranks));
  out.insert(out.end(), host_id.begin(), host_id.end());
  out.push_back(0);
  out.insert(out.end(), host_name.begin(), host_name.end());
  return out;
}

Status decode_entry(const std::vector<uint8_t>& in, int peer, transport::Handle* handle,
                    int* nranks, std::string* host_id, std::string* host_name) {
  if (in.size() < transport::kHandleBytes + 4) {
    return CorruptData("rendezvous entry of rank " + std::to_string(peer) + " is truncated (" +
                       std::to_string(in.size()) + " bytes): is another job using this store?");
  }
  std::copy(in.begin(), in.begin() + transport::kHandleBytes, handle->bytes.begin());
  *nranks = static_cast<int>(load_le<uint32_t>(in.data() + transport::kHandleBytes));
  const auto rest = in.begin() + transport::kHandleBytes + 4;
  const auto nul = std::find(rest, in.end(), uint8_t{0});
  host_id->assign(rest, nul);
  host_name->assign(nul == in.end() ? in.end() : nul + 1, in.end());
  return OkStatus();
}

bool dtype_valid(gp_dtype_t dtype) { return dtype_size(dtype) != 0; }

Status check_buffers(const void* send, const void* recv, size_t count, const char* what) {
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    return InvalidArgument(std::string(what) + ": send and recv must not be NULL when count > 0");
  }
  return OkStatus();
}

Status check_rank(int rank, int nranks) {
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return InvalidArgument("rank " + std::to_string(rank) + " of world size " +
                           std::to_string(nranks) + ": need 0 <= rank < nranks");
  }
  return OkStatus();
}

bool is_float_sum(gp_dtype_t dtype, gp_redop_t op) {
  return (dtype == GP_FLOAT32 || dtype == GP_FLOAT16 || dtype == GP_BFLOAT16) &&
         (op == GP_SUM || op == GP_AVG);
}

// A fixed lossy codec takes float sums and averages only.
Status check_codec_fits(const CodecRequest& codec, bool float_sum) {
  if (codec.off() || codec.automatic() || float_sum) return OkStatus();
  return InvalidArgument("codec \"" + codec.canonical +
                         "\" compresses float32, float16 and bfloat16 sums and averages; this "
                         "call cannot be compressed: pass codec \"off\" for it");
}

// The bucket of an all-reduce: the options' key, else the recv address and count.
std::string bucket_key(const AllreduceOptions& options, const void* recv, size_t count) {
  if (!options.key.empty()) return options.key;
  char text[64];
  std::snprintf(text, sizeof(text), "@%p:%zu", recv, count);
  return text;
}

Status check_broadcast(const void* send, const void* recv, size_t count, int root, int rank,
                       int nranks) {
  if (root < 0 || root >= nranks) {
    return InvalidArgument("gp_broadcast: root " + std::to_string(root) + " is not a rank of " +
                           std::to_string(nranks));
  }
  if (count > 0 && (recv == nullptr || (rank == root && send == nullptr))) {
    return InvalidArgument("gp_broadcast: recv (and send on the root) must not be NULL");
  }
  return OkStatus();
}

Status check_sendrecv(const void* send, int send_peer, const void* recv, int recv_peer,
                      size_t bytes, int rank, int nranks) {
  if (send_peer < 0 || send_peer >= nranks || recv_peer < 0 || recv_peer >= nranks) {
    return InvalidArgument("gp_sendrecv: peers " + std::to_string(send_peer) + " and " +
                           std::to_string(recv_peer) + " must be ranks of " +
                           std::to_string(nranks));
  }
  if ((send_peer == rank) != (recv_peer == rank)) {
    return InvalidArgument(
        "gp_sendrecv: a rank that sends to itself must also receive from itself");
  }
  const auto* s = static_cast<const uint8_t*>(send);
  const auto* r = static_cast<const uint8_t*>(recv);
  if (bytes > 0 && s < r + bytes && r < s + bytes) {
    return InvalidArgument("gp_sendrecv: send and recv overlap; use separate buffers");
  }
  return OkStatus();
}

}  // namespace

Status Communicator::configure(int rank, int nranks, const CommOptions& options,
                               std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  GP_RETURN_IF_ERROR(check_rank(rank, nranks));
  std::unique_ptr<Communicator> comm(new Communicator());
  comm->rank_ = rank;
  comm->nranks_ = nranks;
  comm->timeout_ = options.timeout.count() > 0
                       ? options.timeout
                       : std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs));
  comm->host_id_ = !options.host_id.empty()                     ? options.host_id
                   : !settings->get(SettingId::kHostId).empty() ? settings->get(SettingId::kHostId)
                                                                : topology::default_host_id();
  GP_RETURN_IF_ERROR(parse_algorithm(settings->get(SettingId::kAlgo), &comm->forced_algorithm_));
  comm->default_segment_bytes_ = static_cast<size_t>(settings->get_int(SettingId::kSegmentBytes));
  comm->default_error_feedback_ = settings->get(SettingId::kErrorFeedback) == "on";
  comm->default_residual_bits_ = static_cast<int>(settings->get_int(SettingId::kResidualBits));
  comm->residuals_ = std::make_unique<ResidualStore>(rank, nranks);
  topology::ClusterChoice cluster;
  GP_RETURN_IF_ERROR(topology::cluster_from_settings(*settings, &cluster));
  comm->cluster_ = std::move(cluster.cluster);
  comm->cluster_origin_ = cluster.detail;
  comm->cluster_source_ = cluster.origin;
  comm->probe_cluster_ = cluster.probe;
  comm->probe_options_ = options.probe ? *options.probe : topology::probe_options(*settings);
  comm->host_name_ = topology::local_host_name(*settings);
  GP_RETURN_IF_ERROR(cpu::select_kernels(&comm->kernels_));
  Status st = parse_codec_request(settings->get(SettingId::kCompress), &comm->default_codec_);
  if (!st.ok()) return InvalidArgument("GRADPACK_COMPRESS: " + st.message());
  *out = std::move(comm);
  return OkStatus();
}

Status Communicator::create(int rank, int nranks, const std::shared_ptr<Store>& store,
                            CommOptions options, std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  std::unique_ptr<Communicator> comm;
  GP_RETURN_IF_ERROR(configure(rank, nranks, options, &comm));
  if (options.transport != nullptr) {
    comm->transport_ = std::move(options.transport);
  } else {
    std::vector<transport::OpenedTransport> opened;
    GP_RETURN_IF_ERROR(transport::open(*settings, &opened));
    topology::place_progress_threads(opened, *settings);     // near each NIC; never fails
    comm->transport_ = std::move(opened.front().transport);  // the first device: the fastest kind
  }
  if (comm->transport_->device_count() < 1) {
    return Unsupported(std::string("transport ") + comm->transport_->name() +
                       " found no network device: check GRADPACK_IFNAME / NCCL_SOCKET_IFNAME");
  }
  GP_RETURN_IF_ERROR(comm->connect_all(*store));
  comm->replanner_.configure(*settings, rank, nranks, comm->host_of_rank_);
  if (comm->default_codec_.automatic() && nranks > 1) {  // measured now, so that the first
    topology::LinkModel model;                           // step is not slowed
    GP_RETURN_IF_ERROR(comm->link_model(comm->default_codec_, &model));
  }
  GP_LOG_INFO(kColl, "rank %d of %d ready over %s (%d hosts)", rank, nranks,
              comm->transport_->name(), topology::host_count(comm->host_of_rank_));
  *out = std::move(comm);
  return OkStatus();
}

Status Communicator::create(int rank, int nranks, const std::string& rendezvous,
                            std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  GP_RETURN_IF_ERROR(check_rank(rank, nranks));
  std::shared_ptr<Store> store;
  GP_RETURN_IF_ERROR(
      store_from_url(rendezvous, rank,
                     std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs)), &store));
  return create(rank, nranks, store, CommOptions{}, out);
}

Status Communicator::create_from_env(std::unique_ptr<Communicator>* out) {
  EnvRendezvous r;
  GP_RETURN_IF_ERROR(rendezvous_from_env(environment_map(), &r));
  return create(r.rank, r.nranks, r.url, out);
}

Status Communicator::create_from_handles(int rank, int nranks,
                                         std::unique_ptr<transport::Transport> transport,
                                         std::unique_ptr<transport::Listener> listener,
                                         const std::vector<transport::Handle>& peers,
                                         CommOptions options, std::unique_ptr<Communicator>* out) {
  if (transport == nullptr || listener == nullptr) {
    return InvalidArgument("create_from_handles needs the transport and the listener");
  }
  if (peers.size() != static_cast<size_t>(nranks)) {
    return InvalidArgument("create_from_handles: " + std::to_string(peers.size()) +
                           " handles for world size " + std::to_string(nranks));
  }
  std::unique_ptr<Communicator> comm;
  GP_RETURN_IF_ERROR(configure(rank, nranks, options, &comm));
  comm->transport_ = std::move(transport);
  comm->listener_ = std::move(listener);
  if (comm->transport_->device_count() < 1) {
    return Unsupported(std::string("transport ") + comm->transport_->name() +
                       " has no network device");
  }
  // One leader per node: no two ranks share a host, so nothing is reduced host-locally first.
  comm->host_of_rank_.resize(static_cast<size_t>(nranks));
  for (int p = 0; p < nranks; ++p) comm->host_of_rank_[static_cast<size_t>(p)] = p;
  GP_RETURN_IF_ERROR(comm->connect_mesh(peers, std::chrono::steady_clock::now() + comm->timeout_));
  GP_RETURN_IF_ERROR(comm->place_from_mesh());
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  comm->replanner_.configure(*settings, rank, nranks, comm->host_of_rank_);
  GP_LOG_INFO(kColl, "rank %d of %d ready over %s (from handles)", rank, nranks,
              comm->transport_->name());
  *out = std::move(comm);
  return OkStatus();
}

Communicator::~Communicator() { close_links(); }

void Communicator::close_links() {
  send_.clear();
  recv_.clear();
  links_.send.assign(links_.send.size(), nullptr);
  links_.recv.assign(links_.recv.size(), nullptr);
  listener_.reset();
}

Status Communicator::connect_all(Store& store) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  transport::Handle handle;
  GP_RETURN_IF_ERROR(transport_->listen(0, &handle, &listener_));

  int64_t claims = 0;
  GP_RETURN_IF_ERROR(store.add("gp/claim/" + std::to_string(rank_), 1, &claims));
  if (claims > 1) {
    return InvalidArgument("two processes joined as rank " + std::to_string(rank_) +
                           " (or the rendezvous store holds an earlier job: use a fresh one)");
  }
  GP_RETURN_IF_ERROR(store.set("gp/rank/" + std::to_string(rank_),
                               encode_entry(handle, nranks_, host_id_, host_name_)));

  std::vector<transport::Handle> handles(nranks_);
  std::vector<std::string> host_ids(nranks_);
  std::vector<std::string> host_names(nranks_);
  for (int p = 0; p < nranks_; ++p) {
    std::vector<uint8_t> entry;
    Status st = store.get("gp/rank/" + std::to_string(p), left(), &entry);
    if (st.code() == Code::kTimeout) {
      return Status(Code::kTimeout, "rank " + std::to_string(p) + " did not join within " +
                                        std::to_string(timeout_.count()) + " ms (world size " +
                                        std::to_string(nranks_) +
                                        "; is it running, with the same rendezvous?)");
    }
    GP_RETURN_IF_ERROR(st);
    int their_nranks = 0;
    GP_RETURN_IF_ERROR(
        decode_entry(entry, p, &handles[p], &their_nranks, &host_ids[p], &host_names[p]));
    if (their_nranks != nranks_) {
      return InvalidArgument("rank " + std::to_string(p) + " was started with world size " +
                             std::to_string(their_nranks) + ", this rank (" +
                             std::to_string(rank_) + ") with " + std::to_string(nranks_) +
                             ": start every rank with the same size");
    }
  }
  host_of_rank_ = topology::group_hosts(host_ids);
  GP_RETURN_IF_ERROR(place_on_cluster(host_ids, host_names));
  GP_RETURN_IF_ERROR(connect_mesh(handles, deadline));
  return discover_cluster(host_ids, host_names);
}

Status Communicator::place_from_mesh() {
  // A file's cluster places the nodes by name; auto probes among them when they are distinct
  // machines (probe_among_nodes).
  const bool from_file = !cluster_.empty() && !cluster_.flat();
  if (!from_file && !probe_cluster_) return OkStatus();
  if (host_id_.size() >= kHostFieldBytes || host_name_.size() >= kHostFieldBytes) {
    return InvalidArgument("this host's identity or name (GRADPACK_HOSTID, GRADPACK_HOSTNAME) is " +
                           std::to_string(kHostFieldBytes) + " bytes or longer: shorten it");
  }
  std::vector<uint8_t> mine(2 * kHostFieldBytes, 0);
  std::memcpy(mine.data(), host_id_.data(), host_id_.size());
  std::memcpy(mine.data() + kHostFieldBytes, host_name_.data(), host_name_.size());
  std::vector<uint8_t> all(mine.size() * static_cast<size_t>(nranks_));
  {
    Uncounted uncounted(*this);
    GP_RETURN_IF_ERROR(allgather(mine.data(), all.data(), mine.size(), GP_UINT8));
  }
  std::vector<std::string> ids(static_cast<size_t>(nranks_)), names(ids.size());
  for (size_t p = 0; p < ids.size(); ++p) {
    const uint8_t* record = all.data() + p * mine.size();
    for (size_t f = 0; f < 2; ++f) {
      const auto* field = reinterpret_cast<const char*>(record + f * kHostFieldBytes);
      const size_t length = strnlen(field, kHostFieldBytes);
      if (length == kHostFieldBytes) {
        return CorruptData("rank " + std::to_string(p) + " sent a host record without its NUL");
      }
      (f == 0 ? ids : names)[p].assign(field, length);
    }
  }
  return from_file ? place_on_cluster(ids, names) : probe_among_nodes(ids, names);
}

// CollNet's nodes are one leader per machine: probed like hosts when their host identities are
// all distinct. Nodes that share one (processes or threads of one machine posing as nodes, as in
// tests) would measure its CPUs, not a network: flat, without probing.
Status Communicator::probe_among_nodes(const std::vector<std::string>& ids,
                                       const std::vector<std::string>& names) {
  if (topology::host_count(topology::group_hosts(ids)) != nranks_) {
    cluster_origin_ = "GRADPACK_TOPOLOGY=auto: not probed (CollNet nodes share a host identity)";
    return OkStatus();
  }
  return discover_cluster(ids, names);
}

Status Communicator::place_on_cluster(const std::vector<std::string>& host_ids,
                                      const std::vector<std::string>& host_names) {
  switch_of_rank_.clear();
  if (cluster_.empty() || cluster_.flat()) return OkStatus();
  std::vector<topology::RankHost> ranks(static_cast<size_t>(nranks_));
  for (size_t p = 0; p < ranks.size(); ++p) ranks[p] = {host_ids[p], host_names[p]};
  topology::RankPlacement placed;
  Status st = topology::place_ranks(cluster_, ranks, &placed);
  if (!st.ok())
    return Status(st.code(), "GRADPACK_TOPOLOGY " + cluster_origin_ + ": " + st.message());
  if (!placed.idle_hosts.empty() && rank_ == 0) {
    GP_LOG_WARN(kTopo, "%zu host(s) of %s run no rank (first: %s)", placed.idle_hosts.size(),
                cluster_origin_.c_str(), placed.idle_hosts.front().c_str());
  }
  // switch_of_rank_[l][r]: the level-l switch above rank r's host (a shallower branch repeats its
  // root, so its hosts stay a group of their own above it).
  const auto levels = static_cast<size_t>(cluster_.levels());
  switch_of_rank_.assign(levels, std::vector<int>(static_cast<size_t>(nranks_)));
  for (int p = 0; p < nranks_; ++p) {
    const std::vector<int> path =
        cluster_.path_to_root(placed.host_of_rank[static_cast<size_t>(p)]);
    for (size_t l = 0; l < levels; ++l) {
      switch_of_rank_[l][static_cast<size_t>(p)] =
          path.empty() ? 0 : path[std::min(l, path.size() - 1)];
    }
  }
  // The cost model's choice for large all-reduces (unknown rates: the multi-level plan, the
  // safe one when uplinks are slower).
  const topology::TreePlanCosts costs = topology::tree_plan_costs(cluster_);
  uplinks_oversubscribed_ = !costs.known || costs.multilevel < costs.ring;
  GP_LOG_INFO(kTopo,
              "rank %d: %zu switch levels above the hosts, from %s; large all-reduces take the "
              "%s (model: ring %.3g s/GB, multi-level %.3g s/GB%s)",
              rank_, levels, cluster_origin_.c_str(),
              uplinks_oversubscribed_ ? "multi-level plan" : "ring in tree order", costs.ring * 1e9,
              costs.multilevel * 1e9, costs.known ? "" : ", rates unknown");
  return OkStatus();
}

Status Communicator::connect_mesh(const std::vector<transport::Handle>& handles,
                                  std::chrono::steady_clock::time_point deadline) {
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  send_.resize(nranks_);
  recv_.resize(nranks_);
  for (int p = 0; p < nranks_; ++p) {
    if (p == rank_) continue;
    Status st = transport_->connect(0, handles[p], static_cast<uint64_t>(rank_), left(), &send_[p]);
    if (!st.ok()) {
      return Status(st.code(), "connecting to rank " + std::to_string(p) + ": " + st.message());
    }
  }
  int accepted = 0;
  while (accepted < nranks_ - 1) {
    std::unique_ptr<transport::RecvConnection> conn;
    GP_RETURN_IF_ERROR(listener_->accept(std::min(left(), std::chrono::milliseconds(100)), &conn));
    if (conn == nullptr) {
      if (std::chrono::steady_clock::now() >= deadline) {
        std::string missing;
        for (int p = 0; p < nranks_; ++p) {
          if (p != rank_ && recv_[p] == nullptr)
            missing += (missing.empty() ? "" : ", ") + std::to_string(p);
        }
        return Status(Code::kTimeout, "rank(s) " + missing + " did not connect to rank " +
                                          std::to_string(rank_) + " within " +
                                          std::to_string(timeout_.count()) + " ms");
      }
      continue;
    }
    uint64_t peer = conn->hello();
    if (peer >= static_cast<uint64_t>(nranks_) || peer == static_cast<uint64_t>(rank_) ||
        recv_[peer] != nullptr) {
      GP_LOG_WARN(kColl, "rank %d: dropped a connection that claims to be rank %llu", rank_,
                  static_cast<unsigned long long>(peer));
      continue;
    }
    recv_[peer] = std::move(conn);
    ++accepted;
  }
  links_.transport = transport_.get();
  links_.dev = 0;
  links_.send.resize(nranks_);
  links_.recv.resize(nranks_);
  for (int p = 0; p < nranks_; ++p) {
    links_.send[p] = send_[p].get();
    links_.recv[p] = recv_[p].get();
  }
  // Every peer is connected: no port needs to stay open (a late stray finds it closed).
  listener_.reset();
  return mesh_barrier();
}

// Every rank sends an empty message to every other and waits for one from each: proves every
// connection carries data, and that every rank is done with the store.
Status Communicator::mesh_barrier() {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  std::vector<std::unique_ptr<transport::Request>> sends(nranks_), recvs(nranks_);
  for (int p = 0; p < nranks_; ++p) {
    if (p == rank_) continue;
    GP_RETURN_IF_ERROR(send_[p]->isend(nullptr, 0, 0, nullptr, &sends[p]));
    GP_RETURN_IF_ERROR(recv_[p]->irecv(nullptr, 0, 0, nullptr, &recvs[p]));
  }
  for (int p = 0; p < nranks_; ++p) {
    if (p == rank_) continue;
    Status st = transport::wait(*recvs[p], deadline);
    if (st.ok()) st = transport::wait(*sends[p], deadline);
    if (!st.ok()) {
      return Status(st.code(), "init barrier with rank " + std::to_string(p) + ": " + st.message());
    }
  }
  return OkStatus();
}

Status Communicator::fail(Status status) {
  GP_LOG_ERROR(kColl, "rank %d: %s", rank_, status.message().c_str());
  broken_ = status;
  close_links();  // peers blocked on us fail now instead of at their timeout
  return status;
}

const Plan* Communicator::plan_for(const PlanRequest& request, Algorithm algorithm, Status* error) {
  const PlanKey key{static_cast<int>(request.collective) | (request.compressed ? 0x100 : 0),
                    static_cast<int>(algorithm),
                    request.count,
                    request.elem_size,
                    request.root,
                    request.segment_bytes,
                    request.send_peer,
                    request.recv_peer};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    Plan plan;
    *error = make_plan(algorithm, request, &plan);
    if (!error->ok()) return nullptr;
    if (plans_.size() >= kMaxCachedPlans) plans_.clear();
    it = plans_.emplace(key, std::move(plan)).first;
  }
  return &it->second;
}

Status Communicator::run(Collective collective, const void* send, void* recv, size_t count,
                         gp_dtype_t dtype, gp_redop_t op, int root, Algorithm algorithm,
                         size_t segment_bytes, int send_peer, int recv_peer,
                         const CompressArgs* compress, uint32_t codec_hash) {
  if (busy_.exchange(true)) {
    return InvalidArgument(
        "another thread is inside a collective of this communicator: one communicator runs one "
        "collective at a time (create one communicator per thread)");
  }
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag.store(false); }
  } release{busy_};
  if (!broken_.ok()) {
    return Status(broken_.code(), "the communicator failed earlier and cannot be used: " +
                                      broken_.message() + " (destroy it)");
  }
  if (cancelled_.load()) {
    return fail(Status(Code::kRemote, "cancelled: the communicator is being closed"));
  }
  if (!dtype_valid(dtype)) {
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<int>(dtype)));
  }
  ReduceFn reduce = nullptr;
  GP_RETURN_IF_ERROR(reduce_fn(dtype, op, &reduce));
  const size_t elem = dtype_size(dtype);

  PlanRequest request = topology_request();
  request.collective = collective;
  request.count = count;
  request.elem_size = elem;
  request.root = root;
  request.segment_bytes = segment_bytes != 0 ? segment_bytes : default_segment_bytes_;
  request.send_peer = send_peer;
  request.recv_peer = recv_peer;
  request.compressed = compress != nullptr;
  if (algorithm == Algorithm::kAuto && !replanner_.adjust(&request, &algorithm)) {
    algorithm = select_algorithm(request);
  }

  ++sequence_;
  Status planned;
  const Plan* plan = plan_for(request, algorithm, &planned);
  if (plan == nullptr) return planned;
  last_algorithm_ = plan->algorithm;

  ExecArgs args;
  args.send = send;
  args.recv = recv;
  args.elem_size = elem;
  args.reduce = reduce;
  args.timeout = timeout_;
  args.cancel = &cancelled_;
  args.header.sequence = sequence_;
  args.header.collective = collective;
  args.header.op = op;
  args.header.dtype = dtype;
  args.header.algorithm = algorithm;
  args.header.count = count;
  args.header.root = root;
  args.header.nranks = nranks_;
  args.header.codec = codec_hash;
  args.compress = compress;
  Status st = executor_.run(*plan, args, links_);
  if (!st.ok()) return fail(std::move(st));
  if (op == GP_AVG && collective != Collective::kBroadcast && collective != Collective::kBarrier &&
      collective != Collective::kAllGather) {
    divide(recv, count, dtype, nranks_);
  }
  ++collectives_;
  return OkStatus();
}

Communicator::Uncounted::Uncounted(Communicator& comm)
    : comm_(comm),
      collectives_(comm.collectives_),
      compressed_calls_(comm.compressed_calls_),
      bypassed_calls_(comm.bypassed_calls_),
      last_codec_(comm.last_codec_),
      last_algorithm_(comm.last_algorithm_) {}

Communicator::Uncounted::~Uncounted() {
  comm_.collectives_ = collectives_;
  comm_.compressed_calls_ = compressed_calls_;
  comm_.bypassed_calls_ = bypassed_calls_;
  comm_.last_codec_ = last_codec_;
  comm_.last_algorithm_ = last_algorithm_;
}

PlanRequest Communicator::topology_request() const {
  PlanRequest request;
  request.rank = rank_;
  request.nranks = nranks_;
  request.host_of_rank = host_of_rank_;
  request.switch_of_rank = switch_of_rank_;
  request.uplinks_oversubscribed = uplinks_oversubscribed_;
  return request;
}

class Communicator::Probe final : public topology::ProbeTarget {
 public:
  // `codec`: the codec the compressed probes use (its mode is ignored).
  Probe(Communicator& comm, const CodecRequest& codec) : comm_(comm), uncounted_(comm) {
    codec_ = codec;
    codec_.mode = CodecRequest::Mode::kFixed;
  }
  Probe(const Probe&) = delete;
  Probe& operator=(const Probe&) = delete;

  int rank() const override { return comm_.rank_; }
  int nranks() const override { return comm_.nranks_; }
  Status allreduce(const float* in, float* out, size_t count, bool compressed) override {
    return comm_.allreduce(in, out, count, GP_FLOAT32, GP_SUM,
                           AllreduceOptions::internal(compressed ? codec_ : CodecRequest{}));
  }
  Status ring_exchange(const void* send, void* recv, size_t bytes) override {
    const int n = comm_.nranks_;
    return comm_.sendrecv(send, (comm_.rank_ + 1) % n, recv, (comm_.rank_ - 1 + n) % n, bytes,
                          GP_UINT8);
  }
  Status agree_max(double* values, size_t count) override {
    return comm_.run(Collective::kAllReduce, values, values, count, GP_FLOAT64, GP_MAX, 0,
                     Algorithm::kAuto, 0);
  }

 private:
  Communicator& comm_;
  CodecRequest codec_;
  Uncounted uncounted_;  // the probes are not the caller's calls
};

Status Communicator::codecs_for(const CodecRequest& codec, CodecSet** out) {
  auto it = codecs_.find(codec.canonical);
  if (it == codecs_.end()) {
    CodecSet set;
    GP_RETURN_IF_ERROR(make_codec_set(codec.spec, rank_, &set));
    it = codecs_.emplace(codec.canonical, std::move(set)).first;
  }
  *out = &it->second;
  return OkStatus();
}

Status Communicator::link_model(const CodecRequest& codec, topology::LinkModel* out) {
  CodecSet* codecs = nullptr;
  GP_RETURN_IF_ERROR(codecs_for(codec, &codecs));
  Probe probe(*this, codec);
  return auto_.model(probe, *codecs, out);
}

Status Communicator::probe_small_sizes(const CodecRequest& codec, size_t* win_bytes) {
  Probe probe(*this, codec);
  return topology::probe_small_sizes(probe, win_bytes);
}

// One all-reduce, its options resolved against the communicator's defaults.
struct Communicator::AllreduceCall {
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  Algorithm algorithm = Algorithm::kAuto;
  bool algorithm_from_options = false;  // asked explicitly (else GRADPACK_ALGO or the selector)
  size_t segment_bytes = 0;
  const CodecRequest* codec = nullptr;
  bool error_feedback = true;
  int residual_bits = 32;
  std::string key;
  bool float_sum = false;
};

Status Communicator::allreduce(const void* send, void* recv, size_t count, gp_dtype_t dtype,
                               gp_redop_t op, const AllreduceOptions& options) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, count, "gp_allreduce"));
  GP_RETURN_IF_ERROR(validate(options));
  AllreduceCall call;
  call.send = send;
  call.recv = recv;
  call.count = count;
  call.dtype = dtype;
  call.op = op;
  // The options ask explicitly; GRADPACK_ALGO steers only calls that leave the choice open.
  call.algorithm_from_options = options.algorithm != Algorithm::kAuto;
  call.algorithm = call.algorithm_from_options ? options.algorithm : forced_algorithm_;
  call.segment_bytes = options.segment_bytes;
  call.codec = options.codec.has_value() ? &*options.codec : &default_codec_;
  call.error_feedback = options.error_feedback.value_or(default_error_feedback_);
  call.residual_bits = options.residual_bits != 0 ? options.residual_bits : default_residual_bits_;
  call.key = bucket_key(options, recv, count);
  call.float_sum = is_float_sum(dtype, op);

  const CodecRequest& codec = *call.codec;
  const bool compressed_algorithm =
      call.algorithm == Algorithm::kDirect || call.algorithm == Algorithm::kSparse;
  if (codec.off() || (codec.none() && !compressed_algorithm)) {
    return allreduce_uncompressed(call);  // off, or none with an uncompressed algorithm
  }
  CodecSet* codecs = nullptr;
  if (!codec.automatic()) {
    GP_RETURN_IF_ERROR(check_codec_fits(codec, call.float_sum));
    GP_RETURN_IF_ERROR(codecs_for(codec, &codecs));
    return allreduce_compressed(call, *codecs);
  }
  // Auto compresses only what it can (float sums on several ranks) and where it predicts a win.
  if (!call.float_sum || nranks_ < 2 || count == 0) return allreduce_uncompressed(call);
  GP_RETURN_IF_ERROR(codecs_for(codec, &codecs));
  AutoPolicy::Choice choice;
  {
    Probe probe(*this, codec);
    GP_RETURN_IF_ERROR(auto_.choose(probe, *codecs, count, dtype, &choice));
  }
  auto execute = [&] {
    return choice.compress ? allreduce_compressed(call, *codecs) : allreduce_uncompressed(call);
  };
  if (!choice.trial) return execute();
  const auto t0 = std::chrono::steady_clock::now();
  GP_RETURN_IF_ERROR(execute());
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  Probe probe(*this, codec);
  return auto_.trial_done(probe, *codecs, count, dtype, choice.compress, took);
}

Status Communicator::allreduce_uncompressed(const AllreduceCall& call) {
  if (call.codec->automatic()) ++bypassed_calls_;
  last_codec_ = "none";
  Algorithm algorithm = Algorithm::kAuto;
  GP_RETURN_IF_ERROR(uncompressed_algorithm(call.algorithm, call.algorithm_from_options,
                                            call.codec->automatic(), &algorithm));
  // A bucket that was compressed before and is not now: what it still owes goes with this call.
  Residual* owed = call.float_sum ? residuals_->find(call.key) : nullptr;
  if (owed != nullptr && owed->count == call.count) {
    std::vector<uint8_t> merged;
    fold_residual(*owed, call.send, call.count, call.dtype, *kernels_, &merged);
    residuals_->erase(call.key);
    GP_RETURN_IF_ERROR(run(Collective::kAllReduce, merged.data(), call.recv, call.count, call.dtype,
                           call.op, 0, algorithm, call.segment_bytes));
  } else {
    GP_RETURN_IF_ERROR(run(Collective::kAllReduce, call.send, call.recv, call.count, call.dtype,
                           call.op, 0, algorithm, call.segment_bytes));
  }
  if (algorithm != Algorithm::kAuto) return OkStatus();  // a forced plan is not re-planned
  return watch_links(call.count * dtype_size(call.dtype));
}

Status Communicator::watch_links(size_t bytes) {
  auto agree = [this](double* values, size_t count) {
    Uncounted uncounted(*this);
    return run(Collective::kAllReduce, values, values, count, GP_FLOAT64, GP_MAX, 0,
               Algorithm::kRing, 0);
  };
  const uint64_t rebuilds = replanner_.rebuilds();
  GP_RETURN_IF_ERROR(replanner_.note_call(
      bytes, [this] { return executor_.take_send_times(); }, topology_request(), agree));
  if (replanner_.rebuilds() != rebuilds) plans_.clear();
  return OkStatus();
}

Status Communicator::allreduce_compressed(const AllreduceCall& call, const CodecSet& codecs) {
  PlanRequest shape;
  shape.collective = Collective::kAllReduce;
  shape.nranks = nranks_;
  shape.count = call.count;
  shape.elem_size = dtype_size(call.dtype);
  shape.host_of_rank = host_of_rank_;
  shape.switch_of_rank = switch_of_rank_;
  shape.uplinks_oversubscribed = uplinks_oversubscribed_;
  Algorithm algorithm = Algorithm::kAuto;
  GP_RETURN_IF_ERROR(select_compressed_algorithm(call.algorithm, call.algorithm_from_options, shape,
                                                 codecs, call.dtype, &algorithm));
  void* residual = nullptr;
  if (call.error_feedback && !codecs.lossless) {
    Residual* r = nullptr;
    GP_RETURN_IF_ERROR(residuals_->get(call.key, call.count, call.residual_bits, &r));
    residual = r->values();
  }
  CompressArgs args;
  args.dtype = call.dtype;
  args.worker = codecs.worker.get();
  args.server = codecs.server.get();
  args.residual = residual;
  args.residual_bf16 = call.residual_bits == 16;
  GP_RETURN_IF_ERROR(run(Collective::kAllReduce, call.send, call.recv, call.count, call.dtype,
                         call.op, 0, algorithm, call.segment_bytes, -1, -1, &args, codecs.hash));
  ++compressed_calls_;
  last_codec_ = codecs.canonical;
  return OkStatus();
}

void Communicator::stats(gp_comm_stats_t* out) const {
  out->collectives = collectives_;
  out->bytes_sent = executor_.bytes_sent();
  out->bytes_received = executor_.bytes_received();
  out->compressed_calls = compressed_calls_;
  out->bypassed_calls = bypassed_calls_;
  out->residual_bytes = residuals_->bytes();
  out->residual_keys = residuals_->keys();
  std::snprintf(out->last_algorithm, sizeof(out->last_algorithm), "%s", last_algorithm_.c_str());
  std::snprintf(out->last_codec, sizeof(out->last_codec), "%s", last_codec_.c_str());
  out->plan_rebuilds = replanner_.rebuilds();
  out->link_checks = replanner_.agreements();
}

Status Communicator::reduce_scatter(const void* send, void* recv, size_t recvcount,
                                    gp_dtype_t dtype, gp_redop_t op) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, recvcount, "gp_reduce_scatter"));
  return run(Collective::kReduceScatter, send, recv, recvcount, dtype, op, 0, Algorithm::kAuto, 0);
}

Status Communicator::allgather(const void* send, void* recv, size_t sendcount, gp_dtype_t dtype) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, sendcount, "gp_allgather"));
  return run(Collective::kAllGather, send, recv, sendcount, dtype, GP_SUM, 0, Algorithm::kAuto, 0);
}

Status Communicator::broadcast(const void* send, void* recv, size_t count, gp_dtype_t dtype,
                               int root) {
  GP_RETURN_IF_ERROR(check_broadcast(send, recv, count, root, rank_, nranks_));
  return run(Collective::kBroadcast, send, recv, count, dtype, GP_SUM, root, Algorithm::kAuto, 0);
}

Status Communicator::sendrecv(const void* send, int send_peer, void* recv, int recv_peer,
                              size_t count, gp_dtype_t dtype) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, count, "gp_sendrecv"));
  GP_RETURN_IF_ERROR(
      check_sendrecv(send, send_peer, recv, recv_peer, count * dtype_size(dtype), rank_, nranks_));
  return run(Collective::kSendRecv, send, recv, count, dtype, GP_SUM, 0, Algorithm::kRing, 0,
             send_peer, recv_peer);
}

Status Communicator::barrier() {
  return run(Collective::kBarrier, nullptr, nullptr, 0, GP_UINT8, GP_SUM, 0, Algorithm::kAuto, 0);
}

Status Communicator::check_call(const CollectiveCall& call, bool* fusable) {
  *fusable = false;
  if (!dtype_valid(call.dtype)) {
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<int>(call.dtype)));
  }
  const size_t elem = dtype_size(call.dtype);
  ReduceFn reduce = nullptr;
  switch (call.collective) {
    case Collective::kAllReduce:
      break;
    case Collective::kReduceScatter:
      GP_RETURN_IF_ERROR(reduce_fn(call.dtype, call.op, &reduce));
      return check_buffers(call.send, call.recv, call.count, "gp_reduce_scatter");
    case Collective::kAllGather:
      return check_buffers(call.send, call.recv, call.count, "gp_allgather");
    case Collective::kBroadcast:
      return check_broadcast(call.send, call.recv, call.count, call.root, rank_, nranks_);
    case Collective::kSendRecv:
      GP_RETURN_IF_ERROR(check_buffers(call.send, call.recv, call.count, "gp_sendrecv"));
      return check_sendrecv(call.send, call.send_peer, call.recv, call.recv_peer, call.count * elem,
                            rank_, nranks_);
    case Collective::kBarrier:
      return OkStatus();
  }
  GP_RETURN_IF_ERROR(reduce_fn(call.dtype, call.op, &reduce));
  GP_RETURN_IF_ERROR(check_buffers(call.send, call.recv, call.count, "gp_allreduce"));
  const AllreduceOptions& options = call.options;
  GP_RETURN_IF_ERROR(validate(options));
  const CodecRequest& codec = options.codec.has_value() ? *options.codec : default_codec_;
  const bool float_sum = is_float_sum(call.dtype, call.op);
  const bool compressed_algorithm =
      options.algorithm == Algorithm::kDirect || options.algorithm == Algorithm::kSparse;
  const bool uncompressed = codec.off() || (codec.none() && !compressed_algorithm);
  Algorithm algorithm = Algorithm::kAuto;
  if (uncompressed) {
    GP_RETURN_IF_ERROR(uncompressed_algorithm(
        options.algorithm, options.algorithm != Algorithm::kAuto, false, &algorithm));
  } else {
    GP_RETURN_IF_ERROR(check_codec_fits(codec, float_sum));
  }
  // A bucket that owes a residual folds it into its next uncompressed call (residuals.h): that
  // call keeps its own.
  *fusable =
      uncompressed &&
      !(float_sum && residuals_->find(bucket_key(options, call.recv, call.count)) != nullptr);
  return OkStatus();
}

}  // namespace gradpack::coll
