// SHA-256 (FIPS 180-4) through OpenSSL's EVP interface: the SHA-256 key-hashing
// mode for tenants that do not trust each other. OpenSSL picks the fastest
// code the CPU has (SHA-NI, AVX2); the algorithm is fetched once per process.
//
// Sha256 is incremental and move-only (it owns an EVP_MD_CTX); one object is
// used by one thread at a time. Sha256Digest is thread-safe (a context per
// thread) and is what the key hash calls: no allocation after a thread's
// first call.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

struct evp_md_ctx_st;

namespace kvtier {

using Sha256Bytes = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(Sha256&& other) noexcept : ctx_(other.ctx_) { other.ctx_ = nullptr; }
  Sha256& operator=(Sha256&&) = delete;
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  void Reset();
  void Update(const void* data, size_t n);
  Sha256Bytes Finish();  // the object must be Reset() before reuse

 private:
  evp_md_ctx_st* ctx_;
};

// SHA-256 of data[0..n).
Sha256Bytes Sha256Digest(const void* data, size_t n);

}  // namespace kvtier
