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
// Ownership: owns the database handle (closed on destruction). Thread
// safety: all methods may be called concurrently (RocksDB's DB is
// thread-safe); ForEach sees a consistent snapshot.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
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
};

// One change of an atomic batch: a put, or a delete when `record` is empty.
struct NvmeIndexUpdate {
  ExtentTag tag{};
  std::optional<NvmeIndexRecord> record;
};

struct NvmeIndexScan {
  uint64_t records = 0;    // handed to the callback
  uint64_t malformed = 0;  // undecodable entries, removed during the scan
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

  // Errors: IOError (RocksDB write failed).
  Status Put(const ExtentTag& tag, const NvmeIndexRecord& record);
  // Deleting a missing tag is OK. Errors: IOError.
  Status Delete(const ExtentTag& tag);
  // All updates or none. Errors: IOError.
  Status Apply(std::span<const NvmeIndexUpdate> updates);

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

  std::unique_ptr<rocksdb::DB> db_;
  std::string path_;
  bool sync_ = false;
};

}  // namespace kvtier
