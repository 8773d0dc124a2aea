// Test helpers for the loader: engine pool layouts written out from their
// tensor shapes (independently of KvPool's strides), a row-by-row reference
// copy, aligned host buffers and random fills. Header-only; used by the CPU
// and GPU loader tests. Thread safety: plain functions and values.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <ostream>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "loader/kv_pool.h"
#include "loader/paged_transfer.h"

namespace kvtier::loader_test {

enum class Layout {
  kVllmFlash,      // per layer [2, P, T, H, D]
  kFlashInferHnd,  // per layer [P, 2, H, T, D]
  kFlashInferNhd,  // per layer [P, 2, T, H, D]
  kLayerFirst,     // one tensor [P, L, 2, T, H, D]
  kPaddedTokens,   // per layer [P, 2, T, H*D + pad]: token rows padded (runs = one token)
};

inline const char* LayoutName(Layout l) {
  switch (l) {
    case Layout::kVllmFlash: return "vllm";
    case Layout::kFlashInferHnd: return "flashinfer_hnd";
    case Layout::kFlashInferNhd: return "flashinfer_nhd";
    case Layout::kLayerFirst: return "layer_first";
    case Layout::kPaddedTokens: return "padded_tokens";
  }
  return "?";
}

inline constexpr uint64_t kLayerGap = 256;   // between per-layer tensors
inline constexpr uint64_t kTokenPad = 32;    // padding after each token row (kPaddedTokens)
inline constexpr uint64_t kSlotGap = 64;     // between canonical slots

inline uint64_t TokenRowBytes(Layout layout, const KvPoolShape& s) {
  return s.row_bytes() * s.kv_heads + (layout == Layout::kPaddedTokens ? kTokenPad : 0);
}

// Bytes of one per-layer tensor (per-layer layouts).
inline uint64_t LayerTensorBytes(Layout layout, const KvPoolShape& s) {
  return uint64_t{s.num_pages} * 2 * s.tokens_per_page * TokenRowBytes(layout, s);
}

// Bytes to allocate for the whole pool, gaps included.
inline uint64_t PoolAllocBytes(Layout layout, const KvPoolShape& s) {
  if (layout == Layout::kLayerFirst) return LayerFirstTensorBytes(s);
  return uint64_t{s.num_layers} * (LayerTensorBytes(layout, s) + kLayerGap);
}

inline uint64_t LayerOffset(Layout layout, const KvPoolShape& s, uint32_t l) {
  return uint64_t{l} * (LayerTensorBytes(layout, s) + kLayerGap);
}

// Offset from the allocation's start of the head_dim row (l, kv, page, t, h),
// computed from the tensor shape of each layout.
inline uint64_t NaivePoolRow(Layout layout, const KvPoolShape& s, uint32_t l, uint32_t kv,
                             uint32_t p, uint32_t t, uint32_t h) {
  const uint64_t L = s.num_layers, P = s.num_pages, T = s.tokens_per_page, H = s.kv_heads;
  const uint64_t row = s.row_bytes();
  switch (layout) {
    case Layout::kVllmFlash:
      return LayerOffset(layout, s, l) + ((((kv * P + p) * T + t) * H + h) * row);
    case Layout::kFlashInferHnd:
      return LayerOffset(layout, s, l) + ((((uint64_t{p} * 2 + kv) * H + h) * T + t) * row);
    case Layout::kFlashInferNhd:
      return LayerOffset(layout, s, l) + ((((uint64_t{p} * 2 + kv) * T + t) * H + h) * row);
    case Layout::kLayerFirst:
      return ((((uint64_t{p} * L + l) * 2 + kv) * T + t) * H + h) * row;
    case Layout::kPaddedTokens:
      return LayerOffset(layout, s, l) +
             ((uint64_t{p} * 2 + kv) * T + t) * TokenRowBytes(layout, s) + h * row;
  }
  return 0;
}

// Offset of row (l, kv, t, h) in a canonical block: [L][2][T][H][D].
inline uint64_t CanonicalRow(const KvPoolShape& s, uint32_t l, uint32_t kv, uint32_t t,
                             uint32_t h) {
  return (((uint64_t{l} * 2 + kv) * s.tokens_per_page + t) * s.kv_heads + h) * s.row_bytes();
}

// Descriptor for a pool allocated at `base` (host or device address).
inline Result<KvPool> BuildPool(Layout layout, const KvPoolShape& s, char* base) {
  if (layout == Layout::kLayerFirst) return MakeLayerFirstPool(s, base);
  std::vector<void*> bases(s.num_layers);
  for (uint32_t l = 0; l < s.num_layers; ++l) bases[l] = base + LayerOffset(layout, s, l);
  switch (layout) {
    case Layout::kVllmFlash: return MakeVllmFlashPool(s, bases);
    case Layout::kFlashInferHnd: return MakeFlashInferHndPool(s, bases);
    case Layout::kFlashInferNhd: return MakeFlashInferNhdPool(s, bases);
    default: break;
  }
  KvPool pool;  // kPaddedTokens, by hand
  pool.shape = s;
  pool.layer_base = bases;
  pool.head_stride = static_cast<int64_t>(s.row_bytes());
  pool.token_stride = static_cast<int64_t>(TokenRowBytes(layout, s));
  pool.kv_stride = pool.token_stride * s.tokens_per_page;
  pool.page_stride = pool.kv_stride * 2;
  KVTIER_RETURN_IF_ERROR(pool.Validate());
  return pool;
}

// Reference copy, one head_dim row at a time, from the layouts' definitions.
// Slots are given as offsets into `slots` (host memory).
inline void NaiveCopy(Layout layout, const KvPoolShape& s, char* pool, char* slots,
                      std::span<const uint64_t> slot_offsets, std::span<const uint32_t> pages,
                      TransferDirection dir, uint32_t l0, uint32_t l1) {
  const uint64_t row = s.row_bytes();
  for (size_t i = 0; i < pages.size(); ++i) {
    for (uint32_t l = l0; l < l1; ++l)
      for (uint32_t kv = 0; kv < 2; ++kv)
        for (uint32_t t = 0; t < s.tokens_per_page; ++t)
          for (uint32_t h = 0; h < s.kv_heads; ++h) {
            char* p = pool + NaivePoolRow(layout, s, l, kv, pages[i], t, h);
            char* c = slots + slot_offsets[i] + CanonicalRow(s, l, kv, t, h);
            if (dir == TransferDirection::kLoad) {
              std::memcpy(p, c, row);
            } else {
              std::memcpy(c, p, row);
            }
          }
  }
}

// Page-aligned host memory (cudaHostRegister-friendly).
struct HostBytes {
  struct Free {
    void operator()(char* p) const { std::free(p); }
  };
  explicit HostBytes(size_t n)
      : bytes(n),
        ptr(static_cast<char*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096 + 4096))) {}
  char* data() const { return ptr.get(); }
  size_t size() const { return bytes; }
  size_t bytes;
  std::unique_ptr<char, Free> ptr;
};

