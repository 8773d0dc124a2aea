// NvmeExtentAllocator: see tiers/nvme_extent_allocator.h.
#include "tiers/nvme_extent_allocator.h"

#include <algorithm>
#include <bit>
#include <string>

#include "tiers/nvme_format.h"

namespace kvtier {

Result<NvmeExtentAllocator> NvmeExtentAllocator::Create(const NvmeAllocatorOptions& o) {
  if (o.data_offset % kNvmeBlockBytes != 0 || o.region_bytes == 0 ||
      o.region_bytes % kNvmeBlockBytes != 0) {
    return Status::InvalidArgument("extent allocator: data_offset and region_bytes must be "
                                   "non-zero multiples of 4 KiB");
  }
  uint64_t regions = o.data_bytes / o.region_bytes;
  if (regions == 0) {
    return Status::InvalidArgument("extent allocator: data area holds no whole region of " +
                                   std::to_string(o.region_bytes) + " bytes");
  }
  if (regions > 0x7FFFFFFFu) return Status::InvalidArgument("extent allocator: too many regions");
  std::vector<uint64_t> classes;
  for (uint64_t c : o.class_bytes) {
    if (c == 0 || c % kNvmeBlockBytes != 0) {
      return Status::InvalidArgument("extent allocator: class sizes must be non-zero multiples "
                                     "of 4 KiB");
    }
    if (c <= o.region_bytes) classes.push_back(c);
  }
  std::sort(classes.begin(), classes.end());
  classes.erase(std::unique(classes.begin(), classes.end()), classes.end());
  if (classes.empty()) return Status::InvalidArgument("extent allocator: no size class fits a region");

  NvmeExtentAllocator a;
  a.data_offset_ = o.data_offset;
  a.region_bytes_ = o.region_bytes;
  a.class_bytes_ = std::move(classes);
  a.partial_head_.assign(a.class_bytes_.size(), -1);
  a.regions_.resize(regions);
  a.free_bits_.assign((regions + 63) / 64, 0);
  for (uint64_t r = 0; r < regions; ++r) a.free_bits_[r / 64] |= 1ull << (r % 64);
  a.free_region_count_ = static_cast<uint32_t>(regions);
  return a;
}

uint32_t NvmeExtentAllocator::ClassFor(uint64_t needed) const {
  auto it = std::lower_bound(class_bytes_.begin(), class_bytes_.end(), needed);
  if (it == class_bytes_.end()) return kLarge;
  return static_cast<uint32_t>(it - class_bytes_.begin());
}

uint64_t NvmeExtentAllocator::SlotBytes(uint64_t needed) const {
  uint32_t c = ClassFor(needed);
  return c == kLarge ? RunRegions(needed) * region_bytes_ : class_bytes_[c];
}

void NvmeExtentAllocator::TakeRegion(uint32_t r) {
  free_bits_[r / 64] &= ~(1ull << (r % 64));
  --free_region_count_;
}

void NvmeExtentAllocator::ReleaseRegion(uint32_t r) {
  Region& reg = regions_[r];
  reg.cls = kFree;
  reg.used = 0;
  reg.slots = 0;
  free_bits_[r / 64] |= 1ull << (r % 64);
  ++free_region_count_;
  free_hint_ = std::min<size_t>(free_hint_, r / 64);
}

int64_t NvmeExtentAllocator::FindFreeRegion() {
  for (size_t w = free_hint_; w < free_bits_.size(); ++w) {
    if (free_bits_[w] != 0) {
      free_hint_ = w;
      return static_cast<int64_t>(w * 64 + std::countr_zero(free_bits_[w]));
    }
  }
  free_hint_ = free_bits_.size();
  return -1;
}

int64_t NvmeExtentAllocator::FindFreeRun(uint32_t count) {
  uint32_t run = 0;
  for (uint32_t r = 0; r < regions_.size(); ++r) {
    if (free_bits_[r / 64] & (1ull << (r % 64))) {
      if (++run == count) return static_cast<int64_t>(r + 1 - count);
    } else {
      run = 0;
    }
  }
  return -1;
}

void NvmeExtentAllocator::Carve(uint32_t r, uint32_t cls) {
  Region& reg = regions_[r];
  TakeRegion(r);
  reg.cls = static_cast<int32_t>(cls);
  reg.used = 0;
  reg.slots = static_cast<uint32_t>(region_bytes_ / class_bytes_[cls]);
  reg.bits.assign((reg.slots + 63) / 64, 0);
  AddPartial(r);
}

void NvmeExtentAllocator::AddPartial(uint32_t r) {
  Region& reg = regions_[r];
  if (reg.in_partial) return;
  int32_t& head = partial_head_[reg.cls];
  reg.prev = -1;
  reg.next = head;
  if (head >= 0) regions_[head].prev = static_cast<int32_t>(r);
  head = static_cast<int32_t>(r);
  reg.in_partial = true;
}

void NvmeExtentAllocator::RemovePartial(uint32_t r) {
  Region& reg = regions_[r];
  if (!reg.in_partial) return;
  if (reg.prev >= 0) {
    regions_[reg.prev].next = reg.next;
  } else {
    partial_head_[reg.cls] = reg.next;
  }
  if (reg.next >= 0) regions_[reg.next].prev = reg.prev;
  reg.prev = reg.next = -1;
  reg.in_partial = false;
}

void NvmeExtentAllocator::SetSlot(Region& reg, uint32_t slot) {
  reg.bits[slot / 64] |= 1ull << (slot % 64);
  ++reg.used;
  used_bytes_ += class_bytes_[reg.cls];
  ++allocated_extents_;
}

Result<uint64_t> NvmeExtentAllocator::Allocate(uint64_t needed) {
  if (needed == 0 || needed > capacity_bytes()) {
    return Status::InvalidArgument("extent allocator: size " + std::to_string(needed) +
                                   " is 0 or larger than the data area");
  }
  uint32_t c = ClassFor(needed);
  if (c == kLarge) {
    auto count = static_cast<uint32_t>(RunRegions(needed));
    int64_t first = FindFreeRun(count);
    if (first < 0) return Status::ResourceExhausted("nvme: no run of free regions left");
    for (uint32_t i = 0; i < count; ++i) {
      TakeRegion(static_cast<uint32_t>(first) + i);
      regions_[first + i].cls = i == 0 ? kLargeHead : kLargeTail;
    }
    regions_[first].used = count;
    used_bytes_ += count * region_bytes_;
    ++allocated_extents_;
    return RegionOffset(static_cast<uint32_t>(first));
  }
  int32_t r = partial_head_[c];
  if (r < 0) {
    int64_t fr = FindFreeRegion();
    if (fr < 0) return Status::ResourceExhausted("nvme: no free slot of the class and no free region");
    r = static_cast<int32_t>(fr);
    Carve(static_cast<uint32_t>(r), c);
  }
  Region& reg = regions_[r];
  uint32_t slot = 0;
  for (size_t w = 0; w < reg.bits.size(); ++w) {
    if (~reg.bits[w] != 0) {
      slot = static_cast<uint32_t>(w * 64 + std::countr_one(reg.bits[w]));
      break;
    }
  }
  SetSlot(reg, slot);
  if (reg.used == reg.slots) RemovePartial(static_cast<uint32_t>(r));
  return RegionOffset(static_cast<uint32_t>(r)) + slot * class_bytes_[c];
}

Status NvmeExtentAllocator::Free(uint64_t offset, uint64_t needed) {
  if (needed == 0 || offset < data_offset_ || offset >= data_offset_ + capacity_bytes()) {
    return Status::InvalidArgument("extent allocator: free of an offset outside the data area");
  }
  auto r = static_cast<uint32_t>((offset - data_offset_) / region_bytes_);
  uint64_t within = offset - RegionOffset(r);
  Region& reg = regions_[r];
  uint32_t c = ClassFor(needed);
  if (c == kLarge) {
    uint64_t count = RunRegions(needed);
    if (reg.cls != kLargeHead || within != 0 || reg.used != count) {
      return Status::InvalidArgument("extent allocator: free of a large extent not allocated");
    }
    for (uint32_t i = 0; i < count; ++i) ReleaseRegion(r + i);
    used_bytes_ -= count * region_bytes_;
    --allocated_extents_;
    return Status::OK();
  }
  uint64_t cb = class_bytes_[c];
  if (reg.cls != static_cast<int32_t>(c) || within % cb != 0) {
    return Status::InvalidArgument("extent allocator: free of an extent of another class");
  }
  auto slot = static_cast<uint32_t>(within / cb);
  if (slot >= reg.slots || !(reg.bits[slot / 64] & (1ull << (slot % 64)))) {
    return Status::InvalidArgument("extent allocator: double free");
  }
  reg.bits[slot / 64] &= ~(1ull << (slot % 64));
  --reg.used;
  used_bytes_ -= cb;
  --allocated_extents_;
  if (reg.used == 0) {
    RemovePartial(r);
    ReleaseRegion(r);
  } else {
    AddPartial(r);
  }
  return Status::OK();
}

Status NvmeExtentAllocator::MarkAllocated(uint64_t offset, uint64_t needed) {
  uint64_t slot_bytes = SlotBytes(needed);
  if (needed == 0 || offset < data_offset_ || offset % kNvmeBlockBytes != 0 ||
      offset - data_offset_ + slot_bytes > capacity_bytes()) {
    return Status::InvalidArgument("extent allocator: extent outside the data area");
  }
  auto r = static_cast<uint32_t>((offset - data_offset_) / region_bytes_);
  uint64_t within = offset - RegionOffset(r);
  uint32_t c = ClassFor(needed);
  if (c == kLarge) {
    if (within != 0) {
      return Status::InvalidArgument("extent allocator: large extent not at a region start");
    }
    auto count = static_cast<uint32_t>(RunRegions(needed));
    for (uint32_t i = 0; i < count; ++i) {
      if (regions_[r + i].cls != kFree) {
        return Status::Rejected("extent allocator: large extent overlaps allocated space");
      }
    }
    for (uint32_t i = 0; i < count; ++i) {
      TakeRegion(r + i);
      regions_[r + i].cls = i == 0 ? kLargeHead : kLargeTail;
    }
    regions_[r].used = count;
    used_bytes_ += count * region_bytes_;
    ++allocated_extents_;
    return Status::OK();
  }
  uint64_t cb = class_bytes_[c];
  if (within % cb != 0 || within / cb >= region_bytes_ / cb) {
    return Status::InvalidArgument("extent allocator: offset is not a slot of its size class");
  }
  Region& reg = regions_[r];
  if (reg.cls == kFree) {
    Carve(r, c);
  } else if (reg.cls != static_cast<int32_t>(c)) {
    return Status::Rejected("extent allocator: region serves another class");
  }
  auto slot = static_cast<uint32_t>(within / cb);
  if (reg.bits[slot / 64] & (1ull << (slot % 64))) {
    return Status::Rejected("extent allocator: slot already allocated");
  }
  SetSlot(reg, slot);
  if (reg.used == reg.slots) RemovePartial(r);
  return Status::OK();
}

}  // namespace kvtier
