// SPDX-License-Identifier: Apache-2.0
// A fake NCCL on the fake GPU runtime (gpu.h) and gradpack's own host transport, across
// processes. It exports NCCL's API as ncclX and pncclX, so the interposer (which calls pncclX)
// runs in front of it as in front of libnccl.
//
// A communicator (ncclCommInitRank) joins the rendezvous its unique id names: id.internal is a
// gradpack rendezvous URL with an optional "#NAME" suffix (nccl_extras.h); ncclGetUniqueId makes a
// fresh file:// store under $TMPDIR (left behind). It holds a coll::Communicator for all-reduces
// (uncompressed, whatever GRADPACK_COMPRESS says) and a mesh of transport connections for
// send/recv (one each way per peer; messages match in order per peer and direction). Its device is
// the current fake device at init; operations on another device's stream or buffers are
// ncclInvalidArgument.
//
// Semantics:
//   - Every operation is a task on the caller's fake stream and returns at once. The operations of
//     one communicator run in the order they were issued (a ticket each), whatever the streams.
//     Operations issued on a capturing stream are recorded and take their ticket when a replay
//     runs them.
//   - Between ncclGroupStart and the outermost ncclGroupEnd operations are collected; End issues
//     one task per (communicator, stream) that posts all its sends and receives at once, runs its
//     all-reduces in order, then waits for the sends and receives: no exchange inside a group can
//     deadlock. ncclGroupSimulateEnd drops the collected operations and sets estimatedTime to
//     1 us per operation plus 1 us per KB moved.
//   - A failure while running (a peer gone, a closed connection, GRADPACK_TIMEOUT_MS passed) does
//     not fault the stream: it sets the communicator's async error (ncclRemoteError for a peer,
//     ncclSystemError otherwise), is logged to stderr once, and every later operation of the
//     communicator is skipped. A faulted stream skips them too (ncclUnhandledCudaError).
//   - ncclCommAbort, from any thread: cancels the running operation (within ~10 ms), closes the
//     connections (so the peers' operations fail too), skips the queued ones and frees the rest
//     once the last task has left. ncclCommDestroy waits for every queued operation first.
#include <nccl.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "collectives/communicator.h"
#include "collectives/rendezvous/env.h"
#include "collectives/rendezvous/store.h"
#include "common/settings.h"
#include "tests/net_plugin/interposer/fake/gpu.h"
#include "tests/net_plugin/interposer/fake/nccl_extras.h"
#include "transport/open.h"
#include "transport/transport.h"

struct ncclComm {
  int rank = 0;
  int nranks = 1;
  int device = 0;
  std::chrono::milliseconds timeout{120000};
  std::unique_ptr<gradpack::coll::Communicator> coll;
  std::unique_ptr<gradpack::transport::Transport> transport;
  std::vector<std::unique_ptr<gradpack::transport::SendConnection>> send;
  std::vector<std::unique_ptr<gradpack::transport::RecvConnection>> recv;

  std::mutex mu;  // tickets
  std::condition_variable cv;
  uint64_t issued = 0;
  uint64_t finished = 0;
  std::mutex io_mu;  // held while an operation uses the connections; abort closes them under it
  std::atomic<bool> aborted{false};
  std::atomic<int> async_error{ncclSuccess};
  std::once_flag logged;
};

