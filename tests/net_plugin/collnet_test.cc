// SPDX-License-Identifier: Apache-2.0
// The CollNet face, driven the way NCCL's proxy drives it (NCCL's src/transport/coll_net.cc), by
// four threads standing for four node leaders of one process: init, listen, handles exchanged,
// a concurrent blocking connect, closeListen, reduceSupport for every type and op, one staging
// region registered twice, then a stream of iallreduce calls with up to 8 in flight over staging
// slots, checked against a reference reduction; also compressed (GRADPACK_COLLNET_COMPRESS=q8)
// and with bad handles. Loopback only.
#include "net_plugin/collnet/collnet.h"

#include <dlfcn.h>
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "common/float16.h"
#include "net_plugin/tuner/measured_link.h"
#include "topology/cost_model.h"

namespace gp = gradpack::plugin::collnet;

// Every connect(2) of the process (the plugin is linked into this executable, so its dials bind
// here), counted so that a test can prove that nothing was dialled.
std::atomic<int> g_dials{0};
extern "C" int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  using Fn = int (*)(int, const struct sockaddr*, socklen_t);
  static const Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "connect"));
  g_dials.fetch_add(1);
  return real(fd, addr, len);
}

namespace {

constexpr int kNodes = 4;
constexpr int kWindow = 8;                     // NCCL_STEPS: requests in flight per group
constexpr size_t kSlotBytes = 8 * 256 * 1024;  // 8 channels x the largest CollNetChain chunk
constexpr uint64_t kStreamCommId = 0x1234;     // NCCL's commId for run_stream's communicator

class LoopbackEnvironment : public testing::Environment {
 public:
  void SetUp() override {
    // Only loopback, whatever interfaces the machine has (set before gradpack reads settings).
    setenv("GRADPACK_IFNAME", "=lo", 1);
    setenv("GRADPACK_TRANSPORT", "tcp", 1);
    if (std::getenv("GRADPACK_TIMEOUT_MS") == nullptr) setenv("GRADPACK_TIMEOUT_MS", "20000", 1);
  }
};
const auto* const kEnv = testing::AddGlobalTestEnvironment(new LoopbackEnvironment);

void run_nodes(const std::function<void(int)>& body) {
  std::vector<std::thread> threads;
  for (int r = 0; r < kNodes; ++r) threads.emplace_back(body, r);
  for (auto& t : threads) t.join();
}

struct TypeInfo {
  ncclDataType_t type;
  size_t size;
  bool is_unsigned;
  bool is_float;
};
const TypeInfo kTypes[] = {{ncclFloat32, 4, false, true}, {ncclInt32, 4, false, false},
                           {ncclFloat16, 2, false, true}, {ncclBfloat16, 2, false, true},
                           {ncclFloat64, 8, false, true}, {ncclInt8, 1, false, false},
                           {ncclUint8, 1, true, false},   {ncclInt64, 8, false, false}};
const ncclRedOp_t kOps[] = {ncclSum, ncclProd, ncclMax, ncclMin};

// Small integers, so that every reduction is exact in every type (fp16 and bf16 included) and in
// any order.
int64_t input(ncclRedOp_t op, bool is_unsigned, int call, int rank, size_t i) {
  const int64_t h = static_cast<int64_t>(
      (i * 2654435761u + static_cast<size_t>(call) * 97u + static_cast<size_t>(rank) * 31u) %
      1000003u);
  int64_t v = 0;
  switch (op) {
    case ncclProd:
      v = h % 5 - 2;  // |product of 4| <= 16
      break;
    case ncclSum:
      v = h % 17 - 8;  // |sum of 4| <= 32
      break;
    default:
      v = h % 101 - 50;
      break;
  }
  return is_unsigned ? (v < 0 ? -v : v) : v;
}

int64_t reduce_ref(ncclRedOp_t op, const int64_t* v, int n) {
  int64_t r = v[0];
  for (int k = 1; k < n; ++k) {
    switch (op) {
      case ncclSum:
        r += v[k];
        break;
      case ncclProd:
        r *= v[k];
        break;
      case ncclMax:
        r = std::max(r, v[k]);
        break;
      default:
        r = std::min(r, v[k]);
        break;
    }
  }
  return r;
}

void store(const TypeInfo& t, void* base, size_t i, double v) {
  auto* p = static_cast<uint8_t*>(base) + i * t.size;
  switch (t.type) {
    case ncclFloat32: {
      float f = static_cast<float>(v);
      std::memcpy(p, &f, 4);
      break;
    }
    case ncclFloat64:
      std::memcpy(p, &v, 8);
      break;
    case ncclFloat16: {
      uint16_t h = gradpack::f32_to_f16(static_cast<float>(v));
      std::memcpy(p, &h, 2);
      break;
    }
    case ncclBfloat16: {
      uint16_t h = gradpack::f32_to_bf16(static_cast<float>(v));
      std::memcpy(p, &h, 2);
      break;
    }
    case ncclInt32: {
      int32_t x = static_cast<int32_t>(v);
      std::memcpy(p, &x, 4);
      break;
    }
    case ncclInt64: {
      int64_t x = static_cast<int64_t>(v);
      std::memcpy(p, &x, 8);
      break;
    }
    case ncclInt8: {
      int8_t x = static_cast<int8_t>(v);
      std::memcpy(p, &x, 1);
      break;
    }
    default: {
      uint8_t x = static_cast<uint8_t>(v);
      std::memcpy(p, &x, 1);
      break;
    }
  }
}

double load(const TypeInfo& t, const void* base, size_t i) {
  const auto* p = static_cast<const uint8_t*>(base) + i * t.size;
  switch (t.type) {
    case ncclFloat32: {
      float f;
      std::memcpy(&f, p, 4);
      return f;
    }
    case ncclFloat64: {
      double d;
      std::memcpy(&d, p, 8);
      return d;
    }
    case ncclFloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return gradpack::f16_to_f32(h);
    }
    case ncclBfloat16: {
      uint16_t h;
      std::memcpy(&h, p, 2);
      return gradpack::bf16_to_f32(h);
    }
    case ncclInt32: {
      int32_t x;
      std::memcpy(&x, p, 4);
      return x;
    }
    case ncclInt64: {
      int64_t x;
      std::memcpy(&x, p, 8);
      return static_cast<double>(x);
    }
    case ncclInt8: {
      int8_t x;
      std::memcpy(&x, p, 1);
      return x;
    }
    default: {
      uint8_t x;
      std::memcpy(&x, p, 1);
      return x;
    }
  }
}

