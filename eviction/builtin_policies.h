// Constructors of the built-in eviction policies, for NewEvictionPolicy()
// (eviction/policy.cc) only: callers outside eviction/ use the factory so
// that a policy is chosen by its configured name. Each returns a new policy
// the caller owns; the implementations live in the matching .cc files and
// share the contract and thread-safety rules of eviction/policy.h.
#pragma once

#include <memory>

#include "eviction/policy.h"

namespace kvtier::internal {

// "lru": least recently tracked-or-touched first (lru_policy.cc).
std::unique_ptr<EvictionPolicy> NewLruPolicy();

// "priority-lru": lowest priority level first, LRU within a level, with
// retention deadlines read from `clock` (priority_lru_policy.cc).
std::unique_ptr<EvictionPolicy> NewPriorityLruPolicy(ClockFn clock);

// "prefix-lru": LRU over chain leaves, ancestors after their descendants
// (prefix_lru_policy.cc).
std::unique_ptr<EvictionPolicy> NewPrefixLruPolicy();

// "s3fifo": S3-FIFO with a fingerprint-keyed ghost queue (s3fifo_policy.cc).
std::unique_ptr<EvictionPolicy> NewS3FifoPolicy();

// "adaptive-2q": priority levels over a prefix-aware two-queue default level
// whose shape is tuned online (adaptive_2q_policy.cc). `fixed_shape` >= 0
// pins one candidate shape (tests, experiments); -1 adapts.
std::unique_ptr<EvictionPolicy> NewAdaptive2qPolicy(ClockFn clock, int fixed_shape = -1);

}  // namespace kvtier::internal
