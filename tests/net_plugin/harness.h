// SPDX-License-Identifier: Apache-2.0
// The conformance harness: drives libnccl-net-gradpack.so the way NCCL 2.28.9's proxy does
// (NCCL's src/transport/net.cc proxy and ext-net/README.md), through dlopen/dlsym and our own ABI
// declarations only. Nothing of the plugin's internals is linked: what passes here is what NCCL
// would see.
//
// Pieces: Library (dlopen RTLD_NOW|RTLD_LOCAL, dlsym of every table), a logger that keeps the
// plugin's WARN lines, Net (one v11-shaped face over the v11, v10, v9 and v8 tables, adapted the
// way NCCL's own shims adapt them), Worker (NCCL's "service" and "progress" threads), Channel
// (handle exchange between forked processes over a socketpair), and the connect/accept and
// ring-of-8-slots loops of NCCL's proxy. Every loop has a deadline: a plugin that blocks or never
// completes fails a check instead of hanging the test.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "net_plugin/nccl/nccl_abi.h"

namespace gradpack::plugin_test {

using Clock = std::chrono::steady_clock;

// Path of the plugin under test: $GRADPACK_PLUGIN (set by CMake for the tests), else empty.
std::string plugin_path();

// ---- logging ----------------------------------------------------------------------------------
// The logger handed to init: prints WARN (and INFO when $GRADPACK_HARNESS_VERBOSE is set) to
// stderr and keeps every WARN line, so tests can require that a refused input was explained.
void harness_logger(ncclDebugLogLevel level, unsigned long flags, const char* file, int line,
                    const char* fmt, ...);
std::vector<std::string> captured_warnings();
void clear_captured_warnings();
// A profiler callback that does nothing (v10+ may be given one; NCCL passes its own).
ncclResult_t dummy_profiler(void** handle, int type, void* parent, int64_t plugin_id, void* data);

// A failed check: "file:line: what" on stderr, remembered for the process. Children of forked
// tests exit with the failure count; gtest tests read failures() after the scenario.
#define PT_CHECK(cond, ...)                                                                  \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      ::gradpack::plugin_test::report_failure(__FILE__, __LINE__, #cond,                     \
                                              ::gradpack::plugin_test::format(__VA_ARGS__)); \
      return false;                                                                          \
    }                                                                                        \
  } while (0)
// For ncclResult_t-returning calls: must be ncclSuccess.
#define PT_OK(call)                                          \
  do {                                                       \
    ncclResult_t pt_rc_ = (call);                            \
    PT_CHECK(pt_rc_ == ncclSuccess, "%s returned %s", #call, \
             ::gradpack::plugin_test::result_name(pt_rc_));  \
  } while (0)

std::string format(const char* fmt = "", ...) __attribute__((format(printf, 1, 2)));
void report_failure(const char* file, int line, const char* cond, const std::string& msg);
int failures();
const char* result_name(ncclResult_t rc);

// ---- the library ------------------------------------------------------------------------------
class Library {
 public:
  // dlopen(path, RTLD_NOW|RTLD_LOCAL) as NCCL does; *error says why when it returns null.
  static std::unique_ptr<Library> open(const std::string& path, std::string* error);
  ~Library();                            // dlclose
  void* symbol(const char* name) const;  // dlsym, null when absent
  const std::string& path() const { return path_; }

 private:
  Library(std::string path, void* handle) : path_(std::move(path)), handle_(handle) {}
  std::string path_;
  void* handle_;
};

// ---- the net API, one face over every version --------------------------------------------------
// The v11 signatures; the older tables are adapted as NCCL 2.28.9's shims adapt them (reference
// §1.4 "Old-version shims"): v10/v9/v8 get their real init once per load (later "contexts" only
// count), the traffic class reaches v10 connect, v8 sizes are ints and the 0x1 receive hint is
// cleared before a v8 irecv, v8 properties are widened with NCCL's defaults.
class Net {
 public:
  virtual ~Net() = default;
  virtual int version() const = 0;
  virtual const char* name() const = 0;
  virtual ncclResult_t init(void** ctx, uint64_t comm_id, int traffic_class,
                            ncclDebugLogger_t logger, ncclProfilerCallback_t profiler) = 0;
  virtual ncclResult_t finalize(void* ctx) = 0;
  virtual bool has_finalize() const = 0;
  virtual ncclResult_t devices(int* ndev) = 0;
  virtual ncclResult_t get_properties(int dev, ncclNetProperties_v11_t* props) = 0;
  virtual ncclResult_t listen(void* ctx, int dev, void* handle, void** lcomm) = 0;
  virtual ncclResult_t connect(void* ctx, int dev, void* handle, void** scomm) = 0;
  virtual ncclResult_t accept(void* lcomm, void** rcomm) = 0;
  virtual ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mh) = 0;
  // regMrDmaBuf; ncclInternalError (as NCCL would never call it) when the table's slot is NULL.
  virtual ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type,
                                      uint64_t offset, int fd, void** mh) = 0;
  virtual bool has_reg_mr_dma_buf() const = 0;
  virtual ncclResult_t dereg_mr(void* comm, void* mh) = 0;
  virtual ncclResult_t isend(void* scomm, void* data, size_t size, int tag, void* mh,
                             void** request) = 0;
  virtual ncclResult_t irecv(void* rcomm, int n, void** data, size_t* sizes, int* tags, void** mhs,
                             void** request) = 0;
  virtual ncclResult_t iflush(void* rcomm, int n, void** data, int* sizes, void** mhs,
                              void** request) = 0;
  virtual ncclResult_t test(void* request, int* done, int* sizes) = 0;
  virtual ncclResult_t close_send(void* scomm) = 0;
  virtual ncclResult_t close_recv(void* rcomm) = 0;
  virtual ncclResult_t close_listen(void* lcomm) = 0;
};