namespace gradpack::fake_nccl {
namespace {

using CommPtr = std::shared_ptr<ncclComm>;

FakeNcclCounters g_counters{};
void bump(uint64_t& field) { std::atomic_ref<uint64_t>(field).fetch_add(1); }

std::mutex g_mu;
std::map<ncclComm*, CommPtr> g_comms;
std::map<std::string, std::shared_ptr<Store>> g_stores;  // kept for the life of the process

CommPtr find_comm(ncclComm* comm) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_comms.find(comm);
  return it == g_comms.end() ? nullptr : it->second;
}

CommPtr take_comm(ncclComm* comm) {
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_comms.find(comm);
  if (it == g_comms.end()) return nullptr;
  CommPtr c = it->second;
  g_comms.erase(it);
  return c;
}

ncclResult_t to_nccl(const Status& st) {
  switch (st.code()) {
    case Code::kOk:
      return ncclSuccess;
    case Code::kInvalidArgument:
      return ncclInvalidArgument;
    case Code::kRemote:
    case Code::kTimeout:
    case Code::kCorruptData:
      return ncclRemoteError;
    case Code::kInternal:
      return ncclInternalError;
    default:
      return ncclSystemError;
  }
}

ncclResult_t report(const char* what, const Status& st) {
  std::fprintf(stderr, "fake nccl: %s: %s\n", what, st.message().c_str());
  return to_nccl(st);
}

void set_error(ncclComm& c, ncclResult_t code, const std::string& why) {
  int expected = ncclSuccess;
  c.async_error.compare_exchange_strong(expected, code);
  bump(g_counters.errors);
  std::call_once(c.logged, [&] {
    std::fprintf(stderr,
                 "fake nccl: rank %d: %s; later operations of this communicator are skipped\n",
                 c.rank, why.c_str());
  });
}

// ---- init ------------------------------------------------------------------------------------

Status store_for(const std::string& url, int rank, std::chrono::milliseconds timeout,
                 std::shared_ptr<Store>* out) {
  // tcp://: one server per process (rank 0's), whatever the number of communicators on it. Every
  // other rank gets its own client: a client's get() holds it while it waits for a key, so two
  // ranks of one process sharing one would wait on each other.
  if (rank != 0) return coll::store_from_url(url, rank, timeout, out);
  const std::string key = url + "#root";
  std::lock_guard<std::mutex> lock(g_mu);
  auto it = g_stores.find(key);
  if (it == g_stores.end()) {
    std::shared_ptr<Store> store;
    GP_RETURN_IF_ERROR(coll::store_from_url(url, rank, timeout, &store));
    it = g_stores.emplace(key, std::move(store)).first;
  }
  *out = it->second;
  return OkStatus();
}

std::vector<uint8_t> handle_bytes(const transport::Handle& h) {
  return std::vector<uint8_t>(h.bytes.begin(), h.bytes.end());
}

// The send/recv mesh: every rank listens, publishes its handle, connects to every peer, then
// accepts one connection from each (connect never waits for the remote accept).
Status connect_p2p(ncclComm& c, Store& store) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  std::vector<transport::OpenedTransport> opened;
  GP_RETURN_IF_ERROR(transport::open(*settings, &opened));
  c.transport = std::move(opened.front().transport);
  transport::Handle mine;
  std::unique_ptr<transport::Listener> listener;
  GP_RETURN_IF_ERROR(c.transport->listen(0, &mine, &listener));
  GP_RETURN_IF_ERROR(store.set("p2p/" + std::to_string(c.rank), handle_bytes(mine)));
  const auto deadline = std::chrono::steady_clock::now() + c.timeout;
  auto left = [&] {
    return std::max(std::chrono::milliseconds(1),
                    std::chrono::duration_cast<std::chrono::milliseconds>(
                        deadline - std::chrono::steady_clock::now()));
  };
  c.send.resize(static_cast<size_t>(c.nranks));
  c.recv.resize(static_cast<size_t>(c.nranks));
  for (int p = 0; p < c.nranks; ++p) {
    if (p == c.rank) continue;
    std::vector<uint8_t> bytes;
    GP_RETURN_IF_ERROR(store.get("p2p/" + std::to_string(p), left(), &bytes));
    if (bytes.size() != transport::kHandleBytes) return CorruptData("bad p2p handle");
    transport::Handle theirs;
    std::memcpy(theirs.bytes.data(), bytes.data(), bytes.size());
    GP_RETURN_IF_ERROR(c.transport->connect(0, theirs, static_cast<uint64_t>(c.rank), left(),
                                            &c.send[static_cast<size_t>(p)]));
  }
  for (int accepted = 0; accepted < c.nranks - 1;) {
    if (std::chrono::steady_clock::now() >= deadline) {
      return Status(Code::kTimeout, "fake nccl: peers did not connect for send/recv in time");
    }
    std::unique_ptr<transport::RecvConnection> conn;
    GP_RETURN_IF_ERROR(listener->accept(std::min(left(), std::chrono::milliseconds(100)), &conn));
    if (conn == nullptr) continue;
    const uint64_t peer = conn->hello();
    if (peer >= static_cast<uint64_t>(c.nranks) || c.recv[peer] != nullptr) {
      return CorruptData("fake nccl: unexpected send/recv connection from rank " +
                         std::to_string(peer));
    }
    c.recv[peer] = std::move(conn);
    ++accepted;
  }
  return OkStatus();
}

