#include "tiers/host_shm_tier.h"

#include "tiers/numa.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "tiers/checksum.h"

namespace kvtier {

namespace {
Status Errno(const std::string& what) {
  return Status::IOError(what + ": " + std::strerror(errno));
}

// Metadata file of a persistent segment: a 4 KiB header, then one 64-byte
// record per 4 KiB of the segment (docs/host-segment.md has the layout).
constexpr char kMetaMagic[8] = {'K', 'V', 'T', 'H', 'O', 'S', 'T', '1'};
constexpr uint32_t kRecordMagic = 0x5248564B;  // "KVHR"
constexpr size_t kRecordSumAt = 56;

template <typename T>
void Put(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <typename T>
T Get(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
}  // namespace

Result<std::unique_ptr<HostShmTier>> HostShmTier::Create(const HostShmOptions& o) {
  SlabOptions so;
  so.capacity = o.capacity_bytes;
  so.region_bytes = o.region_bytes;
  auto alloc = SlabAllocator::Create(so);
  if (!alloc.ok()) return alloc.status();
  uint64_t size = alloc->capacity();  // the configured bytes, 4 KiB aligned

  int fd;
  if (o.path.empty()) {
    fd = memfd_create(o.name.c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0) return Errno("memfd_create");
  } else {
    // No symlinks, and only a file of our own (a shared /dev/shm lets
    // anyone create a file of that name first, to read or feed the cache).
    fd = open(o.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) return Errno("open of the host segment file '" + o.path + "'");
    struct stat own {};
    if (fstat(fd, &own) != 0 || own.st_uid != geteuid() || (own.st_mode & 077) != 0 ||
        !S_ISREG(own.st_mode)) {
      close(fd);
      return Status::InvalidArgument("host segment file '" + o.path +
                                     "' must be a regular file owned by this user, mode 0600");
    }
    // One daemon per segment file: a second one would hand out the same
    // slots. The lock dies with its holder (kill -9 included).
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
      close(fd);
      return Status::Unavailable("host segment file '" + o.path +
                                 "' is locked by another process (another kvtierd?)");
    }
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != size) {
    if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
      Status err = Errno("ftruncate of the host segment to " + std::to_string(size) + " bytes");
      close(fd);
      return err;
    }
  }
  // Clients map this fd: forbid resizing it under them (memfd only).
  if (o.path.empty()) (void)fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
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
  std::unique_ptr<HostShmTier> tier(
      new HostShmTier(fd, static_cast<uint8_t*>(p), size, std::move(alloc).value()));
  if (!o.path.empty()) KVTIER_RETURN_IF_ERROR(tier->OpenMeta(o));
  return tier;
}

Status HostShmTier::OpenMeta(const HostShmOptions& o) {
  const std::string path = o.path + ".meta";
  const uint64_t bytes = kMetaHeader + (size_ >> 12) * 64;
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return Errno("open of the host segment's metadata '" + path + "'");
  struct stat own {};
  if (fstat(fd, &own) != 0 || own.st_uid != geteuid() || (own.st_mode & 077) != 0 ||
      !S_ISREG(own.st_mode)) {
    close(fd);
    return Status::InvalidArgument("host segment metadata '" + path +
                                   "' must be a regular file owned by this user, mode 0600");
  }
  struct stat st {};
  if (fstat(fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != bytes) {
    if (ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
      Status err = Errno("ftruncate of '" + path + "'");
      close(fd);
      return err;
    }
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) return Errno("mmap of '" + path + "'");
  meta_ = static_cast<uint8_t*>(p);
  meta_bytes_ = bytes;
  // Header: magic, version, the geometry the records were written under.
  uint8_t want[48] = {};
  std::memcpy(want, kMetaMagic, 8);
  Put<uint32_t>(want + 8, 1);
  Put<uint64_t>(want + 16, size_);
  Put<uint64_t>(want + 24, alloc_.region_bytes());
  Put<uint64_t>(want + 40, checksum::Sum64(want, 40));
  if (std::memcmp(meta_, want, sizeof want) != 0) {
    // First start, or another geometry: nothing to re-adopt.
    std::memset(meta_ + kMetaHeader, 0, bytes - kMetaHeader);
    std::memcpy(meta_, want, sizeof want);
    return Status::OK();
  }
  std::vector<HostSlotRecord> found;
  for (uint64_t k = 0; k < (size_ >> 12); ++k) {
    const uint8_t* r = meta_ + kMetaHeader + k * 64;
    if (Get<uint32_t>(r) != kRecordMagic) continue;
    if (Get<uint64_t>(r + kRecordSumAt) != checksum::Sum64(r, kRecordSumAt) ||
        Get<uint64_t>(r + 48) != (k << 12)) {
      std::memset(meta_ + kMetaHeader + k * 64, 0, 8);  // torn or stray: forget it
      continue;
    }
    HostSlotRecord h;
    h.ns = Get<uint32_t>(r + 4);
    std::memcpy(h.tag.data(), r + 8, 16);
    h.checksum = Get<uint64_t>(r + 24);
    h.slot = Slot{k << 12, Get<uint64_t>(r + 32), Get<uint32_t>(r + 40)};
    h.priority = r[44];
    found.push_back(h);
  }
  std::vector<Slot> slots;
  for (const auto& h : found) slots.push_back(h.slot);
  std::vector<bool> ok;
  alloc_.Adopt(slots, &ok);
  for (size_t i = 0; i < found.size(); ++i) {
    HostSlotRecord& h = found[i];
    const bool renumbered = h.slot.size_class != slots[i].size_class;
    h.slot.size_class = slots[i].size_class;  // this run's id of the slot's class
    if (ok[i] && checksum::Sum64(base_ + h.slot.offset, h.slot.bytes) == h.checksum) {
      if (renumbered) Record(h);
      reopened_.push_back(h);
      continue;
    }
    if (ok[i]) alloc_.Free(h.slot);  // the payload changed: never served
    std::memset(RecordAt(h.slot.offset), 0, 8);
  }
  return Status::OK();
}

void HostShmTier::Record(const HostSlotRecord& h) {
  if (meta_ == nullptr) return;
  uint8_t r[64] = {};
  Put<uint32_t>(r, kRecordMagic);
  Put<uint32_t>(r + 4, h.ns);
  std::memcpy(r + 8, h.tag.data(), 16);
  Put<uint64_t>(r + 24, h.checksum);
  Put<uint64_t>(r + 32, h.slot.bytes);
  Put<uint32_t>(r + 40, h.slot.size_class);
  r[44] = h.priority;
  Put<uint64_t>(r + 48, h.slot.offset);
  Put<uint64_t>(r + kRecordSumAt, checksum::Sum64(r, kRecordSumAt));
  std::memcpy(RecordAt(h.slot.offset), r, sizeof r);
}

std::vector<HostSlotRecord> HostShmTier::Reopened() { return std::move(reopened_); }

HostShmTier::~HostShmTier() {
  if (meta_ != nullptr) munmap(meta_, meta_bytes_);
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
  if (meta_ != nullptr) std::memset(RecordAt(slot.offset), 0, 8);  // before the slot is reused
  alloc_.Free(slot);
}

}  // namespace kvtier
