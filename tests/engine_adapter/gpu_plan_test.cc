// Tests engine_adapter/gpu_plan.{h,cc}: the checks and address resolution of
// the client's GPU path, without a GPU (addresses are never dereferenced).
#include "engine_adapter/gpu_plan.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvtier {
namespace {

KvLayout Layout() { return KvLayout{4, 2, 64, 16, DType::kBF16, 2}; }  // 32 KiB blocks

KvPoolShape Shape(uint32_t pages = 8) {
  KvPoolShape s;
  s.dtype = KvDtype::kBf16;
  s.num_layers = 4;
  s.kv_heads = 2;
  s.head_dim = 64;
  s.tokens_per_page = 16;
  s.num_pages = pages;
  return s;
}

// A vLLM pool at a fake, aligned address.
KvPool Pool(const KvPoolShape& s) {
  std::vector<void*> bases;
  for (uint32_t l = 0; l < s.num_layers; ++l)
    bases.push_back(reinterpret_cast<void*>(uintptr_t{0x10000000} + l * PerLayerTensorBytes(s)));
  return MakeVllmFlashPool(s, bases).value();
}

GpuSegments Segments(bool hbm) {
  GpuSegments g;
  g.host = reinterpret_cast<uint8_t*>(uintptr_t{0x7f0000000000});
  g.host_bytes = 64 << 20;
  if (hbm) {
    g.hbm = reinterpret_cast<uint8_t*>(uintptr_t{0x7e0000000000});
    g.hbm_bytes = 16 << 20;
  }
  return g;
}

RemoteBlock Block(uint64_t i, TierKind tier, uint64_t offset, uint32_t size = 32 << 10) {
  return RemoteBlock{BlockKey{i + 1, 7}, tier, offset, size, 0x1234 + i};
}

TEST(GpuPlanTest, PoolMustMatchTheNamespaceLayout) {
  KvPool pool = Pool(Shape());
  EXPECT_TRUE(CheckPoolMatchesLayout(pool, Layout()).ok());
  struct Case {
    const char* what;
    KvLayout layout;
  };
  std::vector<Case> cases = {
      {"layers", KvLayout{5, 2, 64, 16, DType::kBF16, 2}},
      {"KV heads", KvLayout{4, 4, 64, 16, DType::kBF16, 2}},
      {"head_dim", KvLayout{4, 2, 128, 16, DType::kBF16, 2}},
      {"tokens per page", KvLayout{4, 2, 64, 32, DType::kBF16, 2}},
      {"dtype", KvLayout{4, 2, 64, 16, DType::kFP16, 2}},
      {"plane", KvLayout{4, 2, 64, 16, DType::kBF16, 1}},
  };
  for (const auto& c : cases) {
    Status st = CheckPoolMatchesLayout(pool, c.layout);
    EXPECT_TRUE(st.IsInvalidArgument()) << c.what;
    EXPECT_NE(st.message().find(c.what), std::string::npos) << st.ToString();
  }
  // Both fp8 formats serve an fp8 namespace.
  KvPoolShape s = Shape();
  s.dtype = KvDtype::kFp8E5M2;
  EXPECT_TRUE(CheckPoolMatchesLayout(Pool(s), KvLayout{4, 2, 64, 16, DType::kFP8, 2}).ok());
  EXPECT_TRUE(CheckPoolMatchesLayout(Pool(s), Layout()).IsInvalidArgument());
}

TEST(GpuPlanTest, ResolvesHostAndHbmSlots) {
  GpuSegments g = Segments(true);
  auto h = ResolveSlot(g, TierKind::kHost, 4096, 32 << 10);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(*h, g.host + 4096);
  auto d = ResolveSlot(g, TierKind::kHbm, 1 << 20, 32 << 10);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, g.hbm + (1 << 20));
  // The last slot that fits, and one byte past it.
  EXPECT_TRUE(ResolveSlot(g, TierKind::kHbm, (16 << 20) - (32 << 10), 32 << 10).ok());
  g.hbm_device = 1;
  EXPECT_TRUE(ResolveSlot(g, TierKind::kHbm, 0, 32 << 10, 1).ok());
  EXPECT_EQ(ResolveSlot(g, TierKind::kHbm, 0, 32 << 10, 0).status().code(), StatusCode::kUnavailable)
      << "a block in another GPU's tier is not read through this session's mapping";
  g.hbm_device = -1;
  EXPECT_TRUE(ResolveSlot(g, TierKind::kHbm, (16 << 20) - (32 << 10) + 1, 32 << 10)
                  .status()
                  .IsCorruption());
  EXPECT_TRUE(ResolveSlot(g, TierKind::kHost, ~uint64_t{0}, 16).status().IsCorruption());
  EXPECT_EQ(ResolveSlot(g, TierKind::kNvme, 0, 16).status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(ResolveSlot(Segments(false), TierKind::kHbm, 0, 16).status().code(),
            StatusCode::kUnavailable);
}

TEST(GpuPlanTest, LoadPlanMapsBlocksToPages) {
  KvPool pool = Pool(Shape());
  GpuSegments g = Segments(true);
  std::vector<RemoteBlock> blocks = {Block(0, TierKind::kHost, 0),
                                     Block(1, TierKind::kHbm, 65536),
                                     Block(2, TierKind::kHost, 32768)};
  std::vector<uint32_t> pages = {5, 0, 7};
  GpuPlanScratch sc;
  ASSERT_TRUE(PlanLoad(blocks, pages, pool.block_bytes(), 8, g, &sc).ok());
  ASSERT_EQ(sc.refs.size(), 3u);
  EXPECT_EQ(sc.refs[0].slot, g.host);
  EXPECT_EQ(sc.refs[0].page, 5u);
  EXPECT_EQ(sc.refs[1].slot, g.hbm + 65536);
  EXPECT_EQ(sc.refs[1].page, 0u);
  EXPECT_EQ(sc.refs[2].slot, g.host + 32768);
  EXPECT_FALSE(sc.all_hbm);
  EXPECT_FALSE(sc.all_host);  // mixed: the copy engines do not take it
  // A prefix of the lease.
  ASSERT_TRUE(PlanLoad(blocks, std::span(pages).first(1), pool.block_bytes(), 8, g, &sc).ok());
  EXPECT_EQ(sc.refs.size(), 1u);
  EXPECT_FALSE(sc.all_hbm);
  EXPECT_TRUE(sc.all_host);
  // Only HBM blocks: the session may pick its device-memory copier.
  ASSERT_TRUE(PlanLoad(std::span(blocks).subspan(1, 1), std::span(pages).first(1),
                       pool.block_bytes(), 8, g, &sc)
                  .ok());
  EXPECT_TRUE(sc.all_hbm);
  EXPECT_FALSE(sc.all_host);
  // The transfer the session builds from it passes the loader's validation.
  PagedTransfer t{&pool, sc.refs, TransferDirection::kLoad};
  EXPECT_TRUE(ValidateTransfer(t).ok());
}

TEST(GpuPlanTest, LoadPlanRejectsBadRequestsNamingTheBlock) {
  const uint64_t bb = Pool(Shape()).block_bytes();
  GpuSegments g = Segments(false);
  std::vector<RemoteBlock> blocks = {Block(0, TierKind::kHost, 0), Block(1, TierKind::kHost, bb)};
  GpuPlanScratch sc;
  std::vector<uint32_t> three = {0, 1, 2};
  EXPECT_TRUE(PlanLoad(blocks, three, bb, 8, g, &sc).IsInvalidArgument());
  std::vector<uint32_t> out_of_range = {0, 8};
  EXPECT_TRUE(PlanLoad(blocks, out_of_range, bb, 8, g, &sc).IsInvalidArgument());
  std::vector<uint32_t> twice = {3, 3};
  Status st = PlanLoad(blocks, twice, bb, 8, g, &sc);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("twice"), std::string::npos) << st.ToString();
  std::vector<uint32_t> ok = {1, 2};
  // A block of another size.
  std::vector<RemoteBlock> wrong_size = {Block(0, TierKind::kHost, 0, 4096), blocks[1]};
  EXPECT_TRUE(PlanLoad(wrong_size, ok, bb, 8, g, &sc).IsInvalidArgument());
  // An HBM block without the HBM tier open.
  std::vector<RemoteBlock> hbm = {blocks[0], Block(1, TierKind::kHbm, 0)};
  st = PlanLoad(hbm, ok, bb, 8, g, &sc);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message().rfind("block 1 (", 0), 0u) << st.ToString();
  // A location past the host segment.
  std::vector<RemoteBlock> outside = {blocks[0], Block(1, TierKind::kHost, (64 << 20) - 4096)};
  st = PlanLoad(outside, ok, bb, 8, g, &sc);
  EXPECT_TRUE(st.IsCorruption());
  EXPECT_EQ(st.message().rfind("block 1 (", 0), 0u) << st.ToString();
  // NVMe blocks are never addressable.
  std::vector<RemoteBlock> nvme = {Block(0, TierKind::kNvme, 0)};
  EXPECT_EQ(PlanLoad(nvme, std::span(ok).first(1), bb, 8, g, &sc).code(),
            StatusCode::kUnavailable);
}