Status init_comm(ncclComm& c, const std::string& id_text) {
  const Settings* settings = nullptr;
  GP_RETURN_IF_ERROR(Settings::global(&settings));
  c.timeout = std::chrono::milliseconds(settings->get_int(SettingId::kTimeoutMs));
  const size_t hash = id_text.find('#');
  const std::string url = id_text.substr(0, hash);
  const std::string name = hash == std::string::npos ? "fake-nccl" : id_text.substr(hash + 1);
  std::shared_ptr<Store> store;
  GP_RETURN_IF_ERROR(store_for(url, c.rank, c.timeout, &store));
  auto coll_store = std::make_shared<PrefixStore>(name + "/coll", store);
  GP_RETURN_IF_ERROR(
      coll::Communicator::create(c.rank, c.nranks, coll_store, coll::CommOptions{}, &c.coll));
  PrefixStore p2p_store(name + "/p2p", store);
  return connect_p2p(c, p2p_store);
}

// ---- operations ------------------------------------------------------------------------------

struct Op {
  enum class Kind { kSend, kRecv, kAllReduce } kind = Kind::kSend;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  size_t bytes = 0;  // send/recv
  gp_dtype_t dtype = GP_FLOAT32;
  gp_redop_t op = GP_SUM;
  int peer = -1;
};

struct Pending {
  CommPtr comm;
  cudaStream_t stream = nullptr;
  Op op;
};

thread_local int t_group_depth = 0;
thread_local std::vector<Pending> t_pending;

size_t type_bytes(ncclDataType_t t) {
  switch (t) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

bool to_gp_dtype(ncclDataType_t t, gp_dtype_t* out) {
  switch (t) {
    case ncclInt8:
      *out = GP_INT8;
      return true;
    case ncclUint8:
      *out = GP_UINT8;
      return true;
    case ncclInt32:
      *out = GP_INT32;
      return true;
    case ncclInt64:
      *out = GP_INT64;
      return true;
    case ncclFloat16:
      *out = GP_FLOAT16;
      return true;
    case ncclFloat32:
      *out = GP_FLOAT32;
      return true;
    case ncclFloat64:
      *out = GP_FLOAT64;
      return true;
    case ncclBfloat16:
      *out = GP_BFLOAT16;
      return true;
    default:
      return false;
  }
}

bool to_gp_op(ncclRedOp_t op, gp_redop_t* out) {
  switch (op) {
    case ncclSum:
      *out = GP_SUM;
      return true;
    case ncclProd:
      *out = GP_PROD;
      return true;
    case ncclMin:
      *out = GP_MIN;
      return true;
    case ncclMax:
      *out = GP_MAX;
      return true;
    case ncclAvg:
      *out = GP_AVG;
      return true;
    default:
      return false;
  }
}

// Self sends fill self receives in order, as copies.
Status match_self(const std::vector<const Op*>& sends, const std::vector<const Op*>& recvs) {
  if (sends.size() != recvs.size()) {
    return InvalidArgument("fake nccl: " + std::to_string(sends.size()) + " sends to self, " +
                           std::to_string(recvs.size()) + " receives from self in one group");
  }
  for (size_t i = 0; i < sends.size(); ++i) {
    if (sends[i]->bytes != recvs[i]->bytes) return InvalidArgument("fake nccl: self send size");
    if (sends[i]->bytes > 0) std::memcpy(recvs[i]->recv, sends[i]->send, sends[i]->bytes);
  }
  return OkStatus();
}

struct Posted {
  std::unique_ptr<transport::Request> request;
  const Op* op = nullptr;
  bool done = false;
};

Status post_p2p(ncclComm& c, const std::vector<Op>& ops, std::vector<Posted>* posted) {
  std::vector<const Op*> self_sends;
  std::vector<const Op*> self_recvs;
  for (const Op& op : ops) {
    if (op.kind == Op::Kind::kAllReduce) continue;
    const bool is_send = op.kind == Op::Kind::kSend;
    if (op.peer == c.rank) {
      (is_send ? self_sends : self_recvs).push_back(&op);
      continue;
    }
    Posted p;
    p.op = &op;
    const auto peer = static_cast<size_t>(op.peer);
    if (is_send) {
      GP_RETURN_IF_ERROR(c.send[peer]->isend(op.send, op.bytes, 0, nullptr, &p.request));
    } else {
      GP_RETURN_IF_ERROR(c.recv[peer]->irecv(op.recv, op.bytes, 0, nullptr, &p.request));
    }
    posted->push_back(std::move(p));
  }
  return match_self(self_sends, self_recvs);
}

Status wait_p2p(ncclComm& c, std::vector<Posted>& posted) {
  const auto deadline = std::chrono::steady_clock::now() + c.timeout;
  for (;;) {
    const uint64_t epoch = c.transport->progress_epoch(0);
    bool all = true;
    for (Posted& p : posted) {
      if (p.done) continue;
      size_t bytes = 0;
      GP_RETURN_IF_ERROR(p.request->test(&p.done, &bytes));
      if (p.done && p.op->kind == Op::Kind::kRecv && bytes != p.op->bytes) {
        return CorruptData("fake nccl: received " + std::to_string(bytes) + " bytes from rank " +
                           std::to_string(p.op->peer) + ", expected " +
                           std::to_string(p.op->bytes));
      }
      all = all && p.done;
    }
    if (all) return OkStatus();
    if (c.aborted.load()) return Status(Code::kRemote, "fake nccl: communicator aborted");
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) {
      return Status(Code::kTimeout, "fake nccl: send/recv did not complete within " +
                                        std::to_string(c.timeout.count()) + " ms");
    }
    c.transport->wait_progress(0, epoch, std::min(deadline, now + std::chrono::milliseconds(10)));
  }
}

