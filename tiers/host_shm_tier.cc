#include "tiers/host_shm_tier.h"

#include "tiers/numa.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace kvtier {

namespace {
Status Errno(const std::string& what) {
  return Status::IOError(what + ": " + std::strerror(errno));
}
}  // namespace

Result<std::unique_ptr<HostShmTier>> HostShmTier::Create(const HostShmOptions& o) {
  SlabOptions so;
  so.capacity = o.capacity_bytes;
  so.region_bytes = o.region_bytes;
  auto alloc = SlabAllocator::Create(so);
  if (!alloc.ok()) return alloc.status();
  uint64_t size = alloc->capacity();  // the configured bytes, 4 KiB aligned

  int fd = memfd_create(o.name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0) return Errno("memfd_create");
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    Status st = Errno("ftruncate of the host segment to " + std::to_string(size) + " bytes");
    close(fd);
    return st;
  }
  // Clients map this fd: forbid resizing it under them.
  (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    Status st = Errno("mmap of the host segment");
    close(fd);
    return st;
  }
  // Placement first: pages are allocated on first touch (or populate).
  if (!o.numa_nodes.empty()) {
    Status st = BindMemoryToNodes(p, size, o.numa_nodes);
    if (!st.ok()) {
      munmap(p, size);
      close(fd);
      return st;
    }
  }
  if (o.populate) (void)madvise(p, size, MADV_WILLNEED);
  (void)madvise(p, size, MADV_HUGEPAGE);  // best effort; shmem THP may be off
  return std::unique_ptr<HostShmTier>(
      new HostShmTier(fd, static_cast<uint8_t*>(p), size, std::move(alloc).value()));
}

HostShmTier::~HostShmTier() {
  munmap(base_, size_);
  close(fd_);
}

Result<Slot> HostShmTier::Allocate(uint64_t bytes) {
  auto r = alloc_.Allocate(bytes);
  if (r.ok()) {
    ++counters_.allocations;
  } else {
    ++counters_.failed_allocations;
  }
  return r;
}

void HostShmTier::Free(const Slot& slot) {
  ++counters_.frees;
  alloc_.Free(slot);
}

}  // namespace kvtier
