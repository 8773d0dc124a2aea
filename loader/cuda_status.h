// CudaStatus: converts a cudaError_t into a kvtier Status. Private to the
// loader's .cu files (it includes the CUDA runtime header; public loader
// headers must not). Thread safety: stateless.
#pragma once

#include <cuda_runtime.h>

#include <string>

#include "tiers/status.h"

namespace kvtier {

// OK for cudaSuccess; Unavailable when there is no usable device or driver;
// ResourceExhausted when memory runs out; IOError otherwise. The message is
// "<what>: <cuda error string> (<cuda error name>)".
inline Status CudaStatus(cudaError_t err, const char* what) {
  if (err == cudaSuccess) return Status::OK();
  std::string msg = std::string(what) + ": " + cudaGetErrorString(err) + " (" +
                    cudaGetErrorName(err) + ")";
  switch (err) {
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorDevicesUnavailable:
      return Status::Unavailable(msg);
    case cudaErrorMemoryAllocation:
      return Status::ResourceExhausted(msg);
    case cudaErrorInvalidValue:
      return Status::InvalidArgument(msg);
    default:
      return Status::IOError(msg);
  }
}

}  // namespace kvtier

#define KVTIER_CUDA_RETURN_IF_ERROR(expr) KVTIER_RETURN_IF_ERROR(::kvtier::CudaStatus((expr), #expr))
