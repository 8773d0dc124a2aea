#include "loader/cpu_copy.h"

#include <cstdint>
#include <cstring>

#include "loader/copy_geometry.h"
#include "tiers/checksum.h"

namespace kvtier {

Status CpuCopy(const PagedTransfer& t) {
  KVTIER_RETURN_IF_ERROR(ValidateTransfer(t));
  const KvPool& pool = *t.pool;
  const CopyGeometry g = MakeCopyGeometry(pool);
  const bool load = t.direction == TransferDirection::kLoad;
  const uint32_t begin = t.layer_begin * g.layer_bytes;
  const uint32_t end = t.resolved_layer_end() * g.layer_bytes;

  for (size_t i = 0; i < t.blocks.size(); ++i) {
    const BlockRef& b = t.blocks[i];
    auto* slot = static_cast<unsigned char*>(b.slot);
    const int64_t page_off = static_cast<int64_t>(b.page) * g.page_stride;
    uint64_t sum = 0;
    // Runs tile the range exactly: every run starts on a run boundary.
    for (uint32_t off = begin; off < end; off += g.run_bytes) {
      uint32_t layer;
      const int64_t in_page = g.PageOffset(off, &layer);
      auto* page = static_cast<unsigned char*>(pool.layer_base[layer]) + page_off + in_page;
      unsigned char* canonical = slot + off;
      if (load) {
        std::memcpy(page, canonical, g.run_bytes);
      } else {
        std::memcpy(canonical, page, g.run_bytes);
      }
      if (t.checksum_sums != nullptr) {
        sum += checksum::PartialSum(canonical, g.run_bytes, off / 8);
      }
    }
    if (t.checksum_sums != nullptr) {
      t.checksum_sums[i] = (t.accumulate_checksums ? t.checksum_sums[i] : 0) + sum;
    }
  }
  if (t.checksum_sums_host != nullptr && !t.blocks.empty())
    std::memcpy(t.checksum_sums_host, t.checksum_sums, t.blocks.size() * sizeof(uint64_t));
  return Status::OK();
}

}  // namespace kvtier
