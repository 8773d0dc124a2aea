// Small, CUDA-free wrappers of the CUDA runtime that the loader, its tests,
// the engine adapter and benchmarks need: is there a GPU, device and pinned
// memory, registering (mapping) a host region such as the daemon's shared
// segment, streams, and a few copies.
//
// This header compiles without CUDA. In a build without CUDA every function
// returns Unavailable and GpuAvailable() is false, so callers and tests need
// no #ifdefs. Errors: Unavailable (no GPU or no CUDA in this build),
// ResourceExhausted (out of device or pinned memory), InvalidArgument, IOError
// (any other CUDA error, with its name).
//
// Ownership: the buffer, registration and stream classes are move-only RAII
// owners; they release on destruction. Thread safety: the CUDA runtime is
// thread-safe; one object must not be moved or destroyed while another thread
// uses it. All calls act on the calling thread's current device.
#pragma once

#include <cstddef>
#include <string>
#include <utility>

#include "tiers/status.h"

namespace kvtier {

// A cudaStream_t, passed without the CUDA headers. nullptr is the legacy
// default stream.
using GpuStream = void*;

// True when this build has CUDA and at least one device answers
// (cudaGetDeviceCount > 0). Cached after the first call.
bool GpuAvailable();

// Name of the current device ("NVIDIA H200").
Result<std::string> GpuDeviceName();

// Device memory (cudaMalloc).
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  static Result<DeviceBuffer> Allocate(size_t bytes);
  DeviceBuffer(DeviceBuffer&& o) noexcept { Swap(o); }
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    Swap(o);
    return *this;
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  ~DeviceBuffer();

  void* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  void Swap(DeviceBuffer& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  void* data_ = nullptr;
  size_t size_ = 0;
};

// Pinned host memory mapped into the device's address space
// (cudaHostAlloc with cudaHostAllocMapped | cudaHostAllocPortable).
class PinnedHostBuffer {
 public:
  PinnedHostBuffer() = default;
  static Result<PinnedHostBuffer> Allocate(size_t bytes);
  PinnedHostBuffer(PinnedHostBuffer&& o) noexcept { Swap(o); }
  PinnedHostBuffer& operator=(PinnedHostBuffer&& o) noexcept {
    Swap(o);
    return *this;
  }
  PinnedHostBuffer(const PinnedHostBuffer&) = delete;
  PinnedHostBuffer& operator=(const PinnedHostBuffer&) = delete;
  ~PinnedHostBuffer();

  void* host() const { return host_; }
  void* device() const { return device_; }  // what kernels dereference
  size_t size() const { return size_; }

 private:
  void Swap(PinnedHostBuffer& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(size_, o.size_);
  }
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t size_ = 0;
};

enum class HostRegisterMode {
  kReadWrite,  // the GPU loads from and stores into the region
  kReadOnly,   // the GPU only reads it (cudaHostRegisterReadOnly where supported)
};

// Page-locks an existing host region (e.g. the mmap of the daemon's shared
// host segment) and maps it for the device: cudaHostRegister with
// cudaHostRegisterMapped | cudaHostRegisterPortable. device_ptr() is the
// address kernels use for host_ptr(); slot addresses inside the region
// translate by the same offset (DevicePointer()). Unregisters on destruction;
// the region itself stays the caller's.
class HostRegistration {
 public:
  HostRegistration() = default;
  // REQUIRES: [host, host + bytes) is mapped and stays mapped while registered.
  static Result<HostRegistration> Register(void* host, size_t bytes,
                                           HostRegisterMode mode = HostRegisterMode::kReadWrite);
  HostRegistration(HostRegistration&& o) noexcept { Swap(o); }
  HostRegistration& operator=(HostRegistration&& o) noexcept {
    Swap(o);
    return *this;
  }
  HostRegistration(const HostRegistration&) = delete;
  HostRegistration& operator=(const HostRegistration&) = delete;
  ~HostRegistration();

  void* host_ptr() const { return host_; }
  void* device_ptr() const { return device_; }
  size_t size() const { return size_; }
  // Device address of host address `p` inside the region (nullptr outside it).
  void* DevicePointer(const void* p) const;

