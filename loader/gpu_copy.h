// GpuCopier: executes PagedTransfers on the GPU, one kernel launch per batch
// (or per layer group in layer-wise mode), checksums computed in the copy.
//
// The kernel reads and writes 16-byte vectors, consecutive threads on
// consecutive canonical bytes, so each warp moves 512 contiguous slot bytes;
// each thread keeps four loads in flight before it stores. Slots may be device
// memory or mapped pinned host memory (PinnedHostBuffer, HostRegistration):
// the same kernel then streams over PCIe without a staging copy. Pool layer
// bases travel by value as kernel parameters; the block list is uploaded once
// per launch from a pinned staging ring (no allocation on the hot path).
//
// Usage (prepare -> post -> wait):
//   auto copier = GpuCopier::Create({}).value();
//   PagedTransfer t{&pool, blocks, TransferDirection::kLoad};
//   t.checksum_sums = sums_on_device;
//   KVTIER_RETURN_IF_ERROR(copier->Copy(t, stream));
//   // ... later: GpuSynchronize(stream), then checksum::Finalize(sums[i], ...)
// Layer-wise:
//   auto events = LayerEvents::Create(pool.shape.num_layers).value();
//   copier->CopyLayerwise(t, /*layers_per_group=*/4, &events, stream);
//   events.StreamWaitLayer(l, compute_stream);   // before attention of layer l
// Through the copy engines (slots in pinned or registered host memory):
//   copier->CopyStaged(t_with_host_addresses, /*layers_per_group=*/0, nullptr, stream);
//
// This header compiles without CUDA; without CUDA, Create() returns
// Unavailable. Ownership: the copier owns its staging ring, LayerEvents its
// events; transfers borrow (see paged_transfer.h). Thread safety: a GpuCopier
// and a LayerEvents are for one thread at a time; use one copier per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "loader/gpu_runtime.h"
#include "loader/paged_transfer.h"
#include "tiers/status.h"

namespace kvtier {

class GpuCopier;

// One CUDA event per layer group of the last CopyLayerwise() that used it.
class LayerEvents {
 public:
  LayerEvents() = default;
  // Unavailable without a GPU; IOError if CUDA fails.
  static Result<LayerEvents> Create(uint32_t max_groups);
  LayerEvents(LayerEvents&& o) noexcept { Swap(o); }
  LayerEvents& operator=(LayerEvents&& o) noexcept {
    Swap(o);
    return *this;
  }
  LayerEvents(const LayerEvents&) = delete;
  LayerEvents& operator=(const LayerEvents&) = delete;
  ~LayerEvents();

  uint32_t max_groups() const { return static_cast<uint32_t>(events_.size()); }
  // Groups recorded by the last CopyLayerwise (0 before the first).
  uint32_t num_groups() const { return num_groups_; }
  // Layers [layer_begin, layer_end) of the last CopyLayerwise.
  uint32_t layer_begin() const { return layer_begin_; }
  uint32_t layer_end() const { return layer_end_; }

  // Makes `stream` wait on the device (the host does not block) until layer
  // `layer` of the last CopyLayerwise is copied. InvalidArgument if `layer` is
  // outside its range; IOError from CUDA.
  Status StreamWaitLayer(uint32_t layer, GpuStream stream) const;
  // Blocks the host until layer `layer` is copied. Same errors.
  Status SynchronizeLayer(uint32_t layer) const;
  // Whether layer `layer` is copied, without blocking. Same errors.
  Result<bool> LayerReady(uint32_t layer) const;
  // The cudaEvent_t of group g, for engines that manage events themselves.
  void* RawEvent(uint32_t group) const { return group < events_.size() ? events_[group] : nullptr; }

 private:
  friend class GpuCopier;
  Result<uint32_t> GroupOf(uint32_t layer) const;
  void Swap(LayerEvents& o) noexcept {
    events_.swap(o.events_);
    std::swap(num_groups_, o.num_groups_);
    std::swap(layer_begin_, o.layer_begin_);
    std::swap(layer_end_, o.layer_end_);
    std::swap(layers_per_group_, o.layers_per_group_);
  }
  std::vector<void*> events_;  // cudaEvent_t
  uint32_t num_groups_ = 0;
  uint32_t layer_begin_ = 0;
  uint32_t layer_end_ = 0;
  uint32_t layers_per_group_ = 1;
};

class GpuCopier {
 public:
  struct Options {
    // Largest batch one launch takes; Copy() splits larger batches into
    // launches of this many blocks. CopyLayerwise() requires batches no larger.
    uint32_t max_blocks = 4096;
    // Launches whose block lists may be in flight at once. A launch waits on
    // the host for the one `ring_depth` launches before it to finish.
    uint32_t ring_depth = 4;
    // Tuning; docs/loader.md has the measurements behind the defaults. 16-byte
    // loads each thread issues before its first store: 2, 4 or 8.
    int vector_loads_per_thread = 4;
    // 0: one CTA per tile. n > 0: a persistent grid of n waves of resident
    // CTAs that loop over the tiles.
    int max_resident_waves = 0;
    // Loads into pools whose runs at one position of consecutive pages are
    // contiguous (vLLM's per-layer K and V tensors): copy in the order of the
    // destination, blocks by pool page and run position major, so that the
    // CTAs running at once write one stretch of neighbouring pages instead of
    // every run of a few scattered pages. HBM takes scattered reads better
    // than scattered writes (docs/loader.md). Checksum sums keep the caller's
    // order. Applies with max_resident_waves = 0 and up to 4 loads per thread.
    bool write_order = true;

