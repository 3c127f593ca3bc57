#include "collectives/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <thread>

#include "collectives/reduce/reduce.h"
#include "collectives/rendezvous/url.h"
#include "collectives/selector.h"
#include "common/dtype.h"
#include "common/little_endian.h"
#include "common/log.h"
#include "common/settings.h"
#include "net_plugin/transport/ibverbs/ibverbs_transport.h"
#include "net_plugin/transport/tcp/tcp_transport.h"

extern char** environ;

namespace gradpack::coll {

namespace {

constexpr size_t kMaxCachedPlans = 64;

std::string read_first_line(const char* path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// hostname + boot id + network namespace: processes in different namespaces of one kernel (the
// vcluster) are different hosts, as their traffic crosses a (shaped) link.
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

Status make_transport(const Settings& settings, std::unique_ptr<transport::Transport>* out) {
  const std::string& choice = settings.get(SettingId::kTransport);
  if (choice == "ib" || choice == "auto") {
    std::unique_ptr<transport::Transport> ib;
    Status st = transport::make_ibverbs_transport(&ib);
    if (st.ok() && ib != nullptr && ib->device_count() > 0) {
      *out = std::move(ib);
      return OkStatus();
    }
    if (choice == "ib") {
      return Unsupported("GRADPACK_TRANSPORT=ib but no active RDMA port was found" +
                         (st.ok() ? std::string() : ": " + st.message()) + "; unset it to use TCP");
    }
  }
  return transport::make_tcp_transport(transport::TcpOptions{}, out);
}

Status store_from_url(const std::string& url, int rank, std::chrono::milliseconds timeout,
                      std::shared_ptr<Store>* out) {
  RendezvousUrl parsed;
  GP_RETURN_IF_ERROR(parse_rendezvous_url(url, &parsed));
  if (parsed.kind == RendezvousUrl::Kind::kFile) return make_file_store(parsed.path, out);
  return make_tcp_store(parsed.host, parsed.port, rank == 0, timeout, out);
}

std::vector<uint8_t> encode_entry(const transport::Handle& handle, int nranks,
                                  const std::string& host_id) {
  std::vector<uint8_t> out(handle.bytes.begin(), handle.bytes.end());
  append_le<uint32_t>(&out, static_cast<uint32_t>(nranks));
  out.insert(out.end(), host_id.begin(), host_id.end());
  return out;
}

Status decode_entry(const std::vector<uint8_t>& in, int peer, transport::Handle* handle,
                    int* nranks, std::string* host_id) {
  if (in.size() < transport::kHandleBytes + 4) {
    return CorruptData("rendezvous entry of rank " + std::to_string(peer) + " is truncated (" +
                       std::to_string(in.size()) + " bytes): is another job using this store?");
  }
  std::copy(in.begin(), in.begin() + transport::kHandleBytes, handle->bytes.begin());
  *nranks = static_cast<int>(load_le<uint32_t>(in.data() + transport::kHandleBytes));
  host_id->assign(in.begin() + transport::kHandleBytes + 4, in.end());
  return OkStatus();
}

bool dtype_valid(gp_dtype_t dtype) { return dtype_size(dtype) != 0; }

Status check_buffers(const void* send, const void* recv, size_t count, const char* what) {
  if (count > 0 && (send == nullptr || recv == nullptr)) {
    return InvalidArgument(std::string(what) + ": send and recv must not be NULL when count > 0");
  }
  return OkStatus();
}

// Parses a decimal rank or size from an environment variable; -1 when absent.
Status env_int(const std::map<std::string, std::string>& env, const std::string& name, int* out) {
  auto it = env.find(name);
  if (it == env.end() || it->second.empty()) {
    *out = -1;
    return OkStatus();
  }
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(it->second.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < 0 || v > (1 << 20)) {
    return InvalidArgument(name + "='" + it->second + "' is not a rank or size (a decimal from 0)");
  }
  *out = static_cast<int>(v);
  return OkStatus();
}

std::string env_get(const std::map<std::string, std::string>& env, const std::string& name) {
  auto it = env.find(name);
  return it == env.end() ? std::string() : it->second;
}

}  // namespace

Status rendezvous_from_env(const std::map<std::string, std::string>& env, EnvRendezvous* out) {
  struct Source {
    const char* rank;
    const char* size;
  };
  const Source sources[] = {{"GRADPACK_RANK", "GRADPACK_WORLD_SIZE"},
                            {"RANK", "WORLD_SIZE"},
                            {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                            {"SLURM_PROCID", "SLURM_NTASKS"}};
  EnvRendezvous r;
  for (const Source& s : sources) {
    int rank = -1, size = -1;
    GP_RETURN_IF_ERROR(env_int(env, s.rank, &rank));
    GP_RETURN_IF_ERROR(env_int(env, s.size, &size));
    if (rank < 0 && size < 0) continue;
    if (rank < 0 || size < 0) {
      return InvalidArgument(std::string(rank < 0 ? s.rank : s.size) + " is not set but " +
                             (rank < 0 ? s.size : s.rank) + " is: set both");
    }
    r.rank = rank;
    r.nranks = size;
    r.source = std::string(s.rank) + "/" + s.size;
    break;
  }
  if (r.rank < 0) {
    return InvalidArgument(
        "no rank in the environment: set GRADPACK_RANK and GRADPACK_WORLD_SIZE (or run under "
        "torchrun, mpirun or srun)");
  }
  if (r.nranks < 1 || r.rank >= r.nranks) {
    return InvalidArgument("rank " + std::to_string(r.rank) + " is outside world size " +
                           std::to_string(r.nranks) + " (from " + r.source + ")");
  }
  std::string root = env_get(env, "GRADPACK_ROOT");
  if (!root.empty()) {
    r.url = root.find("://") == std::string::npos ? "tcp://" + root : root;
  } else {
    std::string addr = env_get(env, "MASTER_ADDR");
    std::string port = env_get(env, "MASTER_PORT");
    if (addr.empty() || port.empty()) {
      return InvalidArgument(
          "no rendezvous in the environment: set GRADPACK_ROOT=HOST:PORT (rank 0 serves there), "
          "or MASTER_ADDR and MASTER_PORT");
    }
    r.url = "tcp://" + (addr.find(':') != std::string::npos ? "[" + addr + "]" : addr) + ":" + port;
  }
  *out = std::move(r);
  return OkStatus();
}

Status Communicator::create(int rank, int nranks, std::shared_ptr<Store> store, CommOptions options,
                            std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return InvalidArgument("rank " + std::to_string(rank) + " of world size " +
                           std::to_string(nranks) + ": need 0 <= rank < nranks");
  }
  std::unique_ptr<Communicator> comm(new Communicator());
  comm->rank_ = rank;
  comm->nranks_ = nranks;
  comm->timeout_ = options.timeout.count() > 0
                       ? options.timeout
                       : std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs));
  comm->host_id_ = !options.host_id.empty()                     ? options.host_id
                   : !settings->get(SettingId::kHostId).empty() ? settings->get(SettingId::kHostId)
                                                                : default_host_id();
  GP_RETURN_IF_ERROR(parse_algorithm(settings->get(SettingId::kAlgo), &comm->forced_algorithm_));
  comm->default_segment_bytes_ = static_cast<size_t>(settings->get_int(SettingId::kSegmentBytes));
  if (options.transport != nullptr) {
    comm->transport_ = std::move(options.transport);
  } else {
    GP_RETURN_IF_ERROR(make_transport(*settings, &comm->transport_));
  }
  if (comm->transport_->device_count() < 1) {
    return Unsupported(std::string("transport ") + comm->transport_->name() +
                       " found no network device: check GRADPACK_IFNAME / NCCL_SOCKET_IFNAME");
  }
  GP_RETURN_IF_ERROR(comm->connect_all(*store));
  GP_LOG_INFO(kColl, "rank %d of %d ready over %s (%zu hosts)", rank, nranks,
              comm->transport_->name(),
              static_cast<size_t>(
                  *std::max_element(comm->host_of_rank_.begin(), comm->host_of_rank_.end()) + 1));
  *out = std::move(comm);
  return OkStatus();
}

