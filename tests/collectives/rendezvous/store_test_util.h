// SPDX-License-Identifier: Apache-2.0
// The multi-process rendezvous check every store backend passes: three forked ranks count in,
// publish a value each and wait for a "go" from the parent, which holds `root`.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "collectives/rendezvous/store.h"

namespace gradpack::testing_util {

inline std::vector<uint8_t> store_bytes(const std::string& s) { return {s.begin(), s.end()}; }

// open_in_child: how a forked rank opens its own handle on the same store.
inline void check_processes_rendezvous(
    Store& root, const std::function<Status(std::shared_ptr<Store>*)>& open_in_child) {
  using std::chrono::milliseconds;
  std::vector<pid_t> children;
  for (int rank = 1; rank <= 3; ++rank) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      std::shared_ptr<Store> s;
      bool ok = open_in_child(&s).ok();
      for (int i = 0; ok && i < 40; ++i) {
        int64_t r;
        ok = s->add("arrived", 1, &r).ok();
      }
      ok =
          ok && s->set("rank/" + std::to_string(rank), store_bytes(std::to_string(rank * 10))).ok();
      std::vector<uint8_t> go;
      ok = ok && s->get("go", milliseconds(10000), &go).ok();
      ::_exit(ok ? 0 : 1);
    }
    children.push_back(pid);
  }
  ASSERT_TRUE(root.wait({"rank/1", "rank/2", "rank/3"}, milliseconds(10000)).ok());
  int64_t arrived = 0;
  ASSERT_TRUE(root.add("arrived", 0, &arrived).ok());
  EXPECT_EQ(arrived, 120);
  std::vector<uint8_t> v;
  ASSERT_TRUE(root.get("rank/2", milliseconds(10), &v).ok());
  EXPECT_EQ(v, store_bytes("20"));
  ASSERT_TRUE(root.set("go", store_bytes("1")).ok());
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  }
}

}  // namespace gradpack::testing_util
