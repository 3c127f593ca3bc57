// SPDX-License-Identifier: Apache-2.0
#include "tests/net_plugin/harness.h"

#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <climits>

namespace gradpack::plugin_test {

std::string plugin_path() {
  const char* p = getenv("GRADPACK_PLUGIN");
  return p != nullptr ? p : "";
}

// ---- logging ----------------------------------------------------------------------------------
namespace {
std::mutex g_log_mu;
std::vector<std::string> g_warnings;
std::atomic<int> g_failures{0};
}  // namespace

void harness_logger(ncclDebugLogLevel level, unsigned long flags, const char* file, int line,
                    const char* fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  const bool verbose = getenv("GRADPACK_HARNESS_VERBOSE") != nullptr;
  if (level == NCCL_LOG_WARN) {
    std::lock_guard<std::mutex> lock(g_log_mu);
    g_warnings.emplace_back(text);
  }
  if (level == NCCL_LOG_WARN || level == NCCL_LOG_ABORT || (verbose && level != NCCL_LOG_NONE)) {
    fprintf(stderr, "[plugin %s %s:%d flags 0x%lx] %s\n",
            level == NCCL_LOG_WARN   ? "WARN"
            : level == NCCL_LOG_INFO ? "INFO"
                                     : "LOG",
            file != nullptr ? file : "?", line, flags, text);
  }
}

std::vector<std::string> captured_warnings() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  return g_warnings;
}

void clear_captured_warnings() {
  std::lock_guard<std::mutex> lock(g_log_mu);
  g_warnings.clear();
}

ncclResult_t dummy_profiler(void** handle, int type, void* parent, int64_t plugin_id, void* data) {
  if (handle != nullptr) *handle = nullptr;
  return ncclSuccess;
}

std::string format(const char* fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof(text), fmt, ap);
  va_end(ap);
  return text;
}

void report_failure(const char* file, int line, const char* cond, const std::string& msg) {
  ++g_failures;
  fprintf(stderr, "%s:%d: check failed: %s%s%s [pid %d]\n", file, line, cond,
          msg.empty() ? "" : ": ", msg.c_str(), getpid());
}

int failures() { return g_failures.load(); }

const char* result_name(ncclResult_t rc) {
  switch (rc) {
    case ncclSuccess:
      return "ncclSuccess";
    case ncclUnhandledCudaError:
      return "ncclUnhandledCudaError";
    case ncclSystemError:
      return "ncclSystemError";
    case ncclInternalError:
      return "ncclInternalError";
    case ncclInvalidArgument:
      return "ncclInvalidArgument";
    case ncclInvalidUsage:
      return "ncclInvalidUsage";
    case ncclRemoteError:
      return "ncclRemoteError";
    case ncclInProgress:
      return "ncclInProgress";
  }
  return "(not an ncclResult_t)";
}

// ---- the library ------------------------------------------------------------------------------
std::unique_ptr<Library> Library::open(const std::string& path, std::string* error) {
  void* handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* e = dlerror();
    *error = e != nullptr ? e : "dlopen failed";
    return nullptr;
  }
  if (getenv("GRADPACK_HARNESS_VERBOSE") != nullptr) {
    // The load address, to symbolize sanitizer reports about code that dlclose has unmapped
    // (addr2line -e PATH ADDRESS-BASE).
    Dl_info info{};
    void* table = dlsym(handle, "ncclNetPlugin_v11");
    if (table != nullptr && dladdr(table, &info) != 0) {
      fprintf(stderr, "harness: %s loaded at %p\n", path.c_str(), info.dli_fbase);
    }
  }
  return std::unique_ptr<Library>(new Library(path, handle));
}

Library::~Library() { dlclose(handle_); }

void* Library::symbol(const char* name) const { return dlsym(handle_, name); }

