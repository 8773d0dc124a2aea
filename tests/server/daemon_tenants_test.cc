// Tenants against a real kvtierd on a real socket (issue 16, findings 1, 2,
// 3, 9 and 10; docs/security.md). The second tenant is a real second uid
// (65534, set in a forked child) when the tests run as root, and a token
// otherwise.
#include <capnp/rpc-twoparty.h>
#include <grp.h>
#include <httplib.h>
#include <kj/async-io.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "cache/sha256.h"
#include "server/kvtier.capnp.h"
#include "tests/server/raw_connection.h"
#include "tests/server/daemon_fixture.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using testing::Daemon;
using testing::DemoSpec;
using testing::FillFromKey;
using testing::RawConnection;

constexpr uint32_t kOtherUid = 65534;  // nobody
const char kBobToken[] = "bob-token-7f3a";
const char kAliceToken[] = "alice-token-91c2";

std::string Sha256Hex(const std::string& s) {
  Sha256Bytes d = Sha256Digest(s.data(), s.size());
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (uint8_t b : d) {
    out.push_back(hex[b >> 4]);
    out.push_back(hex[b & 15]);
  }
  return out;
}

bool Root() { return geteuid() == 0; }

// alice: this process's uid (and a token); bob: uid 65534 and a token.
std::vector<std::string> TenantFlags(const std::string& alice_extra = "",
                                      const std::string& bob_extra = "") {
  return {"--tenant", "alice=uid:" + std::to_string(geteuid()) + ",token-sha256:" +
                          Sha256Hex(kAliceToken) + alice_extra,
          "--tenant", "bob=uid:" + std::to_string(kOtherUid) + ",token-sha256:" +
                          Sha256Hex(kBobToken) + bob_extra};
}

// The socket's directory must let uid 65534 reach the socket (the data dir
// under it stays 0700).
void OpenSocketDir(const Daemon& d) { chmod(d.dir().c_str(), 0711); }

