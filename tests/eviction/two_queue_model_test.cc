// Tests of TwoQueueModel (eviction/two_queue_model.cc).
#include "eviction/two_queue_model.h"

#include <gtest/gtest.h>

#include <list>
#include <random>

namespace kvtier {
namespace {

TEST(TwoQueueModelTest, FullProbationWithoutHistoryIsLru) {
  TwoQueueModel m(1.0, 0.0);
  m.Reset(64);
  std::list<uint64_t> lru;  // reference LRU, front = hottest
  std::mt19937 rng(3);
  for (int i = 0; i < 20000; ++i) {
    const uint64_t fp = 1 + rng() % 200;
    bool ref_hit = false;
    for (auto it = lru.begin(); it != lru.end(); ++it)
      if (*it == fp) {
        lru.erase(it);
        ref_hit = true;
        break;
      }
    lru.push_front(fp);
    if (lru.size() > 64) lru.pop_back();
    ASSERT_EQ(m.Access(fp), ref_hit) << i;
  }
  EXPECT_EQ(m.size(), 64u);
}

TEST(TwoQueueModelTest, ProtectedSurvivesAScan) {
  // Capacity 10, probation half. Ten hot entries hit twice, then a scan of
  // one-time entries: LRU loses the hot set, the two-queue model keeps the
  // protected half of it.
  TwoQueueModel q(0.5, 0.0), lru(1.0, 0.0);
  q.Reset(10);
  lru.Reset(10);
  for (int round = 0; round < 2; ++round)
    for (uint64_t fp = 1; fp <= 5; ++fp) {
      q.Access(fp);
      lru.Access(fp);
    }
  for (uint64_t fp = 100; fp < 120; ++fp) {
    q.Access(fp);
    lru.Access(fp);
  }
  int q_hits = 0, lru_hits = 0;
  for (uint64_t fp = 1; fp <= 5; ++fp) {
    q_hits += q.Access(fp);
    lru_hits += lru.Access(fp);
  }
  EXPECT_EQ(q_hits, 5);
  EXPECT_EQ(lru_hits, 0);
}

TEST(TwoQueueModelTest, HistoryProtectsReturningEntries) {
  // An entry evicted unhit and seen again while remembered goes straight to
  // protected: it then survives a scan that a fresh entry does not.
  TwoQueueModel m(0.5, 2.0);
  m.Reset(4);
  m.Access(1);
  for (uint64_t fp = 10; fp < 14; ++fp) m.Access(fp);  // evicts 1 into the history
  EXPECT_FALSE(m.Access(1));                            // miss, but protected now
  for (uint64_t fp = 20; fp < 30; ++fp) m.Access(fp);
  EXPECT_TRUE(m.Access(1));
  EXPECT_FALSE(m.Access(29 - 5));  // a scanned entry is long gone
}

TEST(TwoQueueModelTest, GrowKeepsEntries) {
  TwoQueueModel m(0.25, 1.0);
  m.Reset(8);
  for (uint64_t fp = 1; fp <= 8; ++fp) m.Access(fp);
  m.GrowTo(100);
  for (uint64_t fp = 1; fp <= 8; ++fp) EXPECT_TRUE(m.Access(fp)) << fp;
  for (uint64_t fp = 9; fp <= 100; ++fp) m.Access(fp);
  EXPECT_EQ(m.size(), 100u);
  EXPECT_FALSE(m.Access(0));  // unknown fingerprint: ignored
}

// The model and adaptive-2q read history lengths off one ring by age.
TEST(FingerprintFifoAgeTest, CountsInsertionsSinceOwn) {
  FingerprintFifo f(4);
  EXPECT_EQ(f.Age(7), FingerprintFifo::kAbsent);
  f.Insert(7);
  EXPECT_EQ(f.Age(7), 0u);
  f.Insert(8);
  f.Insert(9);
  EXPECT_EQ(f.Age(7), 2u);
  EXPECT_EQ(f.Age(9), 0u);
  f.Insert(7);  // re-insertion: newest again
  EXPECT_EQ(f.Age(7), 0u);
  EXPECT_EQ(f.Age(8), 2u);
  f.Insert(10);
  f.Insert(11);
  f.Insert(12);
  EXPECT_EQ(f.Age(8), FingerprintFifo::kAbsent);  // forgotten after 4 insertions
  EXPECT_EQ(f.Age(0), FingerprintFifo::kAbsent);
}

}  // namespace
}  // namespace kvtier
