// Eight threads reserve, write, commit, abort, acquire, verify and release
// over a small key space under constant eviction pressure. Every payload is
// derived from its key, so a reader detects any wrong byte: a torn write, a
// slot reused while pinned, or a block read while still being written.
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <thread>

#include "cache/cache.h"
#include "tests/cache/cache_test_util.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::MakeCache;
using testing::MatchesKey;
using testing::SmallSpec;

TEST(CacheConcurrencyTest, EightThreadsUnderEvictionPressure) {
  // 96 slots of 16 KiB (plus some of other sizes) for a working set of 600 keys.
  auto cache = MakeCache(6 << 20, 1 << 20);
  ASSERT_NE(cache, nullptr);
  NamespaceId ns = *cache->OpenNamespace(SmallSpec());

  // 30 chains of 20 keys each.
  std::vector<std::vector<BlockKey>> chains(30);
  KeyHasher h(SmallSpec());
  for (size_t c = 0; c < chains.size(); ++c) {
    std::vector<uint32_t> tokens(16 * 20);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(c * 100000 + i);
    h.Hash(tokens, &chains[c]);
  }
  // Block sizes vary by key so that size classes mix.
  auto size_of = [](const BlockKey& k) -> uint64_t { return (k.lo % 3 == 0) ? 40000 : 16384; };

  std::atomic<uint64_t> wrong_bytes{0}, bad_checksums{0}, blocks_read{0}, commits{0}, aborts{0};
  std::atomic<bool> stop{false};
  auto worker = [&](int tid) {
    std::mt19937_64 rng(1000 + tid);
    while (!stop.load(std::memory_order_relaxed)) {
      const auto& chain = chains[rng() % chains.size()];
      size_t n = 1 + rng() % chain.size();
      std::span<const BlockKey> keys(chain.data(), n);
      if (rng() % 2 == 0) {
        std::vector<uint64_t> sizes;
        for (auto& k : keys) sizes.push_back(size_of(k));
        auto r = cache->Reserve(ns, keys, sizes);
        if (!r.ok()) {
          if (!r.status().IsResourceExhausted()) ADD_FAILURE() << r.status().ToString();
          continue;
        }
        const std::vector<uint64_t> sums = FillReserved(*cache, *r);
        if (rng() % 5 == 0) {
          if (rng() % 2) cache->Abort(*r);  // else: the destructor aborts
          aborts.fetch_add(1);
        } else if (r->reserved() > 0) {
          ASSERT_TRUE(cache->Commit(*r, sums).ok());
          commits.fetch_add(1);
        }
      } else {
        auto l = cache->Acquire(ns, keys);
        ASSERT_TRUE(l.ok());
        for (const auto& b : l->blocks()) {
          const uint8_t* p = cache->Address(b.tier, b.offset);
          if (b.size != size_of(b.key) || !MatchesKey(b.key, p, b.size)) wrong_bytes.fetch_add(1);
          if (checksum::Sum64(p, b.size) != b.checksum) bad_checksums.fetch_add(1);
          blocks_read.fetch_add(1);
        }
        if (rng() % 4 == 0) std::this_thread::yield();  // hold the lease a little
      }
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) threads.emplace_back(worker, t);
  std::this_thread::sleep_for(std::chrono::seconds(3));
  stop = true;
  for (auto& t : threads) t.join();

  CacheStats s = cache->Stats();
  EXPECT_EQ(wrong_bytes.load(), 0u);
  EXPECT_EQ(bad_checksums.load(), 0u);
  EXPECT_GT(blocks_read.load(), 1000u) << "the test did not exercise reads";
  EXPECT_GT(commits.load(), 100u);
  EXPECT_GT(aborts.load(), 10u);
  EXPECT_GT(s.tiers[0].evictions, 100u) << "the test did not exercise eviction";
  // Nothing leaked: no pins, no WRITING slots, and the tier holds exactly the
  // READY blocks' slots.
  EXPECT_EQ(s.pinned_blocks, 0u);
  EXPECT_EQ(s.blocks_writing, 0u);
  EXPECT_EQ(s.tiers[0].blocks, s.index_entries);
  // Every block still indexed reads back exactly; then evicting all of them
  // (by filling with fresh keys) returns every slot.
  uint64_t verified = 0;
  for (const auto& chain : chains) {
    for (const auto& k : chain) {
      auto l = cache->Acquire(ns, std::span(&k, 1));
      for (const auto& b : l->blocks()) {
        EXPECT_TRUE(MatchesKey(b.key, cache->Address(b.tier, b.offset), b.size));
        ++verified;
      }
    }
  }
  EXPECT_EQ(verified, s.index_entries);
}

}  // namespace
}  // namespace kvtier
