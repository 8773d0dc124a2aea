// SlabAllocator: size-class allocation of a flat address space [0, capacity).
//
// The space is cut into equal regions (slabs, default 64 MiB; the last one
// may be shorter, so that a capacity that is not a whole number of regions is
// used to the last aligned byte). A region is free, or serves one size class
// (cut into equal slots), or is part of a run of contiguous full-length
// regions holding one large item (bigger than a region). A region whose
// slots are all free returns to the free pool and can serve any class.
//
// Size classes: every size allocated gets a class of exactly its size
// rounded up to `alignment` (a 2 MiB block takes a 2 MiB slot), up to
// `max_exact_classes` of them; sizes beyond that take the smallest of the
// geometric classes (from `min_slot`, factor `growth`) that holds them. Class
// ids are stable for the allocator's life. So blocks of different layouts
// share one address space the way CacheLib's slab classes do, without
// CacheLib's rounding loss for the few sizes a host actually serves.
//
// Rebalancing (CacheLib's slab release): a tier full of one class must still
// serve another. The allocator records an opaque owner per slot (the cache's
// block id) so that its user can find every item of a victim region, evict
// them, and so return the region to the free pool for another class. Which
// region to release, and when, is the user's policy (cache/cache.cc).
//
// It manages offsets only; the memory (a memfd segment, a GPU arena, a file)
// belongs to the tier that owns the allocator.
//
// Thread safety: none; the owning tier is called under the cache's tier lock.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier {

struct SlabOptions {
  uint64_t capacity = 0;              // bytes of address space
  uint64_t region_bytes = 64ull << 20;  // slab size
  uint64_t min_slot = 4096;           // smallest size class
  double growth = 1.25;               // factor between size classes
  uint64_t alignment = 4096;          // every slot offset and class size
  // Sizes that get a class of their own (beyond: geometric classes).
  uint32_t max_exact_classes = 64;
};

class SlabAllocator {
 public:
  // InvalidArgument when the options are inconsistent (capacity smaller than
  // a region, alignment not a power of two, growth <= 1, ...).
  static Result<SlabAllocator> Create(const SlabOptions& options);

  // Errors: InvalidArgument (0 bytes, or more than the whole capacity),
  // ResourceExhausted (no slot of the class and no free region left).
  Result<Slot> Allocate(uint64_t bytes);
  void Free(const Slot& slot);
  bool FreeingHelps(const Slot& victim, uint64_t bytes) const;

  // Restart of a persistent segment: marks `slots` (offset, bytes and
  // size_class as an Allocate() of the last run gave them under this
  // geometry) allocated. Each slot's class is the one Allocate() would use
  // for its bytes now, an exact class created first when Allocate() would
  // create one, and slots[i].size_class is rewritten to that class's id here
  // (exact-class ids depend on the order classes were created in, so they
  // differ between runs). ok[i] says whether slots[i] was taken; a slot is
  // refused when it is not where that class puts slots (alignment, inside
  // the capacity, a region of one class) or overlaps one taken before.
  // Adopted slots have no owner until SetOwner. REQUIRES: nothing allocated.
  void Adopt(std::span<Slot> slots, std::vector<bool>* ok);

  // Size class that serves `bytes` now, or kLargeClass for multi-region
  // items. Allocate() may create an exact class first (so call this after
  // an Allocate of the same size to learn the class it used).
  uint32_t ClassFor(uint64_t bytes) const;

  // ---- Regions and owners (rebalancing) ----
  // Records `owner` for an allocated slot of a size class (not large);
  // Free() forgets it.
  void SetOwner(const Slot& slot, uint32_t owner);
  uint32_t num_regions() const { return static_cast<uint32_t>(regions_.size()); }
  uint32_t RegionOf(uint64_t offset) const { return static_cast<uint32_t>(offset / region_bytes_); }
  // The class region r serves, kFreeRegion or kLargeClass (a large run).
  uint32_t RegionClass(uint32_t r) const;
  uint32_t RegionUsed(uint32_t r) const { return regions_[r].used; }
  uint64_t RegionBytes(uint32_t r) const {
    return r + 1 < regions_.size() ? region_bytes_ : capacity_ - uint64_t{r} * region_bytes_;
  }
  // Appends the owners of region r's allocated slots (kNoOwner for slots
  // allocated without one) to *out. Class regions only.
  void RegionOwners(uint32_t r, std::vector<uint32_t>* out) const;
  // Regions serving class `cls` and slots of it allocated.
  uint32_t ClassRegions(uint32_t cls) const { return class_regions_[cls]; }
  uint64_t ClassUsedSlots(uint32_t cls) const { return class_used_[cls]; }
  static constexpr uint32_t kNoOwner = 0xFFFFFFFFu;
  static constexpr uint32_t kFreeRegion = 0xFFFEu;
  uint64_t ClassBytes(uint32_t size_class) const { return class_bytes_[size_class]; }
  size_t num_classes() const { return class_bytes_.size(); }

  uint64_t capacity() const { return capacity_; }
  uint64_t used_bytes() const { return used_bytes_; }
  uint64_t region_bytes() const { return region_bytes_; }
  uint32_t free_regions() const { return static_cast<uint32_t>(free_regions_.size()); }

  static constexpr uint32_t kLargeClass = 0xFFFFu;

 private:
  SlabAllocator() = default;

  static constexpr int32_t kRegionFree = -1;
  static constexpr int32_t kRegionLarge = -2;  // head of a large run
  static constexpr int32_t kRegionLargeTail = -3;

  struct Region {
    int32_t size_class = kRegionFree;
    uint32_t used = 0;              // allocated slots (or run length for large)
    uint32_t num_slots = 0;
    int32_t partial_pos = -1;       // position in its class's partial list
    std::vector<uint32_t> free_slots;  // slot indices not handed out
    std::vector<uint32_t> owners;      // per slot: SetOwner's value or kNoOwner
  };

  Result<Slot> AllocateLarge(uint64_t bytes);
  uint32_t AddClass(uint64_t bytes);  // appends a class; returns its id
  void ReleaseRegion(uint32_t r);
  void RemovePartial(uint32_t r);
  void AddPartial(uint32_t r);

  uint64_t capacity_ = 0;
  uint64_t region_bytes_ = 0;
  uint64_t alignment_ = 0;
  uint64_t used_bytes_ = 0;
  uint32_t max_exact_classes_ = 0;
  uint32_t exact_classes_ = 0;
  std::vector<uint64_t> class_bytes_;                   // by class id
  std::vector<std::pair<uint64_t, uint32_t>> sorted_;   // (bytes, id) by bytes
  std::vector<Region> regions_;
  std::vector<uint32_t> free_regions_;                  // stack, lowest on top
  std::vector<std::vector<uint32_t>> partial_;          // per class: regions with free slots
  std::vector<uint32_t> class_regions_;                 // per class: regions serving it
  std::vector<uint64_t> class_used_;                    // per class: slots allocated
};

}  // namespace kvtier
