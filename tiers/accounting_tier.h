// AccountingTier: a Tier with capacity but no memory, for offline replay.
//
// It hands out slots exactly as a memory tier would — from a SlabAllocator
// whose single size class is the block size — but backs them with nothing:
// Address() is nullptr, so the cache treats it like a tier that is not
// byte-addressable from this process. `kvtier-bench sim` drives the real
// Cache, eviction policies and admission over it to measure hit rates of
// traces without moving a byte.
//
// Capacity is exact: at most `capacity_bytes / block_bytes` blocks are held
// (Allocate answers ResourceExhausted beyond that), even though the slab's
// address space is rounded up to whole regions. Items larger than one block
// are refused (InvalidArgument); smaller ones take a whole block.
//
// Frees can be logged: with set_free_log(&v) every Free() appends the freed
// slot's offset to v, which is how the simulator learns which blocks the
// cache evicted (and demotes them to a lower tier). The log is owned by the
// caller and must outlive its registration.
//
// Thread safety: as Tier (the cache serializes calls under its tier lock).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tiers/slab_allocator.h"
#include "tiers/tier.h"

namespace kvtier {

struct AccountingTierOptions {
  // Bytes of one block (any value >= 1); every slot is one block.
  uint64_t block_bytes = 4096;
  // Bytes the tier holds; rounded down to whole blocks. Must hold >= 1 block.
  uint64_t capacity_bytes = 0;
  // Reported kind and name (stats only).
  TierKind kind = TierKind::kHost;
  std::string name = "accounting";
};

class AccountingTier final : public Tier {
 public:
  // InvalidArgument when block_bytes is 0 or the capacity holds no block.
  static Result<std::unique_ptr<AccountingTier>> Create(const AccountingTierOptions& options);

  TierKind kind() const override { return kind_; }
  std::string_view name() const override { return name_; }
  Result<Slot> Allocate(uint64_t bytes) override;
  void Free(const Slot& slot) override;
  bool FreeingHelps(const Slot& victim, uint64_t bytes) const override;
  uint8_t* Address(const Slot& /*slot*/) const override { return nullptr; }
  uint64_t capacity_bytes() const override { return capacity_blocks_ * block_bytes_; }
  uint64_t used_bytes() const override { return used_blocks_ * block_bytes_; }
  TierCounters counters() const override { return counters_; }

  uint64_t block_bytes() const { return block_bytes_; }
  uint64_t capacity_blocks() const { return capacity_blocks_; }
  uint64_t used_blocks() const { return used_blocks_; }
  // Slot offsets are block_index * block_bytes with block_index below this
  // bound (>= capacity_blocks: the address space is rounded up).
  uint64_t address_blocks() const { return address_blocks_; }

  // Appends the offset of every freed slot to *log (nullptr: stop logging).
  void set_free_log(std::vector<uint64_t>* log) { free_log_ = log; }

 private:
  AccountingTier(SlabAllocator alloc, const AccountingTierOptions& o, uint64_t capacity_blocks,
                 uint64_t address_blocks)
      : alloc_(std::move(alloc)),
        kind_(o.kind),
        name_(o.name),
        block_bytes_(o.block_bytes),
        capacity_blocks_(capacity_blocks),
        address_blocks_(address_blocks) {}

  SlabAllocator alloc_;
  TierKind kind_;
  std::string name_;
  uint64_t block_bytes_;
  uint64_t capacity_blocks_;
  uint64_t address_blocks_;
  uint64_t used_blocks_ = 0;
  TierCounters counters_;
  std::vector<uint64_t>* free_log_ = nullptr;
};

}  // namespace kvtier
