// GpuHbmTier in a build without CUDA: the tier is unavailable.
#ifndef KVTIER_HAVE_CUDA
#include "tiers/gpu_hbm_tier.h"

namespace kvtier {

Result<std::string> CudaPciBusId(int) {
  return Status::Unavailable("kvtier was built without CUDA");
}
Result<std::unique_ptr<GpuHbmTier>> GpuHbmTier::Create(const GpuHbmOptions&) {
  return Status::Unavailable("kvtier was built without CUDA: no HBM tier");
}
GpuHbmTier::~GpuHbmTier() = default;
Result<Slot> GpuHbmTier::Allocate(uint64_t) { return Status::Unavailable("no HBM tier"); }
void GpuHbmTier::Free(const Slot&) {}
Status GpuHbmTier::CopyIn(const Slot&, const void*, uint64_t) { return Status::Unavailable("no HBM tier"); }
Status GpuHbmTier::CopyOut(void*, const Slot&, uint64_t) { return Status::Unavailable("no HBM tier"); }

}  // namespace kvtier
#endif
