// NvmeStore: the storage layer of the NVMe tier — extents in one large file,
// written and read asynchronously through an IoQueue, each verified on read.
//
// A write puts a caller's payload (a host slot) into a newly allocated extent:
// one 4 KiB header {magic, version, tag, namespace, generation, payload size,
// payload checksum, offset, header checksum} and the payload padded to 4 KiB
// (docs/nvme-format.md). Header and payload are two I/Os posted in the same
// Submit(): the header from an internal pool of preallocated, registered
// 4 KiB buffers, the payload straight from the caller's buffer (a fixed
// buffer when it lies in a registered region). An extent is durable — and its
// NvmeExtent handed back — only when both writes completed in full; a failed
// write's extent is freed at once and never reported. The caller then records
// the NvmeExtent in the NvmeIndex (data before index: see the doc's
// crash-safety argument).
//
// A read fetches header and payload (the payload straight into the caller's
// buffer) and verifies: the header must describe exactly the expected extent
// (tag, generation, namespace, size, checksum, offset) and the payload's
// checksum::Sum64 must match. A failed read reports Corruption or IOError;
// the buffer's contents are then undefined and must not be used.
//
// Errors stop admission: a write that fails with ENOSPC or EIO (or any
// errno) makes the store refuse further writes (Rejected); admission_status()
// says why. Reads, frees and recovery go on. Every admission_probe_ms one
// write is let through as a probe (AcceptsWrites() says when): if it
// succeeds admission resumes by itself, else the wait starts again.
// ResumeAdmission() resumes at once (an operator who freed space).
//
// Alignment (O_DIRECT): buffers passed to PrepareWrite/PrepareRead must start
// on a 4 KiB boundary and have RoundUpToBlock(payload_bytes) bytes (a read
// writes the padding too; a write sends it, whatever it holds). Host slots
// are 4 KiB aligned and sized in 4 KiB steps, so they qualify. The rule holds
// even when the file system forced buffered I/O, so behaviour never depends
// on the file system.
//
// Restart: Open() never trusts the file's contents. The caller iterates the
// NvmeIndex and hands its records to RecoverExtents(), which reads each
// extent's header, checks it against the record and re-marks the extent
// allocated; everything else in the file is free space.
//
// Ownership: the store owns its file, queue and header pool; it does not own
// caller buffers, which must stay valid until their completion is reaped.
// The destructor waits for in-flight I/O.
//
// Thread safety: one driving thread (as IoQueue): Prepare*, Submit, Poll,
// Wait, Free, RecoverExtents, RegisterBuffers, ResumeAdmission. stats(),
// admitting() and admission_status() may be called from any thread.
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/aligned_buffer.h"
#include "tiers/io_queue.h"
#include "tiers/nvme_extent_allocator.h"
#include "tiers/nvme_file.h"
#include "tiers/nvme_format.h"
#include "tiers/status.h"

