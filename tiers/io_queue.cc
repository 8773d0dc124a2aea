// IoQueue helpers and the default queue factory.
#include "tiers/io_queue.h"

#include <algorithm>
#include <utility>

#include "tiers/sync_io_queue.h"
#include "tiers/uring_io_queue.h"

namespace kvtier {

namespace {
constexpr size_t kMaxPieces = 16384;  // IORING_MAX_REG_BUFFERS
}  // namespace

Status BufferRegistry::Set(std::span<const iovec> regions) {
  std::vector<iovec> sorted(regions.begin(), regions.end());
  for (const iovec& r : sorted) {
    if (r.iov_base == nullptr || r.iov_len == 0) {
      return Status::InvalidArgument("RegisterBuffers: null or empty region");
    }
  }
  std::sort(sorted.begin(), sorted.end(), [](const iovec& a, const iovec& b) {
    return reinterpret_cast<uintptr_t>(a.iov_base) < reinterpret_cast<uintptr_t>(b.iov_base);
  });
  std::vector<iovec> pieces;
  uintptr_t prev_end = 0;
  for (const iovec& r : sorted) {
    auto base = reinterpret_cast<uintptr_t>(r.iov_base);
    if (base < prev_end) return Status::InvalidArgument("RegisterBuffers: regions overlap");
    prev_end = base + r.iov_len;
    for (uint64_t done = 0; done < r.iov_len;) {
      uint64_t n = std::min<uint64_t>(r.iov_len - done, kMaxFixedBufferBytes);
      pieces.push_back(iovec{reinterpret_cast<void*>(base + done), static_cast<size_t>(n)});
      done += n;
    }
  }
  if (pieces.size() > kMaxPieces) {
    return Status::InvalidArgument("RegisterBuffers: more than 16384 pieces of 1 GiB");
  }
  pieces_ = std::move(pieces);
  return Status::OK();
}

int BufferRegistry::Find(const void* buf, uint64_t len) const {
  if (pieces_.empty()) return -1;
  auto p = reinterpret_cast<uintptr_t>(buf);
  // Last piece whose base <= p.
  auto it = std::upper_bound(pieces_.begin(), pieces_.end(), p, [](uintptr_t v, const iovec& r) {
    return v < reinterpret_cast<uintptr_t>(r.iov_base);
  });
  if (it == pieces_.begin()) return -1;
  --it;
  auto base = reinterpret_cast<uintptr_t>(it->iov_base);
  if (p + len > base + it->iov_len) return -1;
  return static_cast<int>(it - pieces_.begin());
}

Result<std::unique_ptr<IoQueue>> NewDefaultIoQueue(const IoQueueOptions& options) {
  auto uring = NewUringIoQueue(options);
  if (uring.ok()) return std::move(uring).value();
  if (uring.status().IsInvalidArgument()) return uring.status();
  return NewSyncIoQueue(options);
}

}  // namespace kvtier
