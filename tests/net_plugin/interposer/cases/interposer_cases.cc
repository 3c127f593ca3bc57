// SPDX-License-Identifier: Apache-2.0
// The interposer's control flow across processes, on the CPU fake (tests/net_plugin/interposer/
// fake): one rank per process under gradpack-run, the interposer built against the fake device
// (libgradpack-nccl-fake.so, linked first as LD_PRELOAD would put it), NCCL the fake over
// gradpack's own transport.
//
//   gradpack-run -n N -- interposer_cases --case NAME      (one case; exit 0 when it holds)
//   gradpack-run -n 4 -- interposer_cases --bench [--mib M] (q8 through the interposer vs the
//                                                            uncompressed fake NCCL all-reduce)
//
// Every case prints one line per rank ("rank R: NAME: ok" or what failed). Results are checked
// against the exact sum of every rank's inputs (each rank computes them all), within the q8
// direct all-reduce's bound (worker and server roundings, plus error feedback's carried part
// and the output dtype's rounding), and the result bits are compared across ranks through a
// hash all-reduced with min and max (an int64 all-reduce, which the interposer never touches).
#include <cuda_runtime_api.h>
#include <dlfcn.h>
#include <nccl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "../fake/gpu.h"
#include "../fake/nccl_extras.h"
#include "common/float16.h"
#include "gradpack/gradpack_nccl.h"

namespace {

namespace fake = gradpack::fake;
using Clock = std::chrono::steady_clock;

struct World {
  int rank = 0;
  int nranks = 0;
  int device = 0;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
  uint64_t* hash = nullptr;  // two int64 on the comm's device, made once (allocations are counted)
};

int env_int(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) {
    std::fprintf(stderr, "%s is not set: run under gradpack-run\n", name);
    std::exit(2);
  }
  return std::atoi(v);
}

// A communicator named `name` of `nranks` ranks on fake device `device` (the comm's device is
// the current one at init, as in NCCL).
bool join(const std::string& name, int rank, int nranks, int device, World* w) {
  const char* root = std::getenv("GRADPACK_ROOT");
  if (root == nullptr) return false;
  const std::string url = std::string("tcp://") + root + "#" + name;
  ncclUniqueId id;
  if (gradpack_fake_nccl_unique_id(url.c_str(), &id) != ncclSuccess) return false;
  if (!fake::set_current_device(device).ok()) return false;
  w->rank = rank;
  w->nranks = nranks;
  w->device = device;
  if (ncclCommInitRank(&w->comm, nranks, id, rank) != ncclSuccess) return false;
  w->stream = fake::stream_create(device);
  return w->stream != nullptr;
}

bool join_world(const std::string& name, World* w) {
  return join(name, env_int("GRADPACK_RANK"), env_int("GRADPACK_WORLD_SIZE"), 0, w);
}

// Gradient-like inputs in [-1, 1), different per rank, element and step.
float input(int rank, size_t i, int step) {
  uint32_t x = static_cast<uint32_t>(i) * 2654435761u ^ (static_cast<uint32_t>(rank) + 1) * 40503u ^
               static_cast<uint32_t>(step) * 0x9E3779B9u;
  x ^= x >> 13;
  x *= 0x5bd1e995u;
  x ^= x >> 15;
  const float u = static_cast<float>(x >> 8) / 8388608.0f - 1.0f;
  return (i % 3 == 0) ? u * 0.01f : u;
}
// Small integers: every partial sum exact in fp32, so NCCL's result is exact.
float integer_input(int rank, size_t i) {
  return static_cast<float>((i * 7 + static_cast<size_t>(rank) * 3) % 64);
}

size_t elem_size(ncclDataType_t t) { return t == ncclFloat32 ? 4 : 2; }

