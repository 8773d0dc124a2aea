#include "cache/block_index.h"

#include <gtest/gtest.h>

#include <random>
#include <unordered_map>

namespace kvtier {
namespace {

TEST(BlockIndexTest, InsertFindEraseAgainstAReferenceMap) {
  BlockIndex idx(100000, 4);
  std::unordered_map<BlockKey, BlockId, BlockKeyHash> ref;
  std::mt19937_64 rng(5);
  std::vector<BlockKey> keys;
  for (int step = 0; step < 200000; ++step) {
    int op = rng() % 3;
    if (op < 2 || keys.empty()) {
      // Small key space so that probe runs collide and wrap.
      BlockKey k{rng() % 5000, rng() % 3};
      std::lock_guard<std::mutex> l(idx.MutexFor(k));
      BlockId f = idx.FindLocked(k);
      auto it = ref.find(k);
      ASSERT_EQ(f != kNoBlock, it != ref.end());
      if (it != ref.end()) {
        ASSERT_EQ(f, it->second);
        continue;
      }
      auto id = idx.InsertLocked(k);
      ASSERT_TRUE(id.ok());
      EXPECT_EQ(idx.entry(*id).key, k);
      ref[k] = *id;
      keys.push_back(k);
    } else {
      size_t i = rng() % keys.size();
      BlockKey k = keys[i];
      keys[i] = keys.back();
      keys.pop_back();
      BlockId id = ref[k];
      {
        std::lock_guard<std::mutex> l(idx.MutexFor(k));
        idx.EraseLocked(id);
        ASSERT_EQ(idx.FindLocked(k), kNoBlock);
      }
      idx.FreeId(id);
      ref.erase(k);
    }
  }
  EXPECT_EQ(idx.size(), ref.size());
  for (auto& [k, id] : ref) {
    std::lock_guard<std::mutex> l(idx.MutexFor(k));
    ASSERT_EQ(idx.FindLocked(k), id);
  }
}

TEST(BlockIndexTest, FullIndexAnswersResourceExhausted) {
  BlockIndex idx(10, 2);
  for (uint64_t i = 0; i < 10; ++i) {
    BlockKey k{i, i};
    std::lock_guard<std::mutex> l(idx.MutexFor(k));
    ASSERT_TRUE(idx.InsertLocked(k).ok());
  }
  BlockKey k{99, 99};
  std::lock_guard<std::mutex> l(idx.MutexFor(k));
  EXPECT_TRUE(idx.InsertLocked(k).status().IsResourceExhausted());
}

TEST(BlockIndexTest, MemoryPerEntryIsBounded) {
  const uint32_t n = 1 << 18;
  BlockIndex idx(n, 64);
  std::mt19937_64 rng(6);
  for (uint32_t i = 0; i < n; ++i) {
    BlockKey k{rng(), rng()};
    std::lock_guard<std::mutex> l(idx.MutexFor(k));
    ASSERT_TRUE(idx.InsertLocked(k).ok());
  }
  double per = static_cast<double>(idx.MemoryUsage()) / n;
  EXPECT_LE(per, 96.0) << per << " bytes per entry";
}

}  // namespace
}  // namespace kvtier
