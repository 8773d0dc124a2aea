// PageAllocator: hands out the engine's KV pages (indices into the paged
// pool) and takes them back. A free list, lowest index first after a reset,
// so runs are reproducible. No CUDA: the pool's memory lives elsewhere.
//
// Thread safety: none; the engine's scheduling thread owns it.
#pragma once

#include <cstdint>
#include <vector>

#include "tiers/status.h"

namespace kvtier::engine {

class PageAllocator {
 public:
  explicit PageAllocator(uint32_t num_pages);

  uint32_t num_pages() const { return num_pages_; }
  uint32_t free_pages() const { return static_cast<uint32_t>(free_.size()); }

  // Appends `n` pages to `pages`. ResourceExhausted (and nothing taken) when
  // fewer than n are free.
  Status Allocate(uint32_t n, std::vector<int32_t>* pages);
  // Returns pages; each must have come from Allocate and not been freed since
  // (InvalidArgument otherwise, and none of `pages` is freed).
  Status Free(const std::vector<int32_t>& pages);

 private:
  uint32_t num_pages_;
  std::vector<int32_t> free_;     // stack: back() is handed out next
  std::vector<uint8_t> in_use_;
};

// Pages needed to hold `tokens` tokens at `page_tokens` per page.
inline uint32_t PagesFor(uint64_t tokens, uint32_t page_tokens) {
  return static_cast<uint32_t>((tokens + page_tokens - 1) / page_tokens);
}

}  // namespace kvtier::engine
