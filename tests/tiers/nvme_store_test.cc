// Tests tiers/nvme_store.* (with tiers/nvme_index.* for restart recovery) on
// a real file through io_uring and through pread/pwrite; faults come through
// FaultIoQueue wrapping the real queue.
#include "tiers/nvme_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "tests/tiers/nvme_test_util.h"
#include "tiers/checksum.h"
#include "tiers/fault_io_queue.h"
#include "tiers/nvme_index.h"
#include "tiers/sync_io_queue.h"
#include "tiers/uring_io_queue.h"

namespace kvtier {
namespace {

using testing::RandomBuffer;
using testing::ScratchDir;
using testing::ZeroBuffer;

constexpr uint64_t kRegion = 16ull << 20;

ExtentTag Tag(uint64_t n) {
  ExtentTag t{};
  std::memcpy(t.data(), &n, 8);
  t[15] = 0xA5;
  return t;
}

// Writes one extent and waits for it. Returns the completion.
NvmeCompletion WriteOne(NvmeStore& s, const ExtentTag& tag, const AlignedBuffer& buf,
                        uint64_t bytes, uint32_t ns = 1) {
  NvmeCompletion c;
  NvmeWriteRequest w;
  w.tag = tag;
  w.ns = ns;
  w.buf = buf.data();
  w.payload_bytes = bytes;
  w.user_data = 99;
  Status p = s.PrepareWrite(w);
  if (!p.ok()) {
    c.status = p;
    return c;
  }
  auto n = s.Wait(std::span<NvmeCompletion>(&c, 1), 1);
  EXPECT_TRUE(n.ok() && *n == 1);
  EXPECT_EQ(c.user_data, 99u);
  EXPECT_EQ(c.kind, NvmeOpKind::kWrite);
  return c;
}

Status ReadOne(NvmeStore& s, const NvmeExtent& e, AlignedBuffer& buf) {
  KVTIER_RETURN_IF_ERROR(s.PrepareRead(e, buf.data(), buf.size(), 7));
  NvmeCompletion c;
  auto n = s.Wait(std::span<NvmeCompletion>(&c, 1), 1);
  if (!n.ok()) return n.status();
  EXPECT_EQ(*n, 1u);
  EXPECT_EQ(c.user_data, 7u);
  EXPECT_EQ(c.kind, NvmeOpKind::kRead);
  return c.status;
}

// Flips one bit of the file at `offset` behind the store's back.
void FlipBitInFile(const std::string& path, uint64_t offset) {
  int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  uint8_t b = 0;
  ASSERT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  b ^= 0x04;
  ASSERT_EQ(::pwrite(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

class NvmeStoreTest : public ::testing::TestWithParam<bool /*io_uring*/> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  NvmeStoreOptions Options(uint64_t regions = 8) {
    NvmeStoreOptions o;
    o.path = dir_.File("nvme.dat");
    o.capacity_bytes = kDataOffset + regions * kRegion;
    o.region_bytes = kRegion;
    o.max_ops = 8;
    o.use_io_uring = GetParam();
    return o;
  }

  std::unique_ptr<NvmeStore> Open(const NvmeStoreOptions& o,
                                  std::unique_ptr<IoQueue> queue = nullptr) {
    auto s = NvmeStore::Open(o, std::move(queue));
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    return std::move(s).value();
  }

  // A fault queue around the real queue of this test's kind.
  std::unique_ptr<FaultIoQueue> FaultQueue(uint32_t depth = 16) {
    IoQueueOptions qo;
    qo.queue_depth = depth;
    auto inner = GetParam() ? NewUringIoQueue(qo) : NewSyncIoQueue(qo);
    EXPECT_TRUE(inner.ok());
    return std::make_unique<FaultIoQueue>(std::move(inner).value(), 5);
  }

  ScratchDir dir_;
};

TEST_P(NvmeStoreTest, OpensWithDirectIoOnARealFileSystem) {
  auto s = Open(Options());
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->queue_name(), GetParam() ? "uring" : "sync");
  if (!testing::IsTmpfs(dir_.path())) {
    EXPECT_TRUE(s->direct_io()) << s->io_fallback_reason();
  }
  EXPECT_TRUE(s->admitting());
  EXPECT_EQ(s->stats().capacity_bytes, 8 * kRegion);
  EXPECT_EQ(s->stats().extents, 0u);
}

TEST_P(NvmeStoreTest, WriteReadRoundTripAcrossSizes) {
  auto s = Open(Options());
  ASSERT_NE(s, nullptr);
  const std::vector<uint64_t> sizes = {4096,      5000,     65536,   256 << 10,
                                       1 << 20,   (1 << 20) + 12345, 4 << 20, 8 << 20};
  std::vector<AlignedBuffer> src;
  for (size_t i = 0; i < sizes.size(); ++i) src.push_back(RandomBuffer(sizes[i], 1000 + i));

  // All writes in flight together (max_ops = 8 = sizes.size()).
  for (size_t i = 0; i < sizes.size(); ++i) {
    NvmeWriteRequest w;
    w.tag = Tag(i);
    w.ns = 3;
    w.buf = src[i].data();
    w.payload_bytes = sizes[i];
    w.user_data = i;
    ASSERT_TRUE(s->PrepareWrite(w).ok()) << i;
  }
  ASSERT_TRUE(s->Submit().ok());
  std::vector<NvmeCompletion> done(sizes.size());
  auto n = s->Wait(done, sizes.size());
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, sizes.size());
  std::map<uint64_t, NvmeExtent> extents;
  for (auto& c : done) {
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_EQ(c.extent.payload_bytes, sizes[c.user_data]);
    EXPECT_EQ(c.extent.tag, Tag(c.user_data));
    EXPECT_EQ(c.extent.ns, 3u);
    EXPECT_EQ(c.extent.checksum, checksum::Sum64(src[c.user_data].data(), sizes[c.user_data]));
    EXPECT_EQ(c.extent.generation >> 40, s->epoch());
    extents[c.user_data] = c.extent;
  }
  EXPECT_EQ(s->ops_in_flight(), 0u);

  std::vector<AlignedBuffer> dst;
  for (size_t i = 0; i < sizes.size(); ++i) {
    dst.push_back(ZeroBuffer(sizes[i]));
    ASSERT_TRUE(s->PrepareRead(extents[i], dst[i].data(), dst[i].size(), i).ok());
  }
  n = s->Wait(done, sizes.size());
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, sizes.size());
  for (auto& c : done) {
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    size_t i = c.user_data;
    EXPECT_EQ(std::memcmp(src[i].data(), dst[i].data(), sizes[i]), 0) << "size " << sizes[i];
  }
  NvmeStoreStats st = s->stats();
  uint64_t total = 0;
  for (uint64_t b : sizes) total += b;
  EXPECT_EQ(st.writes_admitted, sizes.size());
  EXPECT_EQ(st.writes_completed, sizes.size());
  EXPECT_EQ(st.reads_completed, sizes.size());
  EXPECT_EQ(st.bytes_written, total);
  EXPECT_EQ(st.bytes_read, total);
  EXPECT_EQ(st.extents, sizes.size());
  EXPECT_EQ(st.write_errors + st.read_errors + st.read_corruptions + st.checksum_failures, 0u);
}

TEST_P(NvmeStoreTest, ManyOperationsBeyondMaxOpsRetryAndComplete) {
  auto s = Open(Options());
  ASSERT_NE(s, nullptr);
  AlignedBuffer buf = RandomBuffer(64 << 10, 9);
  std::vector<NvmeExtent> extents;
  std::vector<NvmeCompletion> done(8);
  int retries = 0;
  for (uint64_t i = 0; i < 100;) {
    NvmeWriteRequest w;
    w.tag = Tag(i);
    w.buf = buf.data();
    w.payload_bytes = 64 << 10;
    w.checksum = checksum::Sum64(buf.data(), 64 << 10);
    w.user_data = i;
    Status p = s->PrepareWrite(w);
    if (p.code() == StatusCode::kRetry) {
      ++retries;
      auto n = s->Wait(done, 1);
      ASSERT_TRUE(n.ok());
      for (size_t k = 0; k < *n; ++k) {
        ASSERT_TRUE(done[k].status.ok());
        extents.push_back(done[k].extent);
      }
      continue;
    }
    ASSERT_TRUE(p.ok()) << p.ToString();
    ++i;
  }
  while (extents.size() < 100) {
    auto n = s->Wait(done, 1);
    ASSERT_TRUE(n.ok());
    ASSERT_GT(*n, 0u);
    for (size_t k = 0; k < *n; ++k) extents.push_back(done[k].extent);
  }
  EXPECT_GT(retries, 0);
  AlignedBuffer out = ZeroBuffer(64 << 10);
  for (const auto& e : extents) {
    ASSERT_TRUE(ReadOne(*s, e, out).ok());
    ASSERT_EQ(std::memcmp(out.data(), buf.data(), 64 << 10), 0);
  }
}

TEST_P(NvmeStoreTest, ReopenRecoversEveryIndexedExtentByteExact) {
  const std::string index_path = dir_.File("index");
  std::map<uint64_t, uint64_t> sizes;  // tag number -> payload bytes
  uint64_t first_epoch = 0;
  // Many distinct sizes: each size class carves its own region.
  const NvmeStoreOptions options = Options(24);
  {
    auto s = Open(options);
    ASSERT_NE(s, nullptr);
    first_epoch = s->epoch();
    auto index = NvmeIndex::Open(NvmeIndexOptions{index_path});
    ASSERT_TRUE(index.ok()) << index.status().ToString();
    for (uint64_t i = 0; i < 20; ++i) {
      uint64_t bytes = (i % 4 == 0) ? (3 << 20) + 100 : 4096 * (i + 1) + i;
      AlignedBuffer b = RandomBuffer(bytes, i);
      NvmeCompletion c = WriteOne(*s, Tag(i), b, bytes, static_cast<uint32_t>(i % 3));
      ASSERT_TRUE(c.status.ok()) << c.status.ToString();
      // Data first, then the index.
      ASSERT_TRUE((*index)->Put(Tag(i), ToRecord(c.extent, static_cast<uint8_t>(i))).ok());
      sizes[i] = bytes;
    }
    // One extent larger than a region: it takes a run of two regions.
    {
      const uint64_t bytes = kRegion + (4 << 20) + 5;
      AlignedBuffer b = RandomBuffer(bytes, 50);
      NvmeCompletion c = WriteOne(*s, Tag(50), b, bytes, 50 % 3);
      ASSERT_TRUE(c.status.ok()) << c.status.ToString();
      EXPECT_EQ((c.extent.offset - kDataOffset) % kRegion, 0u);
      EXPECT_EQ(s->ExtentBytes(bytes), 2 * kRegion);
      ASSERT_TRUE((*index)->Put(Tag(50), ToRecord(c.extent, 1)).ok());
      sizes[50] = bytes;
    }
    // Free three: delete the record, then the space.
    for (uint64_t i : {2, 7, 12}) {
      auto r = (*index)->Get(Tag(i));
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE((*index)->Delete(Tag(i)).ok());
      ASSERT_TRUE(s->Free(ToExtent(Tag(i), *r)).ok());
      sizes.erase(i);
    }
  }
  auto s = Open(options);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->epoch(), first_epoch + 1);
  EXPECT_EQ(s->stats().extents, 0u);  // nothing trusted before recovery
  auto index = NvmeIndex::Open(NvmeIndexOptions{index_path});
  ASSERT_TRUE(index.ok());
  std::vector<NvmeExtent> records;
  std::vector<uint8_t> priorities;
  auto scan = (*index)->ForEach([&](const ExtentTag& tag, const NvmeIndexRecord& r) {
    records.push_back(ToExtent(tag, r));
    priorities.push_back(r.priority);
    return Status::OK();
  });
  ASSERT_TRUE(scan.ok());
  EXPECT_EQ(scan->records, 18u);
  std::vector<Status> results(records.size());
  ASSERT_TRUE(s->RecoverExtents(records, results).ok());
  for (size_t i = 0; i < results.size(); ++i) EXPECT_TRUE(results[i].ok()) << results[i].ToString();
  EXPECT_EQ(s->stats().recovered, 18u);
  EXPECT_EQ(s->stats().recovery_dropped, 0u);
  EXPECT_EQ(s->stats().extents, 18u);