namespace kvtier {

struct NvmeStoreOptions {
  // File (created if missing) or block device.
  std::string path;
  // Bytes of the file, superblocks included; the file is fallocated to this.
  // For a block device, 0 means the whole device.
  uint64_t capacity_bytes = 0;
  // Region (slab) size. Size classes are carved from regions; an extent
  // larger than the largest class takes a contiguous run of regions. Each
  // region wastes less than one extent of its class, so pick a region at
  // least ~16x the common extent. Multiple of 4 KiB, at least 64 KiB.
  uint64_t region_bytes = 64ull << 20;
  // Payload size classes (bytes, multiples of 4 KiB); an extent of class p
  // occupies p + 4 KiB. Empty: powers of two from 4 KiB plus steps of 1.25x
  // in between, up to the region size. Configure the model's exact block
  // sizes to waste nothing.
  std::vector<uint64_t> payload_classes;
  // Store operations in flight at once; each holds one header buffer and two
  // entries of the I/O queue.
  uint32_t max_ops = 64;
  // Verify the payload checksum of every read (Sum64 on the polling thread).
  bool verify_payload_on_read = true;
  // Open without O_DIRECT when the file system refuses it; see direct_io().
  bool allow_buffered_fallback = true;
  // false: never O_DIRECT (debugging; page-cache experiments).
  bool direct_io = true;
  // io_uring when the kernel has it; false: pread/pwrite (SyncIoQueue).
  bool use_io_uring = true;
  // After admission stopped: milliseconds until one write is let through as
  // a probe of the device (and between failed probes). 0: never (admission
  // then resumes only through ResumeAdmission()).
  uint32_t admission_probe_ms = 5000;
};

// One write: the payload at `buf` becomes a new extent named `tag`.
struct NvmeWriteRequest {
  ExtentTag tag{};
  uint32_t ns = 0;
  const void* buf = nullptr;  // REQUIRES: 4 KiB aligned, RoundUpToBlock(payload_bytes) bytes
  uint64_t payload_bytes = 0;
  // Sum64 of the payload when the caller already has it (the host tier
  // verified it at commit); computed by the store otherwise.
  std::optional<uint64_t> checksum;
  uint64_t user_data = 0;
};

enum class NvmeOpKind : uint8_t { kWrite, kRead };

struct NvmeCompletion {
  uint64_t user_data = 0;
  NvmeOpKind kind = NvmeOpKind::kRead;
  // Write: OK (durable) or IOError (failed; the extent is already freed).
  // Read: OK (verified), IOError (the device failed), Corruption (header
  // mismatch, short read, payload checksum mismatch).
  Status status;
  // Write: the new extent (valid only when status is OK). Read: as passed.
  NvmeExtent extent;
};

struct NvmeStoreStats {
  uint64_t writes_admitted = 0;  // PrepareWrite accepted
  uint64_t writes_refused = 0;   // PrepareWrite refused: not admitting, or no space
  uint64_t writes_completed = 0; // durable
  uint64_t write_errors = 0;
  uint64_t reads_completed = 0;  // verified
  uint64_t read_errors = 0;      // IOError
  uint64_t read_corruptions = 0; // header mismatch or short read
  uint64_t checksum_failures = 0;  // payload checksum mismatch
  uint64_t bytes_written = 0;    // payload bytes of durable writes
  uint64_t bytes_read = 0;       // payload bytes of verified reads
  uint64_t frees = 0;
  uint64_t recovered = 0;        // extents re-marked by RecoverExtents
  uint64_t recovery_dropped = 0; // records RecoverExtents refused
  uint64_t extents = 0;          // allocated now (in flight included)
  uint64_t used_bytes = 0;       // slot bytes allocated now
  uint64_t capacity_bytes = 0;   // data bytes in whole regions
};

class NvmeStore {
 public:
  // Opens (creating/formatting if needed) the store. `queue` is the I/O queue
  // to drive (tests pass a FaultIoQueue); null: io_uring, or pread/pwrite
  // when io_uring is missing or use_io_uring is false. REQUIRES: a given
  // queue has depth() >= 2 * max_ops and nothing outstanding.
  // Errors: InvalidArgument (options; a queue too shallow; a file written by
  // a newer format), ResourceExhausted (no disk space for the capacity),
  // IOError (open, fallocate, superblock I/O).
  static Result<std::unique_ptr<NvmeStore>> Open(const NvmeStoreOptions& options,
                                                 std::unique_ptr<IoQueue> queue = nullptr);

  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;
  ~NvmeStore();

  // Registers `regions` (e.g. the host segment) as fixed buffers, alongside
  // the store's header pool. REQUIRES: no operation in flight.
  // Errors: InvalidArgument, ResourceExhausted (RLIMIT_MEMLOCK), IOError. On
  // error only the header pool stays registered; plain I/O still works.
  Status RegisterBuffers(std::span<const iovec> regions);

