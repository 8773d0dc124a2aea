// BlocksWorthLoading: memory-tier blocks are always worth loading; NVMe
// blocks only while reading them is cheaper than recomputing their tokens.
#include "engine_adapter/engine/load_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvtier::engine {
namespace {

constexpr TierKind H = TierKind::kHost, M = TierKind::kHbm, N = TierKind::kNvme;
constexpr uint64_t kBlock = 2ull << 20;  // Llama-3-8B, 16 tokens
constexpr uint32_t kTokens = 16;

NvmeCostModel Model(double nvme_gbps, double tokens_per_ms) {
  NvmeCostModel m;
  m.nvme_bytes_per_s = nvme_gbps * 1e9;
  m.prefill_tokens_per_ms = tokens_per_ms;
  return m;
}

TEST(LoadPlanTest, MemoryTiersAreAlwaysLoaded) {
  std::vector<TierKind> t = {H, H, M, H};
  EXPECT_EQ(BlocksWorthLoading(t, kBlock, kTokens, Model(2.5, 1e9)), 4u);
  EXPECT_EQ(BlocksWorthLoading({}, kBlock, kTokens, Model(2.5, 20)), 0u);
}

TEST(LoadPlanTest, SlowDiskIsNotWorthReadingForAFastEngine) {
  // 8B on an H100: ~21 tokens/ms; a 2 MiB block from a 2.5 GB/s disk takes
  // 0.84 ms, its 16 tokens recompute in 0.76 ms.
  std::vector<TierKind> all_nvme(64, N);
  EXPECT_EQ(BlocksWorthLoading(all_nvme, kBlock, kTokens, Model(2.5, 21)), 0u);
  // A disk array of 10 GB/s: 0.21 ms per block, worth it.
  EXPECT_EQ(BlocksWorthLoading(all_nvme, kBlock, kTokens, Model(10, 21)), 64u);
  // A host prefix then NVMe: the host part only.
  std::vector<TierKind> mixed(10, H);
  mixed.insert(mixed.end(), 20, N);
  EXPECT_EQ(BlocksWorthLoading(mixed, kBlock, kTokens, Model(2.5, 21)), 10u);
}

TEST(LoadPlanTest, AnNvmeRunIsReadWhenTheMemoryBlocksAfterItPayForIt) {
  // 2 NVMe blocks cost 2 x 0.08 ms more than they save; the 10 host blocks
  // after them save 10 x 0.76 ms: loading all 12 beats stopping before them.
  std::vector<TierKind> t = {N, N};
  t.insert(t.end(), 10, H);
  EXPECT_EQ(BlocksWorthLoading(t, kBlock, kTokens, Model(2.5, 21)), 12u);
}

TEST(LoadPlanTest, UnmeasuredEngineLoadsEverything) {
  std::vector<TierKind> t(8, N);
  EXPECT_EQ(BlocksWorthLoading(t, kBlock, kTokens, Model(2.5, 0)), 8u);
  EXPECT_DOUBLE_EQ(NvmeCostModel::Blend(0, 5), 5);
  EXPECT_DOUBLE_EQ(NvmeCostModel::Blend(10, 20, 0.5), 15);
}

}  // namespace
}  // namespace kvtier::engine
