// UringIoQueue: the IoQueue on Linux io_uring (liburing).
//
// One ring per queue, sized to the queue depth; registered regions become
// io_uring fixed buffers (io_uring_register_buffers) and registered files
// io_uring fixed files. No SQPOLL: Submit() is one io_uring_enter for the
// whole batch; Wait() is io_uring_submit_and_wait.
//
// Ownership and thread safety: see tiers/io_queue.h (one driving thread per
// queue; the ring is not shared).
#pragma once

#include <memory>

#include "tiers/io_queue.h"

namespace kvtier {

// Errors: InvalidArgument (queue_depth 0 or > 32768), Unavailable (the kernel
// has no io_uring or refuses it: ENOSYS, EPERM, io_uring_disabled),
// ResourceExhausted (ENOMEM: ring memory), IOError (other).
Result<std::unique_ptr<IoQueue>> NewUringIoQueue(const IoQueueOptions& options);

}  // namespace kvtier
