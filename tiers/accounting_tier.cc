#include "tiers/accounting_tier.h"

#include <algorithm>
#include <string>

namespace kvtier {

namespace {
// Blocks per slab region: enough that regions rarely empty (releasing a
// region costs O(regions) in the slab allocator), few enough that small
// tiers waste little address space.
constexpr uint64_t kBlocksPerRegion = 1024;
}  // namespace

Result<std::unique_ptr<AccountingTier>> AccountingTier::Create(const AccountingTierOptions& o) {
  if (o.block_bytes == 0) return Status::InvalidArgument("accounting tier: block_bytes is 0");
  const uint64_t capacity_blocks = o.capacity_bytes / o.block_bytes;
  if (capacity_blocks == 0)
    return Status::InvalidArgument("accounting tier: capacity " + std::to_string(o.capacity_bytes) +
                                   " bytes holds no block of " + std::to_string(o.block_bytes) +
                                   " bytes");
  const uint64_t per_region = std::min(kBlocksPerRegion, capacity_blocks);
  const uint64_t regions = (capacity_blocks + per_region - 1) / per_region;
  SlabOptions so;
  // One size class: the block. Alignment is the largest power of two that
  // divides the block size, so the class is exactly block_bytes.
  so.alignment = o.block_bytes & (~o.block_bytes + 1);
  so.min_slot = o.block_bytes;
  so.region_bytes = o.block_bytes * per_region;
  so.capacity = so.region_bytes * regions;
  auto alloc = SlabAllocator::Create(so);
  if (!alloc.ok()) return alloc.status();
  if (alloc->ClassBytes(0) != o.block_bytes)
    return Status::InvalidArgument("accounting tier: block size class mismatch");
  return std::unique_ptr<AccountingTier>(
      new AccountingTier(std::move(alloc).value(), o, capacity_blocks, per_region * regions));
}

Result<Slot> AccountingTier::Allocate(uint64_t bytes) {
  if (bytes == 0 || bytes > block_bytes_)
    return Status::InvalidArgument("accounting tier holds items of 1.." +
                                   std::to_string(block_bytes_) + " bytes, not " +
                                   std::to_string(bytes));
  if (used_blocks_ >= capacity_blocks_) {
    ++counters_.failed_allocations;
    return Status::ResourceExhausted("accounting tier full");
  }
  auto slot = alloc_.Allocate(block_bytes_);
  if (!slot.ok()) {
    ++counters_.failed_allocations;
    return slot.status();
  }
  slot->bytes = bytes;
  ++used_blocks_;
  ++counters_.allocations;
  return slot;
}

void AccountingTier::Free(const Slot& slot) {
  alloc_.Free(slot);
  --used_blocks_;
  ++counters_.frees;
  if (free_log_ != nullptr) free_log_->push_back(slot.offset);
}

bool AccountingTier::FreeingHelps(const Slot& /*victim*/, uint64_t bytes) const {
  // Every slot is one block of the single class.
  return bytes > 0 && bytes <= block_bytes_;
}

}  // namespace kvtier
