// HostShmTier: the pinned-host-memory tier, one shared-memory segment.
//
// The segment is a memfd (anonymous, sealed against shrinking) mapped
// MAP_SHARED into the daemon. Its file descriptor is what the daemon passes
// to clients over the Unix socket; a client maps the same fd and, on a GPU
// host, cudaHostRegister()s the mapping once, so blocks move between the
// client's GPU and this segment without any copy through the daemon.
// Slots come from a SlabAllocator over the segment.
//
// Thread safety: as Tier (calls serialized by the cache), Address() is free.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "tiers/slab_allocator.h"
#include "tiers/tier.h"

namespace kvtier {

struct HostShmOptions {
  uint64_t capacity_bytes = 1ull << 30;
  uint64_t region_bytes = 64ull << 20;
  std::string name = "kvtier-host";   // memfd name, visible in /proc/<pid>/fd
  bool populate = false;              // pre-fault every page at start
  // NUMA nodes to place the segment on (one: bind; several: interleave);
  // empty: the kernel's default (first touch).
  std::vector<int> numa_nodes;
};

class HostShmTier final : public Tier {
 public:
  // Errors: InvalidArgument (bad sizes), IOError (memfd_create, ftruncate or
  // mmap failed, with errno text).
  static Result<std::unique_ptr<HostShmTier>> Create(const HostShmOptions& options);
  ~HostShmTier() override;
  HostShmTier(const HostShmTier&) = delete;
  HostShmTier& operator=(const HostShmTier&) = delete;

  TierKind kind() const override { return TierKind::kHost; }
  std::string_view name() const override { return "host"; }
  Result<Slot> Allocate(uint64_t bytes) override;
  void Free(const Slot& slot) override;
  bool FreeingHelps(const Slot& victim, uint64_t bytes) const override {
    return alloc_.FreeingHelps(victim, bytes);
  }
  uint8_t* Address(const Slot& slot) const override { return base_ + slot.offset; }
  SlabAllocator* slabs() override { return &alloc_; }
  uint64_t capacity_bytes() const override { return size_; }
  uint64_t used_bytes() const override { return alloc_.used_bytes(); }
  TierCounters counters() const override { return counters_; }

  // The segment: its fd (owned by the tier; dup() it to hand it out), its
  // size and the daemon's mapping.
  int fd() const { return fd_; }
  uint64_t segment_bytes() const { return size_; }
  uint8_t* base() const { return base_; }

 private:
  HostShmTier(int fd, uint8_t* base, uint64_t size, SlabAllocator alloc)
      : fd_(fd), base_(base), size_(size), alloc_(std::move(alloc)) {}

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  SlabAllocator alloc_;
  TierCounters counters_;
};

}  // namespace kvtier
