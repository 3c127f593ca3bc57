// SPDX-License-Identifier: Apache-2.0
// gp_comm_init_from_env's reading of the environment: gradpack's own variables, torchrun's,
// Open MPI's and Slurm's, and clear errors for what is missing or malformed.
#include <gtest/gtest.h>

#include "collectives/rendezvous/env.h"

namespace gradpack::coll {
namespace {

EnvRendezvous parse_ok(const std::map<std::string, std::string>& env) {
  EnvRendezvous r;
  Status st = rendezvous_from_env(env, &r);
  EXPECT_TRUE(st.ok()) << st.to_string();
  return r;
}

TEST(EnvRendezvous, GradpackVariablesWin) {
  auto r = parse_ok({{"GRADPACK_RANK", "2"},
                     {"GRADPACK_WORLD_SIZE", "4"},
                     {"GRADPACK_ROOT", "10.0.0.1:29500"},
                     {"RANK", "0"},
                     {"WORLD_SIZE", "8"}});
  EXPECT_EQ(r.rank, 2);
  EXPECT_EQ(r.nranks, 4);
  EXPECT_EQ(r.url, "tcp://10.0.0.1:29500");
}

TEST(EnvRendezvous, TorchrunMpiAndSlurm) {
  auto t = parse_ok(
      {{"RANK", "1"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "node0"}, {"MASTER_PORT", "1234"}});
  EXPECT_EQ(t.rank, 1);
  EXPECT_EQ(t.url, "tcp://node0:1234");
  auto m = parse_ok({{"OMPI_COMM_WORLD_RANK", "3"},
                     {"OMPI_COMM_WORLD_SIZE", "4"},
                     {"GRADPACK_ROOT", "file:///shared/rdv"}});
  EXPECT_EQ(m.rank, 3);
  EXPECT_EQ(m.url, "file:///shared/rdv");
  auto s = parse_ok({{"SLURM_PROCID", "0"},
                     {"SLURM_NTASKS", "16"},
                     {"MASTER_ADDR", "fe80::1"},
                     {"MASTER_PORT", "9"}});
  EXPECT_EQ(s.nranks, 16);
  EXPECT_EQ(s.url, "tcp://[fe80::1]:9");
}

TEST(EnvRendezvous, MissingOrBadValuesAreNamed) {
  EnvRendezvous r;
  Status st = rendezvous_from_env({}, &r);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("GRADPACK_RANK"), std::string::npos);
  st = rendezvous_from_env({{"RANK", "1"}}, &r);
  EXPECT_NE(st.message().find("WORLD_SIZE"), std::string::npos) << st.message();
  st = rendezvous_from_env({{"RANK", "x"}, {"WORLD_SIZE", "2"}}, &r);
  EXPECT_NE(st.message().find("RANK='x'"), std::string::npos) << st.message();
  st = rendezvous_from_env(
      {{"RANK", "2"}, {"WORLD_SIZE", "2"}, {"MASTER_ADDR", "a"}, {"MASTER_PORT", "1"}}, &r);
  EXPECT_NE(st.message().find("outside world size"), std::string::npos) << st.message();
  st = rendezvous_from_env({{"RANK", "0"}, {"WORLD_SIZE", "2"}}, &r);
  EXPECT_NE(st.message().find("GRADPACK_ROOT"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace gradpack::coll