// Host float -> element of t, and back.
void store(ncclDataType_t t, void* base, size_t i, float v) {
  if (t == ncclFloat32) {
    static_cast<float*>(base)[i] = v;
  } else if (t == ncclFloat16) {
    static_cast<uint16_t*>(base)[i] = gradpack::f32_to_f16(v);
  } else {
    static_cast<uint16_t*>(base)[i] = gradpack::f32_to_bf16(v);
  }
}
float load(ncclDataType_t t, const void* base, size_t i) {
  if (t == ncclFloat32) return static_cast<const float*>(base)[i];
  if (t == ncclFloat16) return gradpack::f16_to_f32(static_cast<const uint16_t*>(base)[i]);
  return gradpack::bf16_to_f32(static_cast<const uint16_t*>(base)[i]);
}

void* device_buffer(size_t bytes) {
  void* p = nullptr;
  if (!fake::device_malloc(bytes, &p).ok()) {
    std::fprintf(stderr, "device_malloc(%zu) failed\n", bytes);
    std::exit(1);
  }
  return p;
}

bool sync(const World& w) {
  gradpack::Status st = fake::stream_synchronize(w.stream);
  if (!st.ok()) std::fprintf(stderr, "rank %d: stream: %s\n", w.rank, st.message().c_str());
  return st.ok();
}

uint64_t fnv1a(const void* data, size_t bytes) {
  uint64_t h = 0xcbf29ce484222325ull;
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < bytes; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  return h;
}

// The same bytes on every rank: the hash's min and max over the ranks are its own value.
bool same_on_every_rank(World& w, const void* data, size_t bytes) {
  const uint64_t h = fnv1a(data, bytes);
  if (w.hash == nullptr) {
    // On the communicator's device, whatever the caller's current one (the two-devices case).
    const int current = fake::current_device();
    (void)fake::set_current_device(w.device);
    w.hash = static_cast<uint64_t*>(device_buffer(2 * sizeof(uint64_t)));
    (void)fake::set_current_device(current);
  }
  uint64_t* d = w.hash;
  d[0] = d[1] = h;
  bool ok = ncclAllReduce(d, d, 1, ncclInt64, ncclMin, w.comm, w.stream) == ncclSuccess &&
            ncclAllReduce(d + 1, d + 1, 1, ncclInt64, ncclMax, w.comm, w.stream) == ncclSuccess &&
            sync(w);
  ok = ok && d[0] == h && d[1] == h;
  return ok;
}

// One all-reduce: the buffers, the call, and what it gave.
struct Check {
  ncclDataType_t dtype = ncclFloat32;
  bool avg = false;
  bool in_place = false;
  size_t count = 0;
  int step = 0;
  bool integers = false;
};

struct Outcome {
  bool ok = false;
  double worst = 0;  // largest error beyond the allowed bound's output rounding
  double bound = 0;
  uint64_t host_waits = 0;  // during the ncclAllReduce call itself
  std::string why;
};

// Runs one call of `c` on buffers made for it and checks the result (exact when c.integers).
Outcome run_check(World& w, const Check& c, void* send, void* recv) {
  Outcome o;
  const size_t es = elem_size(c.dtype);
  for (size_t i = 0; i < c.count; ++i) {
    store(c.dtype, send, i, c.integers ? integer_input(w.rank, i) : input(w.rank, i, c.step));
  }
  void* out = c.in_place ? send : recv;
  const uint64_t waits = fake::counters().host_waits.load();
  const ncclResult_t r = ncclAllReduce(send, out, c.count, c.dtype, c.avg ? ncclAvg : ncclSum,
                                       w.comm, w.stream);
  o.host_waits = fake::counters().host_waits.load() - waits;
  if (r != ncclSuccess) {
    o.why = "ncclAllReduce returned " + std::to_string(r);
    return o;
  }
  if (!sync(w)) {
    o.why = "the stream failed";
    return o;
  }
  const double n = w.nranks;
  const double out_eps = c.dtype == ncclFloat32 ? 0 : c.dtype == ncclFloat16 ? 1.0 / 1024 : 1.0 / 128;
  // Worker roundings of every rank and the server's, each at most half a step of its block's
  // absmax / 127; later steps add error feedback's carried part (at most one more of each).
  o.bound = c.integers ? 0.0 : (c.step == 0 ? 2.0 : 3.0) * n / 254.0 * 1.01 + 1e-5;
  if (c.avg) o.bound /= n;
  for (size_t i = 0; i < c.count; ++i) {
    double exact = 0;
    for (int r2 = 0; r2 < w.nranks; ++r2) {
      const float v = c.integers ? integer_input(r2, i) : input(r2, i, c.step);
      float rounded = v;
      store(c.dtype, &rounded, 0, v);  // the input as the dtype holds it
      exact += c.dtype == ncclFloat32 ? v : load(c.dtype, &rounded, 0);
    }
    if (c.avg) exact /= n;
    const double err = std::fabs(load(c.dtype, out, i) - exact) - std::fabs(exact) * out_eps;
    if (!(err <= o.worst)) o.worst = std::isnan(err) ? INFINITY : err;
  }
  const bool same = same_on_every_rank(w, out, c.count * es);
  o.ok = o.worst <= o.bound && same;
  if (!same) o.why = "the result differs between ranks";
  if (o.worst > o.bound) {
    o.why = "max error " + std::to_string(o.worst) + " over the bound " + std::to_string(o.bound);
  }
  return o;
}