  // Allocates an extent and prepares its header and payload writes.
  // Errors: InvalidArgument (payload 0 or above kMaxPayloadBytes, buffer null
  // or not 4 KiB aligned), Rejected (not admitting: see admission_status()),
  // ResourceExhausted (no space of the size), Retry (max_ops operations in
  // flight: reap completions first).
  Status PrepareWrite(const NvmeWriteRequest& request);

  // Prepares a verified read of `extent` into `buf`.
  // Errors: InvalidArgument (buffer null, unaligned or smaller than
  // RoundUpToBlock(extent.payload_bytes); extent outside the data area),
  // Retry (max_ops operations in flight).
  Status PrepareRead(const NvmeExtent& extent, void* buf, uint64_t buf_bytes, uint64_t user_data);

  // Posts everything prepared. Errors: Retry (kernel busy; call again),
  // IOError.
  Result<uint32_t> Submit();

  // Finished operations, without blocking / blocking until at least
  // min(min_complete, out.size(), operations in flight) are available.
  // Wait submits anything prepared first. Errors (Wait): IOError, Retry.
  size_t Poll(std::span<NvmeCompletion> out);
  Result<size_t> Wait(std::span<NvmeCompletion> out, size_t min_complete);

  // Returns `extent`'s space. REQUIRES: no read of it in flight; the caller
  // deleted (or will delete) its index record. Errors: InvalidArgument (not
  // an allocated extent of that size).
  Status Free(const NvmeExtent& extent);

  // Recovery at restart: for each record, reads the header at its offset,
  // checks it matches the record and marks the extent allocated.
  // results[i] (REQUIRES results.size() == records.size()): OK (recovered),
  // Corruption (header missing, stale or different: the record is stale),
  // InvalidArgument (outside the data area or not a slot of its class under
  // the current geometry), Rejected (overlaps an extent recovered earlier),
  // IOError (the header read failed). The payload is not read here: its
  // checksum is verified by every read. REQUIRES: no operation in flight.
  // Returns IOError only if the queue itself failed.
  Status RecoverExtents(std::span<const NvmeExtent> records, std::span<Status> results);

  // Index rebuild (the index was lost or damaged): finds extents by their
  // self-describing headers. Reads the data area from *cursor (start at
  // data_begin()) up to `max_bytes` further, in large sequential reads, and
  // appends to `found` every extent whose header is valid, names its own
  // offset (extent_offset) and fits the data area; the scan then jumps over
  // that extent's payload, so headers inside a valid extent's payload are
  // never taken. Advances *cursor (data_end() when done). Nothing is
  // allocated: hand the extents to RecoverExtents(), which checks them
  // against the current geometry and overlaps. A header names a block, it
  // does not vouch for its payload: every later read verifies that.
  // Synchronous (cold path); driving thread. Errors: IOError (a read
  // failed; *cursor is past the chunk that failed, so a caller may go on).
  Status ScanHeaders(uint64_t* cursor, uint64_t max_bytes, std::vector<NvmeExtent>* found);
  uint64_t data_begin() const { return kDataOffset; }
  uint64_t data_end() const { return kDataOffset + allocator_->capacity_bytes(); }

  // fdatasync of the file: makes completed writes durable against power
  // loss on devices with a volatile write cache. Errors: IOError.
  Status Sync();

  bool admitting() const { return admitting_.load(std::memory_order_acquire); }
  // Whether PrepareWrite() would take a write now: admitting, or stopped for
  // admission_probe_ms with no probe in flight (the write is then the probe).
  // Driving thread only.
  bool AcceptsWrites() const;
  // OK while admitting, else Rejected with the reason (errno, offset).
  Status admission_status() const;
  // Admits writes again (after an operator freed space or replaced the disk).
  void ResumeAdmission();