  // New writes must not land on recovered extents.
  std::vector<NvmeExtent> fresh;
  for (uint64_t i = 100; i < 110; ++i) {
    AlignedBuffer b = RandomBuffer(3 << 20, i);
    NvmeCompletion c = WriteOne(*s, Tag(i), b, 3 << 20);
    ASSERT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_EQ(c.extent.generation >> 40, first_epoch + 1);
    fresh.push_back(c.extent);
  }
  for (const NvmeExtent& e : records) {
    uint64_t n;
    std::memcpy(&n, e.tag.data(), 8);
    ASSERT_TRUE(sizes.count(n)) << n;
    AlignedBuffer expect = RandomBuffer(sizes[n], n);
    AlignedBuffer out = ZeroBuffer(sizes[n]);
    Status r = ReadOne(*s, e, out);
    ASSERT_TRUE(r.ok()) << r.ToString();
    EXPECT_EQ(std::memcmp(out.data(), expect.data(), sizes[n]), 0) << n;
    EXPECT_EQ(e.ns, n % 3);
  }
}

TEST_P(NvmeStoreTest, FlippedBitOnDiskIsCorruptionNotData) {
  auto o = Options();
  auto s = Open(o);
  ASSERT_NE(s, nullptr);
  AlignedBuffer b = RandomBuffer(1 << 20, 1);
  NvmeCompletion c1 = WriteOne(*s, Tag(1), b, 1 << 20);
  NvmeCompletion c2 = WriteOne(*s, Tag(2), b, 1 << 20);
  ASSERT_TRUE(c1.status.ok() && c2.status.ok());
  AlignedBuffer out = ZeroBuffer(1 << 20);
  ASSERT_TRUE(ReadOne(*s, c1.extent, out).ok());

  FlipBitInFile(o.path, c1.extent.offset + kExtentHeaderBytes + 777);  // payload
  Status r = ReadOne(*s, c1.extent, out);
  EXPECT_TRUE(r.IsCorruption()) << r.ToString();
  EXPECT_EQ(s->stats().checksum_failures, 1u);

  FlipBitInFile(o.path, c2.extent.offset + 20);  // header (the tag)
  r = ReadOne(*s, c2.extent, out);
  EXPECT_TRUE(r.IsCorruption()) << r.ToString();
  EXPECT_EQ(s->stats().read_corruptions, 1u);
}

