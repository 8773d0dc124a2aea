// Namespace.probe: where a cached prefix lives, with nothing pinned, counted
// or promoted — against a real daemon, host tier and NVMe after a restart.
#include <vector>

#include "tests/server/daemon_nvme_util.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::DemoSpec;
using testing::Keys;
using testing::NvmeFlags;

void Store(ClientNamespace& ns, std::span<const BlockKey> keys) {
  ASSERT_TRUE(testing::StoreKeys(ns, keys).ok());
}

TEST(DaemonProbeTest, ProbeNamesTiersOfThePrefixAndPinsNothing) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = Keys(**ns, 1, 12);
  Store(**ns, std::span(keys).first(8));
  auto before = (*c)->Stats();
  ASSERT_TRUE(before.ok());
  auto tiers = (*ns)->Probe(keys);
  ASSERT_TRUE(tiers.ok()) << tiers.status().ToString();
  EXPECT_EQ(*tiers, std::vector<TierKind>(8, TierKind::kHost));
  auto after = (*c)->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->pinned_blocks, 0u);
  EXPECT_EQ(after->acquires, before->acquires);
  EXPECT_EQ(after->blocks_hit, before->blocks_hit);
  // A miss is an empty answer; another namespace sees nothing of this one's.
  auto other_keys = Keys(**ns, 2, 4);
  EXPECT_TRUE((*ns)->Probe(other_keys)->empty());
  NamespaceSpec spec = DemoSpec();
  spec.model_revision = "other";
  auto other = (*c)->OpenNamespace(spec);
  ASSERT_TRUE(other.ok());
  EXPECT_TRUE((*other)->Probe(keys)->empty());
  // Too many keys is a clear error, and the daemon goes on.
  std::vector<BlockKey> many(1 << 20, keys[0]);
  auto refused = (*ns)->Probe(many);
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
  EXPECT_EQ((*ns)->Probe(keys)->size(), 8u);
}

TEST(DaemonProbeTest, ProbeAfterARestartNamesNvmeAndPromotesNothing) {
  const std::vector<std::string> flags = NvmeFlags("write-through");
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  std::vector<BlockKey> keys;
  {
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    keys = Keys(**ns, 3, 6);
    Store(**ns, keys);
  }
  ASSERT_EQ(d.Stop(), 0);  // drains the NVMe writes
  Daemon again(flags, d.dir());
  ASSERT_TRUE(again.running());
  auto c = Client::Connect(again.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  for (int i = 0; i < 2; ++i) {  // probing twice promotes nothing
    auto tiers = (*ns)->Probe(keys);
    ASSERT_TRUE(tiers.ok()) << tiers.status().ToString();
    EXPECT_EQ(*tiers, std::vector<TierKind>(6, TierKind::kNvme));
  }
  // A lookup promotes them; the probe then names the host tier.
  auto lease = (*ns)->Lookup(keys);
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), 6u);
  ASSERT_TRUE(lease->Release().ok());
  EXPECT_EQ(*(*ns)->Probe(keys), std::vector<TierKind>(6, TierKind::kHost));
}

}  // namespace
}  // namespace kvtier