// A float in [-1, 1) with varied magnitudes, for the compressed runs.
double gradient(int call, int rank, size_t i) {
  uint32_t s = static_cast<uint32_t>(i * 747796405u + static_cast<size_t>(call) * 2891336453u +
                                     static_cast<size_t>(rank) * 12345u);
  s ^= s >> 16;
  s *= 0x7feb352du;
  s ^= s >> 15;
  const double u = static_cast<double>(s >> 8) / 16777216.0 * 2 - 1;
  return u * ((i % 7 == 0) ? 1.0 : 0.01);
}

struct Call {
  int index;
  const TypeInfo* type;
  ncclRedOp_t op;
  size_t count;
};

// 32 calls: every (type, op) once, chunks of 32 to 256 KiB, groups of 1, 2, 3 or 8 channels.
std::vector<Call> make_calls() {
  const size_t chunks[] = {32 * 1024, 64 * 1024, 128 * 1024, 256 * 1024};
  const size_t groups[] = {1, 2, 3, 8};
  std::vector<Call> calls;
  for (int c = 0; c < 32; ++c) {
    const TypeInfo* t = &kTypes[c % 8];
    const ncclRedOp_t op = kOps[(c / 8 + c) % 4];
    const size_t bytes = groups[c % 4] * chunks[(c / 4) % 4];
    calls.push_back({c, t, op, bytes / t->size});
  }
  return calls;
}

struct Node {
  void* ctx = nullptr;
  void* lcomm = nullptr;
  void* coll = nullptr;
  uint8_t handle[NCCL_NET_HANDLE_MAXSIZE] = {};
};

void exercise(int rank, void* coll, const std::vector<Call>& calls, bool compressed,
              std::vector<std::vector<std::vector<uint8_t>>>* results);

