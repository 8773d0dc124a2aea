// Tests of "adaptive-2q" (eviction/adaptive_2q_policy.cc).
#include <gtest/gtest.h>

#include <vector>

#include "eviction/builtin_policies.h"
#include "eviction/policy.h"
#include "tests/eviction/policy_test_util.h"

namespace kvtier {
namespace {

using eviction_test::Drain;

const auto kAll = [](BlockId) { return true; };

BlockMeta Meta(uint64_t fp, BlockId parent = kNoBlock, uint8_t priority = kDefaultPriority,
               uint64_t deadline = 0) {
  BlockMeta m;
  m.fingerprint = fp;
  m.parent = parent;
  m.priority = priority;
  m.retention_deadline_ns = deadline;
  return m;
}

// Shape indexes of the candidate table in adaptive_2q_policy.cc.
constexpr int kLruShape = 0;        // probation 1, no history
constexpr int kHalfShortShape = 1;  // probation 0.5, history 1 x blocks

TEST(Adaptive2qTest, IsKnownToTheFactory) {
  auto p = NewEvictionPolicy("adaptive-2q");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ((*p)->name(), "adaptive-2q");
}

TEST(Adaptive2qTest, LruShapeEvictsChainTailsFirst) {
  // As prefix-lru: 1 <- 2 <- 3 and 4 <- 5, then a prefix hit on 1, 2, 3.
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, kLruShape);
  p->Track(1, Meta(11));
  p->Track(2, Meta(12, 1));
  p->Track(3, Meta(13, 2));
  p->Track(4, Meta(14));
  p->Track(5, Meta(15, 4));
  p->Touch(1);
  p->Touch(2);
  p->Touch(3);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{5, 4, 3, 2, 1}));
  EXPECT_EQ(p->size(), 0u);
}

TEST(Adaptive2qTest, HitBlocksAreProtectedFromNewOnes) {
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, kHalfShortShape);
  for (BlockId id = 1; id <= 4; ++id) p->Track(id, Meta(100 + id));
  p->Touch(1);
  p->Touch(2);  // 1, 2 protected (limit: half of 4)
  for (BlockId id = 5; id <= 8; ++id) p->Track(id, Meta(100 + id));
  // Probation (3, 4, 5..8) empties first, oldest first; then protected.
  const auto order = Drain(*p);
  ASSERT_EQ(order.size(), 8u);
  EXPECT_EQ(std::vector<BlockId>(order.begin(), order.begin() + 6),
            (std::vector<BlockId>{3, 4, 5, 6, 7, 8}));
}

TEST(Adaptive2qTest, ReturningFingerprintIsProtected) {
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, kHalfShortShape);
  for (BlockId id = 1; id <= 4; ++id) p->Track(id, Meta(100 + id));
  p->Remove(1);         // fingerprint 101 remembered
  p->Track(9, Meta(101));  // comes back under a new id: protected
  p->Track(10, Meta(110));
  const auto order = Drain(*p);
  EXPECT_EQ(order.back(), 9u);
}

TEST(Adaptive2qTest, PriorityLevelsComeFirst) {
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, -1);
  p->Track(1, Meta(1, kNoBlock, 80));
  p->Track(2, Meta(2));
  p->Track(3, Meta(3, kNoBlock, 10));
  p->Track(4, Meta(4));
  p->Touch(3);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{3, 2, 4, 1}));
}

TEST(Adaptive2qTest, ExpiredRetentionJoinsDefaultAtTheColdEnd) {
  uint64_t now = 1000;
  auto p = internal::NewAdaptive2qPolicy([&now] { return now; }, -1);
  p->Track(1, Meta(1, kNoBlock, 90, /*deadline=*/2000));
  p->Track(2, Meta(2));
  p->Track(3, Meta(3, kNoBlock, 90, /*deadline=*/500));  // already expired
  EXPECT_EQ(p->PickVictim(kAll), 2u);
  now = 3000;  // 1 expires: coldest default block
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 2, 3}));
}

TEST(Adaptive2qTest, SkipsIneligibleAndHonoursTheScanBudget) {
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, -1);
  for (BlockId id = 1; id <= 100; ++id) p->Track(id, Meta(id));
  size_t calls = 0;
  EXPECT_EQ(p->PickVictim([&](BlockId id) { ++calls; return id == 50; }, 1000), 50u);
  calls = 0;
  EXPECT_EQ(p->PickVictim([&](BlockId) { ++calls; return false; }, 16), kNoBlock);
  EXPECT_LE(calls, 16u);
  p->Remove(7);
  p->Remove(7);  // no-op
  EXPECT_EQ(p->size(), 99u);
  EXPECT_GT(p->MemoryUsage(), 0u);
}

TEST(Adaptive2qTest, AdaptsAwayFromLruOnAScanPattern) {
  // A hot set reused between long scans of one-time blocks: LRU keeps
  // nothing; once the models see it the policy protects the hot set.
  auto p = internal::NewAdaptive2qPolicy(SteadyNowNs, -1);
  const size_t cap = 1000;
  BlockId next = 0;
  std::vector<BlockId> id_of(200, kNoBlock);  // hot fingerprint -> id
  uint64_t scan_fp = 1 << 20;
  size_t hot_hits = 0;
  auto access_new = [&](uint64_t fp) -> BlockId {
    if (p->size() >= cap) {
      const BlockId v = p->PickVictim(kAll);
      p->Remove(v);
      for (auto& h : id_of)
        if (h == v) h = kNoBlock;
    }
    const BlockId id = next++;
    p->Track(id, Meta(fp));
    return id;
  };
  for (int round = 0; round < 60; ++round) {
    for (uint64_t h = 0; h < id_of.size(); ++h) {
      if (id_of[h] != kNoBlock) {
        p->Touch(id_of[h]);
        hot_hits += round >= 40;
      } else {
        id_of[h] = access_new(1000 + h);
      }
    }
    for (int s = 0; s < 1500; ++s) access_new(scan_fp++);
  }
  // Rounds 40..59: most of the 200 hot blocks hit.
  EXPECT_GT(hot_hits, 20u * 200u / 2) << "hot hits in the last 20 rounds";
}

}  // namespace
}  // namespace kvtier
