// SPDX-License-Identifier: Apache-2.0
// The net plugin driven exactly as NCCL 2.28.9 drives it (NCCL's src/transport/net.cc proxy and
// ext-net/README.md): dlopen RTLD_NOW|RTLD_LOCAL, every exported table, two contexts, properties
// from two threads, non-blocking connect/accept in every interleaving NCCL produces, NCCL's three
// registration sizes, the proxy's ring of 8 slots on a "progress" thread with setup on a "service"
// thread, NULL requests retried, the 0x1 receive hint, 32 outstanding requests, teardown with
// requests in flight, dlclose and dlopen again; then two forked processes over loopback, and
// faults: bad handles (refused before any dial: connect(2) is interposed below), a peer killed
// mid-transfer.
//
// GRADPACK_PLUGIN names the .so (compiled in by CMake); GRADPACK_IFNAME==lo and
// GRADPACK_TRANSPORT=tcp keep every connection on loopback TCP. Checks inside scenarios use
// PT_CHECK (they also run in forked children); each test then asserts that no check failed.
#include <arpa/inet.h>
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/net_plugin/harness.h"

namespace pt = gradpack::plugin_test;
using pt::Clock;
using pt::Net;

// ---- connect(2), interposed: the plugin's dials are counted and must all be loopback -----------
namespace {
std::atomic<int> g_inet_dials{0};
std::atomic<int> g_foreign_dials{0};

bool allowed_destination(const sockaddr* addr) {
  if (addr->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(addr);
    const uint32_t a = ntohl(in->sin_addr.s_addr);
    if ((a >> 24) == 127) return true;
    // The vcluster (10.249.0.0/24), only when the vcluster script says so.
    return getenv("GRADPACK_HARNESS_VCLUSTER") != nullptr &&
           (a >> 8) == ((10u << 16) | (249u << 8));
  }
  if (addr->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(addr);
    return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr) || IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr);
  }
  return true;  // AF_UNIX and the like are not network dials
}
}  // namespace

extern "C" int connect(int fd, const struct sockaddr* addr, socklen_t len) {
  using Fn = int (*)(int, const struct sockaddr*, socklen_t);
  static Fn real = reinterpret_cast<Fn>(dlsym(RTLD_NEXT, "connect"));
  if (addr != nullptr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
    ++g_inet_dials;
    if (!allowed_destination(addr)) {
      ++g_foreign_dials;
      char text[INET6_ADDRSTRLEN] = "?";
      if (addr->sa_family == AF_INET) {
        inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(addr)->sin_addr, text,
                  sizeof(text));
      }
      fprintf(stderr, "harness: the plugin dialed %s, which is not loopback: refused\n", text);
      errno = ENETUNREACH;
      return -1;
    }
  }
  return real(fd, addr, len);
}

