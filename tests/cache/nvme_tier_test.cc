// The cache's NVMe tier on a real file in a temporary directory: demotion,
// promotion, restart recovery, corruption and injected device errors.
#include "cache/nvme_tier.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <limits>
#include <numeric>

#include "tests/cache/cache_test_util.h"
#include "tiers/fault_io_queue.h"
#include "tiers/nvme_index.h"
#include "tiers/uring_io_queue.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::MatchesKey;
using testing::SmallSpec;

constexpr uint64_t kBlock = 16 << 10;

class NvmeCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // A real file system (the build dir's), not a tmpfs-only assumption.
    dir_ = (std::filesystem::current_path() / ("nvme-cache-test-" + std::to_string(getpid()) + "-" +
                                               ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    KeyHasher h(SmallSpec());
    std::vector<uint32_t> tokens(16 * 600);
    std::iota(tokens.begin(), tokens.end(), 1);
    h.Hash(tokens, &keys_);
  }
  void TearDown() override {
    cache_.reset();
    std::filesystem::remove_all(dir_);
  }

  // host: `host_blocks` slots of 16 KiB; NVMe: 16 MiB file.
  void Open(bool write_through, uint64_t host_blocks = 64, std::unique_ptr<IoQueue> queue = nullptr,
            std::string admission = "always", bool durable_commit = false) {
    cache_.reset();
    HostShmOptions ho;
    ho.capacity_bytes = host_blocks * kBlock;
    ho.region_bytes = host_blocks * kBlock;
    CacheOptions o;
    o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "lru"});
    o.namespace_file = dir_ + "/namespaces";
    o.log_warning = [](const std::string&) {};
    NvmeTierOptions n;
    n.store.path = dir_ + "/nvme.dat";
    n.store.capacity_bytes = 16 << 20;
    n.store.region_bytes = 1 << 20;
    n.store.payload_classes = {kBlock};
    n.index_path = dir_ + "/index";
    n.write_through = write_through;
    n.durable_commit = durable_commit;
    n.high_watermark = 0.5;
    n.admission = admission;
    n.queue = std::move(queue);
    o.nvme = std::move(n);
    auto c = Cache::Create(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cache_ = std::move(c).value();
    auto ns = cache_->OpenNamespace(SmallSpec());
    ASSERT_TRUE(ns.ok());
    ns_ = *ns;
  }

  void Store(size_t first, size_t n) {
    auto r = cache_->Reserve(ns_, std::span(keys_).subspan(first, n), std::vector<uint64_t>(n, kBlock));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r)).ok());
  }

  // Acquires keys[first, first+n), waits for promotions, verifies every byte
  // and returns the hit length.
  size_t AcquireVerified(size_t first, size_t n) {
    auto l = cache_->Acquire(ns_, std::span(keys_).subspan(first, n));
    EXPECT_TRUE(l.ok());
    l->Wait();
    for (const auto& b : l->blocks()) {
      EXPECT_EQ(cache_->tier_kind(b.tier), TierKind::kHost);
      const uint8_t* p = cache_->Address(b.tier, b.offset);
      EXPECT_TRUE(p != nullptr && MatchesKey(b.key, p, b.size)) << "wrong bytes for " << b.key.ToHex();
    }
    return l->size();
  }

  TierStats Nvme() { return cache_->Stats().tiers.back(); }

  std::string dir_;
  std::unique_ptr<Cache> cache_;
  NamespaceId ns_ = 0;
  std::vector<BlockKey> keys_;
};

TEST_F(NvmeCacheTest, WriteThroughThenEvictionThenPromotionIsByteExact) {
  Open(/*write_through=*/true);
  Store(0, 40);
  cache_->DrainNvme();
  EXPECT_EQ(Nvme().demotions, 40u);
  Store(40, 64);  // host holds 64: the first 40 are evicted to NVMe-only
  cache_->DrainNvme();
  CacheStats s = cache_->Stats();
  EXPECT_GE(s.tiers[0].evictions, 40u);
  EXPECT_EQ(s.index_entries, 104u) << "evicted blocks must live on in the NVMe tier";
  EXPECT_EQ(AcquireVerified(0, 40), 40u);
  EXPECT_EQ(Nvme().promotions, 40u);
  EXPECT_EQ(Nvme().checksum_failures, 0u);
}

TEST_F(NvmeCacheTest, WriteBackDemotesColdBlocksBeforeTheHostEvictsThem) {
  Open(/*write_through=*/false);
  // Store in small steps so the background writer can keep up, as it would
  // between requests.
  for (size_t i = 0; i < 160; i += 8) {
    Store(i, 8);
    cache_->DrainNvme();
  }
  TierStats n = Nvme();
  EXPECT_GT(n.demotions, 60u);
  // The oldest blocks are no longer in host memory but still hit, byte-exact.
  size_t hit = AcquireVerified(0, 32);
  EXPECT_EQ(hit, 32u);
  EXPECT_GE(Nvme().promotions, 1u);
}

TEST_F(NvmeCacheTest, RestartRecoversEveryIndexedBlock) {
  Open(/*write_through=*/true);
  Store(0, 50);
  cache_->DrainNvme();
  Open(/*write_through=*/true);  // a new cache over the same files
  TierStats n = Nvme();
  EXPECT_EQ(n.recovered, 50u);
  EXPECT_EQ(n.recovery_dropped, 0u);
  EXPECT_EQ(ns_, 0u) << "namespace ids survive the restart";
  EXPECT_EQ(AcquireVerified(0, 50), 50u);
}

TEST_F(NvmeCacheTest, FlippedBitIsDetectedAndNeverServed) {
  Open(/*write_through=*/true);
  Store(0, 10);
  cache_->DrainNvme();
  cache_.reset();
  // Find block 5's extent in the index and flip one payload bit in the file.
  uint64_t offset = 0;
  {
    auto idx = NvmeIndex::Open(NvmeIndexOptions{dir_ + "/index", false, false});
    ASSERT_TRUE(idx.ok()) << idx.status().ToString();
    ExtentTag tag;
    std::memcpy(tag.data(), &keys_[5].lo, 8);
    std::memcpy(tag.data() + 8, &keys_[5].hi, 8);
    auto rec = (*idx)->Get(tag);
    ASSERT_TRUE(rec.ok());
    offset = rec->offset;
  }
  int fd = open((dir_ + "/nvme.dat").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte;
  const off_t at = static_cast<off_t>(offset + 4096 + 777);
  ASSERT_EQ(pread(fd, &byte, 1, at), 1);
  byte ^= 0x04;
  ASSERT_EQ(pwrite(fd, &byte, 1, at), 1);
  close(fd);
  Open(/*write_through=*/true);
  EXPECT_EQ(Nvme().recovered, 10u);  // headers are fine; payloads are checked on read
  EXPECT_EQ(AcquireVerified(0, 10), 5u) << "the prefix ends at the corrupted block";
  EXPECT_EQ(Nvme().checksum_failures, 1u);
  EXPECT_EQ(AcquireVerified(5, 1), 0u) << "the corrupted block was quarantined";
  EXPECT_EQ(AcquireVerified(6, 4), 4u);
}

TEST_F(NvmeCacheTest, EnospcStopsAdmissionAndNothingHalfWrittenIsVisible) {
  auto uring = NewUringIoQueue(IoQueueOptions{256});
  ASSERT_TRUE(uring.ok()) << uring.status().ToString();
  auto fault = std::make_unique<FaultIoQueue>(std::move(uring).value());
  FaultRule enospc;
  enospc.kind = FaultKind::kWriteError;
  enospc.error = ENOSPC;
  enospc.offset_begin = 1 << 20;  // spare the superblocks at the start of the file
  fault->AddRule(enospc);
  Open(/*write_through=*/true, 64, std::move(fault));
  Store(0, 20);
  cache_->DrainNvme();
  TierStats n = Nvme();
  EXPECT_FALSE(n.admitting);
  EXPECT_GE(n.io_errors, 1u);
  EXPECT_EQ(n.demotions, 0u);
  EXPECT_EQ(n.blocks, 0u);
  // The host tier keeps serving.
  EXPECT_EQ(AcquireVerified(0, 20), 20u);
  // Nothing reached the index: a restart recovers nothing.
  Open(/*write_through=*/true);
  EXPECT_EQ(Nvme().recovered, 0u);
}

// write-through (durable commits): Commit answers OK once the blocks are on
// NVMe and indexed (the NVMe tier holds them when it returns); when NVMe
// refuses (ENOSPC here) it answers the error, the blocks still committed to
// the host tier; with a callback it is told the same, asynchronously.
TEST_F(NvmeCacheTest, DurableCommitAnswersOnceWrittenOrSaysWhyNot) {
  Open(/*write_through=*/true, 64, nullptr, "always", /*durable_commit=*/true);
  ASSERT_TRUE(cache_->durable_commits());
  Store(0, 10);  // asserts Commit returned OK
  EXPECT_EQ(Nvme().blocks, 10u) << "Commit returned before the blocks were on NVMe";
  auto r = cache_->Reserve(ns_, std::span(keys_).subspan(10, 5), std::vector<uint64_t>(5, kBlock));
  ASSERT_TRUE(r.ok());
  std::promise<Status> told;
  ASSERT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r), [&](Status s) { told.set_value(s); }).ok());
  EXPECT_TRUE(told.get_future().get().ok());
  EXPECT_EQ(Nvme().blocks, 15u);

  auto uring = NewUringIoQueue(IoQueueOptions{256});
  ASSERT_TRUE(uring.ok()) << uring.status().ToString();
  auto fault = std::make_unique<FaultIoQueue>(std::move(uring).value());
  FaultRule enospc;
  enospc.kind = FaultKind::kWriteError;
  enospc.error = ENOSPC;
  enospc.offset_begin = 1 << 20;
  fault->AddRule(enospc);
  Open(/*write_through=*/true, 64, std::move(fault), "always", /*durable_commit=*/true);
  auto r2 = cache_->Reserve(ns_, std::span(keys_).subspan(20, 4), std::vector<uint64_t>(4, kBlock));
  ASSERT_TRUE(r2.ok());
  Status st = cache_->Commit(*r2, FillReserved(*cache_, *r2));
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("not durable on NVMe"), std::string::npos) << st.ToString();
  EXPECT_EQ(AcquireVerified(20, 4), 4u) << "committed to the host tier either way";
  // Admission stopped: the next commit is refused at once, with the reason.
  auto r3 = cache_->Reserve(ns_, std::span(keys_).subspan(30, 2), std::vector<uint64_t>(2, kBlock));
  ASSERT_TRUE(r3.ok());
  Status st3 = cache_->Commit(*r3, FillReserved(*cache_, *r3));
  EXPECT_EQ(st3.code(), StatusCode::kUnavailable) << st3.ToString();
}

