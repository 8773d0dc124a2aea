#include "bench/sim_belady.h"

#include <algorithm>
#include <vector>

namespace kvtier::bench {

namespace {
constexpr uint32_t kNever = 0xFFFFFFFFu;

// Heap entry: next use in the high half (max-heap: farthest first), id low.
uint64_t Entry(uint32_t next_use, uint32_t id) { return (uint64_t{next_use} << 32) | id; }
}  // namespace

PrefixHitCounts IdealPrefixHits(const Trace& t) {
  PrefixHitCounts c;
  std::vector<uint8_t> seen(t.num_unique_blocks, 0);
  for (const TraceRequest& r : t.requests) {
    uint64_t hits = 0;
    bool prefix = true;
    for (uint32_t b : t.blocks(r)) {
      if (prefix && seen[b]) {
        ++hits;
      } else {
        prefix = false;
      }
      seen[b] = 1;
    }
    c.Add(r.num_blocks, hits, r.input_tokens, t.block_tokens);
  }
  return c;
}

std::vector<uint32_t> NextUses(const Trace& t) {
  // Positions are indices into t.refs, which TraceBuilder::Finish() laid out
  // in replay order. Traces stay below 2^32 - 1 references.
  const size_t n = t.refs.size();
  std::vector<uint32_t> next_use(n);
  std::vector<uint32_t> last(t.num_unique_blocks, kNever);
  for (size_t p = n; p-- > 0;) {
    next_use[p] = last[t.refs[p]];
    last[t.refs[p]] = static_cast<uint32_t>(p);
  }
  return next_use;
}

PrefixHitCounts SimulateBelady(const Trace& t, uint64_t capacity) {
  return SimulateBelady(t, NextUses(t), capacity);
}

PrefixHitCounts SimulateBelady(const Trace& t, const std::vector<uint32_t>& next_use,
                               uint64_t capacity, std::atomic<uint64_t>* progress) {
  PrefixHitCounts c;
  const size_t n = t.refs.size();
  std::vector<uint8_t> cached(t.num_unique_blocks, 0);
  std::vector<uint32_t> entry_use(t.num_unique_blocks, kNever);  // next use in its live entry
  std::vector<uint64_t> heap;
  heap.reserve(std::min<uint64_t>(2 * capacity + 1024, n + 1));
  uint64_t size = 0;
  auto live = [&](uint64_t e) {
    const uint32_t id = static_cast<uint32_t>(e);
    return cached[id] && entry_use[id] == static_cast<uint32_t>(e >> 32);
  };
  auto push = [&](uint32_t id, uint32_t use) {
    entry_use[id] = use;
    heap.push_back(Entry(use, id));
    std::push_heap(heap.begin(), heap.end());
    if (heap.size() > 2 * capacity + 1024) {  // drop stale entries
      std::erase_if(heap, [&](uint64_t e) { return !live(e); });
      std::make_heap(heap.begin(), heap.end());
    }
  };
  // The live entry with the farthest next use (pops stale ones on the way).
  auto top = [&]() -> uint64_t {
    while (!live(heap.front())) {
      std::pop_heap(heap.begin(), heap.end());
      heap.pop_back();
    }
    return heap.front();
  };

  size_t p = 0;
  for (const TraceRequest& r : t.requests) {
    uint64_t hits = 0;
    bool prefix = true;
    for (uint32_t i = 0; i < r.num_blocks; ++i, ++p) {
      const uint32_t b = t.refs[p];
      const uint32_t use = next_use[p];
      if (cached[b]) {
        hits += prefix;
        push(b, use);  // the old entry goes stale
        continue;
      }
      prefix = false;
      if (use == kNever || capacity == 0) continue;  // never stored
      if (size >= capacity) {
        const uint64_t far = top();
        if ((far >> 32) <= use) continue;  // the incoming block is the farthest
        std::pop_heap(heap.begin(), heap.end());
        heap.pop_back();
        cached[static_cast<uint32_t>(far)] = 0;
        --size;
      }
      cached[b] = 1;
      ++size;
      push(b, use);
    }
    c.Add(r.num_blocks, hits, r.input_tokens, t.block_tokens);
    if (progress != nullptr) progress->fetch_add(1, std::memory_order_relaxed);
  }
  return c;
}

}  // namespace kvtier::bench