bool report(const World& w, const std::string& what, bool ok, const std::string& why = "") {
  std::printf("rank %d: %s: %s%s%s\n", w.rank, what.c_str(), ok ? "ok" : "FAILED",
              why.empty() ? "" : ": ", why.c_str());
  std::fflush(stdout);
  return ok;
}

const FakeNcclCounters& nccl_counters() { return *gradpack_fake_nccl_counters(); }

const char* dtype_name(ncclDataType_t t) {
  return t == ncclFloat32 ? "fp32" : t == ncclFloat16 ? "fp16" : "bf16";
}

// Every dtype, sum and avg, in place and out of place, odd counts, two steps (the second with
// error feedback): within the bound, the same bits everywhere, gradpack's path taken, and no
// host wait in any call after a shape's first.
bool case_results(World& w) {
  bool all = true;
  for (ncclDataType_t dtype : {ncclFloat32, ncclFloat16, ncclBfloat16}) {
    for (size_t count : {size_t{1000003}, size_t{65537}}) {
      for (int mode = 0; mode < 4; ++mode) {
        Check c{dtype, (mode & 1) != 0, (mode & 2) != 0, count, 0, false};
        void* send = device_buffer(count * elem_size(dtype));
        void* recv = device_buffer(count * elem_size(dtype));
        // A key of its own per configuration: freed buffers come back at the same addresses,
        // and an address key would hand this one an earlier configuration's residual.
        const uint64_t key = 1 + static_cast<uint64_t>(dtype) * 1000 + count % 997 * 10 +
                             static_cast<uint64_t>(mode);
        for (c.step = 0; c.step < 2; ++c.step) {
          const uint64_t sends = nccl_counters().sends;
          gradpackNcclSetResidualKey(key);
          Outcome o = run_check(w, c, send, recv);
          std::string what = std::string(dtype_name(dtype)) + (c.avg ? " avg" : " sum") +
                             (c.in_place ? " in place " : " out of place ") +
                             std::to_string(count) + " step " + std::to_string(c.step);
          if (o.ok && nccl_counters().sends == sends) {
            o.ok = false;
            o.why = "no message was sent: gradpack did not run it";
          }
          // Only a shape's very first call may wait (its agreement).
          const bool first_of_shape = c.step == 0 && mode == 0;
          if (o.ok && !first_of_shape && o.host_waits != 0) {
            o.ok = false;
            o.why = std::to_string(o.host_waits) + " host waits in the call";
          }
          all = report(w, what, o.ok, o.why) && all;
        }
        fake::device_free(send);
        fake::device_free(recv);
      }
    }
  }
  return all;
}

