// SPDX-License-Identifier: Apache-2.0
// Rendezvous stores: the same behaviour from the in-memory and the file store, across threads
// and (file store) across processes.
#include "collectives/rendezvous/store.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "tests/collectives/rendezvous/store_test_util.h"

namespace gradpack {
namespace {

using std::chrono::milliseconds;

std::vector<uint8_t> bytes(const std::string& s) { return {s.begin(), s.end()}; }

class StoreTest : public testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "memory") {
      store_ = make_memory_store();
    } else {
      dir_ = std::filesystem::temp_directory_path() /
             ("gradpack-store-" + std::to_string(::getpid()) + "-" +
              testing::UnitTest::GetInstance()->current_test_info()->name());
      std::filesystem::remove_all(dir_);
      ASSERT_TRUE(make_file_store(dir_.string() + "/nested", &store_).ok());
    }
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  std::shared_ptr<Store> store_;
  std::filesystem::path dir_;
};

TEST_P(StoreTest, SetThenGet) {
  ASSERT_TRUE(store_->set("addr/0", bytes("10.0.0.1:1234")).ok());
  std::vector<uint8_t> v;
  ASSERT_TRUE(store_->get("addr/0", milliseconds(100), &v).ok());
  EXPECT_EQ(v, bytes("10.0.0.1:1234"));
  ASSERT_TRUE(store_->set("addr/0", bytes("")).ok());  // replaced, and empty values are values
  ASSERT_TRUE(store_->get("addr/0", milliseconds(100), &v).ok());
  EXPECT_TRUE(v.empty());
}

TEST_P(StoreTest, MissingKeyTimesOutNamingIt) {
  std::vector<uint8_t> v;
  const auto t0 = std::chrono::steady_clock::now();
  Status st = store_->get("rank/3/ready", milliseconds(80), &v);
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(st.code(), Code::kTimeout);
  EXPECT_NE(st.message().find("rank/3/ready"), std::string::npos);
  EXPECT_GE(waited, milliseconds(75));
  EXPECT_LT(waited, milliseconds(2000));
  EXPECT_EQ(store_->wait({"a", "b"}, milliseconds(20)).code(), Code::kTimeout);
}

TEST_P(StoreTest, GetWaitsForALaterSet) {
  std::thread writer([&] {
    std::this_thread::sleep_for(milliseconds(30));
    ASSERT_TRUE(store_->set("late", bytes("here")).ok());
  });
  std::vector<uint8_t> v;
  Status st = store_->get("late", milliseconds(5000), &v);
  writer.join();
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(v, bytes("here"));
}

TEST_P(StoreTest, AddIsAtomicAcrossThreads) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&] {
      for (int i = 0; i < 50; ++i) {
        int64_t r = 0;
        ASSERT_TRUE(store_->add("counter", 1, &r).ok());
      }
    });
  for (auto& t : threads) t.join();
  int64_t r = 0;
  ASSERT_TRUE(store_->add("counter", 0, &r).ok());
  EXPECT_EQ(r, 200);
  ASSERT_TRUE(store_->add("counter", -201, &r).ok());
  EXPECT_EQ(r, -1);
  ASSERT_TRUE(store_->set("text", bytes("hello")).ok());
  EXPECT_EQ(store_->add("text", 1, &r).code(), Code::kInvalidArgument);
}

TEST_P(StoreTest, PrefixesKeepCommunicatorsApart) {
  PrefixStore a("comm0", store_), b("comm1", store_);
  ASSERT_TRUE(a.set("k", bytes("A")).ok());
  std::vector<uint8_t> v;
  EXPECT_EQ(b.get("k", milliseconds(10), &v).code(), Code::kTimeout);
  ASSERT_TRUE(store_->get("comm0/k", milliseconds(10), &v).ok());
  EXPECT_EQ(v, bytes("A"));
}

std::string backend_name(const testing::TestParamInfo<std::string>& p) { return p.param; }

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest, testing::Values("memory", "file"), backend_name);

// Processes that share only a directory rendezvous through it.
TEST(FileStore, ProcessesRendezvous) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("gradpack-store-procs-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::shared_ptr<Store> store;
  ASSERT_TRUE(make_file_store(dir.string(), &store).ok());
  testing_util::check_processes_rendezvous(
      *store, [&](std::shared_ptr<Store>* out) { return make_file_store(dir.string(), out); });
  std::filesystem::remove_all(dir);
}

TEST(FileStore, BadDirectoryIsAClearError) {
  std::shared_ptr<Store> store;
  EXPECT_EQ(make_file_store("", &store).code(), Code::kInvalidArgument);
  EXPECT_EQ(make_file_store("/proc/version/x", &store).code(), Code::kSystem);
  Status st = make_file_store("/dev/null", &store);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("/dev/null"), std::string::npos);
}

}  // namespace
}  // namespace gradpack
