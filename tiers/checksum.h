// Block checksum: one function, the same bits on CPU and GPU.
//
// Spec (also in docs/checksum.md). For a byte string of length n:
//   w_i   = little-endian uint64 of bytes [8i, 8i+8); a partial last word is
//           padded with zero bytes.
//   t_i   = Mix(w_i ^ (i * kPos))          Mix(x) = (x * kMul) ^ ((x * kMul) >> 29)
//   S     = sum of t_i modulo 2^64          (order free: GPU threads reduce by +)
//   sum64 = Fmix64(S ^ (n * kLen))          Fmix64 = MurmurHash3's 64-bit finalizer
//
// Because S is a sum of per-word terms that depend only on the word and its
// index, a kernel can checksum a block while it gathers it from many strided
// pieces: each piece adds its terms given its word offset within the block,
// and one Finalize() per block closes it. It detects corruption (bit flips,
// swapped or stale pieces); it is not a cryptographic MAC.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define KVTIER_HD __host__ __device__ __forceinline__
#else
#define KVTIER_HD inline
#endif

namespace kvtier::checksum {

inline constexpr uint64_t kPos = 0x9E3779B97F4A7C15ull;
inline constexpr uint64_t kMul = 0xFF51AFD7ED558CCDull;
inline constexpr uint64_t kLen = 0xC2B2AE3D27D4EB4Full;

KVTIER_HD uint64_t Term(uint64_t word_index, uint64_t word) {
  uint64_t x = (word ^ (word_index * kPos)) * kMul;
  return x ^ (x >> 29);
}

KVTIER_HD uint64_t Fmix64(uint64_t x) {
  x ^= x >> 33;
  x *= 0xFF51AFD7ED558CCDull;
  x ^= x >> 33;
  x *= 0xC4CEB9FE1A85EC53ull;
  x ^= x >> 33;
  return x;
}

KVTIER_HD uint64_t Finalize(uint64_t partial_sum, uint64_t total_bytes) {
  return Fmix64(partial_sum ^ (total_bytes * kLen));
}

// Partial sum of the terms of `n` bytes that start at word `first_word` of
// the block. REQUIRES: the piece starts on an 8-byte boundary of the block;
// only the block's last piece may have n % 8 != 0. Host only (the GPU
// kernels inline Term() in their copy loops).
inline uint64_t PartialSum(const void* data, size_t n, uint64_t first_word = 0) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t s = 0;
  size_t words = n / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, p + 8 * i, 8);  // little-endian host assumed (x86-64, arm64)
    s += Term(first_word + i, w);
  }
  if (size_t rest = n % 8) {
    uint64_t w = 0;
    std::memcpy(&w, p + 8 * words, rest);
    s += Term(first_word + words, w);
  }
  return s;
}

// Checksum of one contiguous block.
inline uint64_t Sum64(const void* data, size_t n) { return Finalize(PartialSum(data, n), n); }

}  // namespace kvtier::checksum
