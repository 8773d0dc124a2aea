#include "bench/gemm_load.h"

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <string>
#include <vector>

namespace kvtier::bench {

namespace {
Status Cublas(cublasStatus_t s, const char* what) {
  if (s == CUBLAS_STATUS_SUCCESS) return Status::OK();
  return Status::IOError(std::string(what) + ": cuBLAS status " + std::to_string(static_cast<int>(s)));
}
}  // namespace

Result<std::unique_ptr<GemmLoop>> GemmLoop::Create(uint32_t m, uint32_t n, uint32_t k) {
  if (!GpuAvailable()) return Status::Unavailable("GemmLoop: no CUDA device");
  std::unique_ptr<GemmLoop> g(new GemmLoop());
  g->m_ = m;
  g->n_ = n;
  g->k_ = k;
  KVTIER_ASSIGN_OR_RETURN(g->a_, DeviceBuffer::Allocate(uint64_t{m} * k * 2));
  KVTIER_ASSIGN_OR_RETURN(g->b_, DeviceBuffer::Allocate(uint64_t{k} * n * 2));
  KVTIER_ASSIGN_OR_RETURN(g->c_, DeviceBuffer::Allocate(uint64_t{m} * n * 2));
  // Small values (bf16 0.01): no infinities, realistic switching activity is
  // not the point; the shape is.
  std::vector<__nv_bfloat16> fill(uint64_t{k} * std::max(m, n), __float2bfloat16(0.01f));
  KVTIER_RETURN_IF_ERROR(GpuCopyBytes(g->a_.data(), fill.data(), uint64_t{m} * k * 2));
  KVTIER_RETURN_IF_ERROR(GpuCopyBytes(g->b_.data(), fill.data(), uint64_t{k} * n * 2));
  KVTIER_ASSIGN_OR_RETURN(g->stream_, OwnedGpuStream::Create());
  KVTIER_ASSIGN_OR_RETURN(g->start_, GpuEvent::Create(true));
  KVTIER_ASSIGN_OR_RETURN(g->stop_, GpuEvent::Create(true));
  cublasHandle_t h;
  KVTIER_RETURN_IF_ERROR(Cublas(cublasCreate(&h), "cublasCreate"));
  g->handle_ = h;
  KVTIER_RETURN_IF_ERROR(
      Cublas(cublasSetStream(h, static_cast<cudaStream_t>(g->stream_.get())), "cublasSetStream"));
  return g;
}

GemmLoop::~GemmLoop() {
  if (handle_ != nullptr) (void)cublasDestroy(static_cast<cublasHandle_t>(handle_));
}

Status GemmLoop::Queue(int count) {
  KVTIER_RETURN_IF_ERROR(start_.Record(stream_.get()));
  const float alpha = 1.0f, beta = 0.0f;
  for (int i = 0; i < count; ++i) {
    // Column-major C(m x n) = A(m x k) B(k x n).
    KVTIER_RETURN_IF_ERROR(Cublas(
        cublasGemmEx(static_cast<cublasHandle_t>(handle_), CUBLAS_OP_N, CUBLAS_OP_N, m_, n_, k_,
                     &alpha, a_.data(), CUDA_R_16BF, m_, b_.data(), CUDA_R_16BF, k_, &beta,
                     c_.data(), CUDA_R_16BF, m_, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
        "cublasGemmEx"));
  }
  return stop_.Record(stream_.get());
}

Result<float> GemmLoop::WaitMs() {
  KVTIER_RETURN_IF_ERROR(stop_.Synchronize());
  return GpuEvent::ElapsedMs(start_, stop_);
}

Result<bool> GemmLoop::Done() const { return stop_.Query(); }

}  // namespace kvtier::bench
