// DeadlineHeap: the retention deadlines of a policy's blocks, soonest first.
//
// Policies that honour BlockMeta::retention_deadline_ns (priority-lru,
// adaptive-2q) push (deadline, id, generation) here and, before each
// decision, pop what is due. Entries are never erased on Remove(): a removed
// or re-tracked id is recognised as stale by the caller's `live` predicate
// (generation and pending flag), and stale entries are compacted away once
// they outnumber live ones (amortized O(1)).
//
// Thread safety: none (owned by one policy, under the tier lock).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "eviction/policy.h"

namespace kvtier {

class DeadlineHeap {
 public:
  struct Entry {
    uint64_t deadline;
    BlockId id;
    uint32_t gen;
  };

  void Push(uint64_t deadline, BlockId id, uint32_t gen) {
    heap_.push_back({deadline, id, gen});
    std::push_heap(heap_.begin(), heap_.end(), Later());
    ++pending_;
  }

  // Calls expire(entry) for every live entry due at `now`; `live(entry)`
  // tells live from stale. The caller clears its pending flag in expire().
  template <typename Live, typename Expire>
  void ExpireDue(uint64_t now, const Live& live, const Expire& expire) {
    while (!heap_.empty() && heap_.front().deadline <= now) {
      const Entry e = heap_.front();
      std::pop_heap(heap_.begin(), heap_.end(), Later());
      heap_.pop_back();
      if (!live(e)) continue;
      --pending_;
      expire(e);
    }
  }

  // A pending block was removed: its entry is now stale.
  template <typename Live>
  void Forget(const Live& live) {
    --pending_;
    if (heap_.size() <= 2 * pending_ + 64) return;
    std::erase_if(heap_, [&](const Entry& e) { return !live(e); });
    std::make_heap(heap_.begin(), heap_.end(), Later());
  }

  bool empty() const { return heap_.empty(); }
  size_t MemoryUsage() const { return heap_.capacity() * sizeof(Entry); }

 private:
  // Orders std::*_heap as a min-heap on the deadline.
  struct Later {
    bool operator()(const Entry& a, const Entry& b) const { return a.deadline > b.deadline; }
  };
  std::vector<Entry> heap_;
  size_t pending_ = 0;  // live entries
};

}  // namespace kvtier
