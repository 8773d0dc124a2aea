// EvictionPolicy: decides which tracked block a full tier gives up next.
//
// A policy sees only opaque dense block ids (uint32_t, assigned by the cache's
// index and reused after removal) and the little metadata it needs; it knows
// nothing of keys, tiers or bytes. The cache calls it under the owning tier's
// lock, so implementations need no locking of their own.
//
// Thread safety: none. REQUIRES: external synchronization (the tier lock).
// Lifetime: a block is Track()ed once when it becomes READY in a tier,
// Touch()ed on every hit, and Remove()d exactly once when it leaves the tier
// (eviction, deletion, demotion). PickVictim() does not remove.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

using BlockId = uint32_t;
inline constexpr BlockId kNoBlock = 0xFFFFFFFFu;

// Monotonic time in nanoseconds; injectable for tests.
using ClockFn = std::function<uint64_t()>;
uint64_t SteadyNowNs();

inline constexpr int kMinPriority = 0;
inline constexpr int kMaxPriority = 100;
inline constexpr int kDefaultPriority = 35;

// What a policy may know about a block when it is tracked.
struct BlockMeta {
  // 0..100, higher is kept longer. Blocks at equal priority are ordered by
  // the policy's own rule (LRU for priority-LRU).
  uint8_t priority = kDefaultPriority;
  // When non-zero: absolute time (ClockFn units) after which `priority`
  // falls back to kDefaultPriority (TensorRT-LLM's retention duration).
  uint64_t retention_deadline_ns = 0;
  // The block's chain parent if it is tracked by the same policy, else
  // kNoBlock. Prefix-aware policies evict descendants before ancestors.
  BlockId parent = kNoBlock;
  // Payload bytes; policies may weigh by size.
  uint32_t bytes = 0;
  // A stable identity of the block's content that survives id reuse, e.g.
  // the low 64 bits of its block key; 0 = unknown. Frequency-aware policies
  // ("s3fifo") remember recently evicted fingerprints in a ghost queue so a
  // block that comes back soon is recognised under its new id.
  uint64_t fingerprint = 0;
};

class EvictionPolicy {
 public:
  virtual ~EvictionPolicy() = default;

  // Short stable name, e.g. "lru", "priority-lru".
  virtual std::string_view name() const = 0;

  // Start tracking `id`. REQUIRES: id not tracked.
  virtual void Track(BlockId id, const BlockMeta& meta) = 0;

  // `id` was accessed (a hit). REQUIRES: id tracked.
  virtual void Touch(BlockId id) = 0;

  // Stop tracking `id`. No-op if it is not tracked.
  virtual void Remove(BlockId id) = 0;

  // The next block to evict among those for which `eligible(id)` is true
  // (the cache answers false for pinned blocks and blocks of the wrong size
  // class), or kNoBlock if none. Looks at no more than `max_scan` candidates
  // so that a tier full of pinned blocks costs bounded time. Does not remove.
  virtual BlockId PickVictim(const std::function<bool(BlockId)>& eligible,
                             size_t max_scan = 1024) = 0;

  // Number of tracked blocks.
  virtual size_t size() const = 0;

  // Bytes of memory the policy's own structures use.
  virtual size_t MemoryUsage() const = 0;
};

// Factory options. Unused fields are ignored by policies that do not need them.
struct PolicyOptions {
  ClockFn clock;  // defaults to SteadyNowNs
};

// Known names: "lru", "priority-lru", "prefix-lru", "s3fifo" (described in
// docs/eviction.md). Returns InvalidArgument, listing the known names, for
// any other name.
Result<std::unique_ptr<EvictionPolicy>> NewEvictionPolicy(std::string_view name,
                                                          const PolicyOptions& options = {});

}  // namespace kvtier
