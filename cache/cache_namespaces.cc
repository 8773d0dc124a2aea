// Cache::Namespaces and Cache::EvictNamespace: the operator's view of
// namespaces (kvtier namespaces, kvtier evict, the admin endpoint).
#include <algorithm>

#include "cache/cache.h"
#include "cache/nvme_tier.h"
#include "tiers/slab_allocator.h"

namespace kvtier {

namespace {
constexpr uint8_t kReadyState = static_cast<uint8_t>(BlockState::kReady);
}  // namespace

std::vector<NamespaceUsage> Cache::Namespaces() const {
  std::vector<NamespaceUsage::Tier> tiers;
  for (const auto& tp : tiers_) tiers.push_back({tp->name, 0, 0});
  if (nvme_) tiers.push_back({"nvme", 0, 0});
  // The registry's live namespaces (spec, evictions, holders); blocks,
  // bytes, hits, pins and tiers from one walk of the index.
  std::vector<NamespaceUsage> out;
  std::vector<int64_t> pos(namespaces_->id_bound(), -1);  // id -> index in out
  for (NamespaceInfo& n : namespaces_->List()) {
    if (n.id >= pos.size()) pos.resize(n.id + 1, -1);
    pos[n.id] = static_cast<int64_t>(out.size());
    NamespaceUsage& u = out.emplace_back();
    u.id = n.id;
    u.spec = std::move(n.spec);
    u.evictions = n.evictions;
    u.holders = n.holders;
    u.tiers = tiers;
  }
  index_.ForEachLocked([&](BlockId id) {
    const BlockEntry& e = index_.entry(id);
    if (e.state.load(std::memory_order_acquire) != kReadyState || e.ns >= pos.size() || pos[e.ns] < 0)
      return;
    NamespaceUsage& u = out[pos[e.ns]];
    ++u.blocks;
    u.bytes += e.size;
    u.hits += e.hits;
    if (e.pins.load(std::memory_order_relaxed) != 0) ++u.pinned;
    const size_t t = e.tier == kNvmeTier ? u.tiers.size() - 1 : e.tier;
    if (t >= u.tiers.size()) return;
    ++u.tiers[t].blocks;
    u.tiers[t].bytes += e.size;
  });
  return out;
}

Result<NamespaceEviction> Cache::EvictNamespace(NamespaceId ns) {
  if (!namespaces_->Live(ns)) return Status::NotFound("unknown namespace " + std::to_string(ns));
  NamespaceEviction r;
  // The namespace's blocks by tier; each is re-checked under its tier's
  // mutex and shard mutex, since it may have moved or been pinned since.
  std::vector<std::vector<BlockId>> by_tier(tiers_.size());
  index_.ForEachLocked([&](BlockId id) {
    const BlockEntry& e = index_.entry(id);
    if (e.ns != ns) return;
    if (e.tier < tiers_.size()) by_tier[e.tier].push_back(id);
  });
  for (TierId t = 0; t < by_tier.size(); ++t) {
    TierState& ts = *tiers_[t];
    std::lock_guard<std::mutex> tl(ts.mu);
    for (BlockId id : by_tier[t]) {
      BlockEntry& e = index_.entry(id);
      const Slot slot = e.slot();  // as EvictOneLocked: read before the block may become NVMe-resident
      const uint32_t size = e.size;
      bool erased = false;
      {
        std::lock_guard<std::mutex> l(index_.MutexFor(e.key));
        // The same conditions as EvictOneLocked's victim: readable, unpinned,
        // not being demoted, still in this tier and namespace.
        if (e.ns != ns || e.tier != t) continue;
        if (e.state.load(std::memory_order_relaxed) != kReadyState ||
            e.pins.load(std::memory_order_relaxed) != 0 ||
            (e.flags.load(std::memory_order_relaxed) & kFlagDemoting) != 0) {
          ++r.kept_pinned;
          continue;
        }
        if (nvme_ && (e.flags.load(std::memory_order_relaxed) & kFlagOnNvme) != 0) {
          nvme_->BecomeResidentLocked(e);  // its NVMe copy goes below
        } else {
          index_.EraseLocked(id);
          erased = true;
        }
      }
      ts.policy->Remove(id);
      ts.tier->Free(slot);
      ++ts.evictions;
      if (ts.tier->slabs() != nullptr && slot.size_class != SlabAllocator::kLargeClass)
        ++ts.Class(slot.size_class).evictions;
      ts.evicted_bytes += size;
      --ts.blocks;
      ++r.blocks;
      r.bytes += size;
      // As the other eviction paths: the namespace's count drops when the
      // block leaves the cache (an NVMe-resident one still counts).
      namespaces_->AddEviction(ns);
      if (erased) {
        namespaces_->RemoveBlock(ns, size);
        index_.FreeId(id);
      }
    }
  }
  // Then every NVMe copy of the namespace (those the memory tiers left
  // behind included): extent freed, index record deleted.
  if (nvme_) {
    std::vector<BlockId> on_nvme;
    index_.ForEachLocked([&](BlockId id) {
      const BlockEntry& e = index_.entry(id);
      if (e.ns == ns && (e.tier == kNvmeTier || (e.flags.load(std::memory_order_relaxed) & kFlagOnNvme)))
        on_nvme.push_back(id);
    });
    for (BlockId id : on_nvme) nvme_->DropBlock(id) ? ++r.nvme_blocks : ++r.kept_pinned;
  }
  return r;
}

}  // namespace kvtier