TEST(GpuPlanTest, StorePlanWritesReservedSlotsOnly) {
  const uint64_t bb = Pool(Shape()).block_bytes();
  GpuSegments g = Segments(true);
  auto slot = [&](uint64_t i, ReserveOutcome o, TierKind t, uint64_t off) {
    return ClientTxn::Slot{BlockKey{i + 1, 3}, o, t, off, nullptr, static_cast<uint32_t>(bb)};
  };
  std::vector<ClientTxn::Slot> slots = {
      slot(0, ReserveOutcome::kPresent, TierKind::kHost, 0),
      slot(1, ReserveOutcome::kReserved, TierKind::kHost, 8192),
      slot(2, ReserveOutcome::kInFlight, TierKind::kHost, 0),
      slot(3, ReserveOutcome::kReserved, TierKind::kHbm, 4096),
      slot(4, ReserveOutcome::kNoSpace, TierKind::kHost, 0),
  };
  std::vector<uint32_t> pages = {1, 2, 3, 4, 5};
  GpuPlanScratch sc;
  ASSERT_TRUE(PlanStore(slots, pages, bb, 8, g, &sc).ok());
  ASSERT_EQ(sc.refs.size(), 2u);
  EXPECT_EQ(sc.refs[0].slot, g.host + 8192);
  EXPECT_EQ(sc.refs[0].page, 2u);
  EXPECT_EQ(sc.refs[1].slot, g.hbm + 4096);
  EXPECT_EQ(sc.refs[1].page, 4u);
  EXPECT_EQ(sc.slot_index, (std::vector<uint32_t>{1, 3}));
  EXPECT_FALSE(sc.all_hbm);
  EXPECT_FALSE(sc.all_host);
  // Stores may read one page twice (the same prefix stored under two chains).
  std::vector<uint32_t> same = {2, 2, 2, 2, 2};
  EXPECT_TRUE(PlanStore(slots, same, bb, 8, g, &sc).ok());

  EXPECT_TRUE(PlanStore(slots, std::span(pages).first(4), bb, 8, g, &sc).IsInvalidArgument());
  std::vector<uint32_t> bad = {1, 2, 3, 9, 5};
  EXPECT_TRUE(PlanStore(slots, bad, bb, 8, g, &sc).IsInvalidArgument());
  Status st = PlanStore(slots, pages, bb, 8, Segments(false), &sc);
  EXPECT_EQ(st.code(), StatusCode::kUnavailable);
  EXPECT_EQ(st.message().rfind("slot 3 (", 0), 0u) << st.ToString();
}

