#include "tiers/slab_allocator.h"

#include <algorithm>
#include <string>

namespace kvtier {

namespace {
uint64_t AlignUp(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }
}  // namespace

Result<SlabAllocator> SlabAllocator::Create(const SlabOptions& o) {
  if (o.alignment == 0 || (o.alignment & (o.alignment - 1)) != 0)
    return Status::InvalidArgument("slab alignment must be a power of two");
  if (o.region_bytes == 0 || o.region_bytes % o.alignment != 0)
    return Status::InvalidArgument("slab region size must be a non-zero multiple of the alignment");
  if (o.capacity < o.region_bytes)
    return Status::InvalidArgument("capacity " + std::to_string(o.capacity) +
                                   " is smaller than one region (" +
                                   std::to_string(o.region_bytes) + " bytes)");
  if (!(o.growth > 1.0)) return Status::InvalidArgument("size-class growth must be > 1");
  if (o.min_slot == 0 || o.min_slot > o.region_bytes)
    return Status::InvalidArgument("min slot must be in (0, region size]");

  SlabAllocator a;
  a.region_bytes_ = o.region_bytes;
  a.alignment_ = o.alignment;
  a.max_exact_classes_ = o.max_exact_classes;
  // Whole aligned bytes: a tail shorter than a region is a region of its own.
  a.capacity_ = o.capacity / o.alignment * o.alignment;
  uint64_t num_regions = (a.capacity_ + o.region_bytes - 1) / o.region_bytes;
  for (uint64_t c = AlignUp(o.min_slot, o.alignment);;) {
    a.AddClass(c);
    if (c >= o.region_bytes) break;
    uint64_t next = AlignUp(static_cast<uint64_t>(static_cast<double>(c) * o.growth), o.alignment);
    if (next <= c) next = c + o.alignment;
    c = std::min(next, o.region_bytes);
  }
  a.regions_.resize(num_regions);
  a.free_regions_.reserve(num_regions);
  for (uint64_t r = num_regions; r-- > 0;) a.free_regions_.push_back(static_cast<uint32_t>(r));
  return a;
}

uint32_t SlabAllocator::AddClass(uint64_t bytes) {
  const uint32_t id = static_cast<uint32_t>(class_bytes_.size());
  class_bytes_.push_back(bytes);
  sorted_.insert(std::lower_bound(sorted_.begin(), sorted_.end(), std::make_pair(bytes, 0u)),
                 std::make_pair(bytes, id));
  partial_.emplace_back();
  class_regions_.push_back(0);
  class_used_.push_back(0);
  return id;
}

uint32_t SlabAllocator::ClassFor(uint64_t bytes) const {
  if (bytes > region_bytes_) return kLargeClass;
  auto it = std::lower_bound(sorted_.begin(), sorted_.end(), std::make_pair(bytes, 0u));
  return it->second;  // the last class is region_bytes_ >= bytes
}

void SlabAllocator::AddPartial(uint32_t r) {
  Region& reg = regions_[r];
  auto& list = partial_[reg.size_class];
  reg.partial_pos = static_cast<int32_t>(list.size());
  list.push_back(r);
}

void SlabAllocator::RemovePartial(uint32_t r) {
  Region& reg = regions_[r];
  auto& list = partial_[reg.size_class];
  uint32_t last = list.back();
  list[reg.partial_pos] = last;
  regions_[last].partial_pos = reg.partial_pos;
  list.pop_back();
  reg.partial_pos = -1;
}

Result<Slot> SlabAllocator::Allocate(uint64_t bytes) {
  if (bytes == 0) return Status::InvalidArgument("cannot allocate 0 bytes");
  if (bytes > capacity_)
    return Status::InvalidArgument("item of " + std::to_string(bytes) +
                                   " bytes exceeds the tier capacity of " +
                                   std::to_string(capacity_));
  uint32_t cls = ClassFor(bytes);
  if (cls == kLargeClass) return AllocateLarge(bytes);
  const uint64_t exact = AlignUp(bytes, alignment_);
  if (class_bytes_[cls] != exact && exact_classes_ < max_exact_classes_) {
    cls = AddClass(exact);
    ++exact_classes_;
  }

  uint32_t r;
  if (!partial_[cls].empty()) {
    r = partial_[cls].back();
  } else {
    if (free_regions_.empty()) return Status::ResourceExhausted("no free slot or region");
    r = free_regions_.back();
    if (RegionBytes(r) < class_bytes_[cls]) {
      // The short tail region cannot hold this class: any full-length one.
      auto it = std::find_if(free_regions_.begin(), free_regions_.end(),
                             [&](uint32_t x) { return RegionBytes(x) >= class_bytes_[cls]; });
      if (it == free_regions_.end()) return Status::ResourceExhausted("no free slot or region");
      r = *it;
      free_regions_.erase(it);
    } else {
      free_regions_.pop_back();
    }
    Region& reg = regions_[r];
    reg.size_class = static_cast<int32_t>(cls);
    reg.used = 0;
    reg.num_slots = static_cast<uint32_t>(RegionBytes(r) / class_bytes_[cls]);
    reg.free_slots.resize(reg.num_slots);
    // Hand out low offsets first: pop from the back.
    for (uint32_t i = 0; i < reg.num_slots; ++i) reg.free_slots[i] = reg.num_slots - 1 - i;
    reg.owners.assign(reg.num_slots, kNoOwner);
    ++class_regions_[cls];
    AddPartial(r);
  }
  Region& reg = regions_[r];
  uint32_t idx = reg.free_slots.back();
  reg.free_slots.pop_back();
  ++reg.used;
  if (reg.free_slots.empty()) RemovePartial(r);
  used_bytes_ += class_bytes_[cls];
  ++class_used_[cls];
  return Slot{static_cast<uint64_t>(r) * region_bytes_ + idx * class_bytes_[cls], bytes, cls};
}

Result<Slot> SlabAllocator::AllocateLarge(uint64_t bytes) {
  uint32_t need = static_cast<uint32_t>((bytes + region_bytes_ - 1) / region_bytes_);
  uint32_t run = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    run = regions_[r].size_class == kRegionFree && RegionBytes(r) == region_bytes_ ? run + 1 : 0;
    if (run == need) {
      uint32_t first = r + 1 - need;
      for (uint32_t i = first; i <= r; ++i) {
        regions_[i].size_class = i == first ? kRegionLarge : kRegionLargeTail;
        free_regions_.erase(std::find(free_regions_.begin(), free_regions_.end(), i));
      }
      regions_[first].used = need;
      used_bytes_ += static_cast<uint64_t>(need) * region_bytes_;
      return Slot{static_cast<uint64_t>(first) * region_bytes_, bytes, kLargeClass};
    }
  }
  return Status::ResourceExhausted("no run of " + std::to_string(need) + " free regions");
}