// Runs `fn` in a forked process on a fresh thread. With `as_bob`, as tenant
// bob: uid 65534 when root (no token), else with bob's token.
int RunChild(const std::function<int(const ConnectOptions&)>& fn, bool as_bob) {
  pid_t pid = fork();
  if (pid == 0) {
    ConnectOptions o;
    if (as_bob) {
      if (Root()) {
        if (setgroups(0, nullptr) != 0 || setresgid(kOtherUid, kOtherUid, kOtherUid) != 0 ||
            setresuid(kOtherUid, kOtherUid, kOtherUid) != 0)
          _exit(90);
      } else {
        o.token = kBobToken;
      }
    }
    int rc = 99;
    std::thread t([&] { rc = fn(o); });
    t.join();
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

std::vector<BlockKey> Keys(const ClientNamespace& ns, uint32_t seed, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(seed * 1000003 + i);
  return ns.HashTokens(tokens);
}

// Stores `n` blocks of prompt `seed`, payloads derived from their keys.
Result<StoreResult> StoreSeed(ClientNamespace& ns, uint32_t seed, size_t n) {
  auto keys = Keys(ns, seed, n);
  std::vector<std::vector<uint8_t>> bufs(n, std::vector<uint8_t>(ns.block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  return ns.Store(keys, ptrs);
}

// Looks up and loads (checksums verified) prompt `seed`; the blocks loaded
// with the bytes derived from their keys, or -1 on an error.
int LoadSeed(ClientNamespace& ns, uint32_t seed, size_t n) {
  auto keys = Keys(ns, seed, n);
  auto lease = ns.Lookup(keys);
  if (!lease.ok()) return -1;
  std::vector<std::vector<uint8_t>> bufs(lease->size(), std::vector<uint8_t>(ns.block_bytes()));
  std::vector<uint8_t*> dst;
  for (auto& b : bufs) dst.push_back(b.data());
  if (!ns.Load(*lease, dst).ok()) return -1;
  int good = 0;
  std::vector<uint8_t> want(ns.block_bytes());
  for (size_t i = 0; i < bufs.size(); ++i) {
    FillFromKey(keys[i], want.data(), want.size());
    good += want == bufs[i];
  }
  return good;
}

// A connection as this process's tenant (alice) with the demo namespace open
// and blocks [0, n) of `seed` stored in it.
struct Tenant {
  std::unique_ptr<Client> client;
  std::unique_ptr<ClientNamespace> ns;  // borrows the client: destroyed first
};
void ConnectAliceAndStore(const Daemon& d, uint32_t seed, size_t n, Tenant* t) {
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  t->client = std::move(*c);
  auto ns = t->client->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  t->ns = std::move(*ns);
  ASSERT_EQ(StoreSeed(*t->ns, seed, n)->stored, n);
}

// Writes each reserved slot with its key's bytes; returns their true checksums.
std::vector<uint64_t> FillSlots(const ClientTxn& txn, const std::vector<BlockKey>& keys) {
  std::vector<uint64_t> sums;
  for (size_t i = 0; i < txn.slots().size(); ++i) {
    const auto& s = txn.slots()[i];
    FillFromKey(keys[i], s.data, s.size);
    sums.push_back(checksum::Sum64(s.data, s.size));
  }
  return sums;
}

std::string Metrics(const Daemon& d) {
  httplib::Client http("127.0.0.1", d.admin_port());
  auto m = http.Get("/metrics");
  return m && m->status == 200 ? m->body : "";
}

// The value of the sample `series` (name with labels), -1 if absent.
double Metric(const std::string& body, const std::string& series) {
  size_t at = 0;
  while ((at = body.find(series + " ", at)) != std::string::npos) {
    if (at == 0 || body[at - 1] == '\n') return std::atof(body.c_str() + at + series.size() + 1);
    at += series.size();
  }
  return -1;
}

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0 || s.find("exception: " + p) != std::string::npos; }

// Finding 1: no mapping before a namespace, and then only the tenant's own.
TEST(DaemonTenants, MemoryIsHandedOnlyAfterANamespaceAndOnlyTheTenants) {
  Daemon d(TenantFlags(",host:16M", ",host:48M"));
  ASSERT_TRUE(d.running());
  OpenSocketDir(d);
  {
    RawConnection raw(d.socket());
    const std::string host_err = raw.Error(raw.boot().hostSegmentRequest());
    EXPECT_TRUE(StartsWith(host_err, "PermissionDenied:")) << host_err;
    const std::string hbm_err = raw.Error(raw.boot().hbmSegmentRequest());
    EXPECT_TRUE(StartsWith(hbm_err, "PermissionDenied:")) << hbm_err;
    ASSERT_EQ(raw.TryOpen(""), "");
    auto seg = raw.boot().hostSegmentRequest().send().wait(raw.ws());
    EXPECT_EQ(seg.getBytes(), 16u << 20);  // alice's share, not the host tier
  }
  EXPECT_GE(Metric(Metrics(d), "kvtier_tenant_refusals_total{reason=\"no_namespace\"}"), 2);

  // alice stores; bob maps his segment: none of alice's bytes are in it,
  // and what bob writes there never reaches alice's loads.
  auto alice = Client::Connect(d.socket());
  ASSERT_TRUE(alice.ok());
  auto ans = (*alice)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ans.ok());
  EXPECT_EQ((*alice)->tenant(), "alice");
  EXPECT_EQ((*alice)->segment_bytes(), 16u << 20);
  ASSERT_EQ(StoreSeed(**ans, 1, 32)->stored, 32u);
  std::vector<uint8_t> first(64);
  FillFromKey(Keys(**ans, 1, 1)[0], first.data(), first.size());
  const int rc = RunChild(
      [&](const ConnectOptions& o) {
        auto c = Client::Connect(d.socket(), o);
        if (!c.ok()) return 10;
        auto ns = (*c)->OpenNamespace(DemoSpec());
        if (!ns.ok()) return 11;
        if ((*c)->tenant() != "bob") return 12;
        if ((*c)->segment_bytes() != (48u << 20)) return 13;
        uint8_t* base = (*c)->segment_base();
        const uint64_t n = (*c)->segment_bytes();
        for (uint64_t off = 0; off + first.size() <= n; off += 4096)
          if (std::memcmp(base + off, first.data(), first.size()) == 0) return 14;  // alice's bytes
        std::memset(base, 0xEE, n);  // all bob can reach
        // bob's stats list no namespace of alice.
        auto st = (*c)->Stats();
        if (!st.ok()) return 15;
        for (const auto& x : st->namespaces)
          if (x.blocks > 0) return 16;
        return 0;
      },
      /*as_bob=*/true);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(LoadSeed(**ans, 1, 32), 32);
}

// Finding 2: bob can neither observe alice's keys nor squat them.
TEST(DaemonTenants, ASecondTenantCannotProbeSquatOrOverwriteBlocks) {
  Daemon d(TenantFlags());
  ASSERT_TRUE(d.running());
  OpenSocketDir(d);
  Tenant alice;
  ASSERT_NO_FATAL_FAILURE(ConnectAliceAndStore(d, 2, 16, &alice));
  const int rc = RunChild(
      [&](const ConnectOptions& o) {
        auto c = Client::Connect(d.socket(), o);
        if (!c.ok()) return 10;
        auto ns = (*c)->OpenNamespace(DemoSpec());
        if (!ns.ok()) return 11;
        auto keys = Keys(**ns, 2, 16);  // alice's keys: same spec, same hash
        auto probe = (*ns)->Probe(keys);
        if (!probe.ok() || !probe->empty()) return 12;  // alice's blocks are invisible
        auto lease = (*ns)->Lookup(keys);
        if (!lease.ok() || !lease->empty()) return 13;
        // Reserving them gives bob his own slots (never "present"), and his
        // garbage committed under those keys is his alone.
        auto txn = (*ns)->Reserve(keys);
        if (!txn.ok() || txn->reserved() != keys.size()) return 14;
        for (const auto& s : txn->slots()) std::memset(s.data, 0x77, s.size);
        if (!txn->Commit().ok()) return 15;
        // Squatting in advance: prompt 3 stored by bob first.
        auto squat = StoreSeed(**ns, 3, 16);
        if (!squat.ok() || squat->stored != 16) return 16;
        return 0;
      },
      /*as_bob=*/true);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(LoadSeed(*alice.ns, 2, 16), 16);  // alice's own bytes
  auto r = StoreSeed(*alice.ns, 3, 16);       // bob's squat does not stop alice
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->stored, 16u);
  EXPECT_EQ(r->present, 0u);
  EXPECT_EQ(LoadSeed(*alice.ns, 3, 16), 16);
}

// Finding 3: bob storing far more than his share evicts only his blocks.
TEST(DaemonTenants, ATenantOverItsShareEvictsOnlyItsOwnBlocks) {
  Daemon d(TenantFlags(",host:32M", ",host:32M"));
  ASSERT_TRUE(d.running());
  OpenSocketDir(d);
  Tenant alice;
  ASSERT_NO_FATAL_FAILURE(ConnectAliceAndStore(d, 4, 200, &alice));  // 6.25 MiB of alice's 32
  const int rc = RunChild(
      [&](const ConnectOptions& o) {
        auto c = Client::Connect(d.socket(), o);
        if (!c.ok()) return 10;
        auto ns = (*c)->OpenNamespace(DemoSpec());
        if (!ns.ok()) return 11;
        for (uint32_t seed = 100; seed < 116; ++seed) {  // 16 x 8 MiB = 4 x bob's share
          auto r = StoreSeed(**ns, seed, 256);
          if (!r.ok() || r->stored != 256) return 12;
        }
        return 0;
      },
      /*as_bob=*/true);
  ASSERT_EQ(rc, 0);
  EXPECT_EQ(LoadSeed(*alice.ns, 4, 200), 200);
  const std::string m = Metrics(d);
  EXPECT_EQ(Metric(m, "kvtier_tier_evictions_total{tier=\"host/alice\"}"), 0) << m.substr(0, 3000);
  EXPECT_GT(Metric(m, "kvtier_tier_evictions_total{tier=\"host/bob\"}"), 0);
}

// Finding 3: 1,100 uncommitted priority-0 reservations (more than a victim
// scan looks at) do not stop everyone else's stores.
TEST(DaemonTenants, UncommittedReservationsDoNotStopEviction) {
  Daemon d;  // one tenant, 64 MiB = 2,048 blocks of 32 KiB
  ASSERT_TRUE(d.running());
  RawConnection raw(d.socket());
  rpc::Namespace::Client ns = nullptr;
  ASSERT_EQ(raw.TryOpen("", &ns), "");
  std::vector<rpc::StoreTxn::Client> held;
  for (int call = 0; call < 11; ++call) {
    auto req = ns.reserveRequest();
    auto keys = req.initKeys(100);
    auto sizes = req.initSizes(100);
    for (unsigned i = 0; i < 100; ++i) {
      keys[i].setLo(0xC0FFEE000000ull + call * 1000 + i);
      keys[i].setHi(0x5151ull + call);
      sizes.set(i, 32 << 10);
    }
    req.setPriority(0);
    auto res = req.send().wait(raw.ws());
    ASSERT_EQ(res.getSlots()[0].getOutcome(), rpc::ReserveOutcome::RESERVED);
    held.push_back(res.getTxn());
  }
  // Another client (its own process: this thread's event loop is the raw
  // connection's) stores 2,560 blocks through the 948 slots left.
  const int rc = RunChild(
      [&](const ConnectOptions& o) {
        auto c = Client::Connect(d.socket(), o);
        if (!c.ok()) return 10;
        auto cns = (*c)->OpenNamespace(DemoSpec());
        if (!cns.ok()) return 11;
        for (uint32_t seed = 200; seed < 220; ++seed) {
          auto r = StoreSeed(**cns, seed, 128);
          if (!r.ok()) return 12;
          if (r->stored != 128) return 13;
        }
        if (LoadSeed(**cns, 219, 128) != 128) return 14;
        auto st = (*c)->Stats();
        if (!st.ok() || st->blocks_writing != 1100) return 15;
        return 0;
      },
      /*as_bob=*/false);
  EXPECT_EQ(rc, 0);
  EXPECT_EQ(Metric(Metrics(d), "kvtier_blocks_writing"), 1100);
}

// A tenant's NVMe quota: its blocks past it stay in memory only (counted),
// while the other tenant's NVMe writes go on.
TEST(DaemonTenants, ATenantsNvmeQuotaCapsItsBlocksOnNvme) {
  auto flags = TenantFlags(",nvme:1M");
  for (const char* f : {"--nvme-capacity", "80M", "--nvme-write-policy", "write-async"})
    flags.push_back(f);
  Daemon d(flags);
  ASSERT_TRUE(d.running());
  OpenSocketDir(d);
  Tenant alice;
  ASSERT_NO_FATAL_FAILURE(ConnectAliceAndStore(d, 8, 64, &alice));  // 2 MiB: twice alice's NVMe quota
  const int rc = RunChild(
      [&](const ConnectOptions& o) {
        auto c = Client::Connect(d.socket(), o);
        if (!c.ok()) return 10;
        auto ns = (*c)->OpenNamespace(DemoSpec());
        if (!ns.ok()) return 11;
        auto r = StoreSeed(**ns, 9, 64);
        return r.ok() && r->stored == 64 ? 0 : 12;
      },
      /*as_bob=*/true);
  ASSERT_EQ(rc, 0);
  std::string m;
  for (int i = 0; i < 250; ++i) {
    m = Metrics(d);
    if (Metric(m, "kvtier_tenant_nvme_bytes{tenant=\"bob\"}") >= 64 * 32768 &&
        Metric(m, "kvtier_tenant_nvme_quota_declined_total{tenant=\"alice\"}") >= 32)
      break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Metric(m, "kvtier_tenant_nvme_bytes{tenant=\"alice\"}"), 1 << 20) << m.substr(0, 2000);
  EXPECT_EQ(Metric(m, "kvtier_tenant_nvme_quota_declined_total{tenant=\"alice\"}"), 32);
  EXPECT_EQ(Metric(m, "kvtier_tenant_nvme_bytes{tenant=\"bob\"}"), 64 * 32768);
  EXPECT_EQ(Metric(m, "kvtier_tenant_nvme_quota_declined_total{tenant=\"bob\"}"), 0);
  EXPECT_EQ(LoadSeed(*alice.ns, 8, 64), 64);  // all still served, from memory
}

// Finding 9: the data dir and every file in it are the daemon user's only
// (a file an earlier version left 0644 is tightened at start).
TEST(DaemonTenants, DataDirAndFilesArePrivate) {
  char tmpl[] = "/tmp/kvtierd-files-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  std::filesystem::create_directories(dir + "/data");
  chmod((dir + "/data").c_str(), 0755);
  { std::ofstream(dir + "/data/namespaces") << ""; }
  chmod((dir + "/data/namespaces").c_str(), 0644);
  auto check = [&](mode_t dir_mode, mode_t file_max) {
    struct stat st {};
    ASSERT_EQ(stat((dir + "/data").c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, dir_mode);
    size_t files = 0;
    for (auto& e : std::filesystem::recursive_directory_iterator(dir + "/data")) {
      ASSERT_EQ(lstat(e.path().c_str(), &st), 0);
      if (S_ISREG(st.st_mode)) {
        ++files;
        EXPECT_EQ(st.st_mode & 0777 & ~file_max, 0u) << e.path() << " mode " << std::oct
                                                      << (st.st_mode & 0777);
      } else if (S_ISDIR(st.st_mode)) {
        EXPECT_EQ(st.st_mode & 0777 & ~(dir_mode & 0777), 0u) << e.path();
      }
    }
    EXPECT_GT(files, 3u);  // the namespace file, the NVMe file, its index's files
  };
  {
    Daemon d({"--nvme-capacity", "80M"}, dir);
    ASSERT_TRUE(d.running());
    auto c = Client::Connect(d.socket());
    ASSERT_TRUE(c.ok());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    ASSERT_TRUE(ns.ok());
    ASSERT_EQ(StoreSeed(**ns, 5, 8)->stored, 8u);
    struct stat st {};
    ASSERT_EQ(stat(d.socket().c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0600u);
    ASSERT_EQ(d.Stop(), 0);
  }
  check(0700, 0600);
  {
    // With a data group: 2750 and files 0640 at most, in that group.
    Daemon d({"--nvme-capacity", "80M", "--data-group", std::to_string(getegid())}, dir);
    ASSERT_TRUE(d.running());
    ASSERT_EQ(d.Stop(), 0);
  }
  check(02750, 0640);
  std::filesystem::remove_all(dir);
}

// Finding 10: a block committed with a wrong checksum is the client's
// fault, counted as such, dropped, and never reported as NVMe corruption.
TEST(DaemonTenants, WrongCommittedChecksumsAreTheClientsFaultNotCorruption) {
  Daemon d({"--nvme-capacity", "80M", "--nvme-write-policy", "write-async"});
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = Keys(**ns, 6, 8);
  auto txn = (*ns)->Reserve(keys);
  ASSERT_TRUE(txn.ok());
  std::vector<uint64_t> sums = FillSlots(*txn, keys);
  for (size_t i = 1; i < sums.size(); i += 2) sums[i] ^= 0x10;  // 4 lies
  ASSERT_TRUE(txn->Commit(sums).ok());  // checked when spilled, off the commit path
  double mismatches = 0, demoted = 0;
  for (int i = 0; i < 250 && (mismatches < 4 || demoted < 4); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const std::string m = Metrics(d);
    mismatches = Metric(m, "kvtier_client_checksum_mismatch_total{tenant=\"\"}");
    demoted = Metric(m, "kvtier_tier_demotions_total{tier=\"nvme\"}");
  }
  const std::string m = Metrics(d);
  EXPECT_EQ(mismatches, 4);
  EXPECT_EQ(Metric(m, "kvtier_tier_checksum_failures_total{tier=\"nvme\"}"), 0);
  EXPECT_EQ(Metric(m, "kvtier_tier_demotions_total{tier=\"nvme\"}"), 4);
  auto lease = (*ns)->Lookup(keys);
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->size(), 1u);  // block 1 was dropped: the prefix ends there
}

TEST(DaemonTenants, VerifyAtCommitRefusesWrongChecksumsClearly) {
  Daemon d({"--verify-checksums", "commit"});
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = Keys(**ns, 7, 4);
  auto txn = (*ns)->Reserve(keys);
  ASSERT_TRUE(txn.ok());
  std::vector<uint64_t> sums = FillSlots(*txn, keys);
  sums[2] ^= 1;
  Status st = txn->Commit(sums);
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
  EXPECT_NE(st.message().find("do not have the checksum"), std::string::npos) << st.ToString();
  const std::string m = Metrics(d);
  EXPECT_EQ(Metric(m, "kvtier_client_checksum_mismatch_total{tenant=\"\"}"), 1);
  EXPECT_EQ(Metric(m, "kvtier_commit_checksum_refusals_total"), 1);
  EXPECT_EQ(LoadSeed(**ns, 7, 4), 2);  // blocks 0 and 1; block 2 never served
}

// Every refusal: a clear PermissionDenied, counted by reason.
TEST(DaemonTenants, UnknownPeersBadTokensAndTenantSwitchesAreRefused) {
  Daemon d(TenantFlags());
  ASSERT_TRUE(d.running());
  OpenSocketDir(d);
  {
    RawConnection raw(d.socket());
    const std::string bad = raw.TryOpen("not-a-token");
    EXPECT_TRUE(StartsWith(bad, "PermissionDenied:")) << bad;
    ASSERT_EQ(raw.TryOpen(kAliceToken), "");
    const std::string sw = raw.TryOpen(kBobToken);  // a second tenant on one connection
    EXPECT_TRUE(StartsWith(sw, "PermissionDenied:")) << sw;
    EXPECT_NE(sw.find("one tenant per connection"), std::string::npos) << sw;
    ASSERT_EQ(raw.TryOpen(""), "");  // alice again, by uid: fine
  }
  // A daemon where no tenant has this uid.
  Daemon other({"--tenant", "carol=uid:4242", "--tenant", "dave=gid:4243"});
  ASSERT_TRUE(other.running());
  auto c = Client::Connect(other.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  EXPECT_TRUE(ns.status().IsPermissionDenied()) << ns.status().ToString();
  EXPECT_NE(ns.status().message().find("no tenant has this connection's uid"), std::string::npos);
  const std::string m = Metrics(d);
  EXPECT_EQ(Metric(m, "kvtier_tenant_refusals_total{reason=\"bad_token\"}"), 1);
  EXPECT_EQ(Metric(m, "kvtier_tenant_refusals_total{reason=\"tenant_switch\"}"), 1);
  EXPECT_EQ(Metric(Metrics(other), "kvtier_tenant_refusals_total{reason=\"unknown_peer\"}"), 1);
}

TEST(DaemonTenants, BadTenantFlagsAreRefusedAtStart) {
  for (const std::vector<std::string>& flags :
       {std::vector<std::string>{"--tenant", "x"},
        {"--tenant", "a=uid:1", "--tenant", "a=uid:2"},
        {"--tenant", "a=host:1G"},
        {"--tenant", "a=uid:1,host:60M", "--tenant", "b=uid:2,host:60M"},
        {"--tenant", "a=token-sha256:abc"},
        {"--verify-checksums", "never"}}) {
    std::string cmd = std::string(KVTIERD_PATH) + " --socket /tmp/kvtier-never.sock --host-capacity 64M --host-region 4M";
    for (const auto& f : flags) cmd += " '" + f + "'";
    cmd += " 2>&1";
    FILE* p = popen(cmd.c_str(), "r");
    std::string out;
    char buf[512];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
    const int status = pclose(p);
    EXPECT_EQ(WEXITSTATUS(status), 2) << cmd << "\n" << out;
    EXPECT_NE(out.find("InvalidArgument"), std::string::npos) << out;
  }
}

}  // namespace
}  // namespace kvtier
