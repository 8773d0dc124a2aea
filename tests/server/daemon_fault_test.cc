// kvtierd through disk faults, against a real daemon: a full data-dir file
// system (a real small tmpfs), a damaged NVMe index, and write-policy
// durability across kill -9 and SIGTERM.
#include <httplib.h>
#include <signal.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/server/daemon_nvme_util.h"
#include "tests/small_fs.h"

namespace kvtier {
namespace {

using testing::Audit;
using testing::Daemon;
using testing::DemoSpec;
using testing::Keys;
using testing::NvmeFlags;
using testing::SmallTmpfs;
using testing::StoreKeys;

std::string Get(const Daemon& d, const std::string& path) {
  httplib::Client http("127.0.0.1", d.admin_port());
  auto r = http.Get(path);
  return r ? std::to_string(r->status) + " " + r->body : "no answer";
}

// Blocks on the NVMe tier (0 when it is off or the daemon does not answer).
uint64_t NvmeBlocks(const Daemon& d) {
  auto c = Client::Connect(d.socket());
  if (!c.ok()) return 0;
  auto st = (*c)->Stats();
  return st.ok() && st->tiers.size() == 2 ? st->tiers[1].blocks : 0;
}

// Waits up to `seconds` for `done`; returns whether it came true.
template <typename F>
bool WaitFor(double seconds, F done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

// Defect 2: a full data-dir file system made RocksDB's next write fail and
// the daemon abort inside RocksDB, at run time and at every start while the
// disk stayed full. Now the NVMe tier turns degraded (writes stop, reads go
// on), the daemon starts on the full disk, and writes resume by themselves
// once space is back.
TEST(DaemonDiskFaultTest, FullDataDirDegradesTheNvmeTierAndWritesResumeOnceSpaceIsBack) {
  SmallTmpfs data(16 << 20);
  if (!data.ok()) GTEST_SKIP() << data.why();
  char tmpl[] = "/tmp/kvtier-full-disk-XXXXXX";
  const std::string base = mkdtemp(tmpl);
  std::vector<std::string> flags = NvmeFlags("write-through");
  // The index (and namespaces file) on the small file system, the NVMe file
  // elsewhere: only the data dir fills.
  flags.insert(flags.end(), {"--data-dir", data.path(), "--nvme-path", base + "/nvme.dat"});
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  {
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 0, 16)).ok());
  }
  ASSERT_TRUE(WaitFor(10, [&] { return NvmeBlocks(d) >= 16; })) << "write-through did not write";

  ASSERT_GT(data.Fill(), 0u);
  // Stores go on into the host tier; the first index write that fails turns
  // the NVMe tier degraded.
  bool degraded = false;
  for (uint32_t p = 1; p < 400 && !degraded; ++p) {
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok()) << "the daemon died after the disk filled";
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok()) << ns.status().ToString();
    ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, p, 4)).ok());
    degraded = WaitFor(0.2, [&] { return Get(d, "/healthz").find("index not writable") != std::string::npos; });
  }
  ASSERT_TRUE(degraded) << Get(d, "/healthz");
  EXPECT_NE(Get(d, "/readyz").find("200 ready, degraded: nvme tier: index not writable"),
            std::string::npos);
  std::string metrics = Get(d, "/metrics");
  EXPECT_NE(metrics.find("kvtier_tier_index_ok{tier=\"nvme\"} 0"), std::string::npos);
  EXPECT_NE(metrics.find("kvtier_tier_admitting{tier=\"nvme\"} 0"), std::string::npos);
  EXPECT_NE(metrics.find("\nkvtier_degraded 1\n"), std::string::npos);
  auto [found, wrong] = Audit(d.socket(), 1, 16);
  EXPECT_EQ(found, 16u);
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(d.Stop(), 0) << "a graceful stop with a failed index must not abort";
  data.Fill("filler2");  // what the closed index's log gave back

  // A start while the disk stays full: the index opens read-only, the
  // NVMe tier serves what it recorded, degraded.
  Daemon d2(flags, d.dir());
  ASSERT_TRUE(d2.running());
  EXPECT_NE(Get(d2, "/healthz").find("200 ok, degraded: nvme tier: index not writable"),
            std::string::npos)
      << Get(d2, "/healthz");
  auto [found2, wrong2] = Audit(d2.socket(), 1, 16);  // read back from NVMe
  EXPECT_EQ(found2, 16u);
  EXPECT_EQ(wrong2, 0u);
  auto c = Client::Connect(d2.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 500, 4)).ok());  // the host tier takes stores
  const uint64_t before = NvmeBlocks(d2);

  // Space back: a probe (every 5 s) reopens the index and writes resume.
  data.Unfill();
  data.Unfill("filler2");
  ASSERT_TRUE(WaitFor(20, [&] { return Get(d2, "/healthz") == "200 ok\n"; })) << Get(d2, "/healthz");
  EXPECT_NE(Get(d2, "/metrics").find("kvtier_tier_index_ok{tier=\"nvme\"} 1"), std::string::npos);
  ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 501, 16)).ok());
  EXPECT_TRUE(WaitFor(10, [&] { return NvmeBlocks(d2) >= before + 16; }))
      << NvmeBlocks(d2) << " NVMe blocks, " << before << " before";
  c = Status::Unavailable("closed");
  EXPECT_EQ(d2.Stop(), 0);

  Daemon d3(flags, d.dir());
  ASSERT_TRUE(d3.running());
  auto [found3, wrong3] = Audit(d3.socket(), 1, 16, 501);
  EXPECT_EQ(found3, 16u);
  EXPECT_EQ(wrong3, 0u);
  auto [found4, wrong4] = Audit(d3.socket(), 1, 16);
  EXPECT_EQ(found4, 16u);
  EXPECT_EQ(wrong4, 0u);
  EXPECT_EQ(d3.Stop(), 0);
  std::error_code ec;
  std::filesystem::remove_all(base, ec);
}

}  // namespace
}  // namespace kvtier
