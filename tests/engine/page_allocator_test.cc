// PageAllocator: the engine's KV page free list.
#include "engine_adapter/engine/page_allocator.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>

namespace kvtier::engine {
namespace {

TEST(PageAllocatorTest, HandsOutEveryPageOnceThenRefuses) {
  PageAllocator a(10);
  std::vector<int32_t> pages;
  ASSERT_TRUE(a.Allocate(4, &pages).ok());
  ASSERT_TRUE(a.Allocate(6, &pages).ok());
  EXPECT_EQ(a.free_pages(), 0u);
  std::set<int32_t> distinct(pages.begin(), pages.end());
  EXPECT_EQ(distinct.size(), 10u);
  EXPECT_EQ(*distinct.begin(), 0);
  EXPECT_EQ(*distinct.rbegin(), 9);
  EXPECT_EQ(pages.front(), 0);  // lowest index first
  std::vector<int32_t> more;
  Status st = a.Allocate(1, &more);
  EXPECT_TRUE(st.IsResourceExhausted()) << st.ToString();
  EXPECT_NE(st.message().find("1 pages wanted, 0 of 10 free"), std::string::npos) << st.message();
  EXPECT_TRUE(more.empty());
}

TEST(PageAllocatorTest, FailedAllocationTakesNothing) {
  PageAllocator a(5);
  std::vector<int32_t> pages;
  ASSERT_TRUE(a.Allocate(3, &pages).ok());
  EXPECT_FALSE(a.Allocate(3, &pages).ok());
  EXPECT_EQ(pages.size(), 3u);
  EXPECT_EQ(a.free_pages(), 2u);
}

TEST(PageAllocatorTest, FreedPagesComeBack) {
  PageAllocator a(4);
  std::vector<int32_t> p1, p2;
  ASSERT_TRUE(a.Allocate(4, &p1).ok());
  ASSERT_TRUE(a.Free({p1[1], p1[3]}).ok());
  EXPECT_EQ(a.free_pages(), 2u);
  ASSERT_TRUE(a.Allocate(2, &p2).ok());
  std::sort(p2.begin(), p2.end());
  EXPECT_EQ(p2, (std::vector<int32_t>{p1[1], p1[3]}));
}

TEST(PageAllocatorTest, RefusesBadFreesAndChangesNothing) {
  PageAllocator a(4);
  std::vector<int32_t> pages;
  ASSERT_TRUE(a.Allocate(2, &pages).ok());  // pages 0 and 1
  for (const std::vector<int32_t>& bad :
       {std::vector<int32_t>{-1}, {4}, {2}, {0, 0}, {1, 0, 1}}) {
    Status st = a.Free(bad);
    EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
    EXPECT_EQ(a.free_pages(), 2u);
  }
  // The pages are still allocated and can be freed once.
  EXPECT_TRUE(a.Free(pages).ok());
  EXPECT_EQ(a.free_pages(), 4u);
  EXPECT_FALSE(a.Free(pages).ok());
}

TEST(PageAllocatorTest, PagesFor) {
  EXPECT_EQ(PagesFor(0, 16), 0u);
  EXPECT_EQ(PagesFor(1, 16), 1u);
  EXPECT_EQ(PagesFor(16, 16), 1u);
  EXPECT_EQ(PagesFor(17, 16), 2u);
  EXPECT_EQ(PagesFor(32768, 16), 2048u);
}

}  // namespace
}  // namespace kvtier::engine
