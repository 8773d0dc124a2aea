// BlocksWorthLoading; see load_plan.h.
#include "engine_adapter/engine/load_plan.h"

namespace kvtier::engine {

uint32_t BlocksWorthLoading(std::span<const TierKind> tiers, uint64_t block_bytes,
                            uint32_t block_tokens, const NvmeCostModel& model) {
  if (model.prefill_tokens_per_ms <= 0 || model.nvme_bytes_per_s <= 0)
    return static_cast<uint32_t>(tiers.size());
  const double recompute_ms = block_tokens / model.prefill_tokens_per_ms;
  const double read_ms = double(block_bytes) / model.nvme_bytes_per_s * 1e3;
  double saved = 0, best_saved = 0;
  uint32_t best = 0;
  for (size_t i = 0; i < tiers.size(); ++i) {
    saved += recompute_ms - (tiers[i] == TierKind::kNvme ? read_ms : 0.0);
    if (saved >= best_saved) {
      best_saved = saved;
      best = static_cast<uint32_t>(i + 1);
    }
  }
  return best;
}

}  // namespace kvtier::engine
