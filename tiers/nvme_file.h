// NvmeFile: the one large file (or block device) behind the NVMe tier.
//
// Open() creates the file if needed, preallocates it to the capacity with
// fallocate (so writes never allocate file-system blocks and a full disk
// shows up at open rather than mid-write), and opens it O_DIRECT so that
// cache traffic bypasses the page cache. A block device is used as is (its
// size bounds the capacity).
//
// O_DIRECT fallback: some file systems refuse O_DIRECT (tmpfs on older
// kernels, some FUSE mounts) either at open() or at the first I/O (EINVAL).
// Open() probes with one aligned read; when the file system refuses and the
// options allow it, it reopens without O_DIRECT and says so through
// direct_io() == false and fallback_reason(). Callers keep the 4 KiB
// alignment rules either way.
//
// Ownership: owns the descriptor (closed on destruction). Thread safety:
// immutable after Open(); ReadAt/WriteAt/Sync are plain system calls and may
// be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tiers/status.h"

namespace kvtier {

struct NvmeFileOptions {
  // Regular file (created with mode 0600 if missing) or block device.
  std::string path;
  // Bytes to preallocate for a regular file (rounded down to 4 KiB). For a
  // block device: 0 means the whole device, otherwise at most its size.
  uint64_t capacity_bytes = 0;
  // Reopen without O_DIRECT when the file system refuses it.
  bool allow_buffered_fallback = true;
  // false: buffered I/O from the start (debugging, page-cache experiments).
  bool direct_io = true;
};

class NvmeFile {
 public:
  // Errors: InvalidArgument (no path, zero capacity for a regular file,
  // capacity above a block device's size, not a regular file or block
  // device), ResourceExhausted (fallocate: no space for the capacity),
  // IOError (open/stat/ioctl failed, or O_DIRECT refused without fallback),
  // Unavailable (another process holds the file: one owner per file, by an
  // exclusive flock released when the owner closes it or dies).
  static Result<std::unique_ptr<NvmeFile>> Open(const NvmeFileOptions& options);

  NvmeFile(const NvmeFile&) = delete;
  NvmeFile& operator=(const NvmeFile&) = delete;
  ~NvmeFile();

  int fd() const { return fd_; }
  const std::string& path() const { return path_; }
  uint64_t capacity_bytes() const { return capacity_; }
  bool is_block_device() const { return block_device_; }
  bool direct_io() const { return direct_io_; }
  // Why O_DIRECT is off, or why preallocation was skipped; empty when neither.
  const std::string& fallback_reason() const { return fallback_reason_; }

  // Synchronous aligned I/O for cold paths (superblock). A short transfer
  // is an IOError. REQUIRES: offset, n and buf 4 KiB aligned.
  Status ReadAt(uint64_t offset, void* buf, uint64_t n) const;
  Status WriteAt(uint64_t offset, const void* buf, uint64_t n) const;
  // fdatasync. Errors: IOError.
  Status Sync() const;

 private:
  NvmeFile() = default;

  int fd_ = -1;
  int lock_fd_ = -1;  // holds the exclusive flock (see Open)
  std::string path_;
  uint64_t capacity_ = 0;
  bool block_device_ = false;
  bool direct_io_ = false;
  std::string fallback_reason_;
};

}  // namespace kvtier
