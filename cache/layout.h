// KvLayout: the shape of one model's KV cache, and the bytes of one block.
//
// A block holds `tokens_per_block` tokens of every layer. Its canonical byte
// order in a tier slot is [layer][plane][token][kv_head][head_dim], planes
// being K then V (one plane for models that keep a single latent, e.g. MLA).
// Value type; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

enum class DType : uint8_t { kBF16 = 1, kFP16 = 2, kFP8 = 3 };

uint32_t DTypeBytes(DType d);
const char* DTypeName(DType d);
Result<DType> ParseDType(std::string_view name);  // "bf16", "fp16", "fp8"

struct KvLayout {
  uint32_t num_layers = 0;
  uint32_t num_kv_heads = 0;
  uint32_t head_dim = 0;
  uint32_t tokens_per_block = 0;
  DType dtype = DType::kBF16;
  uint32_t planes = 2;  // 2 = K and V, 1 = a single latent

  // InvalidArgument with the offending field when a value is zero, out of
  // range (layers <= 1024, heads <= 1024, head_dim <= 4096, tokens per block
  // 1..4096, planes 1..2) or the block would exceed 4 GiB.
  Status Validate() const;
  uint64_t BlockBytes() const {
    return uint64_t{num_layers} * planes * tokens_per_block * num_kv_heads * head_dim *
           DTypeBytes(dtype);
  }
  // Bytes of one layer of one block (all planes).
  uint64_t LayerBytes() const { return BlockBytes() / num_layers; }
  std::string ToString() const;
  bool operator==(const KvLayout&) const = default;
};

inline uint32_t DTypeBytes(DType d) {
  switch (d) {
    case DType::kBF16:
    case DType::kFP16: return 2;
    case DType::kFP8: return 1;
  }
  return 0;
}

}  // namespace kvtier
