// The eviction-policy factory and the default clock.
#include "eviction/policy.h"

#include <chrono>
#include <string>
#include <utility>

#include "eviction/builtin_policies.h"

namespace kvtier {

uint64_t SteadyNowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

Result<std::unique_ptr<EvictionPolicy>> NewEvictionPolicy(std::string_view name,
                                                          const PolicyOptions& options) {
  if (name == "lru") return internal::NewLruPolicy();
  if (name == "priority-lru") {
    ClockFn clock = options.clock ? options.clock : ClockFn(&SteadyNowNs);
    return internal::NewPriorityLruPolicy(std::move(clock));
  }
  if (name == "prefix-lru") return internal::NewPrefixLruPolicy();
  if (name == "s3fifo") return internal::NewS3FifoPolicy();
  if (name == "adaptive-2q") {
    ClockFn clock = options.clock ? options.clock : ClockFn(&SteadyNowNs);
    return internal::NewAdaptive2qPolicy(std::move(clock));
  }
  return Status::InvalidArgument("unknown eviction policy '" + std::string(name) +
                                 "'; known: lru, priority-lru, prefix-lru, s3fifo, adaptive-2q");
}

}  // namespace kvtier
