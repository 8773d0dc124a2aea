// Memory that follows demand across block sizes: a host tier full of one
// size class serves the others by releasing whole regions (cache/cache.cc,
// MakeRoomLocked), and a size that goes idle gives its regions back.
#include "cache/cache.h"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <numeric>

#include "tests/cache/cache_test_util.h"
#include "tiers/host_shm_tier.h"
#include "tiers/slab_allocator.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::MakeCache;
using testing::MatchesKey;

NamespaceSpec SpecNamed(const std::string& model) {
  NamespaceSpec s = testing::SmallSpec();
  s.model_id = model;
  return s;
}

class RebalanceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = MakeCache(8 << 20, 1 << 20, "lru");  // 8 regions of 1 MiB
    ASSERT_NE(cache_, nullptr);
  }

  std::vector<BlockKey> Keys(NamespaceId ns, size_t n, uint32_t salt) {
    KeyHasher h(*cache_->GetNamespace(ns));
    std::vector<uint32_t> tokens(16 * n);
    std::iota(tokens.begin(), tokens.end(), salt * 1000003u);
    std::vector<BlockKey> keys;
    h.Hash(tokens, &keys);
    return keys;
  }

  // Stores keys (one Reserve per block, as engines of different models
  // interleave); returns how many were reserved and committed.
  size_t Store(NamespaceId ns, const std::vector<BlockKey>& keys, uint64_t bytes) {
    size_t stored = 0;
    for (const BlockKey& k : keys) {
      std::vector<uint64_t> sizes{bytes};
      auto r = cache_->Reserve(ns, std::span(&k, 1), sizes);
      if (!r.ok()) continue;
      if (r->reserved() == 0) continue;
      EXPECT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r)).ok());
      ++stored;
    }
    return stored;
  }

  size_t Hits(NamespaceId ns, const std::vector<BlockKey>& keys) {
    size_t hits = 0;
    for (const BlockKey& k : keys) {
      auto l = cache_->Acquire(ns, std::span(&k, 1));
      EXPECT_TRUE(l.ok());
      if (l->size() != 1) continue;
      const auto& b = l->blocks()[0];
      EXPECT_TRUE(MatchesKey(b.key, cache_->Address(b.tier, b.offset), b.size));
      ++hits;
    }
    return hits;
  }

  SlabAllocator& Slabs() { return *cache_->tier(0).slabs(); }
  // Blocks of `bytes` that `regions` regions hold.
  size_t Fit(uint64_t bytes, uint32_t regions) {
    return regions * ((1u << 20) / Slabs().ClassBytes(Slabs().ClassFor(bytes)));
  }
  uint32_t RegionsOf(uint64_t bytes) { return Slabs().ClassRegions(Slabs().ClassFor(bytes)); }

  std::unique_ptr<Cache> cache_;
};

TEST_F(RebalanceTest, TierFullOfOneSizeServesThreeOtherSizes) {
  NamespaceId a = *cache_->OpenNamespace(SpecNamed("a"));
  auto ka = Keys(a, 600, 1);
  ASSERT_EQ(Store(a, ka, 16 << 10), 600u);  // 512 fit: the tier is full of 16 KiB slots
  ASSERT_EQ(RegionsOf(16 << 10), 8u);
  ASSERT_EQ(Slabs().free_regions(), 0u);

  struct Size {
    const char* model;
    uint64_t bytes;
  };
  // Every store of another size is served and readable, byte-exact, at once
  // (later ones may evict it again: each size keeps its share of demand).
  for (Size s : {Size{"b", 8 << 10}, Size{"c", 128 << 10}, Size{"d", 1 << 20}}) {
    NamespaceId ns = *cache_->OpenNamespace(SpecNamed(s.model));
    for (const BlockKey& k : Keys(ns, 4, 2)) {
      EXPECT_EQ(Store(ns, {k}, s.bytes), 1u) << s.bytes;
      EXPECT_EQ(Hits(ns, {k}), 1u) << s.bytes;
    }
  }
  CacheStats st = cache_->Stats();
  EXPECT_EQ(st.blocks_no_space, 0u);
  EXPECT_GE(st.tiers[0].regions_moved, 3u);
  // The 16 KiB blocks that were not in the released regions are still there.
  EXPECT_GT(Hits(a, std::vector<BlockKey>(ka.end() - 200, ka.end())), 0u);
}

TEST_F(RebalanceTest, SizeThatGoesIdleReturnsItsMemory) {
  NamespaceId a = *cache_->OpenNamespace(SpecNamed("a"));
  NamespaceId b = *cache_->OpenNamespace(SpecNamed("b"));
  ASSERT_EQ(Store(a, Keys(a, 512, 1), 16 << 10), 512u);
  ASSERT_EQ(RegionsOf(16 << 10), 8u);
  // Only model b (100 KiB blocks, 10 per region) stores from now on.
  auto kb = Keys(b, 200, 2);
  EXPECT_EQ(Store(b, kb, 100 << 10), 200u);
  EXPECT_EQ(RegionsOf(16 << 10), 0u);
  EXPECT_EQ(RegionsOf(100 << 10), 8u);
  EXPECT_EQ(cache_->Stats().tiers[0].regions_moved, 8u);
  // b keeps as many of its most recent blocks as 8 regions hold, readable.
  const size_t fit = Fit(100 << 10, 8);
  EXPECT_EQ(Hits(b, std::vector<BlockKey>(kb.end() - fit, kb.end())), fit);
}

