#include "tiers/numa.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include "tiers/host_shm_tier.h"

namespace kvtier {
namespace {

TEST(NumaTest, ParsesNodeLists) {
  EXPECT_EQ(*ParseNodeList("0"), (std::vector<int>{0}));
  EXPECT_EQ(*ParseNodeList("0-1,3\n"), (std::vector<int>{0, 1, 3}));
  EXPECT_EQ(*ParseNodeList("2-4"), (std::vector<int>{2, 3, 4}));
  EXPECT_TRUE(ParseNodeList("").status().IsInvalidArgument());
  EXPECT_TRUE(ParseNodeList("3-1").status().IsInvalidArgument());
  EXPECT_TRUE(ParseNodeList("a").status().IsInvalidArgument());
  EXPECT_TRUE(ParseNodeList("1,,2").status().IsInvalidArgument());
}

TEST(NumaTest, OnlineNodesIncludeNodeZero) {
  auto nodes = OnlineNumaNodes();
  ASSERT_FALSE(nodes.empty());
  EXPECT_EQ(nodes.front(), 0);
  EXPECT_EQ(NumaNodeOfPciDevice("0000:ff:ff.9"), -1);  // no such device
}

TEST(NumaTest, HostSegmentIsBoundToTheRequestedNode) {
  HostShmOptions o;
  o.capacity_bytes = 8 << 20;
  o.region_bytes = 4 << 20;
  o.numa_nodes = {OnlineNumaNodes().front()};
  auto t = HostShmTier::Create(o);
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  auto policy = MemoryPolicyNodes((*t)->base());
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  EXPECT_EQ(*policy, o.numa_nodes);
  // The memory works.
  (*t)->base()[12345] = 7;
  EXPECT_EQ((*t)->base()[12345], 7);
  o.numa_nodes = {1023};
  EXPECT_FALSE(HostShmTier::Create(o).ok()) << "a node that does not exist is refused";
}

}  // namespace
}  // namespace kvtier