// Runs the whole NCCL sequence on kNodes threads; `compressed`: GRADPACK_COLLNET_COMPRESS=q8.
// results[r][c] is what rank r got from call c.
void run_stream(bool compressed, std::vector<std::vector<std::vector<uint8_t>>>* results) {
  if (compressed) {
    setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
  } else {
    unsetenv("GRADPACK_COLLNET_COMPRESS");
  }
  const std::vector<Call> calls = make_calls();
  std::vector<Node> nodes(kNodes);
  results->assign(kNodes, std::vector<std::vector<uint8_t>>(calls.size()));
  std::barrier sync(kNodes);
  const int dials_before = g_dials.load();
  run_nodes([&](int rank) {
    Node& me = nodes[static_cast<size_t>(rank)];
    // No ASSERT before the barriers below: a thread that left early would stall the others.
    EXPECT_EQ(gp::init(&me.ctx, kStreamCommId, nullptr), ncclSuccess);
    int ndev = 0;
    EXPECT_EQ(gp::devices(&ndev), ncclSuccess);
    EXPECT_GE(ndev, 1);
    ncclNetProperties_v11_t props;
    EXPECT_EQ(gp::get_properties(0, &props), ncclSuccess);
    EXPECT_EQ(props.maxCollBytes, uint64_t{1} << 40);
    EXPECT_EQ(props.ptrSupport, NCCL_PTR_HOST);
    EXPECT_EQ(gp::listen(me.ctx, 0, me.handle, &me.lcomm), ncclSuccess);
    sync.arrive_and_wait();  // the bootstrap all-gather of the handles

    void* handles[kNodes];
    for (int p = 0; p < kNodes; ++p) handles[p] = nodes[static_cast<size_t>(p)].handle;
    EXPECT_EQ(gp::connect(handles, kNodes, rank, me.lcomm, &me.coll), ncclSuccess);
    EXPECT_EQ(gp::close_listen(me.lcomm), ncclSuccess);  // right after connect, as NCCL does
    if (me.coll != nullptr) exercise(rank, me.coll, calls, compressed, results);
    sync.arrive_and_wait();  // nobody closes while a peer still reduces
    if (me.coll != nullptr) {
      EXPECT_EQ(gp::close_coll(me.coll), ncclSuccess);
    }
    EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);
  });
  unsetenv("GRADPACK_COLLNET_COMPRESS");
  // The mesh: every node dialled every other (the counter works).
  EXPECT_GE(g_dials.load() - dials_before, kNodes * (kNodes - 1));
}

