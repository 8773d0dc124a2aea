// Tenants in the cache (cache/cache.h, docs/security.md): each tenant's
// blocks in its own tier, an index keyed by (tenant, key), eviction that
// never crosses tenants, and checksums checked at commit.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include "cache/cache.h"
#include "tests/cache/cache_test_util.h"
#include "tiers/checksum.h"
#include "tiers/host_shm_tier.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::MatchesKey;
using testing::SmallSpec;

constexpr uint64_t kBlock = 16 << 10;  // SmallSpec's block

// A cache of two tenants "a" and "b", each with a host tier of `bytes`.
std::unique_ptr<Cache> TwoTenants(uint64_t bytes, bool verify = false,
                                  const std::string& ns_file = "") {
  CacheOptions o;
  for (uint8_t t = 0; t < 2; ++t) {
    HostShmOptions ho;
    ho.capacity_bytes = bytes;
    ho.region_bytes = std::min<uint64_t>(bytes, 1 << 20);
    auto tier = HostShmTier::Create(ho);
    if (!tier.ok()) return nullptr;
    TierSetup ts{std::move(tier).value(), "priority-lru"};
    ts.tenant = t;
    ts.name = t == 0 ? "host/a" : "host/b";
    o.tiers.push_back(std::move(ts));
  }
  o.tenants = {CacheTenant{"a"}, CacheTenant{"b"}};
  o.verify_at_commit = verify;
  o.namespace_file = ns_file;
  auto c = Cache::Create(std::move(o));
  return c.ok() ? std::move(c).value() : nullptr;
}

std::vector<BlockKey> Keys(uint64_t first, size_t n) {
  std::vector<BlockKey> k;
  for (size_t i = 0; i < n; ++i) k.push_back(BlockKey{first + i, 0xABCDull * (first + i) + 7});
  return k;
}

NamespaceSpec SpecOf(const std::string& tenant) {
  NamespaceSpec s = SmallSpec();
  s.tenant = tenant;
  return s;
}

// Stores `keys` in `ns`; returns how many were reserved and committed.
size_t Store(Cache& c, NamespaceId ns, const std::vector<BlockKey>& keys) {
  std::vector<uint64_t> sizes(keys.size(), kBlock);
  auto r = c.Reserve(ns, keys, sizes);
  if (!r.ok()) return 0;
  size_t n = r->reserved();
  auto sums = FillReserved(c, *r);
  if (n > 0 && !c.Commit(*r, sums).ok()) return 0;
  return n;
}

