#include "collectives/communicator.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <thread>

#include "collectives/reduce/reduce.h"
#include "collectives/rendezvous/url.h"
#include "collectives/selector.h"
#include "common/crc32c.h"
#include "common/dtype.h"
#include "common/float16.h"
#include "common/little_endian.h"
#include "common/log.h"
#include "common/settings.h"
#include "compression/spec.h"
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

// A codec option of gp_allreduce (gp_allreduce_opts_t.codec, GRADPACK_COMPRESS): "off" (spec
// empty), "auto" or "auto:<spec>" (automatic, spec q8 by default), or a codec spec (including
// "none").
struct CodecRequest {
  bool automatic = false;
  std::string spec;
};

Status parse_codec_request(const std::string& text, CodecRequest* out) {
  *out = CodecRequest{};
  if (text.empty() || text == "off") return OkStatus();
  std::string spec = text;
  if (text == "auto" || text.rfind("auto:", 0) == 0) {
    out->automatic = true;
    spec = text.size() > 5 ? text.substr(5) : "q8";
    if (spec == "none" || spec == "off") {
      return InvalidArgument("codec \"" + text +
                             "\": auto needs a lossy codec to choose (auto:q8)");
    }
  }
  CodecSpec parsed;
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &parsed));
  out->spec = spec;
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

Status Communicator::configure(int rank, int nranks, const CommOptions& options,
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
  comm->default_codec_ = settings->get(SettingId::kCompress);
  comm->default_error_feedback_ = settings->get(SettingId::kErrorFeedback) == "on";
  comm->default_residual_bits_ = static_cast<int>(settings->get_int(SettingId::kResidualBits));
  comm->residuals_ = std::make_unique<ResidualStore>(rank, nranks);
  {
    CodecRequest parsed;
    Status st = parse_codec_request(comm->default_codec_, &parsed);
    if (!st.ok()) return InvalidArgument("GRADPACK_COMPRESS: " + st.message());
  }
  *out = std::move(comm);
  return OkStatus();
}

Status Communicator::create(int rank, int nranks, std::shared_ptr<Store> store, CommOptions options,
                            std::unique_ptr<Communicator>* out) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  std::unique_ptr<Communicator> comm;
  GP_RETURN_IF_ERROR(configure(rank, nranks, options, &comm));
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
  CodecRequest initial;
  GP_RETURN_IF_ERROR(parse_codec_request(comm->default_codec_, &initial));
  if (initial.automatic && nranks > 1) {  // measured now, so the first step is not slowed
    LinkModel model;
    GP_RETURN_IF_ERROR(comm->link_model(initial.spec, &model));
  }
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