TEST_P(NvmeStoreTest, StaleOrBadIndexRecordsAreDroppedAtRecovery) {
  auto o = Options();
  NvmeExtent stale, live, other;
  {
    auto s = Open(o);
    ASSERT_NE(s, nullptr);
    AlignedBuffer b = RandomBuffer(64 << 10, 3);
    NvmeCompletion a = WriteOne(*s, Tag(1), b, 64 << 10);
    ASSERT_TRUE(a.status.ok());
    stale = a.extent;
    // Freed, but suppose its index delete was lost in a crash; the slot is
    // reused by another block.
    ASSERT_TRUE(s->Free(stale).ok());
    NvmeCompletion c = WriteOne(*s, Tag(2), b, 64 << 10);
    ASSERT_TRUE(c.status.ok());
    live = c.extent;
    ASSERT_EQ(live.offset, stale.offset);
    NvmeCompletion d = WriteOne(*s, Tag(3), b, 64 << 10);
    ASSERT_TRUE(d.status.ok());
    other = d.extent;
  }
  auto s = Open(o);
  ASSERT_NE(s, nullptr);
  NvmeExtent wrong_gen = other;
  wrong_gen.generation += 1;
  NvmeExtent outside = other;
  outside.offset = o.capacity_bytes;  // past the end
  NvmeExtent misaligned = other;
  misaligned.offset += 4096;  // no header there
  std::vector<NvmeExtent> records = {stale, live, wrong_gen, outside, misaligned, other, live};
  std::vector<Status> results(records.size());
  ASSERT_TRUE(s->RecoverExtents(records, results).ok());
  EXPECT_TRUE(results[0].IsCorruption()) << results[0].ToString();  // tag mismatch
  EXPECT_TRUE(results[1].ok()) << results[1].ToString();
  EXPECT_TRUE(results[2].IsCorruption()) << results[2].ToString();  // generation
  EXPECT_TRUE(results[3].IsInvalidArgument()) << results[3].ToString();
  EXPECT_TRUE(results[4].IsCorruption()) << results[4].ToString();
  EXPECT_TRUE(results[5].ok()) << results[5].ToString();
  EXPECT_EQ(results[6].code(), StatusCode::kRejected) << results[6].ToString();  // duplicate
  EXPECT_EQ(s->stats().recovered, 2u);
  EXPECT_EQ(s->stats().recovery_dropped, 5u);
  EXPECT_EQ(s->stats().extents, 2u);
  AlignedBuffer out = ZeroBuffer(64 << 10);
  EXPECT_TRUE(ReadOne(*s, live, out).ok());
  EXPECT_TRUE(ReadOne(*s, stale, out).IsCorruption());
}

