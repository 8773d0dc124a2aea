// Namespace lifecycle (cache/namespace_registry.h): namespaces nobody uses
// are reclaimed, ids are reused only when no block names them, and the
// registry and its file stay bounded however many namespaces come and go.
#include "cache/namespace_registry.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <thread>
#include <fstream>
#include <numeric>

#include "cache/cache.h"
#include "tests/cache/cache_test_util.h"
#include "tests/tiers/nvme_test_util.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using testing::SmallSpec;

constexpr uint64_t kSec = 1000000000ull;

NamespaceSpec Spec(int i) {
  NamespaceSpec s = SmallSpec();
  s.model_id = "model-" + std::to_string(i);
  return s;
}

class NamespaceLifecycleTest : public ::testing::Test {
 protected:
  void TearDown() override { cache_.reset(); }

  void Open(bool with_file) {
    cache_.reset();
    HostShmOptions ho;
    ho.capacity_bytes = 4 << 20;  // 256 blocks of 16 KiB
    ho.region_bytes = 1 << 20;
    CacheOptions o;
    o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "lru"});
    o.clock = [this] { return now_; };
    o.namespace_idle_reclaim_ns = 1 * kSec;
    if (with_file) o.namespace_file = dir_ + "/namespaces";
    auto c = Cache::Create(std::move(o));
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    cache_ = std::move(c).value();
  }

  // Stores one 16 KiB block in `ns`.
  void StoreOne(NamespaceId ns, uint32_t salt) {
    KeyHasher h(*cache_->GetNamespace(ns));
    std::vector<uint32_t> tokens(16);
    std::iota(tokens.begin(), tokens.end(), salt);
    std::vector<BlockKey> keys;
    h.Hash(tokens, &keys);
    std::vector<uint64_t> sizes{16 << 10};
    auto r = cache_->Reserve(ns, keys, sizes);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r)).ok());
  }

  testing::ScratchDir scratch_;  // removed after the cache is gone
  const std::string dir_ = scratch_.path();
  uint64_t now_ = 1000 * kSec;
  std::unique_ptr<Cache> cache_;
};

TEST_F(NamespaceLifecycleTest, HundredThousandAbandonedNamespacesLeaveTheRegistryBounded) {
  Open(/*with_file=*/false);
  for (int i = 0; i < 100000; ++i) {
    auto ns = cache_->OpenNamespace(Spec(i));
    ASSERT_TRUE(ns.ok()) << i << ": " << ns.status().ToString();
    if (i % 10 == 0) StoreOne(*ns, static_cast<uint32_t>(i));  // evicted later by others
    now_ += kSec / 1000;  // 1000 namespaces a second, each used once
  }
  NamespaceRegistry& r = cache_->namespaces();
  // About one idle period of namespaces is alive, plus those whose block is
  // still cached (the tier holds 256): never more than a few thousand.
  EXPECT_LE(r.live(), 1250u + 256u);
  EXPECT_LE(r.id_bound(), 2000u);  // ids are reused
  EXPECT_GE(r.reclaimed(), 98000u);
  // Every namespace with a block in the tier is alive.
  size_t with_blocks = 0;
  for (const NamespaceInfo& info : r.List()) with_blocks += info.blocks > 0;
  EXPECT_EQ(with_blocks, cache_->Stats().tiers[0].blocks);
}

TEST_F(NamespaceLifecycleTest, HeldOrNonEmptyNamespacesAreKeptIdleEmptyOnesReclaimed) {
  Open(/*with_file=*/false);
  NamespaceId held = *cache_->OpenNamespace(Spec(1), /*hold=*/true);
  NamespaceId full = *cache_->OpenNamespace(Spec(2));
  NamespaceId idle = *cache_->OpenNamespace(Spec(3));
  StoreOne(full, 7);
  now_ += 2 * kSec;
  EXPECT_EQ(cache_->namespaces().Reclaim(), 1u);
  EXPECT_TRUE(cache_->GetNamespace(held).ok());
  EXPECT_TRUE(cache_->GetNamespace(full).ok());
  EXPECT_TRUE(cache_->GetNamespace(idle).status().IsNotFound());
  // A reclaimed id answers NotFound to the block path.
  std::vector<BlockKey> keys(1);
  EXPECT_TRUE(cache_->Acquire(idle, keys).status().IsNotFound());
  // Its id is reused by the next new namespace.
  NamespaceId next = *cache_->OpenNamespace(Spec(4));
  EXPECT_EQ(next, idle);
  // Released and idle: reclaimed.
  cache_->CloseNamespace(held);
  now_ += 2 * kSec;
  EXPECT_EQ(cache_->namespaces().Reclaim(), 2u);  // held, and Spec(4)
  EXPECT_TRUE(cache_->GetNamespace(held).status().IsNotFound());
  // The namespace with a block lives until its last block is gone, then
  // for one more idle period.
  auto l = cache_->Acquire(full, keys);
  ASSERT_TRUE(l.ok());
  NamespaceId other = *cache_->OpenNamespace(Spec(5), true);
  for (uint32_t i = 0; i < 300; ++i) StoreOne(other, 1000 + i * 16);  // evicts it
  EXPECT_EQ(cache_->namespaces().Reclaim(), 0u);  // gone just now: not idle yet
  now_ += 2 * kSec;
  EXPECT_EQ(cache_->namespaces().Reclaim(), 1u);
  EXPECT_TRUE(cache_->GetNamespace(full).status().IsNotFound());
  EXPECT_TRUE(cache_->GetNamespace(other).ok());
}

