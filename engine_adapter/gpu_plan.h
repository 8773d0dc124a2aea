// The CPU half of the client's GPU path: checks that an engine's KvPool
// matches a namespace's layout, and turns a lease's blocks or a write
// transaction's slots into the loader's BlockRef batch, given where the
// daemon's host segment and HBM arena are visible to this process's GPU.
//
// Nothing here touches CUDA or dereferences an address, so every check runs
// (and is tested) on machines without a GPU. GpuSession (gpu_session.h) plans
// with these functions, then launches the loader kernels.
//
// Ownership: GpuSegments holds addresses the session owns (a host
// registration, an IPC mapping); plans borrow them. Thread safety: plain
// functions; a GpuPlanScratch is for one thread at a time.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "cache/layout.h"
#include "engine_adapter/client.h"
#include "loader/kv_pool.h"
#include "loader/paged_transfer.h"
#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier {

// Where the daemon's tiers are, as device addresses of this process.
struct GpuSegments {
  uint8_t* host = nullptr;  // the registered mapping of the host segment
  uint64_t host_bytes = 0;
  // The same segment's host address (for DMA by the copy engines); may
  // equal `host` (unified addressing).
  uint8_t* host_cpu = nullptr;
  uint8_t* hbm = nullptr;  // the IPC mapping of the HBM arena; null: not open
  uint64_t hbm_bytes = 0;
  int hbm_device = -1;     // the CUDA device of that arena
};

// Reusable buffers of one planning thread (no allocation once warm).
struct GpuPlanScratch {
  std::vector<BlockRef> refs;
  std::vector<uint32_t> slot_index;  // store: the slot each ref writes
  std::vector<uint64_t> page_bits;   // load: pages already named
  bool all_hbm = false;              // every ref's slot is in the HBM tier
  bool all_host = false;             // every ref's slot is in the host tier
};

// OK, or InvalidArgument naming the first difference between the pool's
// shape and the namespace layout: layers, KV heads, head_dim, tokens per
// page (= tokens per block), dtype (bf16 and fp16 are distinct; fp8 is either
// fp8 format), or a layout with other than two planes (K and V).
Status CheckPoolMatchesLayout(const KvPool& pool, const KvLayout& layout);

// Device address of `size` bytes at `offset` of `tier`. Unavailable: the
// HBM arena is not open, or the tier is NVMe (not addressable). Corruption:
// the range lies outside the segment (the daemon sent a bad location).
// `device`: for HBM slots, the CUDA device whose tier holds them (-1: any);
// a slot in another GPU's tier than the session's is Unavailable.
Result<void*> ResolveSlot(const GpuSegments& seg, TierKind tier, uint64_t offset, uint64_t size,
                          int device = -1);

// Load of lease blocks [0, pages.size()) into pages[i]: scratch->refs[i] =
// {slot of block i, pages[i]}; scratch->all_hbm says whether every slot is
// in the HBM tier. Errors: InvalidArgument (more pages than
// blocks, a page >= num_pages, a page named twice, a block whose size is not
// block_bytes), and ResolveSlot's, each naming the block.
Status PlanLoad(std::span<const RemoteBlock> blocks, std::span<const uint32_t> pages,
                uint64_t block_bytes, uint32_t num_pages, const GpuSegments& seg,
                GpuPlanScratch* scratch);

// The options of keys [first, first + n) of a store of `keys` done in
// chunks (GpuSession::Store): first_parent is the key before them (or
// options.first_parent for the first chunk), and options.ranges are cut to
// them and made relative to `first`.
StoreOptions StoreChunkOptions(const StoreOptions& options, std::span<const BlockKey> keys,
                               size_t first, size_t n);

// Store of pages[i] into the slots of a reservation: for every kReserved
// slot i, scratch->refs gets {slot i, pages[i]} and scratch->slot_index gets
// i (and all_hbm as for loads). Errors: InvalidArgument (pages.size() !=
// slots.size(), a page out of
// range, a reserved slot whose size is not block_bytes), and ResolveSlot's.
Status PlanStore(std::span<const ClientTxn::Slot> slots, std::span<const uint32_t> pages,
                 uint64_t block_bytes, uint32_t num_pages, const GpuSegments& seg,
                 GpuPlanScratch* scratch);

}  // namespace kvtier