Status execute(ncclComm& c, const std::vector<Op>& ops) {
  std::vector<Posted> posted;
  GP_RETURN_IF_ERROR(post_p2p(c, ops, &posted));
  for (const Op& op : ops) {
    if (op.kind != Op::Kind::kAllReduce || op.count == 0) continue;
    GP_RETURN_IF_ERROR(c.coll->allreduce(op.send, op.recv, op.count, op.dtype, op.op,
                                         coll::AllreduceOptions::uncompressed()));
  }
  GP_RETURN_IF_ERROR(wait_p2p(c, posted));
  for (const Op& op : ops) {
    bump(op.kind == Op::Kind::kSend   ? g_counters.sends
         : op.kind == Op::Kind::kRecv ? g_counters.recvs
                                      : g_counters.all_reduces);
  }
  return OkStatus();
}

uint64_t take_ticket(ncclComm& c) {
  std::lock_guard<std::mutex> lock(c.mu);
  return c.issued++;
}

// One (communicator, stream) batch, on the stream's worker, in ticket order.
void run_batch(const CommPtr& c, int64_t ticket, const std::vector<Op>& ops, cudaStream_t stream) {
  const uint64_t t = ticket >= 0 ? static_cast<uint64_t>(ticket) : take_ticket(*c);
  {
    std::unique_lock<std::mutex> lock(c->mu);
    c->cv.wait(lock, [&] { return c->finished == t; });
  }
  Status faulted = fake::stream_error(stream);
  if (!faulted.ok()) {
    set_error(*c, ncclUnhandledCudaError, "the stream is faulted: " + faulted.message());
  } else if (!c->aborted.load() && c->async_error.load() == ncclSuccess) {
    std::lock_guard<std::mutex> io(c->io_mu);
    if (!c->aborted.load()) {
      Status st = execute(*c, ops);
      if (!st.ok())
        set_error(*c, st.code() == Code::kRemote ? ncclRemoteError : to_nccl(st), st.message());
    }
  }
  std::lock_guard<std::mutex> lock(c->mu);
  ++c->finished;
  c->cv.notify_all();
}