TEST(CacheTenants, SameSpecGivesEachTenantItsOwnNamespace) {
  auto c = TwoTenants(4 << 20);
  ASSERT_NE(c, nullptr);
  auto a = c->OpenNamespace(SpecOf("a"));
  auto b = c->OpenNamespace(SpecOf("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_EQ(c->TenantOf(*a), 0);
  EXPECT_EQ(c->TenantOf(*b), 1);
  EXPECT_TRUE(c->OpenNamespace(SpecOf("nobody")).status().IsNotFound());
  EXPECT_TRUE(c->OpenNamespace(SpecOf("")).status().IsNotFound());  // no default tenant here
}

TEST(CacheTenants, AnotherTenantCannotProbeSquatOrReadBlocks) {
  auto c = TwoTenants(4 << 20);
  ASSERT_NE(c, nullptr);
  auto a = c->OpenNamespace(SpecOf("a"));
  auto b = c->OpenNamespace(SpecOf("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  const auto keys = Keys(100, 8);
  ASSERT_EQ(Store(*c, *a, keys), keys.size());

  // Tenant b, with the very same keys: sees nothing, and its stores are its
  // own (reserved, never "present" or "in flight").
  auto probe = c->Probe(*b, keys);
  ASSERT_TRUE(probe.ok());
  EXPECT_TRUE(probe->empty());
  auto miss = c->Acquire(*b, keys);
  ASSERT_TRUE(miss.ok());
  EXPECT_TRUE(miss->empty());
  std::vector<uint64_t> sizes(keys.size(), kBlock);
  auto r = c->Reserve(*b, keys, sizes);
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->reserved(), keys.size());
  for (const auto& blk : r->blocks()) {
    EXPECT_EQ(blk.outcome, ReserveOutcome::kReserved);
    EXPECT_EQ(blk.tier, c->HostTierOf(1));  // b's segment, not a's
  }
  // b writes garbage and commits it first: a's blocks are untouched.
  std::vector<uint64_t> sums(keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    uint8_t* p = c->Address(r->blocks()[i].tier, r->blocks()[i].offset);
    std::memset(p, 0x5A, kBlock);
    sums[i] = checksum::Sum64(p, kBlock);
  }
  ASSERT_TRUE(c->Commit(*r, sums).ok());
  auto la = c->Acquire(*a, keys);
  ASSERT_TRUE(la.ok());
  ASSERT_EQ(la->size(), keys.size());
  for (size_t i = 0; i < keys.size(); ++i) {
    const auto& blk = la->blocks()[i];
    EXPECT_EQ(blk.tier, c->HostTierOf(0));
    // The payload is a's, derived from the key as the index holds it.
    EXPECT_TRUE(MatchesKey(blk.key, c->Address(blk.tier, blk.offset), blk.size)) << i;
  }
}

TEST(CacheTenants, OneTenantFillingItsTierEvictsOnlyItsOwnBlocks) {
  auto c = TwoTenants(4 << 20);  // 256 blocks each
  ASSERT_NE(c, nullptr);
  auto a = c->OpenNamespace(SpecOf("a"));
  auto b = c->OpenNamespace(SpecOf("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  const auto keys_a = Keys(1, 100);
  ASSERT_EQ(Store(*c, *a, keys_a), keys_a.size());
  // b stores eight times its segment.
  size_t stored = 0;
  for (int round = 0; round < 64; ++round) stored += Store(*c, *b, Keys(100000 + round * 32, 32));
  EXPECT_EQ(stored, 64u * 32);
  CacheStats s = c->Stats();
  EXPECT_EQ(s.tiers[0].evictions, 0u);   // a's tier
  EXPECT_GT(s.tiers[1].evictions, 0u);   // b evicted its own
  auto la = c->Acquire(*a, keys_a);
  ASSERT_TRUE(la.ok());
  EXPECT_EQ(la->size(), keys_a.size());
}

// What HbmTierTest.EachTenantHasItsOwnArenaAndBlocksStayInItsOwnTiers
// stores, with host segments instead of HBM arenas (a tenant's tier of 32
// blocks): one Reserve of twice the tier places only what fits. The blocks
// it reserved are being written, which no eviction or move down may take,
// so the rest have no space (kNoSpace): nothing of the tenant's own is
// evicted for them and the other tenant's tier is not touched. Stored in
// reserves of at most the tier, the older blocks make room (in HBM: they
// move down into the tenant's host segment).
TEST(CacheTenants, OneReserveLargerThanItsTenantsTierPlacesOnlyWhatFits) {
  auto c = TwoTenants(32 * kBlock);
  ASSERT_NE(c, nullptr);
  auto a = c->OpenNamespace(SpecOf("a"));
  auto b = c->OpenNamespace(SpecOf("b"));
  ASSERT_TRUE(a.ok() && b.ok());
  const auto keys_a = Keys(1, 8);
  ASSERT_EQ(Store(*c, *a, keys_a), keys_a.size());
  const auto keys_b = Keys(1000, 64);
  std::vector<uint64_t> sizes(keys_b.size(), kBlock);
  {
    auto r = c->Reserve(*b, keys_b, sizes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(r->reserved(), 32u);
    for (size_t i = 0; i < keys_b.size(); ++i)
      EXPECT_EQ(r->blocks()[i].outcome, i < 32 ? ReserveOutcome::kReserved : ReserveOutcome::kNoSpace)
          << i;
    auto sums = FillReserved(*c, *r);
    ASSERT_TRUE(c->Commit(*r, sums).ok());
  }
  CacheStats s = c->Stats();
  EXPECT_EQ(s.blocks_no_space, 32u);
  EXPECT_EQ(s.tiers[0].blocks, 8u);  // a's
  EXPECT_EQ(s.tiers[0].evictions, 0u);
  EXPECT_EQ(s.tiers[1].blocks, 32u);  // b's: the first 32, nothing evicted for the rest
  EXPECT_EQ(s.tiers[1].evictions, 0u);
  auto l = c->Acquire(*b, keys_b);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->size(), 32u);
  l->Release();
  // The second half in its own reserve: b's first 32 make room for it.
  const std::vector<BlockKey> second(keys_b.begin() + 32, keys_b.end());
  ASSERT_EQ(Store(*c, *b, second), second.size());
  s = c->Stats();
  EXPECT_EQ(s.tiers[0].blocks, 8u);
  EXPECT_EQ(s.tiers[0].evictions, 0u);
  EXPECT_EQ(s.tiers[1].blocks, 32u);
  EXPECT_EQ(s.tiers[1].evictions, 32u);
  auto l2 = c->Acquire(*b, second);
  ASSERT_TRUE(l2.ok());
  ASSERT_EQ(l2->size(), second.size());
  for (const auto& blk : l2->blocks()) {
    EXPECT_EQ(blk.tier, c->HostTierOf(1));
    EXPECT_TRUE(MatchesKey(blk.key, c->Address(blk.tier, blk.offset), blk.size));
  }
  auto la = c->Acquire(*a, keys_a);
  ASSERT_TRUE(la.ok());
  EXPECT_EQ(la->size(), keys_a.size());
}

TEST(CacheTenants, UncommittedReservationsDoNotStopEviction) {
  // 2048 slots; 1,100 of them reserved at priority 0 and never committed:
  // more than a victim scan looks at. Stores must still evict the rest.
  auto c = testing::MakeCache(32 << 20, 1 << 20, "priority-lru");
  ASSERT_NE(c, nullptr);
  auto ns = c->OpenNamespace(SmallSpec());
  ASSERT_TRUE(ns.ok());
  std::vector<Reservation> held;
  StoreOptions low;
  low.priority = 0;
  for (int i = 0; i < 11; ++i) {
    auto keys = Keys(1000000 + i * 100, 100);
    std::vector<uint64_t> sizes(keys.size(), kBlock);
    auto r = c->Reserve(*ns, keys, sizes, low);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->reserved(), keys.size());
    held.push_back(std::move(r).value());
  }
  size_t stored = 0;
  for (int round = 0; round < 100; ++round) stored += Store(*c, *ns, Keys(1 + round * 40, 40));
  EXPECT_EQ(stored, 100u * 40);  // every store found room
  EXPECT_GT(c->Stats().tiers[0].evictions, 0u);
  EXPECT_EQ(c->Stats().blocks_writing, 1100u);
}

TEST(CacheTenants, BlocksCommittedWithAWrongChecksumAreDroppedAndCounted) {
  auto c = TwoTenants(4 << 20, /*verify=*/true);
  ASSERT_NE(c, nullptr);
  auto a = c->OpenNamespace(SpecOf("a"));
  ASSERT_TRUE(a.ok());
  const auto keys = Keys(7, 4);
  std::vector<uint64_t> sizes(keys.size(), kBlock);
  auto r = c->Reserve(*a, keys, sizes);
  ASSERT_TRUE(r.ok());
  auto sums = FillReserved(*c, *r);
  sums[2] ^= 1;  // the client lies about block 2
  ASSERT_TRUE(c->Commit(*r, sums).ok());
  EXPECT_EQ(r->checksum_mismatches(), 1u);
  EXPECT_EQ(r->first_checksum_mismatch(), 2u);
  auto l = c->Acquire(*a, keys);
  ASSERT_TRUE(l.ok());
  EXPECT_EQ(l->size(), 2u);  // the prefix ends at the dropped block
  CacheStats s = c->Stats();
  ASSERT_EQ(s.tenants.size(), 2u);
  EXPECT_EQ(s.tenants[0].client_checksum_mismatches, 1u);
  EXPECT_EQ(s.tenants[1].client_checksum_mismatches, 0u);
  EXPECT_EQ(s.tiers[0].blocks, 3u);  // the dropped block's slot is free again
}

TEST(CacheTenants, KeysAreScopedOnlyForNamedTenants) {
  auto c = TwoTenants(4 << 20);
  ASSERT_NE(c, nullptr);
  auto single = testing::MakeCache(4 << 20, 1 << 20);
  ASSERT_NE(single, nullptr);
  const BlockKey k{0x1234, 0x5678};
  EXPECT_EQ(single->ScopeKey(0, k), k);  // the default tenant: keys as they are
  EXPECT_FALSE(c->ScopeKey(0, k) == k);
  EXPECT_FALSE(c->ScopeKey(0, k) == c->ScopeKey(1, k));
  EXPECT_EQ(c->ScopeKey(1, k), c->ScopeKey(1, k));
}

TEST(CacheTenants, TheNamespaceFileKeepsEachNamespacesTenant) {
  char tmpl[] = "/tmp/kvtier-tenants-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/namespaces";
  NamespaceId ida, idb;
  {
    auto c = TwoTenants(4 << 20, false, file);
    ASSERT_NE(c, nullptr);
    ida = *c->OpenNamespace(SpecOf("a"));
    idb = *c->OpenNamespace(SpecOf("b"));
  }
  {
    auto c = TwoTenants(4 << 20, false, file);
    ASSERT_NE(c, nullptr);
    EXPECT_EQ(c->TenantOf(ida), 0);
    EXPECT_EQ(c->TenantOf(idb), 1);
    EXPECT_EQ(*c->OpenNamespace(SpecOf("b")), idb);
  }
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier
