// SPDX-License-Identifier: Apache-2.0
// The registration cache's logic, over a fake registrar (no verbs needed).
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "transport/ibverbs/device.h"

namespace gradpack::transport {
namespace {

constexpr size_t kPage = 4096;

struct FakeRegistrar {
  struct Reg {
    uintptr_t addr;
    size_t size;
    bool live;
  };
  std::vector<Reg> regs;
  bool fail_next = false;

  static Status reg(void* context, void* addr, size_t size, uint32_t* lkey, uint32_t* rkey,
                    void** handle) {
    auto* self = static_cast<FakeRegistrar*>(context);
    if (self->fail_next) {
      self->fail_next = false;
      return SystemError("fake registration failure");
    }
    self->regs.push_back({reinterpret_cast<uintptr_t>(addr), size, true});
    const size_t index = self->regs.size();
    *lkey = static_cast<uint32_t>(100 + index);
    *rkey = static_cast<uint32_t>(200 + index);
    *handle = reinterpret_cast<void*>(index);
    return OkStatus();
  }
  static void dereg(void* context, void* handle) {
    auto* self = static_cast<FakeRegistrar*>(context);
    self->regs[reinterpret_cast<size_t>(handle) - 1].live = false;
  }
  Registrar registrar() { return Registrar{this, reg, dereg}; }
  int live() const {
    return static_cast<int>(
        std::count_if(regs.begin(), regs.end(), [](const Reg& r) { return r.live; }));
  }
};

// Addresses only: the fake never touches memory.
const void* at(uintptr_t address) { return reinterpret_cast<const void*>(address); }

TEST(IbRegCache, RegistersPageAlignedRange) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key key;
  ASSERT_TRUE(cache.acquire(at(0x10010), 100, &key).ok());
  ASSERT_EQ(fake.regs.size(), 1u);
  EXPECT_EQ(fake.regs[0].addr, 0x10000u);
  EXPECT_EQ(fake.regs[0].size, kPage);
  EXPECT_EQ(key.lkey, 101u);
  EXPECT_EQ(key.rkey, 201u);
  ASSERT_TRUE(cache.acquire(at(0x10ff0), 0x20, &key).ok());  // crosses into the next page
  ASSERT_EQ(fake.regs.size(), 2u);
  EXPECT_EQ(fake.regs[1].addr, 0x10000u);
  EXPECT_EQ(fake.regs[1].size, 2 * kPage);
}

TEST(IbRegCache, SameBufferTwiceTakesAReference) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key a, b;
  ASSERT_TRUE(cache.acquire(at(0x20000), 3 * kPage, &a).ok());
  ASSERT_TRUE(cache.acquire(at(0x20000), 3 * kPage, &b).ok());
  EXPECT_EQ(fake.regs.size(), 1u);
  EXPECT_EQ(a.id, b.id);
  EXPECT_EQ(a.lkey, b.lkey);
  EXPECT_EQ(cache.refs(a.id), 2);
  EXPECT_EQ(cache.entries(), 1u);
}

TEST(IbRegCache, CoveredSubrangeReusesTheEntry) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key big, inner, same_page;
  ASSERT_TRUE(cache.acquire(at(0x40000), 16 * kPage, &big).ok());
  ASSERT_TRUE(cache.acquire(at(0x40000 + 5 * kPage + 7), 2 * kPage, &inner).ok());
  ASSERT_TRUE(cache.acquire(at(0x40000 + 15 * kPage + 100), 50, &same_page).ok());
  EXPECT_EQ(fake.regs.size(), 1u);
  EXPECT_EQ(inner.id, big.id);
  EXPECT_EQ(same_page.id, big.id);
  EXPECT_EQ(cache.refs(big.id), 3);
}

