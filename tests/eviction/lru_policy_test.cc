// Tests of "lru" (eviction/lru_policy.cc).
#include <gtest/gtest.h>

#include <vector>

#include "eviction/policy.h"
#include "tests/eviction/policy_test_util.h"

namespace kvtier {
namespace {

using eviction_test::Drain;

const auto kAll = [](BlockId) { return true; };

std::unique_ptr<EvictionPolicy> MakeLru() { return std::move(NewEvictionPolicy("lru")).value(); }

TEST(LruPolicyTest, EvictsLeastRecentlyUsedFirst) {
  auto p = MakeLru();
  for (BlockId id : {1, 2, 3, 4}) p->Track(id, {});
  p->Touch(2);
  p->Touch(1);
  p->Touch(2);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{3, 4, 1, 2}));
}

TEST(LruPolicyTest, PriorityIsIgnored) {
  auto p = MakeLru();
  p->Track(1, {.priority = 100});
  p->Track(2, {.priority = 0});
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 2}));
}

TEST(LruPolicyTest, PickVictimDoesNotRemove) {
  auto p = MakeLru();
  for (BlockId id : {5, 6}) p->Track(id, {});
  EXPECT_EQ(p->PickVictim(kAll), 5u);
  EXPECT_EQ(p->PickVictim(kAll), 5u);
  EXPECT_EQ(p->size(), 2u);
}

TEST(LruPolicyTest, SkipsIneligibleWithinMaxScan) {
  auto p = MakeLru();
  for (BlockId id = 0; id < 10; ++id) p->Track(id, {});
  auto from7 = [](BlockId id) { return id >= 7; };
  EXPECT_EQ(p->PickVictim(from7, 8), 7u);
  EXPECT_EQ(p->PickVictim(from7, 7), kNoBlock);  // 7 is the 8th candidate
}

TEST(LruPolicyTest, ReusedIdIsNewest) {
  auto p = MakeLru();
  for (BlockId id : {1, 2, 3}) p->Track(id, {});
  p->Remove(1);
  p->Track(1, {});
  p->Track(1000, {});  // grows the id space
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{2, 3, 1, 1000}));
}

}  // namespace
}  // namespace kvtier
