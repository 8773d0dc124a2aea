// kvtierd through disk faults, against a real daemon: a full data-dir file
// system (a real small tmpfs), a damaged NVMe index, and write-policy
// durability across kill -9 and SIGTERM.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
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

// "<status> <body>" of an admin GET. The admin endpoint starts just after
// the RPC socket (which the fixture waits for): a refused connection is
// retried for up to 5 s.
std::string Get(const Daemon& d, const std::string& path) {
  httplib::Client http("127.0.0.1", d.admin_port());
  for (int i = 0; i < 100; ++i) {
    if (auto r = http.Get(path)) return std::to_string(r->status) + " " + r->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return "no answer";
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
  // write-async: every store is written at once (so the index is written
  // soon after the disk fills) and commits do not wait for it (a
  // write-through commit would answer "not durable" while degraded).
  std::vector<std::string> flags = NvmeFlags("write-async");
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
  ASSERT_TRUE(WaitFor(10, [&] { return NvmeBlocks(d) >= 16; })) << "write-async did not write";

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

// Defect 3: a damaged RocksDB index kept the daemon from starting, later
// from starting with its NVMe tier, although every extent carries a
// self-describing header. Now the index is set aside (renamed, not deleted)
// and rebuilt from the headers while the daemon serves; /readyz and
// /metrics say so meanwhile; then every block is served byte-exact, and
// again after a restart from the rebuilt index.
// Defect 9: write-through returned before the write, so blocks committed in
// the last ~100 ms before a kill were lost. Now a commit answers once its
// blocks and their index records are durable: every commit that returned is
// served after kill -9. A writer process records each prompt whose store
// returned (write(2) to a file survives its own kill).
TEST(DaemonDurabilityTest, WriteThroughCommitsThatReturnedSurviveKill9) {
  Daemon d(NvmeFlags("write-through"));
  ASSERT_TRUE(d.running());
  const std::string log = d.dir() + "/committed";
  const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  pid_t writer = fork();
  if (writer == 0) {
    std::thread([&] {
      auto c = Client::Connect(d.socket());
      if (!c.ok()) return;
      auto ns = (*c)->OpenNamespace(DemoSpec());
      if (!ns.ok()) return;
      for (uint32_t p = 0; p < 100000; ++p)
        if (StoreKeys(**ns, Keys(**ns, p, 16)).ok()) (void)!::write(fd, &p, sizeof p);
    }).join();
    _exit(0);
  }
  // Kill while commits return back to back, once a good number did.
  ASSERT_TRUE(WaitFor(30, [&] { return std::filesystem::file_size(log) >= 60 * sizeof(uint32_t); }));
  d.Kill();
  kill(writer, SIGKILL);
  waitpid(writer, nullptr, 0);
  ::close(fd);
  std::vector<uint32_t> committed(std::filesystem::file_size(log) / sizeof(uint32_t));
  {
    std::ifstream in(log, std::ios::binary);
    in.read(reinterpret_cast<char*>(committed.data()),
            static_cast<std::streamsize>(committed.size() * sizeof(uint32_t)));
  }
  ASSERT_GE(committed.size(), 60u);
  Daemon d2(NvmeFlags("write-through"), d.dir());
  ASSERT_TRUE(d2.running());
  size_t lost = 0, wrong = 0;
  for (uint32_t p : committed) {
    auto [f, w] = Audit(d2.socket(), 1, 16, p);
    lost += 16 - f;
    wrong += w;
  }
  EXPECT_EQ(lost, 0u) << "blocks of " << committed.size() << " committed prompts lost";
  EXPECT_EQ(wrong, 0u);
  EXPECT_EQ(d2.Stop(), 0);
}

// Write-back loses every host-only block on a graceful restart unless the
// SIGTERM flushes them: with the flush (default) all are served after the
// restart; with --nvme-flush-timeout 0 none is (what the flush is for).
TEST(DaemonDurabilityTest, SigtermWithWriteBackFlushesHostOnlyBlocks) {
  for (bool flush : {true, false}) {
    std::vector<std::string> flags = NvmeFlags("write-back");
    if (!flush) flags.insert(flags.end(), {"--nvme-flush-timeout", "0"});
    Daemon d(flags);
    ASSERT_TRUE(d.running());
    {
      auto c = Client::Connect(d.socket());
      auto ns = (*c)->OpenNamespace(DemoSpec());
      ASSERT_TRUE(ns.ok());
      for (uint32_t p = 0; p < 20; ++p) ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, p, 16)).ok());
    }
    // 10 MiB in a 64 MiB host tier: below the write-back watermark, so
    // nothing was written down yet.
    ASSERT_EQ(NvmeBlocks(d), 0u);
    EXPECT_EQ(d.Stop(), 0);
    Daemon d2(flags, d.dir());
    ASSERT_TRUE(d2.running());
    auto [found, wrong] = Audit(d2.socket(), 20, 16);
    EXPECT_EQ(found, flush ? 320u : 0u) << (flush ? "with" : "without") << " the flush";
    EXPECT_EQ(wrong, 0u);
    EXPECT_EQ(d2.Stop(), 0);
  }
}

