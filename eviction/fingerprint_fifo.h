// FingerprintFifo: a bounded set of recently inserted 64-bit fingerprints
// with FIFO forgetting, used as S3-FIFO's ghost queue and as the memory of
// the second-sighting admission filter.
//
// It remembers a fingerprint for the next `capacity` insertions after its
// own (re-inserting moves it to the newest position; erasing forgets it at
// once). Fingerprint 0 means "unknown" and is never stored. Exact: no false
// positives beyond equal fingerprints, no early forgetting.
//
// Layout: a ring of `capacity` fingerprints in insertion order plus an
// open-addressing table (linear probing, backward-shift deletion, load
// 1/3..2/3) whose 8-byte slots hold a ring position and 32 bits of the
// fingerprint's hash. The hash bits give each slot's home and filter probes,
// so a lookup touches the ring only on a likely match: one or two cache
// misses per operation. 20-32 bytes per unit of capacity. Contains, Insert
// and Erase are O(1) expected and never allocate; Resize allocates.
//
// Ownership: owns its arrays. Thread safety: none; REQUIRES external
// synchronization.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace kvtier {

class FingerprintFifo {
 public:
  // REQUIRES: 0 < capacity < 2^31.
  explicit FingerprintFifo(size_t capacity);

  bool Contains(uint64_t fp) const;

  // Remembers `fp` as the newest fingerprint, forgetting the one inserted
  // `capacity` insertions ago. No-op for fp == 0.
  void Insert(uint64_t fp);

  // Forgets `fp`; returns whether it was remembered.
  bool Erase(uint64_t fp);

  // How many insertions ago `fp` was inserted (0: the newest), or kAbsent.
  // Lets one ring serve as several histories of different lengths.
  static constexpr size_t kAbsent = ~size_t{0};
  size_t Age(uint64_t fp) const;

  // Changes the capacity, keeping the newest fingerprints. O(capacity).
  void Resize(size_t capacity);

  size_t capacity() const { return ring_.size(); }
  size_t size() const { return count_; }
  size_t MemoryUsage() const;

 private:
  // A slot: hash tag in the high 32 bits, ring position in the low 32.
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // positions are < 2^31
  static constexpr size_t kNotFound = ~size_t{0};

  static uint32_t Tag(uint64_t fp);
  size_t Home(uint32_t tag) const { return tag & mask_; }
  size_t FindSlot(uint64_t fp) const;              // table index, or kNotFound
  size_t FindPos(uint32_t tag, uint32_t pos) const;  // slot holding `pos`
  void TableInsert(uint32_t tag, uint32_t pos);
  void TableErase(size_t slot);

  std::vector<uint64_t> ring_;   // fingerprints by insertion position; 0 = none
  size_t next_ = 0;              // position written next (the oldest one)
  size_t count_ = 0;             // non-zero entries of ring_
  std::vector<uint64_t> table_;  // tag << 32 | ring position; kEmpty = free
  size_t mask_ = 0;
};

}  // namespace kvtier
