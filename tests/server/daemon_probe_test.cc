// Namespace.probe: where a cached prefix lives, with nothing pinned, counted
// or promoted — against a real daemon, host tier and NVMe after a restart.
#include <vector>

#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;

std::vector<BlockKey> PromptKeys(const ClientNamespace& ns, uint32_t prompt, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = prompt * 1000003u + uint32_t(i);
  return ns.HashTokens(tokens);
}

void Store(ClientNamespace& ns, std::span<const BlockKey> keys) {
  std::vector<std::vector<uint8_t>> bufs(keys.size(), std::vector<uint8_t>(ns.block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < keys.size(); ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  auto r = ns.Store(keys, ptrs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->stored, keys.size());
}

TEST(DaemonProbeTest, ProbeNamesTiersOfThePrefixAndPinsNothing) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = PromptKeys(**ns, 1, 12);
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
  auto other_keys = PromptKeys(**ns, 2, 4);
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
  const std::vector<std::string> flags = {"--nvme-capacity", "256M", "--nvme-write-policy",
                                          "write-through"};
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  std::vector<BlockKey> keys;
  {
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    keys = PromptKeys(**ns, 3, 6);
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
