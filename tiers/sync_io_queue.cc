// SyncIoQueue: IoQueue on pread/pwrite. See tiers/sync_io_queue.h.
#include "tiers/sync_io_queue.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <vector>

namespace kvtier {
namespace {

class SyncIoQueue final : public IoQueue {
 public:
  explicit SyncIoQueue(uint32_t depth) : depth_(depth) {
    prepared_.reserve(depth);
    done_.resize(depth);
  }

  std::string_view name() const override { return "sync"; }
  uint32_t depth() const override { return depth_; }
  uint32_t outstanding() const override {
    return static_cast<uint32_t>(prepared_.size()) + done_count_;
  }

  Status RegisterBuffers(std::span<const iovec> regions) override {
    if (outstanding() != 0) return Status::InvalidArgument("RegisterBuffers: I/O outstanding");
    buffers_.Clear();
    if (regions.empty()) return Status::OK();
    return buffers_.Set(regions);
  }

  Status RegisterFiles(std::span<const int> fds) override {
    if (outstanding() != 0) return Status::InvalidArgument("RegisterFiles: I/O outstanding");
    for (int fd : fds) {
      if (fd < 0) return Status::InvalidArgument("RegisterFiles: negative descriptor");
    }
    files_.assign(fds.begin(), fds.end());
    return Status::OK();
  }

  Status Prepare(const IoRequest& r) override {
    if (outstanding() >= depth_) return Status::Retry("io queue full");
    if (r.buf == nullptr || r.len == 0) {
      return Status::InvalidArgument("Prepare: null buffer or zero length");
    }
    if (r.registered_file ? (r.fd < 0 || r.fd >= static_cast<int>(files_.size())) : r.fd < 0) {
      return Status::InvalidArgument("Prepare: bad file descriptor or registered-file index");
    }
    if (buffers_.Find(r.buf, r.len) >= 0) IoQueueCounters::Add(counters_.fixed_buffer_ops, 1);
    prepared_.push_back(r);
    return Status::OK();
  }

  Result<uint32_t> Submit() override {
    auto n = static_cast<uint32_t>(prepared_.size());
    for (const IoRequest& r : prepared_) {
      int fd = r.registered_file ? files_[r.fd] : r.fd;
      ssize_t ret;
      do {
        ret = r.op == IoOpcode::kRead
                  ? ::pread(fd, r.buf, r.len, static_cast<off_t>(r.offset))
                  : ::pwrite(fd, r.buf, r.len, static_cast<off_t>(r.offset));
      } while (ret < 0 && errno == EINTR);
      int32_t result = ret < 0 ? -errno : static_cast<int32_t>(ret);
      done_[(done_head_ + done_count_) % depth_] = IoCompletion{r.user_data, result};
      ++done_count_;
    }
    prepared_.clear();
    IoQueueCounters::Add(counters_.submitted, n);
    return n;
  }

  size_t Poll(std::span<IoCompletion> out) override {
    size_t n = std::min<size_t>(out.size(), done_count_);
    uint64_t errors = 0;
    for (size_t i = 0; i < n; ++i) {
      out[i] = done_[done_head_];
      if (out[i].result < 0) ++errors;
      done_head_ = (done_head_ + 1) % depth_;
    }
    done_count_ -= static_cast<uint32_t>(n);
    IoQueueCounters::Add(counters_.completed, n);
    if (errors) IoQueueCounters::Add(counters_.errors, errors);
    return n;
  }

  Result<size_t> Wait(std::span<IoCompletion> out, size_t /*min_complete*/) override {
    // Everything submitted has already completed: Poll() returns it all.
    auto s = Submit();
    if (!s.ok()) return s.status();
    return Poll(out);
  }

  IoQueueStats stats() const override { return counters_.Snapshot(); }

 private:
  const uint32_t depth_;
  std::vector<IoRequest> prepared_;
  std::vector<IoCompletion> done_;  // ring of completed, not yet reaped
  uint32_t done_head_ = 0;
  uint32_t done_count_ = 0;
  std::vector<int> files_;
  BufferRegistry buffers_;
  IoQueueCounters counters_;
};

}  // namespace

Result<std::unique_ptr<IoQueue>> NewSyncIoQueue(const IoQueueOptions& options) {
  if (options.queue_depth == 0 || options.queue_depth > 32768) {
    return Status::InvalidArgument("sync io queue: queue_depth must be in 1..32768");
  }
  return std::unique_ptr<IoQueue>(std::make_unique<SyncIoQueue>(options.queue_depth));
}

}  // namespace kvtier