// Queues a batch. Not capturing: a host task (it runs even on a faulted stream, so its ticket
// always finishes). Capturing: a recorded task that takes its ticket when a replay runs it.
ncclResult_t issue_batch(const CommPtr& c, cudaStream_t stream, std::vector<Op> ops) {
  if (fake::is_capturing(stream)) {
    Status st = fake::enqueue(stream, "nccl", [c, ops = std::move(ops), stream] {
      run_batch(c, -1, ops, stream);
      return OkStatus();
    });
    return st.ok() ? ncclSuccess : report("issue", st);
  }
  std::lock_guard<std::mutex> lock(c->mu);  // the ticket and the queue position agree
  const auto ticket = static_cast<int64_t>(c->issued);
  Status st = fake::enqueue_host(stream, "nccl", [c, ops = std::move(ops), stream, ticket] {
    run_batch(c, ticket, ops, stream);
  });
  if (!st.ok()) return report("issue", st);
  ++c->issued;
  return ncclSuccess;
}

ncclResult_t issue(std::vector<Pending> pending) {
  struct Batch {
    CommPtr comm;
    cudaStream_t stream;
    std::vector<Op> ops;
  };
  std::vector<Batch> batches;
  for (Pending& p : pending) {
    auto it = std::find_if(batches.begin(), batches.end(), [&](const Batch& b) {
      return b.comm == p.comm && b.stream == p.stream;
    });
    if (it == batches.end()) it = batches.insert(batches.end(), Batch{p.comm, p.stream, {}});
    it->ops.push_back(p.op);
  }
  bump(g_counters.groups);
  ncclResult_t result = ncclSuccess;
  for (Batch& b : batches) {
    ncclResult_t r = issue_batch(b.comm, b.stream, std::move(b.ops));
    if (result == ncclSuccess) result = r;
  }
  return result;
}

// Checks common to every operation, then queues it (or collects it inside a group).
ncclResult_t submit(ncclComm_t comm, cudaStream_t stream, const Op& op,
                    std::initializer_list<const void*> buffers) {
  CommPtr c = find_comm(comm);
  if (c == nullptr) return report("operation", InvalidArgument("not a communicator"));
  const int dev = fake::stream_device(stream);
  if (dev != c->device) {
    return report("operation",
                  InvalidArgument("a stream of device " + std::to_string(dev) +
                                  " for a communicator of device " + std::to_string(c->device)));
  }
  for (const void* b : buffers) {
    const int owner = fake::pointer_device(b);
    if (owner >= 0 && owner != c->device) {
      return report("operation",
                    InvalidArgument("a buffer of device " + std::to_string(owner) +
                                    " for a communicator of device " + std::to_string(c->device)));
    }
  }
  if (op.kind != Op::Kind::kAllReduce && (op.peer < 0 || op.peer >= c->nranks)) {
    return report("send/recv", InvalidArgument("peer " + std::to_string(op.peer) +
                                               " is not a rank of the communicator"));
  }
  if (t_group_depth > 0) {
    t_pending.push_back(Pending{c, stream, op});
    return ncclSuccess;
  }
  return issue({Pending{c, stream, op}});
}

}  // namespace
}  // namespace gradpack::fake_nccl

// ---- NCCL's API ----------------------------------------------------------------------------

namespace fn = gradpack::fake_nccl;
using gradpack::Code;
using gradpack::Status;

#define FAKE_EXPORT __attribute__((visibility("default")))
// pncclX: the same function under NCCL's profiling name.
#define FAKE_ALIAS(ret, name, params) \
  extern "C" FAKE_EXPORT ret p##name params __attribute__((alias(#name)));

