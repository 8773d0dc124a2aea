// Small timing helpers shared by the kvtier-bench subcommands.
#pragma once

#include <algorithm>
#include <chrono>
#include <vector>

namespace kvtier::bench {

using Clock = std::chrono::steady_clock;

// Milliseconds from t0 to now.
inline double MsSince(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Median (the mean of the middle two for an even count); 0 for none.
inline double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

}  // namespace kvtier::bench