// ---- net faces --------------------------------------------------------------------------------
namespace {

class NetV11 final : public Net {
 public:
  explicit NetV11(ncclNet_v11_t* t) : t_(t) {}
  int version() const override { return 11; }
  const char* name() const override { return t_->name; }
  ncclResult_t init(void** ctx, uint64_t comm_id, int traffic_class, ncclDebugLogger_t logger,
                    ncclProfilerCallback_t profiler) override {
    ncclNetCommConfig_v11_t config{traffic_class};
    return t_->init(ctx, comm_id, &config, logger, profiler);
  }
  ncclResult_t finalize(void* ctx) override { return t_->finalize(ctx); }
  bool has_finalize() const override { return t_->finalize != nullptr; }
  ncclResult_t devices(int* ndev) override { return t_->devices(ndev); }
  ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props) override {
    return t_->getProperties(dev, props);
  }
  ncclResult_t listen(void* ctx, int dev, void* handle, void** lcomm) override {
    return t_->listen(ctx, dev, handle, lcomm);
  }
  ncclResult_t connect(void* ctx, int dev, void* handle, void** scomm) override {
    ncclNetDeviceHandle_v11_t* dev_handle = nullptr;
    return t_->connect(ctx, dev, handle, scomm, &dev_handle);
  }
  ncclResult_t accept(void* lcomm, void** rcomm) override {
    ncclNetDeviceHandle_v11_t* dev_handle = nullptr;
    return t_->accept(lcomm, rcomm, &dev_handle);
  }
  ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mh) override {
    return t_->regMr(comm, data, size, type, mh);
  }
  ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type, uint64_t offset,
                              int fd, void** mh) override {
    if (t_->regMrDmaBuf == nullptr) return ncclInternalError;
    return t_->regMrDmaBuf(comm, data, size, type, offset, fd, mh);
  }
  bool has_reg_mr_dma_buf() const override { return t_->regMrDmaBuf != nullptr; }
  ncclResult_t dereg_mr(void* comm, void* mh) override { return t_->deregMr(comm, mh); }
  ncclResult_t isend(void* scomm, void* data, size_t size, int tag, void* mh,
                     void** request) override {
    return t_->isend(scomm, data, size, tag, mh, nullptr, request);
  }
  ncclResult_t irecv(void* rcomm, int n, void** data, size_t* sizes, int* tags, void** mhs,
                     void** request) override {
    void* phandles[64] = {};
    return t_->irecv(rcomm, n, data, sizes, tags, mhs, phandles, request);
  }
  ncclResult_t iflush(void* rcomm, int n, void** data, int* sizes, void** mhs,
                      void** request) override {
    return t_->iflush(rcomm, n, data, sizes, mhs, request);
  }
  ncclResult_t test(void* request, int* done, int* sizes) override {
    return t_->test(request, done, sizes);
  }
  ncclResult_t close_send(void* c) override { return t_->closeSend(c); }
  ncclResult_t close_recv(void* c) override { return t_->closeRecv(c); }
  ncclResult_t close_listen(void* c) override { return t_->closeListen(c); }

 private:
  ncclNet_v11_t* t_;
};

// What NCCL's shims keep for a pre-v11 plugin: the traffic class per "context", and one real
// init per load (a refcount; the plugin never hears of the contexts).
struct OldCtx {
  int traffic_class;
};

