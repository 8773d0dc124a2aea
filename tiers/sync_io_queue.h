// SyncIoQueue: the IoQueue on plain pread/pwrite, for tests and for kernels
// without io_uring.
//
// Submit() performs every prepared operation synchronously, in order, with one
// pread/pwrite each (retrying only EINTR; a short transfer is reported as
// is), and queues its completion; Poll()/Wait() hand completions back in
// submission order. Registered buffers are only looked up (and counted as
// fixed_buffer_ops, so tests can check which path a buffer would take);
// registered files map indices to descriptors.
//
// Ownership and thread safety: see tiers/io_queue.h.
#pragma once

#include <memory>

#include "tiers/io_queue.h"

namespace kvtier {

// Errors: InvalidArgument (queue_depth 0 or > 32768).
Result<std::unique_ptr<IoQueue>> NewSyncIoQueue(const IoQueueOptions& options);

}  // namespace kvtier