// Small calls (under GRADPACK_MIN_BYTES), or every call with compression off: NCCL's, exact.
bool case_passthrough(World& w) {
  Check c{ncclFloat32, false, false, 1000, 0, true};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  const uint64_t sends = nccl_counters().sends;
  Outcome o = run_check(w, c, send, recv);
  if (o.ok && nccl_counters().sends != sends) o = {false, 0, 0, 0, "gradpack sent messages"};
  return report(w, "1000 fp32 under GRADPACK_MIN_BYTES go to NCCL, exact", o.ok, o.why);
}

// Every rank or one rank votes no: NCCL runs the call on every rank, exactly. Used by the
// one-rank-OOM case (GRADPACK_FAKE_FAIL_ALLOC on one rank), the differing-settings case and the
// compression-off case.
bool case_all_to_nccl(World& w, const std::string& what, bool fail_my_next_alloc = false) {
  Check c{ncclFloat32, false, false, 1 << 20, 0, true};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  // The interposer's first device allocation on this rank (preparing the shape) fails.
  if (fail_my_next_alloc) fake::fail_alloc_after(1);
  bool all = true;
  for (int step = 0; step < 2; ++step) {
    const uint64_t sends = nccl_counters().sends;
    Outcome o = run_check(w, c, send, recv);
    if (o.ok && nccl_counters().sends != sends) o = {false, 0, 0, 0, "gradpack sent messages"};
    all = report(w, what + " step " + std::to_string(step), o.ok, o.why) && all;
  }
  return all;
}

// A call inside the caller's group goes to NCCL (exact) and the group depth comes back to 0:
// the next call outside a group is compressed again (after ncclGroupSimulateEnd too).
bool case_user_group(World& w) {
  Check exact{ncclFloat32, false, false, 1 << 18, 0, true};
  void* send = device_buffer(exact.count * 4);
  void* recv = device_buffer(exact.count * 4);
  if (ncclGroupStart() != ncclSuccess) return report(w, "group start", false);
  Outcome o = run_check(w, exact, send, recv);  // returns inside the group: NCCL runs it at End
  (void)o;
  if (ncclGroupEnd() != ncclSuccess) return report(w, "group end", false);
  // run_check synchronized before the group ran: check again now that it has.
  exact.in_place = true;  // recompute from send's inputs
  bool ok = sync(w);
  for (size_t i = 0; ok && i < exact.count; ++i) {
    double sum = 0;
    for (int r = 0; r < w.nranks; ++r) sum += integer_input(r, i);
    ok = static_cast<const float*>(recv)[i] == static_cast<float>(sum);
  }
  report(w, "fp32 sum inside ncclGroupStart/End goes to NCCL, exact", ok);
  ncclSimInfo_t info = NCCL_SIM_INFO_INITIALIZER;
  ok = ncclGroupStart() == ncclSuccess && ncclGroupSimulateEnd(&info) == ncclSuccess && ok;
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  const uint64_t sends = nccl_counters().sends;
  o = run_check(w, c, send, recv);
  if (o.ok && nccl_counters().sends == sends) o = {false, 0, 0, 0, "not compressed"};
  return report(w, "after the group: compressed again", o.ok && ok, o.why);
}