template <typename Table, int kVersion>
class NetOld final : public Net {
 public:
  explicit NetOld(Table* t) : t_(t) {}
  int version() const override { return kVersion; }
  const char* name() const override { return t_->name; }
  ncclResult_t init(void** ctx, uint64_t comm_id, int traffic_class, ncclDebugLogger_t logger,
                    ncclProfilerCallback_t profiler) override {
    if (refs_ == 0) {
      ncclResult_t rc;
      if constexpr (kVersion == 10) {
        rc = t_->init(logger, profiler);
      } else {
        rc = t_->init(logger);
      }
      if (rc != ncclSuccess) return rc;
    }
    ++refs_;
    *ctx = new OldCtx{traffic_class};
    return ncclSuccess;
  }
  ncclResult_t finalize(void* ctx) override {
    delete static_cast<OldCtx*>(ctx);
    --refs_;  // the table has no finalize: NCCL only counts
    return ncclSuccess;
  }
  bool has_finalize() const override { return false; }
  ncclResult_t devices(int* ndev) override { return t_->devices(ndev); }
  ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* out) override {
    memset(out, 0, sizeof(*out));
    if constexpr (kVersion == 8) {
      ncclNetProperties_v8_t p{};
      ncclResult_t rc = t_->getProperties(dev, &p);
      if (rc != ncclSuccess) return rc;
      out->name = p.name;
      out->pciPath = p.pciPath;
      out->guid = p.guid;
      out->ptrSupport = p.ptrSupport;
      out->regIsGlobal = p.regIsGlobal;
      out->forceFlush = 0;
      out->speed = p.speed;
      out->port = p.port;
      out->latency = p.latency;
      out->maxComms = p.maxComms;
      out->maxRecvs = p.maxRecvs;
      out->netDeviceType = p.netDeviceType;
      out->netDeviceVersion = p.netDeviceVersion;
      out->vProps.ndevs = 1;
      out->vProps.devs[0] = dev;
      out->maxP2pBytes = size_t{1} << 30;  // NCCL's v8 shim defaults
      out->maxCollBytes = size_t{512} << 20;
    } else {
      ncclNetProperties_v10_t p{};
      ncclResult_t rc = t_->getProperties(dev, &p);
      if (rc != ncclSuccess) return rc;
      static_assert(sizeof(p) <= sizeof(*out));
      memcpy(out, &p, sizeof(p));  // v11 only appends maxMultiRequestSize
    }
    out->maxMultiRequestSize = 1;
    return ncclSuccess;
  }
  ncclResult_t listen(void* ctx, int dev, void* handle, void** lcomm) override {
    return t_->listen(dev, handle, lcomm);
  }
  ncclResult_t connect(void* ctx, int dev, void* handle, void** scomm) override {
    ncclNetDeviceHandle_v11_t* dev_handle = nullptr;
    if constexpr (kVersion == 10) {
      ncclNetCommConfig_v10_t config{static_cast<OldCtx*>(ctx)->traffic_class};
      return t_->connect(dev, &config, handle, scomm, &dev_handle);
    } else {
      return t_->connect(dev, handle, scomm, &dev_handle);
    }
  }
  ncclResult_t accept(void* lcomm, void** rcomm) override {
    ncclNetDeviceHandle_v11_t* dev_handle = nullptr;
    return t_->accept(lcomm, rcomm, &dev_handle);
  }
  ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mh) override {
    return t_->regMr(comm, data, size, type, mh);
  }
  ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type, uint64_t offset,
                              int fd, void** mh) override {
    if (t_->regMrDmaBuf == nullptr) return ncclInternalError;
    return t_->regMrDmaBuf(comm, data, size, type, offset, fd, mh);
  }
  bool has_reg_mr_dma_buf() const override { return t_->regMrDmaBuf != nullptr; }
  ncclResult_t dereg_mr(void* comm, void* mh) override { return t_->deregMr(comm, mh); }
  ncclResult_t isend(void* scomm, void* data, size_t size, int tag, void* mh,
                     void** request) override {
    if constexpr (kVersion == 10) {
      return t_->isend(scomm, data, size, tag, mh, nullptr, request);
    } else if constexpr (kVersion == 9) {
      return t_->isend(scomm, data, size, tag, mh, request);
    } else {
      if (size > (size_t{1} << 30)) return ncclInternalError;  // NCCL's v8 shim refuses
      return t_->isend(scomm, data, static_cast<int>(size), tag, mh, request);
    }
  }
  ncclResult_t irecv(void* rcomm, int n, void** data, size_t* sizes, int* tags, void** mhs,
                     void** request) override {
    if constexpr (kVersion == 10) {
      void* phandles[64] = {};
      return t_->irecv(rcomm, n, data, sizes, tags, mhs, phandles, request);
    } else if constexpr (kVersion == 9) {
      return t_->irecv(rcomm, n, data, sizes, tags, mhs, request);
    } else {
      int isizes[64];
      for (int i = 0; i < n && i < 64; ++i) {
        if (sizes[i] > (size_t{1} << 30)) return ncclInternalError;
        isizes[i] = static_cast<int>(sizes[i]);
      }
      // NCCL's v8 shim: the optional-completion hint is not part of the v8 ABI.
      if (*request == reinterpret_cast<void*>(NCCL_NET_OPTIONAL_RECV_COMPLETION)) {
        *request = nullptr;
      }
      return t_->irecv(rcomm, n, data, isizes, tags, mhs, request);
    }
  }
  ncclResult_t iflush(void* rcomm, int n, void** data, int* sizes, void** mhs,
                      void** request) override {
    return t_->iflush(rcomm, n, data, sizes, mhs, request);
  }
  ncclResult_t test(void* request, int* done, int* sizes) override {
    return t_->test(request, done, sizes);
  }
  ncclResult_t close_send(void* c) override { return t_->closeSend(c); }
  ncclResult_t close_recv(void* c) override { return t_->closeRecv(c); }
  ncclResult_t close_listen(void* c) override { return t_->closeListen(c); }

 private:
  Table* t_;
  int refs_ = 0;
};

}  // namespace

