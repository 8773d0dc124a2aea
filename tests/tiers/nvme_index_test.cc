// Tests tiers/nvme_index.* on a real RocksDB database.
#include "tiers/nvme_index.h"

#include <rocksdb/db.h>

#include <cstring>
#include <fstream>
#include <vector>

#include <gtest/gtest.h>

#include "tests/small_fs.h"
#include "tests/tiers/nvme_test_util.h"

namespace kvtier {
namespace {

using testing::ScratchDir;

ExtentTag Tag(uint64_t n) {
  ExtentTag t{};
  // Big-endian in the first bytes so tag order is numeric order.
  for (int i = 0; i < 8; ++i) t[i] = static_cast<uint8_t>(n >> (56 - 8 * i));
  t[15] = 1;
  return t;
}

NvmeIndexRecord Record(uint64_t n) {
  return NvmeIndexRecord{static_cast<uint32_t>(n % 5), static_cast<uint8_t>(n % 101),
                         (1 << 20) + n * 8192, 5000 + n, 0xABCD0000 + n, (2ull << 40) | n};
}

TEST(NvmeIndexRecord, EncodingRoundTripAndChecks) {
  NvmeIndexRecord r = Record(7);
  std::string b = EncodeIndexRecord(r);
  ASSERT_EQ(b.size(), kIndexRecordBytes);
  EXPECT_EQ(static_cast<uint8_t>(b[0]), 1);  // version
  EXPECT_EQ(static_cast<uint8_t>(b[1]), r.priority);
  uint64_t offset;
  std::memcpy(&offset, b.data() + 8, 8);
  EXPECT_EQ(offset, r.offset);
  auto d = DecodeIndexRecord(b);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d, r);
  for (size_t i = 0; i < b.size(); ++i) {
    std::string c = b;
    c[i] = static_cast<char>(c[i] ^ 0x01);
    EXPECT_TRUE(DecodeIndexRecord(c).status().IsCorruption()) << i;
  }
  EXPECT_TRUE(DecodeIndexRecord(b.substr(0, 40)).status().IsCorruption());
  NvmeExtent e = ToExtent(Tag(3), r);
  EXPECT_EQ(e.offset, r.offset);
  EXPECT_EQ(e.tag, Tag(3));
  EXPECT_EQ(ToRecord(e, r.priority), r);
}

TEST(NvmeIndex, PutGetDeleteBatchAndPersistAcrossReopen) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  NvmeIndexOptions o{dir.File("index")};
  {
    auto index = NvmeIndex::Open(o);
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    for (uint64_t i = 0; i < 100; ++i) ASSERT_TRUE((*index)->Put(Tag(i), Record(i)).ok());
    auto got = (*index)->Get(Tag(42));
    ASSERT_TRUE(got.ok());
    EXPECT_EQ(*got, Record(42));
    EXPECT_TRUE((*index)->Get(Tag(1000)).status().IsNotFound());
    ASSERT_TRUE((*index)->Delete(Tag(42)).ok());
    ASSERT_TRUE((*index)->Delete(Tag(1000)).ok());  // missing: fine
    EXPECT_TRUE((*index)->Get(Tag(42)).status().IsNotFound());
    std::vector<NvmeIndexUpdate> batch = {{Tag(200), Record(200)}, {Tag(0), std::nullopt},
                                          {Tag(1), Record(999)}};
    ASSERT_TRUE((*index)->Apply(batch).ok());
    ASSERT_TRUE((*index)->Sync().ok());
  }
  o.sync = true;
  auto index = NvmeIndex::Open(o);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  std::vector<uint64_t> seen;
  auto scan = (*index)->ForEach([&](const ExtentTag& tag, const NvmeIndexRecord& r) {
    uint64_t n = 0;
    for (int i = 0; i < 8; ++i) n = (n << 8) | tag[i];
    seen.push_back(n);
    EXPECT_EQ(r, n == 1 ? Record(999) : Record(n));
    return Status::OK();
  });
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(scan->records, 99u);  // 100 - 42 - 0 + 200
  EXPECT_EQ(scan->malformed, 0u);
  ASSERT_EQ(seen.size(), 99u);
  EXPECT_EQ(seen.front(), 1u);
  EXPECT_EQ(seen.back(), 200u);
  for (size_t i = 1; i < seen.size(); ++i) EXPECT_LT(seen[i - 1], seen[i]);  // tag order
  ASSERT_TRUE((*index)->Put(Tag(300), Record(300)).ok());  // sync writes work

  // A callback error stops the scan and comes back.
  int calls = 0;
  auto stopped = (*index)->ForEach([&](const ExtentTag&, const NvmeIndexRecord&) {
    return ++calls == 3 ? Status::Internal("stop") : Status::OK();
  });
  EXPECT_EQ(stopped.status().code(), StatusCode::kInternal);
  EXPECT_EQ(calls, 3);
}