// One node's part after connect: reduceSupport, registration, the stream of all-reduces.
void exercise(int rank, void* coll, const std::vector<Call>& calls, bool compressed,
              std::vector<std::vector<std::vector<uint8_t>>>* results) {
  {
    for (int t = 0; t < ncclNumTypes; ++t) {
      for (int o = 0; o < 4; ++o) {
        int supported = -1;
        EXPECT_EQ(gp::reduce_support(static_cast<ncclDataType_t>(t), static_cast<ncclRedOp_t>(o),
                                     &supported),
                  ncclSuccess);
        const bool want =
            t != ncclUint32 && t != ncclUint64 && t != ncclFloat8e4m3 && t != ncclFloat8e5m2;
        EXPECT_EQ(supported, want ? 1 : 0) << "type " << t << " op " << o;
      }
    }

    // One shared staging region: kWindow send slots, then kWindow receive slots. The send and
    // receive proxies each register it (src/transport/coll_net.cc).
    std::vector<uint8_t> region(2 * kWindow * kSlotBytes);
    void* send_mr = nullptr;
    void* recv_mr = nullptr;
    EXPECT_EQ(gp::reg_mr(coll, region.data(), region.size(), NCCL_PTR_HOST, &send_mr), ncclSuccess);
    EXPECT_EQ(gp::reg_mr(coll, region.data(), region.size(), NCCL_PTR_HOST, &recv_mr), ncclSuccess);
    void* cuda_mr = nullptr;
    EXPECT_NE(gp::reg_mr(coll, region.data(), region.size(), NCCL_PTR_CUDA, &cuda_mr), ncclSuccess);
    auto send_slot = [&](size_t s) { return region.data() + s * kSlotBytes; };
    auto recv_slot = [&](size_t s) { return region.data() + (kWindow + s) * kSlotBytes; };

    struct InFlight {
      const Call* call;
      void* request;
      size_t slot;
    };
    std::deque<InFlight> window;
    auto complete_oldest = [&] {
      InFlight f = window.front();
      window.pop_front();
      int done = 0, size = -1;
      const bool with_size = f.call->index % 2 == 0;
      while (done == 0) {
        ncclResult_t res = gp::test(f.request, &done, with_size ? &size : nullptr);
        ASSERT_EQ(res, ncclSuccess) << "call " << f.call->index;
        if (done == 0) std::this_thread::yield();
      }
      if (with_size) {
        EXPECT_EQ(static_cast<size_t>(size), f.call->count * f.call->type->size);
      }
      const uint8_t* out = recv_slot(f.slot);
      (*results)[static_cast<size_t>(rank)][static_cast<size_t>(f.call->index)].assign(
          out, out + f.call->count * f.call->type->size);
    };
    for (size_t c = 0; c < calls.size(); ++c) {
      const Call& call = calls[c];
      if (window.size() == kWindow) complete_oldest();
      if (testing::Test::HasFatalFailure()) break;
      const size_t slot = c % kWindow;
      for (size_t i = 0; i < call.count; ++i) {
        const bool lossy = compressed && call.type->is_float && call.op == ncclSum;
        store(*call.type, send_slot(slot), i,
              lossy ? gradient(call.index, rank, i)
                    : static_cast<double>(
                          input(call.op, call.type->is_unsigned, call.index, rank, i)));
      }
      void* request = nullptr;
      EXPECT_EQ(gp::iallreduce(coll, send_slot(slot), recv_slot(slot), call.count, call.type->type,
                               call.op, send_mr, recv_mr, &request),
                ncclSuccess);
      if (request == nullptr) {
        ADD_FAILURE() << "8 requests in flight must be accepted";
        break;
      }
      window.push_back({&call, request, slot});
    }
    while (!window.empty() && !testing::Test::HasFatalFailure()) complete_oldest();

    // An empty call (every node makes it, in the same place of the order) and a flush of host
    // memory, which is done at once.
    void* request = nullptr;
    EXPECT_EQ(gp::iallreduce(coll, send_slot(0), recv_slot(0), 0, ncclFloat32, ncclSum, send_mr,
                             recv_mr, &request),
              ncclSuccess);
    for (int done = 0; request != nullptr && done == 0;) {
      ASSERT_EQ(gp::test(request, &done, nullptr), ncclSuccess);
    }
    EXPECT_EQ(gp::iflush(coll, recv_slot(0), 4096, recv_mr, &request), ncclSuccess);
    if (request != nullptr) {
      int done = 0, size = 0;
      EXPECT_EQ(gp::test(request, &done, &size), ncclSuccess);
      EXPECT_EQ(done, 1);
      EXPECT_EQ(size, 4096);
    }
    EXPECT_EQ(gp::dereg_mr(coll, send_mr), ncclSuccess);
    EXPECT_EQ(gp::dereg_mr(coll, recv_mr), ncclSuccess);
  }
}

void check_exact(const std::vector<std::vector<std::vector<uint8_t>>>& results, bool compressed) {
  for (const Call& call : make_calls()) {
    if (compressed && call.type->is_float && call.op == ncclSum) continue;
    for (int r = 0; r < kNodes; ++r) {
      const auto& got = results[static_cast<size_t>(r)][static_cast<size_t>(call.index)];
      ASSERT_EQ(got.size(), call.count * call.type->size);
      for (size_t i = 0; i < call.count; ++i) {
        int64_t v[kNodes];
        for (int p = 0; p < kNodes; ++p) {
          v[p] = input(call.op, call.type->is_unsigned, call.index, p, i);
        }
        // Exact, compared as numbers (a float product with a zero may be -0).
        ASSERT_EQ(load(*call.type, got.data(), i),
                  static_cast<double>(reduce_ref(call.op, v, kNodes)))
            << "call " << call.index << " type " << call.type->type << " op " << call.op << " rank "
            << r << " element " << i;
      }
    }
  }
}

