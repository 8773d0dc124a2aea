// GpuHbmTier: the HBM tier — one cudaMalloc arena on one GPU, cut into slots
// by a SlabAllocator, shared with client processes through a CUDA IPC handle.
//
// The daemon never reads or writes HBM slots directly: clients gather and
// scatter them with the loader kernels through the IPC mapping, and the
// daemon moves blocks between this tier and the host tier with CopyIn /
// CopyOut on its own stream. Address() returns device pointers (not
// dereferenceable on the CPU).
//
// Without CUDA (or without a GPU) Create() returns Unavailable.
// Thread safety: as Tier; CopyIn/CopyOut are serialized by the cache's tier lock.
#pragma once

#include <array>
#include <memory>
#include <string>

#include "tiers/slab_allocator.h"
#include "tiers/tier.h"

namespace kvtier {

struct GpuHbmOptions {
  int device = 0;
  uint64_t capacity_bytes = 1ull << 30;
  uint64_t region_bytes = 64ull << 20;
  // Host memory to register (pinned) for fast copies host ⇄ HBM: the host
  // tier's segment. Null: copies use whatever the host memory is.
  void* host_base = nullptr;
  uint64_t host_bytes = 0;
};

// PCI bus id ("0000:18:00.0") of CUDA device `device`. Unavailable without
// CUDA or without that GPU.
Result<std::string> CudaPciBusId(int device);

class GpuHbmTier final : public Tier {
 public:
  // Errors: Unavailable (no CUDA build, no GPU), InvalidArgument (sizes),
  // ResourceExhausted (cudaMalloc failed), IOError (other CUDA errors).
  static Result<std::unique_ptr<GpuHbmTier>> Create(const GpuHbmOptions& options);
  ~GpuHbmTier() override;

  TierKind kind() const override { return TierKind::kHbm; }
  std::string_view name() const override { return "hbm"; }
  Result<Slot> Allocate(uint64_t bytes) override;
  void Free(const Slot& slot) override;
  bool FreeingHelps(const Slot& victim, uint64_t bytes) const override {
    return alloc_.FreeingHelps(victim, bytes);
  }
  uint8_t* Address(const Slot& slot) const override { return base_ + slot.offset; }
  SlabAllocator* slabs() override { return &alloc_; }
  uint64_t capacity_bytes() const override { return alloc_.capacity(); }
  uint64_t used_bytes() const override { return alloc_.used_bytes(); }
  TierCounters counters() const override { return counters_; }

  // Synchronous copies on the tier's own stream.
  Status CopyIn(const Slot& dst, const void* host_src, uint64_t bytes);
  Status CopyOut(void* host_dst, const Slot& src, uint64_t bytes);

  int device() const { return device_; }
  const std::array<char, 64>& ipc_handle() const { return ipc_handle_; }
  const std::string& pci_bus_id() const { return pci_bus_id_; }

 private:
  GpuHbmTier(SlabAllocator alloc) : alloc_(std::move(alloc)) {}

  SlabAllocator alloc_;
  uint8_t* base_ = nullptr;
  int device_ = 0;
  void* stream_ = nullptr;
  void* registered_host_ = nullptr;
  std::array<char, 64> ipc_handle_{};
  std::string pci_bus_id_;
  TierCounters counters_;
};

}  // namespace kvtier
