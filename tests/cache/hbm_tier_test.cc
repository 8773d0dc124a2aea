// The HBM tier inside the cache, on a real GPU (skipped without one): stores
// land in HBM, eviction moves blocks down to the host tier on the daemon's
// stream, and hits move host blocks up; every byte is checked after each move.
#include <gtest/gtest.h>

#include <numeric>

#include "cache/cache.h"
#include "tests/cache/cache_test_util.h"
#include "tiers/gpu_hbm_tier.h"

namespace kvtier {
namespace {

using testing::FillFromKey;
using testing::MatchesKey;
using testing::SmallSpec;

constexpr uint64_t kBlock = 16 << 10;

struct Fixture {
  std::unique_ptr<Cache> cache;
  GpuHbmTier* hbm = nullptr;
  NamespaceId ns = 0;
  std::vector<BlockKey> keys;
};

// HBM: 32 blocks; host: 128 blocks. Returns an empty fixture without a GPU.
Fixture Make(TierId store_tier, uint32_t promote_hits) {
  Fixture f;
  HostShmOptions ho;
  ho.capacity_bytes = 128 * kBlock;
  ho.region_bytes = 128 * kBlock;
  auto host = HostShmTier::Create(ho);
  if (!host.ok()) return f;
  GpuHbmOptions go;
  go.capacity_bytes = 32 * kBlock;
  go.region_bytes = 32 * kBlock;
  go.host_base = (*host)->base();
  go.host_bytes = (*host)->segment_bytes();
  auto hbm = GpuHbmTier::Create(go);
  if (!hbm.ok()) return f;
  f.hbm = hbm->get();
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(hbm).value(), "lru"});
  o.tiers.push_back(TierSetup{std::move(host).value(), "lru"});
  o.store_tier = store_tier;
  o.promote_to_hbm_hits = promote_hits;
  auto c = Cache::Create(std::move(o));
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return f;
  f.cache = std::move(c).value();
  f.ns = *f.cache->OpenNamespace(SmallSpec());
  std::vector<uint32_t> tokens(16 * 200);
  std::iota(tokens.begin(), tokens.end(), 3);
  KeyHasher(SmallSpec()).Hash(tokens, &f.keys);
  return f;
}

// Reads a leased block's bytes wherever it is.
std::vector<uint8_t> Read(Fixture& f, const Lease::Block& b) {
  std::vector<uint8_t> out(b.size);
  if (f.cache->tier_kind(b.tier) == TierKind::kHbm) {
    EXPECT_TRUE(f.hbm->CopyOut(out.data(), Slot{b.offset, b.size, 0}, b.size).ok());
  } else {
    std::memcpy(out.data(), f.cache->Address(b.tier, b.offset), b.size);
  }
  return out;
}

void Store(Fixture& f, size_t first, size_t n) {
  auto r = f.cache->Reserve(f.ns, std::span(f.keys).subspan(first, n), std::vector<uint64_t>(n, kBlock));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  std::vector<uint64_t> sums(n);
  std::vector<uint8_t> buf(kBlock);
  for (size_t i = 0; i < n; ++i) {
    const auto& b = r->blocks()[i];
    FillFromKey(b.key, buf.data(), buf.size());
    sums[i] = checksum::Sum64(buf.data(), buf.size());
    Slot s{b.offset, b.size, 0};
    if (f.cache->tier_kind(b.tier) == TierKind::kHbm) {
      ASSERT_TRUE(f.hbm->CopyIn(s, buf.data(), buf.size()).ok());
    } else {
      std::memcpy(f.cache->Address(b.tier, b.offset), buf.data(), buf.size());
    }
  }
  ASSERT_TRUE(f.cache->Commit(*r, sums).ok());
}

TEST(HbmTierTest, StoresLandInHbmAndEvictionMovesThemDownByteExact) {
  Fixture f = Make(/*store_tier=*/0, 0);
  if (!f.cache) GTEST_SKIP() << "no GPU";
  Store(f, 0, 32);
  Store(f, 32, 32);  // HBM holds 32: the first 32 move down to host
  CacheStats s = f.cache->Stats();
  EXPECT_EQ(s.tiers[0].blocks, 32u);
  EXPECT_EQ(s.tiers[1].blocks, 32u);
  EXPECT_EQ(s.tiers[0].evictions, 32u);
  auto l = f.cache->Acquire(f.ns, std::span(f.keys).subspan(0, 64));
  ASSERT_EQ(l->size(), 64u);
  for (size_t i = 0; i < l->size(); ++i) {
    const auto& b = l->blocks()[i];
    EXPECT_EQ(f.cache->tier_kind(b.tier), i < 32 ? TierKind::kHost : TierKind::kHbm) << i;
    auto bytes = Read(f, b);
    EXPECT_TRUE(MatchesKey(b.key, bytes.data(), bytes.size()));
  }
}

