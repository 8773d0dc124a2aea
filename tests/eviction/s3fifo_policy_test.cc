// Tests of "s3fifo" (eviction/s3fifo_policy.cc).
#include <gtest/gtest.h>

#include <unordered_map>
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

BlockMeta Fp(uint64_t fingerprint) {
  BlockMeta m;
  m.fingerprint = fingerprint;
  return m;
}

TEST(S3FifoTest, UnhitBlocksLeaveInInsertionOrder) {
  auto p = Make("s3fifo");
  for (BlockId id : {4, 2, 9, 1}) p->Track(id, {});
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{4, 2, 9, 1}));
}

TEST(S3FifoTest, HitBlockIsPromotedToMain) {
  auto p = Make("s3fifo");
  for (BlockId id = 1; id <= 10; ++id) p->Track(id, {});
  p->Touch(1);
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{2, 3, 4, 5, 6, 7, 8, 9, 10, 1}));
}

TEST(S3FifoTest, MainQueueGivesHitsSecondChances) {
  auto p = Make("s3fifo");
  for (BlockId id = 1; id <= 3; ++id) p->Track(id, Fp(id));
  for (BlockId id = 1; id <= 3; ++id) p->Touch(id);
  p->Track(4, {});
  EXPECT_EQ(p->PickVictim(kAll), 4u);  // 1, 2, 3 promoted on the way
  p->Remove(4);
  p->Touch(2);  // 2 has two hits, 1 and 3 one each
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 3, 2}));
}

TEST(S3FifoTest, SmallQueueBelowItsShareLeavesVictimToMain) {
  auto p = Make("s3fifo");
  for (BlockId id = 1; id <= 20; ++id) p->Track(id, {});
  for (BlockId id = 1; id <= 20; ++id) p->Touch(id);
  p->Track(21, {});
  p->Track(22, {});
  ASSERT_EQ(p->PickVictim(kAll), 21u);  // promotes 1..20 on the way
  p->Remove(21);
  // 1 of 21 blocks is in S (< 10%): the victim comes from M, where every
  // block spends its one hit before the oldest, 1, goes.
  EXPECT_EQ(p->PickVictim(kAll), 1u);
}

TEST(S3FifoTest, GhostHitGoesStraightToMain) {
  for (bool known : {true, false}) {
    auto p = Make("s3fifo");
    for (BlockId id = 0; id < 10; ++id) p->Track(id, Fp(100 + id));
    ASSERT_EQ(p->PickVictim(kAll), 0u);
    p->Remove(0);  // fingerprint 100 enters the ghost queue
    p->Track(0, Fp(known ? 100 : 0));  // comes back (0 = fingerprint unknown)
    p->Track(10, Fp(999));
    const std::vector<BlockId> with_ghost{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0};
    const std::vector<BlockId> without{1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 10};
    EXPECT_EQ(Drain(*p), known ? with_ghost : without) << known;
  }
}

TEST(S3FifoTest, GhostIsKeyedByFingerprintNotId) {
  auto p = Make("s3fifo");
  p->Track(5, Fp(555));
  ASSERT_EQ(p->PickVictim(kAll), 5u);
  p->Remove(5);
  p->Track(7, Fp(555));  // another id, same content: a ghost hit
  p->Track(8, Fp(1));
  p->Track(5, Fp(2));    // the old id, other content: no ghost hit
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{8, 5, 7}));
  // 7 left from the main queue and the ghost entry was consumed: 555 is new again.
  p->Track(1, Fp(555));
  p->Track(2, Fp(3));
  EXPECT_EQ(Drain(*p), (std::vector<BlockId>{1, 2}));
}

// A cache of `kCapacity` blocks run on a key sequence; returns the hits of
// the hot keys accessed after a long one-hit-wonder scan.
int HotHitsAfterScan(const char* policy) {
  constexpr size_t kCapacity = 100;
  constexpr uint64_t kHot = 20;
  auto p = Make(policy);
  std::unordered_map<uint64_t, BlockId> ids;
  std::vector<uint64_t> key_of(kCapacity);
  std::vector<BlockId> free_ids;
  for (BlockId id = 0; id < kCapacity; ++id) free_ids.push_back(kCapacity - 1 - id);
  auto access = [&](uint64_t key) {
    if (auto it = ids.find(key); it != ids.end()) {
      p->Touch(it->second);
      return true;
    }
    if (free_ids.empty()) {
      const BlockId v = p->PickVictim(kAll);
      EXPECT_NE(v, kNoBlock);
      p->Remove(v);
      ids.erase(key_of[v]);
      free_ids.push_back(v);
    }
    const BlockId id = free_ids.back();
    free_ids.pop_back();
    p->Track(id, Fp(key));
    ids[key] = id;
    key_of[id] = key;
    return false;
  };
  uint64_t next_cold = 1000;
  for (int round = 0; round < 5; ++round) {
    for (uint64_t k = 1; k <= kHot; ++k) access(k);
    for (int i = 0; i < 40; ++i) access(next_cold++);
  }
  for (int i = 0; i < 500; ++i) access(next_cold++);  // the scan
  int hits = 0;
  for (uint64_t k = 1; k <= kHot; ++k) hits += access(k);
  return hits;
}

TEST(S3FifoTest, OneHitWonderScanDoesNotFlushHotBlocks) {
  EXPECT_EQ(HotHitsAfterScan("lru"), 0);
  EXPECT_EQ(HotHitsAfterScan("s3fifo"), 20);
}

TEST(S3FifoTest, PinnedBlocksAreSkippedInBothQueues) {
  auto p = Make("s3fifo");
  for (BlockId id = 1; id <= 4; ++id) p->Track(id, {});
  p->Touch(1);
  p->Touch(2);
  // S: 3, 4 unhit; 1, 2 move to M on the way. Only 2 is eligible.
  EXPECT_EQ(p->PickVictim([](BlockId id) { return id == 2; }), 2u);
  EXPECT_EQ(p->PickVictim([](BlockId) { return false; }), kNoBlock);
  EXPECT_EQ(p->size(), 4u);
}

}  // namespace
}  // namespace kvtier