namespace {

class LoopbackOnly : public ::testing::Environment {
 public:
  void SetUp() override {
    // Loopback only, over TCP (an RDMA device, if any, is not what these tests are about); the
    // environment may override both.
    setenv("GRADPACK_IFNAME", "=lo", 0);
    setenv("GRADPACK_TRANSPORT", "tcp", 0);
    setenv("GRADPACK_TIMEOUT_MS", "5000", 0);
    if (getenv("GRADPACK_PLUGIN") == nullptr) setenv("GRADPACK_PLUGIN", GRADPACK_PLUGIN_DEFAULT, 0);
  }
  void TearDown() override {
    EXPECT_EQ(g_foreign_dials.load(), 0) << "the plugin dialed an address that is not loopback";
  }
};
const auto* const g_env = ::testing::AddGlobalTestEnvironment(new LoopbackOnly);

std::unique_ptr<pt::Library> load_or_skip_reason(std::string* why) {
  const std::string path = pt::plugin_path();
  if (path.empty()) {
    *why = "the plugin is not built (no nccl-net-gradpack target)";
    return nullptr;
  }
  std::string error;
  auto lib = pt::Library::open(path, &error);
  if (lib == nullptr) *why = "dlopen(" + path + "): " + error;
  return lib;
}

#define LOAD_OR_SKIP(lib)                                                     \
  std::string lib##_why;                                                      \
  auto lib = load_or_skip_reason(&lib##_why);                                 \
  if (lib == nullptr && pt::plugin_path().empty()) GTEST_SKIP() << lib##_why; \
  ASSERT_NE(lib, nullptr) << lib##_why

// One NCCL "communicator": a context on the plugin and device 0.
struct Comm {
  Net* net = nullptr;
  void* ctx = nullptr;
  int dev = 0;
};

bool open_comm(Net& net, Comm* c, ncclProfilerCallback_t prof = nullptr) {
  c->net = &net;
  PT_OK(net.init(&c->ctx, 0x5eed0000u + reinterpret_cast<uintptr_t>(c), -1, pt::harness_logger,
                 prof));
  int ndev = 0;
  PT_OK(net.devices(&ndev));
  PT_CHECK(ndev > 0, "devices() = %d", ndev);
  ncclNetProperties_v11_t props{};
  PT_OK(net.get_properties(c->dev, &props));  // NCCL's device-type check
  PT_CHECK(props.netDeviceType == NCCL_NET_DEVICE_HOST, "netDeviceType %d", props.netDeviceType);
  return true;
}

// A connected pair on one comm (both ends in this process): listen into NCCL's 128-byte buffer,
// connect/accept alternately, closeListen right away.
struct Pair {
  void* send = nullptr;
  void* recv = nullptr;
};

bool open_pair(Comm& c, Pair* p) {
  alignas(8) char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  void* lcomm = nullptr;
  PT_OK(c.net->listen(c.ctx, c.dev, handle, &lcomm));
  PT_CHECK(lcomm != nullptr, "listen gave no listenComm");
  char copy[NCCL_NET_HANDLE_MAXSIZE];
  memcpy(copy, handle, sizeof(copy));  // what the peer receives through NCCL's bootstrap
  if (!pt::connect_accept(*c.net, c.ctx, c.dev, copy, lcomm, &p->send, &p->recv)) return false;
  PT_OK(c.net->close_listen(lcomm));
  return true;
}

// Tests `request` until it is done, as NCCL's progress thread does: an error code, or not done by
// `deadline`, is a failure.
testing::AssertionResult test_until_done(pt::Net& net, void* request, int* sizes,
                                         Clock::time_point deadline) {
  for (int done = 0; !done;) {
    const ncclResult_t rc = net.test(request, &done, sizes);
    if (rc != ncclSuccess) {
      return testing::AssertionFailure() << "test returned " << pt::result_name(rc);
    }
    if (Clock::now() >= deadline) return testing::AssertionFailure() << "past the deadline";
  }
  return testing::AssertionSuccess();
}

bool close_pair(Comm& c, Pair& p) {
  PT_OK(c.net->close_send(p.send));
  PT_OK(c.net->close_recv(p.recv));
  p = Pair{};
  return true;
}

// Registers a whole buffer as host memory on one comm, as NCCL does per protocol buffer.
bool reg(Net& net, void* comm, pt::HostBuffer& buf, void** mh) {
  PT_OK(net.reg_mr(comm, buf.data(), buf.size(), NCCL_PTR_HOST, mh));
  return true;
}

// Moves `messages` through pair p with protocol `proto`: sends and receives in one ring on the
// calling thread.
bool ring_once(Comm& c, Pair& p, const pt::Protocol& proto, std::vector<size_t> sizes,
               uint64_t messages, bool out_of_order = false) {
  pt::HostBuffer sbuf(proto.buffer_bytes), rbuf(proto.buffer_bytes);
  void *smh = nullptr, *rmh = nullptr;
  if (!reg(*c.net, p.send, sbuf, &smh) || !reg(*c.net, p.recv, rbuf, &rmh)) return false;
  pt::RingOptions o;
  o.proto = proto;
  o.messages = messages;
  o.sizes = std::move(sizes);
  o.test_out_of_order = out_of_order;
  o.send_tag = o.recv_tag = 3;  // a rank id, as NCCL's tags are
  pt::RingResult r;
  bool ok = pt::run_ring(*c.net, o, {p.send, smh, sbuf.data()}, {p.recv, rmh, rbuf.data()}, &r,
                         Clock::now() + std::chrono::seconds(30));
  PT_CHECK(ok, "%s ring: %s returned %s", proto.name, r.what.c_str(), pt::result_name(r.error));
  PT_CHECK(r.messages_received == messages, "received %llu of %llu",
           static_cast<unsigned long long>(r.messages_received),
           static_cast<unsigned long long>(messages));
  PT_OK(c.net->dereg_mr(p.send, smh));
  PT_OK(c.net->dereg_mr(p.recv, rmh));
  return true;
}

// Waits (up to 3 s) for the process's thread count to come back to `baseline`.
bool threads_back_to(int baseline) {
  const auto until = Clock::now() + std::chrono::seconds(3);
  while (pt::thread_count() > baseline && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  PT_CHECK(pt::thread_count() <= baseline,
           "%d threads after the last finalize, %d before init: the plugin left threads running",
           pt::thread_count(), baseline);
  return true;
}

const std::vector<size_t> kOddSizes = {0, 1, 7, 4096, 8191, 65535, 100003};

// ================================================================================================
TEST(Load, DlopenFindsEveryTableWithTheRequiredEntries) {
  LOAD_OR_SKIP(lib);
  for (int v : {11, 10, 9, 8}) {
    const std::string sym = "ncclNetPlugin_v" + std::to_string(v);
    EXPECT_NE(lib->symbol(sym.c_str()), nullptr) << sym;
    const std::string coll = "ncclCollNetPlugin_v" + std::to_string(v);
    EXPECT_NE(lib->symbol(coll.c_str()), nullptr) << coll;
  }
  EXPECT_NE(lib->symbol("ncclTunerPlugin_v5"), nullptr);
  // The plugin never pulls in the CUDA runtime (ARCHITECTURE.md): nothing CUDA is mapped.
  FILE* maps = fopen("/proc/self/maps", "r");
  ASSERT_NE(maps, nullptr);
  char line[1024];
  while (fgets(line, sizeof(line), maps) != nullptr) {
    EXPECT_EQ(strstr(line, "libcudart"), nullptr) << "loading the plugin mapped " << line;
    EXPECT_EQ(strstr(line, "libcuda.so"), nullptr) << "loading the plugin mapped " << line;
  }
  fclose(maps);
  auto* t = static_cast<ncclNet_v11_t*>(lib->symbol("ncclNetPlugin_v11"));
  ASSERT_NE(t, nullptr);
  ASSERT_NE(t->name, nullptr);
  EXPECT_GT(strlen(t->name), 0u);
  // Called unconditionally by NCCL: must be set.
  for (auto [what, fn] : std::initializer_list<std::pair<const char*, const void*>>{
           {"init", reinterpret_cast<const void*>(t->init)},
           {"devices", reinterpret_cast<const void*>(t->devices)},
           {"getProperties", reinterpret_cast<const void*>(t->getProperties)},
           {"listen", reinterpret_cast<const void*>(t->listen)},
           {"connect", reinterpret_cast<const void*>(t->connect)},
           {"accept", reinterpret_cast<const void*>(t->accept)},
           {"regMr", reinterpret_cast<const void*>(t->regMr)},
           {"deregMr", reinterpret_cast<const void*>(t->deregMr)},
           {"isend", reinterpret_cast<const void*>(t->isend)},
           {"irecv", reinterpret_cast<const void*>(t->irecv)},
           {"iflush", reinterpret_cast<const void*>(t->iflush)},
           {"test", reinterpret_cast<const void*>(t->test)},
           {"closeSend", reinterpret_cast<const void*>(t->closeSend)},
           {"closeRecv", reinterpret_cast<const void*>(t->closeRecv)},
           {"closeListen", reinterpret_cast<const void*>(t->closeListen)},
           {"finalize", reinterpret_cast<const void*>(t->finalize)}}) {
    EXPECT_NE(fn, nullptr) << "ncclNetPlugin_v11." << what << " is NULL";
  }
  // Non-NULL makes NCCL call it even for single NICs (NCCL's ncclTopoAutoMerge, src/graph/topo.cc).
  EXPECT_EQ(t->makeVDevice, nullptr) << "makeVDevice must stay NULL without NIC fusion";
  // Device-offload entries of a host plugin.
  EXPECT_EQ(t->getDeviceMr, nullptr);
  EXPECT_EQ(t->irecvConsumed, nullptr);
  // Every version names the same plugin (NCCL_NET compares the name).
  for (int v : {10, 9, 8}) {
    auto net = pt::make_net(*lib, v);
    ASSERT_NE(net, nullptr);
    EXPECT_STRCASEEQ(net->name(), t->name) << "v" << v;
  }
}

TEST(Load, NmShowsOnlyTheTables) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  if (system("command -v nm >/dev/null 2>&1") != 0) GTEST_SKIP() << "nm is not installed";
  FILE* f = popen(("nm -D --defined-only '" + path + "'").c_str(), "r");
  ASSERT_NE(f, nullptr);
  const std::set<std::string> allowed = {
      "ncclNetPlugin_v11",    "ncclNetPlugin_v10",     "ncclNetPlugin_v9",
      "ncclNetPlugin_v8",     "ncclCollNetPlugin_v11", "ncclCollNetPlugin_v10",
      "ncclCollNetPlugin_v9", "ncclCollNetPlugin_v8",  "ncclTunerPlugin_v5"};
  std::set<std::string> seen;
  char line[512];
  while (fgets(line, sizeof(line), f) != nullptr) {
    char addr[64] = "", type[8] = "", name[400] = "";
    if (sscanf(line, "%63s %7s %399s", addr, type, name) != 3) continue;
    if (strcmp(type, "A") == 0) continue;  // a version-script node (e.g. GRADPACK_NCCL_1)
    EXPECT_TRUE(allowed.count(name))
        << "exported but not an NCCL table: " << name << " (" << type << ")";
    seen.insert(name);
  }
  pclose(f);
  for (const auto& name : allowed) EXPECT_TRUE(seen.count(name)) << "not exported: " << name;
}

TEST(Init, TwoContextsPropertiesAndThreadsJoinedAtTheLastFinalize) {
  const int baseline = pt::thread_count();
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  ASSERT_NE(net, nullptr);
  void *ctx1 = nullptr, *ctx2 = nullptr;
  // Like two communicators: NULL and a profiler callback, traffic class undefined (-1).
  ASSERT_EQ(net->init(&ctx1, 1, -1, pt::harness_logger, nullptr), ncclSuccess);
  ASSERT_EQ(net->init(&ctx2, 2, -1, pt::harness_logger, pt::dummy_profiler), ncclSuccess);
  int ndev = 0;
  ASSERT_EQ(net->devices(&ndev), ncclSuccess);
  ASSERT_GT(ndev, 0);
  // getProperties from two threads at once (init thread and service thread race in NCCL).
  std::vector<std::vector<std::string>> names(2);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        for (int d = 0; d < ndev; ++d) {
          ncclNetProperties_v11_t p;
          memset(&p, 0xA5, sizeof(p));
          ncclResult_t rc = net->get_properties(d, &p);
          if (rc != ncclSuccess) {
            pt::report_failure(__FILE__, __LINE__, "getProperties", pt::result_name(rc));
            return;
          }
          if (round == 0) names[t].push_back(p.name != nullptr ? p.name : "(null)");
          auto check = [&]() -> bool {
            PT_CHECK(p.name != nullptr && p.name[0] != '\0', "dev %d: no name", d);
            PT_CHECK(names[t][d] == p.name, "dev %d: name changed from %s to %s", d,
                     names[t][d].c_str(), p.name);
            PT_CHECK(p.speed > 0, "dev %d: speed %d Mbit/s", d, p.speed);
            PT_CHECK(p.maxP2pBytes > 0 && p.maxP2pBytes <= NCCL_MAX_NET_SIZE_BYTES,
                     "dev %d: maxP2pBytes %zu", d, p.maxP2pBytes);
            PT_CHECK(p.maxCollBytes > 0 && p.maxCollBytes <= NCCL_MAX_NET_SIZE_BYTES,
                     "dev %d: maxCollBytes %zu", d, p.maxCollBytes);
            PT_CHECK(p.netDeviceType == NCCL_NET_DEVICE_HOST, "dev %d: netDeviceType %d", d,
                     p.netDeviceType);
            PT_CHECK(p.vProps.ndevs >= 1 && p.vProps.ndevs <= NCCL_NET_MAX_DEVS_PER_NIC,
                     "dev %d: vProps.ndevs %d", d, p.vProps.ndevs);
            PT_CHECK((p.ptrSupport & NCCL_PTR_HOST) != 0, "dev %d: ptrSupport 0x%x", d,
                     p.ptrSupport);
            PT_CHECK(p.maxRecvs >= 1 && p.maxComms >= 1, "dev %d: maxRecvs %d maxComms %d", d,
                     p.maxRecvs, p.maxComms);
            return true;
          };
          if (!check()) return;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(pt::failures(), 0);
  EXPECT_EQ(names[0], names[1]);
  EXPECT_EQ(std::set<std::string>(names[0].begin(), names[0].end()).size(), names[0].size())
      << "device names must be unique (NCCL's topology key)";
  ASSERT_EQ(net->finalize(ctx1), ncclSuccess);
  ASSERT_EQ(net->finalize(ctx2), ncclSuccess);
  EXPECT_TRUE(threads_back_to(baseline));
}

TEST(Init, FinalizeAfterAFailedOrNoInitIsSafe) {
  LOAD_OR_SKIP(lib);
  auto* t = static_cast<ncclNet_v11_t*>(lib->symbol("ncclNetPlugin_v11"));
  ASSERT_NE(t, nullptr);
  // NCCL calls finalize on its init-failure path with whatever ctx holds, possibly NULL.
  void* ctx = nullptr;
  ncclResult_t rc = t->finalize(ctx);
  EXPECT_TRUE(rc == ncclSuccess || rc == ncclInternalError || rc == ncclInvalidArgument)
      << pt::result_name(rc);
  // ... and the plugin still initializes and finalizes normally afterwards.
  ncclNetCommConfig_v11_t config{-1};
  ASSERT_EQ(t->init(&ctx, 9, &config, pt::harness_logger, nullptr), ncclSuccess);
  int ndev = 0;
  EXPECT_EQ(t->devices(&ndev), ncclSuccess);
  EXPECT_GT(ndev, 0);
  EXPECT_EQ(t->finalize(ctx), ncclSuccess);
}

// ---- connection establishment -----------------------------------------------------------------
TEST(Connect, AlternatingInOneThreadThenCloseListenAndKeepUsingTheComms) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  ASSERT_TRUE(open_comm(*net, &c));
  Pair p;
  ASSERT_TRUE(open_pair(c, &p));  // closeListen already done
  EXPECT_TRUE(ring_once(c, p, pt::kSimple, {4096, 0, 1000}, 6));
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

TEST(Connect, AllConnectsFirstThenAllAccepts) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  ASSERT_TRUE(open_comm(*net, &c));
  constexpr int kPairs = 6;  // several channels to one peer
  std::vector<std::array<char, NCCL_NET_HANDLE_MAXSIZE>> handles(kPairs);
  std::vector<void*> lcomms(kPairs, nullptr);
  std::vector<Pair> pairs(kPairs);
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_EQ(net->listen(c.ctx, c.dev, handles[i].data(), &lcomms[i]), ncclSuccess);
    ASSERT_NE(lcomms[i], nullptr);
  }
  for (int i = 0; i < kPairs; ++i) {
    ASSERT_TRUE(pt::connect_until_done(*net, c.ctx, c.dev, handles[i].data(), &pairs[i].send))
        << "connect must not wait for the remote accept";
  }
  for (int i = kPairs; i-- > 0;) {  // accepted in the other order
    ASSERT_TRUE(pt::accept_until_done(*net, lcomms[i], &pairs[i].recv));
    ASSERT_EQ(net->close_listen(lcomms[i]), ncclSuccess);
  }
  // Each recvComm is the peer of the sendComm made from its own handle.
  for (int i = 0; i < kPairs; ++i)
    EXPECT_TRUE(ring_once(c, pairs[i], pt::kLL, {static_cast<size_t>(i) * 100 + 1}, 2));
  for (auto& p : pairs) EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

TEST(Connect, AcceptStartedLongBeforeConnect) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  ASSERT_TRUE(open_comm(*net, &c));
  char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
  void* lcomm = nullptr;
  ASSERT_EQ(net->listen(c.ctx, c.dev, handle, &lcomm), ncclSuccess);
  Pair p;
  const auto until = Clock::now() + std::chrono::milliseconds(300);
  int calls = 0;
  while (Clock::now() < until) {
    const auto t0 = Clock::now();
    ASSERT_EQ(net->accept(lcomm, &p.recv), ncclSuccess);
    ASSERT_EQ(p.recv, nullptr) << "accept gave a comm with nobody connecting";
    // Never blocks (a generous bound: NCCL's service thread runs every other connection).
    ASSERT_LT(Clock::now() - t0, std::chrono::seconds(1)) << "accept blocked";
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  EXPECT_GT(calls, 10);
  ASSERT_TRUE(pt::connect_accept(*net, c.ctx, c.dev, handle, lcomm, &p.send, &p.recv));
  ASSERT_EQ(net->close_listen(lcomm), ncclSuccess);
  EXPECT_TRUE(ring_once(c, p, pt::kLL128, {614400, 1}, 4));
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

// ---- registration and the data path -----------------------------------------------------------
TEST(DataPath, NcclRegistrationAndProtocolsOnServiceAndProgressThreads) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  pt::Worker service("NCCL Service"), progress("NCCL Progress");
  Comm c;
  Pair p, q;
  ASSERT_TRUE(
      service.run([&] { return open_comm(*net, &c) && open_pair(c, &p) && open_pair(c, &q); }));
  // One bank per connection side, sliced per protocol and not page-aligned after the first
  // slice (NCCL_NET_MAP_ADD_POINTER), each slice registered on its comm.
  const pt::Protocol protos[] = {pt::kLL, pt::kLL128, pt::kSimple};
  size_t bank_bytes = 0;
  for (const auto& pr : protos) bank_bytes += pr.buffer_bytes + 192;
  pt::HostBuffer sbank(bank_bytes), rbank(bank_bytes);
  struct Slice {
    uint8_t *s, *r;
    void *smh, *rmh;
  };
  std::vector<Slice> slices;
  void *shared_on_q = nullptr, *twice = nullptr;
  ASSERT_TRUE(service.run([&] {
    size_t off = 192;  // control structures first, as NCCL's map has them
    for (const auto& pr : protos) {
      Slice s{sbank.data() + off, rbank.data() + off, nullptr, nullptr};
      PT_OK(net->reg_mr(p.send, s.s, pr.buffer_bytes, NCCL_PTR_HOST, &s.smh));
      PT_OK(net->reg_mr(p.recv, s.r, pr.buffer_bytes, NCCL_PTR_HOST, &s.rmh));
      PT_CHECK(s.smh != nullptr && s.rmh != nullptr, "regMr gave a NULL mhandle");
      slices.push_back(s);
      off += pr.buffer_bytes + 64;
    }
    // The same memory on several comms (NCCL's p2p pool) and twice on one comm.
    PT_OK(net->reg_mr(q.send, sbank.data(), bank_bytes, NCCL_PTR_HOST, &shared_on_q));
    PT_OK(net->reg_mr(p.send, slices[2].s, pt::kSimple.buffer_bytes, NCCL_PTR_HOST, &twice));
    return true;
  }));
  for (size_t i = 0; i < slices.size(); ++i) {
    const auto& pr = protos[i];
    const size_t step = pr.step_bytes;
    for (bool out_of_order : {false, true}) {
      progress.start([&, i, step, out_of_order] {
        pt::RingOptions o;
        o.proto = pr;
        o.messages = 40;
        o.sizes = {step, 0, 1, 7, step - 1, step / 2 + 3, 128, step};
        o.test_out_of_order = out_of_order;
        o.send_tag = o.recv_tag = 5;
        pt::RingResult r;
        void* smh = (i == 2 && out_of_order) ? twice : slices[i].smh;
        bool ok =
            pt::run_ring(*net, o, {p.send, smh, slices[i].s}, {p.recv, slices[i].rmh, slices[i].r},
                         &r, Clock::now() + std::chrono::seconds(30));
        PT_CHECK(ok, "%s%s: %s returned %s", pr.name, out_of_order ? " out of order" : "",
                 r.what.c_str(), pt::result_name(r.error));
        return true;
      });
      EXPECT_TRUE(progress.wait()) << pr.name;
    }
  }
  // NCCL's SIMPLE ring all-reduce: 2 steps per message (1 MiB), 4 in flight.
  progress.start([&] {
    pt::RingOptions o;
    o.proto = pt::kSimpleSlice2;
    o.messages = 24;
    o.send_tag = o.recv_tag = 5;
    pt::RingResult r;
    bool ok = pt::run_ring(*net, o, {p.send, slices[2].smh, slices[2].s},
                           {p.recv, slices[2].rmh, slices[2].r}, &r,
                           Clock::now() + std::chrono::seconds(30));
    PT_CHECK(ok, "slice2: %s returned %s", r.what.c_str(), pt::result_name(r.error));
    return true;
  });
  EXPECT_TRUE(progress.wait());
  EXPECT_TRUE(service.run([&] {
    for (auto& s : slices) {
      PT_OK(net->dereg_mr(p.send, s.smh));
      PT_OK(net->dereg_mr(p.recv, s.rmh));
    }
    PT_OK(net->dereg_mr(q.send, shared_on_q));
    PT_OK(net->dereg_mr(p.send, twice));
    return close_pair(c, p) && close_pair(c, q);
  }));
  EXPECT_TRUE(service.run([&] {
    PT_OK(net->finalize(c.ctx));
    return true;
  }));
  EXPECT_EQ(pt::failures(), 0);
}

TEST(DataPath, SizesFromZeroToEightMiB) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c) && open_pair(c, &p));
  const pt::Protocol big{"8MiB", 16u << 20, 8u << 20, 1, false};  // 2 slots of 8 MiB
  EXPECT_TRUE(ring_once(
      c, p, big, {0, 1, 3, 127, 129, 8191, 65537, (1u << 20) + 3, (4u << 20) - 1, 8u << 20}, 20));
  EXPECT_TRUE(ring_once(c, p, pt::kSimple, kOddSizes, 28, /*out_of_order=*/true));
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

