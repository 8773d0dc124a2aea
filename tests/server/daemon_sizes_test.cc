// One kvtierd for several models: blocks of three sizes share the host tier
// (which moves regions between them) and the NVMe tier, across a restart.
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <sstream>
#include <thread>

#include "tests/server/daemon_nvme_util.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::FillFromKey;

struct Model {
  const char* id;
  KvLayout layout;
  uint32_t prompts;  // of 8 blocks each
};

// 16 KiB, 100 KiB and 2 MiB blocks; 192 MiB in all, three times the host tier.
const Model kModels[] = {
    {"test/small-16k", KvLayout{2, 2, 64, 16, DType::kBF16, 2}, 250},
    {"test/mid-100k", KvLayout{25, 1, 64, 16, DType::kBF16, 2}, 50},
    {"test/llama-3-8b", KvLayout{32, 8, 128, 16, DType::kBF16, 2}, 8},
};

NamespaceSpec SpecOf(const Model& m) {
  NamespaceSpec s;
  s.model_id = m.id;
  s.layout = m.layout;
  return s;
}

std::vector<BlockKey> Keys(const ClientNamespace& ns, uint32_t prompt) {
  std::vector<uint32_t> tokens(8 * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(prompt * 7777777 + i);
  return ns.HashTokens(tokens);
}

// Stores every prompt of every model, the models interleaved, retrying while
// the host tier is full of blocks still being written to NVMe.
void StoreAll(const std::string& socket) {
  auto c = Client::Connect(socket);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  std::vector<std::unique_ptr<ClientNamespace>> ns;
  for (const Model& m : kModels) {
    auto n = (*c)->OpenNamespace(SpecOf(m));
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ((*n)->block_bytes(), m.layout.BlockBytes());
    ns.push_back(std::move(*n));
  }
  for (uint32_t p = 0; p < 250; ++p) {
    for (size_t m = 0; m < ns.size(); ++m) {
      if (p >= kModels[m].prompts) continue;
      auto keys = Keys(*ns[m], p);
      std::vector<std::vector<uint8_t>> bufs(keys.size(), std::vector<uint8_t>(ns[m]->block_bytes()));
      std::vector<const uint8_t*> ptrs;
      for (size_t i = 0; i < keys.size(); ++i) {
        FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
        ptrs.push_back(bufs[i].data());
      }
      Status st = Status::OK();
      for (int attempt = 0; attempt < 5000; ++attempt) {
        auto r = ns[m]->Store(keys, ptrs);
        st = r.ok() ? Status::OK() : r.status();
        // Some blocks may be refused while the host tier is full of blocks
        // still being written to NVMe: store again (the others are present).
        if (st.ok() && r->no_space == 0 && r->in_flight == 0) break;
        if (st.ok()) st = Status::ResourceExhausted("blocks refused");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
      ASSERT_TRUE(st.ok()) << kModels[m].id << " prompt " << p << ": " << st.ToString();
    }
  }
}

// Every block of every model, looked up on its own. Returns {found, wrong}.
std::pair<size_t, size_t> AuditAll(const std::string& socket) {
  auto c = Client::Connect(socket);
  EXPECT_TRUE(c.ok());
  if (!c.ok()) return {0, 0};
  size_t found = 0, wrong = 0;
  for (const Model& m : kModels) {
    auto ns = (*c)->OpenNamespace(SpecOf(m));
    EXPECT_TRUE(ns.ok());
    if (!ns.ok()) continue;
    for (uint32_t p = 0; p < m.prompts; ++p)
      testing::AuditKeys(**ns, Keys(**ns, p), &found, &wrong);
  }
  return {found, wrong};
}

// /metrics of the daemon's admin endpoint, which may start serving a moment
// after the RPC socket does. Empty when it never answers.
std::string Metrics(int port) {
  httplib::Client http("127.0.0.1", port);
  for (int i = 0; i < 100; ++i) {
    if (auto m = http.Get("/metrics"); m && m->status == 200) return m->body;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return {};
}

uint64_t NvmeBlocks(const std::string& socket, uint64_t* evictions = nullptr) {
  auto c = Client::Connect(socket);
  auto st = c.ok() ? (*c)->Stats() : Result<RemoteStats>(Status::Unavailable("down"));
  if (evictions != nullptr && st.ok() && st->tiers.size() == 2) *evictions = st->tiers[1].evictions;
  return st.ok() && st->tiers.size() == 2 ? st->tiers[1].blocks : 0;
}

TEST(DaemonSizesTest, ThreeSizesShareTheTiersAndSurviveARestart) {
  const std::vector<std::string> flags = {"--nvme-capacity", "512M", "--nvme-write-policy",
                                          "write-through"};
  constexpr size_t kTotal = (250 + 50 + 8) * 8;
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  StoreAll(d.socket());
  // Write-through: every block reaches NVMe.
  for (int i = 0; i < 500 && NvmeBlocks(d.socket()) < kTotal; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  uint64_t nvme_evictions = 0;
  ASSERT_EQ(NvmeBlocks(d.socket(), &nvme_evictions), kTotal) << nvme_evictions << " NVMe evictions";
  {
    auto [found, wrong] = AuditAll(d.socket());
    EXPECT_EQ(found, kTotal);
    EXPECT_EQ(wrong, 0u);
  }
  ASSERT_EQ(d.Stop(), 0);
  Daemon d2(flags, d.dir());
  ASSERT_TRUE(d2.running());
  const std::string metrics = Metrics(d2.admin_port());
  ASSERT_FALSE(metrics.empty());
  EXPECT_NE(metrics.find("kvtier_tier_recovered_blocks{tier=\"nvme\"} " + std::to_string(kTotal)),
            std::string::npos);
  auto [found, wrong] = AuditAll(d2.socket());
  EXPECT_EQ(found, kTotal);
  EXPECT_EQ(wrong, 0u);
  // New blocks of every size can still be stored after the restart.
  auto c = Client::Connect(d2.socket());
  ASSERT_TRUE(c.ok());
  for (const Model& model : kModels) {
    auto ns = (*c)->OpenNamespace(SpecOf(model));
    ASSERT_TRUE(ns.ok());
    auto keys = Keys(**ns, 100000);
    std::vector<std::vector<uint8_t>> bufs(keys.size(), std::vector<uint8_t>((*ns)->block_bytes()));
    std::vector<const uint8_t*> ptrs;
    for (auto& b : bufs) ptrs.push_back(b.data());
    auto r = (*ns)->Store(keys, ptrs);
    EXPECT_TRUE(r.ok()) << model.id << ": " << r.status().ToString();
  }
}

// Operators see each model's and each size's share: the stats RPC, `kvtier
// namespaces` (the admin endpoint) and per-size / per-namespace series in /metrics. A
// namespace whose client left and whose blocks are gone is forgotten.
TEST(DaemonSizesTest, NamespacesAndSizesAreListedAndIdleNamespacesReclaimed) {
  Daemon d({"--namespace-idle", "1"});
  ASSERT_TRUE(d.running());
  {
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok());
    for (const Model& m : kModels) {
      auto ns = (*c)->OpenNamespace(SpecOf(m));
      ASSERT_TRUE(ns.ok());
      auto keys = Keys(**ns, 1);
      std::vector<std::vector<uint8_t>> bufs(2, std::vector<uint8_t>((*ns)->block_bytes()));
      std::vector<const uint8_t*> ptrs{bufs[0].data(), bufs[1].data()};
      auto r = (*ns)->Store(std::span(keys).subspan(0, 2), ptrs);
      ASSERT_TRUE(r.ok() && r->stored == 2) << m.id;
      auto lease = (*ns)->Lookup(std::span(keys).subspan(0, 2));
      ASSERT_TRUE(lease.ok() && lease->size() == 2);
    }
    // An abandoned namespace: opened by a client that then leaves.
    {
      auto c2 = Client::Connect(d.socket());
      NamespaceSpec stray = SpecOf(kModels[0]);
      stray.model_id = "test/stray";
      ASSERT_TRUE((*c2)->OpenNamespace(stray).ok());
    }
    auto st = (*c)->Stats();
    ASSERT_TRUE(st.ok());
    ASSERT_EQ(st->namespaces.size(), 4u);
    for (const auto& n : st->namespaces) {
      if (n.model_id == "test/stray") {
        EXPECT_EQ(n.blocks, 0u);
        continue;
      }
      EXPECT_EQ(n.blocks, 2u) << n.model_id;
      EXPECT_EQ(n.bytes, 2 * n.block_bytes) << n.model_id;
      EXPECT_EQ(n.hits, 2u) << n.model_id;
    }
    const std::string metrics = Metrics(d.admin_port());
    ASSERT_FALSE(metrics.empty());
    for (const char* want :
         {"kvtier_size_bytes{tier=\"host\",size=\"2097152\"} 4194304",
          "kvtier_size_blocks{tier=\"host\",size=\"102400\"} 2",
          "kvtier_size_hits_total{tier=\"host\",size=\"16384\"} 2",
          "kvtier_namespace_blocks{ns=\"2\",model=\"test/llama-3-8b\",tenant=\"\",tp_rank=\"0\"} 2",
          "kvtier_namespace_hits_total{ns=\"0\",model=\"test/small-16k\",tenant=\"\",tp_rank=\"0\"} 2",
          "kvtier_tier_regions_moved_total{tier=\"host\"} 0", "kvtier_namespaces 4"})
      EXPECT_NE(metrics.find(want), std::string::npos) << want;
    // `kvtier namespaces` (the admin endpoint) lists the same: block bytes,
    // blocks, hits and evictions per namespace.
    FILE* p = popen((std::string(KVTIER_CLI_PATH) + " namespaces --json --admin 127.0.0.1:" +
                     std::to_string(d.admin_port()))
                        .c_str(),
                    "r");
    ASSERT_NE(p, nullptr);
    std::string out;
    char buf[512];
    while (std::fgets(buf, sizeof(buf), p) != nullptr) out += buf;
    ASSERT_EQ(pclose(p), 0) << out;
    ASSERT_TRUE(nlohmann::json::accept(out)) << out;
    bool listed = false;
    const nlohmann::json listing = nlohmann::json::parse(out);
    for (const auto& n : listing.at("namespaces")) {
      if (n.at("model_id").get<std::string>() != "test/llama-3-8b") continue;
      listed = n.at("block_bytes").get<uint64_t>() == 2097152 && n.at("blocks").get<uint64_t>() == 2 &&
               n.at("hits").get<uint64_t>() == 2 && n.at("evictions").get<uint64_t>() == 0;
    }
    EXPECT_TRUE(listed) << out;
    // The stray one goes after a second idle; the three in use stay.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    (void)Metrics(d.admin_port());  // a pass of the reclaimer
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    st = (*c)->Stats();
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->namespaces.size(), 3u);
    for (const auto& n : st->namespaces) EXPECT_NE(n.model_id, "test/stray");
  }
}

}  // namespace
}  // namespace kvtier
