// Tests of the trace replay through the real cache (bench/sim_replay.cc).
#include "bench/sim_replay.h"

#include <gtest/gtest.h>

#include "tests/bench/sim_test_util.h"

namespace kvtier::bench {
namespace {

enum : uint64_t { A = 1, B, C, D, E, X };

ReplayResult Sim(const Trace& t, const char* policy, uint64_t blocks, uint64_t tier2 = 0,
                 const char* admission = "always") {
  ReplayOptions o;
  o.policy = policy;
  o.tier1_blocks = blocks;
  o.tier2_blocks = tier2;
  o.admission = admission;
  auto r = Replay(t, o);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ReplayResult{};
}

TEST(ReplayTest, HitsAreTheLongestCachedPrefix) {
  // r1 hits all 3; r2 hits A, B (D is new); r3 misses X first, so the cached
  // B after it does not count.
  Trace t = MakeTrace({{A, B, C}, {A, B, C}, {A, B, D}, {X, B}});
  ReplayResult r = Sim(t, "lru", 100);
  EXPECT_EQ(r.hits.requests, 4u);
  EXPECT_EQ(r.hits.blocks, 11u);
  EXPECT_EQ(r.hits.hit_blocks, 5u);
  EXPECT_EQ(r.tier_hits[0], 5u);
  EXPECT_EQ(r.stored_blocks, 5u);  // A B C, D, X (B is present)
  EXPECT_EQ(r.tier1_evictions, 0u);
}

TEST(ReplayTest, TokenHitsAreCappedByTheInput) {
  // 16-token blocks. r1 has a partial last block (40 tokens in 3 blocks): a
  // full hit covers its 40 tokens, not 48. r2 hits 1 block of a 20-token input.
  Trace t = MakeTrace({{A, B, C}, {A, B, C}, {A, D}}, 16, {48, 40, 20});
  ReplayResult r = Sim(t, "lru", 100);
  EXPECT_EQ(r.hits.hit_blocks, 4u);
  EXPECT_EQ(r.hits.input_tokens, 108u);
  EXPECT_EQ(r.hits.hit_tokens, 40u + 16u);
  EXPECT_EQ(r.tier_hit_tokens[0], r.hits.hit_tokens);
  EXPECT_DOUBLE_EQ(r.hits.token_rate(), 56.0 / 108.0);
}

TEST(ReplayTest, CapacityBindsThroughThePolicy) {
  // Two blocks, LRU: A, B stored; A hits; C evicts B; B misses (evicts A).
  Trace t = MakeTrace({{A}, {B}, {A}, {C}, {B}, {A}});
  ReplayResult r = Sim(t, "lru", 2);
  EXPECT_EQ(r.hits.hit_blocks, 1u);
  EXPECT_EQ(r.tier1_evictions, 3u);  // B by C, A by B, C by A
}

TEST(ReplayTest, SecondTierTakesEvictionsAndPromotesOnHit) {
  // Tier 1 holds one block. B evicts A into tier 2; A's hit there promotes
  // it (evicting B down); then B hits in tier 2 too.
  Trace t = MakeTrace({{A}, {B}, {A}, {B}});
  ReplayResult r = Sim(t, "lru", 1, 4);
  EXPECT_EQ(r.hits.hit_blocks, 2u);
  EXPECT_EQ(r.tier_hits[0], 0u);
  EXPECT_EQ(r.tier_hits[1], 2u);
  EXPECT_EQ(r.promotions, 2u);
  EXPECT_EQ(r.demotions, 3u);  // A, B, A
  EXPECT_EQ(r.tier2_evictions, 0u);
}

TEST(ReplayTest, PrefixContinuesAcrossTiers) {
  // Tier 1 holds three blocks. D evicts A (LRU) into tier 2. r3 = A B E:
  // A hits in tier 2 and is promoted, the lookup goes on in tier 1 (B hits),
  // E misses. Storing A and E evicts C and D (B is pinned) into tier 2.
  Trace t = MakeTrace({{A, B}, {C}, {D}, {A, B, E}});
  ReplayResult r = Sim(t, "lru", 3, 8);
  EXPECT_EQ(r.hits.hit_blocks, 2u);
  EXPECT_EQ(r.tier_hits[0], 1u);
  EXPECT_EQ(r.tier_hits[1], 1u);
  EXPECT_EQ(r.promotions, 1u);
  EXPECT_EQ(r.demotions, 3u);  // A, C, D
  EXPECT_EQ(r.tier_hit_tokens[0], 16u);
  EXPECT_EQ(r.tier_hit_tokens[1], 16u);
  EXPECT_EQ(r.tier_hit_tokens[0] + r.tier_hit_tokens[1], r.hits.hit_tokens);
}

TEST(ReplayTest, PromotionWithoutRoomStaysInTierTwo) {
  // Tier 1 holds two blocks. r1 pushes A, B down. r2 = A B C D: A, B hit in
  // tier 2, C, D in tier 1 (and are pinned), so A, B find no room there and
  // stay in tier 2, where r3 finds them again.
  Trace t = MakeTrace({{A, B}, {C, D}, {A, B, C, D}, {A, B}});
  ReplayResult r = Sim(t, "lru", 2, 8);
  EXPECT_EQ(r.hits.hit_blocks, 4u + 2u);
  EXPECT_EQ(r.tier_hits[0], 2u);
  EXPECT_EQ(r.tier_hits[1], 4u);
  EXPECT_EQ(r.no_space_blocks, 2u);
  EXPECT_EQ(r.promotions, 2u);  // only r3's, which evicted C, D
}

TEST(ReplayTest, AdmissionCanRefuseDemotions) {
  // second-sighting refuses a fingerprint's first demotion: A is dropped, so
  // r2 misses.
  Trace t = MakeTrace({{A}, {B}, {A}});
  ReplayResult r = Sim(t, "lru", 1, 4, "second-sighting");
  EXPECT_EQ(r.hits.hit_blocks, 0u);
  EXPECT_EQ(r.admission_refused, 2u);  // A, then B
  EXPECT_EQ(r.demotions, 0u);
}

TEST(ReplayTest, RejectsBadOptions) {
  Trace t = MakeTrace({{A}});
  ReplayOptions o;
  o.tier1_blocks = 0;
  EXPECT_TRUE(Replay(t, o).status().IsInvalidArgument());
  o.tier1_blocks = 4;
  o.policy = "no-such-policy";
  EXPECT_TRUE(Replay(t, o).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier::bench
