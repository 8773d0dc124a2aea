// Tests of FingerprintFifo (eviction/fingerprint_fifo.cc) against a model.
#include "eviction/fingerprint_fifo.h"

#include <gtest/gtest.h>

#include <deque>
#include <random>

namespace kvtier {
namespace {

TEST(FingerprintFifoTest, ForgetsTheOldestInsertion) {
  FingerprintFifo f(3);
  f.Insert(1);
  f.Insert(2);
  f.Insert(3);
  EXPECT_TRUE(f.Contains(1));
  f.Insert(4);
  EXPECT_FALSE(f.Contains(1));
  EXPECT_TRUE(f.Contains(2) && f.Contains(3) && f.Contains(4));
  EXPECT_EQ(f.size(), 3u);
}

TEST(FingerprintFifoTest, ReinsertRefreshesAndEraseForgets) {
  FingerprintFifo f(3);
  f.Insert(1);
  f.Insert(2);
  f.Insert(1);  // newest now
  f.Insert(3);
  f.Insert(4);  // window of 3 insertions: 1, 3, 4
  EXPECT_TRUE(f.Contains(1));
  EXPECT_FALSE(f.Contains(2));
  EXPECT_TRUE(f.Erase(3));
  EXPECT_FALSE(f.Erase(3));
  EXPECT_FALSE(f.Contains(3));
  f.Insert(0);  // unknown: ignored
  EXPECT_FALSE(f.Contains(0));
}

TEST(FingerprintFifoTest, ResizeKeepsTheNewest) {
  FingerprintFifo f(8);
  for (uint64_t fp = 1; fp <= 8; ++fp) f.Insert(fp);
  f.Resize(3);
  EXPECT_EQ(f.size(), 3u);
  for (uint64_t fp = 1; fp <= 5; ++fp) EXPECT_FALSE(f.Contains(fp)) << fp;
  for (uint64_t fp = 6; fp <= 8; ++fp) EXPECT_TRUE(f.Contains(fp)) << fp;
  f.Resize(100);
  f.Insert(9);
  for (uint64_t fp = 6; fp <= 9; ++fp) EXPECT_TRUE(f.Contains(fp)) << fp;
}

// Random operations over a small key space force long probe runs and many
// backward-shift deletions; the model is the list of the last `cap` slots.
TEST(FingerprintFifoTest, MatchesModelUnderRandomOps) {
  constexpr size_t kCap = 37;
  FingerprintFifo f(kCap);
  std::deque<uint64_t> model;  // last kCap insertion slots, 0 = erased
  std::mt19937_64 rng(7);
  auto model_contains = [&](uint64_t fp) {
    for (uint64_t x : model) {
      if (x == fp) return true;
    }
    return false;
  };
  for (int step = 0; step < 200000; ++step) {
    const uint64_t fp = 1 + rng() % 120;
    switch (rng() % 3) {
      case 0:
        for (auto& x : model) {
          if (x == fp) x = 0;
        }
        model.push_back(fp);
        if (model.size() > kCap) model.pop_front();
        f.Insert(fp);
        break;
      case 1: {
        bool had = false;
        for (auto& x : model) {
          if (x == fp) {
            x = 0;
            had = true;
          }
        }
        ASSERT_EQ(f.Erase(fp), had);
        break;
      }
      case 2:
        ASSERT_EQ(f.Contains(fp), model_contains(fp)) << "step " << step << " fp " << fp;
        break;
    }
  }
}

}  // namespace
}  // namespace kvtier