// One uncaptured call agrees the shape; the captured call then runs gradpack's path with no
// host wait, and each graph launch runs it again. A shape never seen before goes to NCCL when
// captured (no agreement may wait inside a capture), on every rank.
bool case_capture(World& w) {
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  Outcome o = run_check(w, c, send, recv);
  bool ok = report(w, "uncaptured call", o.ok, o.why);
  if (!fake::begin_capture(w.stream).ok()) return report(w, "begin capture", false);
  const uint64_t waits = fake::counters().host_waits.load();
  const uint64_t sends = nccl_counters().sends;
  ncclResult_t r = ncclAllReduce(send, recv, c.count, ncclFloat32, ncclSum, w.comm, w.stream);
  fake::Graph* graph = nullptr;
  if (!fake::end_capture(w.stream, &graph).ok() || r != ncclSuccess) {
    return report(w, "captured call", false, "capture failed or the call returned " +
                                                 std::to_string(r));
  }
  ok = report(w, "no host wait while capturing",
              fake::counters().host_waits.load() == waits) && ok;
  for (int launch = 0; launch < 2; ++launch) {
    std::memset(recv, 0xff, c.count * 4);
    ok = fake::graph_launch(graph, w.stream).ok() && sync(w) && ok;
    double worst = 0;
    for (size_t i = 0; i < c.count; ++i) {
      double exact = 0;
      for (int r2 = 0; r2 < w.nranks; ++r2) exact += input(r2, i, 0);
      worst = std::max(worst, std::fabs(static_cast<float*>(recv)[i] - exact));
    }
    const bool good = worst <= 3.0 * w.nranks / 254.0 && same_on_every_rank(w, recv, c.count * 4);
    ok = report(w, "graph launch " + std::to_string(launch), good) && ok;
  }
  ok = report(w, "the graph sent gradpack's frames", nccl_counters().sends > sends) && ok;
  fake::graph_destroy(graph);
  // A new shape under capture: NCCL's, on every rank (exact with integer inputs).
  Check fresh{ncclFloat32, false, false, (1 << 18) + 1, 0, true};
  for (size_t i = 0; i < fresh.count; ++i) static_cast<float*>(send)[i] = integer_input(w.rank, i);
  if (!fake::begin_capture(w.stream).ok()) return report(w, "begin capture", false);
  r = ncclAllReduce(send, recv, fresh.count, ncclFloat32, ncclSum, w.comm, w.stream);
  if (!fake::end_capture(w.stream, &graph).ok() || r != ncclSuccess) {
    return report(w, "captured new shape", false);
  }
  ok = fake::graph_launch(graph, w.stream).ok() && sync(w) && ok;
  bool exact_ok = true;
  for (size_t i = 0; i < fresh.count; ++i) {
    double sum = 0;
    for (int r2 = 0; r2 < w.nranks; ++r2) sum += integer_input(r2, i);
    exact_ok = exact_ok && static_cast<float*>(recv)[i] == static_cast<float>(sum);
  }
  fake::graph_destroy(graph);
  return report(w, "a new shape under capture goes to NCCL, exact", exact_ok) && ok;
}

// Calls share the communicator's frames: a call on stream B right after one on a slow stream A
// must wait for it (an event), or it overwrites frames A has not decoded yet.
bool case_two_streams(World& w) {
  cudaStream_t a = w.stream;
  cudaStream_t b = fake::stream_create(w.device);
  fake::set_stream_delay(a, std::chrono::microseconds(3000));
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  std::vector<void*> bufs;
  for (int i = 0; i < 4; ++i) bufs.push_back(device_buffer(c.count * 4));
  // Agree the shape first, then the two calls back to back on the two streams.
  Outcome first = run_check(w, c, bufs[0], bufs[1]);
  bool ok = report(w, "first call", first.ok, first.why);
  for (size_t i = 0; i < c.count; ++i) {
    static_cast<float*>(bufs[0])[i] = input(w.rank, i, 0);
    static_cast<float*>(bufs[2])[i] = input(w.rank, i, 1);
  }
  ok = ncclAllReduce(bufs[0], bufs[1], c.count, ncclFloat32, ncclSum, w.comm, a) == ncclSuccess && ok;
  ok = ncclAllReduce(bufs[2], bufs[3], c.count, ncclFloat32, ncclSum, w.comm, b) == ncclSuccess && ok;
  World wb = w;
  wb.stream = b;
  ok = sync(w) && sync(wb) && ok;
  fake::set_stream_delay(a, std::chrono::microseconds(0));
  for (int k = 0; k < 2; ++k) {
    double worst = 0;
    for (size_t i = 0; i < c.count; ++i) {
      double exact = 0;
      for (int r = 0; r < w.nranks; ++r) exact += input(r, i, k);
      worst = std::max(worst, std::fabs(static_cast<float*>(bufs[1 + 2 * k])[i] - exact));
    }
    ok = report(w, std::string("call on stream ") + (k == 0 ? "A (slow)" : "B"),
                worst <= 3.0 * w.nranks / 254.0 * 1.01) && ok;
  }
  fake::stream_destroy(b);
  return ok;
}