// NCCL_NET_MAX_REQUESTS per comm: 32 receives and 32 sends outstanding before any test.
TEST(DataPath, ThirtyTwoOutstandingRequestsPerComm) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c) && open_pair(c, &p));
  constexpr int kN = NCCL_NET_MAX_REQUESTS;
  constexpr size_t kSlot = 8192;
  pt::HostBuffer sbuf(kN * kSlot), rbuf(kN * kSlot);
  void *smh = nullptr, *rmh = nullptr;
  ASSERT_EQ(net->reg_mr(p.send, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &smh), ncclSuccess);
  ASSERT_EQ(net->reg_mr(p.recv, rbuf.data(), rbuf.size(), NCCL_PTR_HOST, &rmh), ncclSuccess);
  std::vector<void*> rreq(kN, nullptr), sreq(kN, nullptr);
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < kN; ++i) {
    while (rreq[i] == nullptr) {  // NULL: "not now"; nothing is tested meanwhile
      void* ptr = rbuf.data() + i * kSlot;
      size_t size = kSlot;
      int tag = 9;
      ASSERT_EQ(net->irecv(p.recv, 1, &ptr, &size, &tag, &rmh, &rreq[i]), ncclSuccess);
      ASSERT_LT(Clock::now(), deadline)
          << "irecv #" << i << " never posted with " << i << " outstanding";
    }
  }
  for (int i = 0; i < kN; ++i) {
    pt::fill_pattern(sbuf.data() + i * kSlot, kSlot - i, 9, i);
    while (sreq[i] == nullptr) {
      ASSERT_EQ(net->isend(p.send, sbuf.data() + i * kSlot, kSlot - i, 9, smh, &sreq[i]),
                ncclSuccess);
      ASSERT_LT(Clock::now(), deadline)
          << "isend #" << i << " never posted with " << i << " outstanding";
    }
  }
  for (int i = 0; i < kN; ++i) {
    int sizes[64] = {};
    ASSERT_TRUE(test_until_done(*net, rreq[i], sizes, deadline));
    EXPECT_EQ(sizes[0], static_cast<int>(kSlot) - i);
    EXPECT_EQ(pt::check_pattern(rbuf.data() + i * kSlot, kSlot - i, 9, i), kSlot - i);
    ASSERT_TRUE(test_until_done(*net, sreq[i], sizes, deadline));
  }
  EXPECT_EQ(net->dereg_mr(p.send, smh), ncclSuccess);
  EXPECT_EQ(net->dereg_mr(p.recv, rmh), ncclSuccess);
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

