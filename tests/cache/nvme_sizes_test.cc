// The NVMe tier serves every block size the same way: full of one size, it
// releases regions for another (cache/nvme_tier.cc, EvictForLocked), and a
// restart recovers every size the index recorded.
#include "cache/nvme_tier.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <numeric>

#include "tests/cache/cache_test_util.h"
#include "tests/tiers/nvme_test_util.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::MatchesKey;

struct Size {
  const char* model;
  uint64_t bytes;
};
constexpr Size kSizes[] = {{"a", 16 << 10}, {"b", 100 << 10}, {"c", 256 << 10}};

class NvmeSizesTest : public ::testing::Test {
 protected:
  void TearDown() override { cache_.reset(); }

  // Host: 4 MiB (1 MiB regions); NVMe: 16 MiB file (1 MiB regions), write-through.
  void Open(uint64_t namespace_idle_ns = 600ull * 1000000000ull) {
    cache_.reset();
    HostShmOptions ho;
    ho.capacity_bytes = 4 << 20;
    ho.region_bytes = 1 << 20;
    CacheOptions o;
    o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "lru"});
    o.namespace_file = dir_ + "/namespaces";
    o.log_warning = [](const std::string&) {};
    NvmeTierOptions n;
    n.store.path = dir_ + "/nvme.dat";
    n.store.capacity_bytes = 16 << 20;
    n.store.region_bytes = 1 << 20;
    n.index_path = dir_ + "/index";
    n.write_through = true;
    o.nvme = std::move(n);
    o.namespace_idle_reclaim_ns = namespace_idle_ns;
    auto c = Cache::Create(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cache_ = std::move(c).value();
    for (size_t i = 0; i < 3; ++i) {
      NamespaceSpec s = testing::SmallSpec();
      s.model_id = kSizes[i].model;
      ns_[i] = *cache_->OpenNamespace(s);
    }
  }

  std::vector<BlockKey> Keys(size_t i, size_t n, uint32_t first) {
    KeyHasher h(*cache_->GetNamespace(ns_[i]));
    std::vector<uint32_t> tokens(16 * n);
    std::iota(tokens.begin(), tokens.end(), first * 16);
    std::vector<BlockKey> keys;
    h.Hash(tokens, &keys);
    return keys;
  }

  // Stores keys one per Reserve, waiting for NVMe writes when the host tier
  // holds only blocks still being written.
  void Store(size_t i, const std::vector<BlockKey>& keys) {
    for (const BlockKey& k : keys) {
      std::vector<uint64_t> sizes{kSizes[i].bytes};
      auto r = cache_->Reserve(ns_[i], std::span(&k, 1), sizes);
      if (!r.ok()) {
        cache_->DrainNvme();
        r = cache_->Reserve(ns_[i], std::span(&k, 1), sizes);
      }
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      ASSERT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r)).ok());
    }
  }

  size_t HitsVerified(size_t i, const std::vector<BlockKey>& keys) {
    size_t hits = 0;
    for (const BlockKey& k : keys) {
      auto l = cache_->Acquire(ns_[i], std::span(&k, 1));
      EXPECT_TRUE(l.ok());
      l->Wait();
      if (l->size() != 1) continue;
      const auto& b = l->blocks()[0];
      EXPECT_TRUE(MatchesKey(b.key, cache_->Address(b.tier, b.offset), b.size));
      ++hits;
    }
    return hits;
  }

  testing::ScratchDir scratch_;  // removed after the cache is gone
  const std::string dir_ = scratch_.path();
  std::unique_ptr<Cache> cache_;
  NamespaceId ns_[3] = {0, 0, 0};
};

TEST_F(NvmeSizesTest, FullOfOneSizeTakesOtherSizesAndARestartServesThemAll) {
  Open();
  // 16 MiB of 16 KiB blocks fills the NVMe tier (about 14 MiB of data).
  Store(0, Keys(0, 1024, 0));
  cache_->DrainNvme();
  const uint64_t nvme_a = cache_->Stats().tiers[1].blocks;
  ASSERT_GT(nvme_a, 600u);
  // Then 12 blocks each of 100 KiB and 256 KiB: every one gets an NVMe copy.
  const auto kb = Keys(1, 12, 5000);
  const auto kc = Keys(2, 12, 9000);
  Store(1, kb);
  Store(2, kc);
  cache_->DrainNvme();
  TierStats nvme = cache_->Stats().tiers[1];
  EXPECT_GE(nvme.regions_moved, 2u);
  EXPECT_EQ(nvme.demotions, 1024u + 24u);
  // Restart: the index names blocks of three sizes; every one is served.
  const uint64_t recorded = nvme.blocks;
  Open();
  ASSERT_EQ(cache_->Stats().tiers[1].recovered, recorded);
  EXPECT_EQ(cache_->Stats().tiers[1].recovery_dropped, 0u);
  EXPECT_EQ(HitsVerified(1, kb), 12u);
  EXPECT_EQ(HitsVerified(2, kc), 12u);
  const size_t a_hits = HitsVerified(0, Keys(0, 1024, 0));
  EXPECT_EQ(a_hits + 24, recorded);
}

// A namespace id is not reused while NVMe extents name it: blocks on NVMe
// (in memory or only there, before and after a restart) keep it alive.
TEST_F(NvmeSizesTest, BlocksOnNvmeKeepTheirNamespaceAlive) {
  Open(/*namespace_idle_ns=*/1);  // anything idle and empty goes at once
  const auto kb = Keys(1, 60, 100);  // the host holds 40 of them: 20 live on NVMe only
  Store(1, kb);
  cache_->DrainNvme();
  ASSERT_EQ(cache_->Stats().tiers[1].blocks, 60u);
  // The two other namespaces hold nothing: reclaimed (already by the
  // passes that registrations and Stats run); ns_[1] is kept.
  (void)cache_->namespaces().Reclaim();
  EXPECT_TRUE(cache_->GetNamespace(ns_[1]).ok());
  EXPECT_GE(cache_->namespaces().reclaimed(), 2u);
  // Its blocks, counted in every tier, are the NVMe tier's 60.
  auto list = cache_->namespaces().List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, ns_[1]);
  EXPECT_EQ(list[0].blocks, 60u);
  EXPECT_EQ(list[0].bytes, 60u * (100 << 10));
  // After a restart the recovered blocks keep it too, under the same id.
  const NamespaceId id = ns_[1];
  cache_.reset();
  HostShmOptions ho;
  ho.capacity_bytes = 4 << 20;
  ho.region_bytes = 1 << 20;
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "lru"});
  o.namespace_file = dir_ + "/namespaces";
  o.namespace_idle_reclaim_ns = 1;
  o.log_warning = [](const std::string&) {};
  NvmeTierOptions n;
  n.store.path = dir_ + "/nvme.dat";
  n.store.capacity_bytes = 16 << 20;
  n.store.region_bytes = 1 << 20;
  n.index_path = dir_ + "/index";
  o.nvme = std::move(n);
  auto c = Cache::Create(std::move(o));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  cache_ = std::move(c).value();
  EXPECT_EQ(cache_->Stats().tiers[1].recovered, 60u);
  EXPECT_EQ(cache_->namespaces().Reclaim(), 0u);
  list = cache_->namespaces().List();
  ASSERT_EQ(list.size(), 1u);
  EXPECT_EQ(list[0].id, id);
  EXPECT_EQ(list[0].blocks, 60u);
  EXPECT_EQ(HitsVerified(1, kb), 60u);
}

}  // namespace
}  // namespace kvtier