gp_allreduce_opts_t internal_allreduce_opts(const char* codec) {
  gp_allreduce_opts_t opts;
  std::memset(&opts, 0, sizeof(opts));
  opts.struct_size = sizeof(opts);
  opts.algorithm = GP_ALGO_AUTO;
  opts.codec = codec;
  opts.error_feedback = 0;
  return opts;
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

Status Communicator::create_from_handles(int rank, int nranks,
                                         std::unique_ptr<transport::Transport> transport,
                                         std::unique_ptr<transport::Listener> listener,
                                         std::vector<transport::Handle> peers, CommOptions options,
                                         std::unique_ptr<Communicator>* out) {
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
  return connect_mesh(handles, deadline);
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
  request.compressed = compress != nullptr;
  if (algorithm == Algorithm::kAuto) algorithm = select_algorithm(request);

  ++sequence_;
  PlanKey key{static_cast<int>(collective) | (compress != nullptr ? 0x100 : 0),
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
  Status st = executor_.run(plan, args, links_);
  if (!st.ok()) return fail(std::move(st));
  if (op == GP_AVG && collective != Collective::kBroadcast && collective != Collective::kBarrier &&
      collective != Collective::kAllGather) {
    divide(recv, count, dtype, nranks_);
  }
  ++collectives_;
  return OkStatus();
}

Status Communicator::codecs_for(const std::string& spec, Codecs** out) {
  auto it = codecs_.find(spec);
  if (it != codecs_.end()) {
    *out = &it->second;
    return OkStatus();
  }
  CodecSpec parsed;
  GP_RETURN_IF_ERROR(parse_codec_spec(spec, &parsed));
  Codecs c;
  c.canonical = parsed.canonical();
  c.topk = parsed.kind == CodecKind::kTopk;
  c.lossless =
      parsed.kind == CodecKind::kNone ||
      (parsed.kind == CodecKind::kTopk && parsed.fraction >= 1.0 && parsed.quant.bits == 0);
  // Ranks round with different streams, so stochastic rounding noise averages out in the sum.
  CodecSpec worker = parsed;
  worker.quant.seed += static_cast<uint64_t>(rank_) * 0x9E3779B97F4A7C15ull;
  GP_RETURN_IF_ERROR(Codec::create(worker.canonical(), &c.worker));
  // Reduced chunks are dense: top-k's server stage sends them through its value quantizer.
  CodecSpec server = parsed;
  if (c.topk) {
    server = CodecSpec{};
    if (parsed.quant.bits > 0) {
      server.kind = CodecKind::kQuant;
      server.quant = parsed.quant;
    }
  }
  GP_RETURN_IF_ERROR(Codec::create(server.canonical(), &c.server));
  const std::string both = c.canonical + "|" + server.canonical();
  c.hash = crc32c(both.data(), both.size()) | 1u;  // never 0, which means "uncompressed"
  *out = &codecs_.emplace(spec, std::move(c)).first->second;
  return OkStatus();
}

Status Communicator::measure_link(const std::string& spec, LinkModel* out) {
  using Clock = std::chrono::steady_clock;
  auto seconds = [](Clock::time_point t0) {
    return std::chrono::duration<double>(Clock::now() - t0).count();
  };
  // figures[0..4]: the latency, link, encode, decode and compressed-latency times of this rank; the
  // slowest rank's
  // are everyone's (one all-reduce MAX), so the model is the same on every rank.
  double figures[5] = {0, 0, 0, 0, 0};
  // The probes are not the caller's calls: the counters and "last" fields stay as they were (the
  // bytes they move are counted: they did cross the wire).
  struct Restore {
    Communicator* c;
    uint64_t collectives, compressed, bypassed;
    std::string codec, algorithm;
    ~Restore() {
      c->collectives_ = collectives;
      c->compressed_calls_ = compressed;
      c->bypassed_calls_ = bypassed;
      c->last_codec_ = codec;
      c->last_algorithm_ = algorithm;
    }
  } restore{this, collectives_, compressed_calls_, bypassed_calls_, last_codec_, last_algorithm_};
  constexpr size_t kLinkBytes = 4 << 20;
  // 16 MiB of fp32: large enough to be served from memory, not cache, as gradients are.
  constexpr size_t kCodecCount = 4 << 20;
  if (!link_measured_) {
    double x = 1, y = 0;
    figures[0] = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 5; ++i) {
      auto t0 = Clock::now();
      GP_RETURN_IF_ERROR(
          run(Collective::kAllReduce, &x, &y, 1, GP_FLOAT64, GP_SUM, 0, Algorithm::kAuto, 0));
      figures[0] = std::min(figures[0], seconds(t0));
    }
    std::vector<uint8_t> a(kLinkBytes, 1), b(kLinkBytes);
    figures[1] = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 3; ++i) {
      auto t0 = Clock::now();
      GP_RETURN_IF_ERROR(sendrecv(a.data(), (rank_ + 1) % nranks_, b.data(),
                                  (rank_ - 1 + nranks_) % nranks_, kLinkBytes, GP_UINT8));
      figures[1] = std::min(figures[1], seconds(t0));
    }
  }
  Codecs* codecs = nullptr;
  GP_RETURN_IF_ERROR(codecs_for(spec, &codecs));
  {
    std::vector<float> in(kCodecCount), residual(kCodecCount, 0.0f), sum(kCodecCount, 0.0f);
    uint32_t state = 0x12345678u + static_cast<uint32_t>(rank_);
    for (float& v : in) {  // gradient-like values: signed, varied magnitudes
      state = state * 1664525u + 1013904223u;
      v = (static_cast<float>(state >> 8) / 16777216.0f - 0.5f) * 1e-2f;
    }
    std::vector<uint8_t> frame(codecs->worker->max_encoded_bytes(kCodecCount, GP_FLOAT32));
    figures[2] = figures[3] = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 2; ++i) {
      size_t bytes = 0;
      auto t0 = Clock::now();
      GP_RETURN_IF_ERROR(codecs->worker->encode(in.data(), kCodecCount, GP_FLOAT32, residual.data(),
                                                frame.data(), frame.size(), &bytes));
      figures[2] = std::min(figures[2], seconds(t0));
      t0 = Clock::now();
      GP_RETURN_IF_ERROR(
          decode_frame(frame.data(), bytes, sum.data(), kCodecCount, GP_FLOAT32, true));
      figures[3] = std::min(figures[3], seconds(t0));
    }
  }
  {
    // The compressed path's own latency: one quantization block per rank, as auto would run it
    // (without error feedback, so no residual is made).
    const size_t count = static_cast<size_t>(nranks_) * 256;
    std::vector<float> in(count, 1.0f), sum(count);
    const gp_allreduce_opts_t opts = internal_allreduce_opts(spec.c_str());
    figures[4] = std::numeric_limits<double>::infinity();
    for (int i = 0; i < 5; ++i) {
      auto t0 = Clock::now();
      GP_RETURN_IF_ERROR(allreduce(in.data(), sum.data(), count, GP_FLOAT32, GP_SUM, &opts));
      figures[4] = std::min(figures[4], seconds(t0));
    }
  }
  double agreed[5];
  GP_RETURN_IF_ERROR(
      run(Collective::kAllReduce, figures, agreed, 5, GP_FLOAT64, GP_MAX, 0, Algorithm::kAuto, 0));
  if (!link_measured_) {
    link_.nranks = nranks_;
    link_.latency_s = agreed[0];
    link_.link_Bps = static_cast<double>(kLinkBytes) / std::max(agreed[1], 1e-9);
    link_measured_ = true;
  }
  LinkModel m = link_;
  m.encode_Bps = static_cast<double>(kCodecCount * 4) / std::max(agreed[2], 1e-9);
  m.decode_Bps = static_cast<double>(kCodecCount * 4) / std::max(agreed[3], 1e-9);
  m.compressed_latency_s = agreed[4];
  GP_LOG_INFO(kColl,
              "auto model for %s: all-reduce latency %.1f us (compressed %.1f us), link %.0f MB/s, "
              "encode %.0f MB/s, decode %.0f MB/s (slowest rank of %d)",
              codecs->canonical.c_str(), m.latency_s * 1e6, m.compressed_latency_s * 1e6,
              m.link_Bps / 1e6, m.encode_Bps / 1e6, m.decode_Bps / 1e6, nranks_);
  *out = m;
  return OkStatus();
}