TEST(HbmTierTest, HitsMoveHostBlocksUpByteExact) {
  Fixture f = Make(/*store_tier=*/1, /*promote_hits=*/2);
  if (!f.cache) GTEST_SKIP() << "no GPU";
  Store(f, 0, 20);
  for (int i = 0; i < 2; ++i) f.cache->Acquire(f.ns, std::span(f.keys).subspan(0, 20))->Release();
  f.cache->DrainPromotions();
  CacheStats s = f.cache->Stats();
  EXPECT_EQ(s.tiers[0].promotions, 20u);
  EXPECT_EQ(s.tiers[0].blocks, 20u);
  auto l = f.cache->Acquire(f.ns, std::span(f.keys).subspan(0, 20));
  ASSERT_EQ(l->size(), 20u);
  for (const auto& b : l->blocks()) {
    EXPECT_EQ(f.cache->tier_kind(b.tier), TierKind::kHbm);
    auto bytes = Read(f, b);
    EXPECT_TRUE(MatchesKey(b.key, bytes.data(), bytes.size()));
    EXPECT_EQ(checksum::Sum64(bytes.data(), bytes.size()), b.checksum);
  }
}

// An HBM tier full of one size serves another: its region's blocks move
// down to the host tier (byte-exact) and the region serves the new size.
TEST(HbmTierTest, FullOfOneSizeServesAnotherByMovingARegionDown) {
  Fixture f = Make(/*store_tier=*/0, 0);
  if (!f.cache) GTEST_SKIP() << "no GPU";
  Store(f, 0, 32);  // HBM (one region) is full of 16 KiB blocks
  const uint64_t kBig = 64 << 10;
  std::vector<BlockKey> big(f.keys.begin() + 100, f.keys.begin() + 104);
  auto r = f.cache->Reserve(f.ns, big, std::vector<uint64_t>(4, kBig));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->reserved(), 4u);
  std::vector<uint64_t> sums(4);
  std::vector<uint8_t> buf(kBig);
  for (size_t i = 0; i < 4; ++i) {
    const auto& b = r->blocks()[i];
    EXPECT_EQ(f.cache->tier_kind(b.tier), TierKind::kHbm);
    FillFromKey(b.key, buf.data(), buf.size());
    sums[i] = checksum::Sum64(buf.data(), buf.size());
    ASSERT_TRUE(f.hbm->CopyIn(Slot{b.offset, b.size, 0}, buf.data(), buf.size()).ok());
  }
  ASSERT_TRUE(f.cache->Commit(*r, sums).ok());
  CacheStats s = f.cache->Stats();
  EXPECT_EQ(s.tiers[0].regions_moved, 1u);
  EXPECT_EQ(s.tiers[1].blocks, 32u);  // moved down, not dropped
  auto small = f.cache->Acquire(f.ns, std::span(f.keys).subspan(0, 32));
  ASSERT_EQ(small->size(), 32u);
  for (const auto& b : small->blocks()) {
    EXPECT_EQ(f.cache->tier_kind(b.tier), TierKind::kHost);
    auto bytes = Read(f, b);
    EXPECT_TRUE(MatchesKey(b.key, bytes.data(), bytes.size()));
  }
  auto l = f.cache->Acquire(f.ns, big);
  ASSERT_EQ(l->size(), 4u);
  for (const auto& b : l->blocks()) {
    EXPECT_EQ(f.cache->tier_kind(b.tier), TierKind::kHbm);
    auto bytes = Read(f, b);
    EXPECT_TRUE(MatchesKey(b.key, bytes.data(), bytes.size()));
  }
}

TEST(HbmTierTest, UnavailableWithoutAGpuOrACudaBuild) {
  GpuHbmOptions go;
  go.device = 4096;
  auto t = GpuHbmTier::Create(go);
  EXPECT_FALSE(t.ok());
  EXPECT_TRUE(t.status().code() == StatusCode::kUnavailable ||
              t.status().code() == StatusCode::kInvalidArgument)
      << t.status().ToString();
}

