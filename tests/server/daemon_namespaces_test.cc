// kvtier namespaces / kvtier evict against a real kvtierd: the admin
// endpoint's /v1/namespaces and POST /v1/namespaces/ID/evict, through the
// real kvtier binary, checked with nlohmann-json.
#include <httplib.h>
#include <sys/wait.h>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "tests/server/daemon_fixture.h"

namespace kvtier {
namespace {

using nlohmann::json;
using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;

// Stores `n` blocks of a prompt in `spec`'s namespace; returns its keys.
std::vector<BlockKey> Store(ClientNamespace& ns, uint32_t seed, size_t n) {
  std::vector<uint32_t> tokens(n * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(seed * 1000003 + i);
  auto keys = ns.HashTokens(tokens);
  std::vector<std::vector<uint8_t>> bufs(n, std::vector<uint8_t>(ns.block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  auto r = ns.Store(keys, ptrs);
  EXPECT_TRUE(r.ok() && r->stored == n);
  return keys;
}

// Runs the kvtier binary; its exit code and stdout.
std::pair<int, std::string> Kvtier(const std::string& args) {
  const std::string cmd = std::string("'") + KVTIER_PATH + "' " + args + " 2>&1";
  FILE* p = ::popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, n);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

TEST(DaemonNamespacesTest, ListAndEvictThroughTheCli) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  NamespaceSpec other = DemoSpec();
  other.model_id = "test/other-model";
  other.tenant_salt = "tenant-b";
  auto a = (*c)->OpenNamespace(DemoSpec());
  auto b = (*c)->OpenNamespace(other);
  ASSERT_TRUE(a.ok() && b.ok());
  auto keys_a = Store(**a, 1, 12);
  Store(**b, 2, 5);
  const uint64_t block = (*a)->block_bytes();
  const std::string admin = "--admin 127.0.0.1:" + std::to_string(d.admin_port());

  // kvtier namespaces --json: both namespaces, blocks and bytes per tier.
  auto [rc, out] = Kvtier("namespaces --json " + admin);
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(json::accept(out)) << out;
  json list = json::parse(out).at("namespaces");
  ASSERT_EQ(list.size(), 2u) << out;
  const json& na = list.at(0).at("model_id") == "test/llama-mini" ? list.at(0) : list.at(1);
  const json& nb = list.at(0).at("model_id") == "test/llama-mini" ? list.at(1) : list.at(0);
  EXPECT_EQ(na.at("blocks"), 12);
  EXPECT_EQ(na.at("bytes"), 12 * block);
  EXPECT_EQ(na.at("salted"), false);
  EXPECT_EQ(na.at("tiers").at(0).at("name"), "host");
  EXPECT_EQ(na.at("tiers").at(0).at("blocks"), 12);
  EXPECT_EQ(nb.at("blocks"), 5);
  EXPECT_EQ(nb.at("salted"), true);
  EXPECT_EQ(out.find("tenant-b"), std::string::npos) << "the salt itself is never shown";

  // Hits: an acquire of 4 blocks of namespace a counts 4.
  std::vector<BlockKey> first4(keys_a.begin(), keys_a.begin() + 4);
  auto lease = (*a)->Lookup(first4);
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), 4u);
  std::tie(rc, out) = Kvtier("namespaces " + admin);  // the text table
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("test/llama-mini"), std::string::npos) << out;
  EXPECT_NE(out.find("test/other-model [salted]"), std::string::npos) << out;

  // Evict namespace a while the lease pins 4 of its blocks: 8 go, 4 stay.
  const std::string id_a = std::to_string(na.at("id").get<int>());
  std::tie(rc, out) = Kvtier("evict --json --namespace " + id_a + " " + admin);
  ASSERT_EQ(rc, 0) << out;
  ASSERT_TRUE(json::accept(out)) << out;
  json ev = json::parse(out);
  EXPECT_EQ(ev.at("evicted_blocks"), 8);
  EXPECT_EQ(ev.at("evicted_bytes"), 8 * block);
  EXPECT_EQ(ev.at("kept_pinned"), 4);
  ASSERT_TRUE(lease->Release().ok());
  auto after = (*a)->Lookup(keys_a);
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->size(), 4u);  // the pinned prefix survived, the rest is gone
  ASSERT_TRUE(after->Release().ok());
  // The other namespace is untouched.
  std::tie(rc, out) = Kvtier("namespaces --json=true " + admin);
  ASSERT_EQ(rc, 0) << out;
  list = json::parse(out).at("namespaces");
  for (const json& n : list)
    EXPECT_EQ(n.at("blocks"), n.at("model_id") == "test/other-model" ? 5 : 4) << out;

  // Unknown namespace: exit 1 with the daemon's reason; GET is not evict.
  std::tie(rc, out) = Kvtier("evict --namespace 99 " + admin);
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("unknown namespace 99"), std::string::npos) << out;
  httplib::Client http("127.0.0.1", d.admin_port());
  auto get = http.Get("/v1/namespaces/0/evict");
  ASSERT_TRUE(get);
  EXPECT_EQ(get->status, 404);
  // No daemon at the admin address: a clear error, exit 1.
  std::tie(rc, out) = Kvtier("namespaces --admin 127.0.0.1:1");
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("no admin endpoint at 127.0.0.1:1"), std::string::npos) << out;
  auto st = (*c)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->leases_open, 0u);
  EXPECT_EQ(d.Stop(), 0);
}

TEST(DaemonNamespacesTest, EvictDropsTheNamespacesNvmeCopiesToo) {
  const std::vector<std::string> flags = {"--nvme-capacity", "256M", "--nvme-write-policy",
                                          "write-through"};
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  std::vector<BlockKey> keys, other_keys;
  NamespaceSpec other = DemoSpec();
  other.model_id = "test/kept-model";
  {
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok());
    auto a = (*c)->OpenNamespace(DemoSpec());
    auto b = (*c)->OpenNamespace(other);
    ASSERT_TRUE(a.ok() && b.ok());
    keys = Store(**a, 5, 10);        // write-through: on NVMe once committed
    other_keys = Store(**b, 6, 4);
  }
  httplib::Client http("127.0.0.1", d.admin_port());
  auto res = http.Post("/v1/namespaces/0/evict", "", "text/plain");
  ASSERT_TRUE(res);
  ASSERT_EQ(res->status, 200) << res->body;
  const json ev = json::parse(res->body);
  EXPECT_EQ(ev.at("evicted_blocks"), 10);
  EXPECT_EQ(ev.at("evicted_nvme_blocks"), 10);
  EXPECT_EQ(ev.at("kept_pinned"), 0);
  // Gone from every tier, also after a restart (the NVMe records went too);
  // the other namespace keeps its blocks.
  const std::string dir = d.dir();
  ASSERT_EQ(d.Stop(), 0);
  Daemon again(flags, dir);
  ASSERT_TRUE(again.running());
  auto c = Client::Connect(again.socket());
  ASSERT_TRUE(c.ok());
  auto a = (*c)->OpenNamespace(DemoSpec());
  auto b = (*c)->OpenNamespace(other);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_TRUE((*a)->Probe(keys)->empty());
  auto lease = (*a)->Lookup(keys);
  ASSERT_TRUE(lease.ok());
  EXPECT_TRUE(lease->empty());
  auto kept = (*b)->Lookup(other_keys);
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->size(), other_keys.size());
}

}  // namespace
}  // namespace kvtier
