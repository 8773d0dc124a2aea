// The admin endpoint's namespace views (server/admin_namespaces.cc).
#include "server/admin_namespaces.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

namespace kvtier {
namespace {

TEST(AdminNamespacesTest, OnlyLoopbackPeersMayEvict) {
  for (const char* a : {"127.0.0.1", "127.8.9.10", "::1", "::ffff:127.0.0.1"})
    EXPECT_TRUE(IsLoopbackPeer(a)) << a;
  for (const char* a : {"10.0.0.7", "192.168.1.2", "::ffff:10.0.0.7", "fe80::1", "", "1270.0.0.1"})
    EXPECT_FALSE(IsLoopbackPeer(a)) << a;
}

TEST(AdminNamespacesTest, JsonParsesWhateverTheModelIdAndHidesTheSalt) {
  NamespaceUsage u;
  u.id = 3;
  u.spec.model_id = "org/\"quoted\"\\model\xff";  // not UTF-8, quotes, backslash
  u.spec.tenant_salt = "secret-salt";
  u.spec.layout = KvLayout{4, 2, 64, 16, DType::kBF16, 2};
  u.blocks = 7;
  u.bytes = 7 * 32768;
  u.hits = 11;
  u.tiers = {{"host", 5, 5 * 32768}, {"nvme", 2, 2 * 32768}};
  const std::string j = NamespacesJson({u});
  ASSERT_TRUE(nlohmann::json::accept(j)) << j;
  const auto n = nlohmann::json::parse(j).at("namespaces").at(0);
  EXPECT_EQ(n.at("id"), 3);
  EXPECT_EQ(n.at("model_id"), "org/\"quoted\"\\model\xef\xbf\xbd");
  EXPECT_EQ(n.at("salted"), true);
  EXPECT_EQ(n.at("blocks"), 7);
  EXPECT_EQ(n.at("hits"), 11);
  EXPECT_EQ(n.at("block_bytes"), 32768);
  EXPECT_EQ(n.at("tiers").at(1).at("name"), "nvme");
  EXPECT_EQ(n.at("tiers").at(1).at("blocks"), 2);
  EXPECT_EQ(j.find("secret-salt"), std::string::npos);
  EXPECT_EQ(NamespacesText({u}).find("secret-salt"), std::string::npos);
  const std::string html = NamespacesHtml({u});
  EXPECT_EQ(html.find("\"quoted\""), std::string::npos);  // escaped
  EXPECT_NE(html.find("&quot;quoted&quot;"), std::string::npos);
  NamespaceEviction e{4, 4 * 32768, 1, 2};
  const std::string ej = EvictionJson(3, e);
  ASSERT_TRUE(nlohmann::json::accept(ej)) << ej;
  EXPECT_EQ(nlohmann::json::parse(ej).at("evicted_nvme_blocks"), 2);
}

}  // namespace
}  // namespace kvtier
