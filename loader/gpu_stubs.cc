// The GPU API of the loader in a build without CUDA: GpuAvailable() is false
// and everything else returns Unavailable, so callers need no #ifdefs.
#if !defined(KVTIER_HAVE_CUDA)

#include "loader/gpu_copy.h"
#include "loader/gpu_runtime.h"

namespace kvtier {

namespace {
Status NoCuda() { return Status::Unavailable("kvtier was built without CUDA"); }
}  // namespace

bool GpuAvailable() { return false; }
Result<std::string> GpuDeviceName() { return NoCuda(); }

Result<DeviceBuffer> DeviceBuffer::Allocate(size_t) { return NoCuda(); }
DeviceBuffer::~DeviceBuffer() = default;
Result<PinnedHostBuffer> PinnedHostBuffer::Allocate(size_t) { return NoCuda(); }
PinnedHostBuffer::~PinnedHostBuffer() = default;
Result<HostRegistration> HostRegistration::Register(void*, size_t, HostRegisterMode) {
  return NoCuda();
}
HostRegistration::~HostRegistration() = default;
void* HostRegistration::DevicePointer(const void*) const { return nullptr; }
Result<OwnedGpuStream> OwnedGpuStream::Create(StreamPriority) { return NoCuda(); }
Result<int> GpuStreamPriority(StreamPriority) { return NoCuda(); }
OwnedGpuStream::~OwnedGpuStream() = default;

Result<int> GpuGetDevice() { return NoCuda(); }
Status GpuSetDevice(int) { return NoCuda(); }

Result<GpuEvent> GpuEvent::Create(bool) { return NoCuda(); }
GpuEvent::~GpuEvent() = default;
Status GpuEvent::Record(GpuStream) { return NoCuda(); }
Status GpuEvent::Synchronize() const { return NoCuda(); }
Result<bool> GpuEvent::Query() const { return NoCuda(); }
Status GpuEvent::StreamWait(GpuStream) const { return NoCuda(); }
Result<float> GpuEvent::ElapsedMs(const GpuEvent&, const GpuEvent&) { return NoCuda(); }

Result<IpcMemMapping> IpcMemMapping::Open(const void*, size_t, size_t) { return NoCuda(); }
IpcMemMapping::~IpcMemMapping() = default;

Status GpuCopyBytes(void*, const void*, size_t) { return NoCuda(); }
Status GpuCopyBytesAsync(void*, const void*, size_t, GpuStream) { return NoCuda(); }
Status GpuFillBytes(void*, int, size_t) { return NoCuda(); }
Status GpuSynchronize(GpuStream) { return NoCuda(); }
Status GpuLaunchHostFunc(GpuStream, void (*)(void*), void*) { return NoCuda(); }

Result<LayerEvents> LayerEvents::Create(uint32_t) { return NoCuda(); }
LayerEvents::~LayerEvents() = default;
Status LayerEvents::StreamWaitLayer(uint32_t, GpuStream) const { return NoCuda(); }
Status LayerEvents::SynchronizeLayer(uint32_t) const { return NoCuda(); }
Result<bool> LayerEvents::LayerReady(uint32_t) const { return NoCuda(); }
Result<uint32_t> LayerEvents::GroupOf(uint32_t) const { return NoCuda(); }

struct GpuCopier::Impl {};
GpuCopier::GpuCopier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuCopier::~GpuCopier() = default;
Result<std::unique_ptr<GpuCopier>> GpuCopier::Create(const Options&) { return NoCuda(); }
Status GpuCopier::Copy(const PagedTransfer&, GpuStream) { return NoCuda(); }
Status GpuCopier::CopyLayerwise(const PagedTransfer&, uint32_t, LayerEvents*, GpuStream) {
  return NoCuda();
}
Status GpuCopier::CopyStaged(const PagedTransfer&, uint32_t, LayerEvents*, GpuStream, void*) {
  return NoCuda();
}
uint64_t GpuCopier::staging_buffer_bytes() const { return 0; }

}  // namespace kvtier

#endif  // !KVTIER_HAVE_CUDA