extern "C" {

FAKE_EXPORT const FakeNcclCounters* gradpack_fake_nccl_counters() { return &fn::g_counters; }

FAKE_EXPORT void gradpack_fake_nccl_reset_counters() {
  for (uint64_t* f : {&fn::g_counters.all_reduces, &fn::g_counters.sends, &fn::g_counters.recvs,
                      &fn::g_counters.groups, &fn::g_counters.errors})
    std::atomic_ref<uint64_t>(*f).store(0);
}

FAKE_EXPORT ncclResult_t gradpack_fake_nccl_unique_id(const char* url, ncclUniqueId* out) {
  if (url == nullptr || out == nullptr || std::strlen(url) >= sizeof(out->internal)) {
    return ncclInvalidArgument;
  }
  std::memset(out->internal, 0, sizeof(out->internal));
  std::memcpy(out->internal, url, std::strlen(url));
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclGetVersion(int* version) {
  if (version == nullptr) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclGetUniqueId(ncclUniqueId* id) {
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/gradpack-fake-nccl-XXXXXX";
  if (mkdtemp(pattern.data()) == nullptr) {
    return fn::report("ncclGetUniqueId", gradpack::SystemError("mkdtemp " + pattern));
  }
  return gradpack_fake_nccl_unique_id(("file://" + pattern).c_str(), id);
}

FAKE_EXPORT ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  if (comm == nullptr || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  auto c = std::make_shared<ncclComm>();
  c->rank = rank;
  c->nranks = nranks;
  c->device = gradpack::fake::current_device();
  const std::string text(id.internal, strnlen(id.internal, sizeof(id.internal)));
  Status st = fn::init_comm(*c, text);
  if (!st.ok()) return fn::report("ncclCommInitRank", st);
  std::lock_guard<std::mutex> lock(fn::g_mu);
  fn::g_comms[c.get()] = c;
  *comm = c.get();
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  fn::CommPtr c = fn::find_comm(comm);
  if (c == nullptr) return ncclInvalidArgument;
  {
    std::unique_lock<std::mutex> lock(c->mu);
    c->cv.wait(lock, [&] { return c->finished == c->issued; });
  }
  fn::take_comm(comm);
  std::lock_guard<std::mutex> io(c->io_mu);
  c->send.clear();
  c->recv.clear();
  c->coll.reset();
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclCommAbort(ncclComm_t comm) {
  fn::CommPtr c = fn::take_comm(comm);
  if (c == nullptr) return ncclInvalidArgument;
  c->aborted = true;
  int expected = ncclSuccess;
  c->async_error.compare_exchange_strong(expected, ncclRemoteError);
  if (c->coll != nullptr) c->coll->cancel();  // safe while a collective runs
  std::lock_guard<std::mutex> io(c->io_mu);   // the running operation leaves within ~10 ms
  c->send.clear();                            // the peers' operations fail now
  c->recv.clear();
  c->coll.reset();
  return ncclSuccess;  // queued tasks skip; the rest is freed with the last of them
}

FAKE_EXPORT ncclResult_t ncclCommCount(const ncclComm_t comm, int* count) {
  fn::CommPtr c = fn::find_comm(comm);
  if (c == nullptr || count == nullptr) return ncclInvalidArgument;
  *count = c->nranks;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclCommUserRank(const ncclComm_t comm, int* rank) {
  fn::CommPtr c = fn::find_comm(comm);
  if (c == nullptr || rank == nullptr) return ncclInvalidArgument;
  *rank = c->rank;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int* device) {
  fn::CommPtr c = fn::find_comm(comm);
  if (c == nullptr || device == nullptr) return ncclInvalidArgument;
  *device = c->device;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* error) {
  fn::CommPtr c = fn::find_comm(comm);
  if (c == nullptr || error == nullptr) return ncclInvalidArgument;
  *error = static_cast<ncclResult_t>(c->async_error.load());
  return ncclSuccess;
}

FAKE_EXPORT const char* ncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error (fake: a faulted stream)";
    case ncclSystemError:
      return "unhandled system error (fake)";
    case ncclInternalError:
      return "internal error (fake)";
    case ncclInvalidArgument:
      return "invalid argument (fake)";
    case ncclInvalidUsage:
      return "invalid usage (fake)";
    case ncclRemoteError:
      return "remote process exited or there was a network error (fake)";
    case ncclInProgress:
      return "NCCL operation in progress";
    default:
      return "unknown result code";
  }
}

FAKE_EXPORT const char* ncclGetLastError(ncclComm_t) { return "see stderr (fake nccl)"; }

FAKE_EXPORT ncclResult_t ncclAllReduce(const void* sendbuff, void* recvbuff, size_t count,
                                       ncclDataType_t datatype, ncclRedOp_t op, ncclComm_t comm,
                                       cudaStream_t stream) {
  fn::Op o;
  o.kind = fn::Op::Kind::kAllReduce;
  o.send = sendbuff;
  o.recv = recvbuff;
  o.count = count;
  if (!fn::to_gp_dtype(datatype, &o.dtype) || !fn::to_gp_op(op, &o.op)) {
    return fn::report("ncclAllReduce", gradpack::InvalidArgument("unsupported type or op"));
  }
  return fn::submit(comm, stream, o, {sendbuff, recvbuff});
}

FAKE_EXPORT ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype,
                                  int peer, ncclComm_t comm, cudaStream_t stream) {
  fn::Op o;
  o.kind = fn::Op::Kind::kSend;
  o.send = sendbuff;
  o.count = count;
  o.bytes = count * fn::type_bytes(datatype);
  o.peer = peer;
  if (fn::type_bytes(datatype) == 0) return ncclInvalidArgument;
  return fn::submit(comm, stream, o, {sendbuff});
}

FAKE_EXPORT ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype, int peer,
                                  ncclComm_t comm, cudaStream_t stream) {
  fn::Op o;
  o.kind = fn::Op::Kind::kRecv;
  o.recv = recvbuff;
  o.count = count;
  o.bytes = count * fn::type_bytes(datatype);
  o.peer = peer;
  if (fn::type_bytes(datatype) == 0) return ncclInvalidArgument;
  return fn::submit(comm, stream, o, {recvbuff});
}

FAKE_EXPORT ncclResult_t ncclGroupStart() {
  ++fn::t_group_depth;
  return ncclSuccess;
}

FAKE_EXPORT ncclResult_t ncclGroupEnd() {
  if (fn::t_group_depth == 0) return ncclInvalidUsage;
  if (--fn::t_group_depth > 0) return ncclSuccess;
  std::vector<fn::Pending> pending = std::move(fn::t_pending);
  fn::t_pending.clear();
  if (pending.empty()) return ncclSuccess;
  return fn::issue(std::move(pending));
}

FAKE_EXPORT ncclResult_t ncclGroupSimulateEnd(ncclSimInfo_t* info) {
  if (fn::t_group_depth == 0) return ncclInvalidUsage;
  if (--fn::t_group_depth > 0) return ncclSuccess;
  float us = 0.0f;
  for (const fn::Pending& p : fn::t_pending) {
    const size_t bytes = p.op.kind == fn::Op::Kind::kAllReduce ? p.op.count * 4 : p.op.bytes;
    us += 1.0f + static_cast<float>(bytes) / 1000.0f;
  }
  fn::t_pending.clear();
  if (info != nullptr) info->estimatedTime = us;
  return ncclSuccess;
}

}  // extern "C"

