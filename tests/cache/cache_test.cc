#include "cache/cache.h"

#include <gtest/gtest.h>

#include <atomic>
#include <numeric>

#include "tests/cache/cache_test_util.h"

namespace kvtier {
namespace {

using testing::FillFromKey;
using testing::FillReserved;
using testing::MakeCache;
using testing::MatchesKey;
using testing::SmallSpec;

constexpr uint64_t kBlock = 16 << 10;

class CacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = MakeCache(4 << 20, 1 << 20);  // 4 regions x 64 blocks = 256 blocks
    ASSERT_NE(cache_, nullptr);
    auto ns = cache_->OpenNamespace(SmallSpec());
    ASSERT_TRUE(ns.ok());
    ns_ = *ns;
    KeyHasher h(SmallSpec());
    std::vector<uint32_t> tokens(16 * 400);
    std::iota(tokens.begin(), tokens.end(), 1);
    h.Hash(tokens, &keys_);
  }

  // Reserve, fill from key, commit. Returns the reservation outcomes.
  std::vector<ReserveOutcome> Store(size_t first, size_t n, uint8_t priority = kDefaultPriority) {
    std::vector<uint64_t> sizes(n, kBlock);
    StoreOptions so;
    so.priority = priority;
    auto r = cache_->Reserve(ns_, std::span(keys_).subspan(first, n), sizes, so);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return {};
    std::vector<ReserveOutcome> out;
    for (const auto& b : r->blocks()) out.push_back(b.outcome);
    const std::vector<uint64_t> sums = FillReserved(*cache_, *r);
    if (r->reserved() > 0) {
      EXPECT_TRUE(cache_->Commit(*r, sums).ok());
    }
    return out;
  }

  size_t HitLength(size_t first, size_t n) {
    auto l = cache_->Acquire(ns_, std::span(keys_).subspan(first, n));
    EXPECT_TRUE(l.ok());
    return l->size();
  }

  std::unique_ptr<Cache> cache_;
  NamespaceId ns_ = 0;
  std::vector<BlockKey> keys_;
};

TEST_F(CacheTest, StoreThenAcquireIsByteExact) {
  auto out = Store(0, 10);
  for (auto o : out) EXPECT_EQ(o, ReserveOutcome::kReserved);
  auto lease = cache_->Acquire(ns_, std::span(keys_).subspan(0, 10));
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), 10u);
  for (const auto& b : lease->blocks()) {
    const uint8_t* p = cache_->Address(b.tier, b.offset);
    EXPECT_TRUE(MatchesKey(b.key, p, b.size));
    EXPECT_EQ(checksum::Sum64(p, b.size), b.checksum);
  }
  CacheStats s = cache_->Stats();
  EXPECT_EQ(s.blocks_ready, 10u);
  EXPECT_EQ(s.pinned_blocks, 10u);
  lease->Release();
  EXPECT_EQ(cache_->Stats().pinned_blocks, 0u);
}

TEST_F(CacheTest, AcquireStopsAtTheFirstMiss) {
  Store(0, 5);
  Store(6, 4);  // block 5 missing
  EXPECT_EQ(HitLength(0, 10), 5u);
  EXPECT_EQ(HitLength(6, 4), 4u);
  EXPECT_EQ(HitLength(5, 5), 0u);
  CacheStats s = cache_->Stats();
  EXPECT_EQ(s.blocks_hit, 9u);
  EXPECT_EQ(s.blocks_missed, 10u);
}

TEST_F(CacheTest, SecondReserveIsAnsweredNotDuplicated) {
  std::vector<uint64_t> sizes(3, kBlock);
  auto r1 = cache_->Reserve(ns_, std::span(keys_).subspan(0, 3), sizes);
  ASSERT_TRUE(r1.ok());
  EXPECT_EQ(r1->reserved(), 3u);
  // In flight: a second writer is told so and gets no slot.
  auto r2 = cache_->Reserve(ns_, std::span(keys_).subspan(0, 3), sizes);
  ASSERT_TRUE(r2.ok());
  EXPECT_EQ(r2->reserved(), 0u);
  for (auto& b : r2->blocks()) EXPECT_EQ(b.outcome, ReserveOutcome::kInFlight);
  // A block being written is never readable.
  EXPECT_EQ(HitLength(0, 3), 0u);
  std::vector<uint64_t> sums(3, 1);
  ASSERT_TRUE(cache_->Commit(*r1, sums).ok());
  EXPECT_TRUE(cache_->Commit(*r1, sums).IsInvalidArgument());  // only once
  auto r3 = cache_->Reserve(ns_, std::span(keys_).subspan(0, 4), std::vector<uint64_t>(4, kBlock));
  ASSERT_TRUE(r3.ok());
  for (int i = 0; i < 3; ++i) EXPECT_EQ(r3->blocks()[i].outcome, ReserveOutcome::kPresent);
  EXPECT_EQ(r3->blocks()[3].outcome, ReserveOutcome::kReserved);
  EXPECT_EQ(cache_->Stats().index_entries, 4u);
}

