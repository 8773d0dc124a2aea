#include "cache/layout.h"

#include <string>

namespace kvtier {

const char* DTypeName(DType d) {
  switch (d) {
    case DType::kBF16: return "bf16";
    case DType::kFP16: return "fp16";
    case DType::kFP8: return "fp8";
  }
  return "unknown";
}

Result<DType> ParseDType(std::string_view name) {
  if (name == "bf16") return DType::kBF16;
  if (name == "fp16") return DType::kFP16;
  if (name == "fp8") return DType::kFP8;
  return Status::InvalidArgument("unknown dtype '" + std::string(name) +
                                 "' (expected bf16, fp16 or fp8)");
}

Status KvLayout::Validate() const {
  auto check = [](const char* field, uint64_t v, uint64_t max) -> Status {
    if (v == 0 || v > max)
      return Status::InvalidArgument(std::string("layout.") + field + " = " + std::to_string(v) +
                                     " is out of range 1.." + std::to_string(max));
    return Status::OK();
  };
  KVTIER_RETURN_IF_ERROR(check("num_layers", num_layers, 1024));
  KVTIER_RETURN_IF_ERROR(check("num_kv_heads", num_kv_heads, 1024));
  KVTIER_RETURN_IF_ERROR(check("head_dim", head_dim, 4096));
  KVTIER_RETURN_IF_ERROR(check("tokens_per_block", tokens_per_block, 4096));
  KVTIER_RETURN_IF_ERROR(check("planes", planes, 2));
  if (DTypeBytes(dtype) == 0) return Status::InvalidArgument("layout.dtype is not a known dtype");
  if (BlockBytes() > (uint64_t{1} << 32))
    return Status::InvalidArgument("layout block size " + std::to_string(BlockBytes()) +
                                   " bytes exceeds 4 GiB");
  return Status::OK();
}

std::string KvLayout::ToString() const {
  return "layers=" + std::to_string(num_layers) + " kv_heads=" + std::to_string(num_kv_heads) +
         " head_dim=" + std::to_string(head_dim) + " tokens_per_block=" +
         std::to_string(tokens_per_block) + " dtype=" + DTypeName(dtype) +
         " planes=" + std::to_string(planes) + " block_bytes=" + std::to_string(BlockBytes());
}

}  // namespace kvtier
