// AlignedBuffer: an owned, zero-filled heap buffer with a power-of-two
// alignment (4 KiB by default), the kind O_DIRECT I/O needs.
//
// Ownership: the buffer owns its memory and frees it on destruction; it is
// move-only. Allocation happens in Allocate() only, never on a hot path of its
// users (they allocate at startup and reuse). Thread safety: a value; distinct
// buffers may be used from distinct threads, one buffer needs external
// synchronization like any other memory.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <utility>

#include "tiers/status.h"

namespace kvtier {

class AlignedBuffer {
 public:
  static constexpr size_t kDefaultAlignment = 4096;

  AlignedBuffer() = default;
  AlignedBuffer(AlignedBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  // `size` bytes (rounded up to a multiple of `alignment`), zero-filled.
  // Errors: InvalidArgument (alignment not a power of two or < sizeof(void*)),
  // ResourceExhausted (out of memory).
  static Result<AlignedBuffer> Allocate(size_t size, size_t alignment = kDefaultAlignment) {
    if (alignment < sizeof(void*) || (alignment & (alignment - 1)) != 0) {
      return Status::InvalidArgument("AlignedBuffer: alignment must be a power of two");
    }
    size_t rounded = (size + alignment - 1) / alignment * alignment;
    if (rounded == 0) rounded = alignment;
    void* p = nullptr;
    if (posix_memalign(&p, alignment, rounded) != 0) {
      return Status::ResourceExhausted("AlignedBuffer: posix_memalign failed");
    }
    std::memset(p, 0, rounded);
    AlignedBuffer b;
    b.data_ = static_cast<uint8_t*>(p);
    b.size_ = rounded;
    return b;
  }

  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

 private:
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvtier
