#include "engine_adapter/gpu_plan.h"

#include <algorithm>
#include <string>

namespace kvtier {

namespace {

std::string Num(uint64_t v) { return std::to_string(v); }

bool DtypeMatches(KvDtype pool, DType layout) {
  switch (layout) {
    case DType::kBF16: return pool == KvDtype::kBf16;
    case DType::kFP16: return pool == KvDtype::kFp16;
    case DType::kFP8: return pool == KvDtype::kFp8E4M3 || pool == KvDtype::kFp8E5M2;
  }
  return false;
}

Status Mismatch(const char* field, uint64_t pool, uint64_t layout) {
  return Status::InvalidArgument(std::string("the pool's ") + field + " (" + Num(pool) +
                                 ") differs from the namespace layout's (" + Num(layout) + ")");
}

}  // namespace

Status CheckPoolMatchesLayout(const KvPool& pool, const KvLayout& layout) {
  const KvPoolShape& s = pool.shape;
  if (layout.planes != 2)
    return Status::InvalidArgument("the GPU path moves K and V planes; the layout has " +
                                   Num(layout.planes) + " plane(s)");
  if (s.num_layers != layout.num_layers) return Mismatch("layers", s.num_layers, layout.num_layers);
  if (s.kv_heads != layout.num_kv_heads) return Mismatch("KV heads", s.kv_heads, layout.num_kv_heads);
  if (s.head_dim != layout.head_dim) return Mismatch("head_dim", s.head_dim, layout.head_dim);
  if (s.tokens_per_page != layout.tokens_per_block)
    return Mismatch("tokens per page", s.tokens_per_page, layout.tokens_per_block);
  if (!DtypeMatches(s.dtype, layout.dtype))
    return Status::InvalidArgument(std::string("the pool's dtype ") + KvDtypeName(s.dtype) +
                                   " differs from the namespace layout's " +
                                   DTypeName(layout.dtype));
  if (s.block_bytes() != layout.BlockBytes())
    return Mismatch("block bytes", s.block_bytes(), layout.BlockBytes());
  return Status::OK();
}

namespace {

// Whether an HBM block of GPU `device` (-1: unknown) is in another GPU's tier
// than the one this session opened.
inline bool OtherGpu(const GpuSegments& seg, int device) {
  return device >= 0 && seg.hbm_device >= 0 && device != seg.hbm_device;
}

// The device address of `size` bytes at `offset` of `tier`, or null where
// ResolveSlot fails (ResolveSlot then says why). Plans call it for each of
// thousands of entries, so it builds no Status.
inline void* LocateSlot(const GpuSegments& seg, TierKind tier, uint64_t offset, uint64_t size,
                        int device) {
  uint8_t* base;
  uint64_t bytes;
  if (tier == TierKind::kHost) {
    base = seg.host;
    bytes = seg.host_bytes;
  } else if (tier == TierKind::kHbm && !OtherGpu(seg, device)) {
    base = seg.hbm;
    bytes = seg.hbm_bytes;
  } else {
    return nullptr;
  }
  if (base == nullptr || offset > bytes || size > bytes - offset) return nullptr;
  return base + offset;
}

Status EntryError(const GpuSegments& seg, const char* what, size_t i, const BlockKey& key,
                  TierKind tier, uint64_t offset, uint64_t size, int device,
                  uint64_t block_bytes);

// Entry i of a plan ("block" or "slot") into *slot: its size must be the
// pool's block size; errors name the entry and its key.
inline Status ResolveEntry(const GpuSegments& seg, const char* what, size_t i,
                           const BlockKey& key, TierKind tier, uint64_t offset, uint64_t size,
                           int device, uint64_t block_bytes, void** slot) {
  if (size == block_bytes && (*slot = LocateSlot(seg, tier, offset, size, device)) != nullptr)
    return Status::OK();
  return EntryError(seg, what, i, key, tier, offset, size, device, block_bytes);
}

// Why ResolveEntry failed (kept off its inlined path).
[[gnu::noinline]] Status EntryError(const GpuSegments& seg, const char* what, size_t i,
                                    const BlockKey& key, TierKind tier, uint64_t offset,
                                    uint64_t size, int device, uint64_t block_bytes) {
  auto name = [&] { return std::string(what) + " " + Num(i) + " (" + key.ToHex() + ")"; };
  if (size != block_bytes)
    return Status::InvalidArgument(name() + " is " + Num(size) + " bytes; the pool's blocks are " +
                                   Num(block_bytes));
  const Status st = ResolveSlot(seg, tier, offset, size, device).status();
  return Status(st.code(), name() + ": " + st.message());
}

}  // namespace

Result<void*> ResolveSlot(const GpuSegments& seg, TierKind tier, uint64_t offset, uint64_t size,
                          int device) {
  if (void* slot = LocateSlot(seg, tier, offset, size, device)) return slot;
  switch (tier) {
    case TierKind::kHost:
      if (seg.host == nullptr) return Status::Unavailable("the host segment is not registered");
      break;
    case TierKind::kHbm:
      if (seg.hbm == nullptr)
        return Status::Unavailable("the daemon's HBM tier is not open in this session");
      if (OtherGpu(seg, device))
        return Status::Unavailable("the block is in GPU " + Num(device) +
                                   "'s HBM tier; this session opened GPU " + Num(seg.hbm_device) +
                                   "'s");
      break;
    case TierKind::kNvme:
      return Status::Unavailable("NVMe blocks are not addressable; the daemon promotes them "
                                 "to the host tier before a lease is answered");
  }
  const uint64_t bytes = tier == TierKind::kHost ? seg.host_bytes : seg.hbm_bytes;
  return Status::Corruption("slot [" + Num(offset) + ", +" + Num(size) + ") lies outside the " +
                            TierKindName(tier) + " segment of " + Num(bytes) + " bytes");
}

Status PlanLoad(std::span<const RemoteBlock> blocks, std::span<const uint32_t> pages,
                uint64_t block_bytes, uint32_t num_pages, const GpuSegments& seg,
                GpuPlanScratch* scratch) {
  if (pages.size() > blocks.size())
    return Status::InvalidArgument(Num(pages.size()) + " pages for a lease of " +
                                   Num(blocks.size()) + " blocks");
  scratch->refs.clear();
  scratch->all_hbm = !pages.empty();
  scratch->all_host = !pages.empty();
  scratch->page_bits.assign((uint64_t{num_pages} + 63) / 64, 0);
  for (size_t i = 0; i < pages.size(); ++i) {
    const RemoteBlock& b = blocks[i];
    const uint32_t p = pages[i];
    if (p >= num_pages)
      return Status::InvalidArgument("pages[" + Num(i) + "] = " + Num(p) + " but the pool has " +
                                     Num(num_pages) + " pages");
    uint64_t& word = scratch->page_bits[p / 64];
    const uint64_t bit = uint64_t{1} << (p % 64);
    if (word & bit)
      return Status::InvalidArgument("page " + Num(p) + " is named twice (pages[" + Num(i) + "])");
    word |= bit;
    void* slot;
    KVTIER_RETURN_IF_ERROR(ResolveEntry(seg, "block", i, b.key, b.tier, b.offset, b.size, b.device,
                                        block_bytes, &slot));
    scratch->refs.push_back(BlockRef{slot, p, 0});
    scratch->all_hbm = scratch->all_hbm && b.tier == TierKind::kHbm;
    scratch->all_host = scratch->all_host && b.tier == TierKind::kHost;
  }
  return Status::OK();
}

Status PlanStore(std::span<const ClientTxn::Slot> slots, std::span<const uint32_t> pages,
                 uint64_t block_bytes, uint32_t num_pages, const GpuSegments& seg,
                 GpuPlanScratch* scratch) {
  if (pages.size() != slots.size())
    return Status::InvalidArgument(Num(slots.size()) + " slots but " + Num(pages.size()) +
                                   " pages");
  scratch->refs.clear();
  scratch->slot_index.clear();
  scratch->all_hbm = true;
  scratch->all_host = true;
  for (size_t i = 0; i < slots.size(); ++i) {
    const ClientTxn::Slot& s = slots[i];
    if (pages[i] >= num_pages)
      return Status::InvalidArgument("pages[" + Num(i) + "] = " + Num(pages[i]) +
                                     " but the pool has " + Num(num_pages) + " pages");
    if (s.outcome != ReserveOutcome::kReserved) continue;
    void* slot;
    KVTIER_RETURN_IF_ERROR(ResolveEntry(seg, "slot", i, s.key, s.tier, s.offset, s.size, s.device,
                                        block_bytes, &slot));
    scratch->refs.push_back(BlockRef{slot, pages[i], 0});
    scratch->slot_index.push_back(static_cast<uint32_t>(i));
    scratch->all_hbm = scratch->all_hbm && s.tier == TierKind::kHbm;
    scratch->all_host = scratch->all_host && s.tier == TierKind::kHost;
  }
  scratch->all_hbm = scratch->all_hbm && !scratch->refs.empty();
  scratch->all_host = scratch->all_host && !scratch->refs.empty();
  return Status::OK();
}

StoreOptions StoreChunkOptions(const StoreOptions& options, std::span<const BlockKey> keys,
                               size_t first, size_t n) {
  StoreOptions c = options;
  if (first > 0) c.first_parent = keys[first - 1];
  c.ranges.clear();
  for (const PriorityRange& r : options.ranges) {
    const size_t b = std::max<size_t>(r.begin, first);
    const size_t e = std::min<size_t>(r.end, first + n);
    if (b >= e) continue;
    PriorityRange cut = r;
    cut.begin = static_cast<uint32_t>(b - first);
    cut.end = static_cast<uint32_t>(e - first);
    c.ranges.push_back(cut);
  }
  return c;
}

}  // namespace kvtier
