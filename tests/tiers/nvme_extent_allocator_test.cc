// Tests tiers/nvme_extent_allocator.*.
#include "tiers/nvme_extent_allocator.h"

#include <set>
#include <vector>

#include <gtest/gtest.h>

namespace kvtier {
namespace {

constexpr uint64_t kBase = 1 << 20;
constexpr uint64_t kRegion = 1 << 20;

NvmeExtentAllocator Make(uint64_t regions, std::vector<uint64_t> classes = {8192, 65536,
                                                                           266240}) {
  auto a = NvmeExtentAllocator::Create(
      NvmeAllocatorOptions{kBase, regions * kRegion + 4096, kRegion, std::move(classes)});
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  return std::move(a).value();
}

TEST(NvmeExtentAllocator, RejectsBadOptions) {
  EXPECT_FALSE(NvmeExtentAllocator::Create({kBase, kRegion - 1, kRegion, {8192}}).ok());
  EXPECT_FALSE(NvmeExtentAllocator::Create({kBase, kRegion, kRegion, {5000}}).ok());
  EXPECT_FALSE(NvmeExtentAllocator::Create({kBase, kRegion, kRegion, {2 * kRegion}}).ok());
  EXPECT_FALSE(NvmeExtentAllocator::Create({kBase + 1, kRegion, kRegion, {8192}}).ok());
}

TEST(NvmeExtentAllocator, ClassesSlotsAndExhaustion) {
  auto a = Make(2);
  EXPECT_EQ(a.num_regions(), 2u);
  EXPECT_EQ(a.capacity_bytes(), 2 * kRegion);
  EXPECT_EQ(a.SlotBytes(5000), 8192u);
  EXPECT_EQ(a.SlotBytes(8192), 8192u);
  EXPECT_EQ(a.SlotBytes(8193), 65536u);
  EXPECT_EQ(a.SlotBytes(300000), kRegion);  // above the largest class: a region run
  std::set<uint64_t> offsets;
  // 1 MiB / 8 KiB = 128 slots per region, two regions.
  for (int i = 0; i < 256; ++i) {
    auto off = a.Allocate(8192);
    ASSERT_TRUE(off.ok()) << i;
    EXPECT_EQ((*off - kBase) % 8192, 0u);
    EXPECT_TRUE(offsets.insert(*off).second);
  }
  EXPECT_EQ(a.free_regions(), 0u);
  EXPECT_TRUE(a.Allocate(8192).status().IsResourceExhausted());
  EXPECT_TRUE(a.Allocate(65536).status().IsResourceExhausted());
  EXPECT_EQ(a.used_bytes(), 2 * kRegion);
  EXPECT_EQ(a.allocated_extents(), 256u);
  // Freeing every slot of the first region returns it to the pool, and a
  // different class can then use it.
  for (uint64_t off = kBase; off < kBase + kRegion; off += 8192) {
    ASSERT_TRUE(a.Free(off, 8192).ok());
  }
  EXPECT_EQ(a.free_regions(), 1u);
  auto big = a.Allocate(65536);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(*big, kBase);
  // 266240-byte class: 3 slots per 1 MiB region, the rest wasted.
  EXPECT_EQ(a.SlotBytes(266240), 266240u);
}

TEST(NvmeExtentAllocator, FreeChecksAndReuse) {
  auto a = Make(1);
  auto x = a.Allocate(8192);
  auto y = a.Allocate(8192);
  ASSERT_TRUE(x.ok() && y.ok());
  EXPECT_TRUE(a.Free(*x, 65536).IsInvalidArgument());  // wrong class
  EXPECT_TRUE(a.Free(*x + 4096, 8192).IsInvalidArgument());
  EXPECT_TRUE(a.Free(kBase + 10 * kRegion, 8192).IsInvalidArgument());
  ASSERT_TRUE(a.Free(*x, 8192).ok());
  EXPECT_TRUE(a.Free(*x, 8192).IsInvalidArgument());  // double free
  auto z = a.Allocate(8192);
  ASSERT_TRUE(z.ok());
  EXPECT_EQ(*z, *x);  // lowest free slot first
}

TEST(NvmeExtentAllocator, LargeExtentsTakeRegionRuns) {
  auto a = Make(5);
  auto s = a.Allocate(8192);  // region 0
  ASSERT_TRUE(s.ok());
  auto l = a.Allocate(2 * kRegion + 4096);  // 3 regions: 1..3
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(*l, kBase + kRegion);
  EXPECT_EQ(a.free_regions(), 1u);
  EXPECT_TRUE(a.Allocate(2 * kRegion).status().IsResourceExhausted());
  EXPECT_TRUE(a.Free(*l, kRegion + 1).IsInvalidArgument());  // wrong run length
  ASSERT_TRUE(a.Free(*l, 2 * kRegion + 4096).ok());
  EXPECT_EQ(a.free_regions(), 4u);
  auto l2 = a.Allocate(4 * kRegion);
  ASSERT_TRUE(l2.ok());
  EXPECT_EQ(*l2, kBase + kRegion);
  EXPECT_TRUE(a.Allocate(6 * kRegion).status().IsInvalidArgument());  // above the data area
}

TEST(NvmeExtentAllocator, MarkAllocatedRebuildsState) {
  auto a = Make(4);
  // Slot 3 of an 8 KiB region, slot 1 of a 64 KiB region, a 2-region run.
  ASSERT_TRUE(a.MarkAllocated(kBase + 3 * 8192, 8192).ok());
  ASSERT_TRUE(a.MarkAllocated(kBase + kRegion + 65536, 60000).ok());
  ASSERT_TRUE(a.MarkAllocated(kBase + 2 * kRegion, 2 * kRegion).ok());
  EXPECT_EQ(a.allocated_extents(), 3u);
  EXPECT_EQ(a.free_regions(), 0u);
  // Overlaps and class conflicts are refused, misalignment too.
  EXPECT_EQ(a.MarkAllocated(kBase + 3 * 8192, 8192).code(), StatusCode::kRejected);
  EXPECT_EQ(a.MarkAllocated(kBase + 65536, 65536).code(), StatusCode::kRejected);
  EXPECT_TRUE(a.MarkAllocated(kBase + 4096, 8192).IsInvalidArgument());
  EXPECT_EQ(a.MarkAllocated(kBase + 2 * kRegion, kRegion * 2).code(), StatusCode::kRejected);
  EXPECT_TRUE(a.MarkAllocated(kBase + 3 * kRegion, 2 * kRegion).IsInvalidArgument());
  EXPECT_TRUE(a.MarkAllocated(kBase - 8192, 8192).IsInvalidArgument());
  // New allocations avoid what was marked.
  for (int i = 0; i < 127; ++i) {
    auto off = a.Allocate(8192);
    ASSERT_TRUE(off.ok()) << i;
    EXPECT_NE(*off, kBase + 3 * 8192);
  }
  EXPECT_TRUE(a.Allocate(8192).status().IsResourceExhausted());
  ASSERT_TRUE(a.Free(kBase + 2 * kRegion, 2 * kRegion).ok());
  EXPECT_EQ(a.free_regions(), 2u);
}

}  // namespace
}  // namespace kvtier
