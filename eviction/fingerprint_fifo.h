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
// open-addressing (linear probing, backward-shift deletion) table of ring
// positions at load <= 1/2; 16 to 24 bytes per unit of capacity. Contains,
// Insert and Erase are O(1) expected and never allocate; Resize allocates.
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

  // Changes the capacity, keeping the newest fingerprints. O(capacity).
  void Resize(size_t capacity);

  size_t capacity() const { return ring_.size(); }
  size_t size() const { return count_; }
  size_t MemoryUsage() const;

 private:
  static constexpr uint32_t kEmpty = 0xFFFFFFFFu;
  static constexpr size_t kNotFound = ~size_t{0};

  size_t Home(uint64_t fp) const;
  size_t FindSlot(uint64_t fp) const;  // table index, or kNotFound
  void TableInsert(uint64_t fp, uint32_t pos);
  void TableErase(size_t slot);

  std::vector<uint64_t> ring_;   // fingerprints by insertion position; 0 = none
  size_t next_ = 0;              // position written next (the oldest one)
  size_t count_ = 0;             // non-zero entries of ring_
  std::vector<uint32_t> table_;  // ring positions, kEmpty = free
  size_t mask_ = 0;
};

}  // namespace kvtier
