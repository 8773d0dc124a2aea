// PagedTransfer: one batch of KV blocks to move between canonical tier slots
// and an engine's paged pool. CpuCopy() and GpuCopier execute the same
// descriptor; this header is CPU-safe.
//
// Each block names its canonical slot (block_bytes contiguous bytes) and the
// engine page it fills or comes from. A load writes pool pages from slots
// (before prefill); a store writes slots from pool pages (after prefill). A
// layer range [layer_begin, layer_end) moves only those layers of every block
// (layer-wise loading: an engine can start on layer 0 while later layers
// stream).
//
// Checksums (tiers/checksum.h) are computed inside the copy over the
// canonical bytes moved: checksum_sums[i] receives the modular sum of the
// per-word terms of block i's bytes in the layer range. Sums of several layer
// ranges add up to the sum of the whole block; close it with
// checksum::Finalize(sum, pool->block_bytes()) once every range is done.
//
// Ownership: the descriptor borrows everything (pool, block list, slots,
// checksum array); all must outlive the copy. Thread safety: a value.
#pragma once

#include <cstdint>
#include <limits>
#include <span>

#include "loader/kv_pool.h"
#include "tiers/status.h"

namespace kvtier {

enum class TransferDirection : uint8_t {
  kLoad = 0,   // slot -> pool page
  kStore = 1,  // pool page -> slot
};

// One block of a batch. 16 bytes; GPU kernels read this exact layout.
struct BlockRef {
  void* slot = nullptr;  // canonical block, 16-byte aligned, accessible to the copier
  uint32_t page = 0;     // engine page index, < pool.shape.num_pages
  // Ignored on input. The GPU copier's uploaded copy of a batch, which it may
  // reorder, keeps here each block's place in the caller's list (the index of
  // its checksum sum).
  uint32_t sum_index = 0;
};
static_assert(sizeof(BlockRef) == 16);

inline constexpr uint32_t kAllLayers = std::numeric_limits<uint32_t>::max();

struct PagedTransfer {
  const KvPool* pool = nullptr;
  std::span<const BlockRef> blocks;
  TransferDirection direction = TransferDirection::kLoad;

  // Layers [layer_begin, layer_end) of every block; kAllLayers = num_layers.
  uint32_t layer_begin = 0;
  uint32_t layer_end = kAllLayers;

  // blocks.size() entries, or nullptr for no checksums. Accessible to the
  // copier (host memory for CpuCopy; device or mapped host memory for the GPU).
  uint64_t* checksum_sums = nullptr;
  // false: the copy sets checksum_sums[i] to this range's sum.
  // true:  the copy adds this range's sum to checksum_sums[i] (later layer
  //        ranges of one transfer).
  bool accumulate_checksums = false;
  // GPU copies with checksum_sums: pinned host memory (blocks.size()
  // entries) the sums are copied to once final, as part of the transfer, so
  // that they are there when it completes. A staged store through the copy
  // engines copies them on its DMA stream behind its last DMA: the caller's
  // stream then holds no device-to-host copy of its own, which would queue on
  // the copy engines behind that DMA and hold up the next transfer's gather.
  // nullptr: the sums stay on the device.
  uint64_t* checksum_sums_host = nullptr;

  // The resolved end of the layer range.
  uint32_t resolved_layer_end() const {
    return layer_end == kAllLayers && pool ? pool->shape.num_layers : layer_end;
  }
};

// OK, or InvalidArgument: no pool or an invalid one, an empty or reversed
// layer range, a slot that is null or not 16-byte aligned, a page index out of
// range. Costs O(blocks). REQUIRES of the caller, not checked: no two blocks
// of a load name the same page, and slots do not overlap pool pages.
Status ValidateTransfer(const PagedTransfer& transfer);

// Compares finalized sums with the checksums a block was stored with.
// OK, InvalidArgument (sizes differ) or Corruption naming the first block
// whose checksum differs (the caller treats that block as a miss).
Status VerifyBlockChecksums(std::span<const uint64_t> sums, std::span<const uint64_t> expected,
                            uint64_t block_bytes);

}  // namespace kvtier
