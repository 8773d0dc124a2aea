// Several models on one host: traces replayed together, each model with its
// own block size, through the real Cache and slab allocator
// (kvtier-bench sim --model ...).
//
// Every model is a namespace with blocks of `block_bytes`. Requests of all
// models are merged in time order, each trace's times scaled to [0, 1) of
// its own span so the models alternate over the whole replay (they are
// different traces with different lengths). Per request: Acquire → hits,
// Reserve(missed suffix) → slots, Commit, release — as `Replay` does for one
// model, without a second tier.
//
// The memory tier has no memory: SlabTier hands out the offsets of a real
// SlabAllocator (exact size classes, regions of `region_bytes`) and exposes
// it, so the cache rebalances regions between sizes exactly as the daemon's
// host tier does. Three layouts of the same total bytes are compared:
//
//   shared        one tier of `capacity_bytes` for every model (kvtier);
//   static        one tier per model of capacity / models (an equal split,
//                 what a per-model daemon or a fixed partition gives);
//   proportional  one tier per model of capacity × its share of the demand
//                 (bytes it references: blocks looked up × block size, the
//                 quantity the cache's rebalancer follows online): the
//                 private tier a static partition by demand gives each model.
//
// Thread safety: reentrant; traces are shared read-only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "bench/sim_stats.h"
#include "bench/trace_reader.h"
#include "tiers/status.h"

namespace kvtier::bench {

struct SimModel {
  std::string name;
  const Trace* trace = nullptr;
  uint64_t block_bytes = 0;  // > 0
};

enum class MultiLayout : uint8_t { kShared = 0, kStatic = 1, kProportional = 2 };
const char* MultiLayoutName(MultiLayout l);

struct MultiReplayOptions {
  std::string policy = "adaptive-2q";
  uint64_t capacity_bytes = 0;  // total over all models; > 0
  uint64_t region_bytes = 64ull << 20;
  MultiLayout layout = MultiLayout::kShared;
};

struct MultiReplayResult {
  std::vector<PrefixHitCounts> models;  // per model, in SimModel order
  std::vector<uint64_t> tier_bytes;     // capacity each model was given (shared: all)
  PrefixHitCounts overall;
  uint64_t no_space_blocks = 0;
  uint64_t evictions = 0;
  uint64_t regions_moved = 0;
  double seconds = 0;
};

// Bytes `m` references over its trace (its demand): blocks of all its
// requests × block size.
uint64_t DemandBytes(const SimModel& m);

// Errors: InvalidArgument (no model, a model without trace or block size,
// capacity that cannot hold a region per tier, unknown policy).
Result<MultiReplayResult> ReplayModels(const std::vector<SimModel>& models,
                                       const MultiReplayOptions& options);

}  // namespace kvtier::bench
