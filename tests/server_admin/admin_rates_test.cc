// The status page's "last minute" rates (server/admin_rates.cc).
#include "server/admin_rates.h"

#include <gtest/gtest.h>

namespace kvtier {
namespace {

using std::chrono::seconds;
using Clock = std::chrono::steady_clock;

RateSample Sample(Clock::time_point at, uint64_t acquires, uint64_t keys, uint64_t hits, uint64_t host_in) {
  RateSample s;
  s.at = at;
  s.acquires = acquires;
  s.keys_requested = keys;
  s.blocks_hit = hits;
  s.tiers.push_back({"host", hits, host_in, 0, 0, 0});
  return s;
}

TEST(RateWindowTest, RatesCoverTheLastMinuteOnly) {
  RateWindow w(seconds(60));
  const auto t0 = Clock::now();
  // A burst in the first 30 s (1000 acquires), then 10 acquires/s for 90 s.
  w.Add(Sample(t0, 0, 0, 0, 0));
  w.Add(Sample(t0 + seconds(30), 1000, 4000, 4000, 1 << 20));
  uint64_t acquires = 1000, keys = 4000, hits = 4000;
  for (int s = 35; s <= 120; s += 5) {
    acquires += 50;
    keys += 200;
    hits += 20;  // 10% of the newer keys hit
    w.Add(Sample(t0 + seconds(s), acquires, keys, hits, 1 << 20));
  }
  auto r = w.Compute(Sample(t0 + seconds(120), acquires, keys, hits, 1 << 20));
  ASSERT_TRUE(r.has_value());
  EXPECT_DOUBLE_EQ(r->seconds, 60.0);   // the sample at 60 s starts the window
  EXPECT_DOUBLE_EQ(r->acquires_per_s, 10.0);  // the burst is out of the window
  EXPECT_DOUBLE_EQ(r->keys_per_s, 40.0);
  EXPECT_DOUBLE_EQ(r->hit_rate, 0.1);
  ASSERT_EQ(r->tiers.size(), 1u);
  EXPECT_DOUBLE_EQ(r->tiers[0].hits_per_s, 4.0);
  EXPECT_DOUBLE_EQ(r->tiers[0].bytes_in_per_s, 0.0);
}

TEST(RateWindowTest, TooShortAndBackwardsGiveNoRatesOrZero) {
  RateWindow w;
  const auto t0 = Clock::now();
  EXPECT_FALSE(w.Compute(Sample(t0, 1, 1, 1, 1)).has_value());  // nothing sampled yet
  w.Add(Sample(t0, 100, 100, 100, 100));
  EXPECT_FALSE(w.Compute(Sample(t0 + std::chrono::milliseconds(500), 200, 200, 200, 200)).has_value());
  auto r = w.Compute(Sample(t0 + seconds(2), 50, 50, 50, 50));  // counters went backwards
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->acquires_per_s, 0.0);
  EXPECT_EQ(r->hit_rate, 0.0);
  EXPECT_EQ(r->tiers[0].bytes_in_per_s, 0.0);
}

}  // namespace
}  // namespace kvtier
