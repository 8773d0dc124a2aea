// NvmeIndex: see tiers/nvme_index.h.
#include "tiers/nvme_index.h"

#include <rocksdb/db.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>

#include <cstring>
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
  rocksdb::Options ro;
  ro.create_if_missing = options.create_if_missing;
  ro.paranoid_checks = true;
  // Small values, point lookups and one full scan at startup.
  ro.OptimizeForPointLookup(8);
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(ro, options.path, &raw);
  if (!s.ok()) {
    std::string msg = "open nvme index at " + options.path + ": " + s.ToString();
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::Unavailable(msg + " (in use by another process?)");
    }
    if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
    if (s.IsCorruption()) return Status::Corruption(msg);
    return Status::IOError(msg);
  }
  std::unique_ptr<NvmeIndex> index(new NvmeIndex());
  index->db_.reset(raw);
  index->path_ = options.path;
  index->sync_ = options.sync;
  return index;
}

Status NvmeIndex::Put(const ExtentTag& tag, const NvmeIndexRecord& record) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Put(wo, TagSlice(tag), EncodeIndexRecord(record)), "nvme index put");
}

Status NvmeIndex::Delete(const ExtentTag& tag) {
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Delete(wo, TagSlice(tag)), "nvme index delete");
}

Status NvmeIndex::Apply(std::span<const NvmeIndexUpdate> updates) {
  rocksdb::WriteBatch batch;
  for (const NvmeIndexUpdate& u : updates) {
    rocksdb::Status s = u.record ? batch.Put(TagSlice(u.tag), EncodeIndexRecord(*u.record))
                                 : batch.Delete(TagSlice(u.tag));
    if (!s.ok()) return FromRocks(s, "nvme index batch");
  }
  rocksdb::WriteOptions wo;
  wo.sync = sync_;
  return FromRocks(db_->Write(wo, &batch), "nvme index batch write");
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
  for (const std::string& key : malformed) {
    KVTIER_RETURN_IF_ERROR(FromRocks(db_->Delete(wo, key), "nvme index delete malformed"));
    ++scan.malformed;
  }
  return scan;
}

Status NvmeIndex::Sync() { return FromRocks(db_->FlushWAL(true), "nvme index sync"); }

}  // namespace kvtier