Status Communicator::create(int rank, int nranks, const std::string& rendezvous,
                            std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  if (nranks < 1 || rank < 0 || rank >= nranks) {
    return InvalidArgument("rank " + std::to_string(rank) + " of world size " +
                           std::to_string(nranks) + ": need 0 <= rank < nranks");
  }
  std::shared_ptr<Store> store;
  GP_RETURN_IF_ERROR(
      store_from_url(rendezvous, rank,
                     std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs)), &store));
  return create(rank, nranks, std::move(store), CommOptions{}, out);
}

Status Communicator::create_from_env(std::unique_ptr<Communicator>* out) {
  std::map<std::string, std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    const char* eq = std::strchr(*e, '=');
    if (eq != nullptr)
      env.emplace(std::string(*e, static_cast<size_t>(eq - *e)), std::string(eq + 1));
  }
  EnvRendezvous r;
  GP_RETURN_IF_ERROR(rendezvous_from_env(env, &r));
  return create(r.rank, r.nranks, r.url, out);
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
  GP_RETURN_IF_ERROR(
      store.set("gp/rank/" + std::to_string(rank_), encode_entry(handle, nranks_, host_id_)));

  std::vector<transport::Handle> handles(nranks_);
  std::vector<std::string> host_ids(nranks_);
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
    GP_RETURN_IF_ERROR(decode_entry(entry, p, &handles[p], &their_nranks, &host_ids[p]));
    if (their_nranks != nranks_) {
      return InvalidArgument("rank " + std::to_string(p) + " was started with world size " +
                             std::to_string(their_nranks) + ", this rank (" +
                             std::to_string(rank_) + ") with " + std::to_string(nranks_) +
                             ": start every rank with the same size");
    }
  }
  // Hosts numbered in order of their lowest rank, identically on every rank.
  host_of_rank_.assign(nranks_, -1);
  int nhosts = 0;
  for (int p = 0; p < nranks_; ++p) {
    if (host_of_rank_[p] >= 0) continue;
    for (int q = p; q < nranks_; ++q) {
      if (host_ids[q] == host_ids[p]) host_of_rank_[q] = nhosts;
    }
    ++nhosts;
  }

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