TEST(CollNet, StreamOfAllReducesMatchesTheReferenceOnEveryNode) {
  std::vector<std::vector<std::vector<uint8_t>>> results;
  run_stream(false, &results);
  if (HasFailure()) return;
  check_exact(results, false);
}

TEST(CollNet, CompressedFloatSumsAreWithinQ8BoundAndIdenticalOnEveryNode) {
  std::vector<std::vector<std::vector<uint8_t>>> results;
  run_stream(true, &results);
  if (HasFailure()) return;
  check_exact(results, true);  // the other types and ops are not compressed: exact
  int compressed_calls = 0;
  for (const Call& call : make_calls()) {
    if (!(call.type->is_float && call.op == ncclSum)) continue;
    ++compressed_calls;
    const auto& first = results[0][static_cast<size_t>(call.index)];
    for (int r = 1; r < kNodes; ++r) {
      ASSERT_EQ(results[static_cast<size_t>(r)][static_cast<size_t>(call.index)], first)
          << "call " << call.index << ": rank " << r << " differs from rank 0";
    }
    // Stochastic q8 (reference: tests/collectives/compressed_test.cc): each element within
    // 1/127 of the block absmax per input and once more for the sum, plus the output rounding.
    double absmax_in = 0, absmax_sum = 0;
    std::vector<double> ref(call.count, 0.0);
    for (size_t i = 0; i < call.count; ++i) {
      for (int p = 0; p < kNodes; ++p) {
        std::vector<uint8_t> one(call.type->size);
        store(*call.type, one.data(), 0, gradient(call.index, p, i));
        const double v = load(*call.type, one.data(), 0);
        ref[i] += v;
        absmax_in = std::max(absmax_in, std::fabs(v));
      }
      absmax_sum = std::max(absmax_sum, std::fabs(ref[i]));
    }
    const double eps = 1.0 / 127;
    const double out_rounding = call.type->type == ncclBfloat16  ? 1.0 / 256
                                : call.type->type == ncclFloat16 ? 1.0 / 2048
                                                                 : 1e-6;
    double max_error = 0;
    for (size_t i = 0; i < call.count; ++i) {
      const double got = load(*call.type, first.data(), i);
      max_error = std::max(max_error, std::fabs(got - ref[i]));
      const double bound = eps * (kNodes * absmax_in + absmax_sum + 1e-3) +
                           out_rounding * (std::fabs(ref[i]) + eps * absmax_sum) + 1e-5;
      ASSERT_LE(std::fabs(got - ref[i]), bound)
          << "call " << call.index << " type " << call.type->type << " element " << i;
    }
    // q8 ran (fp32: far above the summation-order error of an uncompressed sum); fp64 is not
    // compressed (q8 takes fp32, fp16 and bf16).
    if (call.type->type == ncclFloat64) {
      EXPECT_LE(max_error, 1e-12) << "call " << call.index;
    }
    if (call.type->type == ncclFloat32) {
      EXPECT_GT(max_error, 1e-5) << "call " << call.index << " was not compressed";
    }
  }
  EXPECT_EQ(compressed_calls, 4);  // fp32, fp16, bf16 and (uncompressed) fp64 sums
  // connect measured the link and the codec among the nodes, and timed small all-reduces both
  // ways, for the tuner (measured_link.h).
  std::string codec;
  ASSERT_TRUE(gp::codec_from_setting("q8", &codec).ok());
  gradpack::plugin::MeasuredLink link;
  ASSERT_TRUE(gradpack::plugin::measured_link(kStreamCommId, kNodes, codec, &link));
  EXPECT_EQ(link.model.nranks, kNodes);
  EXPECT_GT(link.model.latency_s, 0);
  EXPECT_GT(link.model.link_Bps, 0);
  EXPECT_GT(link.model.encode_Bps, 0);
  EXPECT_GT(link.model.decode_Bps, 0);
  EXPECT_NE(link.probed_win_bytes, 0u) << "the small sizes were not timed";
}

