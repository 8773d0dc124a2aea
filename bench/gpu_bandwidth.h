// Copy bandwidths of the GPU the benchmarks run on, measured in the same run
// as what they are a roofline for: cudaMemcpyAsync of `bytes` (pinned host
// memory for host copies), median of 5 after a warm-up, bytes per second.
// CUDA builds only; returns 0 if memory cannot be had.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstring>
#include <vector>

#include "bench/bench_util.h"

namespace kvtier::bench {

inline double CopyBandwidth(cudaMemcpyKind kind, size_t bytes) {
  void *src = nullptr, *dst = nullptr;
  const bool host_src = kind == cudaMemcpyHostToDevice, host_dst = kind == cudaMemcpyDeviceToHost;
  bool ok = (host_src ? cudaMallocHost(&src, bytes) : cudaMalloc(&src, bytes)) == cudaSuccess &&
            (host_dst ? cudaMallocHost(&dst, bytes) : cudaMalloc(&dst, bytes)) == cudaSuccess;
  std::vector<double> bw;
  if (ok) {
    if (host_src) {
      std::memset(src, 1, bytes);
    } else {
      cudaMemset(src, 1, bytes);
    }
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    for (int i = 0; i < 6; ++i) {
      cudaEventRecord(e0);
      cudaMemcpyAsync(dst, src, bytes, kind);
      cudaEventRecord(e1);
      cudaEventSynchronize(e1);
      float ms = 0;
      cudaEventElapsedTime(&ms, e0, e1);
      if (i > 0 && ms > 0) bw.push_back(double(bytes) / (ms / 1e3));
    }
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
  }
  if (src) host_src ? cudaFreeHost(src) : cudaFree(src);
  if (dst) host_dst ? cudaFreeHost(dst) : cudaFree(dst);
  return Median(bw);
}

}  // namespace kvtier::bench