// Tenants (docs/security.md): each has its own HBM arena and host segment.
// A tenant stores only into its own arena, its HBM blocks move down into
// its own host segment, and its hits move up into its own arena.
TEST(HbmTierTest, EachTenantHasItsOwnArenaAndBlocksStayInItsOwnTiers) {
  CacheOptions o;
  std::vector<GpuHbmTier*> arenas;
  for (uint8_t t = 0; t < 2; ++t) {
    HostShmOptions ho;
    ho.capacity_bytes = 128 * kBlock;
    ho.region_bytes = 128 * kBlock;
    auto host = HostShmTier::Create(ho);
    ASSERT_TRUE(host.ok());
    GpuHbmOptions go;
    go.capacity_bytes = 32 * kBlock;
    go.region_bytes = 32 * kBlock;
    go.host_base = (*host)->base();
    go.host_bytes = (*host)->segment_bytes();
    auto hbm = GpuHbmTier::Create(go);
    if (!hbm.ok()) GTEST_SKIP() << "no GPU";
    arenas.push_back(hbm->get());
    TierSetup h{std::move(hbm).value(), "lru"};
    h.tenant = t;
    h.name = t == 0 ? "hbm/a" : "hbm/b";
    TierSetup s{std::move(host).value(), "lru"};
    s.tenant = t;
    s.name = t == 0 ? "host/a" : "host/b";
    o.tiers.push_back(std::move(h));
    o.tiers.push_back(std::move(s));
  }
  ASSERT_NE(arenas[0]->ipc_handle(), arenas[1]->ipc_handle());  // two exports, not one
  o.tenants = {CacheTenant{"a"}, CacheTenant{"b"}};
  o.store_tier = 0;  // HBM: each tenant stores into its own arena
  o.promote_to_hbm_hits = 2;
  auto c = Cache::Create(std::move(o));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  NamespaceSpec sa = SmallSpec(), sb = SmallSpec();
  sa.tenant = "a";
  sb.tenant = "b";
  const NamespaceId a = *(*c)->OpenNamespace(sa), b = *(*c)->OpenNamespace(sb);
  std::vector<uint32_t> tokens(16 * 64);
  std::iota(tokens.begin(), tokens.end(), 3);
  std::vector<BlockKey> keys;
  KeyHasher(SmallSpec()).Hash(tokens, &keys);
  // b may not name a's arena.
  StoreOptions into_a;
  into_a.tier = 0;
  EXPECT_TRUE((*c)->Reserve(b, std::span(keys).first(1), std::vector<uint64_t>{kBlock}, into_a)
                  .status()
                  .IsInvalidArgument());
  // One reserve of at most an arena: blocks being written are never moved
  // down, so a reserve larger than the arena would place only what fits.
  auto store = [&](NamespaceId ns, size_t first, size_t n) {
    auto r = (*c)->Reserve(ns, std::span(keys).subspan(first, n), std::vector<uint64_t>(n, kBlock));
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->reserved(), n);
    std::vector<uint64_t> sums(n);
    std::vector<uint8_t> buf(kBlock);
    for (size_t i = 0; i < n; ++i) {
      const auto& blk = r->blocks()[i];
      ASSERT_EQ((*c)->tier_tenant(blk.tier), (*c)->TenantOf(ns));
      FillFromKey(blk.key, buf.data(), buf.size());
      sums[i] = checksum::Sum64(buf.data(), buf.size());
      ASSERT_TRUE(arenas[(*c)->TenantOf(ns)]->CopyIn(Slot{blk.offset, blk.size, 0}, buf.data(), kBlock).ok());
    }
    ASSERT_TRUE((*c)->Commit(*r, sums).ok());
  };
  store(a, 0, 8);
  store(b, 0, 32);
  store(b, 32, 32);  // b's arena is full: its first 32 move down, into b's host segment
  CacheStats s = (*c)->Stats();
  EXPECT_EQ(s.tiers[0].blocks, 8u);   // hbm/a
  EXPECT_EQ(s.tiers[1].blocks, 0u);   // host/a: nothing of b's
  EXPECT_EQ(s.tiers[2].blocks, 32u);  // hbm/b
  EXPECT_EQ(s.tiers[3].blocks, 32u);  // host/b
  auto l = (*c)->Acquire(b, std::span(keys).first(64));
  ASSERT_EQ(l->size(), 64u);
  for (const auto& blk : l->blocks()) {
    EXPECT_EQ((*c)->tier_tenant(blk.tier), 1);
    std::vector<uint8_t> out(blk.size);
    if ((*c)->tier_kind(blk.tier) == TierKind::kHbm) {
      ASSERT_TRUE(arenas[1]->CopyOut(out.data(), Slot{blk.offset, blk.size, 0}, blk.size).ok());
    } else {
      std::memcpy(out.data(), (*c)->Address(blk.tier, blk.offset), blk.size);
    }
    EXPECT_TRUE(MatchesKey(blk.key, out.data(), out.size()));
  }
}

}  // namespace
}  // namespace kvtier
