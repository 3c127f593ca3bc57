// SPDX-License-Identifier: Apache-2.0
// Runs every algorithm's plans for all ranks against each other in memory (plan_sim.h) and checks
// the results, plan.h's rules and the bytes on the wire that docs/algorithms.md states.

#include "collectives/plan.h"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>
#include <vector>

#include "collectives/selector.h"
#include "tests/collectives/algorithms/plan_sim.h"

namespace gradpack::coll {
namespace {

constexpr size_t kElem = 8;  // int64 values: sums are exact

struct Case {
  Collective collective = Collective::kAllReduce;
  Algorithm algorithm = Algorithm::kRing;
  int nranks = 1;
  size_t count = 0;
  size_t segment_bytes = 1 << 20;
  std::vector<int> hosts;
  std::vector<std::vector<int>> switches;  // PlanRequest::switch_of_rank
  int root = 0;
  bool compressed = false;
  std::vector<int> leaves;     // PlanRequest::leaves
  bool oversubscribed = true;  // PlanRequest::uplinks_oversubscribed
};

std::string describe(const Case& c, bool in_place) {
  std::string s = std::string(collective_name(c.collective)) + "/" + algorithm_name(c.algorithm) +
                  " p=" + std::to_string(c.nranks) + " count=" + std::to_string(c.count) +
                  " seg=" + std::to_string(c.segment_bytes) + (in_place ? " in-place" : "");
  if (!c.hosts.empty()) {
    s += " hosts=";
    for (int h : c.hosts) s += std::to_string(h);
  }
  for (const auto& level : c.switches) {
    s += " switches=";
    for (int w : level) s += std::to_string(w);
  }
  if (c.collective == Collective::kBroadcast) s += " root=" + std::to_string(c.root);
  if (c.compressed) s += " compressed";
  return s;
}

int64_t value(int rank, size_t i) {
  return static_cast<int64_t>(rank + 1) * 1000003 + static_cast<int64_t>(i) * 31 + 7;
}

struct CaseRun {
  std::vector<Plan> plans;
  sim::Outcome outcome;
};

// Builds, checks and runs all ranks' plans; compares kRecv with the direct computation.
CaseRun run_case(const Case& c, bool in_place, uint64_t seed = 1) {
  const std::string what = describe(c, in_place);
  CaseRun run;
  std::vector<PlanRequest> reqs;
  std::vector<std::vector<int64_t>> send(static_cast<size_t>(c.nranks));
  for (int r = 0; r < c.nranks; ++r) {
    PlanRequest req;
    req.collective = c.collective;
    req.rank = r;
    req.nranks = c.nranks;
    req.count = c.count;
    req.elem_size = kElem;
    req.root = c.root;
    req.segment_bytes = c.segment_bytes;
    req.host_of_rank = c.hosts;
    req.switch_of_rank = c.switches;
    req.compressed = c.compressed;
    req.leaves = c.leaves;
    req.uplinks_oversubscribed = c.oversubscribed;
    req.send_peer = (r + 1) % c.nranks;  // kSendRecv: a ring
    req.recv_peer = (r + c.nranks - 1) % c.nranks;
    Plan plan;
    const Status st = make_plan(c.algorithm, req, &plan);
    EXPECT_TRUE(st.ok()) << what << ": " << st.to_string();
    const std::string err = sim::check_plan(req, plan, in_place);
    EXPECT_EQ(err, "") << what;
    const sim::Layout l = sim::layout_of(req, in_place);
    auto& s = send[static_cast<size_t>(r)];
    s.resize(l.send_count);
    for (size_t i = 0; i < s.size(); ++i) s[i] = value(r, i);
    reqs.push_back(req);
    run.plans.push_back(std::move(plan));
  }
  run.outcome = sim::run_plans(reqs, run.plans, send, in_place, seed);
  EXPECT_EQ(run.outcome.error, "") << what;
  if (!run.outcome.error.empty()) return run;
  const size_t n = c.count;
  const auto all = (c.nranks >= 64 ? ~uint64_t{0} : (uint64_t{1} << c.nranks) - 1);
  for (int r = 0; r < c.nranks; ++r) {
    const auto& got = run.outcome.recv[static_cast<size_t>(r)];
    std::vector<int64_t> want;
    switch (c.collective) {
      case Collective::kAllReduce:
        for (size_t i = 0; i < n; ++i) {
          int64_t sum = 0;
          for (int q = 0; q < c.nranks; ++q) sum += value(q, i);
          want.push_back(sum);
        }
        break;
      case Collective::kReduceScatter:
        for (size_t i = 0; i < n; ++i) {
          int64_t sum = 0;
          for (int q = 0; q < c.nranks; ++q) sum += value(q, static_cast<size_t>(r) * n + i);
          want.push_back(sum);
        }
        break;
      case Collective::kAllGather:
        for (int q = 0; q < c.nranks; ++q)
          for (size_t i = 0; i < n; ++i) want.push_back(value(q, i));
        break;
      case Collective::kBroadcast:
        for (size_t i = 0; i < n; ++i) want.push_back(value(c.root, i));
        break;
      case Collective::kSendRecv:
        for (size_t i = 0; i < n; ++i) want.push_back(value((r + c.nranks - 1) % c.nranks, i));
        break;
      case Collective::kBarrier:
        EXPECT_EQ(run.outcome.heard_from[static_cast<size_t>(r)], all)
            << what << ": rank " << r << " can leave the barrier before every rank entered";
        break;
    }
    EXPECT_EQ(got, want) << what << ": rank " << r;
    if (got != want) break;
  }
  return run;
}

const std::vector<int> kRankCounts = {1, 2, 3, 4, 5, 6, 7, 8, 9, 16};

std::vector<size_t> counts_for(int p) {
  std::set<size_t> s = {0, 1, static_cast<size_t>(p - 1), static_cast<size_t>(p), 1000};
  return {s.begin(), s.end()};
}

// Every count, plus segment-crossing sizes (64-byte segments: 8 elements) at 1000 and 37*p+5.
void sweep(Collective coll, Algorithm algo, std::vector<int> (*hosts)(int) = nullptr,
           bool compressed = false) {
  for (int p : kRankCounts) {
    std::vector<Case> cases;
    for (size_t n : counts_for(p)) {
      Case c;
      c.collective = coll;
      c.algorithm = algo;
      c.nranks = p;
      c.count = n;
      cases.push_back(c);
    }
    for (size_t n : {size_t{1000}, static_cast<size_t>(37 * p + 5)}) {
      Case c;
      c.collective = coll;
      c.algorithm = algo;
      c.nranks = p;
      c.count = n;
      c.segment_bytes = 64;
      cases.push_back(c);
    }
    for (Case& c : cases) {
      if (hosts) c.hosts = hosts(p);
      c.compressed = compressed;
      for (bool in_place : {false, true}) {
        if (in_place && coll == Collective::kSendRecv) continue;  // its buffers never overlap
        if (coll == Collective::kBroadcast) {
          for (int root : {0, p - 1, p / 2}) {
            c.root = root;
            run_case(c, in_place);
          }
        } else {
          run_case(c, in_place);
        }
        if (::testing::Test::HasFailure()) return;
      }
    }
  }
}

TEST(AllReduce, Ring) { sweep(Collective::kAllReduce, Algorithm::kRing); }
TEST(AllReduce, HalvingDoubling) { sweep(Collective::kAllReduce, Algorithm::kHalvingDoubling); }
TEST(AllReduce, Tree) { sweep(Collective::kAllReduce, Algorithm::kTree); }
TEST(AllReduce, HierOneRankPerHost) { sweep(Collective::kAllReduce, Algorithm::kHierarchical); }
TEST(AllReduce, HierOneHost) {
  sweep(Collective::kAllReduce, Algorithm::kHierarchical,
        [](int p) { return std::vector<int>(static_cast<size_t>(p), 0); });
}
TEST(AllReduce, HierTwoPerHost) {
  sweep(Collective::kAllReduce, Algorithm::kHierarchical, [](int p) {
    std::vector<int> h;
    for (int r = 0; r < p; ++r) h.push_back(r / 2);
    return h;
  });
}
TEST(AllReduce, HierThreeHostsUnevenInterleaved) {
  // Hosts get ranks round-robin-ish and unevenly: 0,1,0,2,0,1,0,2,...
  sweep(Collective::kAllReduce, Algorithm::kHierarchical, [](int p) {
    static const int pattern[] = {0, 1, 0, 2};
    std::vector<int> h;
    for (int r = 0; r < p; ++r) h.push_back(p < 3 ? r % p : pattern[r % 4]);
    return h;
  });
}
TEST(AllReduce, HalvingDoublingLargeUsesRabenseifner) {
  // Over 64 KiB: the recursive-halving path, with and without segments, pow2 and not.
  for (int p : {2, 3, 4, 6, 8, 16}) {
    for (size_t seg : {size_t{1} << 20, size_t{4096}}) {
      Case c;
      c.algorithm = Algorithm::kHalvingDoubling;
      c.nranks = p;
      c.count = 9001;
      c.segment_bytes = seg;
      run_case(c, true);
      run_case(c, false, 7);
    }
  }
}
TEST(AllReduce, HierLargeUsesRingAmongLeaders) {
  for (int p : {4, 6, 9}) {
    Case c;
    c.algorithm = Algorithm::kHierarchical;
    c.nranks = p;
    c.count = 9001;
    c.segment_bytes = 8192;
    for (int r = 0; r < p; ++r) c.hosts.push_back(r % 3);
    run_case(c, true);
    run_case(c, false, 3);
  }
}

// Switch trees: racks in rank order and interleaved, uneven racks (the chain fallback), two
// switch levels, several ranks per host, and a forest (two roots). Ring, hierarchical,
// halving-doubling and tree plans must sum exactly whatever the tree.
struct Tree {
  const char* name;
  std::vector<int> hosts;
  std::vector<std::vector<int>> switches;
};
std::vector<Tree> trees() {
  return {
      {"2 racks of 4, rack order", {}, {{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}}},
      {"2 racks of 4, interleaved", {}, {{0, 1, 0, 1, 0, 1, 0, 1}, {0, 0, 0, 0, 0, 0, 0, 0}}},
      {"racks of 3, 3 and 2", {}, {{0, 0, 0, 1, 1, 1, 2, 2}, {5, 5, 5, 5, 5, 5, 5, 5}}},
      {"racks under 2 pods", {}, {{0, 0, 1, 1, 2, 2, 3, 3}, {0, 0, 0, 0, 1, 1, 1, 1}}},
      {"2 ranks per host, 2 racks", {0, 0, 1, 1, 2, 2, 3, 3}, {{0, 0, 1, 1, 0, 0, 1, 1}}},
      {"two roots (a forest)", {}, {{0, 0, 0, 0, 1, 1, 1, 1}}},
  };
}

// `a` on every tree, small and segment-crossing counts, in place and not.
void sweep_trees(Algorithm a, bool compressed) {
  for (const Tree& t : trees()) {
    for (size_t count : {size_t{1}, size_t{7}, size_t{1000}, size_t{9001}}) {
      for (size_t seg : {size_t{1} << 20, size_t{4096}}) {
        Case c;
        c.algorithm = a;
        c.compressed = compressed;
        c.nranks = 8;
        c.count = count;
        c.segment_bytes = seg;
        c.hosts = t.hosts;
        c.switches = t.switches;
        SCOPED_TRACE(t.name);
        run_case(c, true);
        run_case(c, false, 5);
      }
    }
  }
}

TEST(AllReduce, SwitchTrees) {
  for (Algorithm a : {Algorithm::kRing, Algorithm::kHierarchical, Algorithm::kHalvingDoubling,
                      Algorithm::kTree}) {
    sweep_trees(a, false);
  }
}

// Large buffers go up and down the levels in pieces (levels.cc): still exact.
TEST(AllReduce, SwitchTreesInPieces) {
  for (size_t t : {size_t{0}, size_t{2}, size_t{4}}) {
    Case c;
    c.algorithm = Algorithm::kHierarchical;
    c.nranks = 8;
    c.count = (size_t{12} << 20) / kElem + 13;  // 3 pieces of about 4 MiB
    c.hosts = trees()[t].hosts;
    c.switches = trees()[t].switches;
    SCOPED_TRACE(trees()[t].name);
    run_case(c, false, 11);
  }
}

// Bytes rank a sends to ranks under another leaf switch than its own (`leaf`: each rank's leaf
// switch; the plan may have been made without knowing them).
std::vector<double> cross_switch_bytes(const std::vector<int>& leaf, const CaseRun& run) {
  const size_t n = leaf.size();
  std::vector<double> out(n, 0.0);
  for (size_t a = 0; a < n; ++a) {
    for (size_t b = 0; b < n; ++b) {
      if (leaf[a] != leaf[b]) out[a] += static_cast<double>(run.outcome.bytes_to[a][b]);
    }
  }
  return out;
}
std::vector<double> cross_switch_bytes(const Case& c, const CaseRun& run) {
  return cross_switch_bytes(c.switches[0], run);
}
double total(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return sum;
}

// Interleaved racks: rank order would cross the uplinks at every hop; tree order crosses each
// rack's uplink once out and once in, so only two ranks send across, each a ring's 2(p-1)/p · S.
TEST(WireBytes, TreeOrderedRingCrossesEachUplinkOncePerDirection) {
  Case c;
  c.algorithm = Algorithm::kRing;
  c.nranks = 8;
  c.count = 40000;
  c.switches = trees()[1].switches;
  const CaseRun run = run_case(c, false);
  const double S = static_cast<double>(c.count * kElem);
  int crossing = 0;
  for (double bytes : cross_switch_bytes(c, run)) {
    if (bytes == 0) continue;
    ++crossing;
    EXPECT_NEAR(bytes, 2.0 * 7 / 8 * S, 8.0 * kElem);
  }
  EXPECT_EQ(crossing, 2);
}

// Multi-level: with R racks of h hosts, each host sends 2(R-1)/R · S/h across the uplinks.
TEST(WireBytes, MultiLevelSendsEachHostsShareAcrossRacks) {
  Case c;
  c.algorithm = Algorithm::kHierarchical;
  c.nranks = 8;
  c.count = 40000;
  c.switches = trees()[1].switches;  // interleaved: the plan follows the racks anyway
  const CaseRun run = run_case(c, false);
  const double S = static_cast<double>(c.count * kElem);
  for (double bytes : cross_switch_bytes(c, run)) {
    EXPECT_NEAR(bytes, 2.0 * 1 / 2 * S / 4, 8.0 * kElem);
  }
}

// Re-planning (collectives/replanner.h) puts a slow rank on a fast partner's host as a leaf: the
// hierarchical plan then sends the leaf's buffer to its partner once and back once, and nothing
// else crosses the leaf's link, whatever the leaders do (ring in pieces, or the climb).
TEST(AllReduce, LeavesSendTheirBufferToTheirPartnerOnly) {
  struct Shape {
    const char* name;
    std::vector<int> hosts;
    std::vector<std::vector<int>> switches;
    bool oversubscribed;
  };
  const std::vector<Shape> shapes = {
      {"flat, rank 3 on 4's host", {0, 1, 2, 4, 4, 5, 6, 7}, {}, true},
      {"racks, rank 3 on 0's host, ring among leaders",
       {0, 1, 2, 0, 4, 5, 6, 7},
       {{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}},
       false},
      {"racks, rank 3 on 0's host, multi-level",
       {0, 1, 2, 0, 4, 5, 6, 7},
       {{0, 0, 0, 0, 1, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0, 0}},
       true},
  };
  for (const Shape& shape : shapes) {
    for (size_t count : {size_t{1000}, size_t{9001}, (size_t{20} << 20) / kElem + 3}) {
      Case c;
      c.algorithm = Algorithm::kHierarchical;
      c.nranks = 8;
      c.count = count;
      c.hosts = shape.hosts;
      c.switches = shape.switches;
      c.oversubscribed = shape.oversubscribed;
      c.leaves = {3};
      SCOPED_TRACE(std::string(shape.name) + " count " + std::to_string(count));
      const CaseRun run = run_case(c, false, 7);
      const int partner = shape.hosts[3] == 4 ? 4 : 0;
      for (int q = 0; q < 8; ++q) {
        const uint64_t want = q == partner ? count * kElem : 0;
        EXPECT_EQ(run.outcome.bytes_to[3][static_cast<size_t>(q)], want) << "to rank " << q;
        EXPECT_EQ(run.outcome.bytes_to[static_cast<size_t>(q)][3], want) << "from rank " << q;
      }
    }
  }
}

// The small-message plans on trees whose size is not a power of two (the fold of hd, the cut
// trees of tree): exact for every count, segment size and layout.
TEST(AllReduce, SmallPlansOnUnevenTrees) {
  const std::vector<Tree> uneven = {
      {"6 hosts in 2 racks, interleaved", {}, {{0, 1, 0, 1, 0, 1}}},
      {"racks of 4 and 3", {}, {{0, 0, 0, 0, 1, 1, 1}, {0, 0, 0, 0, 0, 0, 0}}},
      {"2 ranks per host, 5 ranks", {0, 0, 1, 1, 2}, {{0, 0, 1, 1, 1}}},
      {"3 racks of 4 under 2 pods",
       {},
       {{0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2}, {0, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1}}},
  };
  for (const Tree& t : uneven) {
    SCOPED_TRACE(t.name);
    for (Algorithm a : {Algorithm::kHalvingDoubling, Algorithm::kTree}) {
      for (size_t count : {size_t{0}, size_t{1}, size_t{7}, size_t{1000}, size_t{9001}}) {
        for (size_t seg : {size_t{1} << 20, size_t{64}}) {
          Case c;
          c.algorithm = a;
          c.nranks = static_cast<int>(t.switches[0].size());
          c.count = count;
          c.segment_bytes = seg;
          c.hosts = t.hosts;
          c.switches = t.switches;
          run_case(c, true);
          run_case(c, false, 9);
          if (::testing::Test::HasFailure()) return;
        }
      }
    }
  }
}

// The same case with the switch tree, and without it (the flat plan) on the same racks.
struct TreeAndFlat {
  CaseRun tree, flat;
};
TreeAndFlat run_both(Case c) {
  TreeAndFlat both;
  both.tree = run_case(c, false);
  c.switches.clear();
  both.flat = run_case(c, false);
  return both;
}

// hd on 6 hosts in 2 interleaved racks (p' = 4, two folds): in tree order each fold pairs two
// hosts of one rack and the doubling crosses once, 4 ranks sending S across (4 S in all); in rank
// order both folds cross (there and back, 4 S) and so do half of the doubling's exchanges (4 S).
TEST(WireBytes, HalvingDoublingFoldsInsideTheRack) {
  Case c;
  c.algorithm = Algorithm::kHalvingDoubling;
  c.nranks = 6;
  c.count = 1000;
  c.switches = {{0, 1, 0, 1, 0, 1}};
  const TreeAndFlat both = run_both(c);
  const double S = static_cast<double>(c.count * kElem);
  EXPECT_EQ(total(cross_switch_bytes(c.switches[0], both.tree)), 4 * S);
  EXPECT_EQ(total(cross_switch_bytes(c.switches[0], both.flat)), 8 * S);
  // The folded ranks (the first of each pair in tree order: 0 and 1) send nothing across.
  const std::vector<double> per_rank = cross_switch_bytes(c.switches[0], both.tree);
  EXPECT_EQ(per_rank[0], 0);
  EXPECT_EQ(per_rank[1], 0);
}

// The first message of every rank's hd plan goes to a rank under its own leaf switch (tree order
// [0 2 4 6 1 3 5 7] for interleaved racks); rank order pairs 0 with 1 first, across the racks.
TEST(Plans, HalvingDoublingStartsUnderTheLeafSwitch) {
  Case c;
  c.algorithm = Algorithm::kHalvingDoubling;
  c.nranks = 8;
  c.count = 100;
  c.switches = trees()[1].switches;
  const TreeAndFlat both = run_both(c);
  auto first_peer = [](const Plan& plan) {
    for (const Op& op : plan.ops) {
      if (op.kind == OpKind::kSend) return op.peer;
    }
    return -1;
  };
  const std::vector<int>& leaf = c.switches[0];
  for (int r = 0; r < c.nranks; ++r) {
    const int tree_peer = first_peer(both.tree.plans[static_cast<size_t>(r)]);
    const int flat_peer = first_peer(both.flat.plans[static_cast<size_t>(r)]);
    EXPECT_EQ(leaf[static_cast<size_t>(tree_peer)], leaf[static_cast<size_t>(r)]) << r;
    EXPECT_NE(leaf[static_cast<size_t>(flat_peer)], leaf[static_cast<size_t>(r)]) << r;
  }
}

// The double binary tree on interleaved racks: in tree order only the two edges of each tree
// that join the racks cross (4 edges, S each: S/2 up and S/2 down), in rank order 8.
TEST(WireBytes, TreeCrossesRacksOnlyNearTheRoots) {
  Case c;
  c.algorithm = Algorithm::kTree;
  c.nranks = 8;
  c.count = 1000;
  c.switches = trees()[1].switches;
  const TreeAndFlat both = run_both(c);
  const double S = static_cast<double>(c.count * kElem);
  EXPECT_EQ(total(cross_switch_bytes(c.switches[0], both.tree)), 4 * S);
  EXPECT_EQ(total(cross_switch_bytes(c.switches[0], both.flat)), 8 * S);
}

// A large hd with the tree halves near partners first: the exchanges across the racks carry the
// last, smallest parts. 2 racks of 4 in rank order: in tree order each rank sends S/8 across in
// the halving and S/8 in the doubling (S/4); the flat plan halves with the partner 4 away first,
// across the racks, S/2 each way (S).
TEST(WireBytes, LargeHalvingDoublingKeepsTheLargeHalvesLocal) {
  Case c;
  c.algorithm = Algorithm::kHalvingDoubling;
  c.nranks = 8;
  c.count = 80000;  // 640 KB: Rabenseifner
  c.switches = trees()[0].switches;
  const TreeAndFlat both = run_both(c);
  const double S = static_cast<double>(c.count * kElem);
  for (double bytes : cross_switch_bytes(c.switches[0], both.tree)) EXPECT_EQ(bytes, S / 4);
  for (double bytes : cross_switch_bytes(c.switches[0], both.flat)) EXPECT_EQ(bytes, S);
}

TEST(MakePlan, RejectsBadSwitchLevels) {
  PlanRequest req;
  req.nranks = 2;
  req.count = 10;
  Plan plan;
  req.switch_of_rank = {{0}};
  EXPECT_FALSE(make_plan(Algorithm::kRing, req, &plan).ok());  // one entry for two ranks
  req.switch_of_rank = {{0, -1}};
  EXPECT_FALSE(make_plan(Algorithm::kRing, req, &plan).ok());
  req.host_of_rank = {0, 0};
  req.switch_of_rank = {{0, 1}};  // one host under two switches
  EXPECT_FALSE(make_plan(Algorithm::kRing, req, &plan).ok());
  req.switch_of_rank = {{3, 3}};
  EXPECT_TRUE(make_plan(Algorithm::kRing, req, &plan).ok());
}

TEST(ReduceScatter, Ring) { sweep(Collective::kReduceScatter, Algorithm::kRing); }
TEST(ReduceScatter, OtherAlgorithmsRunTheRing) {
  for (Algorithm a : {Algorithm::kHalvingDoubling, Algorithm::kTree, Algorithm::kHierarchical}) {
    Case c;
    c.collective = Collective::kReduceScatter;
    c.algorithm = a;
    c.nranks = 5;
    c.count = 100;
    const CaseRun run = run_case(c, true);
    EXPECT_EQ(run.plans[0].algorithm, "ring");
  }
}
TEST(SendRecv, RingOfPeers) { sweep(Collective::kSendRecv, Algorithm::kRing); }
TEST(AllGather, Ring) { sweep(Collective::kAllGather, Algorithm::kRing); }
TEST(Broadcast, Chain) { sweep(Collective::kBroadcast, Algorithm::kRing); }
TEST(Broadcast, Binomial) { sweep(Collective::kBroadcast, Algorithm::kTree); }
TEST(Barrier, Dissemination) {
  for (int p : kRankCounts) {
    Case c;
    c.collective = Collective::kBarrier;
    c.nranks = p;
    const CaseRun run = run_case(c, false);
    // ceil(log2 p) zero-byte messages per rank.
    const auto rounds = static_cast<uint64_t>(std::ceil(std::log2(p)));
    for (uint64_t m : run.outcome.messages_sent) EXPECT_EQ(m, rounds) << "p=" << p;
    for (uint64_t b : run.outcome.bytes_sent) EXPECT_EQ(b, 0u);
  }
}

// Bytes on the wire per rank, as docs/algorithms.md states them (S = count * elem_size).
TEST(WireBytes, RingAllReduceIsBandwidthOptimal) {
  for (int p : {2, 3, 5, 8, 16}) {
    Case c;
    c.nranks = p;
    c.count = 10007;
    c.segment_bytes = 4096;
    const CaseRun run = run_case(c, false);
    const double S = static_cast<double>(c.count * kElem);
    for (uint64_t b : run.outcome.bytes_sent)
      EXPECT_NEAR(static_cast<double>(b), 2.0 * (p - 1) / p * S, 2.0 * kElem) << "p=" << p;
  }
}
TEST(WireBytes, RabenseifnerPowerOfTwo) {
  for (int p : {2, 4, 8, 16}) {
    Case c;
    c.algorithm = Algorithm::kHalvingDoubling;
    c.nranks = p;
    c.count = 10007;
    const CaseRun run = run_case(c, false);
    const double S = static_cast<double>(c.count * kElem);
    for (uint64_t b : run.outcome.bytes_sent)
      EXPECT_NEAR(static_cast<double>(b), 2.0 * (p - 1) / p * S, 2.0 * std::log2(p) * kElem);
  }
}
TEST(WireBytes, RecursiveDoublingSendsWholeVectorPerStep) {
  for (int p : {2, 4, 8}) {
    Case c;
    c.algorithm = Algorithm::kHalvingDoubling;
    c.nranks = p;
    c.count = 100;
    const CaseRun run = run_case(c, false);
    for (uint64_t b : run.outcome.bytes_sent)
      EXPECT_EQ(b, static_cast<uint64_t>(std::log2(p)) * c.count * kElem);
  }
}
TEST(WireBytes, DoubleTreeTotalMatchesRing) {
  for (int p : {3, 4, 7, 8, 16}) {
    Case c;
    c.algorithm = Algorithm::kTree;
    c.nranks = p;
    c.count = 10000;
    c.segment_bytes = 8192;
    const CaseRun run = run_case(c, false);
    const uint64_t S = c.count * kElem;
    uint64_t total = 0, most = 0;
    for (uint64_t b : run.outcome.bytes_sent) {
      total += b;
      most = std::max(most, b);
    }
    EXPECT_EQ(total, 2u * static_cast<uint64_t>(p - 1) * S) << "p=" << p;
    EXPECT_LE(most, 2 * S) << "p=" << p;
  }
}
TEST(WireBytes, HierCrossesHostsOnlyBetweenLeaders) {
  // 3 hosts x 2 ranks (hosts 0,0,1,1,2,2): inter-host traffic is a 3-rank ring among leaders.
  Case c;
  c.algorithm = Algorithm::kHierarchical;
  c.nranks = 6;
  c.count = 30000;
  c.hosts = {0, 0, 1, 1, 2, 2};
  const CaseRun run = run_case(c, false);
  const double S = static_cast<double>(c.count * kElem);
  for (int a = 0; a < 6; ++a) {
    uint64_t inter = 0;
    for (int b = 0; b < 6; ++b)
      if (c.hosts[static_cast<size_t>(a)] != c.hosts[static_cast<size_t>(b)])
        inter += run.outcome.bytes_to[static_cast<size_t>(a)][static_cast<size_t>(b)];
    if (a % 2 == 1) {
      EXPECT_EQ(inter, 0u) << "rank " << a;
    } else {
      EXPECT_NEAR(static_cast<double>(inter), 2.0 * 2 / 3 * S, 2.0 * kElem) << "rank " << a;
    }
  }
}
TEST(WireBytes, RingReduceScatterAndAllGather) {
  for (Collective coll : {Collective::kReduceScatter, Collective::kAllGather}) {
    Case c;
    c.collective = coll;
    c.nranks = 5;
    c.count = 1001;
    const CaseRun run = run_case(c, false);
    for (uint64_t b : run.outcome.bytes_sent) EXPECT_EQ(b, 4u * c.count * kElem);
  }
}

TEST(Plans, RandomSchedulesAgree) {
  // Different legal interleavings must give the same answer.
  for (uint64_t seed = 1; seed <= 5; ++seed) {
    for (Algorithm a : {Algorithm::kRing, Algorithm::kHalvingDoubling, Algorithm::kTree}) {
      Case c;
      c.algorithm = a;
      c.nranks = 7;
      c.count = 333;
      c.segment_bytes = 128;
      run_case(c, true, seed);
    }
  }
}

// The simulator itself must catch broken plans, or the sweeps above prove nothing.
Op message(OpKind kind, int peer, Span span, std::vector<uint32_t> deps = {}) {
  Op op;
  op.kind = kind;
  op.peer = peer;
  (kind == OpKind::kSend ? op.src : op.dst) = span;
  if (kind == OpKind::kRecvReduce) op.src = span;
  op.deps = std::move(deps);
  return op;
}

std::vector<PlanRequest> two_ranks(size_t count) {
  std::vector<PlanRequest> reqs(2);
  for (int r = 0; r < 2; ++r) {
    reqs[static_cast<size_t>(r)].nranks = 2;
    reqs[static_cast<size_t>(r)].rank = r;
    reqs[static_cast<size_t>(r)].count = count;
    reqs[static_cast<size_t>(r)].elem_size = kElem;
  }
  return reqs;
}

TEST(Simulator, DetectsDeadlock) {
  // Each rank sends only after it has received from the other.
  std::vector<Plan> plans(2);
  for (int r = 0; r < 2; ++r) {
    plans[static_cast<size_t>(r)].ops = {message(OpKind::kRecv, 1 - r, {Buf::kRecv, 0, 4}),
                                         message(OpKind::kSend, 1 - r, {Buf::kSend, 0, 4}, {0})};
  }
  const auto out = sim::run_plans(two_ranks(4), plans, {{1, 2, 3, 4}, {5, 6, 7, 8}}, false, 1);
  EXPECT_NE(out.error.find("deadlock"), std::string::npos) << out.error;
}

TEST(Simulator, DetectsCountMismatch) {
  std::vector<Plan> plans(2);
  plans[0].ops = {message(OpKind::kSend, 1, {Buf::kSend, 0, 2})};
  plans[1].ops = {message(OpKind::kRecv, 0, {Buf::kRecv, 0, 3})};
  const auto out = sim::run_plans(two_ranks(4), plans, {{1, 2, 3, 4}, {5, 6, 7, 8}}, false, 1);
  EXPECT_NE(out.error.find("which sent 2"), std::string::npos) << out.error;
}

TEST(Simulator, DetectsUnmatchedMessage) {
  std::vector<Plan> plans(2);
  plans[0].ops = {message(OpKind::kSend, 1, {Buf::kSend, 0, 2})};
  const auto out = sim::run_plans(two_ranks(4), plans, {{1, 2, 3, 4}, {5, 6, 7, 8}}, false, 1);
  EXPECT_NE(out.error.find("received 0"), std::string::npos) << out.error;
}

TEST(Simulator, DetectsRuleBreaks) {
  const PlanRequest req = two_ranks(4)[0];
  Plan plan;
  // Two receives into the same elements with no order between them.
  plan.ops = {message(OpKind::kRecv, 1, {Buf::kRecv, 0, 4}),
              message(OpKind::kRecv, 1, {Buf::kRecv, 2, 2})};
  EXPECT_NE(sim::check_plan(req, plan, false).find("may run at once"), std::string::npos);
  plan.ops[1].deps = {0};
  EXPECT_EQ(sim::check_plan(req, plan, false), "");
  // In place, a receive into kRecv races a send still reading the same kSend elements.
  plan.ops = {message(OpKind::kSend, 1, {Buf::kSend, 0, 4}),
              message(OpKind::kRecv, 1, {Buf::kRecv, 0, 4})};
  EXPECT_EQ(sim::check_plan(req, plan, false), "");
  EXPECT_NE(sim::check_plan(req, plan, true).find("in place"), std::string::npos);
  // Scratch beyond scratch_count, a span past kRecv, a message over segment_bytes.
  plan.ops = {message(OpKind::kRecv, 1, {Buf::kScratch, 0, 4})};
  plan.scratch_count = 3;
  EXPECT_NE(sim::check_plan(req, plan, false).find("out of bounds"), std::string::npos);
  plan.ops = {message(OpKind::kRecv, 1, {Buf::kRecv, 1, 4})};
  EXPECT_NE(sim::check_plan(req, plan, false).find("out of bounds"), std::string::npos);
  PlanRequest small_segments = req;
  small_segments.segment_bytes = 3 * kElem;
  plan.ops = {message(OpKind::kSend, 1, {Buf::kSend, 0, 4})};
  EXPECT_NE(sim::check_plan(small_segments, plan, false).find("exceeds"), std::string::npos);
}

TEST(MakePlan, RejectsBadRequests) {
  Plan plan;
  PlanRequest req;
  req.nranks = 4;
  req.rank = 4;
  EXPECT_EQ(make_plan(Algorithm::kRing, req, &plan).code(), Code::kInvalidArgument);
  req.rank = 0;
  req.segment_bytes = 2;
  EXPECT_EQ(make_plan(Algorithm::kRing, req, &plan).code(), Code::kInvalidArgument);
  req.segment_bytes = 1 << 20;
  req.host_of_rank = {0, 0};
  EXPECT_EQ(make_plan(Algorithm::kHierarchical, req, &plan).code(), Code::kInvalidArgument);
  req.host_of_rank = {};
  EXPECT_EQ(make_plan(Algorithm::kAuto, req, &plan).code(), Code::kInvalidArgument);
  req.collective = Collective::kBroadcast;
  req.root = 9;
  EXPECT_EQ(make_plan(Algorithm::kTree, req, &plan).code(), Code::kInvalidArgument);
}

// Compressed plans, with the simulator's lossless model codec: exact sums show that every frame
// reaches its decoder, the owners sum every member's chunk once, and all ranks end equal.
std::vector<int> two_per_host(int p) {
  std::vector<int> h;
  for (int r = 0; r < p; ++r) h.push_back(r / 2);
  return h;
}
TEST(Compressed, Direct) { sweep(Collective::kAllReduce, Algorithm::kDirect, nullptr, true); }
TEST(Compressed, Sparse) { sweep(Collective::kAllReduce, Algorithm::kSparse, nullptr, true); }
TEST(Compressed, ReencodingRing) { sweep(Collective::kAllReduce, Algorithm::kRing, nullptr, true); }
TEST(Compressed, HierTwoPerHost) {
  sweep(Collective::kAllReduce, Algorithm::kHierarchical, two_per_host, true);
}
TEST(Compressed, HierRoundRobinHosts) {
  // gradpack-run --vcluster puts rank i on host i % H.
  sweep(
      Collective::kAllReduce, Algorithm::kHierarchical,
      [](int p) {
        std::vector<int> h;
        for (int r = 0; r < p; ++r) h.push_back(r % std::max(1, p / 2));
        return h;
      },
      true);
}
TEST(Compressed, HierOneHost) {
  sweep(
      Collective::kAllReduce, Algorithm::kHierarchical,
      [](int p) { return std::vector<int>(static_cast<size_t>(p), 0); }, true);
}
// Switches above the hosts: the compressed plan climbs uncompressed under the leaf switches and
// crosses the uplinks through the codec (levels.cc), exact in the simulator (frames are lossless
// there), in pieces too, with every tree shape.
TEST(Compressed, SwitchTrees) {
  sweep_trees(Algorithm::kHierarchical, true);
  Case c;
  c.algorithm = Algorithm::kHierarchical;
  c.compressed = true;
  c.nranks = 8;
  c.count = (size_t{12} << 20) / kElem + 13;  // 3 pieces
  c.switches = trees()[1].switches;
  run_case(c, false, 11);
}

// The codec is applied only on the uplinks: every frame a rank sends goes to a rank under another
// leaf switch, and between ranks under one leaf switch only raw elements move.
TEST(Compressed, MultiLevelCodesOnlyAcrossUplinks) {
  for (size_t t : {size_t{0}, size_t{1}}) {
    Case c;
    c.algorithm = Algorithm::kHierarchical;
    c.compressed = true;
    c.nranks = 8;
    c.count = 40000;
    c.switches = trees()[t].switches;
    c.hosts = trees()[t].hosts;
    const CaseRun run = run_case(c, false);
    int frames_sent = 0;
    for (int r = 0; r < c.nranks; ++r) {
      for (const Op& op : run.plans[static_cast<size_t>(r)].ops) {
        if (op.kind != OpKind::kSend) continue;
        const bool across =
            c.switches[0][static_cast<size_t>(r)] != c.switches[0][static_cast<size_t>(op.peer)];
        EXPECT_EQ(op.src.buf == Buf::kFrame, across) << trees()[t].name << " rank " << r;
        frames_sent += op.src.buf == Buf::kFrame ? 1 : 0;
      }
    }
    EXPECT_GT(frames_sent, 0);
  }
}

TEST(Compressed, DirectSendsEachChunkOnceEachWay) {
  // Each rank sends (p-1)/p of the buffer to the owners and each owner its chunk to p-1 ranks:
  // 2(p-1)/p of the buffer per rank, as the ring, but in two rounds instead of 2(p-1) steps.
  for (int p : {2, 4, 5}) {
    Case c;
    c.algorithm = Algorithm::kDirect;
    c.compressed = true;
    c.nranks = p;
    c.count = 1000 * static_cast<size_t>(p);
    const CaseRun run = run_case(c, false);
    for (int r = 0; r < p; ++r) {
      EXPECT_EQ(run.outcome.bytes_sent[static_cast<size_t>(r)],
                2 * static_cast<uint64_t>(p - 1) * 1000 * kElem);
    }
  }
}
TEST(Compressed, OnlyAllReduceAndOnlyWithTheFlag) {
  PlanRequest r;
  r.nranks = 4;
  r.count = 100;
  Plan plan;
  EXPECT_EQ(make_plan(Algorithm::kDirect, r, &plan).code(), Code::kUnsupported);
  EXPECT_EQ(make_plan(Algorithm::kSparse, r, &plan).code(), Code::kUnsupported);
  r.compressed = true;
  EXPECT_EQ(make_plan(Algorithm::kHalvingDoubling, r, &plan).code(), Code::kUnsupported);
  EXPECT_TRUE(make_plan(Algorithm::kDirect, r, &plan).ok());
  r.collective = Collective::kReduceScatter;
  EXPECT_EQ(make_plan(Algorithm::kDirect, r, &plan).code(), Code::kInvalidArgument);
}
TEST(Compressed, SimulatorCatchesAFrameNobodyWrites) {
  PlanRequest r;
  r.nranks = 1;
  r.count = 4;
  r.compressed = true;
  Plan plan;
  plan.frames.push_back(FrameSlot{4, Stage::kWorker});
  Op copy;
  copy.kind = OpKind::kCopy;
  copy.src = Span{Buf::kSend, 0, 4};
  copy.dst = Span{Buf::kFrame, 0, 4};
  plan.ops.push_back(copy);
  EXPECT_NE(sim::check_plan(r, plan, false), "");
}

TEST(Names, ParseRoundTrips) {
  for (Algorithm a :
       {Algorithm::kAuto, Algorithm::kRing, Algorithm::kHalvingDoubling, Algorithm::kTree,
        Algorithm::kHierarchical, Algorithm::kDirect, Algorithm::kSparse}) {
    Algorithm back = Algorithm::kAuto;
    ASSERT_TRUE(parse_algorithm(algorithm_name(a), &back).ok());
    EXPECT_EQ(back, a);
  }
  Algorithm x;
  const Status st = parse_algorithm("butterfly", &x);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("ring"), std::string::npos);
  EXPECT_STREQ(collective_name(Collective::kAllReduce), "allreduce");
}

PlanRequest request(int p, size_t bytes, std::vector<int> hosts = {}) {
  PlanRequest r;
  r.nranks = p;
  r.elem_size = 4;
  r.count = bytes / 4;
  r.host_of_rank = std::move(hosts);
  return r;
}

TEST(Selector, SmallGoesToLogStepAlgorithms) {
  EXPECT_EQ(select_algorithm(request(8, 1024)), Algorithm::kHalvingDoubling);
  EXPECT_EQ(select_algorithm(request(16, 64 * 1024)), Algorithm::kHalvingDoubling);
  // p = 3: the tree needs 2 steps, hd 1 + fold/unfold = 3.
  EXPECT_EQ(select_algorithm(request(3, 1024)), Algorithm::kTree);
}
TEST(Selector, LargeGoesToRingOrHier) {
  EXPECT_EQ(select_algorithm(request(8, 1 << 20)), Algorithm::kRing);
  EXPECT_EQ(select_algorithm(request(4, 1 << 20, {0, 0, 1, 1})), Algorithm::kHierarchical);
  EXPECT_EQ(select_algorithm(request(4, 1 << 20, {0, 1, 2, 3})), Algorithm::kRing);
  EXPECT_EQ(select_algorithm(request(4, 1 << 20, {0, 0, 0, 0})), Algorithm::kRing);
}
TEST(Selector, OtherCollectives) {
  PlanRequest r = request(8, 1 << 20);
  r.collective = Collective::kBroadcast;
  EXPECT_EQ(select_algorithm(r), Algorithm::kRing);
  r.count = 16;
  EXPECT_EQ(select_algorithm(r), Algorithm::kTree);
  r.collective = Collective::kReduceScatter;
  EXPECT_EQ(select_algorithm(r), Algorithm::kRing);
}
TEST(Selector, ForcedWins) {
  Algorithm a = Algorithm::kAuto;
  ASSERT_TRUE(resolve_algorithm(Algorithm::kTree, request(8, 1 << 20), &a).ok());
  EXPECT_EQ(a, Algorithm::kTree);
}

}  // namespace
}  // namespace gradpack::coll
