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

TEST(SlabAllocatorTest, SizesInUseGetSlotsOfExactlyTheirSize) {
  auto a = SlabAllocator::Create(Opts(64 << 20, 8 << 20));
  ASSERT_TRUE(a.ok());
  // 2 MiB is no geometric class (x1.25 from 4 KiB): it still gets 2 MiB slots.
  for (uint64_t bytes : {2ull << 20, 100ull << 10, 100000ull, 24ull << 10}) {
    auto s = a->Allocate(bytes);
    ASSERT_TRUE(s.ok()) << bytes;
    EXPECT_EQ(a->ClassBytes(s->size_class), (bytes + 4095) / 4096 * 4096) << bytes;
    EXPECT_EQ(s->offset % 4096, 0u);
    EXPECT_EQ(a->ClassFor(bytes), s->size_class);
  }
  // 100000 and 100 KiB share the 102400-byte class (24 KiB is a geometric
  // one): 3 regions are in use.
  EXPECT_EQ(a->free_regions(), 5u);
  // A region of 2 MiB slots holds exactly 4 of them: nothing lost.
  auto s2 = a->Allocate(2 << 20);
  auto s3 = a->Allocate(2 << 20);
  auto s4 = a->Allocate(2 << 20);
  ASSERT_TRUE(s4.ok());
  EXPECT_EQ(a->ClassRegions(s4->size_class), 1u);
  EXPECT_EQ(a->ClassUsedSlots(s4->size_class), 4u);
}

TEST(SlabAllocatorTest, ExactClassesAreCappedThenGeometricClassesServe) {
  SlabOptions o = Opts(64 << 20);
  o.max_exact_classes = 2;
  auto a = SlabAllocator::Create(o);
  ASSERT_TRUE(a.ok());
  const size_t base = a->num_classes();
  // Neither 52 KiB nor 164 KiB is a geometric class.
  ASSERT_TRUE(a->Allocate(13 * 4096 - 7).ok());
  ASSERT_TRUE(a->Allocate(41 * 4096).ok());
  EXPECT_EQ(a->num_classes(), base + 2);
  auto s = a->Allocate(9 * 4096 + 5);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(a->num_classes(), base + 2);
  EXPECT_GE(a->ClassBytes(s->size_class), 10u * 4096);
}

TEST(SlabAllocatorTest, ShortLastRegionIsUsedToTheLastByte) {
  // Two 4 MiB regions and a tail of 2 MiB + 12 KiB.
  auto a = SlabAllocator::Create(Opts((10 << 20) + (12 << 10) + 100, 4 << 20));
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->capacity(), (10u << 20) + (12u << 10));
  EXPECT_EQ(a->num_regions(), 3u);
  std::vector<Slot> slots;
  for (;;) {
    auto s = a->Allocate(1 << 20);
    if (!s.ok()) {
      EXPECT_TRUE(s.status().IsResourceExhausted());
      break;
    }
    EXPECT_LE(s->offset + s->bytes, a->capacity());
    slots.push_back(*s);
  }
  EXPECT_EQ(slots.size(), 10u);  // 4 + 4 + 2
  for (auto& s : slots) a->Free(s);
  // The tail cannot hold a 3 MiB slot, nor be part of a large run.
  auto big = a->Allocate(3 << 20);
  ASSERT_TRUE(big.ok());
  EXPECT_LT(big->offset, 8u << 20);
  auto big2 = a->Allocate(3 << 20);
  ASSERT_TRUE(big2.ok());
  EXPECT_FALSE(a->Allocate(3 << 20).ok());
  EXPECT_FALSE(a->Allocate(5 << 20).ok());
  a->Free(*big);
  a->Free(*big2);
  auto run = a->Allocate(5 << 20);
  ASSERT_TRUE(run.ok());
  EXPECT_EQ(run->offset, 0u);
}

// A restarted persistent segment: Adopt() gives each slot the class Allocate()
// would use now, creating exact classes as Allocate() does, and renumbers it
// (exact-class ids follow creation order, which differs between runs). The
// adopted slot can be owned, listed in its region, freed and reused.
TEST(SlabAllocatorTest, AdoptCreatesExactClassesAndRenumbersSlots) {
  auto a = SlabAllocator::Create(Opts(16 << 20, 4 << 20));
  ASSERT_TRUE(a.ok());
  auto first = a->Allocate(100000);  // exact class created first: region 0
  auto kept = a->Allocate(52 << 10);  // second exact class: region 1
  auto large = a->Allocate(5 << 20);  // a run of two regions
  ASSERT_TRUE(first.ok() && kept.ok() && large.ok());
  ASSERT_NE(a->RegionOf(kept->offset), a->RegionOf(first->offset));

  auto b = SlabAllocator::Create(Opts(16 << 20, 4 << 20));
  ASSERT_TRUE(b.ok());
  const size_t base = b->num_classes();
  std::vector<Slot> slots = {*large, *kept};  // the 100000-byte block is gone
  Slot wrong = *kept;
  wrong.offset += 4096;  // not where a 52 KiB class puts a slot
  slots.push_back(wrong);
  std::vector<bool> ok;
  b->Adopt(slots, &ok);
  EXPECT_EQ(ok, (std::vector<bool>{true, true, false}));
  EXPECT_EQ(b->num_classes(), base + 1);
  EXPECT_EQ(slots[1].size_class, b->ClassFor(52 << 10));
  EXPECT_NE(slots[1].size_class, kept->size_class) << "renumbered: created first in this run";
  EXPECT_EQ(b->ClassBytes(slots[1].size_class), 52u << 10);
  EXPECT_EQ(b->used_bytes(), (52u << 10) + (8u << 20));
  EXPECT_EQ(b->ClassUsedSlots(slots[1].size_class), 1u);
  EXPECT_EQ(b->ClassRegions(slots[1].size_class), 1u);
  b->SetOwner(slots[1], 7);
  std::vector<uint32_t> owners;
  b->RegionOwners(b->RegionOf(slots[1].offset), &owners);
  EXPECT_EQ(owners, (std::vector<uint32_t>{7}));
  // Another of the size lands in the adopted region, never on the slot.
  auto more = b->Allocate(52 << 10);
  ASSERT_TRUE(more.ok());
  EXPECT_EQ(more->size_class, slots[1].size_class);
  EXPECT_EQ(b->RegionOf(more->offset), b->RegionOf(slots[1].offset));
  EXPECT_NE(more->offset, slots[1].offset);
  b->Free(*more);
  b->Free(slots[1]);
  b->Free(slots[0]);
  EXPECT_EQ(b->used_bytes(), 0u);
  EXPECT_EQ(b->free_regions(), 4u);
}

}  // namespace
}  // namespace kvtier