Status Communicator::link_model(const std::string& spec, LinkModel* out) {
  auto it = models_.find(spec);
  if (it == models_.end()) {
    LinkModel m;
    GP_RETURN_IF_ERROR(measure_link(spec, &m));
    it = models_.emplace(spec, m).first;
  }
  *out = it->second;
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
}

Status Communicator::allreduce(const void* send, void* recv, size_t count, gp_dtype_t dtype,
                               gp_redop_t op, const gp_allreduce_opts_t* opts) {
  GP_RETURN_IF_ERROR(check_buffers(send, recv, count, "gp_allreduce"));
  Algorithm algorithm = Algorithm::kAuto;
  bool algorithm_from_opts = false;
  size_t segment = 0;
  std::string codec_text = default_codec_;
  bool error_feedback = default_error_feedback_;
  int residual_bits = default_residual_bits_;
  std::string key;
  auto has = [&](size_t end) { return opts != nullptr && opts->struct_size >= end; };
  if (opts != nullptr) {
    if (!has(offsetof(gp_allreduce_opts_t, segment_bytes) + sizeof(size_t))) {
      return InvalidArgument("gp_allreduce_opts_t.struct_size is " +
                             std::to_string(opts->struct_size) +
                             ": fill the options with gp_allreduce_opts_init() first");
    }
    if (opts->algorithm < GP_ALGO_AUTO || opts->algorithm > GP_ALGO_SPARSE) {
      return InvalidArgument("gp_allreduce_opts_t.algorithm " +
                             std::to_string(static_cast<int>(opts->algorithm)) +
                             " is not a gp_algo_t");
    }
    // The options ask explicitly; GRADPACK_ALGO steers only calls that leave the choice open.
    if (opts->algorithm != GP_ALGO_AUTO) {
      algorithm = static_cast<Algorithm>(opts->algorithm);
      algorithm_from_opts = true;
    }
    segment = opts->segment_bytes;
    if (segment != 0 && segment < 4096) {
      return InvalidArgument("gp_allreduce_opts_t.segment_bytes " + std::to_string(segment) +
                             " is below 4096 (0 takes the default)");
    }
    if (has(offsetof(gp_allreduce_opts_t, codec) + sizeof(const char*)) && opts->codec != nullptr) {
      codec_text = opts->codec;
    }
    if (has(offsetof(gp_allreduce_opts_t, error_feedback) + sizeof(int))) {
      if (opts->error_feedback < -1 || opts->error_feedback > 1) {
        return InvalidArgument("gp_allreduce_opts_t.error_feedback " +
                               std::to_string(opts->error_feedback) +
                               " is not -1 (default), 0 (off) or 1 (on)");
      }
      if (opts->error_feedback >= 0) error_feedback = opts->error_feedback == 1;
    }
    if (has(offsetof(gp_allreduce_opts_t, key) + sizeof(const char*)) && opts->key != nullptr) {
      key = opts->key;
      if (key.empty() || key.size() > 4096) {
        return InvalidArgument("gp_allreduce_opts_t.key must be 1 to 4096 characters");
      }
    }
    if (has(offsetof(gp_allreduce_opts_t, residual_bits) + sizeof(int))) {
      if (opts->residual_bits != 0 && opts->residual_bits != 32 && opts->residual_bits != 16) {
        return InvalidArgument("gp_allreduce_opts_t.residual_bits " +
                               std::to_string(opts->residual_bits) +
                               " is not 0 (default), 32 (fp32) or 16 (bf16)");
      }
      if (opts->residual_bits != 0) residual_bits = opts->residual_bits;
    }
  }
  if (!algorithm_from_opts) algorithm = forced_algorithm_;
  if (key.empty()) {
    char text[64];
    std::snprintf(text, sizeof(text), "@%p:%zu", recv, count);
    key = text;
  }

  CodecRequest request;
  GP_RETURN_IF_ERROR(parse_codec_request(codec_text, &request));
  const bool float_sum = (dtype == GP_FLOAT32 || dtype == GP_FLOAT16 || dtype == GP_BFLOAT16) &&
                         (op == GP_SUM || op == GP_AVG);
  const bool compressed_algorithm =
      algorithm == Algorithm::kDirect || algorithm == Algorithm::kSparse;
  bool compress = false;
  AutoDecision* timed = nullptr;  // auto confirming a predicted win: this call is timed
  if (request.spec.empty() || (request.spec == "none" && !compressed_algorithm)) {
    compress = false;  // off, or none with an uncompressed algorithm: the plain all-reduce
  } else if (request.automatic) {
    // Auto compresses only what it can (float sums on several ranks) and where it predicts a win;
    // below kAutoConfirmBelow a predicted win is confirmed by timing (docs/algorithms.md).
    if (float_sum && nranks_ > 1 && count > 0) {
      AutoDecision& d =
          auto_decisions_[std::make_tuple(request.spec, count, static_cast<int>(dtype))];
      if (d.state == AutoDecision::kNew) {
        LinkModel model;
        GP_RETURN_IF_ERROR(link_model(request.spec, &model));
        Codecs* codecs = nullptr;
        GP_RETURN_IF_ERROR(codecs_for(request.spec, &codecs));
        const size_t bytes = count * dtype_size(dtype);
        const size_t wire = codecs->worker->max_encoded_bytes(count, dtype);
        const Prediction p = predict(model, bytes, wire, codecs->topk);
        const bool confirm = p.compress && bytes < kAutoConfirmBelow;
        d.state = confirm ? AutoDecision::kTiming : AutoDecision::kDecided;
        d.compress = p.compress;
        GP_LOG_INFO(
            kColl, "auto: %zu bytes on %d ranks: %s predicted %.3f ms, uncompressed %.3f ms: %s",
            bytes, nranks_, codecs->canonical.c_str(), p.compressed_s * 1e3, p.uncompressed_s * 1e3,
            confirm      ? "confirming by timing both"
            : p.compress ? "compress"
                         : "send uncompressed");
      }
      if (d.state == AutoDecision::kTiming) {
        // Uncompressed and compressed calls alternate, so both meet the network in the same
        // state (a shaped link's token bucket drains over the first calls).
        compress = d.trial_calls % 2 == 1;
        timed = &d;
      } else {
        compress = d.compress;
      }
    }
  } else {
    if (!float_sum) {
      return InvalidArgument("codec \"" + request.spec +
                             "\" compresses float32, float16 and bfloat16 sums and averages; this "
                             "call cannot be compressed: pass codec \"off\" for it");
    }
    compress = true;
  }

  auto execute = [&]() -> Status {
    if (!compress) {
      if (request.automatic) ++bypassed_calls_;
      last_codec_ = "none";
      if (compressed_algorithm) {
        if (!algorithm_from_opts) {
          algorithm = Algorithm::kAuto;  // GRADPACK_ALGO=direct|sparse steers compressed calls only
        } else if (!request.automatic) {
          return InvalidArgument(std::string("algorithm ") + algorithm_name(algorithm) +
                                 " needs a codec (gp_allreduce_opts_t.codec or GRADPACK_COMPRESS)");
        } else {
          algorithm = Algorithm::kAuto;
        }
      }
      // A bucket that was compressed before and is not now: what it still owes goes with this call.
      Residual* owed = float_sum ? residuals_->find(key) : nullptr;
      if (owed != nullptr && owed->count == count) {
        std::vector<float> sum(count);
        const auto* r = static_cast<const uint8_t*>(owed->values());
        for (size_t i = 0; i < count; ++i) {
          float x = 0, v = 0;
          switch (dtype) {
            case GP_FLOAT16:
              x = f16_to_f32(static_cast<const uint16_t*>(send)[i]);
              break;
            case GP_BFLOAT16:
              x = bf16_to_f32(static_cast<const uint16_t*>(send)[i]);
              break;
            default:
              x = static_cast<const float*>(send)[i];
              break;
          }
          if (owed->bits == 16) {
            v = bf16_to_f32(reinterpret_cast<const uint16_t*>(r)[i]);
          } else {
            v = reinterpret_cast<const float*>(r)[i];
          }
          sum[i] = x + v;
        }
        std::vector<uint8_t> merged(count * dtype_size(dtype));
        for (size_t i = 0; i < count; ++i) {
          if (dtype == GP_FLOAT16) {
            reinterpret_cast<uint16_t*>(merged.data())[i] = f32_to_f16(sum[i]);
          } else if (dtype == GP_BFLOAT16) {
            reinterpret_cast<uint16_t*>(merged.data())[i] = f32_to_bf16(sum[i]);
          } else {
            reinterpret_cast<float*>(merged.data())[i] = sum[i];
          }
        }
        residuals_->erase(key);
        return run(Collective::kAllReduce, merged.data(), recv, count, dtype, op, 0, algorithm,
                   segment);
      }
      return run(Collective::kAllReduce, send, recv, count, dtype, op, 0, algorithm, segment);
    }

    Codecs* codecs = nullptr;
    GP_RETURN_IF_ERROR(codecs_for(request.spec, &codecs));
    // The compressed algorithms: ring (re-encoding, a counter-example), hier, direct, sparse.
    switch (algorithm) {
      case Algorithm::kHalvingDoubling:
      case Algorithm::kTree:
        if (algorithm_from_opts) {
          return InvalidArgument(
              std::string("compressed all-reduce has no ") + algorithm_name(algorithm) +
              " algorithm: use direct, sparse, hier or ring (docs/algorithms.md)");
        }
        algorithm = Algorithm::kAuto;
        break;
      case Algorithm::kSparse:
        if (!codecs->topk) {
          return InvalidArgument("the sparse algorithm all-gathers top-k frames: codec \"" +
                                 request.spec + "\" is not top-k (use direct)");
        }
        break;
      default:
        break;
    }
    if (algorithm == Algorithm::kAuto) {
      PlanRequest shape;
      shape.collective = Collective::kAllReduce;
      shape.nranks = nranks_;
      shape.count = count;
      shape.elem_size = dtype_size(dtype);
      shape.host_of_rank = host_of_rank_;
      algorithm = select_algorithm(shape) == Algorithm::kHierarchical ? Algorithm::kHierarchical
                                                                      : Algorithm::kDirect;
      if (codecs->topk && sparse_wins(nranks_, codecs->worker->max_encoded_bytes(count, dtype),
                                      codecs->server->max_encoded_bytes(count, dtype))) {
        algorithm = Algorithm::kSparse;
      }
    }
    void* residual = nullptr;
    if (error_feedback && !codecs->lossless) {
      Residual* r = nullptr;
      GP_RETURN_IF_ERROR(residuals_->get(key, count, residual_bits, &r));
      residual = r->values();
    }
    CompressArgs args;
    args.dtype = dtype;
    args.worker = codecs->worker.get();
    args.server = codecs->server.get();
    args.residual = residual;
    args.residual_bf16 = residual_bits == 16;
    GP_RETURN_IF_ERROR(run(Collective::kAllReduce, send, recv, count, dtype, op, 0, algorithm,
                           segment, -1, -1, &args, codecs->hash));
    ++compressed_calls_;
    last_codec_ = codecs->canonical;
    return OkStatus();
  };
  if (timed == nullptr) return execute();
  const auto t0 = std::chrono::steady_clock::now();
  GP_RETURN_IF_ERROR(execute());
  const double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  // The first pair warms up (connections, buffers, a full token bucket); the rest are summed.
  if (timed->trial_calls >= 2) (compress ? timed->compressed_s : timed->uncompressed_s) += took;
  if (++timed->trial_calls == 2 * kAutoTrialCalls) {
    // The slowest rank's times decide, the same on every rank.
    double times[2] = {timed->uncompressed_s / (kAutoTrialCalls - 1),
                       timed->compressed_s / (kAutoTrialCalls - 1)};
    const uint64_t calls = collectives_;
    GP_RETURN_IF_ERROR(
        run(Collective::kAllReduce, times, times, 2, GP_FLOAT64, GP_MAX, 0, Algorithm::kAuto, 0));
    collectives_ = calls;
    timed->state = AutoDecision::kDecided;
    timed->compress = times[1] <= kAutoMargin * times[0];
    GP_LOG_INFO(kColl,
                "auto: %zu bytes on %d ranks: measured %.3f ms compressed, %.3f ms "
                "uncompressed: %s",
                count * dtype_size(dtype), nranks_, times[1] * 1e3, times[0] * 1e3,
                timed->compress ? "compress" : "send uncompressed");
  }
  return OkStatus();
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
