// How much of a cached prefix is worth loading.
//
// Blocks in a memory tier (host, HBM) are always loaded: their loads run
// layer by layer under the suffix prefill and were measured faster than
// recomputing at every prompt length (docs/performance.md, "Time to first
// token"). A block on NVMe costs its read before the load can start, and a
// disk slower than the engine's prefill makes the cache hurt (a 2.5 GB/s
// disk reads an 8B model's KV slower than an H100 recomputes it). So NVMe
// blocks are loaded only while reading them costs less than recomputing
// their tokens, both estimated from what this engine measured.
//
// Thread safety: pure functions; NvmeCostModel is a value.
#pragma once

#include <cstdint>
#include <span>

#include "tiers/tier.h"

namespace kvtier::engine {

struct NvmeCostModel {
  // The daemon's NVMe read bandwidth (bytes/s) as this engine saw it;
  // starts from the disks measured here (1.5-2.6 GB/s).
  double nvme_bytes_per_s = 2.0e9;
  // This engine's prefill throughput (tokens/ms); 0: not measured yet, and
  // every block is loaded.
  double prefill_tokens_per_ms = 0;
  // Blends a new observation into an estimate (exponential average).
  static double Blend(double old_value, double observed, double weight = 0.3) {
    return old_value <= 0 ? observed : old_value + weight * (observed - old_value);
  }
};

// The number of leading blocks of a cached prefix (`tiers[i]`: where block i
// is) worth loading: the k in [0, tiers.size()] that maximises the time
// saved, sum over blocks i < k of (tokens recomputed - NVMe read time, the
// latter 0 for memory tiers). Ties go to the longer prefix.
uint32_t BlocksWorthLoading(std::span<const TierKind> tiers, uint64_t block_bytes,
                            uint32_t block_tokens, const NvmeCostModel& model);

}  // namespace kvtier::engine