// The host tier survives a daemon restart, kill -9 and SIGTERM alike, when
// it lives in a named file (--host-shm-path): every committed block is
// served byte-exact after the restart, without an NVMe tier; a block whose
// bytes were changed while the daemon was down is dropped, not served.
TEST(DaemonHostPersistenceTest, HostBlocksSurviveKill9AndSigterm) {
  const std::string shm_dir = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
  const std::string seg = shm_dir + "/kvtier-test-host-" + std::to_string(getpid());
  const std::vector<std::string> flags = {"--host-shm-path", seg};
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  {
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    for (uint32_t p = 0; p < 8; ++p) ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, p, 16)).ok());
  }
  d.Kill();
  for (int round = 0; round < 2; ++round) {
    Daemon d2(flags, d.dir());
    ASSERT_TRUE(d2.running());
    auto [found, wrong] = Audit(d2.socket(), 8, 16);
    EXPECT_EQ(found, 128u) << (round == 0 ? "after kill -9" : "after SIGTERM");
    EXPECT_EQ(wrong, 0u);
    if (round == 0) {
      auto c = Client::Connect(d2.socket());
      auto ns = (*c)->OpenNamespace(DemoSpec());
      ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 20, 16)).ok());
    }
    EXPECT_EQ(d2.Stop(), 0);
  }
  // Damage while the daemon is down: one byte in every 32 KiB of the
  // segment's first 4 MiB region, where the first blocks stored live.
  {
    FILE* f = std::fopen(seg.c_str(), "r+b");
    ASSERT_NE(f, nullptr);
    for (long off = 100; off < (4l << 20); off += 32 << 10) {
      std::fseek(f, off, SEEK_SET);
      const int c = std::fgetc(f);
      std::fseek(f, off, SEEK_SET);
      std::fputc(c ^ 0x40, f);
    }
    std::fclose(f);
  }
  Daemon d3(flags, d.dir());
  ASSERT_TRUE(d3.running());
  auto [found3, wrong3] = Audit(d3.socket(), 8, 16);
  EXPECT_EQ(wrong3, 0u) << "a changed block was served";
  EXPECT_LT(found3, 128u) << "the damaged blocks should be gone";
  auto [found20, wrong20] = Audit(d3.socket(), 1, 16, 20);
  EXPECT_EQ(wrong20, 0u);
  EXPECT_EQ(d3.Stop(), 0);
  std::filesystem::remove(seg);
  std::filesystem::remove(seg + ".meta");
  (void)found20;
}

enum class Damage { kCurrentDeleted, kSstBitFlipped, kManifestEmptied };

class DaemonIndexDamageTest : public ::testing::TestWithParam<Damage> {};

void DamageIndex(const std::string& index, Damage damage) {
  namespace fs = std::filesystem;
  std::vector<fs::path> ssts, manifests;
  for (const auto& f : fs::directory_iterator(index)) {
    const std::string name = f.path().filename().string();
    if (name.ends_with(".sst")) ssts.push_back(f.path());
    if (name.starts_with("MANIFEST-")) manifests.push_back(f.path());
  }
  switch (damage) {
    case Damage::kCurrentDeleted:
      ASSERT_TRUE(fs::remove(fs::path(index) / "CURRENT"));
      break;
    case Damage::kSstBitFlipped: {
      ASSERT_FALSE(ssts.empty()) << "no .sst in " << index;
      for (const auto& p : ssts) {
        std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
        const auto size = fs::file_size(p);
        f.seekg(static_cast<std::streamoff>(size / 3));
        char c = 0;
        f.read(&c, 1);
        c = static_cast<char>(c ^ 0x10);
        f.seekp(static_cast<std::streamoff>(size / 3));
        f.write(&c, 1);
      }
      break;
    }
    case Damage::kManifestEmptied:
      ASSERT_FALSE(manifests.empty());
      for (const auto& p : manifests) fs::resize_file(p, 0);
      break;
  }
}