FAKE_ALIAS(ncclResult_t, ncclGetVersion, (int*))
FAKE_ALIAS(ncclResult_t, ncclGetUniqueId, (ncclUniqueId*))
FAKE_ALIAS(ncclResult_t, ncclCommInitRank, (ncclComm_t*, int, ncclUniqueId, int))
FAKE_ALIAS(ncclResult_t, ncclCommDestroy, (ncclComm_t))
FAKE_ALIAS(ncclResult_t, ncclCommAbort, (ncclComm_t))
FAKE_ALIAS(ncclResult_t, ncclCommCount, (const ncclComm_t, int*))
FAKE_ALIAS(ncclResult_t, ncclCommUserRank, (const ncclComm_t, int*))
FAKE_ALIAS(ncclResult_t, ncclCommCuDevice, (const ncclComm_t, int*))
FAKE_ALIAS(ncclResult_t, ncclCommGetAsyncError, (ncclComm_t, ncclResult_t*))
FAKE_ALIAS(const char*, ncclGetErrorString, (ncclResult_t))
FAKE_ALIAS(const char*, ncclGetLastError, (ncclComm_t))
FAKE_ALIAS(ncclResult_t, ncclAllReduce,
           (const void*, void*, size_t, ncclDataType_t, ncclRedOp_t, ncclComm_t, cudaStream_t))
FAKE_ALIAS(ncclResult_t, ncclSend,
           (const void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))
FAKE_ALIAS(ncclResult_t, ncclRecv, (void*, size_t, ncclDataType_t, int, ncclComm_t, cudaStream_t))
FAKE_ALIAS(ncclResult_t, ncclGroupStart, ())
FAKE_ALIAS(ncclResult_t, ncclGroupEnd, ())
FAKE_ALIAS(ncclResult_t, ncclGroupSimulateEnd, (ncclSimInfo_t*))