    // The copy-engine path (CopyStaged): device staging memory of
    // staging_bytes, allocated at the first staged copy and cut into
    // staging_buffers equal buffers that the DMA and the scatter take in
    // turn, so that the copy engines fill buffer i + 1 while the kernel
    // drains buffer i. A transfer moves in chunks of at most one buffer.
    uint64_t staging_bytes = 64ull << 20;
    uint32_t staging_buffers = 4;
    // CTAs of each scatter (gather) between a staging buffer and the pool;
    // 0: one per tile. One short CTA per tile costs a kernel computing beside
    // it least: the engine's CTAs (on a stream of higher priority) take each
    // SM as a tile finishes, where a capped grid holds its SMs for the whole
    // buffer (docs/loader.md, "SMs left to the engine").
    uint32_t staged_ctas = 0;
    // A layer-wise staged load DMAs each block's layers in pieces of at least
    // this many bytes (several of the caller's layer groups at once when one
    // is smaller): the copy engines run far below the link on small pieces.
    uint32_t min_dma_piece_bytes = 256u << 10;
  };

  // Unavailable without a GPU; ResourceExhausted if pinned or device memory
  // for the ring cannot be had; InvalidArgument for zero options.
  static Result<std::unique_ptr<GpuCopier>> Create(const Options& options);
  ~GpuCopier();
  GpuCopier(const GpuCopier&) = delete;
  GpuCopier& operator=(const GpuCopier&) = delete;

  // Queues the transfer on `stream` and returns; the copy (and the checksum
  // sums) are complete once the stream reaches this point. All addresses must
  // be device-accessible. InvalidArgument (ValidateTransfer), IOError (CUDA).
  Status Copy(const PagedTransfer& transfer, GpuStream stream);

  // Splits the transfer's layer range into groups of `layers_per_group`
  // layers, queues one launch per group on `stream`, and records one event of
  // `events` after each. Checksum sums accumulate across groups (and start
  // from zero unless transfer.accumulate_checksums). InvalidArgument also if
  // the batch exceeds max_blocks or `events` has too few groups.
  Status CopyLayerwise(const PagedTransfer& transfer, uint32_t layers_per_group,
                       LayerEvents* events, GpuStream stream);

  // The copy-engine path. Slots (t.blocks[i].slot) must be addresses the
  // copy engines can reach by DMA: pinned or cudaHostRegister'ed host memory
  // (host addresses), or device memory. A load DMAs each block's bytes (of
  // each layer group: a contiguous piece of its slot; neighbouring pieces
  // merge into one copy) into a staging buffer on an internal stream, and a
  // kernel on `stream` scatters the buffer into the pool pages, computing the
  // checksums, while the next buffer fills; a store gathers pages into a
  // buffer on `stream`, and the DMA writes it into the slots. Everything the
  // transfer does is complete once `stream` reaches this point.
  // layers_per_group = 0: the whole layer range, `events` unused; n > 0
  // (loads only): one event of `events` per group of n layers, recorded once
  // those layers are in the pool. A block larger than a staging buffer moves
  // in layer ranges. Errors: InvalidArgument (ValidateTransfer; layer-wise
  // stores; too few events; one block's layer group, or one layer, larger
  // than a staging buffer), ResourceExhausted (staging memory), IOError (CUDA).
  // `store_done_event` (a cudaEvent_t, stores only): the end of the store's
  // last DMA is recorded there instead of `stream` waiting for it; `stream`
  // then reaches its end once the pages are gathered (the checksums
  // computed), and the slots are written once the event completes. A
  // pipeline of stores then gathers the next while the last DMA runs.
  Status CopyStaged(const PagedTransfer& transfer, uint32_t layers_per_group,
                    LayerEvents* events, GpuStream stream, void* store_done_event = nullptr);

  // Bytes of one staging buffer (options.staging_bytes / staging_buffers).
  uint64_t staging_buffer_bytes() const;

  struct Impl;

 private:
  explicit GpuCopier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvtier
