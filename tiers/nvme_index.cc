// NvmeIndex: see tiers/nvme_index.h.
#include "tiers/nvme_index.h"

#include <rocksdb/db.h>
#include <rocksdb/env.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <vector>

#include "tiers/checksum.h"

namespace kvtier {
namespace {

constexpr uint8_t kRecordVersion = 1;
constexpr size_t kRecordSumAt = 40;

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::OK();
  std::string msg = what + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  return Status::IOError(msg);
}

rocksdb::Slice TagSlice(const ExtentTag& tag) {
  return rocksdb::Slice(reinterpret_cast<const char*>(tag.data()), tag.size());
}

// RocksDB's info LOG, routed to the caller (warnings and worse) instead of
// a file in the database directory: with RocksDB 7.8 a log line written to
// a LOG file that once failed to grow aborts the process, which a full data
// directory made happen on the first failed index write.
class ForwardingLogger final : public rocksdb::Logger {
 public:
  explicit ForwardingLogger(std::function<void(const std::string&)> fn)
      : rocksdb::Logger(rocksdb::InfoLogLevel::WARN_LEVEL), fn_(std::move(fn)) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override {
    if (!fn_) return;
    char buf[512];
    std::vsnprintf(buf, sizeof buf, format, ap);
    fn_(std::string("rocksdb: ") + buf);
  }

 private:
  std::function<void(const std::string&)> fn_;
};

void PutU64(char* p, uint64_t v) { std::memcpy(p, &v, 8); }
uint64_t GetU64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  return v;
}

}  // namespace

std::string EncodeIndexRecord(const NvmeIndexRecord& r) {
  std::string out(kIndexRecordBytes, '\0');
  char* p = out.data();
  p[0] = static_cast<char>(kRecordVersion);
  p[1] = static_cast<char>(r.priority);
  std::memcpy(p + 4, &r.ns, 4);
  PutU64(p + 8, r.offset);
  PutU64(p + 16, r.payload_bytes);
  PutU64(p + 24, r.checksum);
  PutU64(p + 32, r.generation);
  PutU64(p + kRecordSumAt, checksum::Sum64(p, kRecordSumAt));
  return out;
}

Result<NvmeIndexRecord> DecodeIndexRecord(std::string_view bytes) {
  if (bytes.size() != kIndexRecordBytes) {
    return Status::Corruption("index record: length " + std::to_string(bytes.size()) +
                              ", expected 48");
  }
  const char* p = bytes.data();
  if (GetU64(p + kRecordSumAt) != checksum::Sum64(p, kRecordSumAt)) {
    return Status::Corruption("index record: checksum mismatch");
  }
  if (static_cast<uint8_t>(p[0]) != kRecordVersion) {
    return Status::Corruption("index record: unknown version");
  }
  NvmeIndexRecord r;
  r.priority = static_cast<uint8_t>(p[1]);
  std::memcpy(&r.ns, p + 4, 4);
  r.offset = GetU64(p + 8);
  r.payload_bytes = GetU64(p + 16);
  r.checksum = GetU64(p + 24);
  r.generation = GetU64(p + 32);
  return r;
}

NvmeIndex::~NvmeIndex() {
  if (db_) (void)db_->Close();
}

Result<std::unique_ptr<NvmeIndex>> NvmeIndex::Open(const NvmeIndexOptions& options) {
  if (options.path.empty()) return Status::InvalidArgument("nvme index: empty path");
  std::unique_ptr<NvmeIndex> index(new NvmeIndex());
  index->options_ = options;
  index->path_ = options.path;
  index->sync_ = options.sync;
  Status s = index->OpenDb(/*read_only=*/false);
  if (s.code() == StatusCode::kIOError && options.read_only_fallback &&
      index->OpenDb(/*read_only=*/true).ok()) {
    (void)index->Fail(Status::IOError(s.message() + " (opened read-only)"));
    return index;
  }
  if (!s.ok()) return s;
  return index;
}

Status NvmeIndex::OpenDb(bool read_only) {
  if (db_) {
    (void)db_->Close();
    db_.reset();
  }
  rocksdb::Options ro;
  ro.create_if_missing = options_.create_if_missing;
  ro.paranoid_checks = true;
  ro.info_log = std::make_shared<ForwardingLogger>(options_.log);
  ro.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // Small values, point lookups and one full scan at startup.
  ro.OptimizeForPointLookup(8);
  if (!read_only && options_.create_if_missing) {
    // Made here, so that RocksDB does not log an error about a missing
    // directory on every first start.
    std::error_code ec;
    std::filesystem::create_directories(options_.path, ec);
  }
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = read_only ? rocksdb::DB::OpenForReadOnly(ro, options_.path, &raw)
                                : rocksdb::DB::Open(ro, options_.path, &raw);
  if (!s.ok()) {
    std::string msg = std::string(read_only ? "open nvme index read-only at " : "open nvme index at ") +
                      options_.path + ": " + s.ToString();
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::Unavailable(msg + " (in use by another process?)");
    }
    if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
    if (s.IsCorruption()) return Status::Corruption(msg);
    return Status::IOError(msg);
  }
  db_.reset(raw);
  return Status::OK();
}