TEST(NvmeIndex, MalformedEntriesAreCountedAndRemoved) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  const std::string path = dir.File("index");
  {
    auto index = NvmeIndex::Open(NvmeIndexOptions{path});
    ASSERT_TRUE(index.ok());
    ASSERT_TRUE((*index)->Put(Tag(1), Record(1)).ok());
    ASSERT_TRUE((*index)->Put(Tag(2), Record(2)).ok());
  }
  {
    // Damage behind the index's back: a short key, a garbled value.
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(rocksdb::Options(), path, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "short", EncodeIndexRecord(Record(3))).ok());
    ExtentTag t2 = Tag(2);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(),
                        rocksdb::Slice(reinterpret_cast<const char*>(t2.data()), 16), "garbage")
                    .ok());
    ASSERT_TRUE(db->Close().ok());
  }
  auto index = NvmeIndex::Open(NvmeIndexOptions{path});
  ASSERT_TRUE(index.ok());
  EXPECT_TRUE((*index)->Get(Tag(2)).status().IsCorruption());
  uint64_t calls = 0;
  auto scan = (*index)->ForEach([&](const ExtentTag&, const NvmeIndexRecord&) {
    ++calls;
    return Status::OK();
  });
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->records, 1u);
  EXPECT_EQ(scan->malformed, 2u);
  EXPECT_EQ(calls, 1u);
  scan = (*index)->ForEach([](const ExtentTag&, const NvmeIndexRecord&) { return Status::OK(); });
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->malformed, 0u);  // removed by the first scan
  EXPECT_TRUE((*index)->Get(Tag(2)).status().IsNotFound());
}

TEST(NvmeIndex, OpenFailuresAreClear) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  auto empty = NvmeIndex::Open(NvmeIndexOptions{""});
  EXPECT_TRUE(empty.status().IsInvalidArgument());

  NvmeIndexOptions missing{dir.File("missing")};
  missing.create_if_missing = false;
  auto m = NvmeIndex::Open(missing);
  EXPECT_TRUE(m.status().IsInvalidArgument()) << m.status().ToString();
  EXPECT_NE(m.status().message().find("missing"), std::string::npos);

  // The path is a regular file, not a directory.
  std::ofstream(dir.File("file")) << "x";
  auto f = NvmeIndex::Open(NvmeIndexOptions{dir.File("file")});
  EXPECT_FALSE(f.ok());
  EXPECT_EQ(f.status().code(), StatusCode::kIOError) << f.status().ToString();

  // Locked by another open handle.
  auto first = NvmeIndex::Open(NvmeIndexOptions{dir.File("db")});
  ASSERT_TRUE(first.ok());
  auto second = NvmeIndex::Open(NvmeIndexOptions{dir.File("db")});
  EXPECT_EQ(second.status().code(), StatusCode::kUnavailable) << second.status().ToString();
}

// A full file system (a real, small tmpfs): the first failed write marks the
// index failed and no later write reaches RocksDB (RocksDB 7.8 aborted the
// process on the next write or log line); an open on the full disk comes up
// read-only with every record; once space is back Reopen() keeps every
// record written before the failure and takes writes again.
TEST(NvmeIndex, FullFileSystemFailsWritesWithoutAbortAndReopenResumes) {
  testing::SmallTmpfs fs(4 << 20);
  if (!fs.ok()) GTEST_SKIP() << fs.why();
  NvmeIndexOptions o{fs.path() + "/index"};
  o.read_only_fallback = true;
  std::vector<std::string> logged;
  o.log = [&](const std::string& m) { logged.push_back(m); };
  auto index = NvmeIndex::Open(o);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  uint64_t written = 0;
  for (; written < 1000; ++written) ASSERT_TRUE((*index)->Put(Tag(written), Record(written)).ok());
  ASSERT_GT(fs.Fill(), 0u);
  Status failed;
  for (uint64_t i = written; i < 1'000'000 && failed.ok(); ++i) {
    failed = (*index)->Put(Tag(i), Record(i));
    if (failed.ok()) ++written;
  }
  ASSERT_EQ(failed.code(), StatusCode::kIOError) << failed.ToString();
  EXPECT_TRUE((*index)->failed());
  EXPECT_NE((*index)->failure().find("No space left"), std::string::npos) << (*index)->failure();
  // Refused here, without RocksDB: no abort, the same answer every time.
  for (int i = 0; i < 100; ++i) {
    EXPECT_EQ((*index)->Put(Tag(5'000'000 + i), Record(1)).code(), StatusCode::kIOError);
    EXPECT_EQ((*index)->Delete(Tag(i)).code(), StatusCode::kIOError);
  }
  EXPECT_FALSE(logged.empty()) << "RocksDB's errors go to the log callback";
  index->reset();
  fs.Fill("filler2");  // what the closed log gave back

  // Open on the full disk: read-only, failed, every record readable.
  index = NvmeIndex::Open(o);
  ASSERT_TRUE(index.ok()) << index.status().ToString();
  EXPECT_TRUE((*index)->failed());
  uint64_t n = 0;
  auto scan = (*index)->ForEach([&](const ExtentTag&, const NvmeIndexRecord&) {
    ++n;
    return Status::OK();
  });
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  EXPECT_EQ(n, written);
  EXPECT_FALSE((*index)->Reopen().ok()) << "still full";
  EXPECT_TRUE((*index)->failed());

  fs.Unfill();
  fs.Unfill("filler2");
  ASSERT_TRUE((*index)->Reopen().ok());
  EXPECT_FALSE((*index)->failed());
  ASSERT_TRUE((*index)->Put(Tag(9'000'000), Record(7)).ok());
  auto got = (*index)->Get(Tag(written - 1));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, Record(written - 1));
}

}  // namespace
}  // namespace kvtier