// A send larger than the posted receive: an error code, and nothing written past the receive.
TEST(DataPath, SendLargerThanThePostedReceiveIsAnErrorNotCorruption) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c) && open_pair(c, &p));
  constexpr size_t kPosted = 4096, kSent = 65536;
  pt::HostBuffer sbuf(kSent);
  // Exactly kPosted bytes on the heap (AddressSanitizer sees an overrun) followed, in a second
  // buffer, by the canary check of the page after the receive.
  std::vector<uint8_t> rbuf(kPosted, 0x11);
  pt::HostBuffer guard(kSent);
  memset(guard.data(), 0x22, kSent);
  void *smh = nullptr, *rmh = nullptr;
  ASSERT_EQ(net->reg_mr(p.send, sbuf.data(), kSent, NCCL_PTR_HOST, &smh), ncclSuccess);
  ASSERT_EQ(net->reg_mr(p.recv, rbuf.data(), kPosted, NCCL_PTR_HOST, &rmh), ncclSuccess);
  pt::fill_pattern(sbuf.data(), kSent, 1, 0);
  void *rreq = nullptr, *sreq = nullptr;
  const auto deadline = Clock::now() + std::chrono::seconds(20);
  ncclResult_t rrc = ncclSuccess, src = ncclSuccess;
  while (rreq == nullptr && rrc == ncclSuccess) {
    void* ptr = rbuf.data();
    size_t size = kPosted;
    int tag = 1;
    rrc = net->irecv(p.recv, 1, &ptr, &size, &tag, &rmh, &rreq);
    ASSERT_LT(Clock::now(), deadline);
  }
  while (sreq == nullptr && src == ncclSuccess) {
    src = net->isend(p.send, sbuf.data(), kSent, 1, smh, &sreq);
    ASSERT_LT(Clock::now(), deadline);
  }
  bool rdone = rrc != ncclSuccess, sdone = src != ncclSuccess;
  int rsize = -1;
  while (rrc == ncclSuccess && !rdone) {
    int done = 0, sizes[64] = {};
    rrc = net->test(rreq, &done, sizes);
    if (done) {
      rdone = true;
      rsize = sizes[0];
    }
    if (!sdone && src == ncclSuccess) {
      done = 0;
      src = net->test(sreq, &done, sizes);
      sdone = done != 0;
    }
    if (Clock::now() > deadline) break;
  }
  EXPECT_NE(rrc, ncclSuccess) << "the receive of " << kPosted << " bytes "
                              << (rdone ? "completed with " + std::to_string(rsize) + " bytes"
                                        : std::string("never finished"))
                              << " for a " << kSent << "-byte send; NCCL wants an error";
  if (rrc != ncclSuccess) {
    EXPECT_NE(rrc, ncclInProgress);
    std::printf("oversized send: receive test returned %s\n", pt::result_name(rrc));
  }
  for (size_t i = 0; i < kSent; ++i) ASSERT_EQ(guard.data()[i], 0x22) << "guard byte " << i;
  // Whatever landed in the posted buffer is a prefix of the message or untouched.
  for (size_t i = 0; i < kPosted; ++i) {
    ASSERT_TRUE(rbuf[i] == 0x11 || rbuf[i] == pt::pattern(1, 0, i)) << "byte " << i;
  }
  // The failed comms still close cleanly.
  net->dereg_mr(p.send, smh);
  net->dereg_mr(p.recv, rmh);
  EXPECT_EQ(net->close_send(p.send), ncclSuccess);
  EXPECT_EQ(net->close_recv(p.recv), ncclSuccess);
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_FALSE(pt::captured_warnings().empty()) << "the error was not explained in a WARN";
}

