// Tests tiers/io_queue.*, tiers/uring_io_queue.*, tiers/sync_io_queue.* and
// tiers/fault_io_queue.* on real files (O_DIRECT where the file system allows).
#include "tiers/io_queue.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/tiers/nvme_test_util.h"
#include "tiers/fault_io_queue.h"
#include "tiers/sync_io_queue.h"
#include "tiers/uring_io_queue.h"

namespace kvtier {
namespace {

using testing::RandomBuffer;
using testing::ScratchDir;
using testing::ZeroBuffer;

enum class Impl { kUring, kSync };

std::unique_ptr<IoQueue> MakeQueue(Impl impl, uint32_t depth) {
  IoQueueOptions o;
  o.queue_depth = depth;
  auto q = impl == Impl::kUring ? NewUringIoQueue(o) : NewSyncIoQueue(o);
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return q.ok() ? std::move(q).value() : nullptr;
}

// Opens `path` O_DIRECT (buffered if the file system refuses) at `bytes`.
int OpenFile(const std::string& path, uint64_t bytes, bool* direct = nullptr) {
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0600);
  if (direct) *direct = fd >= 0;
  if (fd < 0) fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd >= 0 && ::ftruncate(fd, static_cast<off_t>(bytes)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Runs every request to completion; returns results indexed by user_data.
std::vector<int32_t> RunAll(IoQueue& q, const std::vector<IoRequest>& reqs) {
  std::vector<int32_t> results(reqs.size(), INT32_MIN);
  std::vector<IoCompletion> done(q.depth());
  size_t next = 0, finished = 0;
  while (finished < reqs.size()) {
    while (next < reqs.size()) {
      Status s = q.Prepare(reqs[next]);
      if (s.code() == StatusCode::kRetry) break;
      EXPECT_TRUE(s.ok()) << s.ToString();
      if (!s.ok()) return results;
      ++next;
    }
    auto n = q.Wait(done, 1);
    EXPECT_TRUE(n.ok()) << n.status().ToString();
    if (!n.ok() || *n == 0) return results;
    for (size_t i = 0; i < *n; ++i) {
      results.at(done[i].user_data) = done[i].result;
      ++finished;
    }
  }
  return results;
}

class IoQueueTest : public ::testing::TestWithParam<Impl> {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }
  ScratchDir dir_;
};

TEST_P(IoQueueTest, WritesAndReadsByteExactAcrossSizes) {
  const std::vector<uint32_t> sizes = {4096,      8192,      16384,    65536,
                                       262144,    1u << 20,  4u << 20, 8u << 20};
  uint64_t total = 0;
  for (uint32_t s : sizes) total += s;
  int fd = OpenFile(dir_.File("data"), total);
  ASSERT_GE(fd, 0);
  auto q = MakeQueue(GetParam(), 8);  // fewer than the requests: exercises Retry
  ASSERT_NE(q, nullptr);

  std::vector<AlignedBuffer> src, dst;
  std::vector<IoRequest> writes, reads;
  uint64_t off = 0;
  for (size_t i = 0; i < sizes.size(); ++i) {
    src.push_back(RandomBuffer(sizes[i], 100 + i));
    dst.push_back(ZeroBuffer(sizes[i]));
    writes.push_back({IoOpcode::kWrite, false, fd, src[i].data(), sizes[i], off, i});
    reads.push_back({IoOpcode::kRead, false, fd, dst[i].data(), sizes[i], off, i});
    off += sizes[i];
  }
  auto wr = RunAll(*q, writes);
  for (size_t i = 0; i < sizes.size(); ++i) EXPECT_EQ(wr[i], static_cast<int32_t>(sizes[i]));
  auto rr = RunAll(*q, reads);
  for (size_t i = 0; i < sizes.size(); ++i) {
    EXPECT_EQ(rr[i], static_cast<int32_t>(sizes[i]));
    EXPECT_EQ(std::memcmp(src[i].data(), dst[i].data(), sizes[i]), 0) << "size " << sizes[i];
  }
  IoQueueStats st = q->stats();
  EXPECT_EQ(st.submitted, 2 * sizes.size());
  EXPECT_EQ(st.completed, 2 * sizes.size());
  EXPECT_EQ(st.errors, 0u);
  EXPECT_EQ(q->outstanding(), 0u);
  ::close(fd);
}

TEST_P(IoQueueTest, FixedBufferPathIsUsedInsideRegisteredRegionsOnly) {
  int fd = OpenFile(dir_.File("data"), 4 << 20);
  ASSERT_GE(fd, 0);
  auto q = MakeQueue(GetParam(), 16);
  ASSERT_NE(q, nullptr);
  // One allocation; only its first 2 MiB are registered, so a buffer can
  // straddle the registered region's end while staying in real memory.
  AlignedBuffer memory = RandomBuffer(3 << 20, 7);
  uint8_t* region = memory.data();
  const size_t region_bytes = 2 << 20;
  AlignedBuffer outside = RandomBuffer(64 << 10, 8);
  iovec iov{region, region_bytes};
  ASSERT_TRUE(q->RegisterBuffers(std::span<const iovec>(&iov, 1)).ok());

  // Two writes from inside the region (fixed), one from outside (plain),
  // one straddling the region's end (plain).
  std::vector<IoRequest> w = {
      {IoOpcode::kWrite, false, fd, region, 1 << 20, 0, 0},
      {IoOpcode::kWrite, false, fd, region + (1 << 20), 1 << 20, 1 << 20, 1},
      {IoOpcode::kWrite, false, fd, outside.data(), 64 << 10, 2 << 20, 2},
      {IoOpcode::kWrite, false, fd, region + region_bytes - 4096, 8192, 3 << 20, 3},
  };
  auto wr = RunAll(*q, w);
  EXPECT_EQ(wr[0], 1 << 20);
  EXPECT_EQ(wr[1], 1 << 20);
  EXPECT_EQ(wr[2], 64 << 10);
  EXPECT_EQ(wr[3], 8192);
  EXPECT_EQ(q->stats().fixed_buffer_ops, 2u);

  // Read back into the registered region (fixed reads) and compare.
  AlignedBuffer expect = ZeroBuffer(region_bytes);
  std::memcpy(expect.data(), region, region_bytes);
  std::memset(region, 0, region_bytes);
  std::vector<IoRequest> r = {
      {IoOpcode::kRead, false, fd, region, 2 << 20, 0, 0},
  };
  auto rr = RunAll(*q, r);
  EXPECT_EQ(rr[0], 2 << 20);
  EXPECT_EQ(std::memcmp(expect.data(), region, region_bytes), 0);
  EXPECT_EQ(q->stats().fixed_buffer_ops, 3u);

  // Unregister: the same buffer now takes the plain path.
  ASSERT_TRUE(q->RegisterBuffers({}).ok());
  rr = RunAll(*q, r);
  EXPECT_EQ(rr[0], 2 << 20);
  EXPECT_EQ(q->stats().fixed_buffer_ops, 3u);
  ::close(fd);
}

// The host tier's segment is a memfd mapping; io_uring must accept it as a
// fixed buffer.
TEST_P(IoQueueTest, MemfdSegmentAsFixedBuffer) {
  int fd = OpenFile(dir_.File("data"), 1 << 20);
  ASSERT_GE(fd, 0);
  int mfd = memfd_create("kvtier-test-segment", MFD_CLOEXEC);
  ASSERT_GE(mfd, 0);
  const size_t seg_bytes = 1 << 20;
  ASSERT_EQ(ftruncate(mfd, seg_bytes), 0);
  void* seg = mmap(nullptr, seg_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  ASSERT_NE(seg, MAP_FAILED);
  auto* p = static_cast<uint8_t*>(seg);
  for (size_t i = 0; i < seg_bytes; ++i) p[i] = static_cast<uint8_t>(i * 31 + 7);

  auto q = MakeQueue(GetParam(), 4);
  ASSERT_NE(q, nullptr);
  iovec iov{seg, seg_bytes};
  Status reg = q->RegisterBuffers(std::span<const iovec>(&iov, 1));
  ASSERT_TRUE(reg.ok()) << reg.ToString();
  auto wr = RunAll(*q, {{IoOpcode::kWrite, false, fd, p, 512 << 10, 0, 0}});
  EXPECT_EQ(wr[0], 512 << 10);
  auto rr = RunAll(*q, {{IoOpcode::kRead, false, fd, p + (512 << 10), 512 << 10, 0, 0}});
  EXPECT_EQ(rr[0], 512 << 10);
  EXPECT_EQ(std::memcmp(p, p + (512 << 10), 512 << 10), 0);
  EXPECT_EQ(q->stats().fixed_buffer_ops, 2u);
  ASSERT_TRUE(q->RegisterBuffers({}).ok());
  munmap(seg, seg_bytes);
  ::close(mfd);
  ::close(fd);
}

TEST_P(IoQueueTest, RegisteredFileIndex) {
  int fd = OpenFile(dir_.File("data"), 1 << 20);
  ASSERT_GE(fd, 0);
  auto q = MakeQueue(GetParam(), 4);
  ASSERT_NE(q, nullptr);
  ASSERT_TRUE(q->RegisterFiles(std::span<const int>(&fd, 1)).ok());
  AlignedBuffer src = RandomBuffer(8192, 3), dst = ZeroBuffer(8192);
  auto wr = RunAll(*q, {{IoOpcode::kWrite, true, 0, src.data(), 8192, 4096, 0}});
  EXPECT_EQ(wr[0], 8192);
  auto rr = RunAll(*q, {{IoOpcode::kRead, true, 0, dst.data(), 8192, 4096, 0}});
  EXPECT_EQ(rr[0], 8192);
  EXPECT_EQ(std::memcmp(src.data(), dst.data(), 8192), 0);
  // Index 1 was never registered.
  IoRequest bad{IoOpcode::kRead, true, 1, dst.data(), 4096, 0, 0};
  EXPECT_TRUE(q->Prepare(bad).IsInvalidArgument());
  ::close(fd);
}

TEST_P(IoQueueTest, FullQueueReturnsRetryAndRawResultsAreReported) {
  int fd = OpenFile(dir_.File("data"), 16384);
  ASSERT_GE(fd, 0);
  auto q = MakeQueue(GetParam(), 2);
  ASSERT_NE(q, nullptr);
  AlignedBuffer b = ZeroBuffer(3 * 8192);
  // Read of 8 KiB at 12 KiB in a 16 KiB file: short (4 KiB), not retried.
  ASSERT_TRUE(q->Prepare({IoOpcode::kRead, false, fd, b.data(), 8192, 12288, 1}).ok());
  // A closed descriptor: -EBADF.
  ASSERT_TRUE(q->Prepare({IoOpcode::kRead, false, 100000, b.data() + 8192, 4096, 0, 2}).ok());
  Status full = q->Prepare({IoOpcode::kRead, false, fd, b.data() + 16384, 4096, 0, 3});
  EXPECT_EQ(full.code(), StatusCode::kRetry);
  EXPECT_EQ(q->outstanding(), 2u);
  std::vector<IoCompletion> done(4);
  auto n = q->Wait(done, 2);
  ASSERT_TRUE(n.ok());
  ASSERT_EQ(*n, 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(done[i].result, done[i].user_data == 1 ? 4096 : -EBADF) << done[i].user_data;
  }
  EXPECT_EQ(q->stats().errors, 1u);
  EXPECT_EQ(q->outstanding(), 0u);
  EXPECT_EQ(q->Poll(done), 0u);
  ::close(fd);
}

TEST_P(IoQueueTest, RejectsBadRequestsAndRegistrations) {
  auto q = MakeQueue(GetParam(), 4);
  ASSERT_NE(q, nullptr);
  AlignedBuffer b = ZeroBuffer(4096);
  EXPECT_TRUE(q->Prepare({IoOpcode::kRead, false, 0, nullptr, 4096, 0, 0}).IsInvalidArgument());
  EXPECT_TRUE(q->Prepare({IoOpcode::kRead, false, 0, b.data(), 0, 0, 0}).IsInvalidArgument());
  EXPECT_TRUE(q->Prepare({IoOpcode::kRead, false, -1, b.data(), 4096, 0, 0}).IsInvalidArgument());
  iovec overlap[2] = {{b.data(), 4096}, {b.data() + 1024, 1024}};
  EXPECT_TRUE(q->RegisterBuffers(overlap).IsInvalidArgument());
  iovec empty{b.data(), 0};
  EXPECT_TRUE(q->RegisterBuffers(std::span<const iovec>(&empty, 1)).IsInvalidArgument());
}

INSTANTIATE_TEST_SUITE_P(Impls, IoQueueTest, ::testing::Values(Impl::kUring, Impl::kSync),
                         [](const auto& info) {
                           return info.param == Impl::kUring ? std::string("Uring")
                                                             : std::string("Sync");
                         });

TEST(IoQueueDefault, PicksIoUringWhenAvailable) {
  auto q = NewDefaultIoQueue(IoQueueOptions{});
  ASSERT_TRUE(q.ok());
  auto uring = NewUringIoQueue(IoQueueOptions{});
  EXPECT_EQ((*q)->name(), uring.ok() ? "uring" : "sync");
  EXPECT_TRUE(NewUringIoQueue(IoQueueOptions{0}).status().IsInvalidArgument());
  EXPECT_TRUE(NewSyncIoQueue(IoQueueOptions{0}).status().IsInvalidArgument());
}

TEST(BufferRegistry, FindsContainingPieceAndSplitsAtOneGiB) {
  BufferRegistry reg;
  // Fake addresses are fine: the registry never dereferences them.
  auto* base = reinterpret_cast<uint8_t*>(uintptr_t{1} << 40);
  iovec big{base, (3ull << 30) + 4096};
  iovec small{base + (4ull << 30), 8192};
  iovec regions[2] = {small, big};
  ASSERT_TRUE(reg.Set(regions).ok());
  ASSERT_EQ(reg.pieces().size(), 5u);  // 1 GiB x3 + 4 KiB, then `small`
  EXPECT_EQ(reg.Find(base, 4096), 0);
  EXPECT_EQ(reg.Find(base + (1ull << 30), 4096), 1);
  EXPECT_EQ(reg.Find(base + (1ull << 30) - 4096, 8192), -1);  // straddles a split
  EXPECT_EQ(reg.Find(base + (3ull << 30), 4096), 3);
  EXPECT_EQ(reg.Find(base + (4ull << 30), 8192), 4);
  EXPECT_EQ(reg.Find(base + (4ull << 30), 8193), -1);
  EXPECT_EQ(reg.Find(base - 4096, 4096), -1);
}

// --- FaultIoQueue --------------------------------------------------------

class FaultIoQueueTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(dir_.ok());
    fd_ = OpenFile(dir_.File("data"), kFileBytes);
    ASSERT_GE(fd_, 0);
    fault_ = std::make_unique<FaultIoQueue>(MakeQueue(Impl::kUring, 16), 42);
    src_ = RandomBuffer(kFileBytes, 1);
    dst_ = ZeroBuffer(kFileBytes);
    // Fill the file with known data through the unfaulted path.
    auto wr = RunAll(*fault_, {{IoOpcode::kWrite, false, fd_, src_.data(),
                                static_cast<uint32_t>(kFileBytes), 0, 0}});
    ASSERT_EQ(wr[0], static_cast<int32_t>(kFileBytes));
  }
  void TearDown() override {
    if (fd_ >= 0) ::close(fd_);
  }
  IoRequest Read(uint64_t block, uint64_t user_data) {
    return {IoOpcode::kRead, false, fd_, dst_.data() + block * 4096, 4096, block * 4096,
            user_data};
  }
  IoRequest Write(uint64_t block, uint64_t user_data) {
    return {IoOpcode::kWrite, false, fd_, src_.data() + block * 4096, 4096, block * 4096,
            user_data};
  }