TEST_F(CacheTest, AbortAndDroppedReservationsLeaveNothing) {
  const uint64_t used0 = cache_->tier(0).used_bytes();
  {
    std::vector<uint64_t> sizes(4, kBlock);
    auto r = cache_->Reserve(ns_, std::span(keys_).subspan(0, 4), sizes);
    ASSERT_TRUE(r.ok());
    cache_->Abort(*r);
    EXPECT_TRUE(r->done());
    auto r2 = cache_->Reserve(ns_, std::span(keys_).subspan(0, 4), sizes);
    ASSERT_TRUE(r2.ok());
    EXPECT_EQ(r2->reserved(), 4u);
    // r2 dropped without commit: its destructor aborts.
  }
  CacheStats s = cache_->Stats();
  EXPECT_EQ(s.index_entries, 0u);
  EXPECT_EQ(s.blocks_writing, 0u);
  EXPECT_EQ(cache_->tier(0).used_bytes(), used0);
  EXPECT_EQ(HitLength(0, 4), 0u);
}

TEST_F(CacheTest, EvictsUnpinnedReadyBlocksOnly) {
  Store(0, 200);
  auto pinned = cache_->Acquire(ns_, std::span(keys_).subspan(0, 50));
  ASSERT_TRUE(pinned.ok());
  ASSERT_EQ(pinned->size(), 50u);
  std::vector<uint64_t> sizes(20, kBlock);
  auto writing = cache_->Reserve(ns_, std::span(keys_).subspan(200, 20), sizes);
  ASSERT_TRUE(writing.ok());
  ASSERT_EQ(writing->reserved(), 20u);
  // 220 of 256 slots used; storing 150 more must evict 114 unpinned READY blocks.
  Store(220, 150);
  CacheStats s = cache_->Stats();
  EXPECT_GE(s.tiers[0].evictions, 114u);
  // Pinned blocks survived, byte-exact.
  for (const auto& b : pinned->blocks())
    EXPECT_TRUE(MatchesKey(b.key, cache_->Address(b.tier, b.offset), b.size));
  EXPECT_EQ(HitLength(0, 50), 50u);
  // Writing blocks kept their slots: commit them and read them back.
  for (auto& b : writing->blocks()) FillFromKey(b.key, cache_->Address(b.tier, b.offset), b.size);
  ASSERT_TRUE(cache_->Commit(*writing, std::vector<uint64_t>(20, 0)).ok());
  auto l = cache_->Acquire(ns_, std::span(keys_).subspan(200, 20));
  ASSERT_EQ(l->size(), 20u);
  for (const auto& b : l->blocks())
    EXPECT_TRUE(MatchesKey(b.key, cache_->Address(b.tier, b.offset), b.size));
}

TEST_F(CacheTest, FullOfPinnedBlocksAnswersResourceExhausted) {
  Store(0, 256);
  auto all = cache_->Acquire(ns_, std::span(keys_).subspan(0, 256));
  ASSERT_EQ(all->size(), 256u);
  std::vector<uint64_t> sizes(1, kBlock);
  auto r = cache_->Reserve(ns_, std::span(keys_).subspan(300, 1), sizes);
  EXPECT_TRUE(r.status().IsResourceExhausted()) << r.status().ToString();
  all->Release();
  auto r2 = cache_->Reserve(ns_, std::span(keys_).subspan(300, 1), sizes);
  EXPECT_TRUE(r2.ok());
}

TEST_F(CacheTest, LowerPriorityIsEvictedFirst) {
  Store(0, 100, 80);   // important
  Store(100, 100, 10); // unimportant, newer
  Store(200, 56);      // fill: 256
  Store(256, 100);     // evict 100
  EXPECT_EQ(HitLength(0, 100), 100u);
  EXPECT_EQ(HitLength(100, 1), 0u);
}

