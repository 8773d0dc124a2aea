// The portable SHA-256 the key hash used before it called OpenSSL, kept only
// so that kvtier-core-bench can compare the two in one run
// (BM_Sha256ChainMessage). Not used by the daemon or the client.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace kvtier::bench {

class PortableSha256 {
 public:
  PortableSha256() { Reset(); }
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

}  // namespace kvtier::bench