// Nodes that compress differently cannot share a CollNet all-reduce: connect fails on every node,
// saying which setting differs, instead of the first iallreduce failing (or mixing codecs).
TEST(CollNet, NodesWithDifferentCodecsFailConnectOnEveryNode) {
  std::vector<Node> nodes(kNodes);
  for (int r = 0; r < kNodes; ++r) {  // contexts read the setting at init
    if (r == kNodes - 1) {
      unsetenv("GRADPACK_COLLNET_COMPRESS");
    } else {
      setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
    }
    ASSERT_EQ(gp::init(&nodes[static_cast<size_t>(r)].ctx, 0x55, nullptr), ncclSuccess);
  }
  unsetenv("GRADPACK_COLLNET_COMPRESS");
  std::barrier sync(kNodes);
  run_nodes([&](int rank) {
    Node& me = nodes[static_cast<size_t>(rank)];
    EXPECT_EQ(gp::listen(me.ctx, 0, me.handle, &me.lcomm), ncclSuccess);
    sync.arrive_and_wait();
    void* handles[kNodes];
    for (int p = 0; p < kNodes; ++p) handles[p] = nodes[static_cast<size_t>(p)].handle;
    EXPECT_EQ(gp::connect(handles, kNodes, rank, me.lcomm, &me.coll), ncclInvalidArgument);
    EXPECT_EQ(me.coll, nullptr);
    EXPECT_EQ(gp::close_listen(me.lcomm), ncclSuccess);
    EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);
  });
}

// NCCL's CollNet setup on node `rank`'s thread: init, listen, the all-gather of the handles (a
// barrier), the collective connect, closeListen. EXPECTs only: a thread that left early would
// stall the others at the barrier.
void set_up_node(std::vector<Node>& nodes, int rank, std::barrier<>& sync, uint64_t comm_id) {
  Node& me = nodes[static_cast<size_t>(rank)];
  EXPECT_EQ(gp::init(&me.ctx, comm_id, nullptr), ncclSuccess);
  EXPECT_EQ(gp::listen(me.ctx, 0, me.handle, &me.lcomm), ncclSuccess);
  sync.arrive_and_wait();
  void* handles[kNodes];
  for (int p = 0; p < kNodes; ++p) handles[p] = nodes[static_cast<size_t>(p)].handle;
  EXPECT_EQ(gp::connect(handles, kNodes, rank, me.lcomm, &me.coll), ncclSuccess);
  EXPECT_EQ(gp::close_listen(me.lcomm), ncclSuccess);
}

// connect measures the link only for a tuner: not when every node has GRADPACK_TUNER=off, and on
// every node (the measuring is collective) when at least one node's tuner is on.
TEST(CollNet, TheLinkIsMeasuredOnlyWhenSomeNodesTunerIsOn) {
  std::string codec;
  ASSERT_TRUE(gp::codec_from_setting("q8", &codec).ok());
  for (int tuners_on : {0, 1}) {
    SCOPED_TRACE(std::to_string(tuners_on) + " node(s) with the tuner on");
    const uint64_t comm_id = 0x7a0 + static_cast<uint64_t>(tuners_on);
    std::vector<Node> nodes(kNodes);
    setenv("GRADPACK_COLLNET_COMPRESS", "q8", 1);
    for (int r = 0; r < kNodes; ++r) {  // contexts read the settings at init
      setenv("GRADPACK_TUNER", r < tuners_on ? "on" : "off", 1);
      ASSERT_EQ(gp::init(&nodes[static_cast<size_t>(r)].ctx, comm_id, nullptr), ncclSuccess);
    }
    unsetenv("GRADPACK_TUNER");
    unsetenv("GRADPACK_COLLNET_COMPRESS");
    std::barrier sync(kNodes);
    run_nodes([&](int rank) {
      Node& me = nodes[static_cast<size_t>(rank)];
      EXPECT_EQ(gp::listen(me.ctx, 0, me.handle, &me.lcomm), ncclSuccess);
      sync.arrive_and_wait();
      void* handles[kNodes];
      for (int p = 0; p < kNodes; ++p) handles[p] = nodes[static_cast<size_t>(p)].handle;
      EXPECT_EQ(gp::connect(handles, kNodes, rank, me.lcomm, &me.coll), ncclSuccess);
      EXPECT_EQ(gp::close_listen(me.lcomm), ncclSuccess);
      sync.arrive_and_wait();
      if (me.coll != nullptr) {
        EXPECT_EQ(gp::close_coll(me.coll), ncclSuccess);
      }
      EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);
    });
    gradpack::plugin::MeasuredLink link;
    EXPECT_EQ(gradpack::plugin::measured_link(comm_id, kNodes, codec, &link), tuners_on > 0);
    gradpack::plugin::forget_measured_links(comm_id);
  }
}

