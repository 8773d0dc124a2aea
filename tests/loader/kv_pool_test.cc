// Tests loader/kv_pool.{h,cc}, loader/copy_geometry.h and
// loader/paged_transfer.{h,cc}: builders, validation, the offset mapping the
// kernels use, transfer validation and checksum verification.
#include "loader/kv_pool.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "loader/copy_geometry.h"
#include "loader/paged_transfer.h"
#include "tests/loader/loader_test_util.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using loader_test::BuildPool;
using loader_test::CanonicalRow;
using loader_test::Layout;
using loader_test::NaivePoolRow;

KvPoolShape Llama8B() {
  KvPoolShape s;
  s.dtype = KvDtype::kBf16;
  s.num_layers = 32;
  s.kv_heads = 8;
  s.head_dim = 128;
  s.tokens_per_page = 16;
  s.num_pages = 1000;
  return s;
}

std::vector<void*> FakeBases(uint32_t n, uintptr_t start = 0x100000, uintptr_t step = 1 << 30) {
  std::vector<void*> v(n);
  for (uint32_t i = 0; i < n; ++i) v[i] = reinterpret_cast<void*>(start + i * step);
  return v;
}

TEST(KvPoolTest, DtypeSizes) {
  EXPECT_EQ(KvDtypeSize(KvDtype::kBf16), 2u);
  EXPECT_EQ(KvDtypeSize(KvDtype::kFp16), 2u);
  EXPECT_EQ(KvDtypeSize(KvDtype::kFp8E4M3), 1u);
  EXPECT_EQ(KvDtypeSize(KvDtype::kFp8E5M2), 1u);
}

TEST(KvPoolTest, Llama8BBlockIsTwoMiB) { EXPECT_EQ(Llama8B().block_bytes(), 2u << 20); }

TEST(KvPoolTest, VllmFlashStrides) {
  const KvPoolShape s = Llama8B();
  auto pool = MakeVllmFlashPool(s, FakeBases(32));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->head_stride, 256);
  EXPECT_EQ(pool->token_stride, 8 * 256);
  EXPECT_EQ(pool->page_stride, 16 * 8 * 256);
  EXPECT_EQ(pool->kv_stride, int64_t{1000} * 16 * 8 * 256);
}

TEST(KvPoolTest, FlashInferHndStrides) {
  auto pool = MakeFlashInferHndPool(Llama8B(), FakeBases(32));
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->token_stride, 256);
  EXPECT_EQ(pool->head_stride, 16 * 256);
  EXPECT_EQ(pool->kv_stride, 8 * 16 * 256);
  EXPECT_EQ(pool->page_stride, 2 * 8 * 16 * 256);
}

TEST(KvPoolTest, LayerFirstBases) {
  const KvPoolShape s = Llama8B();
  char* base = reinterpret_cast<char*>(uintptr_t{1} << 40);
  auto pool = MakeLayerFirstPool(s, base);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_EQ(pool->page_stride, int64_t{2} << 20);
  EXPECT_EQ(pool->kv_stride, 16 * 8 * 256);
  EXPECT_EQ(pool->layer_base[3], base + 3 * 2 * 16 * 8 * 256);
}

void ExpectInvalid(const Result<KvPool>& r, const std::string& fragment) {
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(r.status().IsInvalidArgument()) << r.status().ToString();
  EXPECT_NE(r.status().message().find(fragment), std::string::npos) << r.status().ToString();
}

TEST(KvPoolTest, RejectsBadShapes) {
  KvPoolShape s = Llama8B();
  s.head_dim = 36;  // 72 bytes
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(32)), "multiple of 16");
  s = Llama8B();
  s.tokens_per_page = 8;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(32)), "tokens_per_page");
  s.tokens_per_page = 512;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(32)), "tokens_per_page");
  s = Llama8B();
  s.num_layers = 0;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(0)), "num_layers");
  s.num_layers = kMaxPoolLayers + 1;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(kMaxPoolLayers + 1)), "num_layers");
  s = Llama8B();
  s.kv_heads = 0;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(32)), "kv_heads");
  s = Llama8B();
  s.num_pages = 0;
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(32)), "num_pages");
  s = Llama8B();
  s.kv_heads = 4096;  // 2 MiB * 512 > 2 GiB per block
  s.tokens_per_page = 256;
  ExpectInvalid(MakeLayerFirstPool(s, reinterpret_cast<void*>(uintptr_t{1} << 40)), "2 GiB");
}

