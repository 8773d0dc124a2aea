// KvPool: where an inference engine keeps its paged KV cache, as strides.
//
// The cache stores each KV block as one contiguous *canonical block*:
//   bytes ordered [layer][kv (0=K, 1=V)][token][kv_head][head_dim],
//   size = num_layers * 2 * tokens_per_page * kv_heads * head_dim * elem_size.
// An engine keeps the same values in a paged pool with its own layout. KvPool
// describes that layout so that one copy routine (CPU or GPU) serves every
// engine: element (layer l, kv, page p, token t, head h, byte b of the
// head_dim row) lives at
//   layer_base[l] + kv*kv_stride + p*page_stride + t*token_stride
//                 + h*head_stride + b
// with the head_dim row (head_dim * elem_size bytes) contiguous. Strides are
// signed byte counts shared by all layers; each layer has its own base, so one
// tensor per layer (vLLM, FlashInfer) and one tensor for all layers
// (layer-first) are both one descriptor. Separate K and V buffers per layer
// (SGLang) fit too: kv_stride = v_base - k_base.
//
// One canonical block fills exactly one engine page: a page holds
// tokens_per_page tokens of every layer.
//
// Ownership: a KvPool holds addresses, never memory; the engine owns the pool
// and must keep it alive while transfers that name it run. Addresses are
// whatever the copier dereferences: host pointers for CpuCopy, device pointers
// for GpuCopier. Thread safety: a value; const methods are safe to share.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

enum class KvDtype : uint8_t {
  kBf16 = 0,
  kFp16 = 1,
  kFp8E4M3 = 2,
  kFp8E5M2 = 3,
};

// Bytes per element: 2 for bf16/fp16, 1 for fp8.
size_t KvDtypeSize(KvDtype dtype);
const char* KvDtypeName(KvDtype dtype);

// Limits checked by KvPool::Validate().
inline constexpr uint32_t kMaxPoolLayers = 256;      // GPU kernels pass bases by value
inline constexpr uint32_t kMinTokensPerPage = 16;    // smaller blocks waste slot metadata
inline constexpr uint32_t kMaxTokensPerPage = 256;
inline constexpr uint64_t kMaxCanonicalBlockBytes = (uint64_t{1} << 31) - 1;  // 32-bit offsets
inline constexpr size_t kPoolAlignment = 16;         // copies move 16-byte vectors

// The model-side shape of a pool, independent of where it lives.
struct KvPoolShape {
  KvDtype dtype = KvDtype::kBf16;
  uint32_t num_layers = 0;
  uint32_t kv_heads = 0;
  uint32_t head_dim = 0;         // elements
  uint32_t tokens_per_page = 0;  // = tokens per canonical block
  uint32_t num_pages = 0;        // pages in the pool; page indices are < num_pages

  size_t elem_size() const { return KvDtypeSize(dtype); }
  // Bytes of one head_dim row.
  uint64_t row_bytes() const { return uint64_t{head_dim} * elem_size(); }
  // Bytes of one layer's K (or V) part of a canonical block: [token][head][dim].
  uint64_t half_bytes() const { return row_bytes() * kv_heads * tokens_per_page; }
  // Bytes of one layer of a canonical block: K then V.
  uint64_t layer_bytes() const { return 2 * half_bytes(); }
  // Bytes of one canonical block (all layers).
  uint64_t block_bytes() const { return layer_bytes() * num_layers; }
};

struct KvPool {
  KvPoolShape shape;
  std::vector<void*> layer_base;  // num_layers entries, 16-byte aligned
  int64_t kv_stride = 0;          // bytes from K to V
  int64_t page_stride = 0;        // bytes from page p to p+1
  int64_t token_stride = 0;       // bytes from token t to t+1 within a page
  int64_t head_stride = 0;        // bytes from kv head h to h+1

  uint64_t block_bytes() const { return shape.block_bytes(); }

  // OK, or InvalidArgument naming the first field that is wrong: sizes out of
  // range, head_dim * elem_size not a multiple of 16, a base missing or
  // misaligned, a stride not a multiple of 16, or strides under which two
  // distinct elements of one layer could overlap.
  Status Validate() const;

  // "vllm-like pool: bf16, 32 layers, 8 kv heads x 128, 16 tokens/page, ...".
  std::string DebugString() const;
};

// --- Builders for common engine layouts. Each validates what it builds. ---

// vLLM flash-attention backend: per layer a tensor
//   [2, num_pages, tokens_per_page, kv_heads, head_dim]
// whose start is layer_bases[l].
Result<KvPool> MakeVllmFlashPool(const KvPoolShape& shape, std::span<void* const> layer_bases);

// FlashInfer HND: per layer a tensor [num_pages, 2, kv_heads, tokens_per_page, head_dim].
Result<KvPool> MakeFlashInferHndPool(const KvPoolShape& shape,
                                     std::span<void* const> layer_bases);

// FlashInfer NHD: per layer a tensor [num_pages, 2, tokens_per_page, kv_heads, head_dim].
Result<KvPool> MakeFlashInferNhdPool(const KvPoolShape& shape,
                                     std::span<void* const> layer_bases);

// Layer-first whole-block layout: one tensor
//   [num_pages, num_layers, 2, tokens_per_page, kv_heads, head_dim]
// starting at `base`; a page is then exactly one canonical block.
Result<KvPool> MakeLayerFirstPool(const KvPoolShape& shape, void* base);

// Bytes of one per-layer tensor of the vLLM / FlashInfer layouts
// (num_pages * 2 * tokens_per_page * kv_heads * head_dim * elem_size).
uint64_t PerLayerTensorBytes(const KvPoolShape& shape);
// Bytes of the single layer-first tensor (num_pages * block_bytes).
uint64_t LayerFirstTensorBytes(const KvPoolShape& shape);

}  // namespace kvtier
