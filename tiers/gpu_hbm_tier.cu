#include <cuda_runtime.h>

#include <cstring>
#include <string>

#include "tiers/gpu_hbm_tier.h"

namespace kvtier {

namespace {
Status CudaError(const char* what, cudaError_t e) {
  return Status(e == cudaErrorMemoryAllocation ? StatusCode::kResourceExhausted : StatusCode::kIOError,
                std::string(what) + ": " + cudaGetErrorString(e));
}
}  // namespace

Result<std::string> CudaPciBusId(int device) {
  char bus[32] = {0};
  cudaError_t e = cudaDeviceGetPCIBusId(bus, sizeof(bus), device);
  if (e != cudaSuccess) {
    cudaGetLastError();
    return Status::Unavailable(std::string("GPU ") + std::to_string(device) + ": " +
                               cudaGetErrorString(e));
  }
  return std::string(bus);
}

Result<std::unique_ptr<GpuHbmTier>> GpuHbmTier::Create(const GpuHbmOptions& o) {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
    cudaGetLastError();
    return Status::Unavailable("no CUDA GPU present");
  }
  if (o.device < 0 || o.device >= n)
    return Status::InvalidArgument("GPU " + std::to_string(o.device) + " does not exist (" +
                                   std::to_string(n) + " present)");
  SlabOptions so;
  so.capacity = o.capacity_bytes;
  so.region_bytes = o.region_bytes;
  auto alloc = SlabAllocator::Create(so);
  if (!alloc.ok()) return alloc.status();
  std::unique_ptr<GpuHbmTier> t(new GpuHbmTier(std::move(alloc).value()));
  t->device_ = o.device;
  cudaError_t e = cudaSetDevice(o.device);
  if (e != cudaSuccess) return CudaError("cudaSetDevice", e);
  void* p = nullptr;
  e = cudaMalloc(&p, t->alloc_.capacity());
  if (e != cudaSuccess) return CudaError("cudaMalloc of the HBM tier", e);
  t->base_ = static_cast<uint8_t*>(p);
  cudaIpcMemHandle_t h;
  e = cudaIpcGetMemHandle(&h, p);
  if (e != cudaSuccess) return CudaError("cudaIpcGetMemHandle", e);
  static_assert(sizeof(h) == 64, "cudaIpcMemHandle_t is 64 bytes");
  std::memcpy(t->ipc_handle_.data(), &h, 64);
  if (auto bus = CudaPciBusId(o.device); bus.ok()) t->pci_bus_id_ = *bus;
  cudaStream_t s;
  e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  if (e != cudaSuccess) return CudaError("cudaStreamCreate", e);
  t->stream_ = s;
  if (o.host_base != nullptr && o.host_bytes > 0) {
    e = cudaHostRegister(o.host_base, o.host_bytes, cudaHostRegisterPortable);
    if (e == cudaSuccess) {
      t->registered_host_ = o.host_base;
    } else {
      cudaGetLastError();  // copies still work, from pageable memory
    }
  }
  return Result<std::unique_ptr<GpuHbmTier>>(std::move(t));  // nvcc does no implicit move here
}

GpuHbmTier::~GpuHbmTier() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
  if (registered_host_ != nullptr) cudaHostUnregister(registered_host_);
  if (base_ != nullptr) cudaFree(base_);
}

Result<Slot> GpuHbmTier::Allocate(uint64_t bytes) {
  auto r = alloc_.Allocate(bytes);
  if (r.ok()) {
    ++counters_.allocations;
  } else {
    ++counters_.failed_allocations;
  }
  return r;
}

void GpuHbmTier::Free(const Slot& slot) {
  ++counters_.frees;
  alloc_.Free(slot);
}

Status GpuHbmTier::CopyIn(const Slot& dst, const void* src, uint64_t bytes) {
  cudaSetDevice(device_);
  auto s = static_cast<cudaStream_t>(stream_);
  cudaError_t e = cudaMemcpyAsync(base_ + dst.offset, src, bytes, cudaMemcpyHostToDevice, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  return e == cudaSuccess ? Status::OK() : CudaError("copy host to HBM", e);
}

Status GpuHbmTier::CopyOut(void* dst, const Slot& src, uint64_t bytes) {
  cudaSetDevice(device_);
  auto s = static_cast<cudaStream_t>(stream_);
  cudaError_t e = cudaMemcpyAsync(dst, base_ + src.offset, bytes, cudaMemcpyDeviceToHost, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  return e == cudaSuccess ? Status::OK() : CudaError("copy HBM to host", e);
}

}  // namespace kvtier
