// Replay of a trace through the real kvtier Cache, eviction policies and
// admission, without payload bytes (kvtier-bench sim).
//
// Tier 1 is a kvtier::Cache over one AccountingTier (tiers/accounting_tier.h)
// with the named eviction policy. Per request, in trace order:
//
//   Acquire(keys)            → the cached prefix (tier-1 hits), pinned
//   [tier 2] while the next key is in tier 2: a tier-2 hit; the block is
//            promoted (removed from tier 2, stored again in tier 1; if tier 1
//            has no room it stays in tier 2) and the lookup goes on in
//            tier 1 after it
//   Reserve(missed suffix)   → slots, evicting by the policy as needed
//   Commit(zero checksums); the lease is released
//
// A request's hits are the blocks of this prefix. Keys are derived from the
// trace's dense block ids (a 64-bit mix each for lo and hi, so policy
// fingerprints and index shards are well spread); the suffix is reserved
// from the last hit block on, so the policy sees the chain parent of the
// first new block.
//
// Tier 2 (optional) models the daemon's lower tier with the same rules:
// tiers are exclusive; a block evicted from tier 1 is demoted into tier 2 if
// the AdmissionPolicy admits it (else dropped); a tier-2 hit promotes the
// block back into tier 1; tier 2 evicts by its own EvictionPolicy instance
// over its own AccountingTier. The movement itself lives here (the cache's
// NVMe path does real I/O); the policies and admission are the real ones.
// Tier-1 evictions are observed through the accounting tier's free log.
//
// Thread safety: Replay is reentrant; concurrent replays of one Trace are
// fine. `progress`, if set, is incremented once per request.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include "bench/sim_stats.h"
#include "bench/trace_reader.h"
#include "tiers/status.h"

namespace kvtier::bench {

struct ReplayOptions {
  std::string policy = "priority-lru";  // tier-1 eviction policy
  uint64_t tier1_blocks = 0;            // > 0
  uint64_t tier2_blocks = 0;            // 0: no second tier
  std::string tier2_policy = "lru";
  std::string admission = "always";     // into tier 2
  uint64_t admission_window = uint64_t{1} << 20;
  // Bytes per block in the accounting tiers (any value; results do not
  // depend on it, as every block has the same size).
  uint64_t block_bytes = 4096;
};

struct ReplayResult {
  PrefixHitCounts hits;
  uint64_t tier_hits[2] = {0, 0};   // blocks of hit prefixes found in tier 1 / 2
  uint64_t tier_hit_tokens[2] = {0, 0};  // their tokens (sum: hits.hit_tokens)
  uint64_t stored_blocks = 0;       // blocks committed into tier 1 (promotions included)
  uint64_t no_space_blocks = 0;     // blocks Reserve could not place
  uint64_t tier1_evictions = 0;
  uint64_t demotions = 0;           // tier-1 evictions admitted into tier 2
  uint64_t admission_refused = 0;   // tier-1 evictions refused by admission (dropped)
  uint64_t promotions = 0;          // tier-2 hits moved into tier 1
  uint64_t tier2_evictions = 0;     // dropped from tier 2 to make room
  uint64_t policy_memory = 0;       // tier-1 policy bytes at the end
  double seconds = 0;               // wall time of the replay
};

// Errors: InvalidArgument (zero tier-1 capacity, unknown policy or
// admission name), or whatever the cache answers unexpectedly.
Result<ReplayResult> Replay(const Trace& trace, const ReplayOptions& options,
                            std::atomic<uint64_t>* progress = nullptr);

}  // namespace kvtier::bench