std::unique_ptr<Net> make_net(const Library& lib, int version) {
  const std::string sym = "ncclNetPlugin_v" + std::to_string(version);
  void* table = lib.symbol(sym.c_str());
  if (table == nullptr) return nullptr;
  switch (version) {
    case 11:
      return std::make_unique<NetV11>(static_cast<ncclNet_v11_t*>(table));
    case 10:
      return std::make_unique<NetOld<ncclNet_v10_t, 10>>(static_cast<ncclNet_v10_t*>(table));
    case 9:
      return std::make_unique<NetOld<ncclNet_v9_t, 9>>(static_cast<ncclNet_v9_t*>(table));
    case 8:
      return std::make_unique<NetOld<ncclNet_v8_t, 8>>(static_cast<ncclNet_v8_t*>(table));
    default:
      return nullptr;
  }
}

// ---- threads ----------------------------------------------------------------------------------
Worker::Worker(const char* name) {
  thread_ = std::thread([this] { loop(); });
  pthread_setname_np(thread_.native_handle(), name);
}

Worker::~Worker() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Worker::loop() {
  for (;;) {
    std::function<void()> fn;
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;
      fn = std::move(queue_.front());
      queue_.pop_front();
    }
    fn();
  }
}

void Worker::post(std::function<void()> fn) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    queue_.push_back(std::move(fn));
  }
  cv_.notify_all();
}

bool Worker::run(const std::function<bool()>& fn) {
  std::promise<bool> done;
  std::future<bool> result = done.get_future();
  post([&] { done.set_value(fn()); });
  return result.get();
}

void Worker::start(std::function<bool()> fn) {
  auto done = std::make_shared<std::promise<bool>>();
  started_ = done->get_future();
  post([done, fn = std::move(fn)] { done->set_value(fn()); });
}

bool Worker::wait() { return started_.valid() ? started_.get() : false; }