TEST_P(NvmeStoreTest, EnospcStopsAdmissionAndLeavesNoTrace) {
  auto fq = FaultQueue();
  FaultIoQueue* fault = fq.get();
  auto s = Open(Options(), std::move(fq));
  ASSERT_NE(s, nullptr);
  auto index = NvmeIndex::Open(NvmeIndexOptions{dir_.File("index")});
  ASSERT_TRUE(index.ok());
  AlignedBuffer b = RandomBuffer(256 << 10, 4);
  // The cache's flow: write, and put the record only when durable.
  auto write_and_index = [&](uint64_t n) {
    NvmeCompletion c = WriteOne(*s, Tag(n), b, 256 << 10);
    if (c.status.ok()) {
      EXPECT_TRUE((*index)->Put(Tag(n), ToRecord(c.extent, 50)).ok());
    }
    return c;
  };
  NvmeCompletion a = write_and_index(1);
  ASSERT_TRUE(a.status.ok());

  FaultRule full;
  full.kind = FaultKind::kWriteError;
  full.error = ENOSPC;
  full.offset_begin = a.extent.offset + 1;  // spare extent A's range, for clarity
  size_t rule = fault->AddRule(full);
  NvmeCompletion f = write_and_index(2);
  EXPECT_EQ(f.status.code(), StatusCode::kIOError) << f.status.ToString();
  EXPECT_NE(f.status.message().find("ENOSPC"), std::string::npos);
  EXPECT_GT(fault->fired(rule), 0u);
  EXPECT_FALSE(s->admitting());
  Status why = s->admission_status();
  EXPECT_EQ(why.code(), StatusCode::kRejected);
  EXPECT_NE(why.message().find("ENOSPC"), std::string::npos) << why.ToString();
  EXPECT_TRUE((*index)->Get(Tag(2)).status().IsNotFound());
  NvmeStoreStats st = s->stats();
  EXPECT_EQ(st.write_errors, 1u);
  EXPECT_EQ(st.writes_completed, 1u);
  EXPECT_EQ(st.extents, 1u);  // the failed extent was freed
  EXPECT_EQ(st.used_bytes, s->ExtentBytes(256 << 10));

  // Refused while stopped, counted.
  NvmeCompletion r = WriteOne(*s, Tag(3), b, 256 << 10);
  EXPECT_EQ(r.status.code(), StatusCode::kRejected);
  EXPECT_EQ(s->stats().writes_refused, 1u);

  // Reads of durable extents still work.
  AlignedBuffer out = ZeroBuffer(256 << 10);
  ASSERT_TRUE(ReadOne(*s, a.extent, out).ok());
  EXPECT_EQ(std::memcmp(out.data(), b.data(), 256 << 10), 0);

  // An operator fixes the disk and resumes.
  fault->ClearRules();
  s->ResumeAdmission();
  EXPECT_TRUE(s->admission_status().ok());
  EXPECT_TRUE(write_and_index(4).status.ok());
}

