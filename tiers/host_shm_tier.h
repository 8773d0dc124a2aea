// HostShmTier: the pinned-host-memory tier, one shared-memory segment.
//
// The segment is a memfd (anonymous, sealed against shrinking) mapped
// MAP_SHARED into the daemon. Its file descriptor is what the daemon passes
// to clients over the Unix socket; a client maps the same fd and, on a GPU
// host, cudaHostRegister()s the mapping once, so blocks move between the
// client's GPU and this segment without any copy through the daemon.
// Slots come from a SlabAllocator over the segment.
//
// Persistence (options.path set): the segment is a named file instead of a
// memfd (on a tmpfs such as /dev/shm, so it is memory), and a sibling file
// `<path>.meta` holds one 64-byte record per 4 KiB of the segment: what the
// block in the slot starting there is (opaque 16-byte tag, namespace,
// bytes, checksum, priority, size class), with its own checksum. The cache
// writes a record when a block becomes READY in the tier (Record) and the
// tier clears it when the slot is freed (Free), so a record names only a
// committed block. After a restart — kill -9 or an upgrade — Reopened()
// hands back every record that verifies (record checksum, geometry, slot
// not overlapping another, payload checksum::Sum64 equal to the record's):
// those slots are allocated again; everything else is free. The metadata
// file is never handed to clients (they map only the segment), so a client
// can damage a payload, never forge a record. Cost: the metadata file is
// 1/64 of the segment; one 64-byte write per block entering the tier.
//
// Thread safety: as Tier (calls serialized by the cache), Address() is free.
#pragma once

#include <array>
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
  // Persistent segment file (see above); empty: an anonymous memfd.
  std::string path;
};

// A committed block in a persistent segment (see HostShmTier).
struct HostSlotRecord {
  Slot slot;
  std::array<uint8_t, 16> tag{};
  uint32_t ns = 0;
  uint64_t checksum = 0;
  uint8_t priority = 0;
};

class HostShmTier final : public Tier {
 public:
  // Errors: InvalidArgument (bad sizes), IOError (memfd_create, open,
  // ftruncate or mmap failed, with errno text).
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

  bool persistent() const { return meta_ != nullptr; }
  // Persistent segment: records that `r.slot` holds a committed block. No-op
  // otherwise. REQUIRES: r.slot is allocated.
  void Record(const HostSlotRecord& r);
  // Persistent segment, right after Create(): the blocks that survived the
  // last run, verified, their slots allocated again (once; later calls
  // return nothing). A caller that cannot use one must Free() its slot.
  std::vector<HostSlotRecord> Reopened();
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
  Status OpenMeta(const HostShmOptions& o);
  uint8_t* RecordAt(uint64_t offset) const { return meta_ + kMetaHeader + (offset >> 12) * 64; }

  static constexpr uint64_t kMetaHeader = 4096;

  int fd_;
  uint8_t* base_;
  uint64_t size_;
  SlabAllocator alloc_;
  TierCounters counters_;
  uint8_t* meta_ = nullptr;  // the mapped metadata file (persistent segments)
  uint64_t meta_bytes_ = 0;
  std::vector<HostSlotRecord> reopened_;
};

}  // namespace kvtier
