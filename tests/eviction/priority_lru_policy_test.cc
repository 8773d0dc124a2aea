// Tests of "priority-lru" (eviction/priority_lru_policy.cc), with a fake clock.
#include <gtest/gtest.h>

#include <vector>

#include "eviction/policy.h"

namespace kvtier {
namespace {

const auto kAll = [](BlockId) { return true; };

class PriorityLruTest : public ::testing::Test {
 protected:
  PriorityLruTest() {
    PolicyOptions options;
    options.clock = [this] {
      ++clock_reads_;
      return now_;
    };
    p_ = std::move(NewEvictionPolicy("priority-lru", options)).value();
  }

  std::vector<BlockId> Drain() {
    std::vector<BlockId> order;
    for (BlockId v = p_->PickVictim(kAll); v != kNoBlock; v = p_->PickVictim(kAll)) {
      order.push_back(v);
      p_->Remove(v);
    }
    return order;
  }

  static BlockMeta Prio(int priority, uint64_t deadline = 0) {
    BlockMeta m;
    m.priority = static_cast<uint8_t>(priority);
    m.retention_deadline_ns = deadline;
    return m;
  }

  uint64_t now_ = 1000;
  int clock_reads_ = 0;
  std::unique_ptr<EvictionPolicy> p_;
};

TEST_F(PriorityLruTest, LowerPriorityFirstThenLruWithinLevel) {
  p_->Track(1, Prio(50));
  p_->Track(2, Prio(10));
  p_->Track(3, Prio(10));
  p_->Track(4, Prio(90));
  p_->Track(5, Prio(50));
  p_->Track(6, Prio(0));
  p_->Track(7, Prio(100));
  p_->Touch(2);  // now hotter than 3 within level 10
  p_->Touch(1);  // now hotter than 5 within level 50
  EXPECT_EQ(Drain(), (std::vector<BlockId>{6, 3, 2, 5, 1, 4, 7}));
}

TEST_F(PriorityLruTest, PriorityAbove100IsClamped) {
  p_->Track(1, Prio(200));
  p_->Track(2, Prio(100));
  p_->Track(3, Prio(99));
  EXPECT_EQ(Drain(), (std::vector<BlockId>{3, 1, 2}));
}

TEST_F(PriorityLruTest, NoDeadlineMeansNoClockReads) {
  p_->Track(1, Prio(80));
  p_->Touch(1);
  (void)p_->PickVictim(kAll);
  EXPECT_EQ(clock_reads_, 0);
}

TEST_F(PriorityLruTest, SkipsIneligibleAcrossLevels) {
  p_->Track(1, Prio(5));
  p_->Track(2, Prio(5));
  p_->Track(3, Prio(60));
  EXPECT_EQ(p_->PickVictim([](BlockId id) { return id == 3; }), 3u);
  EXPECT_EQ(p_->PickVictim([](BlockId id) { return id == 3; }, 2), kNoBlock);
}

TEST_F(PriorityLruTest, RetentionProtectsUntilDeadlineThenFallsToColdDefault) {
  p_->Track(1, Prio(kDefaultPriority));
  p_->Track(2, Prio(kDefaultPriority));
  p_->Track(3, Prio(90, /*deadline=*/2000));
  now_ = 1999;  // still retained: both default blocks go first
  EXPECT_EQ(p_->PickVictim(kAll), 1u);
  EXPECT_EQ(p_->PickVictim([](BlockId id) { return id != 1; }), 2u);
  now_ = 2000;  // expired: 3 is now the coldest default-priority block
  EXPECT_EQ(Drain(), (std::vector<BlockId>{3, 1, 2}));
}

TEST_F(PriorityLruTest, TouchAfterExpiryMakesBlockHotAtDefaultLevel) {
  p_->Track(1, Prio(kDefaultPriority));
  p_->Track(2, Prio(90, 2000));
  p_->Track(3, Prio(kDefaultPriority));
  now_ = 5000;
  p_->Touch(2);  // expiry applied first, then the touch makes it hottest
  p_->Track(4, Prio(90));
  EXPECT_EQ(Drain(), (std::vector<BlockId>{1, 3, 2, 4}));
}

TEST_F(PriorityLruTest, TouchBeforeExpiryKeepsPriority) {
  p_->Track(1, Prio(90, 2000));
  p_->Track(2, Prio(kDefaultPriority));
  now_ = 1500;
  p_->Touch(1);
  EXPECT_EQ(p_->PickVictim(kAll), 2u);
  now_ = 2500;  // touching did not renew the retention
  EXPECT_EQ(p_->PickVictim(kAll), 1u);
}

TEST_F(PriorityLruTest, LowPriorityRetentionRisesToDefault) {
  p_->Track(1, Prio(10, 2000));
  p_->Track(2, Prio(20));
  EXPECT_EQ(p_->PickVictim(kAll), 1u);
  now_ = 2000;
  EXPECT_EQ(Drain(), (std::vector<BlockId>{2, 1}));
}

TEST_F(PriorityLruTest, DeadlineAlreadyPassedAtTrackMeansDefault) {
  p_->Track(1, Prio(kDefaultPriority));
  p_->Track(2, Prio(90, /*deadline=*/500));  // now_ = 1000
  p_->Track(3, Prio(40));
  EXPECT_EQ(Drain(), (std::vector<BlockId>{1, 2, 3}));
}

TEST_F(PriorityLruTest, ExpiriesApplyInDeadlineOrder) {
  p_->Track(1, Prio(90, 3000));
  p_->Track(2, Prio(80, 2000));
  p_->Track(3, Prio(70, 4000));
  p_->Track(4, Prio(kDefaultPriority));
  now_ = 3500;  // 2 then 1 expired, each to the cold end: 1 is coldest
  EXPECT_EQ(Drain(), (std::vector<BlockId>{1, 2, 4, 3}));
}

TEST_F(PriorityLruTest, RemovedBlockWithPendingDeadlineDoesNotAffectReusedId) {
  p_->Track(1, Prio(90, 2000));
  p_->Track(2, Prio(kDefaultPriority));
  p_->Remove(1);
  p_->Track(1, Prio(90));  // same id, no retention this time
  now_ = 3000;             // the stale deadline must not demote it
  EXPECT_EQ(Drain(), (std::vector<BlockId>{2, 1}));

  p_->Track(1, Prio(90, 5000));
  p_->Remove(1);
  p_->Track(1, Prio(90, 8000));  // a later deadline for the reused id
  p_->Track(2, Prio(kDefaultPriority));
  now_ = 6000;  // the first deadline passed, the current one did not
  EXPECT_EQ(p_->PickVictim(kAll), 2u);
  now_ = 8000;
  EXPECT_EQ(p_->PickVictim(kAll), 1u);
}

TEST_F(PriorityLruTest, StaleDeadlinesDoNotAccumulate) {
  p_->Track(100, Prio(kDefaultPriority));
  for (int i = 0; i < 200000; ++i) {
    const BlockId id = i % 8;
    p_->Track(id, Prio(90, 1000000 + i));  // far future: never popped
    p_->Remove(id);
  }
  EXPECT_EQ(p_->size(), 1u);
  // Node array (101 slots) and a compacted heap; a leak would be ~3 MiB.
  EXPECT_LT(p_->MemoryUsage(), 64u * 1024);
}

}  // namespace
}  // namespace kvtier