TEST_P(NvmeStoreTest, EioOnWriteStopsAdmission) {
  auto fq = FaultQueue();
  FaultIoQueue* fault = fq.get();
  auto s = Open(Options(), std::move(fq));
  ASSERT_NE(s, nullptr);
  FaultRule eio;
  eio.kind = FaultKind::kWriteError;
  eio.error = EIO;
  eio.every_nth = 2;  // the payload write of the first extent (header is 1st)
  fault->AddRule(eio);
  AlignedBuffer b = RandomBuffer(8192, 4);
  NvmeCompletion c = WriteOne(*s, Tag(1), b, 8192);
  EXPECT_EQ(c.status.code(), StatusCode::kIOError);
  EXPECT_NE(s->admission_status().message().find("EIO"), std::string::npos);
  EXPECT_EQ(s->stats().extents, 0u);
}

// After ENOSPC/EIO no write is taken until a probe is due; a failed probe
// waits again; once the device takes a probe write, admission resumes by
// itself (before, only ResumeAdmission(), which nothing called, did).
TEST_P(NvmeStoreTest, AdmissionResumesByItselfOnceAProbeWriteSucceeds) {
  auto fq = FaultQueue();
  FaultIoQueue* fault = fq.get();
  auto o = Options();
  o.admission_probe_ms = 100;
  auto s = Open(o, std::move(fq));
  ASSERT_NE(s, nullptr);
  AlignedBuffer b = RandomBuffer(64 << 10, 8);
  FaultRule full;
  full.kind = FaultKind::kWriteError;
  full.error = ENOSPC;
  fault->AddRule(full);
  EXPECT_EQ(WriteOne(*s, Tag(1), b, 64 << 10).status.code(), StatusCode::kIOError);
  EXPECT_FALSE(s->admitting());
  EXPECT_FALSE(s->AcceptsWrites());
  EXPECT_EQ(WriteOne(*s, Tag(2), b, 64 << 10).status.code(), StatusCode::kRejected);

  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  EXPECT_TRUE(s->AcceptsWrites()) << "a probe is due";
  // The disk is still full: the probe fails and the wait starts again.
  EXPECT_EQ(WriteOne(*s, Tag(3), b, 64 << 10).status.code(), StatusCode::kIOError);
  EXPECT_FALSE(s->admitting());
  EXPECT_FALSE(s->AcceptsWrites());
  EXPECT_EQ(WriteOne(*s, Tag(4), b, 64 << 10).status.code(), StatusCode::kRejected);

  fault->ClearRules();  // space freed
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  NvmeCompletion probe = WriteOne(*s, Tag(5), b, 64 << 10);
  ASSERT_TRUE(probe.status.ok()) << probe.status.ToString();
  EXPECT_TRUE(s->admitting());
  EXPECT_TRUE(s->admission_status().ok());
  NvmeCompletion next = WriteOne(*s, Tag(6), b, 64 << 10);
  ASSERT_TRUE(next.status.ok()) << next.status.ToString();
  AlignedBuffer out = ZeroBuffer(64 << 10);
  ASSERT_TRUE(ReadOne(*s, probe.extent, out).ok());
  EXPECT_EQ(std::memcmp(out.data(), b.data(), 64 << 10), 0);
  EXPECT_EQ(s->stats().writes_refused, 2u);
}

