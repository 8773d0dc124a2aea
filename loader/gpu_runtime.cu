// CUDA implementation of loader/gpu_runtime.h.
#include "loader/gpu_runtime.h"

#include <cuda_runtime.h>

#include <cctype>
#include <cstdint>
#include <cstring>
#include <utility>

#include "loader/cuda_status.h"

namespace kvtier {

bool GpuAvailable() {
  static const bool available = [] {
    int count = 0;
    return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
  }();
  return available;
}

Result<std::string> GpuDeviceName() {
  int device = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  cudaDeviceProp prop;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDeviceProperties(&prop, device));
  return std::string(prop.name);
}

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t bytes) {
  DeviceBuffer b;
  if (bytes != 0) {
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMalloc(&b.data_, bytes));
    b.size_ = bytes;
  }
  return Result<DeviceBuffer>(std::move(b));
}

DeviceBuffer::~DeviceBuffer() {
  if (data_ != nullptr) (void)cudaFree(data_);
}

Result<PinnedHostBuffer> PinnedHostBuffer::Allocate(size_t bytes) {
  PinnedHostBuffer b;
  if (bytes != 0) {
    KVTIER_CUDA_RETURN_IF_ERROR(
        cudaHostAlloc(&b.host_, bytes, cudaHostAllocMapped | cudaHostAllocPortable));
    b.size_ = bytes;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&b.device_, b.host_, 0));
  }
  return Result<PinnedHostBuffer>(std::move(b));
}

PinnedHostBuffer::~PinnedHostBuffer() {
  if (host_ != nullptr) (void)cudaFreeHost(host_);
}

Result<HostRegistration> HostRegistration::Register(void* host, size_t bytes,
                                                    HostRegisterMode mode) {
  if (host == nullptr || bytes == 0) {
    return Status::InvalidArgument("HostRegistration: empty region");
  }
  unsigned flags = cudaHostRegisterMapped | cudaHostRegisterPortable;
  if (mode == HostRegisterMode::kReadOnly) {
    int device = 0;
    int supported = 0;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    KVTIER_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&supported, cudaDevAttrHostRegisterReadOnlySupported, device));
    if (supported) flags |= cudaHostRegisterReadOnly;
  }
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostRegister(host, bytes, flags));
  HostRegistration r;
  r.host_ = host;
  r.size_ = bytes;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostGetDevicePointer(&r.device_, host, 0));
  return Result<HostRegistration>(std::move(r));
}

HostRegistration::~HostRegistration() {
  if (host_ != nullptr) (void)cudaHostUnregister(host_);
}

void* HostRegistration::DevicePointer(const void* p) const {
  const auto a = reinterpret_cast<uintptr_t>(p);
  const auto h = reinterpret_cast<uintptr_t>(host_);
  if (host_ == nullptr || a < h || a >= h + size_) return nullptr;
  return static_cast<char*>(device_) + (a - h);
}

Result<int> GpuStreamPriority(StreamPriority priority) {
  int least = 0, greatest = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaDeviceGetStreamPriorityRange(&least, &greatest));
  switch (priority) {
    case StreamPriority::kLow: return least;
    case StreamPriority::kHigh: return greatest;
    case StreamPriority::kDefault: break;
  }
  return 0;
}

Result<OwnedGpuStream> OwnedGpuStream::Create(StreamPriority priority) {
  OwnedGpuStream s;
  cudaStream_t stream = nullptr;
  KVTIER_ASSIGN_OR_RETURN(int p, GpuStreamPriority(priority));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithPriority(&stream, cudaStreamNonBlocking, p));
  s.stream_ = stream;
  return Result<OwnedGpuStream>(std::move(s));
}

OwnedGpuStream::~OwnedGpuStream() {
  if (stream_ != nullptr) (void)cudaStreamDestroy(static_cast<cudaStream_t>(stream_));
}

Result<int> GpuGetDevice() {
  int device = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
  return device;
}

Status GpuSetDevice(int device) { return CudaStatus(cudaSetDevice(device), "cudaSetDevice"); }

Result<GpuEvent> GpuEvent::Create(bool timing) {
  GpuEvent e;
  cudaEvent_t ev = nullptr;
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaEventCreateWithFlags(&ev, timing ? cudaEventDefault : cudaEventDisableTiming));
  e.event_ = ev;
  return Result<GpuEvent>(std::move(e));
}

