// Tests of AccountingTier (tiers/accounting_tier.cc). It lives with the
// simulator tests because the simulator is its only user.
#include "tiers/accounting_tier.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace kvtier {
namespace {

std::unique_ptr<AccountingTier> Make(uint64_t block, uint64_t blocks) {
  AccountingTierOptions o;
  o.block_bytes = block;
  o.capacity_bytes = block * blocks;
  return std::move(AccountingTier::Create(o)).value();
}

TEST(AccountingTierTest, CapacityIsExactInBlocks) {
  for (uint64_t blocks : {1u, 7u, 1023u, 1025u, 3001u}) {
    auto t = Make(4096, blocks);
    EXPECT_EQ(t->capacity_blocks(), blocks);
    EXPECT_EQ(t->capacity_bytes(), blocks * 4096);
    EXPECT_GE(t->address_blocks(), blocks);
    std::set<uint64_t> offsets;
    for (uint64_t i = 0; i < blocks; ++i) {
      auto s = t->Allocate(4096);
      ASSERT_TRUE(s.ok()) << i;
      EXPECT_EQ(s->offset % 4096, 0u);
      EXPECT_LT(s->offset / 4096, t->address_blocks());
      offsets.insert(s->offset);
    }
    EXPECT_EQ(offsets.size(), blocks);
    EXPECT_TRUE(t->Allocate(1).status().IsResourceExhausted());
    EXPECT_EQ(t->used_blocks(), blocks);
    EXPECT_EQ(t->Address(Slot{}), nullptr);
  }
}

TEST(AccountingTierTest, OddBlockSizesAndFreeLog) {
  auto t = Make(1000, 3);  // not a power of two
  std::vector<uint64_t> log;
  t->set_free_log(&log);
  auto a = t->Allocate(1000);
  auto b = t->Allocate(10);  // smaller items take a whole block
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE(t->Allocate(1001).status().IsInvalidArgument());
  EXPECT_TRUE(t->FreeingHelps(*a, 1000));
  t->Free(*b);
  t->Free(*a);
  EXPECT_EQ(log, (std::vector<uint64_t>{b->offset, a->offset}));
  EXPECT_EQ(t->used_blocks(), 0u);
  EXPECT_EQ(t->counters().frees, 2u);
}

TEST(AccountingTierTest, RejectsEmptyCapacity) {
  AccountingTierOptions o;
  o.block_bytes = 4096;
  o.capacity_bytes = 4095;
  EXPECT_TRUE(AccountingTier::Create(o).status().IsInvalidArgument());
  o.block_bytes = 0;
  EXPECT_TRUE(AccountingTier::Create(o).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
