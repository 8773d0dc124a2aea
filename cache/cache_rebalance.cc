// Cache: making room in a memory tier, across size classes (rebalancing).
// The design is in docs/architecture.md ("One daemon for every model").
#include <vector>

#include "cache/cache.h"
#include "tiers/slab_allocator.h"

namespace kvtier {

namespace {
constexpr uint32_t kNoClass = 0xFFFFFFFFu;
}  // namespace

Result<Slot> Cache::AllocateLocked(TierState& ts, uint64_t bytes, BlockId owner) {
  for (int attempt = 0;; ++attempt) {
    auto slot = ts.tier->Allocate(bytes);
    if (slot.ok()) {
      if (SlabAllocator* sa = ts.tier->slabs()) sa->SetOwner(*slot, owner);
      return slot;
    }
    if (!slot.status().IsResourceExhausted()) return slot;
    if (attempt >= 1 << 20 || !MakeRoomLocked(ts, bytes)) return slot;
  }
}

bool Cache::RegionReleasableLocked(TierState& ts, uint32_t r) {
  SlabAllocator& sa = *ts.tier->slabs();
  if (ts.region_mark.size() != sa.num_regions()) ts.region_mark.assign(sa.num_regions(), 0);
  if (ts.region_mark[r] != 0) return ts.region_mark[r] == 1;
  bool ok = sa.RegionClass(r) < sa.num_classes();
  if (ok) {
    ts.owners.clear();
    sa.RegionOwners(r, &ts.owners);
    for (uint32_t o : ts.owners)
      if (o == SlabAllocator::kNoOwner || !Evictable(o)) {
        ok = false;
        break;
      }
  }
  ts.region_mark[r] = ok ? 1 : 2;
  ts.marked.push_back(r);
  return ok;
}

void Cache::ClearRegionMarks(TierState& ts) {
  for (uint32_t r : ts.marked) ts.region_mark[r] = 0;
  ts.marked.clear();
}

bool Cache::ReleaseRegionLocked(TierState& ts, uint32_t r) {
  SlabAllocator& sa = *ts.tier->slabs();
  const uint32_t cls = sa.RegionClass(r);
  std::vector<uint32_t> owners;
  sa.RegionOwners(r, &owners);
  for (uint32_t o : owners)
    if (o != SlabAllocator::kNoOwner) (void)EvictBlockLocked(ts, o);
  if (sa.RegionClass(r) != SlabAllocator::kFreeRegion) return false;
  ++ts.regions_moved;
  if (cls < sa.num_classes()) ++ts.Class(cls).regions_moved;
  return true;
}

bool Cache::MakeRoomLocked(TierState& ts, uint64_t bytes) {
  SlabAllocator* sa = ts.tier->slabs();
  if (sa == nullptr) return EvictOneLocked(ts, bytes);
  const uint32_t cls = sa->ClassFor(bytes);
  if (cls == SlabAllocator::kLargeClass) return EvictOneLocked(ts, bytes);
  // Shares follow demand: a class whose regions fall half a region or more
  // short of its share of the recent demand takes a region from the class
  // most above its own share (its coldest releasable region: that of its
  // first victim in the policy's order); any other class evicts its own
  // blocks in the policy's order.
  const uint32_t donor = DonorClassLocked(ts, cls);
  if (donor == kNoClass) {
    BlockId own = ts.policy->PickVictim([&](BlockId v) {
      return index_.entry(v).size_class == cls && Evictable(v);
    });
    if (own != kNoBlock) {
      (void)EvictBlockLocked(ts, own);
      return true;  // or it became pinned meanwhile: the caller tries again
    }
  } else {
    BlockId v = ts.policy->PickVictim([&](BlockId b) {
      const BlockEntry& e = index_.entry(b);
      return e.size_class == donor && Evictable(b) &&
             RegionReleasableLocked(ts, sa->RegionOf(e.offset));
    });
    if (v != kNoBlock) {
      (void)ReleaseRegionLocked(ts, sa->RegionOf(index_.entry(v).offset));
      ClearRegionMarks(ts);
      return true;
    }
  }
  // Otherwise (the class has nothing of its own to evict, or the donor
  // nothing releasable): the policy's first victim that gives room: a block of the wanted class
  // (its slot is reused), a large item (frees whole regions), or a block of
  // another class whose region can be emptied now. Following the policy's
  // order across classes is what moves memory to where the demand is: a
  // class whose blocks are cold loses regions to one whose blocks are hot.
  BlockId victim = ts.policy->PickVictim([&](BlockId v) {
    if (!Evictable(v)) return false;
    const BlockEntry& e = index_.entry(v);
    if (e.size_class == cls || e.size_class == SlabAllocator::kLargeClass) return true;
    return RegionReleasableLocked(ts, sa->RegionOf(e.offset));
  });
  bool freed = false;
  if (victim != kNoBlock) {
    const BlockEntry& e = index_.entry(victim);
    if (e.size_class == cls || e.size_class == SlabAllocator::kLargeClass) {
      (void)EvictBlockLocked(ts, victim);
      freed = true;  // or it became pinned meanwhile: the caller tries again
    } else {
      (void)ReleaseRegionLocked(ts, sa->RegionOf(e.offset));
      freed = true;
    }
  } else {
    // The policy's bounded scan found nothing (its first candidates are all
    // pinned or share regions with pinned blocks): look at every region.
    for (uint32_t r = 0; r < sa->num_regions() && !freed; ++r) {
      const uint32_t rc = sa->RegionClass(r);
      if (rc >= sa->num_classes()) continue;
      if (rc == cls) {
        ts.owners.clear();
        sa->RegionOwners(r, &ts.owners);
        for (uint32_t o : ts.owners)
          if (o != SlabAllocator::kNoOwner && Evictable(o) && EvictBlockLocked(ts, o)) {
            freed = true;
            break;
          }
      } else if (RegionReleasableLocked(ts, r)) {
        freed = ReleaseRegionLocked(ts, r);
      }
    }
  }
  ClearRegionMarks(ts);
  return freed;
}

void Cache::NoteDemandLocked(TierState& ts, uint32_t cls, uint64_t bytes) {
  if (cls == SlabAllocator::kLargeClass) return;
  ts.Class(cls).demand += bytes;
  ts.demand_total += bytes;
  // Halve every class's demand once the total reaches the tier's capacity:
  // demand is that of the last few tier-fulls of traffic.
  if (ts.demand_total >= ts.tier->capacity_bytes()) {
    for (auto& c : ts.classes) c.demand /= 2;
    ts.demand_total /= 2;
  }
}

uint32_t Cache::DonorClassLocked(TierState& ts, uint32_t cls) {
  SlabAllocator& sa = *ts.tier->slabs();
  if (ts.demand_total == 0 || cls >= ts.classes.size()) return kNoClass;
  const double cap = static_cast<double>(sa.capacity());
  const double region = static_cast<double>(sa.region_bytes());
  double total = 0;
  for (const auto& c : ts.classes) total += static_cast<double>(c.demand);
  if (total <= 0) return kNoClass;
  auto target = [&](uint32_t c) { return cap * static_cast<double>(ts.classes[c].demand) / total; };
  auto held = [&](uint32_t c) { return region * sa.ClassRegions(c); };
  // Half a region of hysteresis: a class that is short of its share by
  // less than that keeps evicting its own blocks.
  if (target(cls) - held(cls) < region / 2) return kNoClass;
  uint32_t donor = kNoClass;
  double most = 0;
  for (uint32_t c = 0; c < sa.num_classes(); ++c) {
    if (c == cls || sa.ClassRegions(c) == 0) continue;
    const double over = held(c) - (c < ts.classes.size() ? target(c) : 0.0);
    if (over > most) {
      most = over;
      donor = c;
    }
  }
  return donor;
}

}  // namespace kvtier