TEST(KvPoolTest, RejectsBadBases) {
  const KvPoolShape s = Llama8B();
  ExpectInvalid(MakeVllmFlashPool(s, FakeBases(31)), "31 layer bases for 32 layers");
  auto bases = FakeBases(32);
  bases[7] = nullptr;
  ExpectInvalid(MakeVllmFlashPool(s, bases), "layer_base[7] is null");
  bases = FakeBases(32);
  bases[3] = static_cast<char*>(bases[3]) + 8;
  ExpectInvalid(MakeVllmFlashPool(s, bases), "layer_base[3] is not 16-byte aligned");
  ExpectInvalid(MakeLayerFirstPool(s, nullptr), "null");
}

TEST(KvPoolTest, RejectsOverlappingOrMisalignedStrides) {
  auto pool = MakeVllmFlashPool(Llama8B(), FakeBases(32));
  ASSERT_TRUE(pool.ok());
  KvPool p = *pool;
  p.head_stride = 128;  // rows are 256 bytes
  Status st = p.Validate();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("overlaps"), std::string::npos) << st.ToString();

  p = *pool;
  p.token_stride = 8;
  st = p.Validate();
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("token_stride = 8 is not a multiple of 16"), std::string::npos)
      << st.ToString();

  p = *pool;
  p.page_stride = p.token_stride * 15;  // a page of 16 tokens needs 16 token rows
  st = p.Validate();
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();

  // Separate K and V buffers with V below K (SGLang-style): negative kv_stride is fine.
  p = *pool;
  p.kv_stride = -p.kv_stride;
  EXPECT_TRUE(p.Validate().ok()) << p.Validate().ToString();
}

TEST(FastDivTest, MatchesDivision) {
  std::mt19937_64 rng(7);
  for (uint32_t d : {1u, 2u, 3u, 5u, 7u, 16u, 96u, 192u, 1000u, 12288u, 65536u, 98304u,
                     (1u << 30) + 3u, (1u << 31) - 1u}) {
    const FastDiv f = FastDiv::Make(d);
    std::vector<uint32_t> ns = {0, 1, d - 1, d, d + 1, (1u << 31) - 1, (1u << 31) - 2};
    for (int i = 0; i < 20000; ++i) ns.push_back(static_cast<uint32_t>(rng() >> 33));
    for (uint32_t n : ns) {
      if (n >= (1u << 31)) continue;
      uint32_t r;
      const uint32_t q = f.DivMod(n, &r);
      ASSERT_EQ(q, n / d) << n << " / " << d;
      ASSERT_EQ(r, n % d) << n << " % " << d;
    }
  }
}

// PageOffset (what the kernels use) against the layouts' tensor definitions,
// at every 16-byte vector of a block.
void CheckGeometry(Layout layout, const KvPoolShape& s, uint32_t expected_run) {
  const uint64_t bytes = loader_test::PoolAllocBytes(layout, s);
  char* base = reinterpret_cast<char*>(uintptr_t{1} << 40);
  auto pool = BuildPool(layout, s, base);
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  const CopyGeometry g = MakeCopyGeometry(*pool);
  EXPECT_EQ(g.run_bytes, expected_run) << LayoutName(layout);
  const uint32_t page = s.num_pages - 1;
  for (uint32_t l = 0; l < s.num_layers; ++l)
    for (uint32_t kv = 0; kv < 2; ++kv)
      for (uint32_t t = 0; t < s.tokens_per_page; ++t)
        for (uint32_t h = 0; h < s.kv_heads; ++h)
          for (uint32_t b = 0; b < s.row_bytes(); b += 16) {
            const uint32_t off = static_cast<uint32_t>(CanonicalRow(s, l, kv, t, h) + b);
            uint32_t layer;
            const int64_t in_page = g.PageOffset(off, &layer);
            const char* got = static_cast<char*>(pool->layer_base[layer]) +
                              int64_t{page} * g.page_stride + in_page;
            const char* want = base + NaivePoolRow(layout, s, l, kv, page, t, h) + b;
            ASSERT_EQ(layer, l);
            ASSERT_EQ(got, want) << LayoutName(layout) << " l" << l << " kv" << kv << " t" << t
                                 << " h" << h << " b" << b;
            ASSERT_LT(static_cast<uint64_t>(want - base), bytes);
          }
}

