// Tests of the reference hit rates (bench/sim_belady.cc).
#include "bench/sim_belady.h"

#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "bench/sim_replay.h"
#include "tests/bench/sim_test_util.h"

namespace kvtier::bench {
namespace {

enum : uint64_t { A = 1, B, C, D, E, X };

TEST(IdealTest, CountsOnlyThePrefixBeforeTheFirstMiss) {
  // B is cached when the third request reaches it, but X missed first.
  Trace t = MakeTrace({{A, B}, {A, B}, {X, B}});
  PrefixHitCounts c = IdealPrefixHits(t);
  EXPECT_EQ(c.requests, 3u);
  EXPECT_EQ(c.blocks, 6u);
  EXPECT_EQ(c.hit_blocks, 2u);
}

TEST(BeladyTest, HandComputedCase) {
  // Positions and next uses:
  //   r0: A0->5 B1->6 C2->never   r1: D3->8 E4->9
  //   r2: A5 B6 X7 (never again)  r3: D8 E9
  // Capacity 3: r0 stores A and B (C is never used again: not stored);
  // r1 stores D; E (next use 9) is farther than anything cached (A5, B6, D8),
  // so it is not stored. r2 hits A, B; r3 hits D, misses E. 3 of 10.
  Trace t = MakeTrace({{A, B, C}, {D, E}, {A, B, X}, {D, E}});
  PrefixHitCounts c = SimulateBelady(t, 3);
  EXPECT_EQ(c.blocks, 10u);
  EXPECT_EQ(c.hit_blocks, 3u);
  // LRU at the same capacity: r1 evicts A, B (head first), r2 evicts D, E.
  ReplayOptions o;
  o.policy = "lru";
  o.tier1_blocks = 3;
  auto lru = Replay(t, o);
  ASSERT_TRUE(lru.ok()) << lru.status().ToString();
  EXPECT_EQ(lru->hits.hit_blocks, 0u);
}

TEST(BeladyTest, EvictsTheFarthestNextUse) {
  // Capacity 2. r0 stores A (next use r4) but not B (never used again).
  // r1 stores C; r2 and r3 hit C; r4 hits A. Plain LRU gets C twice only.
  Trace t = MakeTrace({{A, B}, {C}, {C}, {C}, {A}});
  PrefixHitCounts c = SimulateBelady(t, 2);
  EXPECT_EQ(c.hit_blocks, 3u);
  EXPECT_EQ(SimulateBelady(t, 0).hit_blocks, 0u);
}

TEST(BeladyTest, AtFullCapacityEqualsTheInfiniteCache) {
  // Random chains from a few roots; a path of choices names each block, so
  // equal ids imply equal prefixes, as in real traces.
  std::mt19937 rng(7);
  std::map<std::vector<int>, uint64_t> ids;
  std::vector<std::vector<uint64_t>> reqs;
  for (int i = 0; i < 300; ++i) {
    std::vector<int> path = {static_cast<int>(rng() % 5)};
    std::vector<uint64_t> r;
    const int n = 1 + static_cast<int>(rng() % 8);
    for (int k = 0; k < n; ++k) {
      path.push_back(static_cast<int>(rng() % 3));
      auto [it, fresh] = ids.emplace(path, ids.size() + 1);
      r.push_back(it->second);
    }
    reqs.push_back(r);
  }
  Trace t = MakeTrace(reqs);
  const PrefixHitCounts ideal = IdealPrefixHits(t);
  EXPECT_GT(ideal.hit_blocks, 0u);
  EXPECT_EQ(SimulateBelady(t, t.num_unique_blocks).hit_blocks, ideal.hit_blocks);
  // Monotone in capacity, and above LRU here.
  uint64_t prev = 0;
  for (uint64_t cap : {4u, 16u, 64u, 256u}) {
    const uint64_t bel = SimulateBelady(t, cap).hit_blocks;
    EXPECT_GE(bel, prev);
    prev = bel;
    ReplayOptions o;
    o.policy = "lru";
    o.tier1_blocks = cap;
    auto r = Replay(t, o);
    ASSERT_TRUE(r.ok());
    EXPECT_LE(r->hits.hit_blocks, bel) << cap;
  }
}

}  // namespace
}  // namespace kvtier::bench
