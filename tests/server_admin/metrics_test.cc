#include "server/metrics.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <thread>
#include <vector>

namespace kvtier {
namespace {

using B = HistogramSnapshot;

// The bucket bounds [lo, hi] that hold `ns`.
std::pair<double, double> BucketRange(uint64_t ns) {
  size_t i = LatencyHistogram::BucketOf(ns);
  double lo = i == 0 ? 0.0 : static_cast<double>(B::kBoundsNs[i - 1]);
  double hi = i < B::kNumBounds ? static_cast<double>(B::kBoundsNs[i]) : INFINITY;
  return {lo, hi};
}

// Records `values` and checks that each quantile's estimate lies in the
// bucket of the exact quantile (the histogram's stated error bound).
void CheckQuantiles(std::vector<uint64_t> values) {
  LatencyHistogram h;
  uint64_t sum = 0;
  for (uint64_t v : values) {
    h.Record(v);
    sum += v;
  }
  HistogramSnapshot s = h.Snapshot();
  ASSERT_EQ(s.count, values.size());
  EXPECT_EQ(s.sum_ns, sum);
  std::sort(values.begin(), values.end());
  for (double q : {0.01, 0.1, 0.5, 0.9, 0.99, 0.999}) {
    // The exact q-quantile: the value of rank ceil(q * n).
    size_t rank = static_cast<size_t>(std::ceil(q * static_cast<double>(values.size())));
    uint64_t exact = values[std::max<size_t>(rank, 1) - 1];
    auto [lo, hi] = BucketRange(exact);
    double est = s.QuantileNs(q);
    EXPECT_GE(est, lo) << "q=" << q << " exact=" << exact;
    EXPECT_LE(est, hi) << "q=" << q << " exact=" << exact;
  }
}

TEST(LatencyHistogramTest, BucketBoundsAreInclusive) {
  EXPECT_EQ(LatencyHistogram::BucketOf(0), 0u);
  EXPECT_EQ(LatencyHistogram::BucketOf(1000), 0u);
  EXPECT_EQ(LatencyHistogram::BucketOf(1001), 1u);
  EXPECT_EQ(LatencyHistogram::BucketOf(2000), 1u);
  EXPECT_EQ(LatencyHistogram::BucketOf(2001), 2u);
  EXPECT_EQ(LatencyHistogram::BucketOf(10'000'000'000), B::kNumBounds - 1);
  EXPECT_EQ(LatencyHistogram::BucketOf(10'000'000'001), B::kNumBounds);
  EXPECT_EQ(LatencyHistogram::BucketOf(UINT64_MAX), B::kNumBounds);
  // 1-2-5 steps.
  for (size_t i = 1; i < B::kNumBounds; ++i) {
    double r = static_cast<double>(B::kBoundsNs[i]) / static_cast<double>(B::kBoundsNs[i - 1]);
    EXPECT_TRUE(r == 2.0 || r == 2.5) << i;
  }
}

TEST(LatencyHistogramTest, EmptyAndOverflow) {
  LatencyHistogram h;
  EXPECT_EQ(h.Snapshot().count, 0u);
  EXPECT_EQ(h.Snapshot().QuantileNs(0.5), 0.0);
  EXPECT_EQ(h.Snapshot().MeanNs(), 0.0);
  h.Record(60'000'000'000);  // a minute: past the last bound
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, 1u);
  EXPECT_EQ(s.buckets[B::kNumBounds], 1u);
  EXPECT_EQ(s.QuantileNs(0.99), 10e9);
  EXPECT_EQ(s.MeanNs(), 60e9);
}

TEST(LatencyHistogramTest, CumulativeBuckets) {
  LatencyHistogram h;
  h.Record(500);        // bucket 0
  h.Record(1500);       // bucket 1
  h.Record(1500);       // bucket 1
  h.Record(3'000'000);  // (2 ms, 5 ms]
  auto c = h.Snapshot().Cumulative();
  EXPECT_EQ(c[0], 1u);
  EXPECT_EQ(c[1], 3u);
  EXPECT_EQ(c[10], 3u);  // le 2 ms
  EXPECT_EQ(c[11], 4u);  // le 5 ms
  EXPECT_EQ(c[B::kNumBounds], 4u);
  for (size_t i = 1; i < c.size(); ++i) EXPECT_GE(c[i], c[i - 1]);
}

TEST(LatencyHistogramTest, ConstantValue) {
  CheckQuantiles(std::vector<uint64_t>(1000, 3000));  // all 3 us
  LatencyHistogram h;
  for (int i = 0; i < 100; ++i) h.Record(3000);
  double p50 = h.Snapshot().QuantileNs(0.5);
  EXPECT_GT(p50, 2000.0);
  EXPECT_LE(p50, 5000.0);
}

TEST(LatencyHistogramTest, UniformDistribution) {
  std::vector<uint64_t> v;
  for (uint64_t i = 1; i <= 100'000; ++i) v.push_back(i * 10);  // 10 ns .. 1 ms
  CheckQuantiles(v);
}

TEST(LatencyHistogramTest, LogNormalDistribution) {
  std::mt19937_64 rng(42);
  std::lognormal_distribution<double> d(std::log(200'000.0), 1.0);  // median 200 us
  std::vector<uint64_t> v;
  for (int i = 0; i < 200'000; ++i) v.push_back(static_cast<uint64_t>(d(rng)));
  CheckQuantiles(v);
}

TEST(LatencyHistogramTest, BimodalDistribution) {
  std::vector<uint64_t> v;
  for (int i = 0; i < 9000; ++i) v.push_back(40'000 + static_cast<uint64_t>(i));      // ~40 us
  for (int i = 0; i < 1000; ++i) v.push_back(30'000'000 + static_cast<uint64_t>(i));  // ~30 ms
  CheckQuantiles(v);
}

TEST(LatencyHistogramTest, ConcurrentRecordsSumExactly) {
  LatencyHistogram h;
  constexpr int kThreads = 4;
  constexpr uint64_t kPerThread = 250'000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&h, t] {
      for (uint64_t i = 0; i < kPerThread; ++i) h.Record((i % 1000) * 1000 + t);
    });
  }
  for (auto& t : threads) t.join();
  HistogramSnapshot s = h.Snapshot();
  EXPECT_EQ(s.count, kThreads * kPerThread);
  uint64_t want_sum = 0;
  for (int t = 0; t < kThreads; ++t)
    for (uint64_t i = 0; i < kPerThread; ++i) want_sum += (i % 1000) * 1000 + t;
  EXPECT_EQ(s.sum_ns, want_sum);
}

TEST(RpcMetricsTest, RecordAndTimer) {
  RpcMetrics m;
  m.Record(RpcMethod::kAcquire, 5000, true);
  m.Record(RpcMethod::kAcquire, 7000, false);
  {
    RpcTimer t(&m, RpcMethod::kCommit);
    t.Fail();
  }
  { RpcTimer t(&m, RpcMethod::kReserve); }
  { RpcTimer t(nullptr, RpcMethod::kReserve); }  // records nothing, no crash
  EXPECT_EQ(m.method(RpcMethod::kAcquire).latency.Snapshot().count, 2u);
  EXPECT_EQ(m.method(RpcMethod::kAcquire).errors.load(), 1u);
  EXPECT_EQ(m.method(RpcMethod::kCommit).latency.Snapshot().count, 1u);
  EXPECT_EQ(m.method(RpcMethod::kCommit).errors.load(), 1u);
  EXPECT_EQ(m.method(RpcMethod::kReserve).latency.Snapshot().count, 1u);
  EXPECT_EQ(m.method(RpcMethod::kReserve).errors.load(), 0u);
  EXPECT_EQ(m.method(RpcMethod::kStats).latency.Snapshot().count, 0u);
}

TEST(RpcMetricsTest, MethodNames) {
  const char* want[] = {"open_namespace", "acquire", "reserve",      "commit", "abort",
                        "hash_tokens",    "stats",   "host_segment", "probe"};
  static_assert(std::size(want) == kNumRpcMethods, "one name per method");
  for (size_t i = 0; i < kNumRpcMethods; ++i)
    EXPECT_STREQ(RpcMethodName(static_cast<RpcMethod>(i)), want[i]);
}

TEST(PrometheusTest, DoubleFormatting) {
  EXPECT_EQ(PrometheusDouble(1e-6), "1e-06");
  EXPECT_EQ(PrometheusDouble(0.5), "0.5");
  EXPECT_EQ(PrometheusDouble(10), "10");
  EXPECT_EQ(PrometheusDouble(INFINITY), "+Inf");
  EXPECT_EQ(PrometheusDouble(NAN), "NaN");
}

TEST(PrometheusTest, LabelValuesAreEscaped) {
  CacheStats s;
  TierStats t;
  t.name = "we\"ird\\tier\n";
  s.tiers.push_back(t);
  MetricsInput in;
  in.cache = &s;
  in.version = "1.0";
  std::string text = RenderPrometheus(in);
  EXPECT_NE(text.find("kvtier_tier_blocks{tier=\"we\\\"ird\\\\tier\\n\"} 0\n"), std::string::npos)
      << text;
  // Without RPC metrics their families are left out.
  EXPECT_EQ(text.find("kvtier_rpc_duration_seconds"), std::string::npos);
  EXPECT_NE(text.find("kvtier_build_info{version=\"1.0\"} 1\n"), std::string::npos);
}

}  // namespace
}  // namespace kvtier
