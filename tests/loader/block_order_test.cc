// Tests loader/block_order.h: OrderByPage equals a stable sort by page, with
// every entry's sum_index naming its place in the input, for pages needing
// one to four byte passes, duplicates, sorted and empty inputs.
#include "loader/block_order.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

namespace kvtier {
namespace {

std::vector<BlockRef> Refs(const std::vector<uint32_t>& pages) {
  std::vector<BlockRef> v;
  for (size_t i = 0; i < pages.size(); ++i)
    v.push_back(BlockRef{reinterpret_cast<void*>(uintptr_t{16} * (i + 1)), pages[i], 999});
  return v;
}

void ExpectOrdered(const std::vector<BlockRef>& in) {
  std::vector<BlockRef> got(in.size());
  std::vector<BlockRef> tmp;
  OrderByPage(in, got.data(), &tmp);
  std::vector<size_t> want(in.size());
  for (size_t i = 0; i < want.size(); ++i) want[i] = i;
  std::stable_sort(want.begin(), want.end(),
                   [&](size_t a, size_t b) { return in[a].page < in[b].page; });
  for (size_t k = 0; k < in.size(); ++k) {
    ASSERT_EQ(got[k].sum_index, want[k]) << "position " << k;
    EXPECT_EQ(got[k].page, in[want[k]].page);
    EXPECT_EQ(got[k].slot, in[want[k]].slot);
  }
}

TEST(BlockOrderTest, SortsPagesOfEveryWidthStably) {
  std::mt19937 rng(7);
  for (uint32_t max_page : {200u, 2047u, 70000u, 30000000u, 0xFFFFFFFFu}) {
    SCOPED_TRACE(max_page);
    std::uniform_int_distribution<uint32_t> page(0, max_page);
    std::vector<uint32_t> pages(3000);
    for (auto& p : pages) p = page(rng);
    ExpectOrdered(Refs(pages));
  }
  // A permutation of the pool's pages, as an engine's free list hands out.
  std::vector<uint32_t> perm(2048);
  for (uint32_t i = 0; i < perm.size(); ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  ExpectOrdered(Refs(perm));
  // Duplicates (stores may name one page twice) keep their input order.
  ExpectOrdered(Refs({5, 3, 5, 3, 300, 5, 0, 300}));
}

TEST(BlockOrderTest, SortedSingleAndEmptyInputs) {
  ExpectOrdered(Refs({0, 1, 1, 2, 900, 70000}));
  ExpectOrdered(Refs({42}));
  ExpectOrdered(Refs({}));
  // The tmp buffer is reused across calls of different sizes.
  std::vector<BlockRef> tmp;
  std::vector<BlockRef> out(4);
  OrderByPage(Refs({3, 2, 1, 0}), out.data(), &tmp);
  EXPECT_EQ(out[0].page, 0u);
  EXPECT_EQ(out[0].sum_index, 3u);
  out.resize(2);
  OrderByPage(Refs({9, 8}), out.data(), &tmp);
  EXPECT_EQ(out[0].page, 8u);
  EXPECT_EQ(out[1].sum_index, 0u);
}

}  // namespace
}  // namespace kvtier