 private:
  void Swap(HostRegistration& o) noexcept {
    std::swap(host_, o.host_);
    std::swap(device_, o.device_);
    std::swap(size_, o.size_);
  }
  void* host_ = nullptr;
  void* device_ = nullptr;
  size_t size_ = 0;
};

// Scheduling priority of a stream's kernels. When SMs free up, the CTA
// scheduler dispatches a higher-priority stream's waiting blocks first: an
// engine computes on a high-priority stream and moves KV on low-priority
// ones, so that a transfer that fills the GPU does not hold back the layer
// that is ready to compute.
enum class StreamPriority { kDefault, kLow, kHigh };

// A CUDA stream (cudaStreamNonBlocking), destroyed with the owner.
class OwnedGpuStream {
 public:
  OwnedGpuStream() = default;
  static Result<OwnedGpuStream> Create(StreamPriority priority = StreamPriority::kDefault);
  OwnedGpuStream(OwnedGpuStream&& o) noexcept { std::swap(stream_, o.stream_); }
  OwnedGpuStream& operator=(OwnedGpuStream&& o) noexcept {
    std::swap(stream_, o.stream_);
    return *this;
  }
  OwnedGpuStream(const OwnedGpuStream&) = delete;
  OwnedGpuStream& operator=(const OwnedGpuStream&) = delete;
  ~OwnedGpuStream();

  GpuStream get() const { return stream_; }

 private:
  GpuStream stream_ = nullptr;
};

// cudaStreamCreateWithPriority's value for `priority` on the current device.
Result<int> GpuStreamPriority(StreamPriority priority);

// The calling thread's current device, and making `device` current
// (cudaGetDevice / cudaSetDevice).
Result<int> GpuGetDevice();
Status GpuSetDevice(int device);

// A CUDA event (cudaEventDisableTiming unless created with timing), destroyed
// with the owner.
class GpuEvent {
 public:
  GpuEvent() = default;
  static Result<GpuEvent> Create(bool timing = false);
  GpuEvent(GpuEvent&& o) noexcept { std::swap(event_, o.event_); }
  GpuEvent& operator=(GpuEvent&& o) noexcept {
    std::swap(event_, o.event_);
    return *this;
  }
  GpuEvent(const GpuEvent&) = delete;
  GpuEvent& operator=(const GpuEvent&) = delete;
  ~GpuEvent();

  // Records the event at the current end of `stream`.
  Status Record(GpuStream stream);
  // Blocks the host until the recorded work is done; reports its errors.
  Status Synchronize() const;
  // Whether the recorded work is done, without blocking.
  Result<bool> Query() const;
  // Makes `stream` wait on the device for the recorded work.
  Status StreamWait(GpuStream stream) const;
  // Milliseconds between two completed timing events.
  static Result<float> ElapsedMs(const GpuEvent& start, const GpuEvent& end);
  void* get() const { return event_; }  // cudaEvent_t

 private:
  void* event_ = nullptr;
};

// Device memory of another process, opened from its CUDA IPC handle
// (cudaIpcOpenMemHandle with cudaIpcMemLazyEnablePeerAccess) on the current
// device; closed (cudaIpcCloseMemHandle) on destruction. The exporting
// process must keep the allocation alive while it is open.
class IpcMemMapping {
 public:
  static constexpr size_t kHandleBytes = 64;  // sizeof(cudaIpcMemHandle_t)

  IpcMemMapping() = default;
  // InvalidArgument: handle_bytes != kHandleBytes or bytes == 0. IOError
  // from CUDA (e.g. the handle comes from this very process, or the
  // allocation is gone).
  static Result<IpcMemMapping> Open(const void* handle, size_t handle_bytes, size_t bytes);
  IpcMemMapping(IpcMemMapping&& o) noexcept { Swap(o); }
  IpcMemMapping& operator=(IpcMemMapping&& o) noexcept {
    Swap(o);
    return *this;
  }
  IpcMemMapping(const IpcMemMapping&) = delete;
  IpcMemMapping& operator=(const IpcMemMapping&) = delete;
  ~IpcMemMapping();

  void* data() const { return data_; }  // a device pointer
  size_t size() const { return size_; }  // as the exporter announced it

 private:
  void Swap(IpcMemMapping& o) noexcept {
    std::swap(data_, o.data_);
    std::swap(size_, o.size_);
  }
  void* data_ = nullptr;
  size_t size_ = 0;
};

// cudaMemcpy with cudaMemcpyDefault (any direction, unified addressing);
// returns when done.
Status GpuCopyBytes(void* dst, const void* src, size_t bytes);
// The same, queued on `stream`.
Status GpuCopyBytesAsync(void* dst, const void* src, size_t bytes, GpuStream stream);
// cudaMemset of device memory; returns when done.
Status GpuFillBytes(void* dst, int byte, size_t bytes);
// Blocks until `stream` is idle; reports errors of the work queued on it.
Status GpuSynchronize(GpuStream stream);
// Queues fn(arg) on `stream` (cudaLaunchHostFunc): later work on the stream
// waits for it. fn must not call CUDA.
Status GpuLaunchHostFunc(GpuStream stream, void (*fn)(void*), void* arg);

}  // namespace kvtier