TEST_F(RebalanceTest, StraySmallNamespaceDoesNotHoldARegionForEver) {
  NamespaceId stray = *cache_->OpenNamespace(SpecNamed("stray"));
  NamespaceId big = *cache_->OpenNamespace(SpecNamed("big"));
  ASSERT_EQ(Store(stray, Keys(stray, 1, 1), 4 << 10), 1u);
  ASSERT_EQ(RegionsOf(4 << 10), 1u);
  // Three times the tier's worth of 256 KiB blocks.
  EXPECT_EQ(Store(big, Keys(big, 96, 2), 256 << 10), 96u);
  EXPECT_EQ(RegionsOf(4 << 10), 0u);
  EXPECT_EQ(RegionsOf(256 << 10), 8u);
}

TEST_F(RebalanceTest, RegionsWithPinnedBlocksAreNotReleased) {
  NamespaceId a = *cache_->OpenNamespace(SpecNamed("a"));
  NamespaceId b = *cache_->OpenNamespace(SpecNamed("b"));
  auto ka = Keys(a, 512, 1);
  ASSERT_EQ(Store(a, ka, 16 << 10), 512u);
  // Pin one block in each of the first six regions (64 slots per region).
  std::vector<Lease> pins;
  for (size_t r = 0; r < 6; ++r) {
    auto l = cache_->Acquire(a, std::span(&ka[r * 64], 1));
    ASSERT_EQ(l->size(), 1u);
    pins.push_back(std::move(*l));
  }
  auto kb = Keys(b, 40, 2);
  EXPECT_EQ(Store(b, kb, 512 << 10), 40u);
  // Only the two regions without a pin moved; b then evicts its own blocks.
  EXPECT_EQ(RegionsOf(512 << 10), 2u);
  EXPECT_EQ(RegionsOf(16 << 10), 6u);
  const size_t fit = Fit(512 << 10, 2);
  EXPECT_EQ(Hits(b, std::vector<BlockKey>(kb.end() - fit, kb.end())), fit);
  for (const Lease& l : pins) {
    const auto& blk = l.blocks()[0];
    EXPECT_TRUE(MatchesKey(blk.key, cache_->Address(blk.tier, blk.offset), blk.size));
  }
}

TEST_F(RebalanceTest, NoSpaceOnlyWhenNoRegionCanBeFreedAndItSaysWhy) {
  NamespaceId a = *cache_->OpenNamespace(SpecNamed("a"));
  NamespaceId c = *cache_->OpenNamespace(SpecNamed("c"));
  auto ka = Keys(a, 512, 1);
  ASSERT_EQ(Store(a, ka, 16 << 10), 512u);
  std::vector<Lease> pins;
  for (size_t r = 0; r < 8; ++r) {
    auto l = cache_->Acquire(a, std::span(&ka[r * 64 + 5], 1));
    ASSERT_EQ(l->size(), 1u);
    pins.push_back(std::move(*l));
  }
  // 504 of 512 blocks are evictable, but every region holds a pinned one:
  // the error says how many are pinned instead of "full of pinned blocks".
  auto kc = Keys(c, 1, 3);
  std::vector<uint64_t> sizes{1 << 20};
  auto r = cache_->Reserve(c, kc, sizes);
  ASSERT_TRUE(r.status().IsResourceExhausted());
  EXPECT_NE(r.status().ToString().find("8 blocks pinned"), std::string::npos)
      << r.status().ToString();
  // A 16 KiB store still evicts within its own class.
  EXPECT_EQ(Store(a, Keys(a, 3, 4), 16 << 10), 3u);
  // Once the leases go, a region moves to 1 MiB.
  pins.clear();
  EXPECT_EQ(Store(c, kc, 1 << 20), 1u);
  EXPECT_EQ(Hits(c, kc), 1u);
}

