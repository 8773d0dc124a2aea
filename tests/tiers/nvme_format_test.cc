// Tests tiers/nvme_format.*: extent header and superblock encoding.
#include "tiers/nvme_format.h"

#include <cstring>
#include <vector>

#include <gtest/gtest.h>

#include "tiers/checksum.h"

namespace kvtier {
namespace {

ExtentTag Tag(uint8_t seed) {
  ExtentTag t;
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint8_t>(seed * 17 + i);
  return t;
}

NvmeExtent Extent() {
  return NvmeExtent{kDataOffset + 8192, 123456, 0x1122334455667788ull, (5ull << 40) | 9, Tag(3),
                    77};
}

std::vector<uint8_t> Encoded(const NvmeExtent& e) {
  std::vector<uint8_t> b(kExtentHeaderBytes);
  EncodeExtentHeader(ExtentHeader{e.tag, e.ns, e.generation, e.payload_bytes, e.checksum,
                                  e.offset},
                     b.data());
  return b;
}

TEST(NvmeFormat, HeaderRoundTripAndLayout) {
  NvmeExtent e = Extent();
  auto b = Encoded(e);
  EXPECT_EQ(std::memcmp(b.data(), "KVTEXT01", 8), 0);
  uint32_t version;
  std::memcpy(&version, b.data() + 8, 4);
  EXPECT_EQ(version, kNvmeFormatVersion);
  EXPECT_EQ(std::memcmp(b.data() + 16, e.tag.data(), 16), 0);
  uint64_t payload;
  std::memcpy(&payload, b.data() + 48, 8);
  EXPECT_EQ(payload, e.payload_bytes);
  uint64_t sum;
  std::memcpy(&sum, b.data() + 4088, 8);
  EXPECT_EQ(sum, checksum::Sum64(b.data(), 4088));

  auto h = DecodeExtentHeader(b.data());
  ASSERT_TRUE(h.ok()) << h.status().ToString();
  EXPECT_EQ(h->tag, e.tag);
  EXPECT_EQ(h->ns, e.ns);
  EXPECT_EQ(h->generation, e.generation);
  EXPECT_EQ(h->payload_bytes, e.payload_bytes);
  EXPECT_EQ(h->checksum, e.checksum);
  EXPECT_EQ(h->extent_offset, e.offset);
  EXPECT_TRUE(VerifyExtentHeader(b.data(), e).ok());
}

TEST(NvmeFormat, AnyFlippedBitIsCaught) {
  auto b = Encoded(Extent());
  for (size_t byte : {0, 9, 20, 33, 45, 50, 60, 70, 200, 4000, 4090}) {
    auto c = b;
    c[byte] ^= 0x10;
    EXPECT_TRUE(DecodeExtentHeader(c.data()).status().IsCorruption()) << byte;
  }
}

TEST(NvmeFormat, VerifyNamesEachMismatch) {
  NvmeExtent e = Extent();
  auto b = Encoded(e);
  auto expect_corrupt = [&](NvmeExtent other) {
    Status s = VerifyExtentHeader(b.data(), other);
    EXPECT_TRUE(s.IsCorruption()) << s.ToString();
  };
  NvmeExtent x = e;
  x.tag = Tag(4);
  expect_corrupt(x);
  x = e;
  x.generation++;
  expect_corrupt(x);
  x = e;
  x.ns++;
  expect_corrupt(x);
  x = e;
  x.payload_bytes++;
  expect_corrupt(x);
  x = e;
  x.checksum++;
  expect_corrupt(x);
  x = e;
  x.offset += 4096;
  expect_corrupt(x);
  std::vector<uint8_t> zeros(kExtentHeaderBytes, 0);
  EXPECT_TRUE(VerifyExtentHeader(zeros.data(), e).IsCorruption());
}

TEST(NvmeFormat, Superblock) {
  std::vector<uint8_t> b(kSuperblockBytes, 0);
  EXPECT_TRUE(DecodeSuperblock(b.data()).status().IsNotFound());
  EncodeSuperblock(Superblock{42, 64 << 20, 1ull << 34}, b.data());
  auto sb = DecodeSuperblock(b.data());
  ASSERT_TRUE(sb.ok());
  EXPECT_EQ(sb->epoch, 42u);
  EXPECT_EQ(sb->region_bytes, 64u << 20);
  EXPECT_EQ(sb->capacity, 1ull << 34);
  b[20] ^= 1;
  EXPECT_TRUE(DecodeSuperblock(b.data()).status().IsCorruption());
}

TEST(NvmeFormat, Sizes) {
  EXPECT_EQ(RoundUpToBlock(1), 4096u);
  EXPECT_EQ(RoundUpToBlock(4096), 4096u);
  EXPECT_EQ(ExtentBytesNeeded(5000), 4096u + 8192u);
  EXPECT_EQ(ExtentBytesNeeded(1 << 20), (1u << 20) + 4096u);
}

}  // namespace
}  // namespace kvtier