void SlabAllocator::ReleaseRegion(uint32_t r) {
  Region& reg = regions_[r];
  if (reg.size_class >= 0) --class_regions_[reg.size_class];
  reg.size_class = kRegionFree;
  reg.used = 0;
  reg.num_slots = 0;
  reg.free_slots.clear();
  reg.free_slots.shrink_to_fit();
  reg.owners.clear();
  reg.owners.shrink_to_fit();
  // Keep the stack sorted descending so that low regions are reused first.
  auto it = std::lower_bound(free_regions_.begin(), free_regions_.end(), r, std::greater<>());
  free_regions_.insert(it, r);
}

void SlabAllocator::Free(const Slot& slot) {
  uint32_t r = static_cast<uint32_t>(slot.offset / region_bytes_);
  if (slot.size_class == kLargeClass) {
    uint32_t n = regions_[r].used;
    used_bytes_ -= static_cast<uint64_t>(n) * region_bytes_;
    for (uint32_t i = r; i < r + n; ++i) ReleaseRegion(i);
    return;
  }
  Region& reg = regions_[r];
  uint64_t cb = class_bytes_[slot.size_class];
  uint32_t idx = static_cast<uint32_t>((slot.offset - static_cast<uint64_t>(r) * region_bytes_) / cb);
  bool was_full = reg.free_slots.empty();
  reg.free_slots.push_back(idx);
  reg.owners[idx] = kNoOwner;
  --reg.used;
  used_bytes_ -= cb;
  --class_used_[slot.size_class];
  if (reg.used == 0) {
    if (!was_full) RemovePartial(r);
    ReleaseRegion(r);
  } else if (was_full) {
    AddPartial(r);
  }
}

void SlabAllocator::SetOwner(const Slot& slot, uint32_t owner) {
  if (slot.size_class == kLargeClass) return;
  uint32_t r = RegionOf(slot.offset);
  Region& reg = regions_[r];
  uint64_t cb = class_bytes_[slot.size_class];
  reg.owners[(slot.offset - static_cast<uint64_t>(r) * region_bytes_) / cb] = owner;
}

uint32_t SlabAllocator::RegionClass(uint32_t r) const {
  int32_t c = regions_[r].size_class;
  if (c >= 0) return static_cast<uint32_t>(c);
  return c == kRegionFree ? kFreeRegion : kLargeClass;
}