Status Communicator::run(Collective collective, const void* send, void* recv, size_t count,
                         gp_dtype_t dtype, gp_redop_t op, int root, Algorithm algorithm,
                         size_t segment_bytes, int send_peer, int recv_peer) {
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
  if (!dtype_valid(dtype)) {
    return InvalidArgument("unknown dtype " + std::to_string(static_cast<int>(dtype)));
  }
  ReduceFn reduce = nullptr;
  GP_RETURN_IF_ERROR(reduce_fn(dtype, op, &reduce));
  const size_t elem = dtype_size(dtype);

  PlanRequest request;
  request.collective = collective;
  request.rank = rank_;
  request.nranks = nranks_;
  request.count = count;
  request.elem_size = elem;
  request.root = root;
  request.segment_bytes = segment_bytes != 0 ? segment_bytes : default_segment_bytes_;
  request.host_of_rank = host_of_rank_;
  request.send_peer = send_peer;
  request.recv_peer = recv_peer;
  if (algorithm == Algorithm::kAuto) algorithm = select_algorithm(request);

  ++sequence_;
  PlanKey key{static_cast<int>(collective),
              static_cast<int>(algorithm),
              count,
              elem,
              root,
              request.segment_bytes,
              send_peer,
              recv_peer};
  auto it = plans_.find(key);
  if (it == plans_.end()) {
    Plan plan;
    GP_RETURN_IF_ERROR(make_plan(algorithm, request, &plan));
    if (plans_.size() >= kMaxCachedPlans) plans_.clear();
    it = plans_.emplace(key, std::move(plan)).first;
  }
  const Plan& plan = it->second;
  last_algorithm_ = plan.algorithm;

  ExecArgs args;
  args.send = send;
  args.recv = recv;
  args.elem_size = elem;
  args.reduce = reduce;
  args.timeout = timeout_;
  args.header.sequence = sequence_;
  args.header.collective = collective;
  args.header.op = op;
  args.header.dtype = dtype;
  args.header.algorithm = algorithm;
  args.header.count = count;
  args.header.root = root;
  args.header.nranks = nranks_;
  Status st = executor_.run(plan, args, links_);
  if (!st.ok()) return fail(std::move(st));
  if (op == GP_AVG && collective != Collective::kBroadcast && collective != Collective::kBarrier &&
      collective != Collective::kAllGather) {
    divide(recv, count, dtype, nranks_);
  }
  return OkStatus();
}

