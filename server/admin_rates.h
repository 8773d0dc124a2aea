// RateWindow: the status page's "last minute". Counters are sampled every few
// seconds (AdminServer's sampler thread); a rate is the difference between
// the newest sample and the oldest one still inside the window, over the
// time between them. Counters that went backwards (a daemon restart cannot
// happen here, but a test may reset) give 0, never a negative rate.
//
// Thread safety: Add and Compute may be called from any thread.
#pragma once

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "cache/cache.h"
#include "server/metrics.h"

namespace kvtier {

struct RateSample {
  std::chrono::steady_clock::time_point at;
  uint64_t acquires = 0, keys_requested = 0, blocks_hit = 0, commits = 0, blocks_no_space = 0;
  uint64_t rpc_calls = 0, rpc_errors = 0;
  struct Tier {
    std::string name;
    uint64_t hits = 0, bytes_in = 0, bytes_out = 0, evictions = 0, io_errors = 0;
  };
  std::vector<Tier> tiers;
};

// A sample of `stats` (and `rpc` when not null) taken at `at`.
RateSample SampleOf(const CacheStats& stats, const RpcMetrics* rpc, std::chrono::steady_clock::time_point at);

struct Rates {
  double seconds = 0;  // the span the rates cover
  double acquires_per_s = 0, keys_per_s = 0, commits_per_s = 0, no_space_per_s = 0;
  double rpc_calls_per_s = 0, rpc_errors_per_s = 0;
  double hit_rate = 0;  // blocks hit / keys requested within the span (0 without requests)
  struct Tier {
    std::string name;
    double hits_per_s = 0, bytes_in_per_s = 0, bytes_out_per_s = 0, evictions_per_s = 0;
    uint64_t io_errors = 0;  // new I/O errors within the span
  };
  std::vector<Tier> tiers;
};

class RateWindow {
 public:
  explicit RateWindow(std::chrono::seconds window = std::chrono::seconds(60)) : window_(window) {}

  // Keeps `s` and the samples that a window ending at `s.at` still needs.
  void Add(RateSample s);
  // Rates from the oldest kept sample to `now` (a fresh sample, not kept).
  // nullopt until the span reaches `min_span` (too short to mean anything).
  std::optional<Rates> Compute(const RateSample& now,
                               std::chrono::milliseconds min_span = std::chrono::seconds(1)) const;

 private:
  const std::chrono::seconds window_;
  mutable std::mutex mu_;
  std::deque<RateSample> samples_;  // oldest first
};

}  // namespace kvtier