void SlabAllocator::RegionOwners(uint32_t r, std::vector<uint32_t>* out) const {
  const Region& reg = regions_[r];
  if (reg.size_class < 0 || reg.used == 0) return;
  // Allocated slots are those not on the free list.
  std::vector<uint8_t> is_free(reg.num_slots, 0);
  for (uint32_t i : reg.free_slots) is_free[i] = 1;
  for (uint32_t i = 0; i < reg.num_slots; ++i)
    if (!is_free[i]) out->push_back(reg.owners[i]);
}

void SlabAllocator::Adopt(std::span<Slot> slots, std::vector<bool>* ok) {
  ok->assign(slots.size(), false);
  std::vector<size_t> order(slots.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](size_t a, size_t b) { return slots[a].offset < slots[b].offset; });
  const uint32_t num_regions = static_cast<uint32_t>(regions_.size());
  std::vector<std::vector<bool>> taken(num_regions);  // per carved region: slot in use
  auto take_region = [&](uint32_t r) {
    free_regions_.erase(std::find(free_regions_.begin(), free_regions_.end(), r));
  };
  for (size_t i : order) {
    Slot& s = slots[i];
    if (s.bytes == 0 || s.bytes > capacity_ || s.offset >= capacity_) continue;
    const uint32_t r = static_cast<uint32_t>(s.offset / region_bytes_);
    if (ClassFor(s.bytes) == kLargeClass) {
      if (s.size_class != kLargeClass) continue;
      const uint32_t need = static_cast<uint32_t>((s.bytes + region_bytes_ - 1) / region_bytes_);
      if (s.offset % region_bytes_ != 0 || r + need > num_regions) continue;
      bool all_free = true;
      for (uint32_t k = r; k < r + need; ++k)
        all_free &= regions_[k].size_class == kRegionFree && RegionBytes(k) == region_bytes_;
      if (!all_free) continue;
      for (uint32_t k = r; k < r + need; ++k) {
        regions_[k].size_class = k == r ? kRegionLarge : kRegionLargeTail;
        take_region(k);
      }
      regions_[r].used = need;
      used_bytes_ += static_cast<uint64_t>(need) * region_bytes_;
      (*ok)[i] = true;
      continue;
    }
    if (s.size_class == kLargeClass) continue;
    // The class Allocate() would use for these bytes now: the exact class,
    // created as Allocate() creates it (lazily, up to max_exact_classes),
    // else the geometric one. Class ids are this allocator's (exact classes
    // are numbered in the order they are created, which differs between
    // runs), so the slot's size_class is rewritten to it.
    const uint64_t exact = AlignUp(s.bytes, alignment_);
    uint32_t cls = ClassFor(s.bytes);
    const bool create = class_bytes_[cls] != exact && exact_classes_ < max_exact_classes_;
    const uint64_t cb = create ? exact : class_bytes_[cls];
    const uint64_t in = s.offset - static_cast<uint64_t>(r) * region_bytes_;
    if (in % cb != 0 || in / cb >= RegionBytes(r) / cb) continue;
    Region& reg = regions_[r];
    if (reg.size_class != kRegionFree &&
        (create || reg.size_class != static_cast<int32_t>(cls) || taken[r].empty()))
      continue;  // another class, or a large run
    if (create) {
      cls = AddClass(exact);
      ++exact_classes_;
    }
    if (reg.size_class == kRegionFree) {
      reg.size_class = static_cast<int32_t>(cls);
      reg.used = 0;
      reg.num_slots = static_cast<uint32_t>(RegionBytes(r) / cb);
      reg.owners.assign(reg.num_slots, kNoOwner);
      taken[r].assign(reg.num_slots, false);
      ++class_regions_[cls];
      take_region(r);
    }
    const uint32_t idx = static_cast<uint32_t>(in / cb);
    if (taken[r][idx]) continue;
    taken[r][idx] = true;
    ++reg.used;
    used_bytes_ += cb;
    ++class_used_[cls];
    s.size_class = cls;
    (*ok)[i] = true;
  }
  // Free lists of the carved regions: low offsets handed out first.
  for (uint32_t r = 0; r < num_regions; ++r) {
    if (taken[r].empty()) continue;
    Region& reg = regions_[r];
    reg.free_slots.clear();
    for (uint32_t k = reg.num_slots; k-- > 0;)
      if (!taken[r][k]) reg.free_slots.push_back(k);
    if (!reg.free_slots.empty()) AddPartial(r);
  }
}

bool SlabAllocator::FreeingHelps(const Slot& victim, uint64_t bytes) const {
  uint32_t cls = ClassFor(bytes);
  if (cls == kLargeClass) return true;  // any freed region may complete a run
  if (victim.size_class == cls) return true;
  if (victim.size_class == kLargeClass) return true;  // frees whole regions
  const Region& reg = regions_[victim.offset / region_bytes_];
  return reg.used == 1;  // its region becomes free for any class
}

}  // namespace kvtier
