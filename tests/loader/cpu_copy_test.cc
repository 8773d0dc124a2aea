// Tests loader/cpu_copy.{h,cc}: stores and loads against a row-by-row
// reference written from the layouts' tensor shapes, for every layout, block
// size and dtype; poisoned destinations (every byte written, nothing else
// touched); checksums equal checksum::Sum64 of the canonical block; layer
// ranges; corruption detection.
#include "loader/cpu_copy.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "loader/kv_pool.h"
#include "loader/paged_transfer.h"
#include "tests/loader/loader_test_util.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using namespace loader_test;  // NOLINT: test helpers

class CpuCopyTest : public ::testing::TestWithParam<CaseSpec> {
 protected:
  void SetUp() override {
    spec_ = GetParam();
    shape_ = CaseShape(spec_);
    pages_ = CasePages();
    pool_bytes_ = PoolAllocBytes(spec_.layout, shape_);
    block_bytes_ = shape_.block_bytes();
    for (size_t i = 0; i < pages_.size(); ++i) slot_offsets_.push_back(i * (block_bytes_ + kSlotGap));
    slots_bytes_ = pages_.size() * (block_bytes_ + kSlotGap);
  }

  // Blocks pointing into `slots` at slot_offsets_.
  std::vector<BlockRef> Blocks(char* slots) const {
    std::vector<BlockRef> b;
    for (size_t i = 0; i < pages_.size(); ++i) b.push_back({slots + slot_offsets_[i], pages_[i]});
    return b;
  }

  CaseSpec spec_;
  KvPoolShape shape_;
  std::vector<uint32_t> pages_;
  std::vector<uint64_t> slot_offsets_;
  uint64_t pool_bytes_ = 0, block_bytes_ = 0, slots_bytes_ = 0;
};

TEST_P(CpuCopyTest, StoreLoadRoundTripMatchesReference) {
  // Source pool with random contents.
  HostBytes pool_a(pool_bytes_);
  FillRandom(pool_a.data(), pool_bytes_, 11);
  auto pa = BuildPool(spec_.layout, shape_, pool_a.data());
  ASSERT_TRUE(pa.ok()) << pa.status().ToString();

  // Store into poisoned slots.
  HostBytes slots(slots_bytes_);
  std::memset(slots.data(), kPoisonA, slots_bytes_);
  auto blocks = Blocks(slots.data());
  std::vector<uint64_t> store_sums(blocks.size(), 0xDEAD);
  PagedTransfer store{&*pa, blocks, TransferDirection::kStore};
  store.checksum_sums = store_sums.data();
  ASSERT_TRUE(CpuCopy(store).ok());

  HostBytes want_slots(slots_bytes_);
  std::memset(want_slots.data(), kPoisonA, slots_bytes_);
  NaiveCopy(spec_.layout, shape_, pool_a.data(), want_slots.data(), slot_offsets_, pages_,
            TransferDirection::kStore, 0, shape_.num_layers);
  ASSERT_EQ(FirstDiff(slots.data(), want_slots.data(), slots_bytes_), -1);
  for (size_t i = 0; i < blocks.size(); ++i) {
    EXPECT_EQ(checksum::Finalize(store_sums[i], block_bytes_),
              checksum::Sum64(slots.data() + slot_offsets_[i], block_bytes_))
        << "block " << i;
  }

  // Load into a poisoned pool.
  HostBytes pool_b(pool_bytes_);
  std::memset(pool_b.data(), kPoisonB, pool_bytes_);
  auto pb = BuildPool(spec_.layout, shape_, pool_b.data());
  ASSERT_TRUE(pb.ok());
  std::vector<uint64_t> load_sums(blocks.size(), 0xBEEF);
  PagedTransfer load{&*pb, blocks, TransferDirection::kLoad};
  load.checksum_sums = load_sums.data();
  ASSERT_TRUE(CpuCopy(load).ok());

  HostBytes want_pool(pool_bytes_);
  std::memset(want_pool.data(), kPoisonB, pool_bytes_);
  NaiveCopy(spec_.layout, shape_, want_pool.data(), slots.data(), slot_offsets_, pages_,
            TransferDirection::kLoad, 0, shape_.num_layers);
  ASSERT_EQ(FirstDiff(pool_b.data(), want_pool.data(), pool_bytes_), -1);
  EXPECT_EQ(load_sums, store_sums);

  // Round trip: the batch's pages in pool B equal those of pool A, row by row.
  for (uint32_t p : pages_)
    for (uint32_t l = 0; l < shape_.num_layers; ++l)
      for (uint32_t kv = 0; kv < 2; ++kv)
        for (uint32_t t = 0; t < shape_.tokens_per_page; ++t)
          for (uint32_t h = 0; h < shape_.kv_heads; ++h) {
            const uint64_t o = NaivePoolRow(spec_.layout, shape_, l, kv, p, t, h);
            ASSERT_EQ(std::memcmp(pool_a.data() + o, pool_b.data() + o, shape_.row_bytes()), 0);
          }
}