  static constexpr uint64_t kFileBytes = 64 * 4096;
  ScratchDir dir_;
  int fd_ = -1;
  std::unique_ptr<FaultIoQueue> fault_;
  AlignedBuffer src_, dst_;
};

TEST_F(FaultIoQueueTest, EveryNthWriteFailsWithEnospc) {
  FaultRule rule;
  rule.kind = FaultKind::kWriteError;
  rule.error = ENOSPC;
  rule.every_nth = 3;
  size_t id = fault_->AddRule(rule);
  std::vector<IoRequest> w;
  for (uint64_t i = 0; i < 9; ++i) w.push_back(Write(i, i));
  auto res = RunAll(*fault_, w);
  for (uint64_t i = 0; i < 9; ++i) {
    EXPECT_EQ(res[i], (i + 1) % 3 == 0 ? -ENOSPC : 4096) << i;
  }
  EXPECT_EQ(fault_->fired(id), 3u);
  EXPECT_EQ(fault_->name(), "fault(uring)");
}

TEST_F(FaultIoQueueTest, ReadErrorInOffsetRangeOnly) {
  FaultRule rule;
  rule.kind = FaultKind::kReadError;
  rule.error = EIO;
  rule.offset_begin = 10 * 4096;
  rule.offset_end = 12 * 4096;
  fault_->AddRule(rule);
  std::vector<IoRequest> r;
  for (uint64_t i = 8; i < 14; ++i) r.push_back(Read(i, i - 8));
  auto res = RunAll(*fault_, r);
  for (uint64_t i = 8; i < 14; ++i) {
    EXPECT_EQ(res[i - 8], (i == 10 || i == 11) ? -EIO : 4096) << i;
  }
  // Writes are not candidates of a read rule.
  auto wr = RunAll(*fault_, {Write(10, 0)});
  EXPECT_EQ(wr[0], 4096);
}

TEST_F(FaultIoQueueTest, ShortReadAndBitFlip) {
  FaultRule short_read;
  short_read.kind = FaultKind::kShortRead;
  short_read.short_by = 1024;
  short_read.offset_begin = 0;
  short_read.offset_end = 4096;
  fault_->AddRule(short_read);
  FaultRule flip;
  flip.kind = FaultKind::kBitFlip;
  flip.flip_byte = 100;
  flip.offset_begin = 4096;
  flip.offset_end = 8192;
  fault_->AddRule(flip);
  auto res = RunAll(*fault_, {Read(0, 0), Read(1, 1), Read(2, 2)});
  EXPECT_EQ(res[0], 3072);
  EXPECT_EQ(res[1], 4096);
  EXPECT_EQ(res[2], 4096);
  // Block 1: exactly one bit of byte 100 differs.
  for (size_t i = 0; i < 4096; ++i) {
    uint8_t diff = src_.data()[4096 + i] ^ dst_.data()[4096 + i];
    if (i == 100) {
      EXPECT_EQ(__builtin_popcount(diff), 1);
    } else {
      ASSERT_EQ(diff, 0) << i;
    }
  }
  EXPECT_EQ(std::memcmp(src_.data() + 8192, dst_.data() + 8192, 4096), 0);
}

TEST_F(FaultIoQueueTest, ProbabilityIsSeededAndBounded) {
  auto pattern = [&](uint64_t seed) {
    FaultIoQueue q(MakeQueue(Impl::kSync, 16), seed);
    FaultRule rule;
    rule.kind = FaultKind::kReadError;
    rule.probability = 0.25;
    rule.max_fires = 1000;
    q.AddRule(rule);
    std::vector<IoRequest> r;
    for (uint64_t i = 0; i < 400; ++i) r.push_back(Read(i % 64, i));
    auto res = RunAll(q, r);
    std::vector<bool> failed;
    for (int32_t v : res) failed.push_back(v < 0);
    return failed;
  };
  auto a = pattern(7), b = pattern(7), c = pattern(8);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  size_t fails = 0;
  for (bool f : a) fails += f;
  EXPECT_GT(fails, 60u);   // expected 100
  EXPECT_LT(fails, 140u);

  FaultIoQueue capped(MakeQueue(Impl::kSync, 16), 1);
  FaultRule rule;
  rule.kind = FaultKind::kReadError;
  rule.max_fires = 2;
  size_t id = capped.AddRule(rule);
  auto res = RunAll(capped, {Read(0, 0), Read(1, 1), Read(2, 2), Read(3, 3)});
  EXPECT_EQ(res[0], -EIO);
  EXPECT_EQ(res[1], -EIO);
  EXPECT_EQ(res[2], 4096);
  EXPECT_EQ(res[3], 4096);
  EXPECT_EQ(capped.fired(id), 2u);
}

}  // namespace
}  // namespace kvtier