TEST(CacheRetentionTest, PriorityFallsBackAfterItsDuration) {
  std::atomic<uint64_t> now{1000};
  auto cache = MakeCache(1 << 20, 1 << 20, "priority-lru", [&] { return now.load(); });
  ASSERT_NE(cache, nullptr);
  auto ns = *cache->OpenNamespace(SmallSpec());
  KeyHasher h(SmallSpec());
  std::vector<uint32_t> tokens(16 * 200);
  std::iota(tokens.begin(), tokens.end(), 1);
  std::vector<BlockKey> keys;
  h.Hash(tokens, &keys);
  auto store = [&](size_t first, size_t n, uint8_t prio, uint64_t dur) {
    StoreOptions so;
    so.priority = prio;
    so.duration_ns = dur;
    auto r = cache->Reserve(ns, std::span(keys).subspan(first, n), std::vector<uint64_t>(n, kBlock), so);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(cache->Commit(*r, std::vector<uint64_t>(n, 0)).ok());
  };
  store(0, 32, 90, 5'000'000'000);  // high priority for 5 s
  store(32, 32, 35, 0);             // default: 64 slots full
  store(64, 16, 35, 0);             // evicts 16 default blocks, not the retained ones
  EXPECT_EQ(cache->Acquire(ns, std::span(keys).subspan(0, 32))->size(), 32u);
  now += 6'000'000'000;             // retention over: back to 35, coldest
  store(80, 16, 35, 0);
  EXPECT_LT(cache->Acquire(ns, std::span(keys).subspan(0, 32))->size(), 32u);
}

TEST_F(CacheTest, InvalidRequestsAreRejectedAndChangeNothing) {
  std::vector<uint64_t> sizes(2, kBlock);
  EXPECT_TRUE(cache_->Reserve(99, std::span(keys_).subspan(0, 2), sizes).status().IsNotFound());
  EXPECT_TRUE(cache_->Reserve(ns_, std::span(keys_).subspan(0, 3), sizes).status().IsInvalidArgument());
  std::vector<uint64_t> zero{kBlock, 0};
  EXPECT_TRUE(cache_->Reserve(ns_, std::span(keys_).subspan(0, 2), zero).status().IsInvalidArgument());
  StoreOptions bad;
  bad.priority = 101;
  EXPECT_TRUE(cache_->Reserve(ns_, std::span(keys_).subspan(0, 2), sizes, bad).status().IsInvalidArgument());
  StoreOptions range;
  range.ranges.push_back(PriorityRange{1, 5, 50, 0});
  EXPECT_TRUE(cache_->Reserve(ns_, std::span(keys_).subspan(0, 2), sizes, range).status().IsInvalidArgument());
  EXPECT_TRUE(cache_->Acquire(77, std::span(keys_).subspan(0, 2)).status().IsNotFound());
  std::vector<uint64_t> huge{uint64_t{8} << 20};
  auto r = cache_->Reserve(ns_, std::span(keys_).subspan(0, 1), huge);  // larger than the tier
  EXPECT_FALSE(r.ok());
  CacheStats s = cache_->Stats();
  EXPECT_EQ(s.index_entries, 0u);
  EXPECT_EQ(cache_->tier(0).used_bytes(), 0u);
}

TEST_F(CacheTest, NamespacesDoNotSeeEachOthersBlocks) {
  NamespaceSpec other = SmallSpec();
  other.tenant_salt = "b";
  auto ns2 = cache_->OpenNamespace(other);
  ASSERT_TRUE(ns2.ok());
  EXPECT_NE(*ns2, ns_);
  EXPECT_EQ(*cache_->OpenNamespace(SmallSpec()), ns_);  // same spec, same id
  Store(0, 3);
  EXPECT_EQ(cache_->Acquire(*ns2, std::span(keys_).subspan(0, 3))->size(), 0u);
}

TEST_F(CacheTest, PriorityRangesApplyPerBlock) {
  StoreOptions so;
  so.priority = 10;
  so.ranges.push_back(PriorityRange{0, 8, 100, 0});  // the head is kept
  auto r = cache_->Reserve(ns_, std::span(keys_).subspan(0, 64), std::vector<uint64_t>(64, kBlock), so);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(cache_->Commit(*r, std::vector<uint64_t>(64, 0)).ok());
  Store(64, 192);   // full at 256
  Store(256, 100);  // evict 100: the 56 low-priority tail blocks go first
  EXPECT_EQ(HitLength(0, 8), 8u);
  EXPECT_EQ(HitLength(8, 1), 0u);
}

}  // namespace
}  // namespace kvtier