TEST(DataPath, IflushOfOneAcceptsANullRequest) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c) && open_pair(c, &p));
  pt::HostBuffer buf(pt::kSimple.buffer_bytes);
  void* mh = nullptr;
  ASSERT_EQ(net->reg_mr(p.recv, buf.data(), buf.size(), NCCL_PTR_HOST, &mh), ncclSuccess);
  void* ptr = buf.data() + 4096;
  int size = 65536;
  void* req = reinterpret_cast<void*>(0xdead);
  ASSERT_EQ(net->iflush(p.recv, 1, &ptr, &size, &mh, &req), ncclSuccess);
  if (req != nullptr) {  // a real flush request must complete
    ASSERT_TRUE(test_until_done(*net, req, nullptr, Clock::now() + std::chrono::seconds(10)));
  }
  EXPECT_EQ(net->dereg_mr(p.recv, mh), ncclSuccess);
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

// Grouped receives (ext-net/README.md, "Communication"): with maxRecvs > 1, one irecv of n buffers;
// each send lands in the buffer whose tag it carries, sizes[i] gives each buffer's count. With
// maxRecvs = 1 NCCL never groups; a group is then misuse and must be refused, not crash.
TEST(DataPath, GroupedReceivesUpToMaxRecvs) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c) && open_pair(c, &p));
  ncclNetProperties_v11_t props{};
  ASSERT_EQ(net->get_properties(c.dev, &props), ncclSuccess);
  const int n = std::min(props.maxRecvs, 8);
  constexpr size_t kSlot = 65536;
  pt::HostBuffer sbuf(8 * kSlot), rbuf(8 * kSlot);
  void *smh = nullptr, *rmh = nullptr;
  ASSERT_EQ(net->reg_mr(p.send, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &smh), ncclSuccess);
  ASSERT_EQ(net->reg_mr(p.recv, rbuf.data(), rbuf.size(), NCCL_PTR_HOST, &rmh), ncclSuccess);
  if (n == 1) {
    void* ptrs[2] = {rbuf.data(), rbuf.data() + kSlot};
    size_t sizes[2] = {kSlot, kSlot};
    int tags[2] = {1, 2};
    void* mhs[2] = {rmh, rmh};
    void* req = nullptr;
    EXPECT_NE(net->irecv(p.recv, 2, ptrs, sizes, tags, mhs, &req), ncclSuccess)
        << "maxRecvs is 1 but a group of 2 was accepted";
  } else {
    void* ptrs[8];
    size_t sizes[8];
    int tags[8];
    void* mhs[8];
    for (int i = 0; i < n; ++i) {
      ptrs[i] = rbuf.data() + i * kSlot;
      sizes[i] = kSlot;
      tags[i] = 10 + i;  // one sender rank per buffer, as with NCCL's shared comms
      mhs[i] = rmh;
    }
    void* rreq = nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(20);
    while (rreq == nullptr) {
      ASSERT_EQ(net->irecv(p.recv, n, ptrs, sizes, tags, mhs, &rreq), ncclSuccess);
      ASSERT_LT(Clock::now(), deadline);
    }
    std::vector<void*> sreqs(static_cast<size_t>(n), nullptr);
    for (int i = n; i-- > 0;) {  // sent in the reverse order of the buffers
      const size_t size = 1000 * static_cast<size_t>(i) + 1;
      pt::fill_pattern(sbuf.data() + i * kSlot, size, 10 + i, 0);
      while (sreqs[i] == nullptr) {
        ASSERT_EQ(net->isend(p.send, sbuf.data() + i * kSlot, size, 10 + i, smh, &sreqs[i]),
                  ncclSuccess);
        ASSERT_LT(Clock::now(), deadline);
      }
    }
    int got[64] = {};
    ASSERT_TRUE(test_until_done(*net, rreq, got, deadline));
    for (int i = 0; i < n; ++i) {
      const size_t size = 1000 * static_cast<size_t>(i) + 1;
      EXPECT_EQ(got[i], static_cast<int>(size)) << "buffer " << i;
      EXPECT_EQ(pt::check_pattern(rbuf.data() + i * kSlot, size, 10 + i, 0), size) << i;
      ASSERT_TRUE(test_until_done(*net, sreqs[i], nullptr, deadline));
    }
  }
  EXPECT_EQ(net->dereg_mr(p.send, smh), ncclSuccess);
  EXPECT_EQ(net->dereg_mr(p.recv, rmh), ncclSuccess);
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