// NCCL may tear down with all-reduces still queued (an aborted job): closeColl and finalize return,
// on every node, whatever the calls in flight were doing.
TEST(CollNet, TeardownWithRequestsInFlightReturns) {
  std::vector<Node> nodes(kNodes);
  std::barrier sync(kNodes);
  run_nodes([&](int rank) {
    Node& me = nodes[static_cast<size_t>(rank)];
    set_up_node(nodes, rank, sync, 0x99);
    std::vector<float> region(2 * kWindow * kSlotBytes / sizeof(float), 1.0f);
    const size_t count = kSlotBytes / sizeof(float);
    if (me.coll != nullptr) {
      void* first = nullptr;
      for (size_t s = 0; s < kWindow; ++s) {
        void* request = nullptr;
        EXPECT_EQ(gp::iallreduce(me.coll, region.data() + s * count,
                                 region.data() + (kWindow + s) * count, count, ncclFloat32, ncclSum,
                                 nullptr, nullptr, &request),
                  ncclSuccess);
        EXPECT_NE(request, nullptr);
        if (s == 0) first = request;
      }
      // Node 0 leaves at once, the others after polling one request (whatever it says).
      if (rank != 0 && first != nullptr) {
        int done = 0;
        (void)gp::test(first, &done, nullptr);
      }
      EXPECT_EQ(gp::close_coll(me.coll), ncclSuccess);
    }
    EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);
  });
}

// A peer that never joins the all-reduce in progress (alive, connected, silent) does not hold
// the others' closeColl for GRADPACK_TIMEOUT_MS: the call in progress is cancelled, and the
// silent peer's own later close returns too. Every node makes a first all-reduce; all but the
// last queue a second one, which their workers start once the first is done.
TEST(CollNet, CloseWhileAPeerNeverJoinsReturnsBeforeTheTimeout) {
  const auto timeout = std::chrono::milliseconds(std::atoi(std::getenv("GRADPACK_TIMEOUT_MS")));
  constexpr size_t kCount = 4096;
  std::vector<Node> nodes(kNodes);
  std::barrier sync(kNodes);
  std::vector<float> region(kNodes * 4 * kCount, 1.0f);
  run_nodes([&](int rank) {
    Node& me = nodes[static_cast<size_t>(rank)];
    set_up_node(nodes, rank, sync, 0x77);
    const bool silent = rank == kNodes - 1;
    if (me.coll != nullptr) {
      float* mine = region.data() + static_cast<size_t>(rank) * 4 * kCount;
      void* first = nullptr;
      void* second = nullptr;
      EXPECT_EQ(gp::iallreduce(me.coll, mine, mine + kCount, kCount, ncclFloat32, ncclSum, nullptr,
                               nullptr, &first),
                ncclSuccess);
      if (!silent) {
        EXPECT_EQ(gp::iallreduce(me.coll, mine + 2 * kCount, mine + 3 * kCount, kCount, ncclFloat32,
                                 ncclSum, nullptr, nullptr, &second),
                  ncclSuccess);
      }
      int done = 0;
      while (first != nullptr && done == 0) {
        if (gp::test(first, &done, nullptr) != ncclSuccess) break;
      }
      EXPECT_EQ(done, 1);
      EXPECT_EQ(mine[kCount], static_cast<float>(kNodes));
      if (!silent) {
        // Let the worker take up the second call (it waits for the silent node from then on).
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        done = 0;
        EXPECT_EQ(gp::test(second, &done, nullptr), ncclSuccess);
        EXPECT_EQ(done, 0);
      }
    }
    sync.arrive_and_wait();  // nobody closes before all have tested (a close breaks the others)
    if (me.coll != nullptr && !silent) {
      const auto t0 = std::chrono::steady_clock::now();
      EXPECT_EQ(gp::close_coll(me.coll), ncclSuccess);
      EXPECT_LT(std::chrono::steady_clock::now() - t0, timeout / 2)
          << "closeColl waited for the silent node instead of cancelling the call in progress";
    }
    sync.arrive_and_wait();  // the others have closed
    if (me.coll != nullptr && silent) {
      EXPECT_EQ(gp::close_coll(me.coll), ncclSuccess);
    }
    EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);
  });
}