// A promotion that finds no host slot (every slot pinned) is a miss and
// leaves no pin behind (before, each such miss pinned its block for good).
TEST_F(NvmeCacheTest, PromotionWithoutAHostSlotLeavesNoPin) {
  Open(/*write_through=*/true, 64);
  Store(0, 40);
  cache_->DrainNvme();
  Store(40, 64);  // host holds 40..103; 0..39 live on NVMe only
  cache_->DrainNvme();
  {
    auto hold = cache_->Acquire(ns_, std::span(keys_).subspan(40, 64));
    ASSERT_TRUE(hold.ok());
    hold->Wait();
    ASSERT_EQ(hold->size(), 64u);  // every host slot pinned
    EXPECT_EQ(AcquireVerified(0, 10), 0u) << "no slot to promote into: a miss";
    EXPECT_EQ(AcquireVerified(0, 10), 0u);
  }
  EXPECT_EQ(cache_->Stats().pinned_blocks, 0u) << "the failed promotions pinned their blocks";
  EXPECT_EQ(AcquireVerified(0, 10), 10u) << "the blocks are still on NVMe and now promote";
  EXPECT_EQ(cache_->Stats().pinned_blocks, 0u);
}

// A transient read error is a miss, not proof of damage: the block keeps its
// record and is served by the next lookup (before, its record was deleted).
TEST_F(NvmeCacheTest, TransientReadErrorKeepsTheBlock) {
  auto uring = NewUringIoQueue(IoQueueOptions{256});
  ASSERT_TRUE(uring.ok()) << uring.status().ToString();
  auto fault = std::make_unique<FaultIoQueue>(std::move(uring).value());
  FaultIoQueue* f = fault.get();
  Open(/*write_through=*/true, 64, std::move(fault));
  Store(0, 40);
  cache_->DrainNvme();
  Store(40, 64);  // 0..39 on NVMe only
  cache_->DrainNvme();
  FaultRule eio;
  eio.kind = FaultKind::kReadError;
  eio.error = EIO;
  eio.max_fires = 1;
  size_t rule = f->AddRule(eio);
  EXPECT_EQ(AcquireVerified(0, 5), 5u) << "one failed read is retried and served";
  EXPECT_EQ(f->fired(rule), 1u);
  EXPECT_EQ(Nvme().io_errors, 1u);
  f->ClearRules();
  cache_->DrainNvme();
  Store(200, 64);  // 0..4 pushed out to NVMe only again
  cache_->DrainNvme();
  // Every attempt fails (each read and its two retries): a miss, nothing lost.
  eio.max_fires = std::numeric_limits<uint64_t>::max();
  rule = f->AddRule(eio);
  EXPECT_EQ(AcquireVerified(0, 5), 0u) << "the blocks' reads all failed: a miss";
  TierStats n = Nvme();
  EXPECT_EQ(n.io_errors, 1u + 5 * 3) << "5 blocks, each read 3 times";
  EXPECT_EQ(n.checksum_failures, 0u);
  f->ClearRules();
  EXPECT_EQ(AcquireVerified(0, 5), 5u) << "the blocks kept their records and are served";
  EXPECT_EQ(cache_->Stats().pinned_blocks, 0u);
  // Still recorded across a restart too.
  cache_->DrainNvme();
  Open(/*write_through=*/true, 64);
  EXPECT_GE(Nvme().recovered, 40u);
}

TEST_F(NvmeCacheTest, SecondSightingAdmitsOnlyReusedBlocks) {
  Open(/*write_through=*/false, 64, nullptr, "second-sighting");
  Store(0, 40);           // above the 50% watermark: cold blocks are considered
  cache_->DrainNvme();
  EXPECT_EQ(Nvme().demotions, 0u) << "first sighting is refused";
  EXPECT_EQ(AcquireVerified(0, 10), 10u);  // blocks 0..9 are reused
  cache_->DrainNvme();
  // Blocks refused once and reused since are admitted on their second sighting.
  TierStats n = Nvme();
  EXPECT_GE(n.demotions, 1u);
  EXPECT_LE(n.demotions, 10u);
}

}  // namespace
}  // namespace kvtier
