// NvmeIndex: the NVMe tier's durable index, a RocksDB database mapping a
// block's 16-byte tag to where its extent lives and what it must contain.
//
// The cache puts a record only after the extent's write completed (data
// before index), deletes it when it frees the extent, and at restart iterates
// every record into NvmeStore::RecoverExtents(), which trusts nothing it
// cannot verify against the extent's own header. Record encoding (48 bytes,
// little-endian, with its own checksum) is in docs/nvme-format.md.
//
// Durability: the write-ahead log is always on. With `sync` off (default) a
// write survives a process crash, not necessarily a power loss; a record lost
// that way only loses a cache entry (its extent is free space at restart), so
// a cache rarely needs `sync`. Sync() forces the log to disk on demand.
//
// Write failures (a full file system, EIO): the first write RocksDB refuses
// marks the index *failed*, and every later write is refused here, without
// reaching RocksDB, until Reopen() succeeds. A RocksDB instance whose write
// failed is never written again: its log writer is in an error state (with
// RocksDB 7.8 a later write or log line on it aborts the process). RocksDB's
// own info LOG goes to `log` instead of a file in the database directory,
// so a full disk cannot fail it either.
//
// Ownership: owns the database handle (closed on destruction). Thread
// safety: Put, Delete, Apply, Get, ForEach, Sync, failed() and
// failure() may be called concurrently (RocksDB's DB is thread-safe);
// ForEach sees a consistent snapshot. Reopen() REQUIRES that no other call
// is in progress.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "tiers/nvme_format.h"
#include "tiers/status.h"

namespace rocksdb {
class DB;
}

namespace kvtier {

struct NvmeIndexRecord {
  uint32_t ns = 0;
  uint8_t priority = 0;  // 0..100, travels with the block
  uint64_t offset = 0;
  uint64_t payload_bytes = 0;
  uint64_t checksum = 0;
  uint64_t generation = 0;

  bool operator==(const NvmeIndexRecord&) const = default;
};

inline constexpr size_t kIndexRecordBytes = 48;

inline NvmeExtent ToExtent(const ExtentTag& tag, const NvmeIndexRecord& r) {
  return NvmeExtent{r.offset, r.payload_bytes, r.checksum, r.generation, tag, r.ns};
}
inline NvmeIndexRecord ToRecord(const NvmeExtent& e, uint8_t priority) {
  return NvmeIndexRecord{e.ns, priority, e.offset, e.payload_bytes, e.checksum, e.generation};
}

// The record's kIndexRecordBytes bytes.
std::string EncodeIndexRecord(const NvmeIndexRecord& r);
// Errors: Corruption (wrong length, version or record checksum).
Result<NvmeIndexRecord> DecodeIndexRecord(std::string_view bytes);

struct NvmeIndexOptions {
  // Directory of the database (created if missing and create_if_missing).
  std::string path;
  // fsync the write-ahead log on every write.
  bool sync = false;
  bool create_if_missing = true;
  // When the read-write open fails with an I/O error (a full file system
  // cannot take the new log and manifest), open the database read-only
  // instead: the index comes up failed (see failed()), reads work, writes
  // are refused until Reopen() succeeds.
  bool read_only_fallback = false;
  // RocksDB's warnings and errors (its info LOG); null: discarded.
  std::function<void(const std::string&)> log = nullptr;
};

// One change of an atomic batch: a put, or a delete when `record` is empty.
struct NvmeIndexUpdate {
  ExtentTag tag{};
  std::optional<NvmeIndexRecord> record;
};

struct NvmeIndexScan {
  uint64_t records = 0;    // handed to the callback
  uint64_t malformed = 0;  // undecodable entries, removed during the scan (kept while failed())
};

class NvmeIndex {
 public:
  // Errors: InvalidArgument (empty path; missing database without
  // create_if_missing; options RocksDB rejects), Unavailable (the database
  // is locked by another process), Corruption (RocksDB found its files
  // corrupt), IOError (anything else). Messages carry RocksDB's text.
  static Result<std::unique_ptr<NvmeIndex>> Open(const NvmeIndexOptions& options);

  NvmeIndex(const NvmeIndex&) = delete;
  NvmeIndex& operator=(const NvmeIndex&) = delete;
  ~NvmeIndex();

  // Errors: IOError (RocksDB write failed now, or the index failed earlier:
  // see failed()).
  Status Put(const ExtentTag& tag, const NvmeIndexRecord& record);
  // Deleting a missing tag is OK. Errors: IOError.
  Status Delete(const ExtentTag& tag);
  // All updates or none. Errors: IOError.
  Status Apply(std::span<const NvmeIndexUpdate> updates);

  // True after a write failed (or after a read-only fallback open) until a
  // Reopen() succeeds; failure() then says why.
  bool failed() const { return failed_.load(std::memory_order_acquire); }
  std::string failure() const;
  // Closes the database and opens it read-write again (RocksDB replays its
  // log, so every write that succeeded before is kept). On success the
  // index is healthy again. Errors: those of Open(); on error the index
  // stays failed (and read-only where a read-only open still works).
  // REQUIRES: no other call in progress.
  Status Reopen();

  // Errors: NotFound, Corruption (the stored value does not decode), IOError.
  Result<NvmeIndexRecord> Get(const ExtentTag& tag) const;

  // Calls `fn` for every well-formed record in tag order; stops at the first
  // non-OK status `fn` returns and returns it. Undecodable entries are
  // deleted and counted. Errors: what `fn` returned, IOError, Corruption
  // (RocksDB's iterator failed).
  Result<NvmeIndexScan> ForEach(
      const std::function<Status(const ExtentTag&, const NvmeIndexRecord&)>& fn);

  // Forces the write-ahead log to disk. Errors: IOError.
  Status Sync();

  const std::string& path() const { return path_; }

 private:
  NvmeIndex() = default;
  // Opens options_.path (read-only when `read_only`) into db_.
  Status OpenDb(bool read_only);
  // Marks the index failed with `s` (a write error) and returns it.
  Status Fail(Status s);
  Status CheckWritable() const;

  NvmeIndexOptions options_;
  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  bool sync_ = false;
  std::atomic<bool> failed_{false};
  mutable std::mutex failure_mu_;
  std::string failure_;  // guarded by failure_mu_
};

}  // namespace kvtier