// ---- teardown and reload ----------------------------------------------------------------------
// deregMr, then closeSend/closeRecv with requests in flight (NCCL's abort), finalize, dlclose,
// dlopen again and run again: twice, with the thread count back to where it was each time.
TEST(Teardown, CloseWithRequestsInFlightThenDlcloseAndDlopenAgain) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  pt::Worker service("NCCL Service"), progress("NCCL Progress");
  const int baseline = pt::thread_count();
  for (int round = 0; round < 2; ++round) {
    std::string error;
    auto lib = pt::Library::open(path, &error);
    ASSERT_NE(lib, nullptr) << error;
    auto net = pt::make_net(*lib, 11);
    Comm c1, c2;
    Pair p, q;
    ASSERT_TRUE(service.run([&] {
      return open_comm(*net, &c1) && open_comm(*net, &c2, pt::dummy_profiler) &&
             open_pair(c1, &p) && open_pair(c2, &q);
    }));
    pt::HostBuffer sbuf(4 << 20), rbuf(4 << 20);
    void *smh = nullptr, *rmh = nullptr, *qsmh = nullptr;
    ASSERT_TRUE(service.run([&] {
      return pt::failures() == 0 &&
             net->reg_mr(p.send, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &smh) == ncclSuccess &&
             net->reg_mr(p.recv, rbuf.data(), rbuf.size(), NCCL_PTR_HOST, &rmh) == ncclSuccess &&
             net->reg_mr(q.send, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &qsmh) == ncclSuccess;
    }));
    // Normal traffic first, then requests left in flight: receives with no sender on p, a large
    // send with no receiver on q.
    EXPECT_TRUE(progress.run([&] {
      pt::RingOptions o;
      o.messages = 16;
      o.sizes = kOddSizes;
      pt::RingResult r;
      PT_CHECK(pt::run_ring(*net, o, {p.send, smh, sbuf.data()}, {p.recv, rmh, rbuf.data()}, &r,
                            Clock::now() + std::chrono::seconds(30)),
               "%s returned %s", r.what.c_str(), pt::result_name(r.error));
      for (int i = 0; i < 4; ++i) {
        void* ptr = rbuf.data() + i * 65536;
        size_t size = 65536;
        int tag = 0;
        void* req = nullptr;
        PT_OK(net->irecv(p.recv, 1, &ptr, &size, &tag, &rmh, &req));
      }
      void* req = nullptr;
      PT_OK(net->isend(q.send, sbuf.data(), 4 << 20, 0, qsmh, &req));
      return true;
    }));
    ASSERT_TRUE(service.run([&] {
      PT_OK(net->dereg_mr(p.send, smh));
      PT_OK(net->dereg_mr(p.recv, rmh));
      PT_OK(net->dereg_mr(q.send, qsmh));
      PT_OK(net->close_send(p.send));
      PT_OK(net->close_recv(p.recv));
      PT_OK(net->close_send(q.send));
      PT_OK(net->close_recv(q.recv));
      PT_OK(net->finalize(c1.ctx));
      PT_OK(net->finalize(c2.ctx));
      return true;
    }));
    net.reset();
    lib.reset();  // dlclose
    EXPECT_TRUE(threads_back_to(baseline)) << "round " << round;
    void* still = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    if (still != nullptr) {
      std::printf("note: dlclose left the plugin loaded (unique symbols?); statics persist\n");
      dlclose(still);
    }
  }
  EXPECT_EQ(pt::failures(), 0);
}

// ---- every exported version -------------------------------------------------------------------
class Versions : public ::testing::TestWithParam<int> {};

// init, devices, getProperties, listen/connect/accept, one transfer each way, close; then dlclose
// and dlopen again (NCCL never finalizes a pre-v11 plugin: it must survive dlclose initialized).
TEST_P(Versions, InitConnectTransferCloseAndReload) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  for (int round = 0; round < 2; ++round) {
    std::string error;
    auto lib = pt::Library::open(path, &error);
    ASSERT_NE(lib, nullptr) << error;
    auto net = pt::make_net(*lib, GetParam());
    ASSERT_NE(net, nullptr);
    Comm c;
    Pair p;
    ASSERT_TRUE(open_comm(*net, &c));
    ncclNetProperties_v11_t props{};
    ASSERT_EQ(net->get_properties(0, &props), ncclSuccess);
    EXPECT_NE(props.name, nullptr);
    EXPECT_GT(props.speed, 0);
    ASSERT_TRUE(open_pair(c, &p));
    EXPECT_TRUE(ring_once(c, p, pt::kLL, {65536, 0, 77}, 3));
    EXPECT_TRUE(ring_once(c, p, pt::kSimple, {}, 8));
    EXPECT_TRUE(close_pair(c, p));
    EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  }
  EXPECT_EQ(pt::failures(), 0);
}

// GPU memory through every table on TCP devices (the harness's loopback): ptrSupport is host only,
// regMrDmaBuf is exported, and every CUDA or dma-buf registration is refused with the right code
// and a WARN, never a crash; iflush of host memory is a NULL request. The ibverbs GPUDirect path
// (CUDA registration, the flush read) is tested over the software HCA in tests/transport/ibverbs/;
// over a real RDMA device and GPU it is not run here (no such machine).
TEST_P(Versions, GpuMemoryIsRefusedOnTcpAndHostFlushesAreNull) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, GetParam());
  ASSERT_NE(net, nullptr);
  EXPECT_TRUE(net->has_reg_mr_dma_buf());
  Comm c;
  Pair p;
  ASSERT_TRUE(open_comm(*net, &c));
  int ndev = 0;
  ASSERT_EQ(net->devices(&ndev), ncclSuccess);
  for (int dev = 0; dev < ndev; ++dev) {
    ncclNetProperties_v11_t props{};
    ASSERT_EQ(net->get_properties(dev, &props), ncclSuccess);
    EXPECT_EQ(props.ptrSupport, NCCL_PTR_HOST) << props.name << ": TCP reads memory with the CPU";
  }
  ASSERT_TRUE(open_pair(c, &p));
  pt::HostBuffer buf(pt::kSimple.buffer_bytes);
  const auto refused = [&](ncclResult_t rc, ncclResult_t want, void* mh, const char* what) {
    EXPECT_EQ(rc, want) << what << ": " << pt::result_name(rc);
    EXPECT_EQ(mh, nullptr) << what;
    EXPECT_FALSE(pt::captured_warnings().empty()) << what << " was refused without a WARN";
    pt::clear_captured_warnings();
  };
  pt::clear_captured_warnings();
  void* mh = nullptr;
  refused(net->reg_mr(p.recv, buf.data(), buf.size(), NCCL_PTR_CUDA, &mh), ncclInternalError, mh,
          "regMr(CUDA)");
  refused(net->reg_mr(p.send, buf.data(), buf.size(), 0x10, &mh), ncclInvalidArgument, mh,
          "regMr(type 0x10)");
  const int fd = memfd_create("gp_not_a_dmabuf", 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(ftruncate(fd, static_cast<off_t>(buf.size())), 0);
  refused(net->reg_mr_dma_buf(p.recv, buf.data(), buf.size(), NCCL_PTR_CUDA, 0, fd, &mh),
          ncclInternalError, mh, "regMrDmaBuf on TCP");
  refused(net->reg_mr_dma_buf(p.recv, buf.data(), buf.size(), NCCL_PTR_CUDA, 0, -1, &mh),
          ncclInvalidArgument, mh, "regMrDmaBuf(fd -1)");
  refused(net->reg_mr_dma_buf(p.recv, buf.data(), 0, NCCL_PTR_CUDA, 0, fd, &mh),
          ncclInvalidArgument, mh, "regMrDmaBuf(size 0)");
  refused(net->reg_mr_dma_buf(p.recv, buf.data(), buf.size(), NCCL_PTR_HOST, 0, fd, &mh),
          ncclInvalidArgument, mh, "regMrDmaBuf(HOST)");
  close(fd);
  // A message into host memory, then NCCL's flush call: nothing to flush.
  EXPECT_TRUE(ring_once(c, p, pt::kSimple, {65536}, 1));
  ASSERT_EQ(net->reg_mr(p.recv, buf.data(), buf.size(), NCCL_PTR_HOST, &mh), ncclSuccess);
  void* ptr = buf.data();
  int size = 65536;
  void* req = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(net->iflush(p.recv, 1, &ptr, &size, &mh, &req), ncclSuccess);
  EXPECT_EQ(req, nullptr);
  int zero = 0;
  req = reinterpret_cast<void*>(0x1);
  EXPECT_EQ(net->iflush(p.recv, 1, &ptr, &zero, &mh, &req), ncclSuccess);
  EXPECT_EQ(req, nullptr);
  EXPECT_EQ(net->dereg_mr(p.recv, mh), ncclSuccess);
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

INSTANTIATE_TEST_SUITE_P(Net, Versions, ::testing::Values(11, 10, 9, 8),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return "v" + std::to_string(p.param);
                         });

