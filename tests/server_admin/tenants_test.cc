// server/tenants.h: parsing tenant rules, splitting capacity, and resolving
// a connection's tenant from its credentials or token.
#include "server/tenants.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cache/sha256.h"

namespace kvtier {
namespace {

std::string Hex(const Sha256Bytes& d) {
  std::string out;
  for (uint8_t b : d) {
    out.push_back("0123456789abcdef"[b >> 4]);
    out.push_back("0123456789abcdef"[b & 15]);
  }
  return out;
}

TEST(TenantsTest, ParsesEveryRule) {
  const std::string h = Hex(Sha256Digest("tok", 3));
  auto t = ParseTenant("alice=uid:1000,uid:1001,gid:50,token-sha256:" + h + ",host:1G,hbm:2G,nvme:3G");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t->name, "alice");
  EXPECT_EQ(t->uids, (std::vector<uint32_t>{1000, 1001}));
  EXPECT_EQ(t->gids, (std::vector<uint32_t>{50}));
  ASSERT_EQ(t->token_sha256.size(), 1u);
  EXPECT_EQ(t->host_bytes, 1ull << 30);
  EXPECT_EQ(t->hbm_bytes, 2ull << 30);
  EXPECT_EQ(t->nvme_bytes, 3ull << 30);
}

TEST(TenantsTest, TokenDecidesThenUidThenGidElseRefused) {
  auto ts = ParseTenants({"a=uid:10,gid:99", "b=gid:20,token-sha256:" + Hex(Sha256Digest("sesame", 6)),
                          "c=uid:20"});
  ASSERT_TRUE(ts.ok());
  TenantResolver r(*ts);
  PeerCredentials p{1, 20, 99, true};
  EXPECT_EQ(r.Resolve(p, "").tenant, 2);         // uid 20 before gid 99
  EXPECT_EQ(r.Resolve(p, "sesame").tenant, 1);   // the token decides
  auto bad = r.Resolve(p, "sesam");
  EXPECT_EQ(bad.tenant, -1);                      // a wrong token is refused, not ignored
  EXPECT_EQ(bad.refusal, TenantResolver::Refusal::kBadToken);
  EXPECT_EQ(r.Resolve(PeerCredentials{1, 5, 20, true}, "").tenant, 1);  // by gid
  auto none = r.Resolve(PeerCredentials{1, 5, 6, true}, "");
  EXPECT_EQ(none.tenant, -1);
  EXPECT_EQ(none.refusal, TenantResolver::Refusal::kUnknownPeer);
  EXPECT_EQ(TenantResolver().Resolve(PeerCredentials{}, "anything").tenant, 0);  // one tenant
}

TEST(TenantsTest, SplitsCapacityInWholeRegions) {
  auto s = SplitShares({0, 1 << 20, 0}, 10 << 20, 1 << 20, "host");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(*s, (std::vector<uint64_t>{4 << 20, 1 << 20, 4 << 20}));
  EXPECT_FALSE(SplitShares({8 << 20, 8 << 20}, 10 << 20, 1 << 20, "host").ok());
  EXPECT_FALSE(SplitShares({10 << 20, 0}, 10 << 20, 1 << 20, "host").ok());
}

TEST(TenantsTest, ReadsTheKernelsPeerCredentials) {
  int sv[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
  PeerCredentials p = ReadPeerCredentials(sv[0]);
  EXPECT_TRUE(p.known);
  EXPECT_EQ(p.uid, geteuid());
  EXPECT_EQ(p.gid, getegid());
  EXPECT_EQ(p.pid, getpid());
  close(sv[0]);
  close(sv[1]);
}

}  // namespace
}  // namespace kvtier
