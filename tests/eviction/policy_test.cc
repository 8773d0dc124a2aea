// Contract tests that every policy of NewEvictionPolicy() must pass.
#include "eviction/policy.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <string>
#include <vector>

namespace kvtier {
namespace {

const auto kAll = [](BlockId) { return true; };

std::unique_ptr<EvictionPolicy> Make(const std::string& name) {
  auto r = NewEvictionPolicy(name);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(r).value();
}

// Evicts everything, returning the victims in order.
std::vector<BlockId> Drain(EvictionPolicy& p) {
  std::vector<BlockId> order;
  while (p.size() > 0) {
    const BlockId v = p.PickVictim(kAll, 1 << 20);
    if (v == kNoBlock) break;
    order.push_back(v);
    p.Remove(v);
  }
  return order;
}

TEST(EvictionFactoryTest, UnknownNameListsKnownNames) {
  auto r = NewEvictionPolicy("clock-pro");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument());
  for (const char* known : {"lru", "priority-lru", "prefix-lru", "s3fifo", "adaptive-2q"}) {
    EXPECT_NE(r.status().message().find(known), std::string::npos) << known;
  }
  EXPECT_NE(r.status().message().find("clock-pro"), std::string::npos);
}

TEST(EvictionFactoryTest, SteadyClockIsMonotonic) {
  const uint64_t a = SteadyNowNs();
  const uint64_t b = SteadyNowNs();
  EXPECT_GT(a, 0u);
  EXPECT_GE(b, a);
}

class AllPoliciesTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AllPoliciesTest, NameMatchesFactoryName) {
  EXPECT_EQ(Make(GetParam())->name(), GetParam());
}

TEST_P(AllPoliciesTest, EmptyPolicyHasNoVictim) {
  auto p = Make(GetParam());
  EXPECT_EQ(p->size(), 0u);
  EXPECT_EQ(p->PickVictim(kAll), kNoBlock);
  p->Remove(7);  // untracked: no-op
  EXPECT_EQ(p->size(), 0u);
}

TEST_P(AllPoliciesTest, SizeFollowsTrackAndRemove) {
  auto p = Make(GetParam());
  for (BlockId id = 0; id < 10; ++id) p->Track(id, {});
  EXPECT_EQ(p->size(), 10u);
  p->Remove(3);
  p->Remove(3);   // second removal is a no-op
  p->Remove(99);  // never tracked
  EXPECT_EQ(p->size(), 9u);
}

TEST_P(AllPoliciesTest, MaxScanBoundsEligibilityChecks) {
  auto p = Make(GetParam());
  for (BlockId id = 0; id < 200; ++id) p->Track(id, {.parent = id % 4 ? id - 1 : kNoBlock});
  size_t calls = 0;
  auto none = [&](BlockId) {
    ++calls;
    return false;
  };
  EXPECT_EQ(p->PickVictim(none, 10), kNoBlock);
  EXPECT_LE(calls, 10u);
  EXPECT_GT(calls, 0u);
  calls = 0;
  EXPECT_EQ(p->PickVictim(none, 0), kNoBlock);
  EXPECT_EQ(calls, 0u);
  calls = 0;
  EXPECT_EQ(p->PickVictim(none, 1 << 20), kNoBlock);
  EXPECT_LE(calls, 2 * 200u);  // bounded by what is tracked, not by max_scan
}

TEST_P(AllPoliciesTest, NeverReturnsIneligibleOrUntracked) {
  auto p = Make(GetParam());
  for (BlockId id = 0; id < 50; ++id) p->Track(id, {});
  for (BlockId id = 0; id < 50; id += 2) p->Remove(id);
  auto eligible = [](BlockId id) { return id % 3 != 0; };
  size_t evicted = 0;
  for (BlockId v = p->PickVictim(eligible); v != kNoBlock; v = p->PickVictim(eligible)) {
    ASSERT_EQ(v % 2, 1u) << "removed id " << v << " returned";
    ASSERT_NE(v % 3, 0u) << "ineligible id " << v << " returned";
    p->Remove(v);
    ++evicted;
  }
  EXPECT_EQ(evicted, 17u);  // odd ids below 50 that are not multiples of 3
  // Only the odd multiples of 3 are left.
  for (BlockId v : Drain(*p)) EXPECT_EQ(v % 6, 3u);
}

// Random Track/Touch/Remove/PickVictim against a set model: the policy must
// track exactly the model's ids, and reused ids must behave like new ones.
TEST_P(AllPoliciesTest, RandomOpsKeepExactlyTheTrackedSet) {
  auto p = Make(GetParam());
  std::mt19937_64 rng(42);
  std::set<BlockId> model;
  constexpr BlockId kIds = 64;
  for (int step = 0; step < 20000; ++step) {
    const BlockId id = rng() % kIds;
    switch (rng() % 4) {
      case 0:
        if (!model.count(id)) {
          BlockMeta m;
          m.priority = static_cast<uint8_t>(rng() % 101);
          m.parent = rng() % 2 ? static_cast<BlockId>(rng() % kIds) : kNoBlock;
          if (m.parent != kNoBlock && !model.count(m.parent)) m.parent = kNoBlock;
          m.fingerprint = rng() % 200;
          p->Track(id, m);
          model.insert(id);
        }
        break;
      case 1:
        if (model.count(id)) p->Touch(id);
        break;
      case 2:
        p->Remove(id);
        model.erase(id);
        break;
      case 3: {
        const BlockId v = p->PickVictim([](BlockId b) { return b % 5 != 0; }, 1 << 20);
        if (v != kNoBlock) {
          ASSERT_TRUE(model.count(v)) << "untracked victim " << v;
          ASSERT_NE(v % 5, 0u);
          p->Remove(v);
          model.erase(v);
        } else {
          for (BlockId b : model) ASSERT_EQ(b % 5, 0u) << "eligible " << b << " not found";
        }
        break;
      }
    }
    ASSERT_EQ(p->size(), model.size());
  }
  std::vector<BlockId> drained = Drain(*p);
  std::sort(drained.begin(), drained.end());
  EXPECT_EQ(drained, std::vector<BlockId>(model.begin(), model.end()));
  EXPECT_EQ(p->size(), 0u);
}

TEST_P(AllPoliciesTest, MemoryUsageGrowsWithTrackedIds) {
  auto p = Make(GetParam());
  const size_t empty = p->MemoryUsage();
  EXPECT_GT(empty, 0u);
  for (BlockId id = 0; id < 10000; ++id) p->Track(id, {});
  const size_t full = p->MemoryUsage();
  EXPECT_GE(full, empty + 10000 * 8);  // at least two links per id
  for (BlockId id = 0; id < 10000; ++id) p->Track(id + 10000, {});
  EXPECT_GT(p->MemoryUsage(), full);
}

INSTANTIATE_TEST_SUITE_P(Policies, AllPoliciesTest,
                         ::testing::Values("lru", "priority-lru", "prefix-lru", "s3fifo",
                                           "adaptive-2q"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

// lru and priority-lru are the per-tier defaults: keep them small.
TEST(EvictionMemoryTest, LruFamilyUnder48BytesPerBlock) {
  for (const char* name : {"lru", "priority-lru"}) {
    auto p = Make(name);
    constexpr size_t kBlocks = 100000;
    for (BlockId id = 0; id < kBlocks; ++id) {
      p->Track(id, {.priority = static_cast<uint8_t>(id % 101)});
    }
    EXPECT_LT(p->MemoryUsage(), 48 * kBlocks) << name;
    EXPECT_GE(p->MemoryUsage(), 8 * kBlocks) << name;
  }
}

}  // namespace
}  // namespace kvtier
