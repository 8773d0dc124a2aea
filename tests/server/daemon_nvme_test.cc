// kvtierd with an NVMe tier: restart and SIGKILL under a write-heavy load.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <fstream>
#include <numeric>
#include <set>

#include "tests/server/daemon_nvme_util.h"

namespace kvtier {
namespace {

using testing::Audit;
using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;
using testing::Keys;
using testing::NvmeFlags;
using testing::StoreKeys;
using testing::StorePrompts;

TEST(DaemonNvmeTest, StoppedAndStartedAgainServesTheSameBlocks) {
  std::string dir;
  {
    Daemon d(NvmeFlags("write-through"));
    ASSERT_TRUE(d.running());
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    std::vector<uint8_t> buf((*ns)->block_bytes());
    for (uint32_t p = 0; p < 4; ++p) {
      auto keys = Keys(**ns, p, 16);
      std::vector<std::vector<uint8_t>> bufs(keys.size(), buf);
      std::vector<const uint8_t*> ptrs;
      for (size_t i = 0; i < keys.size(); ++i) {
        FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
        ptrs.push_back(bufs[i].data());
      }
      ASSERT_TRUE((*ns)->Store(keys, ptrs).ok());
    }
    c = Status::Unavailable("closed");  // drop the client before the restart
    EXPECT_EQ(d.Stop(), 0);
    // Start a second daemon over the same data dir.
    Daemon d2(NvmeFlags("write-through"), d.dir());
    ASSERT_TRUE(d2.running());
    auto [found, wrong] = Audit(d2.socket(), 4, 16);
    EXPECT_EQ(found, 64u);
    EXPECT_EQ(wrong, 0u);
    auto c2 = Client::Connect(d2.socket());
    auto st = (*c2)->Stats();
    ASSERT_TRUE(st.ok());
    ASSERT_EQ(st->tiers.size(), 2u);
    EXPECT_EQ(st->tiers[1].name, "nvme");
    // Operators see the recovery and the tier's health in /metrics.
    httplib::Client http("127.0.0.1", d2.admin_port());
    auto m = http.Get("/metrics");
    ASSERT_TRUE(m);
    EXPECT_NE(m->body.find("kvtier_tier_recovered_blocks{tier=\"nvme\"} 64"), std::string::npos);
    EXPECT_NE(m->body.find("kvtier_tier_admitting{tier=\"nvme\"} 1"), std::string::npos);
    EXPECT_NE(m->body.find("kvtier_tier_checksum_failures_total{tier=\"nvme\"} 0"), std::string::npos);
  }
}

TEST(DaemonNvmeTest, SigkillDuringWritesRestartsWithZeroWrongBlocks) {
  Daemon d(NvmeFlags("write-through"));
  ASSERT_TRUE(d.running());
  // A writer process stores prompts as fast as it can.
  pid_t writer = fork();
  if (writer == 0) {
    std::thread([&] {
      auto c = Client::Connect(d.socket());
      if (!c.ok()) return;
      auto ns = (*c)->OpenNamespace(DemoSpec());
      std::vector<std::vector<uint8_t>> bufs(16, std::vector<uint8_t>((*ns)->block_bytes()));
      for (uint32_t p = 0; p < 1000; ++p) {
        auto keys = Keys(**ns, p, 16);
        std::vector<const uint8_t*> ptrs;
        for (size_t i = 0; i < keys.size(); ++i) {
          FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
          ptrs.push_back(bufs[i].data());
        }
        // The host tier fills with blocks still being written to NVMe:
        // back off and retry, as an engine would.
        while (!(*ns)->Store(keys, ptrs).ok())
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }).join();
    _exit(0);
  }
  // Kill once the NVMe tier holds a good number of blocks, writes still going.
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    bool enough = false;
    std::thread([&] {
      auto c = Client::Connect(d.socket());
      auto st = c.ok() ? (*c)->Stats() : Result<RemoteStats>(Status::Unavailable("down"));
      enough = st.ok() && st->tiers.size() == 2 && st->tiers[1].blocks > 2500;
    }).join();
    if (enough) break;
  }
  d.Kill();  // SIGKILL in the middle of writes
  kill(writer, SIGKILL);
  waitpid(writer, nullptr, 0);

  Daemon d2(NvmeFlags("write-through"), d.dir());
  ASSERT_TRUE(d2.running());
  auto c = Client::Connect(d2.socket());
  auto st = (*c)->Stats();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->tiers.size(), 2u);
  const uint64_t on_nvme = st->tiers[1].blocks;
  EXPECT_GT(on_nvme, 2048u) << "the writer should have gone past the host tier's size";
  auto [found, wrong] = Audit(d2.socket(), 1000, 16);
  EXPECT_EQ(wrong, 0u);
  // Every block whose index entry was written is served.
  EXPECT_EQ(found, on_nvme);
}

// Lookups in flight together (StartLookup) whose blocks the daemon must read
// back from NVMe: all answered, in any order of Wait(), byte-exact, and the
// NVMe tier counts the promotions.
TEST(DaemonNvmeTest, LookupsInFlightTogetherPromoteFromNvme) {
  Daemon d(NvmeFlags("write-through"));
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  // 12 prompts of 256 32-KiB blocks: 96 MiB through a 64 MiB host tier, so
  // the first prompts stay only on NVMe (written through before eviction).
  constexpr size_t kBlocks = 256;
  for (uint32_t p = 0; p < 12; ++p) {
    StorePrompts(**ns, p, 1, kBlocks);
    for (int i = 0; i < 5000; ++i) {  // let the write-through catch up
      auto st = (*c)->Stats();
      ASSERT_TRUE(st.ok());
      if (st->tiers[1].blocks >= (p + 1) * kBlocks) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  auto before = (*c)->Stats();
  ASSERT_TRUE(before.ok());
  std::vector<PendingLookup> pending;
  for (uint32_t p = 0; p < 3; ++p) {
    auto keys = Keys(**ns, p, kBlocks);
    auto pl = (*ns)->StartLookup(keys);
    ASSERT_TRUE(pl.ok()) << pl.status().ToString();
    pending.push_back(std::move(pl).value());
  }
  // Other calls go on while the lookups are in flight.
  ASSERT_TRUE((*c)->Ping().ok());
  std::vector<uint8_t> want((*ns)->block_bytes());
  for (int p = 2; p >= 0; --p) {
    auto lease = pending[p].Wait();
    ASSERT_TRUE(lease.ok()) << lease.status().ToString();
    ASSERT_EQ(lease->size(), kBlocks) << "prompt " << p;
    auto keys = Keys(**ns, p, kBlocks);
    std::vector<std::vector<uint8_t>> out(kBlocks, std::vector<uint8_t>(want.size()));
    std::vector<uint8_t*> dsts;
    for (auto& o : out) dsts.push_back(o.data());
    ASSERT_TRUE((*ns)->Load(*lease, dsts).ok());
    for (size_t i = 0; i < kBlocks; ++i) {
      FillFromKey(keys[i], want.data(), want.size());
      ASSERT_EQ(out[i], want) << "prompt " << p << " block " << i;
    }
    EXPECT_TRUE(pending[p].Wait().status().IsInvalidArgument());  // waited already
  }
  auto after = (*c)->Stats();
  ASSERT_TRUE(after.ok());
  EXPECT_GT(after->tiers[1].hits, before->tiers[1].hits) << "no block came from NVMe";
}

// A lookup dropped before its answer is waited for leaves no pins behind,
// whether the answer had arrived or not; a default PendingLookup has nothing
// to wait for.
TEST(DaemonNvmeTest, DroppedPendingLookupsLeaveNoPins) {
  Daemon d(NvmeFlags("write-through"));
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  StorePrompts(**ns, 0, 2, 8);
  {
    auto a = (*ns)->StartLookup(Keys(**ns, 0, 8));
    auto b = (*ns)->StartLookup(Keys(**ns, 1, 8));
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE((*c)->Ping().ok());  // b's answer has likely arrived by now
    PendingLookup moved = std::move(*b);
    *a = std::move(moved);  // drops a's call; a now holds b's
  }
  Result<RemoteStats> st = Status::Internal("no stats yet");
  for (int i = 0; i < 100; ++i) {
    st = (*c)->Stats();
    ASSERT_TRUE(st.ok());
    if (st->leases_open == 0 && st->pinned_blocks == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(st->leases_open, 0u);
  EXPECT_EQ(st->pinned_blocks, 0u);
  PendingLookup none;
  EXPECT_TRUE(none.Wait().status().IsInvalidArgument());
  // Lookup() (StartLookup + Wait) still answers.
  auto lease = (*ns)->Lookup(Keys(**ns, 1, 8));
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->size(), 8u);
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

// Two daemons with different data dirs and the same --nvme-path: the second
// is refused with a clear error and the first keeps every block (before, the
// second reformatted the file and destroyed the first's blocks).
TEST(DaemonNvmeLockTest, SecondDaemonOnTheSameNvmePathIsRefused) {
  char tmpl[] = "/tmp/kvtier-nvme-lock-XXXXXX";
  const std::string shared = mkdtemp(tmpl);
  const std::string nvme = shared + "/shared-nvme.dat";
  std::vector<std::string> flags = NvmeFlags("write-through");
  flags.insert(flags.end(), {"--nvme-path", nvme});
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  {
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 0, 16)).ok());
  }
  const std::string second = shared + "/second";
  // timeout: without the lock the second daemon would start and serve on.
  std::string cmd = "timeout 10 " + std::string(KVTIERD_PATH) + " --socket " + second + ".sock --data-dir " +
                    second + " --host-capacity 64M --host-region 4M --admin off --nvme-capacity 256M" +
                    " --nvme-path " + nvme + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  ASSERT_NE(p, nullptr);
  std::string out;
  char buf[512];
  while (fgets(buf, sizeof buf, p)) out += buf;
  const int status = pclose(p);
  EXPECT_NE(WEXITSTATUS(status), 0) << out;
  EXPECT_NE(out.find("is locked by another process"), std::string::npos) << out;
  auto [found, wrong] = Audit(d.socket(), 1, 16);
  EXPECT_EQ(found, 16u);
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(d.Stop(), 0);
  std::error_code ec;
  std::filesystem::remove_all(shared, ec);
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

// The host tier serves whatever state the NVMe side is in: a device that
// cannot be opened, or a damaged index, leaves the daemon up without its NVMe
// tier and says so (before, the daemon refused to start).
std::pair<bool, std::string> StoresAndLoadsFromHost(const Daemon& d) {
  auto c = Client::Connect(d.socket());
  if (!c.ok()) return {false, c.status().ToString()};
  auto ns = (*c)->OpenNamespace(DemoSpec());
  if (!ns.ok()) return {false, ns.status().ToString()};
  Status stored = StoreKeys(**ns, Keys(**ns, 9, 4));
  if (!stored.ok()) return {false, stored.ToString()};
  auto stats = (*c)->Stats();
  if (!stats.ok()) return {false, stats.status().ToString()};
  auto [found, wrong] = Audit(d.socket(), 10, 4);
  return {found == 4 && wrong == 0 && stats->tiers.size() == 1,
          "found " + std::to_string(found) + ", wrong " + std::to_string(wrong) + ", tiers " +
              std::to_string(stats->tiers.size())};
}

void ExpectDegraded(const Daemon& d, const std::string& why) {
  httplib::Client http("127.0.0.1", d.admin_port());
  auto h = http.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_NE(h->body.find("degraded: nvme tier: not started"), std::string::npos) << h->body;
  EXPECT_NE(h->body.find(why), std::string::npos) << h->body;
  auto m = http.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("\nkvtier_degraded 1\n"), std::string::npos);
  EXPECT_NE(m->body.find("\nkvtier_ready 1\n"), std::string::npos);
}

TEST(DaemonNvmeFaultTest, DeviceErrorAtStartLeavesTheHostTierServing) {
  std::vector<std::string> flags = NvmeFlags("write-through");
  flags.insert(flags.end(), {"--nvme-path", "/proc/kvtier-no-such-dir/nvme.dat"});
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  auto [ok, what] = StoresAndLoadsFromHost(d);
  EXPECT_TRUE(ok) << what;
  ExpectDegraded(d, "IOError");
  EXPECT_EQ(d.Stop(), 0);
}

// An index that cannot even be opened (its directory replaced by a file; a
// damaged one is rebuilt instead: DaemonIndexDamageTest).
TEST(DaemonNvmeFaultTest, UnopenableIndexAtStartLeavesTheHostTierServing) {
  Daemon d(NvmeFlags("write-through"));
  ASSERT_TRUE(d.running());
  auto [found, wrong] = Audit(d.socket(), 1, 1);  // opens the namespace
  (void)found;
  (void)wrong;
  EXPECT_EQ(d.Stop(), 0);
  const std::string index = d.dir() + "/data/nvme-index";
  std::filesystem::remove_all(index);
  std::ofstream(index) << "not a database";
  Daemon d2(NvmeFlags("write-through"), d.dir());
  ASSERT_TRUE(d2.running());
  auto [ok, what] = StoresAndLoadsFromHost(d2);
  EXPECT_TRUE(ok) << what;
  ExpectDegraded(d2, "nvme");
  EXPECT_EQ(d2.Stop(), 0);
}

}  // namespace
}  // namespace kvtier
