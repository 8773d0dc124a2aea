// TwoQueueModel: a small, fingerprint-keyed simulation of a two-queue cache,
// for tuning the "adaptive-2q" policy online by miniature simulation
// (Waldspurger et al., "Cache Modeling and Optimization using Miniature
// Simulations", USENIX ATC 2017).
//
// The model replays accesses to sampled fingerprints through a cache of
// `capacity` entries with the same rules as the policy's default level:
//
//  - a new entry lands in probation (an LRU list), or in protected if its
//    fingerprint is in the history (it left the cache recently);
//  - a hit in probation moves the entry to protected (an LRU list); a hit in
//    protected refreshes it;
//  - protected holds at most (1 - probation) of the capacity; its overflow
//    moves to the hot end of probation;
//  - the victim is probation's coldest entry (protected's if probation is
//    empty); its fingerprint enters the history, which remembers the last
//    history * capacity of them (0: no history).
//
// probation = 1, history = 0 is exactly LRU. Entries carry no chain links:
// the model counts block hits, a proxy for prefix hits that ranks the
// configurations the same way when caches keep prefixes whole.
//
// Memory: about 40 bytes per entry of capacity plus 20-32 per history slot.
// Access is O(1) expected. Thread safety: none (used under the tier lock).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "eviction/fingerprint_fifo.h"
#include "eviction/intrusive_list.h"

namespace kvtier {

class TwoQueueModel {
 public:
  // REQUIRES: 0 < probation <= 1, 0 <= history.
  TwoQueueModel(double probation, double history);

  // Empties the model and sets its capacity (entries, >= 1).
  void Reset(size_t capacity);
  // Grows the capacity (the tier filled further); never shrinks entries.
  void GrowTo(size_t capacity);

  // One access; returns whether it hit. Fingerprint 0 is ignored (false).
  bool Access(uint64_t fp);

  size_t capacity() const { return capacity_; }
  size_t size() const { return probation_list_.size() + protected_list_.size(); }
  double probation() const { return probation_; }
  double history() const { return history_; }
  size_t MemoryUsage() const;

 private:
  struct Entry {
    ListLinks links;
    uint64_t fp = 0;
    uint8_t queue = 0;  // 1 probation, 2 protected
  };
  using List = IntrusiveList<&Entry::links>;

  uint32_t Find(uint64_t fp) const;  // entry index or kNoBlock
  void TableInsert(uint64_t fp, uint32_t idx);
  void TableErase(uint64_t fp);
  void Protect(uint32_t idx);
  void EvictOne();
  size_t ProtectedLimit() const;
  size_t HistoryLength() const;  // history x capacity

  double probation_;
  double history_;
  size_t capacity_ = 0;
  std::vector<Entry> entries_;
  std::vector<uint32_t> free_;
  std::vector<uint32_t> table_;  // open addressing: entry index + 1, 0 = empty
  size_t mask_ = 0;
  List probation_list_, protected_list_;
  std::unique_ptr<FingerprintFifo> ghost_;
};

}  // namespace kvtier