// A store in chunks: each chunk is chained to the key before it, and the
// priority ranges are cut to the chunk and made relative to it.
TEST(GpuPlanTest, StoreChunkOptionsChainAndCutRanges) {
  std::vector<BlockKey> keys;
  for (uint64_t i = 0; i < 10; ++i) keys.push_back(BlockKey{i + 1, 100 + i});
  StoreOptions o;
  o.first_parent = BlockKey{77, 78};
  o.priority = 9;
  o.ranges = {PriorityRange{2, 7, 200, 5}, PriorityRange{8, 9, 50, 0}};

  StoreOptions c0 = StoreChunkOptions(o, keys, 0, 4);  // keys 0..3
  EXPECT_EQ(c0.first_parent, o.first_parent);
  EXPECT_EQ(c0.priority, 9);
  ASSERT_EQ(c0.ranges.size(), 1u);
  EXPECT_EQ(c0.ranges[0].begin, 2u);
  EXPECT_EQ(c0.ranges[0].end, 4u);
  EXPECT_EQ(c0.ranges[0].priority, 200);
  EXPECT_EQ(c0.ranges[0].duration_ns, 5u);

  StoreOptions c1 = StoreChunkOptions(o, keys, 4, 4);  // keys 4..7
  EXPECT_EQ(c1.first_parent, keys[3]);
  ASSERT_EQ(c1.ranges.size(), 1u);
  EXPECT_EQ(c1.ranges[0].begin, 0u);
  EXPECT_EQ(c1.ranges[0].end, 3u);

  StoreOptions c2 = StoreChunkOptions(o, keys, 8, 2);  // keys 8..9
  EXPECT_EQ(c2.first_parent, keys[7]);
  ASSERT_EQ(c2.ranges.size(), 1u);
  EXPECT_EQ(c2.ranges[0].begin, 0u);
  EXPECT_EQ(c2.ranges[0].end, 1u);
  EXPECT_EQ(c2.ranges[0].priority, 50);

  // A chunk no range touches keeps none.
  StoreOptions c3 = StoreChunkOptions(o, keys, 7, 1);  // key 7
  EXPECT_TRUE(c3.ranges.empty());
}

}  // namespace
}  // namespace kvtier