TEST_P(NvmeStoreTest, ReadFaultsAreIOErrorOrCorruption) {
  auto fq = FaultQueue();
  FaultIoQueue* fault = fq.get();
  auto s = Open(Options(), std::move(fq));
  ASSERT_NE(s, nullptr);
  AlignedBuffer b = RandomBuffer(1 << 20, 6);
  NvmeCompletion c = WriteOne(*s, Tag(1), b, 1 << 20);
  ASSERT_TRUE(c.status.ok());
  AlignedBuffer out = ZeroBuffer(1 << 20);

  FaultRule eio;
  eio.kind = FaultKind::kReadError;
  eio.max_fires = 1;
  fault->AddRule(eio);
  Status r = ReadOne(*s, c.extent, out);
  EXPECT_EQ(r.code(), StatusCode::kIOError) << r.ToString();
  EXPECT_EQ(s->stats().read_errors, 1u);
  fault->ClearRules();

  FaultRule short_read;
  short_read.kind = FaultKind::kShortRead;
  short_read.offset_begin = c.extent.offset + kExtentHeaderBytes;  // the payload part
  short_read.max_fires = 1;
  fault->AddRule(short_read);
  r = ReadOne(*s, c.extent, out);
  EXPECT_TRUE(r.IsCorruption()) << r.ToString();
  EXPECT_EQ(s->stats().read_corruptions, 1u);
  fault->ClearRules();

  FaultRule flip;
  flip.kind = FaultKind::kBitFlip;
  flip.offset_begin = c.extent.offset + kExtentHeaderBytes;
  flip.max_fires = 1;
  fault->AddRule(flip);
  r = ReadOne(*s, c.extent, out);
  EXPECT_TRUE(r.IsCorruption()) << r.ToString();
  EXPECT_EQ(s->stats().checksum_failures, 1u);
  fault->ClearRules();

  // The extent itself is fine: a clean read returns it.
  ASSERT_TRUE(ReadOne(*s, c.extent, out).ok());
  EXPECT_EQ(std::memcmp(out.data(), b.data(), 1 << 20), 0);
  EXPECT_TRUE(s->admitting());  // read faults do not stop admission
}

TEST_P(NvmeStoreTest, RegisteredHostRegionUsesFixedBuffers) {
  auto fq = FaultQueue();
  FaultIoQueue* fault = fq.get();  // no rules: only to read the queue's counters
  auto s = Open(Options(), std::move(fq));
  ASSERT_NE(s, nullptr);
  AlignedBuffer host = RandomBuffer(4 << 20, 8);  // stands in for the host segment
  AlignedBuffer other = RandomBuffer(1 << 20, 9);

  uint64_t before = fault->stats().fixed_buffer_ops;
  NvmeCompletion c = WriteOne(*s, Tag(1), other, 1 << 20);
  ASSERT_TRUE(c.status.ok());
  EXPECT_EQ(fault->stats().fixed_buffer_ops - before, 1u);  // header only

  iovec iov{host.data(), host.size()};
  ASSERT_TRUE(s->RegisterBuffers(std::span<const iovec>(&iov, 1)).ok());
  before = fault->stats().fixed_buffer_ops;
  NvmeCompletion h = WriteOne(*s, Tag(2), host, 2 << 20);
  ASSERT_TRUE(h.status.ok());
  EXPECT_EQ(fault->stats().fixed_buffer_ops - before, 2u);  // header + payload
  AlignedBuffer expect = ZeroBuffer(2 << 20);
  std::memcpy(expect.data(), host.data(), 2 << 20);
  ASSERT_TRUE(s->PrepareRead(h.extent, host.data() + (2 << 20), 2 << 20, 1).ok());
  NvmeCompletion rc;
  ASSERT_TRUE(s->Wait(std::span<NvmeCompletion>(&rc, 1), 1).ok());
  ASSERT_TRUE(rc.status.ok()) << rc.status.ToString();
  EXPECT_EQ(std::memcmp(host.data() + (2 << 20), expect.data(), 2 << 20), 0);
  EXPECT_EQ(fault->stats().fixed_buffer_ops - before, 4u);
}

TEST_P(NvmeStoreTest, RejectsBadBuffersAndRequests) {
  auto s = Open(Options());
  ASSERT_NE(s, nullptr);
  AlignedBuffer b = RandomBuffer(16384, 1);
  NvmeWriteRequest w;
  w.buf = b.data() + 512;  // not 4 KiB aligned
  w.payload_bytes = 4096;
  EXPECT_TRUE(s->PrepareWrite(w).IsInvalidArgument());
  w.buf = b.data();
  w.payload_bytes = 0;
  EXPECT_TRUE(s->PrepareWrite(w).IsInvalidArgument());
  w.payload_bytes = 8192;
  NvmeCompletion c = WriteOne(*s, Tag(1), b, 8192);
  ASSERT_TRUE(c.status.ok());
  EXPECT_TRUE(s->PrepareRead(c.extent, b.data(), 4096, 0).IsInvalidArgument());  // too small
  EXPECT_TRUE(s->PrepareRead(c.extent, b.data() + 8, 8192, 0).IsInvalidArgument());
  NvmeExtent bad = c.extent;
  bad.offset = 4096;  // inside the superblock area
  EXPECT_TRUE(s->PrepareRead(bad, b.data(), 8192, 0).IsInvalidArgument());
  ASSERT_TRUE(s->Free(c.extent).ok());
  EXPECT_TRUE(s->Free(c.extent).IsInvalidArgument());  // double free
  EXPECT_EQ(s->stats().frees, 1u);
  EXPECT_EQ(s->stats().extents, 0u);
}