TEST(IbRegCache, PartialOverlapRegistersANewEntry) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key first, overlapping;
  ASSERT_TRUE(cache.acquire(at(0x80000), 4 * kPage, &first).ok());
  ASSERT_TRUE(cache.acquire(at(0x80000 + 2 * kPage), 4 * kPage, &overlapping).ok());
  ASSERT_EQ(fake.regs.size(), 2u);
  EXPECT_NE(first.id, overlapping.id);
  EXPECT_EQ(fake.regs[1].addr, 0x80000u + 2 * kPage);
  EXPECT_EQ(fake.regs[1].size, 4 * kPage);
  EXPECT_EQ(cache.entries(), 2u);
  // A range inside both is served by one of them, without a third registration.
  RegistrationCache::Key inside;
  ASSERT_TRUE(cache.acquire(at(0x80000 + 2 * kPage), kPage, &inside).ok());
  EXPECT_EQ(fake.regs.size(), 2u);
}

TEST(IbRegCache, LastReleaseDeregisters) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key a, b;
  ASSERT_TRUE(cache.acquire(at(0x100000), kPage, &a).ok());
  ASSERT_TRUE(cache.acquire(at(0x100000), kPage, &b).ok());
  cache.release(a.id);
  EXPECT_EQ(fake.live(), 1);
  EXPECT_EQ(cache.refs(a.id), 1);
  cache.release(b.id);
  EXPECT_EQ(fake.live(), 0);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_EQ(cache.refs(a.id), 0);
  cache.release(a.id);  // a stale id is ignored
  EXPECT_EQ(fake.live(), 0);
  // Registering again after eviction goes back to the registrar.
  RegistrationCache::Key c;
  ASSERT_TRUE(cache.acquire(at(0x100000), kPage, &c).ok());
  EXPECT_EQ(fake.regs.size(), 2u);
  EXPECT_NE(c.id, a.id);
}

TEST(IbRegCache, FailedRegistrationLeavesNoEntry) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  fake.fail_next = true;
  RegistrationCache::Key key;
  EXPECT_EQ(cache.acquire(at(0x200000), kPage, &key).code(), Code::kSystem);
  EXPECT_EQ(cache.entries(), 0u);
  EXPECT_TRUE(cache.acquire(at(0x200000), kPage, &key).ok());
  EXPECT_EQ(cache.entries(), 1u);
}

TEST(IbRegCache, DestructorDeregistersWhatIsLeft) {
  FakeRegistrar fake;
  {
    RegistrationCache cache(fake.registrar(), kPage);
    RegistrationCache::Key a, b;
    ASSERT_TRUE(cache.acquire(at(0x300000), kPage, &a).ok());
    ASSERT_TRUE(cache.acquire(at(0x400000), kPage, &b).ok());
    EXPECT_EQ(fake.live(), 2);
  }
  EXPECT_EQ(fake.live(), 0);
}

TEST(IbRegCache, MemoryRegionHoldsOneReference) {
  FakeRegistrar fake;
  auto cache = std::make_shared<RegistrationCache>(fake.registrar(), kPage);
  RegistrationCache::Key key;
  ASSERT_TRUE(cache->acquire(at(0x500000), 10, &key).ok());
  {
    IbMemoryRegion region(cache, key);
    EXPECT_EQ(region.lkey(), key.lkey);
    EXPECT_EQ(region.rkey(), key.rkey);
  }
  EXPECT_EQ(fake.live(), 0);
}

TEST(IbRegCache, ZeroBytesStillGetsAPage) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key key;
  ASSERT_TRUE(cache.acquire(at(0x600000), 0, &key).ok());
  ASSERT_EQ(fake.regs.size(), 1u);
  EXPECT_EQ(fake.regs[0].size, kPage);
}

TEST(IbRegCache, WrappingRangeIsRefused) {
  FakeRegistrar fake;
  RegistrationCache cache(fake.registrar(), kPage);
  RegistrationCache::Key key;
  EXPECT_EQ(cache.acquire(at(UINTPTR_MAX - 10), 100, &key).code(), Code::kInvalidArgument);
  EXPECT_EQ(fake.regs.size(), 0u);
}

}  // namespace
}  // namespace gradpack::transport
