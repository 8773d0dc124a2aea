// Tests of "prefix-lru" (eviction/prefix_lru_policy.cc).
#include <gtest/gtest.h>

#include <vector>

#include "eviction/policy.h"
#include "tests/eviction/policy_test_util.h"

namespace kvtier {
namespace {

using eviction_test::Drain;

const auto kAll = [](BlockId) { return true; };

std::unique_ptr<EvictionPolicy> Make(const char* name) {
  return std::move(NewEvictionPolicy(name)).value();
}

BlockMeta Child(BlockId parent) {
  BlockMeta m;
  m.parent = parent;
  return m;
}

// Two chains: 1 <- 2 <- 3 and 4 <- 5, tracked in that order, then a prefix
// hit on the whole first chain (touched root first, as a lookup does).
void TwoChains(EvictionPolicy& p) {
  p.Track(1, {});
  p.Track(2, Child(1));
  p.Track(3, Child(2));
  p.Track(4, {});
  p.Track(5, Child(4));
  p.Touch(1);
  p.Touch(2);
  p.Touch(3);
}

TEST(PrefixLruTest, DescendantsBeforeAncestors) {
  auto p = Make("prefix-lru");
  TwoChains(*p);
  // Leaves in LRU order: 5 then 3; each chain unwinds tail first.
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{5, 4, 3, 2, 1}));

  // Plain LRU on the same sequence evicts the root 4 before its child.
  auto lru = Make("lru");
  TwoChains(*lru);
  EXPECT_EQ(Drain(*lru), (std::vector<BlockId>{4, 5, 1, 2, 3}));
}

TEST(PrefixLruTest, ParentWithChildrenIsNotPickedEvenIfColdest) {
  auto p = Make("prefix-lru");
  p->Track(10, {});  // shared root, coldest in LRU order
  p->Track(11, Child(10));
  p->Track(12, Child(10));
  p->Track(13, {});
  p->Touch(11);
  EXPECT_EQ(p->PickVictim(kAll), 12u);
  p->Remove(12);
  EXPECT_EQ(p->PickVictim(kAll), 13u);  // 10 still has child 11
  p->Remove(13);
  EXPECT_EQ(p->PickVictim(kAll), 11u);
  p->Remove(11);
  EXPECT_EQ(p->PickVictim(kAll), 10u);
}

TEST(PrefixLruTest, TouchReordersLeaves) {
  auto p = Make("prefix-lru");
  p->Track(1, {});
  p->Track(2, Child(1));
  p->Track(3, {});
  p->Touch(2);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{3, 2, 1}));
}

TEST(PrefixLruTest, FallsBackToAnyBlockWhenLeavesArePinned) {
  auto p = Make("prefix-lru");
  p->Track(1, {});
  p->Track(2, Child(1));
  p->Track(3, Child(2));
  auto not3 = [](BlockId id) { return id != 3; };  // the only leaf is pinned
  EXPECT_EQ(p->PickVictim(not3), 1u);               // LRU order among all blocks
  p->Remove(1);
  EXPECT_EQ(p->PickVictim(not3), 2u);
  EXPECT_EQ(p->PickVictim([](BlockId) { return false; }), kNoBlock);
}

TEST(PrefixLruTest, FallbackRespectsMaxScan) {
  auto p = Make("prefix-lru");
  p->Track(0, {});
  for (BlockId id = 1; id <= 100; ++id) p->Track(id, Child(0));  // 100 pinned leaves
  size_t calls = 0;
  auto only_root = [&](BlockId id) {
    ++calls;
    return id == 0;
  };
  EXPECT_EQ(p->PickVictim(only_root, 8), 0u);  // 6 leaves, then the fallback finds the root
  EXPECT_LE(calls, 8u);
  calls = 0;
  EXPECT_EQ(p->PickVictim(only_root, 200), 0u);
  EXPECT_LE(calls, 200u);
}

TEST(PrefixLruTest, UntrackedParentIsIgnored) {
  auto p = Make("prefix-lru");
  p->Track(1, Child(77));  // 77 is not tracked
  p->Track(2, Child(2));   // self-parent is ignored
  p->Track(77, {});
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 2, 77}));
}

TEST(PrefixLruTest, RemovedParentOrphansChildrenAcrossIdReuse) {
  auto p = Make("prefix-lru");
  p->Track(1, {});          // X
  p->Track(2, Child(1));    // Y, child of X: the coldest leaf
  p->Track(9, {});
  p->Remove(1);             // X leaves while Y is still tracked
  p->Track(1, {});          // id 1 reused for an unrelated block X'
  p->Track(3, Child(1));    // Z, child of X'
  p->Remove(2);             // Y's stale link must not decrement X'
  // X' still has child Z, so it must not be picked while a leaf is eligible.
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{9, 3, 1}));
}

TEST(PrefixLruTest, ParentTakesChildsPlaceAmongLeaves) {
  auto p = Make("prefix-lru");
  p->Track(1, {});
  p->Track(2, Child(1));
  p->Track(3, {});
  p->Track(4, {});
  // Leaves cold->hot: 2, 3, 4. Removing 2 (not as a victim) puts 1 in its place.
  p->Remove(2);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 3, 4}));
}

}  // namespace
}  // namespace kvtier