TEST_P(NvmeStoreTest, FullStoreRefusesWithResourceExhausted) {
  auto o = Options(2);
  o.payload_classes = {(4 << 20) - 4096};  // exactly 4 extents per 16 MiB region
  auto s = Open(o);
  ASSERT_NE(s, nullptr);
  AlignedBuffer b = RandomBuffer(4 << 20, 2);
  std::vector<NvmeExtent> extents;
  for (int i = 0; i < 8; ++i) {
    NvmeCompletion c = WriteOne(*s, Tag(i), b, (4 << 20) - 4096);
    ASSERT_TRUE(c.status.ok()) << i << " " << c.status.ToString();
    extents.push_back(c.extent);
  }
  EXPECT_EQ(s->stats().used_bytes, s->stats().capacity_bytes);
  NvmeWriteRequest w;
  w.tag = Tag(9);
  w.buf = b.data();
  w.payload_bytes = 4096;
  EXPECT_TRUE(s->PrepareWrite(w).IsResourceExhausted());
  EXPECT_EQ(s->stats().writes_refused, 1u);
  EXPECT_TRUE(s->admitting());  // full is not an error: eviction makes room
  ASSERT_TRUE(s->Free(extents[3]).ok());
  EXPECT_TRUE(WriteOne(*s, Tag(10), b, 4096).status.ok());
}

