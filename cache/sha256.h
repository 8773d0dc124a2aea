// SHA-256 (FIPS 180-4), incremental. Used by the SHA-256 key-hashing mode for
// tenants that do not trust each other. Value type; thread-compatible.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace kvtier {

class Sha256 {
 public:
  Sha256() { Reset(); }
  void Reset();
  void Update(const void* data, size_t n);
  std::array<uint8_t, 32> Finish();  // the object must be Reset() before reuse

 private:
  void Compress(const uint8_t* block);
  uint32_t h_[8];
  uint8_t buf_[64];
  size_t buf_len_ = 0;
  uint64_t total_ = 0;
};

}  // namespace kvtier