// Two communicators per process, one per device, each driven by its own thread whose current
// device is left at 0: the interposer must switch to the communicator's device (the fake fails
// a launch on another device's stream) and restore the caller's after.
bool case_two_devices(World& w) {
  const int procs = w.nranks;
  std::atomic<bool> all{true};
  auto run = [&](int dev) {
    World t;
    if (!join("two-devices", 2 * w.rank + dev, 2 * procs, dev, &t)) {
      all = false;
      return;
    }
    Check c{ncclFloat32, true, false, 1 << 17, 0, false};
    void* send = device_buffer(c.count * 4);
    void* recv = device_buffer(c.count * 4);
    (void)fake::set_current_device(0);  // the caller's current device is not the comm's
    Outcome o;
    for (c.step = 0; c.step < 2; ++c.step) {
      o = run_check(t, c, send, recv);
      if (!o.ok) break;
    }
    const bool restored = fake::current_device() == 0;
    if (!report(t, "device " + std::to_string(dev) + " comm, current device 0",
                o.ok && restored, restored ? o.why : "the caller's device was not restored")) {
      all = false;
    }
    (void)fake::set_current_device(dev);
    ncclCommDestroy(t.comm);
  };
  std::thread t0(run, 0), t1(run, 1);
  t0.join();
  t1.join();
  return all;
}

// Fresh output buffers every call (a bucket rebuild): residuals stay under
// GRADPACK_RESIDUAL_MAX_BYTES (set by the test to 3 residuals); with gradpackNcclSetResidualKey
// every buffer shares one residual and nothing more is allocated.
bool case_residual_keys(World& w) {
  Check c{ncclFloat32, false, false, 1 << 16, 0, false};
  void* send = device_buffer(c.count * 4);
  std::vector<void*> outs;
  for (int i = 0; i < 10; ++i) outs.push_back(device_buffer(c.count * 4));
  Outcome o = run_check(w, c, send, outs[0]);  // agreement, frames, first residual
  bool ok = report(w, "first call", o.ok, o.why);
  auto live = [] { return fake::counters().allocs.load() - fake::counters().frees.load(); };
  const uint64_t base = live();
  for (int i = 1; i < 10 && ok; ++i) {
    c.step = i;
    o = run_check(w, c, send, outs[static_cast<size_t>(i)]);
    ok = o.ok;
  }
  // Outstanding: at most 3 residuals in all, one of them already in `base`.
  ok = report(w, "10 fresh outputs keep at most 3 residuals", ok && live() <= base + 2,
              "device allocations outstanding: " + std::to_string(live() - base)) && ok;
  const uint64_t before = fake::counters().allocs.load();
  for (int i = 0; i < 10 && ok; ++i) {
    gradpackNcclSetResidualKey(42);
    c.step = 10 + i;
    o = run_check(w, c, send, outs[static_cast<size_t>(i)]);
    ok = o.ok;
  }
  // One residual for key 42 (allocated once), nothing else.
  ok = report(w, "one key for 10 outputs: one residual",
              ok && fake::counters().allocs.load() - before <= 3,
              "allocations: " + std::to_string(fake::counters().allocs.load() - before)) && ok;
  return ok;
}

// Abort from another thread, with work in flight that can never finish (the peer stopped
// calling): abort returns promptly without a host wait, the queued work ends, and the
// interposer holds nothing back.
bool case_abort(World& w) {
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  Outcome o = run_check(w, c, send, recv);
  bool ok = report(w, "first call", o.ok, o.why);
  if (w.rank == 1) {
    // Never makes the second call; its comm is aborted when rank 0's abort closes the links.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ncclCommAbort(w.comm);
    return ok;
  }
  ok = ncclAllReduce(send, recv, c.count, ncclFloat32, ncclSum, w.comm, w.stream) == ncclSuccess &&
       ok;
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const uint64_t waits = fake::counters().host_waits.load();
  std::atomic<double> abort_s{-1};
  std::thread watchdog([&] {
    const auto t0 = Clock::now();
    ncclCommAbort(w.comm);
    abort_s = std::chrono::duration<double>(Clock::now() - t0).count();
  });
  watchdog.join();
  ok = report(w, "abort with a call in flight returns within 2 s",
              abort_s.load() >= 0 && abort_s.load() < 2.0,
              std::to_string(abort_s.load()) + " s") && ok;
  ok = report(w, "abort made no host wait", fake::counters().host_waits.load() == waits) && ok;
  const auto t0 = Clock::now();
  (void)fake::stream_synchronize(w.stream);  // the aborted work drains (with an error or not)
  ok = report(w, "the stream drains after abort",
              Clock::now() - t0 < std::chrono::seconds(5)) && ok;
  return ok;
}

