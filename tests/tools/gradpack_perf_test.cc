// SPDX-License-Identifier: Apache-2.0
// gradpack-perf end to end: 3 ranks under gradpack-run, results checked by the tool itself, and
// the table and JSON it prints.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "command.h"

namespace gradpack::tools::testing {
namespace {

const std::string kRun = GRADPACK_RUN_PATH;
const std::string kPerf = GRADPACK_PERF_PATH;

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

std::vector<std::string> split_fields(const std::string& line) {
  std::vector<std::string> fields;
  std::istringstream in(line);
  for (std::string f; in >> f;) fields.push_back(f);
  return fields;
}

// Runs gradpack-perf on 3 ranks and checks the shape of the table: `rows` data lines of 13
// columns, each with #wrong 0 in both layouts.
void expect_table(const std::string& perf_args, size_t rows) {
  const auto r = run_command(kRun + " --timeout 280 -n 3 -- " + kPerf + " " + perf_args);
  ASSERT_EQ(r.status, 0) << r.output;
  size_t data = 0;
  for (const std::string& line : split_lines(r.output)) {
    if (line.empty() || line[0] == '#') continue;
    const auto f = split_fields(line);
    ASSERT_EQ(f.size(), 13u) << line;
    EXPECT_EQ(f[8], "0") << line;
    EXPECT_EQ(f[12], "0") << line;
    ++data;
  }
  EXPECT_EQ(data, rows) << r.output;
  EXPECT_NE(r.output.find("# Out of bounds values : 0 OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# Avg bus bandwidth    : "), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nranks 3"), std::string::npos) << r.output;
}

TEST(GradpackPerf, AllReduceEveryOpAndType) {
  // 8 types x 5 ops x sizes 8, 32, ..., 512K (-f 4 up to 1M: 9 sizes).
  expect_table("-b 8 -e 1M -f 4 -o all -d all -c 1 -n 2 -w 1", 8 * 5 * 9);
}

TEST(GradpackPerf, EveryAllReduceAlgorithm) {
  for (const char* algo : {"ring", "hd", "tree", "hier"}) {
    SCOPED_TRACE(algo);
    expect_table(std::string("-b 4K -e 256K -f 8 -o sum -d float -n 2 -a ") + algo, 3);
  }
}

TEST(GradpackPerf, ReduceScatterAllGatherBroadcast) {
  expect_table("-C reduce_scatter -b 96 -e 96K -f 32 -o all -d all -n 2", 8 * 5 * 3);
  expect_table("-C all_gather -b 96 -e 96K -f 32 -d all -n 2", 8 * 3);
  expect_table("-C broadcast -r 2 -b 8 -e 64K -f 16 -d all -n 2", 8 * 4);
}

TEST(GradpackPerf, SendRecvRing) {
  // Every rank sends to rank+1 and receives from rank-1; the tool checks each received block
  // against the previous rank's input. No in-place layout: those four columns are N/A.
  const auto r = run_command(kRun + " --timeout 280 -n 3 -- " + kPerf +
                             " -C sendrecv -b 8 -e 1M -f 8 -d all -c 1 -n 2");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t data = 0;
  for (const std::string& line : split_lines(r.output)) {
    if (line.empty() || line[0] == '#') continue;
    const auto f = split_fields(line);
    ASSERT_EQ(f.size(), 13u) << line;
    EXPECT_EQ(f[3], "none") << line;
    EXPECT_EQ(f[4], "-1") << line;
    EXPECT_EQ(f[6], f[7]) << line;  // busbw = algbw
    EXPECT_EQ(f[8], "0") << line;
    for (size_t i = 9; i < 13; ++i) EXPECT_EQ(f[i], "N/A") << line;
    ++data;
  }
  // 8 types x sizes 8, 64, 512, 4K, 32K, 256K (-f 8 up to 1M).
  EXPECT_EQ(data, 8u * 6u) << r.output;
  EXPECT_NE(r.output.find("# gradpack-perf sendrecv: nranks 3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# Out of bounds values : 0 OK"), std::string::npos) << r.output;

  const auto j = run_command(kRun + " --timeout 120 -n 2 -- " + kPerf +
                             " -C sendrecv --json -b 4K -e 4K -d int32 -n 2");
  ASSERT_EQ(j.status, 0) << j.output;
  EXPECT_NE(j.output.find("\"collective\":\"sendrecv\",\"nranks\":2"), std::string::npos)
      << j.output;
  EXPECT_NE(j.output.find("\"wrong\":0},\"in_place\":null}"), std::string::npos) << j.output;
}

// --group: rows of 11 columns (size count type redop N | time algbw busbw #wrong | separate
// speedup), every result of the group checked, and the summary's speedup line.
TEST(GradpackPerf, GroupedAllReduces) {
  const auto r = run_command(kRun + " --timeout 280 -n 3 -- " + kPerf +
                             " --group 20 -b 8 -e 64K -f 8 -d int32 -o max -c 1 -n 3 -w 1");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t data = 0;
  for (const std::string& line : split_lines(r.output)) {
    if (line.empty() || line[0] == '#') continue;
    const auto f = split_fields(line);
    ASSERT_EQ(f.size(), 11u) << line;
    EXPECT_EQ(f[4], "20") << line;
    EXPECT_EQ(f[8], "0") << line;
    EXPECT_GT(std::stod(f[10]), 0.0) << line;
    ++data;
  }
  EXPECT_EQ(data, 5u) << r.output;  // 8, 64, 512, 4K, 32K
  EXPECT_NE(r.output.find("# Out of bounds values : 0 OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# Group speedup        : "), std::string::npos) << r.output;
}

TEST(GradpackPerf, JsonRows) {
  const auto r =
      run_command(kRun + " --timeout 120 -n 3 -- " + kPerf + " --json -b 1K -e 4K -f 2 -n 2");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto lines = split_lines(r.output);
  ASSERT_EQ(lines.size(), 3u) << r.output;
  for (const std::string& line : lines) {
    EXPECT_EQ(line.front(), '{') << line;
    EXPECT_EQ(line.back(), '}') << line;
    EXPECT_NE(line.find("\"collective\":\"all_reduce\",\"nranks\":3"), std::string::npos) << line;
    EXPECT_NE(line.find("\"wrong\":0},\"in_place\""), std::string::npos) << line;
  }
  EXPECT_NE(lines[0].find("\"size\":1024,\"count\":256"), std::string::npos) << lines[0];
}

TEST(GradpackPerf, VclusterHierarchical) {
  if (access("/run/gradpack-vcluster/hosts", R_OK) != 0 || geteuid() != 0) {
    GTEST_SKIP() << "needs root and a virtual cluster (scripts/vcluster.sh up N)";
  }
  // Two ranks per namespaced host (with at least two hosts), so hier has local and remote peers.
  const auto r = run_command(kRun + " --vcluster --timeout 280 -n 4 -- " + kPerf +
                             " -b 8 -e 1M -f 16 -o all -d float -n 2 -a hier");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("# Out of bounds values : 0 OK"), std::string::npos) << r.output;
}

// -z: the compressed table (one layout, no root: 11 columns) and its check against the exact sum
// within q8's bound.
TEST(GradpackPerf, CompressedAllReduceIsChecked) {
  const auto r =
      run_command(kRun + " --timeout 120 -n 2 -- " + kPerf + " -z q8 -c 1 -b 64K -e 64K -n 2");
  ASSERT_EQ(r.status, 0) << r.output;
  size_t data = 0;
  for (const std::string& line : split_lines(r.output)) {
    if (line.empty() || line[0] == '#') continue;
    const auto f = split_fields(line);
    // size count type redop time algbw busbw wire #wrong maxerr codec
    ASSERT_EQ(f.size(), 11u) << line;
    EXPECT_EQ(f[0], "65536") << line;
    EXPECT_GT(std::stod(f[7]), 0) << line;              // wire bytes per rank per call
    EXPECT_LT(std::stod(f[7]), 65536) << line;          // fewer than uncompressed
    EXPECT_EQ(f[8], "0") << line;                       // #wrong
    EXPECT_LE(std::stod(f[9]), 2.0 * 2 / 254) << line;  // maxerr: within q8's step
    EXPECT_EQ(f[10], "q8") << line;
    ++data;
  }
  EXPECT_EQ(data, 1u) << r.output;
  for (const char* column : {"wire", "maxerr", "codec", "busbw", "#wrong"}) {
    EXPECT_NE(r.output.find(column), std::string::npos) << column;
  }
  EXPECT_NE(r.output.find("# Compressed: codec q8, error feedback on"), std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("# Out of bounds values : 0 OK"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("# Max relative error   : "), std::string::npos) << r.output;

  const auto j = run_command(kRun + " --timeout 120 -n 2 -- " + kPerf +
                             " --json -z q8 --error-feedback off -b 4K -e 4K -n 2");
  ASSERT_EQ(j.status, 0) << j.output;
  for (const char* field :
       {"\"codec\":\"q8\",\"error_feedback\":false",
        "\"wrong\":0,\"wire_bytes\":", "\"codec_used\":\"q8:block=256:round=nearest:seed=0\"",
        "\"maxerr\":", "\"in_place\":null"}) {
    EXPECT_NE(j.output.find(field), std::string::npos) << field << "\n" << j.output;
  }
}

TEST(GradpackPerf, CompressedUsageErrors) {
  // Found before the communicator is joined: no launcher needed.
  const auto coll = run_command(kPerf + " -z q8 -C all_gather");
  EXPECT_EQ(coll.status, 2);
  EXPECT_NE(coll.output.find("all_reduce only"), std::string::npos) << coll.output;
  // The library's parser names the bad part of the spec.
  const auto spec = run_command(kPerf + " -z q8:block=12");
  EXPECT_EQ(spec.status, 2);
  EXPECT_NE(spec.output.find("block=12"), std::string::npos) << spec.output;
  EXPECT_EQ(run_command(kPerf + " -z auto:q99").status, 2);
  EXPECT_EQ(run_command(kPerf + " -z q8 --error-feedback maybe").status, 2);
}

TEST(GradpackPerf, UsageErrorsAndHelp) {
  // Usage errors are found before the communicator is joined: no launcher needed.
  EXPECT_EQ(run_command(kPerf + " -d fp8").status, 2);
  EXPECT_EQ(run_command(kPerf + " -C all_to_all").status, 2);
  const auto help = run_command(kPerf + " --help");
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.output.find("--collective"), std::string::npos);
  // A root outside the communicator.
  EXPECT_EQ(run_command(kRun + " --timeout 60 -n 2 -- " + kPerf + " -C broadcast -r 5").status, 2);
}

TEST(GradpackPerf, FailedInitNamesTheCall) {
  // No rendezvous in the environment: gp_comm_init_from_env fails and says so.
  const auto r = run_command(
      "env -u GRADPACK_ROOT -u GRADPACK_RANK -u GRADPACK_WORLD_SIZE -u RANK -u WORLD_SIZE "
      "-u MASTER_ADDR -u MASTER_PORT -u OMPI_COMM_WORLD_RANK -u OMPI_COMM_WORLD_SIZE "
      "-u SLURM_PROCID -u SLURM_NTASKS " +
      kPerf + " -b 8 -e 8");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("gradpack-perf: rank 0: gp_comm_init_from_env: GP_ERR_"),
            std::string::npos)
      << r.output;
}

// A cluster file that does not know the ranks' hosts stops every rank at init with an error
// naming the hosts it lacks (not a silent flat network); one that knows them runs.
TEST(GradpackPerf, ClusterFileMustKnowTheRanksHosts) {
  char dir[] = "/tmp/gp-cluster-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  const std::string file = std::string(dir) + "/cluster.conf";
  {
    std::ofstream out(file);
    out << "# gradpack cluster\nswitch top\nswitch rack0 parent=top\n"
           "host node-a switch=rack0\nhost node-b switch=rack0\n";
  }
  const std::string launch = "GRADPACK_TOPOLOGY=" + file + " " + kRun + " --timeout 60 -n 2 -- ";
  auto r = run_command("GRADPACK_HOSTNAME=node-z " + launch + kPerf + " -b 1K -e 1K -n 1");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("GRADPACK_TOPOLOGY " + file), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("does not know 1 host(s) of the ranks: 'node-z' (ranks 0,1)"),
            std::string::npos)
      << r.output;
  r = run_command("GRADPACK_HOSTNAME=node-a " + launch + kPerf + " -b 1K -e 1K -n 1");
  EXPECT_EQ(r.status, 0) << r.output;
  std::remove(file.c_str());
  rmdir(dir);
}

}  // namespace
}  // namespace gradpack::tools::testing
