// UringIoQueue: IoQueue on liburing. See tiers/uring_io_queue.h.
#include "tiers/uring_io_queue.h"

#include <liburing.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

namespace kvtier {
namespace {

constexpr uint32_t kMaxDepth = 32768;

std::string ErrnoText(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

class UringIoQueue final : public IoQueue {
 public:
  UringIoQueue() = default;
  UringIoQueue(const UringIoQueue&) = delete;
  UringIoQueue& operator=(const UringIoQueue&) = delete;

  ~UringIoQueue() override {
    if (!initialized_) return;
    // The kernel may still be writing into caller buffers: wait for every
    // submitted operation before tearing the ring down.
    while (in_flight_ > 0) {
      io_uring_cqe* cqe = nullptr;
      int ret = io_uring_wait_cqe(&ring_, &cqe);
      if (ret == -EINTR) continue;
      if (ret < 0) break;
      io_uring_cqe_seen(&ring_, cqe);
      --in_flight_;
    }
    io_uring_queue_exit(&ring_);
  }

  Status Init(const IoQueueOptions& options) {
    if (options.queue_depth == 0 || options.queue_depth > kMaxDepth) {
      return Status::InvalidArgument("io_uring: queue_depth must be in 1..32768");
    }
    depth_ = options.queue_depth;
    int ret = io_uring_queue_init(depth_, &ring_, 0);
    if (ret < 0) {
      int err = -ret;
      if (err == ENOSYS || err == EPERM || err == EACCES || err == EOPNOTSUPP) {
        return Status::Unavailable(ErrnoText("io_uring_queue_init", err));
      }
      if (err == ENOMEM) return Status::ResourceExhausted(ErrnoText("io_uring_queue_init", err));
      return Status::IOError(ErrnoText("io_uring_queue_init", err));
    }
    initialized_ = true;
    cqes_.resize(2 * static_cast<size_t>(depth_));
    return Status::OK();
  }

  std::string_view name() const override { return "uring"; }
  uint32_t depth() const override { return depth_; }
  uint32_t outstanding() const override { return prepared_ + in_flight_; }

  Status RegisterBuffers(std::span<const iovec> regions) override {
    if (outstanding() != 0) {
      return Status::InvalidArgument("RegisterBuffers: I/O outstanding");
    }
    if (!buffers_.pieces().empty()) {
      io_uring_unregister_buffers(&ring_);
      buffers_.Clear();
    }
    if (regions.empty()) return Status::OK();
    KVTIER_RETURN_IF_ERROR(buffers_.Set(regions));
    const auto& pieces = buffers_.pieces();
    int ret = io_uring_register_buffers(&ring_, pieces.data(), static_cast<unsigned>(pieces.size()));
    if (ret < 0) {
      buffers_.Clear();
      if (-ret == ENOMEM) {
        return Status::ResourceExhausted(
            ErrnoText("io_uring_register_buffers (RLIMIT_MEMLOCK too low?)", -ret));
      }
      return Status::IOError(ErrnoText("io_uring_register_buffers", -ret));
    }
    return Status::OK();
  }

  Status RegisterFiles(std::span<const int> fds) override {
    if (outstanding() != 0) return Status::InvalidArgument("RegisterFiles: I/O outstanding");
    if (num_files_ > 0) {
      io_uring_unregister_files(&ring_);
      num_files_ = 0;
    }
    if (fds.empty()) return Status::OK();
    for (int fd : fds) {
      if (fd < 0) return Status::InvalidArgument("RegisterFiles: negative descriptor");
    }
    int ret = io_uring_register_files(&ring_, fds.data(), static_cast<unsigned>(fds.size()));
    if (ret < 0) return Status::IOError(ErrnoText("io_uring_register_files", -ret));
    num_files_ = static_cast<int>(fds.size());
    return Status::OK();
  }

  Status Prepare(const IoRequest& r) override {
    if (prepared_ + in_flight_ >= depth_) return Status::Retry("io queue full");
    if (r.buf == nullptr || r.len == 0) {
      return Status::InvalidArgument("Prepare: null buffer or zero length");
    }
    if (r.registered_file ? (r.fd < 0 || r.fd >= num_files_) : r.fd < 0) {
      return Status::InvalidArgument("Prepare: bad file descriptor or registered-file index");
    }
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return Status::Retry("io_uring submission ring full");
    int idx = buffers_.Find(r.buf, r.len);
    if (r.op == IoOpcode::kRead) {
      if (idx >= 0) {
        io_uring_prep_read_fixed(sqe, r.fd, r.buf, r.len, r.offset, idx);
      } else {
        io_uring_prep_read(sqe, r.fd, r.buf, r.len, r.offset);
      }
    } else {
      if (idx >= 0) {
        io_uring_prep_write_fixed(sqe, r.fd, r.buf, r.len, r.offset, idx);
      } else {
        io_uring_prep_write(sqe, r.fd, r.buf, r.len, r.offset);
      }
    }
    if (r.registered_file) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, r.user_data);
    if (idx >= 0) IoQueueCounters::Add(counters_.fixed_buffer_ops, 1);
    ++prepared_;
    return Status::OK();
  }

  Result<uint32_t> Submit() override {
    if (prepared_ == 0) return 0u;
    int ret;
    do {
      ret = io_uring_submit(&ring_);
    } while (ret == -EINTR);
    if (ret == -EAGAIN || ret == -EBUSY) return Status::Retry(ErrnoText("io_uring_submit", -ret));
    if (ret < 0) return Status::IOError(ErrnoText("io_uring_submit", -ret));
    auto n = static_cast<uint32_t>(std::min<int>(ret, static_cast<int>(prepared_)));
    prepared_ -= n;
    in_flight_ += n;
    IoQueueCounters::Add(counters_.submitted, n);
    return n;
  }

  size_t Poll(std::span<IoCompletion> out) override {
    size_t total = 0;
    while (total < out.size() && in_flight_ > 0) {
      auto want = static_cast<unsigned>(std::min(out.size() - total, cqes_.size()));
      unsigned got = io_uring_peek_batch_cqe(&ring_, cqes_.data(), want);
      if (got == 0) break;
      uint64_t errors = 0;
      for (unsigned i = 0; i < got; ++i) {
        out[total + i] = IoCompletion{io_uring_cqe_get_data64(cqes_[i]), cqes_[i]->res};
        if (cqes_[i]->res < 0) ++errors;
      }
      io_uring_cq_advance(&ring_, got);
      in_flight_ -= got;
      total += got;
      IoQueueCounters::Add(counters_.completed, got);
      if (errors) IoQueueCounters::Add(counters_.errors, errors);
    }
    return total;
  }

  Result<size_t> Wait(std::span<IoCompletion> out, size_t min_complete) override {
    if (prepared_ > 0) {
      auto s = Submit();
      if (!s.ok()) return s.status();
    }
    size_t want = std::min<size_t>({min_complete, out.size(), in_flight_});
    size_t got = Poll(out);
    while (got < want) {
      io_uring_cqe* cqe = nullptr;
      int ret = io_uring_wait_cqe_nr(&ring_, &cqe, static_cast<unsigned>(want - got));
      if (ret == -EINTR || ret == -EAGAIN || ret == -ETIME) continue;
      if (ret < 0) return Status::IOError(ErrnoText("io_uring_wait_cqe_nr", -ret));
      got += Poll(out.subspan(got));
    }
    return got;
  }

  IoQueueStats stats() const override { return counters_.Snapshot(); }

 private:
  io_uring ring_{};
  bool initialized_ = false;
  uint32_t depth_ = 0;
  uint32_t prepared_ = 0;   // SQEs filled, not yet submitted
  uint32_t in_flight_ = 0;  // submitted, completion not yet reaped
  int num_files_ = 0;
  BufferRegistry buffers_;
  IoQueueCounters counters_;
  std::vector<io_uring_cqe*> cqes_;  // scratch for peek_batch
};

}  // namespace

Result<std::unique_ptr<IoQueue>> NewUringIoQueue(const IoQueueOptions& options) {
  auto q = std::make_unique<UringIoQueue>();
  KVTIER_RETURN_IF_ERROR(q->Init(options));
  return std::unique_ptr<IoQueue>(std::move(q));
}

}  // namespace kvtier