// ---- two processes ----------------------------------------------------------------------------
// One rank of NCCL's ring between two processes: a recvComm from the peer (listen; the handle
// goes over the channel) and a sendComm to it, set up on the service thread; both directions of
// the 8-slot ring at once on the progress thread.
struct RankPlan {
  int rank;
  uint64_t messages = 48;
  int kill_after_ms = 0;     // > 0: this rank raises SIGKILL that long after traffic starts
  uint64_t close_after = 0;  // > 0: this rank closes its comms after that many messages each way
  pt::Protocol proto = pt::kSimple;
  std::vector<size_t> sizes = {524288, 1, 0, 300001, 65536, 524287};
  bool expect_peer_death = false;
};

int run_rank(pt::Channel& ch, const RankPlan& plan) {
  std::string error;
  auto lib = pt::Library::open(pt::plugin_path(), &error);
  if (lib == nullptr) {
    fprintf(stderr, "rank %d: %s\n", plan.rank, error.c_str());
    return 1;
  }
  auto net = pt::make_net(*lib, 11);
  pt::Worker service("NCCL Service"), progress("NCCL Progress");
  Comm c;
  void *lcomm = nullptr, *scomm = nullptr, *rcomm = nullptr;
  const bool setup = service.run([&] {
    if (!open_comm(*net, &c)) return false;
    char mine[NCCL_NET_HANDLE_MAXSIZE] = {}, theirs[NCCL_NET_HANDLE_MAXSIZE] = {};
    PT_OK(net->listen(c.ctx, c.dev, mine, &lcomm));
    PT_CHECK(ch.send(mine, sizeof(mine)), "handle not sent");
    PT_CHECK(ch.recv(theirs, sizeof(theirs), std::chrono::seconds(20)), "no handle from the peer");
    if (!pt::connect_accept(*net, c.ctx, c.dev, theirs, lcomm, &scomm, &rcomm)) return false;
    PT_OK(net->close_listen(lcomm));
    return true;
  });
  if (!setup) return 1;
  pt::HostBuffer sbuf(plan.proto.buffer_bytes), rbuf(plan.proto.buffer_bytes);
  void *smh = nullptr, *rmh = nullptr;
  if (!service.run([&] {
        PT_OK(net->reg_mr(scomm, sbuf.data(), sbuf.size(), NCCL_PTR_HOST, &smh));
        PT_OK(net->reg_mr(rcomm, rbuf.data(), rbuf.size(), NCCL_PTR_HOST, &rmh));
        return true;
      })) {
    return 1;
  }
  // Both ranks are connected before traffic (and before a planned death).
  char go = 'g';
  if (!ch.send(&go, 1) || !ch.recv(&go, 1, std::chrono::seconds(20))) return 1;
  if (plan.kill_after_ms > 0) {
    // Dies by SIGKILL with requests posted both ways: no goodbye on any socket.
    std::thread([ms = plan.kill_after_ms] {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
      raise(SIGKILL);
    }).detach();
  }
  pt::RingResult r;
  bool ok = progress.run([&] {
    pt::RingOptions o;
    o.proto = plan.proto;
    o.messages = plan.close_after > 0 ? plan.close_after : plan.messages;
    o.sizes = plan.sizes;
    o.send_tag = plan.rank;
    o.recv_tag = 1 - plan.rank;
    const auto t0 = Clock::now();
    bool done = pt::run_ring(*net, o, {scomm, smh, sbuf.data()}, {rcomm, rmh, rbuf.data()}, &r,
                             t0 + std::chrono::seconds(30));
    if (plan.expect_peer_death) {
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      PT_CHECK(!done && (r.error == ncclRemoteError || r.error == ncclSystemError),
               "after the peer was killed or closed: %s returned %s (want ncclRemoteError or "
               "ncclSystemError)",
               r.what.c_str(), pt::result_name(r.error));
      fprintf(stderr, "rank %d: the peer's end surfaced as %s from %s, %.2f s into the run\n",
              plan.rank, pt::result_name(r.error), r.what.c_str(), s);
      return true;
    }
    PT_CHECK(done, "%s returned %s", r.what.c_str(), pt::result_name(r.error));
    return true;
  });
  if (!ok) return 1;
  ok = service.run([&] {
    // NCCL deregisters and closes even after an error.
    ncclResult_t a = net->dereg_mr(scomm, smh), b = net->dereg_mr(rcomm, rmh);
    ncclResult_t d = net->close_send(scomm), e = net->close_recv(rcomm);
    if (!plan.expect_peer_death) {
      PT_CHECK(a == ncclSuccess && b == ncclSuccess && d == ncclSuccess && e == ncclSuccess,
               "teardown: %s %s %s %s", pt::result_name(a), pt::result_name(b), pt::result_name(d),
               pt::result_name(e));
    }
    PT_OK(net->finalize(c.ctx));
    return true;
  });
  PT_CHECK(g_foreign_dials.load() == 0, "rank %d dialed a non-loopback address", plan.rank);
  return ok ? 0 : 1;
}

TEST(TwoProcesses, NcclRingBothDirectionsOverLoopback) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  for (const pt::Protocol& proto : {pt::kSimpleSlice2, pt::kLL}) {
    RankPlan a{0}, b{1};
    a.proto = b.proto = proto;
    if (proto.slice_steps == 1) {
      a.sizes = b.sizes = {65536, 0, 17, 4096};
    } else {
      a.sizes = b.sizes = {1 << 20, 1, 0, 999999, 1 << 20};
    }
    auto codes =
        pt::run_pair([&](pt::Channel& ch) { return run_rank(ch, a); },
                     [&](pt::Channel& ch) { return run_rank(ch, b); }, std::chrono::seconds(60));
    EXPECT_EQ(codes[0], 0) << proto.name;
    EXPECT_EQ(codes[1], 0) << proto.name;
  }
}