TEST_F(NamespaceLifecycleTest, FileStaysBoundedAndRestartKeepsLiveIds) {
  Open(/*with_file=*/true);
  NamespaceId kept = *cache_->OpenNamespace(Spec(0));
  StoreOne(kept, 1);
  for (int i = 1; i < 1500; ++i) {
    ASSERT_TRUE(cache_->OpenNamespace(Spec(i)).ok());
    now_ += kSec / 100;
  }
  cache_->namespaces().Reclaim();
  const size_t live = cache_->namespaces().live();
  EXPECT_LE(live, 130u);
  std::ifstream in(dir_ + "/namespaces");
  size_t lines = 0;
  for (std::string line; std::getline(in, line);) ++lines;
  EXPECT_LE(lines, 2 * live + 1024 + 130);
  // A restart knows the same live namespaces under the same ids.
  std::vector<NamespaceInfo> before = cache_->namespaces().List();
  Open(/*with_file=*/true);
  std::vector<NamespaceInfo> after = cache_->namespaces().List();
  ASSERT_EQ(after.size(), before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    EXPECT_EQ(after[i].id, before[i].id);
    EXPECT_EQ(after[i].spec.model_id, before[i].spec.model_id);
  }
  EXPECT_EQ(*cache_->OpenNamespace(Spec(0)), kept);
}

// Registration holds the registry's lock while it appends to the file; the
// block path never takes that lock. The file is made a FIFO, so the append
// blocks until someone reads: meanwhile stores and acquires go on.
TEST_F(NamespaceLifecycleTest, RegistrationDoesNotBlockAcquires) {
  Open(/*with_file=*/true);
  NamespaceId ns = *cache_->OpenNamespace(Spec(0));
  StoreOne(ns, 1);
  const std::string file = dir_ + "/namespaces";
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::mkfifo(file.c_str(), 0600), 0);
  std::atomic<bool> registered{false};
  std::thread registrar([&] {
    (void)cache_->OpenNamespace(Spec(1));  // blocks in the append until read
    registered = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_FALSE(registered.load());  // stuck in the append, holding the lock
  // A store and an acquire of the existing namespace complete meanwhile.
  std::vector<uint32_t> tokens(16);
  std::iota(tokens.begin(), tokens.end(), 1u);
  std::vector<BlockKey> keys;
  KeyHasher(Spec(0)).Hash(tokens, &keys);
  auto acquired = std::async(std::launch::async, [&] { return cache_->Acquire(ns, keys)->size(); });
  ASSERT_EQ(acquired.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_EQ(acquired.get(), 1u);
  std::vector<uint32_t> more(16);
  std::iota(more.begin(), more.end(), 500u);
  std::vector<BlockKey> new_keys;
  KeyHasher(Spec(0)).Hash(more, &new_keys);
  auto stored = std::async(std::launch::async, [&] {
    auto r = cache_->Reserve(ns, new_keys, std::vector<uint64_t>{16 << 10});
    return r.ok() && r->reserved() == 1 && cache_->Commit(*r, std::vector<uint64_t>{0}).ok();
  });
  ASSERT_EQ(stored.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  EXPECT_TRUE(stored.get());
  EXPECT_FALSE(registered.load());
  // Let the registrar finish (its fsync of a FIFO fails: IOError, nothing kept).
  int fd = ::open(file.c_str(), O_RDONLY);
  ASSERT_GE(fd, 0);
  char buf[4096];
  while (!registered.load()) (void)::read(fd, buf, sizeof(buf));
  ::close(fd);
  registrar.join();
}

}  // namespace
}  // namespace kvtier
