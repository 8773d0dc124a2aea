// kvtierd with an NVMe tier: restart and SIGKILL under a write-heavy load.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <numeric>
#include <set>

#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;

std::vector<std::string> NvmeFlags(const std::string& policy) {
  return {"--nvme-capacity", "256M", "--nvme-write-policy", policy, "--nvme-queue-depth", "64"};
}

std::vector<BlockKey> Keys(const ClientNamespace& ns, uint32_t prompt, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(prompt * 7777777 + i);
  return ns.HashTokens(tokens);
}

// Looks every key up on its own and checks the bytes of those found.
// Returns {found, wrong}.
std::pair<size_t, size_t> Audit(const std::string& socket, uint32_t prompts, size_t blocks) {
  auto c = Client::Connect(socket);
  EXPECT_TRUE(c.ok()) << c.status().ToString();
  if (!c.ok()) return {0, 0};
  auto ns = (*c)->OpenNamespace(DemoSpec());
  std::vector<uint8_t> got((*ns)->block_bytes()), want(got.size());
  size_t found = 0, wrong = 0;
  for (uint32_t p = 0; p < prompts; ++p) {
    auto keys = Keys(**ns, p, blocks);
    for (const auto& k : keys) {
      auto lease = (*ns)->Lookup(std::span(&k, 1));
      if (!lease.ok() || lease->empty()) continue;
      uint8_t* dst = got.data();
      Status st = (*ns)->Load(*lease, std::span(&dst, 1));
      FillFromKey(k, want.data(), want.size());
      if (!st.ok() || got != want) ++wrong;
      ++found;
    }
  }
  return {found, wrong};
}

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

}  // namespace
}  // namespace kvtier