// 2 MiB blocks (Llama-3-8B, bf16, 16 tokens) used to take 2.22 MiB slots.
TEST(ExactSlotsTest, TwoMiBBlocksUseAtLeast99PercentOfTheConfiguredBytes) {
  const uint64_t configured = 1000ull << 20;  // not a whole number of 64 MiB regions
  auto cache = MakeCache(configured, 64 << 20, "lru");
  ASSERT_NE(cache, nullptr);
  NamespaceSpec spec;
  spec.model_id = "llama-3-8b";
  spec.layout = KvLayout{32, 8, 128, 16, DType::kBF16, 2};
  ASSERT_EQ(spec.layout.BlockBytes(), 2u << 20);
  NamespaceId ns = *cache->OpenNamespace(spec);
  KeyHasher h(spec);
  std::vector<uint32_t> tokens(16 * 600);
  std::iota(tokens.begin(), tokens.end(), 7);
  std::vector<BlockKey> keys;
  h.Hash(tokens, &keys);
  // Payloads are not written (the segment stays sparse): only space counts.
  size_t stored = 0;
  for (const BlockKey& k : keys) {
    std::vector<uint64_t> sizes{2 << 20};
    auto r = cache->Reserve(ns, std::span(&k, 1), sizes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(cache->Commit(*r, std::vector<uint64_t>{0}).ok());
    ++stored;
    if (stored == 500) {
      EXPECT_EQ(cache->Stats().tiers[0].evictions, 0u);
    }
  }
  const TierStats t = cache->Stats().tiers[0];
  EXPECT_EQ(t.blocks, 500u);
  EXPECT_GE(static_cast<double>(t.blocks * (2 << 20)), 0.99 * static_cast<double>(configured));
  EXPECT_EQ(t.capacity_bytes, configured);
  EXPECT_EQ(t.used_bytes, t.blocks * (2 << 20));
}

// A persistent host segment's blocks re-adopted after a restart are owned
// like stored ones: a tier full of them still serves another size by
// releasing their regions, and their namespace's count follows them out.
TEST(PersistentRebalanceTest, ReadoptedBlocksAreOwnedAndTheirRegionsReleasable) {
  const std::string dir = (std::filesystem::temp_directory_path() /
                           ("kvtier-readopt-" + std::to_string(getpid())))
                              .string();
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto open = [&] {
    HostShmOptions ho;
    ho.capacity_bytes = 4 << 20;
    ho.region_bytes = 1 << 20;
    ho.path = dir + "/host.seg";
    auto host = HostShmTier::Create(ho);
    EXPECT_TRUE(host.ok()) << host.status().ToString();
    CacheOptions o;
    o.tiers.push_back(TierSetup{std::move(host).value(), "lru"});
    o.namespace_file = dir + "/namespaces";
    auto c = Cache::Create(std::move(o));
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return std::move(c).value();
  };
  auto keys = [](Cache& c, NamespaceId ns, size_t n, uint32_t salt) {
    KeyHasher h(*c.GetNamespace(ns));
    std::vector<uint32_t> tokens(16 * n);
    std::iota(tokens.begin(), tokens.end(), salt * 1000003u);
    std::vector<BlockKey> out;
    h.Hash(tokens, &out);
    return out;
  };
  auto store = [](Cache& c, NamespaceId ns, const std::vector<BlockKey>& ks, uint64_t bytes) {
    size_t stored = 0;
    for (const BlockKey& k : ks) {
      std::vector<uint64_t> sizes{bytes};
      auto r = c.Reserve(ns, std::span(&k, 1), sizes);
      if (!r.ok() || r->reserved() == 0) continue;
      EXPECT_TRUE(c.Commit(*r, FillReserved(c, *r)).ok());
      ++stored;
    }
    return stored;
  };
  auto count = [](Cache& c, NamespaceId ns) {
    for (const auto& n : c.Stats().namespaces)
      if (n.id == ns) return n.blocks;
    return uint64_t{0};
  };
  constexpr uint64_t kBig = 52 << 10;  // an exact class (not a geometric one)
  NamespaceId a;
  {
    auto c = open();
    // An exact class created before the stored one, so that the stored
    // one's class id differs in the next run.
    NamespaceId pre = *c->OpenNamespace(SpecNamed("pre"));
    ASSERT_EQ(store(*c, pre, keys(*c, pre, 1, 9), 100000), 1u);
    ASSERT_TRUE(c->EvictNamespace(pre).ok());
    a = *c->OpenNamespace(SpecNamed("a"));
    ASSERT_GT(store(*c, a, keys(*c, a, 100, 1), kBig), 76u);
    ASSERT_EQ(c->tier(0).slabs()->free_regions(), 0u);
  }
  auto c = open();
  SlabAllocator& sa = *c->tier(0).slabs();
  ASSERT_EQ(sa.free_regions(), 0u);
  const uint64_t adopted = count(*c, a);
  ASSERT_EQ(adopted, 76u) << "4 regions of 19 slots of 52 KiB";
  EXPECT_EQ(sa.ClassFor(kBig), sa.num_classes() - 1) << "the only exact class of this run";
  NamespaceId b = *c->OpenNamespace(SpecNamed("b"));
  auto kb = keys(*c, b, 4, 2);
  EXPECT_EQ(store(*c, b, kb, 8 << 10), 4u);
  EXPECT_EQ(c->Stats().blocks_no_space, 0u);
  EXPECT_GE(c->Stats().tiers[0].regions_moved, 1u);
  EXPECT_EQ(count(*c, a), adopted - 19) << "one region of a's blocks released";
  for (const NamespaceUsage& u : c->Namespaces())
    if (u.id == a) EXPECT_EQ(u.blocks, adopted - 19);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace kvtier