Status Communicator::allreduce(const void* send, void* recv, size_t count, gp_dtype_t dtype,
                               gp_redop_t op, const gp_allreduce_opts_t* opts) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, count, "gp_allreduce"));
  Algorithm algorithm = forced_algorithm_;
  size_t segment = 0;
  if (opts != nullptr) {
    if (opts->struct_size < offsetof(gp_allreduce_opts_t, segment_bytes) + sizeof(size_t)) {
      return InvalidArgument("gp_allreduce_opts_t.struct_size is " +
                             std::to_string(opts->struct_size) +
                             ": fill the options with gp_allreduce_opts_init() first");
    }
    if (opts->algorithm < GP_ALGO_AUTO || opts->algorithm > GP_ALGO_HIER) {
      return InvalidArgument("gp_allreduce_opts_t.algorithm " +
                             std::to_string(static_cast<int>(opts->algorithm)) +
                             " is not a gp_algo_t");
    }
    // The options ask explicitly; GRADPACK_ALGO steers only calls that leave the choice open.
    if (opts->algorithm != GP_ALGO_AUTO) algorithm = static_cast<Algorithm>(opts->algorithm);
    segment = opts->segment_bytes;
    if (segment != 0 && segment < 4096) {
      return InvalidArgument("gp_allreduce_opts_t.segment_bytes " + std::to_string(segment) +
                             " is below 4096 (0 takes the default)");
    }
  }
  return run(Collective::kAllReduce, send, recv, count, dtype, op, 0, algorithm, segment);
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
  if (root < 0 || root >= nranks_) {
    return InvalidArgument("gp_broadcast: root " + std::to_string(root) + " is not a rank of " +
                           std::to_string(nranks_));
  }
  if (count > 0 && (recv == nullptr || (rank_ == root && send == nullptr))) {
    return InvalidArgument("gp_broadcast: recv (and send on the root) must not be NULL");
  }
  return run(Collective::kBroadcast, send, recv, count, dtype, GP_SUM, root, Algorithm::kAuto, 0);
}

Status Communicator::sendrecv(const void* send, int send_peer, void* recv, int recv_peer,
                              size_t count, gp_dtype_t dtype) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, count, "gp_sendrecv"));
  if (send_peer < 0 || send_peer >= nranks_ || recv_peer < 0 || recv_peer >= nranks_) {
    return InvalidArgument("gp_sendrecv: peers " + std::to_string(send_peer) + " and " +
                           std::to_string(recv_peer) + " must be ranks of " +
                           std::to_string(nranks_));
  }
  if ((send_peer == rank_) != (recv_peer == rank_)) {
    return InvalidArgument(
        "gp_sendrecv: a rank that sends to itself must also receive from itself");
  }
  const size_t bytes = count * dtype_size(dtype);
  const auto* s = static_cast<const uint8_t*>(send);
  const auto* r = static_cast<const uint8_t*>(recv);
  if (bytes > 0 && s < r + bytes && r < s + bytes) {
    return InvalidArgument("gp_sendrecv: send and recv overlap; use separate buffers");
  }
  return run(Collective::kSendRecv, send, recv, count, dtype, GP_SUM, 0, Algorithm::kRing, 0,
             send_peer, recv_peer);
}

Status Communicator::barrier() {
  return run(Collective::kBarrier, nullptr, nullptr, 0, GP_UINT8, GP_SUM, 0, Algorithm::kAuto, 0);
}

}  // namespace gradpack::coll
