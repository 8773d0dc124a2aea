// GemmLoop: a bf16 cuBLAS GEMM of a prefill's shape, queued over and over on
// a stream of its own — the compute an engine runs while KV streams in.
// `kvtier-bench load --interference` times it alone and during a load by
// each host copy path, to show how much of the GPU a transfer takes away.
//
// Built only with the engine (CUDA builds); Create() answers Unavailable
// without a GPU. Thread safety: one thread at a time.
#pragma once

#include <cstdint>
#include <memory>

#include "loader/gpu_runtime.h"
#include "tiers/status.h"

namespace kvtier::bench {

class GemmLoop {
 public:
  // C[m x n] = A[m x k] * B[k x n], bf16 in and out, fp32 accumulation,
  // operands filled with small values once.
  static Result<std::unique_ptr<GemmLoop>> Create(uint32_t m, uint32_t n, uint32_t k);
  ~GemmLoop();

  // Queues `count` GEMMs on this loop's stream between two timing events.
  Status Queue(int count);
  // Waits for the last Queue(), returns its milliseconds.
  Result<float> WaitMs();
  // Whether the last Queue() is done (without blocking).
  Result<bool> Done() const;
  double flops_per_gemm() const { return 2.0 * m_ * n_ * k_; }
  GpuStream stream() const { return stream_.get(); }

 private:
  GemmLoop() = default;
  uint32_t m_ = 0, n_ = 0, k_ = 0;
  void* handle_ = nullptr;  // cublasHandle_t
  DeviceBuffer a_, b_, c_;
  OwnedGpuStream stream_;
  GpuEvent start_, stop_;
};

}  // namespace kvtier::bench
