#include "loader/paged_transfer.h"

#include <cstdint>
#include <string>

#include "tiers/checksum.h"

namespace kvtier {

Status ValidateTransfer(const PagedTransfer& t) {
  if (t.pool == nullptr) return Status::InvalidArgument("transfer: no pool");
  KVTIER_RETURN_IF_ERROR(t.pool->Validate());
  if (t.direction != TransferDirection::kLoad && t.direction != TransferDirection::kStore) {
    return Status::InvalidArgument("transfer: unknown direction");
  }
  const uint32_t layers = t.pool->shape.num_layers;
  const uint32_t end = t.resolved_layer_end();
  if (t.layer_begin >= end || end > layers) {
    return Status::InvalidArgument("transfer: layer range [" + std::to_string(t.layer_begin) +
                                   ", " + std::to_string(end) + ") is empty or outside [0, " +
                                   std::to_string(layers) + ")");
  }
  if (t.checksum_sums_host != nullptr && t.checksum_sums == nullptr)
    return Status::InvalidArgument("transfer: checksum_sums_host without checksum_sums");
  const uint32_t pages = t.pool->shape.num_pages;
  for (size_t i = 0; i < t.blocks.size(); ++i) {
    const BlockRef& b = t.blocks[i];
    const auto addr = reinterpret_cast<uintptr_t>(b.slot);
    if (addr == 0 || addr % kPoolAlignment != 0) {
      return Status::InvalidArgument("transfer: blocks[" + std::to_string(i) + "].slot is " +
                                     (addr == 0 ? "null" : "not 16-byte aligned"));
    }
    if (b.page >= pages) {
      return Status::InvalidArgument("transfer: blocks[" + std::to_string(i) + "].page = " +
                                     std::to_string(b.page) + " but the pool has " +
                                     std::to_string(pages) + " pages");
    }
  }
  return Status::OK();
}

Status VerifyBlockChecksums(std::span<const uint64_t> sums, std::span<const uint64_t> expected,
                            uint64_t block_bytes) {
  if (sums.size() != expected.size()) {
    return Status::InvalidArgument("checksums: " + std::to_string(sums.size()) + " sums for " +
                                   std::to_string(expected.size()) + " expected values");
  }
  for (size_t i = 0; i < sums.size(); ++i) {
    const uint64_t got = checksum::Finalize(sums[i], block_bytes);
    if (got != expected[i]) {
      return Status::Corruption("checksum mismatch in block " + std::to_string(i) + ": computed " +
                                std::to_string(got) + ", stored " + std::to_string(expected[i]));
    }
  }
  return Status::OK();
}

}  // namespace kvtier