inline void FillRandom(void* dst, size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* p = static_cast<unsigned char*>(dst);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(p + i, &v, 8);
  }
  for (; i < n; ++i) p[i] = static_cast<unsigned char>(rng());
}

// Index of the first differing byte, or -1.
inline int64_t FirstDiff(const void* a, const void* b, size_t n) {
  const auto* x = static_cast<const unsigned char*>(a);
  const auto* y = static_cast<const unsigned char*>(b);
  if (std::memcmp(x, y, n) == 0) return -1;
  for (size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return static_cast<int64_t>(i);
  return -1;
}

// A small test case: shape plus the pages a batch of blocks uses.
struct CaseSpec {
  Layout layout;
  KvDtype dtype;
  uint32_t tokens_per_page;
};

inline std::string CaseName(const CaseSpec& c) {
  return std::string(LayoutName(c.layout)) + "_" + KvDtypeName(c.dtype) + "_T" +
         std::to_string(c.tokens_per_page);
}

inline void PrintTo(const CaseSpec& c, std::ostream* os) { *os << CaseName(c); }

inline std::vector<CaseSpec> AllCases() {
  std::vector<CaseSpec> cases;
  for (Layout l : {Layout::kVllmFlash, Layout::kFlashInferHnd, Layout::kFlashInferNhd,
                   Layout::kLayerFirst, Layout::kPaddedTokens})
    for (KvDtype d : {KvDtype::kBf16, KvDtype::kFp16, KvDtype::kFp8E4M3})
      for (uint32_t t : {16u, 64u, 256u}) cases.push_back({l, d, t});
  return cases;
}

// 3 layers, 3 kv heads (odd, so divisions are not shifts), head_dim 96
// (192-byte rows in 16-bit types, 96-byte rows in fp8), 7 pages.
inline KvPoolShape CaseShape(const CaseSpec& c) {
  KvPoolShape s;
  s.dtype = c.dtype;
  s.num_layers = 3;
  s.kv_heads = 3;
  s.head_dim = 96;
  s.tokens_per_page = c.tokens_per_page;
  s.num_pages = 7;
  return s;
}

// Pages of the 4-block batch: scattered, not in order.
inline std::vector<uint32_t> CasePages() { return {5, 0, 3, 6}; }

inline constexpr uint8_t kPoisonA = 0xA5;
inline constexpr uint8_t kPoisonB = 0x5A;

}  // namespace kvtier::loader_test