// Index rebuild: ScanHeaders finds every extent by its own header, with
// the fields it was written with, in steps of any size; a header planted
// inside another extent's payload (a tenant's forged block) is never taken,
// since the scan jumps over payloads; a damaged header hides only its own
// extent; RecoverExtents then takes the found extents back.
TEST_P(NvmeStoreTest, ScanHeadersFindsEveryExtentAndSkipsPayloads) {
  auto o = Options(24);
  std::vector<NvmeExtent> written;
  std::vector<AlignedBuffer> src;
  {
    auto s = Open(o);
    ASSERT_NE(s, nullptr);
    const std::vector<uint64_t> sizes = {4096, 20000, 65536, 1 << 20, 3 << 20, 20 << 20};
    for (size_t i = 0; i < 40; ++i) {
      const uint64_t bytes = sizes[i % sizes.size()];
      src.push_back(RandomBuffer(RoundUpToBlock(bytes), 500 + i));
      auto c = WriteOne(*s, Tag(i), src.back(), bytes, static_cast<uint32_t>(i % 3));
      ASSERT_TRUE(c.status.ok()) << c.status.ToString();
      written.push_back(c.extent);
    }
  }
  // Plant a valid header naming the place it lies at inside extent 7's
  // payload (as a forged payload would carry one).
  {
    const NvmeExtent& host = written[7];
    ExtentHeader forged;
    forged.tag = Tag(9999);
    forged.payload_bytes = 4096;
    forged.checksum = 1;
    forged.generation = 1;
    forged.extent_offset = host.offset + 2 * 4096;  // header 4 KiB + payload's second block
    AlignedBuffer h = ZeroBuffer(4096);
    EncodeExtentHeader(forged, h.data());
    int fd = ::open(o.path.c_str(), O_RDWR | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pwrite(fd, h.data(), 4096, static_cast<off_t>(forged.extent_offset)), 4096);
    ::close(fd);
  }
  FlipBitInFile(o.path, written[3].offset + 100);  // one damaged header
  auto s = Open(o);
  ASSERT_NE(s, nullptr);
  for (uint64_t step : {uint64_t{1} << 20, uint64_t{7} << 20, uint64_t{1} << 40}) {
    std::vector<NvmeExtent> found;
    uint64_t cursor = s->data_begin();
    int calls = 0;
    while (cursor < s->data_end()) {
      ASSERT_TRUE(s->ScanHeaders(&cursor, step, &found).ok());
      ASSERT_LT(++calls, 10000);
    }
    EXPECT_EQ(cursor, s->data_end());
    std::map<uint64_t, NvmeExtent> by_offset;
    for (const auto& e : found) by_offset[e.offset] = e;
    EXPECT_EQ(found.size(), written.size() - 1) << "step " << step;
    for (size_t i = 0; i < written.size(); ++i) {
      auto it = by_offset.find(written[i].offset);
      if (i == 3) {
        EXPECT_EQ(it, by_offset.end()) << "a damaged header is not taken";
        continue;
      }
      ASSERT_NE(it, by_offset.end()) << i;
      EXPECT_EQ(it->second, written[i]) << i;
    }
    for (const auto& e : found) EXPECT_NE(e.tag, Tag(9999)) << "planted header taken";
  }
  std::vector<NvmeExtent> found;
  uint64_t cursor = s->data_begin();
  ASSERT_TRUE(s->ScanHeaders(&cursor, uint64_t{1} << 40, &found).ok());
  std::vector<Status> results(found.size());
  ASSERT_TRUE(s->RecoverExtents(found, results).ok());
  for (size_t i = 0; i < found.size(); ++i) EXPECT_TRUE(results[i].ok()) << results[i].ToString();
  AlignedBuffer back = ZeroBuffer(20 << 20);
  for (size_t i = 0; i < written.size(); ++i) {
    if (i == 3) continue;
    if (i == 7) {  // its payload now differs from what was written: never served
      EXPECT_TRUE(ReadOne(*s, written[i], back).IsCorruption());
      continue;
    }
    ASSERT_TRUE(ReadOne(*s, written[i], back).ok()) << i;
    EXPECT_EQ(std::memcmp(back.data(), src[i].data(), written[i].payload_bytes), 0) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Queues, NvmeStoreTest, ::testing::Values(true, false),
                         [](const auto& info) {
                           return info.param ? std::string("Uring") : std::string("Sync");
                         });

// tmpfs may refuse O_DIRECT: the store must then say so and still work.
TEST(NvmeStoreTmpfs, FallsBackOrUsesDirectIoAndWorks) {
  const std::string shm = "/dev/shm";
  if (!testing::IsTmpfs(shm) || ::access(shm.c_str(), W_OK) != 0) {
    GTEST_SKIP() << "no writable tmpfs at /dev/shm";
  }
  std::string path = shm + "/kvtier-nvme-test-" + std::to_string(::getpid());
  NvmeStoreOptions o;
  o.path = path;
  o.capacity_bytes = kDataOffset + 2 * (1 << 20);
  o.region_bytes = 1 << 20;
  o.max_ops = 4;
  {
    auto s = NvmeStore::Open(o);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    if (!(*s)->direct_io()) {
      EXPECT_FALSE((*s)->io_fallback_reason().empty());
    }
    RecordProperty("direct_io", (*s)->direct_io() ? "yes" : "no");
    AlignedBuffer b = RandomBuffer(8192, 1), out = ZeroBuffer(8192);
    NvmeCompletion c = WriteOne(**s, Tag(1), b, 8192);
    EXPECT_TRUE(c.status.ok()) << c.status.ToString();
    EXPECT_TRUE(ReadOne(**s, c.extent, out).ok());
    EXPECT_EQ(std::memcmp(b.data(), out.data(), 8192), 0);
  }
  ::unlink(path.c_str());
}

TEST(NvmeStoreBuffered, WorksWithoutDirectIoAndSaysSo) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  NvmeStoreOptions o;
  o.path = dir.File("buffered.dat");
  o.capacity_bytes = kDataOffset + (1 << 20);
  o.region_bytes = 1 << 20;
  o.max_ops = 4;
  o.direct_io = false;
  auto s = NvmeStore::Open(o);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_FALSE((*s)->direct_io());
  EXPECT_NE((*s)->io_fallback_reason().find("O_DIRECT"), std::string::npos);
  AlignedBuffer b = RandomBuffer(12288, 1), out = ZeroBuffer(12288);
  NvmeCompletion c = WriteOne(**s, Tag(1), b, 12000);
  ASSERT_TRUE(c.status.ok()) << c.status.ToString();
  ASSERT_TRUE(ReadOne(**s, c.extent, out).ok());
  EXPECT_EQ(std::memcmp(b.data(), out.data(), 12000), 0);
}

TEST(NvmeStoreOptions, RejectsBadOptions) {
  ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  NvmeStoreOptions o;
  o.path = dir.File("x");
  o.capacity_bytes = kDataOffset + kRegion;
  o.region_bytes = kRegion;
  o.max_ops = 0;
  EXPECT_TRUE(NvmeStore::Open(o).status().IsInvalidArgument());
  o.max_ops = 4;
  o.region_bytes = 12345;
  EXPECT_TRUE(NvmeStore::Open(o).status().IsInvalidArgument());
  o.region_bytes = kRegion;
  o.capacity_bytes = kDataOffset + kRegion - 4096;  // no whole region
  EXPECT_TRUE(NvmeStore::Open(o).status().IsInvalidArgument());
  o.capacity_bytes = kDataOffset + kRegion;
  o.payload_classes = {5000};
  EXPECT_TRUE(NvmeStore::Open(o).status().IsInvalidArgument());
  o.payload_classes = {};
  auto shallow = NewSyncIoQueue(IoQueueOptions{4});
  ASSERT_TRUE(shallow.ok());
  EXPECT_TRUE(NvmeStore::Open(o, std::move(shallow).value()).status().IsInvalidArgument());
  o.path = dir.path();  // a directory
  EXPECT_FALSE(NvmeStore::Open(o).ok());
}

}  // namespace
}  // namespace kvtier