  // Slot bytes an extent with this payload occupies on disk.
  uint64_t ExtentBytes(uint64_t payload_bytes) const {
    return allocator_->SlotBytes(ExtentBytesNeeded(payload_bytes));
  }
  // Where extents live (region geometry). Driving thread only.
  const NvmeExtentAllocator& allocator() const { return *allocator_; }
  bool direct_io() const { return file_->direct_io(); }
  const std::string& io_fallback_reason() const { return file_->fallback_reason(); }
  std::string_view queue_name() const { return queue_->name(); }
  uint64_t epoch() const { return epoch_; }
  uint32_t ops_in_flight() const { return max_ops_ - static_cast<uint32_t>(free_ops_.size()); }
  NvmeStoreStats stats() const;

 private:
  struct Op {
    NvmeOpKind kind = NvmeOpKind::kRead;
    bool recovery = false;
    uint8_t pending = 0;       // I/O parts not yet completed
    int32_t header_result = 0;
    int32_t payload_result = 0;
    uint64_t user_data = 0;    // caller's, or the record index for recovery
    uint8_t* payload_buf = nullptr;
    NvmeExtent extent;
    Status status;             // set when finished, moved out on delivery
    bool probe = false;        // a write let through while admission is stopped
  };

  NvmeStore() = default;
  Status Init(const NvmeStoreOptions& options, std::unique_ptr<IoQueue> queue);
  Status OpenSuperblock();
  uint8_t* HeaderBuf(uint32_t op) { return header_pool_.data() + op * kExtentHeaderBytes; }
  Status PrepareIo(uint32_t op, uint32_t part, IoOpcode code, void* buf, uint64_t len,
                   uint64_t offset);
  void HandleIo(const IoCompletion& c);
  void FinishWrite(uint32_t op);
  void FinishRead(uint32_t op);
  void FinishRecovery(uint32_t op);
  void StopAdmitting(const std::string& reason);
  size_t DeliverReady(std::span<NvmeCompletion> out);
  // Takes a free op (REQUIRES: one is free), reset for a new operation.
  uint32_t TakeOp(NvmeOpKind kind, bool recovery, uint64_t user_data, uint8_t* payload_buf);
  void ReleaseOp(uint32_t op) { free_ops_.push_back(op); }
  bool InDataArea(uint64_t offset, uint64_t bytes) const;
  // A non-empty payload of at most kMaxPayloadBytes, header and all inside
  // the data area.
  bool ValidExtent(const NvmeExtent& e) const;
  uint64_t NextGeneration();
  void PublishAllocation();

  // Declaration order matters for destruction: the queue (which waits for
  // in-flight I/O) goes before the header pool and the file.
  std::unique_ptr<NvmeFile> file_;
  AlignedBuffer header_pool_;
  std::optional<NvmeExtentAllocator> allocator_;  // set by Init()
  std::unique_ptr<IoQueue> queue_;

  uint32_t max_ops_ = 0;
  bool verify_payload_ = true;
  uint64_t epoch_ = 0;
  uint64_t next_seq_ = 1;
  std::vector<Op> ops_;
  std::vector<uint32_t> free_ops_;
  std::vector<IoCompletion> io_scratch_;
  std::vector<uint32_t> ready_;  // ring of finished, undelivered op indices
  uint32_t ready_head_ = 0;
  uint32_t ready_count_ = 0;
  std::span<Status> recovery_results_;
  size_t recovery_done_ = 0;
  bool fixed_file_ = false;  // the file is registered with the queue as index 0

  std::atomic<bool> admitting_{true};
  uint32_t probe_ms_ = 0;
  int64_t stopped_at_ms_ = 0;    // steady clock, when admission last stopped or a probe failed
  bool probe_in_flight_ = false; // driving thread
  mutable std::mutex reason_mu_;
  std::string stop_reason_;  // guarded by reason_mu_

  struct Counters {
    std::atomic<uint64_t> writes_admitted{0}, writes_refused{0}, writes_completed{0},
        write_errors{0}, reads_completed{0}, read_errors{0}, read_corruptions{0},
        checksum_failures{0}, bytes_written{0}, bytes_read{0}, frees{0}, recovered{0},
        recovery_dropped{0}, extents{0}, used_bytes{0};
  };
  Counters counters_;
};

}  // namespace kvtier