TEST(CopyGeometryTest, MatchesLayoutsAndMergesRuns) {
  KvPoolShape s;
  s.dtype = KvDtype::kBf16;
  s.num_layers = 3;
  s.kv_heads = 3;
  s.head_dim = 96;
  s.tokens_per_page = 16;
  s.num_pages = 5;
  const uint32_t row = 192, half = 16 * 3 * 192;
  CheckGeometry(Layout::kVllmFlash, s, half);
  CheckGeometry(Layout::kFlashInferNhd, s, half);
  CheckGeometry(Layout::kLayerFirst, s, half);
  CheckGeometry(Layout::kFlashInferHnd, s, row);
  CheckGeometry(Layout::kPaddedTokens, s, 3 * row);
  s.kv_heads = 1;  // HND with one head: a half is contiguous
  CheckGeometry(Layout::kFlashInferHnd, s, 16 * 192);
  s.dtype = KvDtype::kFp8E4M3;
  s.kv_heads = 5;
  s.tokens_per_page = 48;
  CheckGeometry(Layout::kFlashInferHnd, s, 96);
  CheckGeometry(Layout::kPaddedTokens, s, 5 * 96);
}

TEST(PagedTransferTest, Validation) {
  auto pool = MakeVllmFlashPool(Llama8B(), FakeBases(32));
  ASSERT_TRUE(pool.ok());
  std::vector<BlockRef> blocks = {{reinterpret_cast<void*>(0x1000), 3}};
  PagedTransfer t;
  EXPECT_TRUE(ValidateTransfer(t).IsInvalidArgument());  // no pool
  t.pool = &*pool;
  t.blocks = blocks;
  EXPECT_TRUE(ValidateTransfer(t).ok()) << ValidateTransfer(t).ToString();

  blocks[0].page = 1000;
  Status st = ValidateTransfer(t);
  EXPECT_TRUE(st.IsInvalidArgument());
  EXPECT_NE(st.message().find("page = 1000"), std::string::npos) << st.ToString();
  blocks[0].page = 999;
  EXPECT_TRUE(ValidateTransfer(t).ok());

  blocks[0].slot = reinterpret_cast<void*>(0x1008);
  st = ValidateTransfer(t);
  EXPECT_NE(st.message().find("not 16-byte aligned"), std::string::npos) << st.ToString();
  blocks[0].slot = nullptr;
  EXPECT_TRUE(ValidateTransfer(t).IsInvalidArgument());
  blocks[0].slot = reinterpret_cast<void*>(0x1000);

  t.layer_begin = 4;
  t.layer_end = 4;
  st = ValidateTransfer(t);
  EXPECT_NE(st.message().find("layer range [4, 4)"), std::string::npos) << st.ToString();
  t.layer_begin = 0;
  t.layer_end = 33;
  EXPECT_TRUE(ValidateTransfer(t).IsInvalidArgument());
  t.layer_end = 32;
  EXPECT_TRUE(ValidateTransfer(t).ok());
}

TEST(PagedTransferTest, VerifyBlockChecksums) {
  std::vector<uint8_t> block(4096);
  loader_test::FillRandom(block.data(), block.size(), 1);
  const uint64_t sum = checksum::PartialSum(block.data(), block.size());
  const uint64_t stored = checksum::Sum64(block.data(), block.size());
  std::vector<uint64_t> sums = {sum, sum};
  std::vector<uint64_t> expected = {stored, stored};
  EXPECT_TRUE(VerifyBlockChecksums(sums, expected, block.size()).ok());
  sums[1] += 1;
  Status st = VerifyBlockChecksums(sums, expected, block.size());
  EXPECT_TRUE(st.IsCorruption());
  EXPECT_NE(st.message().find("block 1"), std::string::npos) << st.ToString();
  EXPECT_TRUE(VerifyBlockChecksums(sums, std::span<const uint64_t>(expected).first(1),
                                   block.size())
                  .IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
