#include "tiers/slab_allocator.h"

#include <gtest/gtest.h>

#include <random>
#include <set>
#include <vector>

namespace kvtier {
namespace {

SlabOptions Opts(uint64_t capacity, uint64_t region = 1 << 20) {
  SlabOptions o;
  o.capacity = capacity;
  o.region_bytes = region;
  return o;
}

TEST(SlabAllocatorTest, RejectsBadOptions) {
  EXPECT_TRUE(SlabAllocator::Create(Opts(1000, 1 << 20)).status().IsInvalidArgument());
  SlabOptions o = Opts(8 << 20);
  o.alignment = 3000;
  EXPECT_TRUE(SlabAllocator::Create(o).status().IsInvalidArgument());
  o = Opts(8 << 20);
  o.growth = 1.0;
  EXPECT_TRUE(SlabAllocator::Create(o).status().IsInvalidArgument());
}

TEST(SlabAllocatorTest, ClassesAreAlignedAndCoverSizes) {
  auto a = SlabAllocator::Create(Opts(8 << 20));
  ASSERT_TRUE(a.ok());
  for (size_t c = 0; c < a->num_classes(); ++c) EXPECT_EQ(a->ClassBytes(c) % 4096, 0u);
  for (uint64_t s : {1ull, 4096ull, 4097ull, 100000ull, 1ull << 20}) {
    uint32_t c = a->ClassFor(s);
    ASSERT_NE(c, SlabAllocator::kLargeClass) << s;
    EXPECT_GE(a->ClassBytes(c), s);
    if (c > 0) {
      EXPECT_LT(a->ClassBytes(c - 1), s);
    }
  }
  EXPECT_EQ(a->ClassFor((1 << 20) + 1), SlabAllocator::kLargeClass);
}

TEST(SlabAllocatorTest, SlotsNeverOverlapAcrossClassesAndLargeItems) {
  auto a = SlabAllocator::Create(Opts(64 << 20));
  ASSERT_TRUE(a.ok());
  std::mt19937 rng(3);
  std::vector<Slot> live;
  for (int step = 0; step < 20000; ++step) {
    if (live.empty() || rng() % 3 != 0) {
      uint64_t sizes[] = {4096, 20000, 65536, 300000, 1 << 20, (3 << 20) + 5};
      uint64_t s = sizes[rng() % 6];
      auto r = a->Allocate(s);
      if (r.ok()) {
        EXPECT_EQ(r->offset % 4096, 0u);
        EXPECT_LE(r->offset + s, a->capacity());
        live.push_back(*r);
      } else {
        EXPECT_TRUE(r.status().IsResourceExhausted());
      }
    } else {
      size_t i = rng() % live.size();
      a->Free(live[i]);
      live[i] = live.back();
      live.pop_back();
    }
    if (step % 1000 == 0) {
      // No two live slots overlap.
      std::vector<std::pair<uint64_t, uint64_t>> iv;
      for (auto& s : live) iv.emplace_back(s.offset, s.offset + s.bytes);
      std::sort(iv.begin(), iv.end());
      for (size_t i = 1; i < iv.size(); ++i) ASSERT_LE(iv[i - 1].second, iv[i].first);
    }
  }
  for (auto& s : live) a->Free(s);
  EXPECT_EQ(a->used_bytes(), 0u);
  EXPECT_EQ(a->free_regions(), 64u);  // every region came back
}

TEST(SlabAllocatorTest, FullRegionsReturnToThePoolForOtherClasses) {
  auto a = SlabAllocator::Create(Opts(2 << 20));  // two regions
  ASSERT_TRUE(a.ok());
  std::vector<Slot> small;
  for (;;) {
    auto r = a->Allocate(4096);
    if (!r.ok()) break;
    small.push_back(*r);
  }
  EXPECT_EQ(small.size(), 2u * 256);
  EXPECT_TRUE(a->Allocate(1 << 20).status().IsResourceExhausted());
  // Freeing one small slot does not help a 1 MiB item unless its region empties.
  EXPECT_FALSE(a->FreeingHelps(small[0], 1 << 20));
  EXPECT_TRUE(a->FreeingHelps(small[0], 4096));
  for (size_t i = 0; i < 256; ++i) a->Free(small[i]);
  auto big = a->Allocate(1 << 20);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->offset, 0u);  // the emptied first region
  EXPECT_TRUE(a->Allocate(4096).status().IsResourceExhausted());  // region 2 is full
}

TEST(SlabAllocatorTest, LargeItemsTakeContiguousRuns) {
  auto a = SlabAllocator::Create(Opts(8 << 20));
  ASSERT_TRUE(a.ok());
  auto x = a->Allocate(3 << 20);
  ASSERT_TRUE(x.ok());
  EXPECT_EQ(x->size_class, SlabAllocator::kLargeClass);
  auto y = a->Allocate(5 << 20);
  ASSERT_TRUE(y.ok());
  EXPECT_TRUE(a->Allocate(1).status().IsResourceExhausted());
  a->Free(*x);
  EXPECT_TRUE(a->Allocate(4 << 20).status().IsResourceExhausted());  // only 3 free
  EXPECT_TRUE(a->Allocate(3 << 20).ok());
  EXPECT_TRUE(a->Allocate(9 << 20).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
