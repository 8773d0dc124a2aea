#include "tiers/checksum.h"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace kvtier {
namespace {

std::vector<uint8_t> Pattern(size_t n, int mul) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>((i * mul) & 255);
  return v;
}

// Vectors from scripts/kvtier_checksum.py, an independent Python
// implementation of docs/checksum.md.
TEST(ChecksumTest, MatchesPublishedVectors) {
  EXPECT_EQ(checksum::Sum64(nullptr, 0), 0x0000000000000000ull);
  auto a = Pattern(100, 1);
  EXPECT_EQ(checksum::Sum64(a.data(), a.size()), 0x1caeae6b2e2b3f42ull);
  auto b = Pattern(4096, 7);
  EXPECT_EQ(checksum::Sum64(b.data(), b.size()), 0x1ebe164424ae5a9aull);
}

TEST(ChecksumTest, PiecesCombineToTheWhole) {
  std::mt19937_64 rng(1);
  std::vector<uint8_t> d(1 << 16);
  for (auto& x : d) x = static_cast<uint8_t>(rng());
  uint64_t whole = checksum::Sum64(d.data(), d.size());
  // Sum of pieces in any order, each given its word offset.
  uint64_t s = checksum::PartialSum(d.data() + 4096, 8192, 4096 / 8) +
               checksum::PartialSum(d.data(), 4096, 0) +
               checksum::PartialSum(d.data() + 12288, d.size() - 12288, 12288 / 8);
  EXPECT_EQ(checksum::Finalize(s, d.size()), whole);
}

TEST(ChecksumTest, DetectsFlipsSwapsAndLength) {
  std::mt19937_64 rng(2);
  std::vector<uint8_t> d(1 << 14);
  for (auto& x : d) x = static_cast<uint8_t>(rng());
  const uint64_t base = checksum::Sum64(d.data(), d.size());
  for (size_t bit = 0; bit < d.size() * 8; bit += 97) {
    d[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    EXPECT_NE(checksum::Sum64(d.data(), d.size()), base) << "bit " << bit;
    d[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
  }
  // Swapping two 8-byte words changes it (terms depend on position).
  std::vector<uint8_t> e = d;
  for (int i = 0; i < 8; ++i) std::swap(e[i], e[8 + i]);
  EXPECT_NE(checksum::Sum64(e.data(), e.size()), base);
  // Trailing zero bytes change it (length is mixed in).
  std::vector<uint8_t> f = d;
  f.push_back(0);
  EXPECT_NE(checksum::Sum64(f.data(), f.size()), base);
}

}  // namespace
}  // namespace kvtier
