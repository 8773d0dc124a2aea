// Tensor-parallel groups against a real kvtierd: a prefix is a hit only if
// every rank has it.
#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;

NamespaceSpec Rank(uint32_t r, uint32_t n) {
  NamespaceSpec s = DemoSpec();
  s.tp_rank = r;
  s.tp_size = n;
  return s;
}

void StoreN(ClientNamespace& ns, const std::vector<BlockKey>& keys, size_t n) {
  std::vector<std::vector<uint8_t>> bufs(n, std::vector<uint8_t>(ns.block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  auto r = ns.Store(std::span(keys).subspan(0, n), ptrs);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->stored, n);
}

TEST(DaemonTpTest, GroupAgreesOnTheShortestPrefixAndLoadsEachSlice) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  const uint32_t kRanks = 4;
  std::vector<std::unique_ptr<ClientNamespace>> ns;
  std::vector<std::vector<BlockKey>> keys;
  std::vector<uint32_t> tokens(16 * 12);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i * 3 + 1);
  for (uint32_t r = 0; r < kRanks; ++r) {
    auto n = (*c)->OpenNamespace(Rank(r, kRanks));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ns.push_back(std::move(n).value());
    keys.push_back(ns.back()->HashTokens(tokens));  // same tokens, per-rank keys
  }
  EXPECT_NE(keys[0][0], keys[1][0]) << "ranks hold different KV slices: different keys";
  // Ranks cached different amounts: 12, 9, 12, 7 blocks.
  const size_t have[kRanks] = {12, 9, 12, 7};
  for (uint32_t r = 0; r < kRanks; ++r) StoreN(*ns[r], keys[r], have[r]);

  std::vector<ClientNamespace*> ranks;
  for (auto& n : ns) ranks.push_back(n.get());
  auto leases = (*c)->AcquireTp(ranks, keys);
  ASSERT_TRUE(leases.ok()) << leases.status().ToString();
  ASSERT_EQ(leases->size(), kRanks);
  std::vector<uint8_t> want(ns[0]->block_bytes());
  for (uint32_t r = 0; r < kRanks; ++r) {
    const ClientLease& l = (*leases)[r];
    ASSERT_EQ(l.size(), 7u) << "rank " << r;
    std::vector<std::vector<uint8_t>> got(l.size(), std::vector<uint8_t>(want.size()));
    std::vector<uint8_t*> dst;
    for (auto& g : got) dst.push_back(g.data());
    ASSERT_TRUE(ns[r]->Load(l, dst).ok());
    for (size_t i = 0; i < l.size(); ++i) {
      FillFromKey(keys[r][i], want.data(), want.size());
      ASSERT_EQ(got[i], want) << "rank " << r << " block " << i;  // its own slice
    }
  }
  // Only the common prefix stays pinned.
  auto st = (*c)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->pinned_blocks, 7u * kRanks);
  leases->clear();
  for (int i = 0; i < 50; ++i) {
    st = (*c)->Stats();
    if (st->pinned_blocks == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(st->pinned_blocks, 0u);
}

TEST(DaemonTpTest, RanksMustBeOpenedOnTheConnection) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto a = Client::Connect(d.socket());
  auto b = Client::Connect(d.socket());
  ASSERT_TRUE(a.ok() && b.ok());
  auto na = (*a)->OpenNamespace(Rank(0, 2));
  auto nb = (*b)->OpenNamespace(Rank(1, 2));
  ASSERT_TRUE(na.ok() && nb.ok());
  std::vector<ClientNamespace*> ranks = {na->get(), nb->get()};
  std::vector<std::vector<BlockKey>> keys(2);
  auto r = (*a)->AcquireTp(ranks, keys);  // rank 1's namespace belongs to client b
  EXPECT_TRUE(r.status().IsNotFound()) << r.status().ToString();
  std::vector<ClientNamespace*> none;
  std::vector<std::vector<BlockKey>> no_keys;
  EXPECT_TRUE((*a)->AcquireTp(none, no_keys).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