Status NvmeIndex::Reopen() {
  KVTIER_RETURN_IF_ERROR(OpenDb(/*read_only=*/false));
  {
    std::lock_guard<std::mutex> l(failure_mu_);
    failure_.clear();
  }
  failed_.store(false, std::memory_order_release);
  return Status::OK();
}

Status NvmeIndex::Fail(Status s) {
  {
    std::lock_guard<std::mutex> l(failure_mu_);
    if (!failed_.load(std::memory_order_relaxed)) failure_ = s.ToString();
  }
  failed_.store(true, std::memory_order_release);
  return s;
}

std::string NvmeIndex::failure() const {
  std::lock_guard<std::mutex> l(failure_mu_);
  return failure_;
}

Status NvmeIndex::CheckWritable() const {
  if (!failed()) return Status::OK();
  return Status::IOError("nvme index not writable since an earlier failure: " + failure());
}

Status NvmeIndex::Put(const ExtentTag& tag, const NvmeIndexRecord& record) {
  KVTIER_RETURN_IF_ERROR(CheckWritable());
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status s = FromRocks(db_->Put(wo, TagSlice(tag), EncodeIndexRecord(record)), "nvme index put");
  return s.ok() ? s : Fail(Status::IOError(s.message()));
}

Status NvmeIndex::Delete(const ExtentTag& tag) {
  KVTIER_RETURN_IF_ERROR(CheckWritable());
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status s = FromRocks(db_->Delete(wo, TagSlice(tag)), "nvme index delete");
  return s.ok() ? s : Fail(Status::IOError(s.message()));
}

Status NvmeIndex::Apply(std::span<const NvmeIndexUpdate> updates) {
  KVTIER_RETURN_IF_ERROR(CheckWritable());
  rocksdb::WriteBatch batch;
  for (const NvmeIndexUpdate& u : updates) {
    rocksdb::Status s = u.record ? batch.Put(TagSlice(u.tag), EncodeIndexRecord(*u.record))
                                 : batch.Delete(TagSlice(u.tag));
    if (!s.ok()) return FromRocks(s, "nvme index batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  Status s = FromRocks(db_->Write(wo, &batch), "nvme index batch write");
  return s.ok() ? s : Fail(Status::IOError(s.message()));
}

Result<NvmeIndexRecord> NvmeIndex::Get(const ExtentTag& tag) const {
  std::string value;
  rocksdb::Status s = db_->Get(rocksdb::ReadOptions(), TagSlice(tag), &value);
  if (s.IsNotFound()) return Status::NotFound("nvme index: no record for the tag");
  KVTIER_RETURN_IF_ERROR(FromRocks(s, "nvme index get"));
  return DecodeIndexRecord(value);
}

Result<NvmeIndexScan> NvmeIndex::ForEach(
    const std::function<Status(const ExtentTag&, const NvmeIndexRecord&)>& fn) {
  NvmeIndexScan scan;
  rocksdb::ReadOptions ro;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro));
  std::vector<std::string> malformed;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    rocksdb::Slice key = it->key();
    auto record = DecodeIndexRecord(std::string_view(it->value().data(), it->value().size()));
    if (key.size() != sizeof(ExtentTag) || !record.ok()) {
      malformed.push_back(key.ToString());
      continue;
    }
    ExtentTag tag;
    std::memcpy(tag.data(), key.data(), tag.size());
    ++scan.records;
    Status s = fn(tag, *record);
    if (!s.ok()) return s;
  }
  KVTIER_RETURN_IF_ERROR(FromRocks(it->status(), "nvme index scan"));
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  scan.malformed = malformed.size();
  // Best effort: a failed (read-only) index keeps them until a later scan.
  for (const std::string& key : malformed) {
    if (failed()) break;
    Status s = FromRocks(db_->Delete(wo, key), "nvme index delete malformed");
    if (!s.ok()) (void)Fail(Status::IOError(s.message()));
  }
  return scan;
}

Status NvmeIndex::Sync() {
  KVTIER_RETURN_IF_ERROR(CheckWritable());
  Status s = FromRocks(db_->FlushWAL(true), "nvme index sync");
  return s.ok() ? s : Fail(Status::IOError(s.message()));
}

}  // namespace kvtier
