// Tier: one level of storage for block payloads (GPU HBM, host memory, NVMe).
//
// A tier hands out slots — byte ranges of its address space — and frees them.
// It knows nothing of keys, namespaces or eviction: the cache decides what
// lives where and asks the tier only for space. Memory tiers also expose the
// address of a slot so that the cache (and clients that map the same memory)
// can read and write payloads in place.
//
// Thread safety: implementations are NOT internally synchronized. The cache
// serializes calls per tier under its tier lock. Address() may be called
// concurrently with anything, since a slot's address never changes while the
// slot is allocated.
#pragma once

#include <atomic>
#include <cstdint>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

class SlabAllocator;

enum class TierKind : uint8_t { kHbm = 0, kHost = 1, kNvme = 2 };
const char* TierKindName(TierKind kind);

// A range of a tier's address space. `bytes` is what was asked for;
// the slot may be larger (its size class).
struct Slot {
  uint64_t offset = 0;
  uint64_t bytes = 0;
  uint32_t size_class = 0;
};

struct TierCounters {
  uint64_t allocations = 0;
  uint64_t frees = 0;
  uint64_t failed_allocations = 0;
};

class Tier {
 public:
  virtual ~Tier() = default;

  virtual TierKind kind() const = 0;
  virtual std::string_view name() const = 0;

  // A slot of at least `bytes` bytes. Errors: InvalidArgument (0 bytes or
  // larger than the tier can ever hold), ResourceExhausted (full now).
  virtual Result<Slot> Allocate(uint64_t bytes) = 0;

  // Gives a slot back. REQUIRES: `slot` came from Allocate() and is not freed.
  virtual void Free(const Slot& slot) = 0;

  // Whether freeing `victim` makes room for an allocation of `bytes`, either
  // directly (same size class) or by releasing memory back to a shared pool.
  // The cache asks this before evicting, so that it never evicts a block
  // whose space the pending allocation could not use.
  virtual bool FreeingHelps(const Slot& victim, uint64_t bytes) const = 0;

  // Address of the slot's first byte, or nullptr for tiers that are not
  // byte-addressable from this process (NVMe).
  virtual uint8_t* Address(const Slot& slot) const = 0;

  // The slab allocator behind the tier's slots, for a cache that moves
  // regions between size classes (rebalancing); nullptr when the tier has
  // none it exposes. Guarded like the rest of the tier.
  virtual SlabAllocator* slabs() { return nullptr; }

  virtual uint64_t capacity_bytes() const = 0;
  // Bytes of the address space held by allocated slots (size-class rounded).
  virtual uint64_t used_bytes() const = 0;
  virtual TierCounters counters() const = 0;
};

inline const char* TierKindName(TierKind kind) {
  switch (kind) {
    case TierKind::kHbm: return "hbm";
    case TierKind::kHost: return "host";
    case TierKind::kNvme: return "nvme";
  }
  return "unknown";
}

}  // namespace kvtier