// The agreement itself waits for a peer that never comes; another thread aborts: the call
// returns an error within 2 s of the abort instead of hanging.
bool case_abort_agreement(World& w) {
  if (w.rank == 1) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ncclCommAbort(w.comm);
    return report(w, "peer stays away", true);
  }
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  std::thread watchdog([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    ncclCommAbort(w.comm);
  });
  const auto t0 = Clock::now();
  const ncclResult_t r = ncclAllReduce(send, recv, c.count, ncclFloat32, ncclSum, w.comm,
                                       w.stream);
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  watchdog.join();
  return report(w, "a call waiting in its agreement ends at abort", r != ncclSuccess && s < 2.3,
                "returned " + std::to_string(r) + " after " + std::to_string(s) + " s");
}

// Whether ncclCommGetAsyncError reports an error within `limit` (polled every 20 ms).
bool async_error_within(const World& w, std::chrono::seconds limit) {
  const auto deadline = Clock::now() + limit;
  while (Clock::now() < deadline) {
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(w.comm, &async) == ncclSuccess && async != ncclSuccess) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

// After a shape is agreed, one rank's kernel launch fails: that rank returns an error (never
// switching to NCCL), aborts as a framework would, and its peer sees an asynchronous error
// instead of hanging. Both ranks end on the same path: an error, within the timeout.
bool case_launch_error(World& w) {
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  Outcome o = run_check(w, c, send, recv);
  bool ok = report(w, "first call", o.ok, o.why);
  if (w.rank == 1) fake::fail_launch_after(1);
  const ncclResult_t r = ncclAllReduce(send, recv, c.count, ncclFloat32, ncclSum, w.comm,
                                       w.stream);
  const bool stream_ok = fake::stream_synchronize(w.stream).ok();
  const bool failed_here =
      r != ncclSuccess || !stream_ok || async_error_within(w, std::chrono::seconds(15));
  if (w.rank == 1) {
    ok = report(w, "the failing rank gets an error", failed_here) && ok;
  } else {
    ok = report(w, "its peer sees an error (no hang)", failed_here) && ok;
  }
  ncclCommAbort(w.comm);
  return ok;
}

// A peer that dies after the agreement: the survivor's call ends in an asynchronous error
// within the timeout, not a hang.
bool case_dead_peer(World& w) {
  Check c{ncclFloat32, false, false, 1 << 18, 0, false};
  void* send = device_buffer(c.count * 4);
  void* recv = device_buffer(c.count * 4);
  Outcome o = run_check(w, c, send, recv);
  bool ok = report(w, "first call", o.ok, o.why);
  if (w.rank == 1) {
    std::fflush(stdout);
    _exit(ok ? 0 : 1);  // dies without a word to anyone
  }
  ok = ncclAllReduce(send, recv, c.count, ncclFloat32, ncclSum, w.comm, w.stream) == ncclSuccess &&
       ok;
  ok = report(w, "the survivor sees an asynchronous error",
              async_error_within(w, std::chrono::seconds(20))) && ok;
  ncclCommAbort(w.comm);
  return ok;
}

// q8 through the interposer against the uncompressed fake NCCL all-reduce (NCCL's own
// pncclAllReduce, which the interposer does not define) on the same buffers, alternating.
int bench(World& w, size_t mib, int iters) {
  using AllReduce = ncclResult_t (*)(const void*, void*, size_t, ncclDataType_t, ncclRedOp_t,
                                     ncclComm_t, cudaStream_t);
  auto nccl = reinterpret_cast<AllReduce>(dlsym(RTLD_DEFAULT, "pncclAllReduce"));
  if (nccl == nullptr) return 1;
  const size_t count = (mib << 20) / 4;
  auto* send = static_cast<float*>(device_buffer(count * 4));
  auto* recv = static_cast<float*>(device_buffer(count * 4));
  for (size_t i = 0; i < count; ++i) send[i] = input(w.rank, i, 0);
  auto time = [&](AllReduce fn) {
    fn(send, recv, count, ncclFloat32, ncclSum, w.comm, w.stream);  // warm-up (and agreement)
    sync(w);
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) fn(send, recv, count, ncclFloat32, ncclSum, w.comm, w.stream);
    sync(w);
    return std::chrono::duration<double>(Clock::now() - t0).count() / iters;
  };
  double q8 = 0, plain = 0;
  for (int round = 0; round < 2; ++round) {
    plain += time(nccl);
    q8 += time(&ncclAllReduce);
  }
  if (w.rank == 0) {
    std::printf("%zu MiB fp32 on %d processes: uncompressed fake NCCL %.1f ms, q8 through the "
                "interposer %.1f ms: q8 / uncompressed time %.2f (speed-up %.2fx)\n",
                mib, w.nranks, plain / 2 * 1e3, q8 / 2 * 1e3, q8 / plain, plain / q8);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::string which;
  bool do_bench = false;
  size_t mib = 16;
  int iters = 5;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--case" && i + 1 < argc) {
      which = argv[++i];
    } else if (a == "--bench") {
      do_bench = true;
    } else if (a == "--mib" && i + 1 < argc) {
      mib = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--iters" && i + 1 < argc) {
      iters = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: interposer_cases --case NAME | --bench [--mib M] [--iters I]\n");
      return 2;
    }
  }
  // The differing-settings case: rank 1 runs another codec (read at the interposer's first call).
  if (which == "settings_differ" && env_int("GRADPACK_RANK") == 1) {
    setenv("GRADPACK_COMPRESS", "q4", 1);
  }
  World w;
  if (!join_world(which.empty() ? "bench" : which, &w)) {
    std::fprintf(stderr, "cannot join the fake NCCL communicator\n");
    return 1;
  }
  if (do_bench) return bench(w, mib, iters);
  const std::map<std::string, std::function<bool(World&)>> cases = {
      {"results", case_results},
      {"residual_bits_16", case_results},  // with GRADPACK_RESIDUAL_BITS=16
      {"passthrough", case_passthrough},
      {"compression_off", [](World& x) { return case_all_to_nccl(x, "compression off"); }},
      {"oom_one_rank",
       [](World& x) { return case_all_to_nccl(x, "one rank out of memory", x.rank == 1); }},
      {"settings_differ", [](World& x) { return case_all_to_nccl(x, "q8 on one rank, q4 on the other"); }},
      {"user_group", case_user_group},
      {"capture", case_capture},
      {"two_streams", case_two_streams},
      {"two_devices", case_two_devices},
      {"residual_keys", case_residual_keys},
      {"abort", case_abort},
      {"abort_agreement", case_abort_agreement},
      {"launch_error", case_launch_error},
      {"dead_peer", case_dead_peer},
  };
  auto it = cases.find(which);
  if (it == cases.end()) {
    std::fprintf(stderr, "unknown case \"%s\"\n", which.c_str());
    return 2;
  }
  const bool ok = it->second(w);
  // Aborting cases have released their communicator already.
  static const char* const kAborted[] = {"abort", "abort_agreement", "launch_error", "dead_peer"};
  if (std::find(std::begin(kAborted), std::end(kAborted), which) == std::end(kAborted)) {
    ncclCommDestroy(w.comm);
  }
  fake::stream_destroy(w.stream);
  return ok ? 0 : 1;
}