// The face of version 11, 10, 9 or 8 of `lib`'s ncclNetPlugin_vN; null if not exported.
std::unique_ptr<Net> make_net(const Library& lib, int version);

// ---- threads ----------------------------------------------------------------------------------
// One named thread that runs closures in order, like NCCL's "NCCL Service" / "NCCL Progress".
class Worker {
 public:
  explicit Worker(const char* name);
  ~Worker();
  // Runs fn on the thread and waits for it.
  bool run(const std::function<bool()>& fn);
  // Starts fn on the thread; wait() returns its result.
  void start(std::function<bool()> fn);
  bool wait();

 private:
  void loop();
  void post(std::function<void()> fn);
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  bool stop_ = false;
  std::future<bool> started_;
  std::thread thread_;
};

// Threads of this process now (/proc/self/task).
int thread_count();

// ---- processes --------------------------------------------------------------------------------
// A byte channel to the other process (one end of a socketpair).
class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {}
  bool send(const void* data, size_t size);
  bool recv(void* data, size_t size, std::chrono::milliseconds timeout);
  int fd() const { return fd_; }

 private:
  int fd_;
};

// Forks one child per body, connected pairwise by a socketpair (two bodies: one pair). A child's
// exit code is its body's failure count (0: passed). Children still running at `deadline` are
// killed (and count as a hang: 124). Returns each child's code (128+sig when killed by a signal).
std::vector<int> run_pair(const std::function<int(Channel&)>& rank0,
                          const std::function<int(Channel&)>& rank1, std::chrono::seconds deadline,
                          std::vector<pid_t>* pids = nullptr);

// ---- connections ------------------------------------------------------------------------------
constexpr auto kStepDeadline = std::chrono::seconds(20);

// Calls connect and accept alternately in this thread until both give a comm (NCCL's service
// thread, the AWS harness, NCCL's GDR probe). Any error or the deadline fails.
bool connect_accept(Net& net, void* ctx, int dev, void* handle, void* lcomm, void** scomm,
                    void** rcomm);
bool connect_until_done(Net& net, void* ctx, int dev, void* handle, void** scomm);
bool accept_until_done(Net& net, void* lcomm, void** rcomm);

// ---- data path --------------------------------------------------------------------------------
// One NCCL protocol buffer: its size and how NCCL cuts it (src/transport/net.cc,
// sendProxyProgress).
struct Protocol {
  const char* name;
  size_t buffer_bytes;       // 512 KiB, 4,915,200 B, 4 MiB
  size_t step_bytes;         // buffer / 8
  int slice_steps;           // steps per message
  bool optional_completion;  // LL/LL128: *request preset to 0x1 before irecv
};
extern const Protocol kLL, kLL128, kSimple, kSimpleSlice2;

// Byte i of message `seq` sent by rank `tag`: what the receiver checks.
inline uint8_t pattern(int tag, uint64_t seq, size_t i) {
  return static_cast<uint8_t>((i * 131u) ^ (seq * 7u + static_cast<uint64_t>(tag) * 29u) ^
                              (i >> 9));
}
void fill_pattern(uint8_t* data, size_t size, int tag, uint64_t seq);
// Index of the first wrong byte, or size when all are right.
size_t check_pattern(const uint8_t* data, size_t size, int tag, uint64_t seq);

// A page-aligned host buffer, like cudaHostAlloc's.
class HostBuffer {
 public:
  explicit HostBuffer(size_t size);
  ~HostBuffer();
  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  uint8_t* data_;
  size_t size_;
};

// One direction of one connection as NCCL's proxy runs it: NCCL_STEPS = 8 slots in a registered
// buffer; sends and receives posted as slots free up (NULL requests retried next pass), only the
// oldest request tested (or, with test_out_of_order, every outstanding one in reverse order).
struct RingOptions {
  Protocol proto = kSimple;
  int depth = 8;              // outstanding requests (≤ 8 / slice_steps slots)
  uint64_t messages = 64;     // messages to move
  std::vector<size_t> sizes;  // cycled send sizes; each ≤ step×sliceSteps; empty: full slots
  bool test_out_of_order = false;
  bool verify = true;
  int send_tag = 0;       // this side's rank: the tag of its isends
  int recv_tag = 0;       // the peer's rank: the tag of its irecvs, checked in the payload
  int idle_sleep_us = 0;  // a pass that completed nothing: 0 yields (NCCL spins), else sleeps
};

struct RingEnd {
  void* comm = nullptr;  // sendComm or recvComm; null: this side does not run
  void* mhandle = nullptr;
  uint8_t* buffer = nullptr;  // registered, ≥ proto.buffer_bytes
};

struct RingResult {
  uint64_t bytes_received = 0;
  uint64_t messages_received = 0;
  ncclResult_t error = ncclSuccess;  // first non-success return, if any
  std::string what;                  // which call returned it
};

// Runs the send side and/or the receive side in this thread (NCCL's progress thread) until
// `messages` are through both, an error, or the deadline. Checks sizes and payload.
bool run_ring(Net& net, const RingOptions& options, const RingEnd& send, const RingEnd& recv,
              RingResult* result, Clock::time_point deadline);

}  // namespace gradpack::plugin_test
