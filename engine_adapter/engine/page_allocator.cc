#include "engine_adapter/engine/page_allocator.h"

#include <string>

namespace kvtier::engine {

PageAllocator::PageAllocator(uint32_t num_pages) : num_pages_(num_pages), in_use_(num_pages, 0) {
  free_.reserve(num_pages);
  for (uint32_t i = num_pages; i > 0; --i) free_.push_back(static_cast<int32_t>(i - 1));
}

Status PageAllocator::Allocate(uint32_t n, std::vector<int32_t>* pages) {
  if (n > free_.size()) {
    return Status::ResourceExhausted("KV pool: " + std::to_string(n) + " pages wanted, " +
                                     std::to_string(free_.size()) + " of " +
                                     std::to_string(num_pages_) + " free");
  }
  for (uint32_t i = 0; i < n; ++i) {
    int32_t p = free_.back();
    free_.pop_back();
    in_use_[p] = 1;
    pages->push_back(p);
  }
  return Status::OK();
}

Status PageAllocator::Free(const std::vector<int32_t>& pages) {
  // Mark each page 2 while checking, so that one listed twice is caught
  // without a quadratic scan; undo the marks if any page is wrong.
  for (size_t i = 0; i < pages.size(); ++i) {
    int32_t p = pages[i];
    if (p < 0 || static_cast<uint32_t>(p) >= num_pages_ || in_use_[p] != 1) {
      for (size_t j = 0; j < i; ++j) in_use_[pages[j]] = 1;
      return Status::InvalidArgument("KV pool: page " + std::to_string(p) +
                                     " is not allocated (out of range, free, or listed twice)");
    }
    in_use_[p] = 2;
  }
  for (int32_t p : pages) {
    in_use_[p] = 0;
    free_.push_back(p);
  }
  return Status::OK();
}

}  // namespace kvtier::engine