int thread_count() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// ---- processes --------------------------------------------------------------------------------
bool Channel::send(const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::send(fd_, p, size, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

bool Channel::recv(void* data, size_t size, std::chrono::milliseconds timeout) {
  char* p = static_cast<char*>(data);
  const auto deadline = Clock::now() + timeout;
  while (size > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd pfd{fd_, POLLIN, 0};
    int r = poll(&pfd, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    ssize_t n = ::recv(fd_, p, size, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::vector<int> run_pair(const std::function<int(Channel&)>& rank0,
                          const std::function<int(Channel&)>& rank1, std::chrono::seconds deadline,
                          std::vector<pid_t>* pids_out) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return {-1, -1};
  fflush(stdout);
  fflush(stderr);
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    pid_t pid = fork();
    if (pid == 0) {
      close(sv[1 - r]);
      Channel ch(sv[r]);
      int code = r == 0 ? rank0(ch) : rank1(ch);
      code += failures();
      fflush(stdout);
      fflush(stderr);
      _exit(std::min(code, 100));
    }
    pids.push_back(pid);
  }
  close(sv[0]);
  close(sv[1]);
  if (pids_out != nullptr) *pids_out = pids;
  std::vector<int> codes(2, -1);
  const auto until = Clock::now() + deadline;
  int left = 2;
  while (left > 0) {
    for (int r = 0; r < 2; ++r) {
      if (codes[r] != -1) continue;
      int status = 0;
      pid_t got = waitpid(pids[r], &status, WNOHANG);
      if (got == pids[r]) {
        codes[r] = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        --left;
      }
    }
    if (left > 0 && Clock::now() > until) {
      for (int r = 0; r < 2; ++r) {
        if (codes[r] != -1) continue;
        fprintf(stderr, "harness: rank %d (pid %d) still running after %lld s: killed\n", r,
                pids[r], static_cast<long long>(deadline.count()));
        kill(pids[r], SIGKILL);
        waitpid(pids[r], nullptr, 0);
        codes[r] = 124;
        --left;
      }
    }
    if (left > 0) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return codes;
}

// ---- connections ------------------------------------------------------------------------------
bool connect_accept(Net& net, void* ctx, int dev, void* handle, void* lcomm, void** scomm,
                    void** rcomm) {
  *scomm = nullptr;
  *rcomm = nullptr;
  const auto deadline = Clock::now() + kStepDeadline;
  while (*scomm == nullptr || *rcomm == nullptr) {
    if (*scomm == nullptr) PT_OK(net.connect(ctx, dev, handle, scomm));
    if (*rcomm == nullptr) PT_OK(net.accept(lcomm, rcomm));
    PT_CHECK(Clock::now() < deadline,
             "connect/accept not done after %lld s (connect %s, accept %s)",
             static_cast<long long>(kStepDeadline.count()), *scomm ? "done" : "pending",
             *rcomm ? "done" : "pending");
    if (*scomm == nullptr || *rcomm == nullptr)
      std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

bool connect_until_done(Net& net, void* ctx, int dev, void* handle, void** scomm) {
  *scomm = nullptr;
  const auto deadline = Clock::now() + kStepDeadline;
  while (*scomm == nullptr) {
    PT_OK(net.connect(ctx, dev, handle, scomm));
    PT_CHECK(*scomm != nullptr || Clock::now() < deadline, "connect not done after %lld s",
             static_cast<long long>(kStepDeadline.count()));
    if (*scomm == nullptr) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

bool accept_until_done(Net& net, void* lcomm, void** rcomm) {
  *rcomm = nullptr;
  const auto deadline = Clock::now() + kStepDeadline;
  while (*rcomm == nullptr) {
    PT_OK(net.accept(lcomm, rcomm));
    PT_CHECK(*rcomm != nullptr || Clock::now() < deadline, "accept not done after %lld s",
             static_cast<long long>(kStepDeadline.count()));
    if (*rcomm == nullptr) std::this_thread::sleep_for(std::chrono::microseconds(50));
  }
  return true;
}

// ---- data path --------------------------------------------------------------------------------
// Step sizes and slices of NCCL 2.28.9 (src/transport/net.cc, sendProxyProgress).
const Protocol kLL{"LL", 512 * 1024, 64 * 1024, 1, true};
const Protocol kLL128{"LL128", 4915200, 614400, 1, true};
const Protocol kSimple{"SIMPLE", 4 << 20, 512 * 1024, 1, false};
const Protocol kSimpleSlice2{"SIMPLE/slice2", 4 << 20, 512 * 1024, 2, false};

void fill_pattern(uint8_t* data, size_t size, int tag, uint64_t seq) {
  for (size_t i = 0; i < size; ++i) data[i] = pattern(tag, seq, i);
}

size_t check_pattern(const uint8_t* data, size_t size, int tag, uint64_t seq) {
  for (size_t i = 0; i < size; ++i) {
    if (data[i] != pattern(tag, seq, i)) return i;
  }
  return size;
}

HostBuffer::HostBuffer(size_t size) : size_(size) {
  void* p = mmap(nullptr, std::max<size_t>(size, 1), PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  data_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
}

HostBuffer::~HostBuffer() {
  if (data_ != nullptr) munmap(data_, std::max<size_t>(size_, 1));
}

namespace {
constexpr uint8_t kCanary = 0xEE;

struct Slot {
  void* request = nullptr;
  bool done = false;
  uint64_t seq = 0;
  size_t size = 0;
};
}  // namespace

bool run_ring(Net& net, const RingOptions& o, const RingEnd& send, const RingEnd& recv,
              RingResult* result, Clock::time_point deadline) {
  const size_t slot_bytes = o.proto.step_bytes * static_cast<size_t>(o.proto.slice_steps);
  // NCCL_STEPS = 8 steps per buffer; a buffer made for bigger messages holds fewer slots.
  const int nslots = static_cast<int>(std::min<size_t>(8 / static_cast<size_t>(o.proto.slice_steps),
                                                       o.proto.buffer_bytes / slot_bytes));
  const int depth = std::min(o.depth, nslots);
  auto size_of = [&](uint64_t seq) {
    return o.sizes.empty() ? slot_bytes : o.sizes[seq % o.sizes.size()];
  };
  for (size_t s : o.sizes) PT_CHECK(s <= slot_bytes, "send size %zu > slot %zu", s, slot_bytes);
  std::vector<Slot> sends(static_cast<size_t>(depth)), recvs(static_cast<size_t>(depth));
  uint64_t send_posted = 0, send_done = 0, recv_posted = 0, recv_done = 0;
  const bool do_send = send.comm != nullptr, do_recv = recv.comm != nullptr;
  auto fail = [&](ncclResult_t rc, std::string what) {
    result->error = rc;
    result->what = std::move(what);
    return false;
  };
  while ((do_send && send_done < o.messages) || (do_recv && recv_done < o.messages)) {
    bool progressed = false;
    // Post sends while a slot is free; a NULL request is retried on the next pass.
    while (do_send && send_posted < o.messages &&
           send_posted - send_done < static_cast<uint64_t>(depth)) {
      Slot& s = sends[send_posted % depth];
      const uint64_t seq = send_posted;
      uint8_t* data = send.buffer + (seq % nslots) * slot_bytes;
      const size_t size = size_of(seq);
      if (s.request == nullptr && !s.done && o.verify && s.seq != seq + 1) {
        fill_pattern(data, size, o.send_tag, seq);
        s.seq = seq + 1;  // filled once, even if isend asks for a retry
      }
      void* req = nullptr;
      ncclResult_t rc = net.isend(send.comm, data, size, o.send_tag, send.mhandle, &req);
      if (rc != ncclSuccess)
        return fail(rc, format("isend #%llu", static_cast<unsigned long long>(seq)));
      if (req == nullptr) break;
      s = Slot{req, false, seq, size};
      ++send_posted;
      progressed = true;
    }
    while (do_recv && recv_posted < o.messages &&
           recv_posted - recv_done < static_cast<uint64_t>(depth)) {
      Slot& s = recvs[recv_posted % depth];
      const uint64_t seq = recv_posted;
      uint8_t* data = recv.buffer + (seq % nslots) * slot_bytes;
      if (o.verify) memset(data, kCanary, slot_bytes);
      void* ptr = data;
      size_t size = slot_bytes;
      int tag = o.recv_tag;
      void* mh = recv.mhandle;
      void* req = o.proto.optional_completion
                      ? reinterpret_cast<void*>(NCCL_NET_OPTIONAL_RECV_COMPLETION)
                      : nullptr;
      ncclResult_t rc = net.irecv(recv.comm, 1, &ptr, &size, &tag, &mh, &req);
      if (rc != ncclSuccess)
        return fail(rc, format("irecv #%llu", static_cast<unsigned long long>(seq)));
      PT_CHECK(req != reinterpret_cast<void*>(NCCL_NET_OPTIONAL_RECV_COMPLETION),
               "irecv left the 0x1 optional-completion hint in *request");
      if (req == nullptr) break;
      s = Slot{req, false, seq, 0};
      ++recv_posted;
      progressed = true;
    }
    // Test: NCCL tests only the oldest; the out-of-order mode tests every outstanding request,
    // newest first, and frees slots in order as NCCL's ring would.
    auto test_range = [&](std::vector<Slot>& slots, uint64_t first, uint64_t end,
                          bool is_recv) -> bool {
      uint64_t last = o.test_out_of_order ? end : std::min(end, first + 1);
      for (uint64_t k = last; k-- > first;) {
        Slot& s = slots[k % depth];
        if (s.done) continue;
        int done = 0;
        int sizes[64];
        for (int& v : sizes) v = is_recv ? 0 : -1;
        ncclResult_t rc = net.test(s.request, &done, sizes);
        if (rc != ncclSuccess) {
          return fail(rc, format("test of %s #%llu", is_recv ? "irecv" : "isend",
                                 static_cast<unsigned long long>(s.seq)));
        }
        if (!done) continue;
        s.done = true;
        progressed = true;
        if (is_recv) {
          const size_t expect = size_of(s.seq);
          PT_CHECK(sizes[0] >= 0 && static_cast<size_t>(sizes[0]) == expect,
                   "%s receive #%llu: test says %d bytes, the sender sent %zu", o.proto.name,
                   static_cast<unsigned long long>(s.seq), sizes[0], expect);
          result->bytes_received += expect;
          ++result->messages_received;
          if (o.verify) {
            const uint8_t* data = recv.buffer + (s.seq % nslots) * slot_bytes;
            size_t bad = check_pattern(data, expect, o.recv_tag, s.seq);
            PT_CHECK(bad == expect, "%s receive #%llu (%zu bytes): byte %zu is wrong", o.proto.name,
                     static_cast<unsigned long long>(s.seq), expect, bad);
            for (size_t i = expect; i < slot_bytes; ++i) {
              PT_CHECK(data[i] == kCanary,
                       "%s receive #%llu of %zu bytes wrote byte %zu of the slot", o.proto.name,
                       static_cast<unsigned long long>(s.seq), expect, i);
            }
          }
        } else {
          PT_CHECK(sizes[0] == -1 || static_cast<size_t>(sizes[0]) == s.size,
                   "send #%llu of %zu bytes: test says %d", static_cast<unsigned long long>(s.seq),
                   s.size, sizes[0]);
        }
      }
      return true;
    };
    if (do_send && send_done < send_posted) {
      if (!test_range(sends, send_done, send_posted, false)) return false;
      while (send_done < send_posted && sends[send_done % depth].done) {
        sends[send_done % depth] = Slot{};
        ++send_done;
      }
    }
    if (do_recv && recv_done < recv_posted) {
      if (!test_range(recvs, recv_done, recv_posted, true)) return false;
      while (recv_done < recv_posted && recvs[recv_done % depth].done) {
        recvs[recv_done % depth] = Slot{};
        ++recv_done;
      }
    }
    if (Clock::now() > deadline) {
      report_failure(
          __FILE__, __LINE__, "deadline",
          format(
              "%s ring stuck: sends %llu posted %llu done, receives %llu posted %llu done of %llu",
              o.proto.name, static_cast<unsigned long long>(send_posted),
              static_cast<unsigned long long>(send_done),
              static_cast<unsigned long long>(recv_posted),
              static_cast<unsigned long long>(recv_done),
              static_cast<unsigned long long>(o.messages)));
      return fail(ncclSuccess, "deadline");
    }
    if (!progressed) {
      if (o.idle_sleep_us > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds(o.idle_sleep_us));
      } else {
        std::this_thread::yield();
      }
    }
  }
  return true;
}

}  // namespace gradpack::plugin_test