GpuEvent::~GpuEvent() {
  if (event_ != nullptr) (void)cudaEventDestroy(static_cast<cudaEvent_t>(event_));
}

Status GpuEvent::Record(GpuStream stream) {
  if (event_ == nullptr) return Status::InvalidArgument("GpuEvent: not created");
  return CudaStatus(cudaEventRecord(static_cast<cudaEvent_t>(event_),
                                    static_cast<cudaStream_t>(stream)),
                    "cudaEventRecord");
}

Status GpuEvent::Synchronize() const {
  if (event_ == nullptr) return Status::InvalidArgument("GpuEvent: not created");
  return CudaStatus(cudaEventSynchronize(static_cast<cudaEvent_t>(event_)),
                    "cudaEventSynchronize");
}

Result<bool> GpuEvent::Query() const {
  if (event_ == nullptr) return Status::InvalidArgument("GpuEvent: not created");
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(event_));
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) return false;
  return CudaStatus(err, "cudaEventQuery");
}

Status GpuEvent::StreamWait(GpuStream stream) const {
  if (event_ == nullptr) return Status::InvalidArgument("GpuEvent: not created");
  return CudaStatus(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream),
                                        static_cast<cudaEvent_t>(event_), 0),
                    "cudaStreamWaitEvent");
}

Result<float> GpuEvent::ElapsedMs(const GpuEvent& start, const GpuEvent& end) {
  if (start.event_ == nullptr || end.event_ == nullptr) {
    return Status::InvalidArgument("GpuEvent: not created");
  }
  float ms = 0;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaEventElapsedTime(&ms, static_cast<cudaEvent_t>(start.event_),
                                                   static_cast<cudaEvent_t>(end.event_)));
  return ms;
}

Result<IpcMemMapping> IpcMemMapping::Open(const void* handle, size_t handle_bytes, size_t bytes) {
  static_assert(sizeof(cudaIpcMemHandle_t) == kHandleBytes);
  if (handle == nullptr || handle_bytes != kHandleBytes) {
    return Status::InvalidArgument("IpcMemMapping: a CUDA IPC handle is " +
                                   std::to_string(kHandleBytes) + " bytes, got " +
                                   std::to_string(handle_bytes));
  }
  if (bytes == 0) return Status::InvalidArgument("IpcMemMapping: empty allocation");
  cudaIpcMemHandle_t h;
  std::memcpy(&h, handle, kHandleBytes);
  IpcMemMapping m;
  void* p = nullptr;
  const cudaError_t err = cudaIpcOpenMemHandle(&p, h, cudaIpcMemLazyEnablePeerAccess);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    // An invalid handle is the exporter's problem, not an argument error.
    return Status::IOError(std::string("cudaIpcOpenMemHandle: ") + cudaGetErrorString(err) +
                           " (" + cudaGetErrorName(err) + ")");
  }
  m.data_ = p;
  m.size_ = bytes;
  return Result<IpcMemMapping>(std::move(m));
}

IpcMemMapping::~IpcMemMapping() {
  if (data_ != nullptr) (void)cudaIpcCloseMemHandle(data_);
}

Status GpuCopyBytes(void* dst, const void* src, size_t bytes) {
  return CudaStatus(cudaMemcpy(dst, src, bytes, cudaMemcpyDefault), "cudaMemcpy");
}

Status GpuCopyBytesAsync(void* dst, const void* src, size_t bytes, GpuStream stream) {
  return CudaStatus(
      cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, static_cast<cudaStream_t>(stream)),
      "cudaMemcpyAsync");
}

Status GpuFillBytes(void* dst, int byte, size_t bytes) {
  KVTIER_CUDA_RETURN_IF_ERROR(cudaMemset(dst, byte, bytes));
  return CudaStatus(cudaDeviceSynchronize(), "cudaDeviceSynchronize");
}

Status GpuSynchronize(GpuStream stream) {
  return CudaStatus(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)),
                    "cudaStreamSynchronize");
}

Status GpuLaunchHostFunc(GpuStream stream, void (*fn)(void*), void* arg) {
  return CudaStatus(cudaLaunchHostFunc(static_cast<cudaStream_t>(stream), fn, arg),
                    "cudaLaunchHostFunc");
}

}  // namespace kvtier
