// NvmeExtentAllocator: where extents live in the NVMe tier's file.
//
// The data area [data_offset, data_offset + regions * region_bytes) is cut
// into equal regions (CacheLib's slabs, default 64 MiB). A region is free,
// serves one size class (cut into equal slots, tracked by a bitmap), or
// belongs to a contiguous run of regions holding one extent larger than the
// largest class. A region whose last slot is freed returns to the free pool
// and may then serve any class, so classes never starve each other for good.
// Allocation prefers the lowest free region (writes stay near the start of
// the file) and, within a class, regions that already have free slots.
//
// Unlike a plain slab allocator it can mark a given (offset, size) allocated:
// restart recovery rebuilds the allocation state from the durable index with
// MarkAllocated(), which checks the offset is a slot boundary of the class
// the size maps to and that nothing overlaps.
//
// It manages offsets only. Thread safety: none; the owning NvmeStore is
// driven by one thread. Allocate/Free/MarkAllocated allocate no memory except
// when a region is first carved for a class (its slot bitmap).
#pragma once

#include <cstdint>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

struct NvmeAllocatorOptions {
  uint64_t data_offset = 0;  // first byte of region 0 (multiple of 4 KiB)
  uint64_t data_bytes = 0;   // bytes available from data_offset; whole regions are used
  uint64_t region_bytes = 64ull << 20;
  // Extent sizes of the classes, in bytes, each a multiple of 4 KiB. Sorted
  // and deduplicated by Create(); sizes above region_bytes are dropped
  // (such extents take region runs).
  std::vector<uint64_t> class_bytes;
};

class NvmeExtentAllocator {
 public:
  // Errors: InvalidArgument (misaligned sizes, no class, fewer than one
  // region of data).
  static Result<NvmeExtentAllocator> Create(const NvmeAllocatorOptions& options);

  // Bytes an extent of `needed` bytes occupies: its class size, or a whole
  // number of regions for extents larger than the largest class.
  uint64_t SlotBytes(uint64_t needed) const;

  // Offset of a new extent of at least `needed` bytes.
  // Errors: InvalidArgument (0, or more than the data area), ResourceExhausted
  // (no slot of the class and no (run of) free region(s)).
  Result<uint64_t> Allocate(uint64_t needed);

  // Gives back the extent at `offset` allocated for `needed` bytes.
  // Errors: InvalidArgument (not an allocated extent of that size: double
  // free, wrong size or offset). Nothing changes on error.
  Status Free(uint64_t offset, uint64_t needed);

  // Marks the extent at `offset` of `needed` bytes allocated (recovery).
  // Errors: InvalidArgument (outside the data area, not a slot boundary of
  // the class `needed` maps to), Rejected (overlaps an allocated extent, or
  // its region serves another class). Nothing changes on error.
  Status MarkAllocated(uint64_t offset, uint64_t needed);

  uint64_t region_bytes() const { return region_bytes_; }
  uint32_t num_regions() const { return static_cast<uint32_t>(regions_.size()); }
  uint32_t free_regions() const { return free_region_count_; }
  const std::vector<uint64_t>& class_bytes() const { return class_bytes_; }
  // Data bytes in whole regions.
  uint64_t capacity_bytes() const { return region_bytes_ * regions_.size(); }
  // Bytes held by allocated extents (slot sizes).
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t allocated_extents() const { return allocated_extents_; }

  // Regions, for a user that frees every extent of a region so that it can
  // serve another class (the cache's NVMe tier moves space between sizes).
  uint32_t RegionOf(uint64_t offset) const {
    return static_cast<uint32_t>((offset - data_offset_) / region_bytes_);
  }
  uint64_t RegionStart(uint32_t r) const { return RegionOffset(r); }
  // Slot bytes of the class region r serves; 0 for a free region or a run.
  uint64_t RegionSlotBytes(uint32_t r) const {
    return regions_[r].cls >= 0 ? class_bytes_[regions_[r].cls] : 0;
  }
  uint32_t RegionSlots(uint32_t r) const { return regions_[r].cls >= 0 ? regions_[r].slots : 0; }
  uint32_t RegionUsed(uint32_t r) const { return regions_[r].cls >= 0 ? regions_[r].used : 0; }

 private:
  static constexpr int32_t kFree = -1;
  static constexpr int32_t kLargeHead = -2;
  static constexpr int32_t kLargeTail = -3;
  static constexpr uint32_t kLarge = 0xFFFFFFFFu;

  struct Region {
    int32_t cls = kFree;  // class index, or kFree / kLargeHead / kLargeTail
    uint32_t used = 0;    // slots in use (class), run length (large head)
    uint32_t slots = 0;
    int32_t prev = -1;  // links of its class's list of regions with free slots
    int32_t next = -1;
    bool in_partial = false;
    std::vector<uint64_t> bits;  // 1 = slot in use
  };

  NvmeExtentAllocator() = default;

  uint32_t ClassFor(uint64_t needed) const;  // kLarge when above all classes
  uint64_t RegionOffset(uint32_t r) const { return data_offset_ + r * region_bytes_; }
  void Carve(uint32_t r, uint32_t cls);
  void TakeRegion(uint32_t r);
  void ReleaseRegion(uint32_t r);
  int64_t FindFreeRegion();  // lowest free region or -1
  int64_t FindFreeRun(uint32_t count);
  void AddPartial(uint32_t r);
  void RemovePartial(uint32_t r);
  void SetSlot(Region& reg, uint32_t slot);
  uint64_t RunRegions(uint64_t needed) const {
    return (needed + region_bytes_ - 1) / region_bytes_;
  }

  uint64_t data_offset_ = 0;
  uint64_t region_bytes_ = 0;
  std::vector<uint64_t> class_bytes_;
  std::vector<int32_t> partial_head_;  // per class
  std::vector<Region> regions_;
  std::vector<uint64_t> free_bits_;  // 1 = region free
  uint32_t free_region_count_ = 0;
  size_t free_hint_ = 0;  // no free region in words below this
  uint64_t used_bytes_ = 0;
  uint64_t allocated_extents_ = 0;
};

}  // namespace kvtier
