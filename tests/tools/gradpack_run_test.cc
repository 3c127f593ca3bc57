// SPDX-License-Identifier: Apache-2.0
// gradpack-run with /bin/sh ranks: the environment each rank gets, how a failing rank ends the
// others, --timeout, and its usage errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "command.h"

namespace gradpack::tools::testing {
namespace {

const std::string kRun = GRADPACK_RUN_PATH;

TEST(GradpackRun, EveryRankGetsItsEnvironment) {
  const auto r = run_command(kRun +
                             " -n 3 -- /bin/sh -c 'echo \"rank=$GRADPACK_RANK "
                             "size=$GRADPACK_WORLD_SIZE root=$GRADPACK_ROOT "
                             "local=$GRADPACK_LOCAL_RANK/$GRADPACK_LOCAL_SIZE\"'");
  EXPECT_EQ(r.status, 0) << r.output;
  for (int rank = 0; rank < 3; ++rank) {
    const std::string want = "rank=" + std::to_string(rank) + " size=3 root=127.0.0.1:";
    EXPECT_NE(r.output.find(want), std::string::npos) << r.output;
    EXPECT_NE(r.output.find("local=" + std::to_string(rank) + "/3"), std::string::npos) << r.output;
  }
}

TEST(GradpackRun, PassesArgumentsUnchanged) {
  const auto r = run_command(kRun + " -n 1 /bin/echo -n 'a b' c");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output, "a b c");
}

TEST(GradpackRun, FailingRankExitStatusAndOthersStopped) {
  // Rank 1 fails at once; the others would sleep for a minute unless they are stopped.
  const auto r = run_command(kRun +
                             " -n 3 -- /bin/sh -c '[ \"$GRADPACK_RANK\" = 1 ] && exit 3; "
                             "exec sleep 60'");
  EXPECT_EQ(r.status, 3) << r.output;
  EXPECT_LT(r.seconds, 20) << r.output;
  EXPECT_NE(r.output.find("rank 1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("exited with status 3"), std::string::npos) << r.output;
}

TEST(GradpackRun, RankKilledBySignal) {
  const auto r = run_command(kRun +
                             " -n 3 -- /bin/sh -c '[ \"$GRADPACK_RANK\" = 2 ] && kill -9 $$; "
                             "exec sleep 60'");
  EXPECT_EQ(r.status, 128 + 9) << r.output;
  EXPECT_LT(r.seconds, 20) << r.output;
  EXPECT_NE(r.output.find("rank 2"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("killed by signal 9"), std::string::npos) << r.output;
}

TEST(GradpackRun, TimeoutKillsEverythingWith124) {
  const auto r = run_command(kRun + " --timeout 1 -n 2 -- /bin/sh -c 'exec sleep 60'");
  EXPECT_EQ(r.status, 124) << r.output;
  EXPECT_GE(r.seconds, 0.9);
  EXPECT_LT(r.seconds, 10) << r.output;
  EXPECT_NE(r.output.find("timeout"), std::string::npos) << r.output;
}

TEST(GradpackRun, SigkillAfterGraceForRanksIgnoringSigterm) {
  // An ignored SIGTERM stays ignored across exec: only SIGKILL, 5 s later, ends these ranks.
  const auto r =
      run_command(kRun + " --timeout 0.5 -n 2 -- /bin/sh -c \"trap '' TERM; exec sleep 60\"");
  EXPECT_EQ(r.status, 124) << r.output;
  EXPECT_GE(r.seconds, 5.0) << r.output;
  EXPECT_LT(r.seconds, 20) << r.output;
  EXPECT_NE(r.output.find("SIGKILL"), std::string::npos) << r.output;
}

TEST(GradpackRun, ForwardsSigterm) {
  // gradpack-run itself gets SIGTERM after a moment; its ranks must end with it.
  const auto r = run_command("/bin/sh -c '" + kRun +
                             " -n 2 -- /bin/sleep 60 & pid=$!; sleep 0.5; kill -TERM $pid; "
                             "wait $pid; echo status=$?'");
  EXPECT_NE(r.output.find("status=143"), std::string::npos) << r.output;
  EXPECT_LT(r.seconds, 20) << r.output;
}

TEST(GradpackRun, ProgramThatCannotRun) {
  const auto r = run_command(kRun + " -n 2 -- /nonexistent/program");
  EXPECT_EQ(r.status, 127) << r.output;
  EXPECT_NE(r.output.find("cannot run"), std::string::npos) << r.output;
}

TEST(GradpackRun, UsageErrors) {
  EXPECT_EQ(run_command(kRun + " -- /bin/true").status, 2);
  EXPECT_EQ(run_command(kRun + " -n 2").status, 2);
  EXPECT_EQ(run_command(kRun + " -n 0 -- /bin/true").status, 2);
  EXPECT_EQ(run_command(kRun + " -n 2 --timeout -1 -- /bin/true").status, 2);
  EXPECT_EQ(run_command(kRun + " -n 2 --bogus -- /bin/true").status, 2);
  const auto help = run_command(kRun + " --help");
  EXPECT_EQ(help.status, 0);
  for (const char* flag :
       {"-n", "--vcluster", "--timeout", "GRADPACK_ROOT", "GRADPACK_IFNAME", "GRADPACK_HOSTNAME"}) {
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  }
}

TEST(GradpackRun, VclusterWithoutHostsFile) {
  const auto r = run_command("GRADPACK_VCLUSTER_HOSTS=/nonexistent/hosts " + kRun +
                             " -n 2 --vcluster -- /bin/true");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("no vcluster: run scripts/vcluster.sh up N"), std::string::npos)
      << r.output;
}

TEST(GradpackRun, VclusterEnvironment) {
  if (access("/run/gradpack-vcluster/hosts", R_OK) != 0 || geteuid() != 0) {
    GTEST_SKIP() << "needs root and a virtual cluster (scripts/vcluster.sh up N)";
  }
  const auto r = run_command(kRun +
                             " -n 2 --vcluster -- /bin/sh -c 'echo \"rank=$GRADPACK_RANK "
                             "if=$GRADPACK_IFNAME root=$GRADPACK_ROOT host=$GRADPACK_HOSTNAME\"'");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("host=gpvc"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank=0 if="), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("rank=1 if="), std::string::npos) << r.output;
}

}  // namespace
}  // namespace gradpack::tools::testing
