// SPDX-License-Identifier: Apache-2.0
// The interposer finds the caller's NCCL when libnccl is not in the global scope: a library
// linked to libnccl is opened with dlopen(RTLD_LOCAL), as Python opens extensions, and its NCCL
// calls must reach its own NCCL through the preloaded interposer (before the fix they returned
// ncclInternalError). Two such libraries with two NCCLs: each call reaches its caller's.
//
// main() runs the tests under LD_PRELOAD=<the interposer> (it executes itself again with it set
// when it is not); the interposer's and the two user libraries' paths come as compile
// definitions (tests/net_plugin/interposer/CMakeLists.txt).
#include <dlfcn.h>
#include <gtest/gtest.h>
#include <nccl.h>

#include <unistd.h>

#include <cstdlib>
#include <string>

#include "../stub_nccl.h"

namespace {

struct User {
  void* handle = nullptr;
  int (*group_round_trip)() = nullptr;
  int (*all_reduce_int32)() = nullptr;
  int (*destroy)() = nullptr;
  StubNcclLog* (*log)() = nullptr;
};

User open_user(const char* path, int scope) {
  User u;
  u.handle = dlopen(path, RTLD_NOW | scope);
  EXPECT_NE(u.handle, nullptr) << dlerror();
  if (u.handle == nullptr) return u;
  u.group_round_trip = reinterpret_cast<int (*)()>(dlsym(u.handle, "user_group_round_trip"));
  u.all_reduce_int32 = reinterpret_cast<int (*)()>(dlsym(u.handle, "user_all_reduce_int32"));
  u.destroy = reinterpret_cast<int (*)()>(dlsym(u.handle, "user_destroy"));
  u.log = reinterpret_cast<StubNcclLog* (*)()>(dlsym(u.handle, "user_log"));
  EXPECT_TRUE(u.group_round_trip && u.all_reduce_int32 && u.destroy && u.log);
  return u;
}

TEST(InterposerRtldLocal, TheInterposerIsPreloadedAndNcclIsNotGlobal) {
  ASSERT_NE(dlsym(RTLD_DEFAULT, "gradpackNcclSetResidualKey"), nullptr)
      << "run with LD_PRELOAD=libgradpack-nccl.so";
  EXPECT_EQ(dlsym(RTLD_DEFAULT, "pncclAllReduce"), nullptr)
      << "this test needs NCCL outside the global scope";
}

TEST(InterposerRtldLocal, CallsReachTheCallersOwnNccl) {
  User a = open_user(GP_NCCL_USER_A, RTLD_LOCAL);
  ASSERT_NE(a.handle, nullptr);
  const int starts = a.log()->group_starts;
  EXPECT_EQ(a.group_round_trip(), ncclSuccess);
  EXPECT_EQ(a.log()->group_starts, starts + 1);
  EXPECT_EQ(a.log()->group_ends, starts + 1);
  const int calls = a.log()->all_reduce_calls;
  EXPECT_EQ(a.all_reduce_int32(), ncclSuccess);
  EXPECT_EQ(a.log()->all_reduce_calls, calls + 1);
  EXPECT_EQ(a.log()->count, 10u);
  EXPECT_EQ(a.log()->dtype, ncclInt32);
  EXPECT_EQ(a.destroy(), ncclSuccess);
  EXPECT_EQ(a.log()->destroys, 1);
}

TEST(InterposerRtldLocal, TwoNcclsEachGetTheirOwnCalls) {
  User a = open_user(GP_NCCL_USER_A, RTLD_LOCAL);
  User b = open_user(GP_NCCL_USER_B, RTLD_LOCAL);
  ASSERT_TRUE(a.handle && b.handle);
  ASSERT_NE(a.log(), b.log()) << "the two users must have two NCCLs";
  const int a_calls = a.log()->all_reduce_calls, b_calls = b.log()->all_reduce_calls;
  const int a_starts = a.log()->group_starts, b_starts = b.log()->group_starts;
  EXPECT_EQ(b.all_reduce_int32(), ncclSuccess);
  EXPECT_EQ(b.group_round_trip(), ncclSuccess);
  EXPECT_EQ(b.log()->all_reduce_calls, b_calls + 1);
  EXPECT_EQ(b.log()->group_starts, b_starts + 1);
  EXPECT_EQ(a.log()->all_reduce_calls, a_calls);
  EXPECT_EQ(a.log()->group_starts, a_starts);
  EXPECT_EQ(a.all_reduce_int32(), ncclSuccess);
  EXPECT_EQ(a.log()->all_reduce_calls, a_calls + 1);
  EXPECT_EQ(b.log()->all_reduce_calls, b_calls + 1);
}

// The usual case, for comparison: NCCL in the global scope (opened with RTLD_GLOBAL, as when
// the application links it). Last: from here on a pncclAllReduce is global.
TEST(InterposerRtldLocal, ZzGlobalNcclWorksToo) {
  User c = open_user(GP_NCCL_USER_C, RTLD_GLOBAL);
  ASSERT_NE(c.handle, nullptr);
  EXPECT_NE(dlsym(RTLD_DEFAULT, "pncclAllReduce"), nullptr);
  const int calls = c.log()->all_reduce_calls, starts = c.log()->group_starts;
  EXPECT_EQ(c.group_round_trip(), ncclSuccess);
  EXPECT_EQ(c.all_reduce_int32(), ncclSuccess);
  EXPECT_EQ(c.log()->group_starts, starts + 1);
  EXPECT_EQ(c.log()->all_reduce_calls, calls + 1);
}

}  // namespace

int main(int argc, char** argv) {
  if (dlsym(RTLD_DEFAULT, "gradpackNcclSetResidualKey") == nullptr &&
      std::getenv("GP_RTLD_TEST_REEXEC") == nullptr) {
    setenv("LD_PRELOAD", GP_INTERPOSER, 1);
    setenv("GP_RTLD_TEST_REEXEC", "1", 1);
    execv("/proc/self/exe", argv);
    perror("execv /proc/self/exe");
    return 1;
  }
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