// A comm NCCL never closed is closed by the last finalize (its worker joined, nothing leaks).
TEST(CollNet, FinalizeClosesWhatWasLeftOpen) {
  std::vector<Node> nodes(kNodes);
  std::vector<std::vector<float>> buffers(kNodes, std::vector<float>(4096, 1.0f));
  std::barrier sync(kNodes);
  run_nodes([&](int rank) {
    Node& me = nodes[static_cast<size_t>(rank)];
    set_up_node(nodes, rank, sync, 0x77);
    std::vector<float>& data = buffers[static_cast<size_t>(rank)];  // outlives the comms
    void* request = nullptr;
    if (me.coll != nullptr) {
      EXPECT_EQ(gp::iallreduce(me.coll, data.data(), data.data(), data.size(), ncclFloat32, ncclSum,
                               nullptr, nullptr, &request),
                ncclSuccess);
    }
    sync.arrive_and_wait();
    EXPECT_EQ(gp::finalize(me.ctx), ncclSuccess);  // no closeColl
  });
}

TEST(CollNet, BadHandlesAreRefusedBeforeAnythingIsDialled) {
  void* ctx = nullptr;
  ASSERT_EQ(gp::init(&ctx, 1, nullptr), ncclSuccess);
  uint8_t mine[NCCL_NET_HANDLE_MAXSIZE];
  void* lcomm = nullptr;
  ASSERT_EQ(gp::listen(ctx, 0, mine, &lcomm), ncclSuccess);

  uint8_t garbage[NCCL_NET_HANDLE_MAXSIZE];
  for (size_t i = 0; i < sizeof(garbage); ++i) garbage[i] = static_cast<uint8_t>(i * 37 + 11);
  uint8_t flipped[NCCL_NET_HANDLE_MAXSIZE];
  std::memcpy(flipped, mine, sizeof(flipped));
  flipped[40] ^= 0x01;  // inside the transport's address: only the checksum notices
  uint8_t zeros[NCCL_NET_HANDLE_MAXSIZE] = {};
  const int dials_before = g_dials.load();
  for (uint8_t* bad : {garbage, flipped, zeros}) {
    void* handles[2] = {mine, bad};
    void* coll = nullptr;
    EXPECT_NE(gp::connect(handles, 2, 0, lcomm, &coll), ncclSuccess);
    EXPECT_EQ(coll, nullptr);
  }
  // Not this listener's handle in this rank's place.
  {
    void* handles[2] = {garbage, mine};
    void* coll = nullptr;
    EXPECT_NE(gp::connect(handles, 2, 0, lcomm, &coll), ncclSuccess);
  }
  EXPECT_EQ(g_dials.load(), dials_before) << "a refused handle was dialled";
  EXPECT_EQ(gp::close_listen(lcomm), ncclSuccess);
  EXPECT_EQ(gp::finalize(ctx), ncclSuccess);
}

TEST(CollNet, BadSettingFailsInitAndFinalizeOfNullIsSafe) {
  setenv("GRADPACK_COLLNET_COMPRESS", "q99", 1);
  void* ctx = reinterpret_cast<void*>(0x1);
  EXPECT_NE(gp::init(&ctx, 2, nullptr), ncclSuccess);
  EXPECT_EQ(ctx, nullptr);
  EXPECT_EQ(gp::finalize(ctx), ncclSuccess);
  unsetenv("GRADPACK_COLLNET_COMPRESS");
}

}  // namespace
