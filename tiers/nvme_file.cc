// NvmeFile: see tiers/nvme_file.h.
#include "tiers/nvme_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "tiers/aligned_buffer.h"
#include "tiers/nvme_format.h"

namespace kvtier {
namespace {

std::string ErrnoText(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

int OpenFd(const std::string& path, bool direct) {
  int flags = O_RDWR | O_CREAT | O_CLOEXEC | (direct ? O_DIRECT : 0);
  int fd;
  do {
    fd = ::open(path.c_str(), flags, 0600);
  } while (fd < 0 && errno == EINTR);
  return fd;
}

}  // namespace

NvmeFile::~NvmeFile() {
  if (fd_ >= 0) ::close(fd_);
  if (lock_fd_ >= 0) ::close(lock_fd_);  // releases the owner's lock
}

Result<std::unique_ptr<NvmeFile>> NvmeFile::Open(const NvmeFileOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("nvme file: empty path");
  std::unique_ptr<NvmeFile> f(new NvmeFile());
  f->path_ = options.path;

  f->fd_ = OpenFd(options.path, options.direct_io);
  f->direct_io_ = f->fd_ >= 0 && options.direct_io;
  if (f->fd_ >= 0 && !options.direct_io) {
    f->fallback_reason_ = "O_DIRECT disabled by options; using buffered I/O";
  } else if (f->fd_ < 0) {
    int err = errno;
    if (err != EINVAL || !options.allow_buffered_fallback || !options.direct_io) {
      return Status::IOError(
          ErrnoText("open " + options.path + (options.direct_io ? " O_DIRECT" : ""), err));
    }
    f->fd_ = OpenFd(options.path, false);
    if (f->fd_ < 0) return Status::IOError(ErrnoText("open " + options.path, errno));
    f->fallback_reason_ = "file system refused O_DIRECT at open (EINVAL); using buffered I/O";
  }

  // One owner per file or device: a second daemon (another data dir, the
  // same --nvme-path) would reformat or overwrite the first one's extents.
  // The lock is taken on a descriptor of its own, which nothing else
  // references: the data descriptor is registered with io_uring, whose
  // teardown after a kill -9 finishes later in the kernel and would keep a
  // lock on it alive past the owner's death, refusing the restart.
  do {
    f->lock_fd_ = ::open(options.path.c_str(), O_RDONLY | O_CLOEXEC);
  } while (f->lock_fd_ < 0 && errno == EINTR);
  if (f->lock_fd_ < 0) return Status::IOError(ErrnoText("open " + options.path + " to lock it", errno));
  if (::flock(f->lock_fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    if (err == EWOULDBLOCK)
      return Status::Unavailable("nvme file " + options.path +
                                 " is locked by another process (another kvtierd using the same "
                                 "--nvme-path?)");
    return Status::IOError(ErrnoText("flock " + options.path, err));
  }

  struct stat st;
  if (::fstat(f->fd_, &st) != 0) return Status::IOError(ErrnoText("fstat " + options.path, errno));
  if (S_ISBLK(st.st_mode)) {
    uint64_t dev_bytes = 0;
    if (::ioctl(f->fd_, BLKGETSIZE64, &dev_bytes) != 0) {
      return Status::IOError(ErrnoText("ioctl BLKGETSIZE64 " + options.path, errno));
    }
    if (options.capacity_bytes > dev_bytes) {
      return Status::InvalidArgument("nvme file: capacity exceeds the block device's " +
                                     std::to_string(dev_bytes) + " bytes");
    }
    f->block_device_ = true;
    f->capacity_ = (options.capacity_bytes ? options.capacity_bytes : dev_bytes) /
                   kNvmeBlockBytes * kNvmeBlockBytes;
  } else if (S_ISREG(st.st_mode)) {
    f->capacity_ = options.capacity_bytes / kNvmeBlockBytes * kNvmeBlockBytes;
    if (f->capacity_ == 0) return Status::InvalidArgument("nvme file: capacity_bytes is 0");
    int ret;
    do {
      ret = ::fallocate(f->fd_, 0, 0, static_cast<off_t>(f->capacity_));
    } while (ret != 0 && errno == EINTR);
    if (ret != 0) {
      int err = errno;
      if (err == ENOSPC) {
        return Status::ResourceExhausted(ErrnoText("fallocate " + options.path, err));
      }
      if (err != EOPNOTSUPP) return Status::IOError(ErrnoText("fallocate " + options.path, err));
      // No preallocation on this file system: extend sparsely.
      if (static_cast<uint64_t>(st.st_size) < f->capacity_ &&
          ::ftruncate(f->fd_, static_cast<off_t>(f->capacity_)) != 0) {
        return Status::IOError(ErrnoText("ftruncate " + options.path, errno));
      }
      if (!f->fallback_reason_.empty()) f->fallback_reason_ += "; ";
      f->fallback_reason_ += "fallocate unsupported; file is sparse";
    }
  } else {
    return Status::InvalidArgument("nvme file: " + options.path +
                                   " is neither a regular file nor a block device");
  }

  if (f->direct_io_) {
    // Probe: some file systems accept O_DIRECT at open and refuse the I/O.
    auto probe = AlignedBuffer::Allocate(kNvmeBlockBytes);
    if (!probe.ok()) return probe.status();
    ssize_t ret;
    do {
      ret = ::pread(f->fd_, probe->data(), kNvmeBlockBytes, 0);
    } while (ret < 0 && errno == EINTR);
    if (ret < 0) {
      int err = errno;
      if (err != EINVAL || !options.allow_buffered_fallback) {
        return Status::IOError(ErrnoText("O_DIRECT probe read of " + options.path, err));
      }
      ::close(f->fd_);
      f->fd_ = OpenFd(options.path, false);
      if (f->fd_ < 0) return Status::IOError(ErrnoText("open " + options.path, errno));
      f->direct_io_ = false;
      if (!f->fallback_reason_.empty()) f->fallback_reason_ += "; ";
      f->fallback_reason_ += "file system refused O_DIRECT I/O (EINVAL); using buffered I/O";
    }
  }
  return f;
}

Status NvmeFile::ReadAt(uint64_t offset, void* buf, uint64_t n) const {
  auto* p = static_cast<uint8_t*>(buf);
  for (uint64_t done = 0; done < n;) {
    ssize_t ret = ::pread(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (ret < 0 && errno == EINTR) continue;
    if (ret < 0) return Status::IOError(ErrnoText("pread " + path_, errno));
    if (ret == 0) return Status::IOError("pread " + path_ + ": unexpected end of file");
    done += static_cast<uint64_t>(ret);
  }
  return Status::OK();
}

Status NvmeFile::WriteAt(uint64_t offset, const void* buf, uint64_t n) const {
  const auto* p = static_cast<const uint8_t*>(buf);
  for (uint64_t done = 0; done < n;) {
    ssize_t ret = ::pwrite(fd_, p + done, n - done, static_cast<off_t>(offset + done));
    if (ret < 0 && errno == EINTR) continue;
    if (ret < 0) return Status::IOError(ErrnoText("pwrite " + path_, errno));
    done += static_cast<uint64_t>(ret);
  }
  return Status::OK();
}

Status NvmeFile::Sync() const {
  if (::fdatasync(fd_) != 0) return Status::IOError(ErrnoText("fdatasync " + path_, errno));
  return Status::OK();
}

}  // namespace kvtier