TEST_P(CpuCopyTest, LayerRangesAddUp) {
  HostBytes pool(pool_bytes_);
  FillRandom(pool.data(), pool_bytes_, 12);
  auto pa = BuildPool(spec_.layout, shape_, pool.data());
  ASSERT_TRUE(pa.ok());

  HostBytes whole(slots_bytes_), parts(slots_bytes_);
  std::memset(whole.data(), kPoisonA, slots_bytes_);
  std::memset(parts.data(), kPoisonA, slots_bytes_);
  auto whole_blocks = Blocks(whole.data());
  auto part_blocks = Blocks(parts.data());
  std::vector<uint64_t> whole_sums(pages_.size()), part_sums(pages_.size(), 77);

  PagedTransfer t{&*pa, whole_blocks, TransferDirection::kStore};
  t.checksum_sums = whole_sums.data();
  ASSERT_TRUE(CpuCopy(t).ok());

  PagedTransfer g{&*pa, part_blocks, TransferDirection::kStore};
  g.checksum_sums = part_sums.data();
  g.layer_begin = 0;
  g.layer_end = 1;
  ASSERT_TRUE(CpuCopy(g).ok());
  // After the first group only layer 0 is written: the rest is still poison.
  for (size_t i = 0; i < pages_.size(); ++i) {
    const unsigned char* s = reinterpret_cast<unsigned char*>(parts.data() + slot_offsets_[i]);
    EXPECT_EQ(s[shape_.layer_bytes()], kPoisonA);
    EXPECT_EQ(s[block_bytes_ - 1], kPoisonA);
  }
  g.layer_begin = 1;
  g.layer_end = kAllLayers;
  g.accumulate_checksums = true;
  ASSERT_TRUE(CpuCopy(g).ok());
  EXPECT_EQ(FirstDiff(whole.data(), parts.data(), slots_bytes_), -1);
  EXPECT_EQ(part_sums, whole_sums);
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, CpuCopyTest, ::testing::ValuesIn(AllCases()),
                         [](const auto& info) { return CaseName(info.param); });

