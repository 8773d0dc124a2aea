// IoQueue: an asynchronous block I/O queue, prepare → submit → poll.
//
// The shape follows NIXL and RocksDB's io_uring path: a caller describes
// reads and writes with Prepare() (nothing reaches the kernel yet), posts
// everything prepared with one Submit(), and collects completions with
// Poll() (non-blocking) or Wait() (blocking). Each completion carries the
// caller's opaque user_data and the raw result: bytes transferred, or -errno.
// The queue never retries or splits an operation: a short transfer is
// reported as such and the caller decides what it means (for NvmeStore a
// short read is Corruption, a short write an IOError).
//
// Registered memory. RegisterBuffers() hands the queue a set of memory
// regions (e.g. the host tier's shared segment and a header pool). An
// operation whose [buf, buf+len) lies entirely inside one registered region
// uses the kernel's fixed-buffer path (io_uring READ_FIXED / WRITE_FIXED: no
// page pinning per I/O); any other buffer uses the plain path. Callers never
// choose: the queue looks the buffer up. RegisterFiles() likewise lets a
// request name a file by index instead of by descriptor.
//
// Capacity. At most depth() operations may be outstanding (prepared but not
// yet submitted, plus submitted but not yet reaped). Prepare() returns Retry
// when the queue is full; reap completions and try again. This bound also
// guarantees the completion ring never overflows.
//
// Implementations: NewUringIoQueue (io_uring, tiers/uring_io_queue.h),
// NewSyncIoQueue (pread/pwrite, tiers/sync_io_queue.h), FaultIoQueue (wraps
// any queue to inject errors, tiers/fault_io_queue.h). NewDefaultIoQueue
// picks io_uring and falls back to the synchronous queue.
//
// Ownership: the queue does not own buffers or file descriptors; they must
// stay valid until the operations using them have completed (been reaped),
// and registered regions until they are unregistered or the queue destroyed.
//
// Thread safety: none. One thread at a time drives a queue (Prepare, Submit,
// Poll, Wait, Register*); use one queue per submitting thread. stats() may be
// read concurrently (relaxed atomics).
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

enum class IoOpcode : uint8_t { kRead = 0, kWrite = 1 };

// One read or write of `len` bytes at file `offset` into/from `buf`.
struct IoRequest {
  IoOpcode op = IoOpcode::kRead;
  // When true, `fd` is an index into the files given to RegisterFiles().
  bool registered_file = false;
  int fd = -1;
  void* buf = nullptr;
  uint32_t len = 0;
  uint64_t offset = 0;
  uint64_t user_data = 0;  // returned untouched in the completion
};

struct IoCompletion {
  uint64_t user_data = 0;
  int32_t result = 0;  // bytes transferred (>= 0) or -errno
};

struct IoQueueOptions {
  // Maximum outstanding operations (prepared + in flight). For io_uring this
  // is the submission ring size, rounded up to a power of two by the kernel;
  // the completion ring is twice as large. 1..32768.
  uint32_t queue_depth = 128;
};

// Snapshot of a queue's counters.
struct IoQueueStats {
  uint64_t submitted = 0;          // operations handed to the kernel
  uint64_t completed = 0;          // completions reaped
  uint64_t fixed_buffer_ops = 0;   // of submitted: used a registered buffer
  uint64_t errors = 0;             // completions with result < 0
};

class IoQueue {
 public:
  virtual ~IoQueue() = default;

  // "uring", "sync", "fault(uring)", ...
  virtual std::string_view name() const = 0;
  virtual uint32_t depth() const = 0;
  // Prepared but not submitted, plus submitted but not reaped.
  virtual uint32_t outstanding() const = 0;

  // Replaces the registered memory regions with `regions` (empty: none).
  // Regions larger than 1 GiB are split internally (the kernel's limit per
  // fixed buffer); a buffer straddling such a split takes the plain path.
  // REQUIRES: outstanding() == 0.
  // Errors: InvalidArgument (null/empty region, overlapping regions, I/O
  // outstanding), ResourceExhausted (kernel refused to pin: RLIMIT_MEMLOCK),
  // IOError (other kernel failure). On error no region is registered.
  virtual Status RegisterBuffers(std::span<const iovec> regions) = 0;

  // Replaces the registered files with `fds` (empty: none). A request with
  // registered_file = true names one by its index in `fds`.
  // REQUIRES: outstanding() == 0. Errors: InvalidArgument, IOError.
  virtual Status RegisterFiles(std::span<const int> fds) = 0;

  // Queues one operation; it starts at the next Submit().
  // Errors: Retry (depth() operations outstanding), InvalidArgument (null
  // buffer, zero length, bad registered-file index).
  virtual Status Prepare(const IoRequest& request) = 0;

  // Posts every prepared operation. Returns how many were posted.
  // Errors: Retry (kernel busy, nothing lost: call again), IOError.
  virtual Result<uint32_t> Submit() = 0;

  // Moves up to out.size() completions into `out` without blocking; returns
  // how many.
  virtual size_t Poll(std::span<IoCompletion> out) = 0;

  // Submits anything prepared, then blocks until at least
  // min(min_complete, out.size(), in flight) completions are available and
  // moves up to out.size() of them into `out`; returns how many.
  // Errors: IOError (the kernel failed the wait), Retry (Submit() failed
  // transiently; nothing lost).
  virtual Result<size_t> Wait(std::span<IoCompletion> out, size_t min_complete) = 0;

  virtual IoQueueStats stats() const = 0;
};

// io_uring when the kernel offers it, else the synchronous queue.
// Errors: InvalidArgument (bad options).
Result<std::unique_ptr<IoQueue>> NewDefaultIoQueue(const IoQueueOptions& options);

// ---------------------------------------------------------------------------
// Helpers shared by the implementations.

// Sorted set of registered regions; finds the one containing a buffer.
// Thread safety: none (owned by one queue).
class BufferRegistry {
 public:
  static constexpr uint64_t kMaxFixedBufferBytes = 1ull << 30;  // kernel limit

  // Validates and stores `regions`, split into pieces of at most
  // kMaxFixedBufferBytes. Errors: InvalidArgument (null or empty region,
  // overlap, more than 16384 pieces).
  Status Set(std::span<const iovec> regions);
  void Clear() { pieces_.clear(); }

  // Index of the piece holding [buf, buf+len), or -1.
  int Find(const void* buf, uint64_t len) const;

  // The pieces, in address order, as handed to the kernel.
  const std::vector<iovec>& pieces() const { return pieces_; }

 private:
  std::vector<iovec> pieces_;
};

// Relaxed atomic counters backing IoQueueStats.
struct IoQueueCounters {
  std::atomic<uint64_t> submitted{0};
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> fixed_buffer_ops{0};
  std::atomic<uint64_t> errors{0};

  IoQueueStats Snapshot() const {
    IoQueueStats s;
    s.submitted = submitted.load(std::memory_order_relaxed);
    s.completed = completed.load(std::memory_order_relaxed);
    s.fixed_buffer_ops = fixed_buffer_ops.load(std::memory_order_relaxed);
    s.errors = errors.load(std::memory_order_relaxed);
    return s;
  }
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
};

}  // namespace kvtier