TEST_P(DaemonIndexDamageTest, DamagedIndexIsSetAsideAndRebuiltFromTheExtentHeaders) {
  std::vector<std::string> flags = NvmeFlags("write-through");
  // 256 MiB read at 128 MiB/s: the rebuild lasts long enough to be seen.
  flags.insert(flags.end(), {"--nvme-rebuild-rate", "128M"});
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  {
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    for (uint32_t p = 0; p < 4; ++p) ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, p, 16)).ok());
  }
  ASSERT_TRUE(WaitFor(10, [&] { return NvmeBlocks(d) >= 64; }));
  EXPECT_EQ(d.Stop(), 0);
  {
    Daemon again(flags, d.dir());  // a restart flushes the index's log into an .sst
    ASSERT_TRUE(again.running());
    EXPECT_EQ(again.Stop(), 0);
  }
  const std::string index = d.dir() + "/data/nvme-index";
  DamageIndex(index, GetParam());

  Daemon d2(flags, d.dir());
  ASSERT_TRUE(d2.running());
  const std::string ready = Get(d2, "/readyz");
  EXPECT_NE(ready.find("200 ready, degraded: nvme tier: index rebuilding"), std::string::npos)
      << ready;
  EXPECT_NE(Get(d2, "/metrics").find("kvtier_tier_index_rebuilding{tier=\"nvme\"} 1"),
            std::string::npos);
  ASSERT_TRUE(WaitFor(30, [&] { return Get(d2, "/readyz") == "200 ready\n"; }))
      << Get(d2, "/readyz");
  EXPECT_NE(Get(d2, "/metrics").find("kvtier_tier_index_rebuilding{tier=\"nvme\"} 0"),
            std::string::npos);
  auto [found, wrong] = Audit(d2.socket(), 4, 16);
  EXPECT_EQ(found, 64u);
  EXPECT_EQ(wrong, 0u);
  // The damaged index is kept for a post-mortem, next to the rebuilt one.
  size_t aside = 0;
  for (const auto& f : std::filesystem::directory_iterator(d.dir() + "/data"))
    aside += f.path().filename().string().starts_with("nvme-index.damaged-");
  EXPECT_EQ(aside, 1u);
  EXPECT_FALSE(std::filesystem::exists(index + ".rebuilding"));
  // New blocks are written again, and a restart reads the rebuilt index.
  {
    auto c = Client::Connect(d2.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(StoreKeys(**ns, Keys(**ns, 9, 16)).ok());
  }
  ASSERT_TRUE(WaitFor(10, [&] { return NvmeBlocks(d2) >= 80; })) << NvmeBlocks(d2);
  EXPECT_EQ(d2.Stop(), 0);
  Daemon d3(flags, d.dir());
  ASSERT_TRUE(d3.running());
  EXPECT_EQ(Get(d3, "/readyz"), "200 ready\n");
  auto [found3, wrong3] = Audit(d3.socket(), 4, 16);
  EXPECT_EQ(found3, 64u);
  EXPECT_EQ(wrong3, 0u);
  auto [found9, wrong9] = Audit(d3.socket(), 1, 16, 9);
  EXPECT_EQ(found9, 16u);
  EXPECT_EQ(wrong9, 0u);
  EXPECT_EQ(d3.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Damages, DaemonIndexDamageTest,
                         ::testing::Values(Damage::kCurrentDeleted, Damage::kSstBitFlipped,
                                           Damage::kManifestEmptied),
                         [](const auto& info) {
                           switch (info.param) {
                             case Damage::kCurrentDeleted: return std::string("CurrentDeleted");
                             case Damage::kSstBitFlipped: return std::string("SstBitFlipped");
                             case Damage::kManifestEmptied: return std::string("ManifestEmptied");
                           }
                           return std::string("unknown");
                         });

}  // namespace
}  // namespace kvtier