TEST(CpuCopyChecksumTest, CorruptedSlotIsDetected) {
  CaseSpec spec{Layout::kVllmFlash, KvDtype::kBf16, 16};
  const KvPoolShape shape = CaseShape(spec);
  HostBytes pool(PoolAllocBytes(spec.layout, shape));
  FillRandom(pool.data(), pool.size(), 13);
  auto p = BuildPool(spec.layout, shape, pool.data());
  ASSERT_TRUE(p.ok());
  const uint64_t bb = shape.block_bytes();
  HostBytes slots(3 * bb);
  std::vector<BlockRef> blocks = {{slots.data(), 1}, {slots.data() + bb, 2}, {slots.data() + 2 * bb, 4}};
  std::vector<uint64_t> sums(3);
  PagedTransfer store{&*p, blocks, TransferDirection::kStore};
  store.checksum_sums = sums.data();
  ASSERT_TRUE(CpuCopy(store).ok());
  std::vector<uint64_t> stored(3);
  for (int i = 0; i < 3; ++i) stored[i] = checksum::Finalize(sums[i], bb);

  PagedTransfer load{&*p, blocks, TransferDirection::kLoad};
  load.checksum_sums = sums.data();
  std::vector<uint64_t> copied(3, 0x5a5a);  // checksum_sums_host: a copy of the sums
  load.checksum_sums_host = copied.data();
  ASSERT_TRUE(CpuCopy(load).ok());
  EXPECT_TRUE(VerifyBlockChecksums(sums, stored, bb).ok());
  EXPECT_EQ(copied, sums);

  slots.data()[bb + 12345] ^= 0x10;  // one bit of block 1
  ASSERT_TRUE(CpuCopy(load).ok());
  Status st = VerifyBlockChecksums(sums, stored, bb);
  EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("block 1"), std::string::npos) << st.ToString();
}

TEST(CpuCopyChecksumTest, SwappedPiecesAreDetected) {
  // The same bytes in another order must not give the same checksum: swap two
  // head rows of a stored block.
  CaseSpec spec{Layout::kFlashInferHnd, KvDtype::kFp8E4M3, 16};
  const KvPoolShape shape = CaseShape(spec);
  HostBytes pool(PoolAllocBytes(spec.layout, shape));
  FillRandom(pool.data(), pool.size(), 14);
  auto p = BuildPool(spec.layout, shape, pool.data());
  ASSERT_TRUE(p.ok());
  const uint64_t bb = shape.block_bytes();
  HostBytes slot(bb);
  std::vector<BlockRef> blocks = {{slot.data(), 2}};
  uint64_t sum = 0;
  PagedTransfer store{&*p, blocks, TransferDirection::kStore};
  store.checksum_sums = &sum;
  ASSERT_TRUE(CpuCopy(store).ok());
  const uint64_t stored = checksum::Finalize(sum, bb);
  std::vector<char> tmp(shape.row_bytes());
  char* r0 = slot.data();
  char* r1 = slot.data() + shape.row_bytes();
  std::memcpy(tmp.data(), r0, tmp.size());
  std::memcpy(r0, r1, tmp.size());
  std::memcpy(r1, tmp.data(), tmp.size());
  PagedTransfer load{&*p, blocks, TransferDirection::kLoad};
  load.checksum_sums = &sum;
  ASSERT_TRUE(CpuCopy(load).ok());
  EXPECT_NE(checksum::Finalize(sum, bb), stored);
}

TEST(CpuCopyTest, RejectsInvalidTransfer) {
  CaseSpec spec{Layout::kVllmFlash, KvDtype::kBf16, 16};
  const KvPoolShape shape = CaseShape(spec);
  HostBytes pool(PoolAllocBytes(spec.layout, shape));
  auto p = BuildPool(spec.layout, shape, pool.data());
  ASSERT_TRUE(p.ok());
  HostBytes slot(shape.block_bytes());
  std::vector<BlockRef> blocks = {{slot.data(), shape.num_pages}};
  PagedTransfer t{&*p, blocks, TransferDirection::kLoad};
  EXPECT_TRUE(CpuCopy(t).IsInvalidArgument());
  // Sums to copy to the host, but none computed.
  blocks[0].page = 0;
  uint64_t host_sum = 0;
  PagedTransfer no_sums{&*p, blocks, TransferDirection::kLoad};
  ASSERT_TRUE(CpuCopy(no_sums).ok());
  no_sums.checksum_sums_host = &host_sum;
  Status st = CpuCopy(no_sums);
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("checksum_sums_host"), std::string::npos) << st.ToString();
}

}  // namespace
}  // namespace kvtier