// ---- faults -----------------------------------------------------------------------------------
TEST(Faults, PeerKilledMidTransferIsAnErrorOnTheSurvivorNotAHang) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  RankPlan survivor{0}, victim{1};
  survivor.messages = victim.messages = 1000000;  // never finishes on its own
  victim.kill_after_ms = 300;
  survivor.expect_peer_death = true;
  auto codes =
      pt::run_pair([&](pt::Channel& ch) { return run_rank(ch, survivor); },
                   [&](pt::Channel& ch) { return run_rank(ch, victim); }, std::chrono::seconds(60));
  EXPECT_EQ(codes[0], 0) << "the survivor (124: hung and was killed)";
  EXPECT_EQ(codes[1], 128 + SIGKILL);
}

// NCCL's abort on the peer: it closes its comms mid-transfer (the survivor still has sends and
// receives posted) and finalizes. The survivor gets an error, not a hang.
TEST(Faults, PeerClosingMidTransferIsAnErrorOnTheSurvivorNotAHang) {
  const std::string path = pt::plugin_path();
  if (path.empty()) GTEST_SKIP() << "the plugin is not built (no nccl-net-gradpack target)";
  ASSERT_EQ(access(path.c_str(), R_OK), 0) << path << " is missing";
  RankPlan survivor{0}, closer{1};
  survivor.messages = 1000000;
  closer.close_after = 20;
  survivor.expect_peer_death = true;
  auto codes =
      pt::run_pair([&](pt::Channel& ch) { return run_rank(ch, survivor); },
                   [&](pt::Channel& ch) { return run_rank(ch, closer); }, std::chrono::seconds(60));
  EXPECT_EQ(codes[0], 0) << "the survivor (124: hung and was killed)";
  EXPECT_EQ(codes[1], 0) << "the closing rank";
}

// Garbage, truncated and replayed handles: an NCCL error code, no crash, and no dial for the
// ones that fail the plugin's own magic/checksum.
TEST(Faults, BadHandlesAreRefusedWithoutDialing) {
  LOAD_OR_SKIP(lib);
  auto net = pt::make_net(*lib, 11);
  Comm c;
  ASSERT_TRUE(open_comm(*net, &c));
  char good[NCCL_NET_HANDLE_MAXSIZE] = {};
  void* lcomm = nullptr;
  ASSERT_EQ(net->listen(c.ctx, c.dev, good, &lcomm), ncclSuccess);

  auto try_connect = [&](const char* what, char* handle, bool may_dial) {
    pt::clear_captured_warnings();
    const int dials_before = g_inet_dials.load();
    void* scomm = nullptr;
    ncclResult_t rc = ncclSuccess;
    // A handle that fails the magic or checksum is known bad at once; a replayed one may take
    // the plugin's connect timeout (GRADPACK_TIMEOUT_MS, 5 s here).
    const auto deadline = Clock::now() + std::chrono::seconds(may_dial ? 20 : 2);
    while (rc == ncclSuccess && scomm == nullptr && Clock::now() < deadline) {
      rc = net->connect(c.ctx, c.dev, handle, &scomm);  // NCCL retries until non-NULL or error
      if (rc == ncclSuccess && scomm == nullptr)
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    EXPECT_NE(rc, ncclSuccess) << what << ": connect "
                               << (scomm != nullptr ? "succeeded"
                                                    : "still pending at the deadline");
    EXPECT_NE(rc, ncclInProgress) << what;
    if (scomm != nullptr) net->close_send(scomm);
    if (!may_dial) {
      EXPECT_EQ(g_inet_dials.load(), dials_before) << what << ": the plugin dialed";
    }
    EXPECT_FALSE(pt::captured_warnings().empty()) << what << ": refused without a WARN";
    std::printf("%s: %s, %d dial(s)\n", what, pt::result_name(rc),
                g_inet_dials.load() - dials_before);
  };

  // Garbage: random bytes, all zeros, all ones, a good handle with one flipped bit anywhere.
  srand(7);
  for (int k = 0; k < 8; ++k) {
    char h[NCCL_NET_HANDLE_MAXSIZE];
    for (char& b : h) b = static_cast<char>(rand());
    try_connect("random bytes", h, false);
  }
  char zeros[NCCL_NET_HANDLE_MAXSIZE] = {};
  try_connect("all zeros", zeros, false);
  char ones[NCCL_NET_HANDLE_MAXSIZE];
  memset(ones, 0xff, sizeof(ones));
  try_connect("all ones", ones, false);
  for (int byte : {0, 3, 8, 16, 31, 40, 63, 64, 100, 127}) {
    char h[NCCL_NET_HANDLE_MAXSIZE];
    memcpy(h, good, sizeof(h));
    h[byte] ^= 0x10;
    const std::string what = "bit flipped in byte " + std::to_string(byte);
    // A flip in unused trailing bytes may legitimately leave the handle valid: skip those the
    // plugin does not cover by its checksum (it then connects, and that is fine).
    void* scomm = nullptr;
    ncclResult_t rc = net->connect(c.ctx, c.dev, h, &scomm);
    if (rc == ncclSuccess) {
      // Still pending or done: the bytes were not covered; undo by finishing and closing.
      const auto deadline = Clock::now() + std::chrono::seconds(5);
      while (rc == ncclSuccess && scomm == nullptr && Clock::now() < deadline) {
        rc = net->connect(c.ctx, c.dev, h, &scomm);
      }
      if (scomm != nullptr) {
        void* rcomm = nullptr;
        ASSERT_TRUE(pt::accept_until_done(*net, lcomm, &rcomm));
        net->close_send(scomm);
        net->close_recv(rcomm);
        std::printf("%s: not covered by the checksum (connected)\n", what.c_str());
        continue;
      }
    }
    EXPECT_NE(rc, ncclSuccess) << what;
    std::printf("%s: %s\n", what.c_str(), pt::result_name(rc));
  }
  // Truncated: the first half of a good handle, the rest zero.
  char half[NCCL_NET_HANDLE_MAXSIZE] = {};
  memcpy(half, good, 16);
  try_connect("truncated to 16 bytes", half, false);

  // Replayed: a handle whose listener accepted once and was closed.
  void *scomm = nullptr, *rcomm = nullptr;
  char copy[NCCL_NET_HANDLE_MAXSIZE];
  memcpy(copy, good, sizeof(copy));
  ASSERT_TRUE(pt::connect_accept(*net, c.ctx, c.dev, copy, lcomm, &scomm, &rcomm));
  ASSERT_EQ(net->close_listen(lcomm), ncclSuccess);
  memcpy(copy, good, sizeof(copy));
  try_connect("replayed after closeListen", copy, true);
  // The good pair still works after all of this.
  Pair p{scomm, rcomm};
  EXPECT_TRUE(ring_once(c, p, pt::kLL, {100, 0}, 2));
  EXPECT_TRUE(close_pair(c, p));
  EXPECT_EQ(net->finalize(c.ctx), ncclSuccess);
  EXPECT_EQ(pt::failures(), 0);
}

}  // namespace
