// Integration tests against a real kvtierd process on a real Unix socket.
#include <capnp/rpc-twoparty.h>
#include <httplib.h>
#include <kj/async-io.h>
#include <poll.h>
#include <sys/un.h>

#include <atomic>
#include <numeric>
#include <thread>

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

std::vector<BlockKey> PromptKeys(const ClientNamespace& ns, uint32_t seed, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(seed * 1000003 + i);
  return ns.HashTokens(tokens);
}

// Child process body: returns an exit code (0 = success).
int StoreBlocks(const std::string& socket, uint32_t seed, size_t n) {
  auto c = Client::Connect(socket);
  if (!c.ok()) return 10;
  auto ns = (*c)->OpenNamespace(DemoSpec());
  if (!ns.ok()) return 11;
  auto keys = PromptKeys(**ns, seed, n);
  std::vector<std::vector<uint8_t>> bufs(n, std::vector<uint8_t>((*ns)->block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < n; ++i) {
    FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  auto r = (*ns)->Store(keys, ptrs);
  if (!r.ok() || r->stored != n) return 12;
  return 0;
}

// Runs `fn` in a forked process, on a fresh thread there, so that it never
// touches an event loop the parent's thread may have had at fork time.
int RunChild(const std::function<int()>& fn) {
  pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    std::thread t([&] { rc = fn(); });
    t.join();
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

TEST(DaemonTest, OneProcessStoresAnotherLoadsByteExact) {
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 7, 40); }), 0);

  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  auto keys = PromptKeys(**ns, 7, 48);  // 40 cached + 8 more
  auto lease = (*ns)->Lookup(keys);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_EQ(lease->size(), 40u);
  std::vector<std::vector<uint8_t>> out(40, std::vector<uint8_t>((*ns)->block_bytes(), 0xAB));
  std::vector<uint8_t*> dst;
  for (auto& o : out) dst.push_back(o.data());
  ASSERT_TRUE((*ns)->Load(*lease, dst).ok());
  std::vector<uint8_t> want((*ns)->block_bytes());
  for (size_t i = 0; i < 40; ++i) {
    FillFromKey(keys[i], want.data(), want.size());
    ASSERT_EQ(out[i], want) << "block " << i;
  }
  // The daemon's hashing equals the client's.
  std::vector<uint32_t> tokens(3 * 16);
  std::iota(tokens.begin(), tokens.end(), 5);
  auto remote = (*ns)->HashTokensRemote(tokens);
  ASSERT_TRUE(remote.ok());
  EXPECT_EQ(*remote, (*ns)->HashTokens(tokens));
  // A second store of the same keys is answered "present", nothing rewritten.
  ASSERT_EQ(RunChild([&] {
              auto c2 = Client::Connect(d.socket());
              auto ns2 = (*c2)->OpenNamespace(DemoSpec());
              auto k = PromptKeys(**ns2, 7, 40);
              auto t = (*ns2)->Reserve(k);
              if (!t.ok() || t->reserved() != 0) return 20;
              for (auto& s : t->slots())
                if (s.outcome != ReserveOutcome::kPresent) return 21;
              return 0;
            }),
            0);
  ASSERT_TRUE(lease->Release().ok());
  auto st = (*c)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->pinned_blocks, 0u);
  EXPECT_EQ(st->blocks_ready, 40u);
  EXPECT_EQ(d.Stop(), 0) << "kvtierd should exit 0 on SIGTERM";
}

TEST(DaemonTest, ClientsGetUnavailableWhenTheDaemonDies) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = PromptKeys(**ns, 3, 4);
  ASSERT_TRUE((*ns)->Store(keys, std::vector<const uint8_t*>(
                                     4, std::vector<uint8_t>((*ns)->block_bytes(), 7).data()))
                  .ok());
  auto lease = (*ns)->Lookup(keys);
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), 4u);
  d.Kill();
  // Every call now fails with Unavailable, promptly; nothing hangs or crashes,
  // including dropping the lease the dead daemon held.
  auto t0 = std::chrono::steady_clock::now();
  Status ping = (*c)->Ping();
  EXPECT_EQ(ping.code(), StatusCode::kUnavailable) << ping.ToString();
  auto again = (*ns)->Lookup(keys);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kUnavailable) << again.status().ToString();
  lease = ClientLease();
  EXPECT_FALSE((*c)->Stats().ok());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
}

TEST(DaemonTest, ClientsThatDropALeaseAndLeaveAreDisconnected) {
  // Each client's last messages (the release of a dropped lease) and its
  // hang-up reach the daemon together: the daemon must still see the end of
  // every connection, and release every pin.
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 1, 10); }), 0);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      auto c = Client::Connect(d.socket());
      if (!c.ok()) return void(++failures);
      auto ns = (*c)->OpenNamespace(DemoSpec());
      if (!ns.ok()) return void(++failures);
      auto keys = PromptKeys(**ns, 1, 10);
      for (int i = 0; i < 200; ++i) {
        auto lease = (*ns)->Lookup(keys);
        if (!lease.ok() || lease->size() != 10) return void(++failures);
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(failures.load(), 0);
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  Result<RemoteStats> st = Status::Internal("no stats yet");
  for (int i = 0; i < 100; ++i) {
    st = (*c)->Stats();
    ASSERT_TRUE(st.ok());
    if (st->connections_open == 1 && st->leases_open == 0 && st->pinned_blocks == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_EQ(st->connections_open, 1u);  // this one
  EXPECT_EQ(st->leases_open, 0u);
  EXPECT_EQ(st->pinned_blocks, 0u);
}

TEST(DaemonTest, KilledClientLeavesNoPinsOrWritingSlots) {
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 1, 10); }), 0);
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t pid = fork();
  if (pid == 0) {
    std::thread([&] {
    auto c = Client::Connect(d.socket());
    auto ns = (*c)->OpenNamespace(DemoSpec());
    auto lease = (*ns)->Lookup(PromptKeys(**ns, 1, 10));
    auto txn = (*ns)->Reserve(PromptKeys(**ns, 2, 6));
    if (!lease.ok() || lease->size() != 10 || !txn.ok() || txn->reserved() != 6) _exit(1);
    char b = 'r';
    if (write(ready[1], &b, 1) != 1) _exit(2);
    pause();  // holds the lease and the open transaction until killed
    }).join();
    _exit(0);
  }
  char b;
  ASSERT_EQ(read(ready[0], &b, 1), 1);
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto st = (*c)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->pinned_blocks, 10u);
  EXPECT_EQ(st->blocks_writing, 6u);
  EXPECT_EQ(st->leases_open, 1u);
  EXPECT_EQ(st->txns_open, 1u);
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  bool clean = false;
  for (int i = 0; i < 100 && !clean; ++i) {
    st = (*c)->Stats();
    ASSERT_TRUE(st.ok());
    clean = st->pinned_blocks == 0 && st->blocks_writing == 0 && st->leases_open == 0 &&
            st->txns_open == 0;
    if (!clean) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_TRUE(clean) << "pins " << st->pinned_blocks << " writing " << st->blocks_writing;
  EXPECT_EQ(st->blocks_ready, 10u);  // the killed writer's blocks never became visible
  auto ns = (*c)->OpenNamespace(DemoSpec());
  EXPECT_EQ((*ns)->Lookup(PromptKeys(**ns, 2, 6))->size(), 0u);
}

TEST(DaemonTest, InvalidRequestsGetErrorsAndTheDaemonKeepsServing) {
  Daemon d({"--max-keys", "1000"});
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 3, 5); }), 0);

  auto expect_error = [](const std::string& e, const std::string& what) {
    EXPECT_NE(e.find(what), std::string::npos) << "got: '" << e << "' expected: " << what;
  };
  {
    RawConnection raw(d.socket());
    // Bad namespace specs.
    auto bad = [&](auto mutate) {
      auto req = raw.boot().openNamespaceRequest();
      auto s = req.initSpec();
      s.setModelId("m");
      s.setNumLayers(4);
      s.setNumKvHeads(2);
      s.setHeadDim(64);
      s.setTokensPerBlock(16);
      s.setDtype(rpc::DType::BF16);
      mutate(s);
      return raw.Error(req);
    };
    expect_error(bad([](auto s) { s.setModelId(""); }), "InvalidArgument: namespace.model_id");
    expect_error(bad([](auto s) { s.setTpRank(2); s.setTpSize(2); }), "InvalidArgument: namespace.tp_rank");
    expect_error(bad([](auto s) { s.setDtype(rpc::DType::UNKNOWN); }), "InvalidArgument: namespace.dtype");
    expect_error(bad([](auto s) { s.setHeadDim(0); }), "InvalidArgument: layout.head_dim");
    // A NUL inside a string is refused, not cut ("abc\0xyz" would be "abc").
    const char nul_id[] = {'a', 'b', 'c', '\0', 'x', 'y', 'z'};
    expect_error(bad([&](auto s) { s.setModelId(capnp::Text::Reader(nul_id, sizeof nul_id)); }),
                 "InvalidArgument: namespace.model_id contains a NUL byte");
    expect_error(bad([&](auto s) { s.setTenantSalt(capnp::Text::Reader(nul_id, sizeof nul_id)); }),
                 "InvalidArgument: namespace.tenant_salt contains a NUL byte");

    auto ns = raw.Open();
    // Sizes that do not match the layout, counts that disagree.
    {
      auto req = ns.reserveRequest();
      req.initKeys(2);
      auto sz = req.initSizes(2);
      sz.set(0, 32768);
      sz.set(1, 4096);
      expect_error(raw.Error(req), "InvalidArgument: sizes[1] = 4096 does not match");
    }
    {
      auto req = ns.reserveRequest();
      req.initKeys(3);
      req.initSizes(2);
      expect_error(raw.Error(req), "InvalidArgument: 3 keys but 2 sizes");
    }
    {
      auto req = ns.reserveRequest();
      req.initKeys(1);
      req.initSizes(1).set(0, 32768);
      req.setPriority(200);
      expect_error(raw.Error(req), "InvalidArgument: priority 200");
    }
    {
      auto req = ns.reserveRequest();
      req.initKeys(2);
      auto sz = req.initSizes(2);
      sz.set(0, 32768);
      sz.set(1, 32768);
      auto r = req.initRanges(1)[0];
      r.setBegin(1);
      r.setEnd(9);
      expect_error(raw.Error(req), "InvalidArgument: priority range");
    }
    // Too many keys.
    {
      auto req = ns.acquireRequest();
      req.initKeys(1001);
      expect_error(raw.Error(req), "InvalidArgument: acquire of 1001 keys exceeds the limit of 1000");
    }
    // Commit with the wrong number of checksums, then twice.
    {
      auto req = ns.reserveRequest();
      auto k = req.initKeys(1)[0];
      k.setLo(77);
      k.setHi(88);
      req.initSizes(1).set(0, 32768);
      auto res = req.send().wait(raw.ws());
      auto txn = res.getTxn();
      auto c1 = txn.commitRequest();
      c1.initChecksums(3);
      expect_error(raw.Error(c1), "InvalidArgument: 3 checksums for 1 reserved keys");
      auto c2 = txn.commitRequest();
      c2.initChecksums(1);
      EXPECT_EQ(raw.Error(c2), "");
      auto c3 = txn.commitRequest();
      c3.initChecksums(1);
      expect_error(raw.Error(c3), "InvalidArgument: transaction is already committed");
    }
  }
  // Garbage bytes instead of Cap'n Proto: that connection is dropped.
  {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, d.socket().c_str(), sizeof(a.sun_path) - 1);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    std::vector<uint8_t> junk(4096);
    for (size_t i = 0; i < junk.size(); ++i) junk[i] = static_cast<uint8_t>(i * 37 + 11);
    junk[0] = 0;  // one segment
    junk[4] = 0xFF; junk[5] = 0xFF; junk[6] = 0xFF; junk[7] = 0x7F;  // absurd segment size
    ASSERT_EQ(write(fd, junk.data(), junk.size()), static_cast<ssize_t>(junk.size()));
    // The daemon may answer with an abort message, then closes the connection.
    char buf[4096];
    bool closed = false;
    for (int i = 0; i < 50 && !closed; ++i) {
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 100) == 1) closed = read(fd, buf, sizeof(buf)) <= 0;
    }
    EXPECT_TRUE(closed) << "the daemon kept a connection that sent garbage";
    close(fd);
  }
  // The daemon still serves, and its data is intact.
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  ASSERT_TRUE((*c)->Ping().ok());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  ASSERT_TRUE(ns.ok());
  auto keys = PromptKeys(**ns, 3, 5);
  auto lease = (*ns)->Lookup(keys);
  ASSERT_EQ(lease->size(), 5u);
  std::vector<uint8_t> buf((*ns)->block_bytes()), want(buf.size());
  for (size_t i = 0; i < 5; ++i) {
    uint8_t* p = buf.data();
    ASSERT_TRUE((*ns)->Load(*lease, std::span(&p, 1)).ok());
  }
  FillFromKey(keys[0], want.data(), want.size());
  EXPECT_EQ(buf, want);
  auto st = (*c)->Stats();
  EXPECT_EQ(st->blocks_writing, 0u);
  EXPECT_EQ(st->blocks_ready, 6u);  // 5 stored + the raw client's committed block
  // Each refused call is counted as an error of its method.
  httplib::Client http("127.0.0.1", d.admin_port());
  auto m = http.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("kvtier_rpc_errors_total{method=\"open_namespace\"} 6"), std::string::npos);
  EXPECT_NE(m->body.find("kvtier_rpc_errors_total{method=\"reserve\"} 4"), std::string::npos);
  EXPECT_NE(m->body.find("kvtier_rpc_errors_total{method=\"commit\"} 2"), std::string::npos);
}

TEST(DaemonTest, CorruptedSlotIsDetectedOnLoad) {
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 9, 3); }), 0);
  auto c = Client::Connect(d.socket());
  auto ns = (*c)->OpenNamespace(DemoSpec());
  auto lease = (*ns)->Lookup(PromptKeys(**ns, 9, 3));
  ASSERT_EQ(lease->size(), 3u);
  // Flip one bit of block 1 in the shared segment (as a stray writer would).
  (*c)->segment_base()[lease->blocks()[1].offset + 1000] ^= 0x10;
  std::vector<std::vector<uint8_t>> out(3, std::vector<uint8_t>((*ns)->block_bytes()));
  std::vector<uint8_t*> dst = {out[0].data(), out[1].data(), out[2].data()};
  Status st = (*ns)->Load(*lease, dst);
  EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("block 1"), std::string::npos) << st.ToString();
}

TEST(DaemonTest, AdminEndpointServesHealthMetricsAndStats) {
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return StoreBlocks(d.socket(), 4, 8); }), 0);
  httplib::Client http("127.0.0.1", d.admin_port());
  auto h = http.Get("/healthz");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  auto m = http.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("kvtier_blocks_ready 8"), std::string::npos) << m->body.substr(0, 2000);
  EXPECT_NE(m->body.find("kvtier_rpc_duration_seconds_bucket{method=\"reserve\""), std::string::npos);
  auto s = http.Get("/v1/stats");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->status, 200);
  EXPECT_NE(s->body.find("\"tiers\""), std::string::npos);
  auto page = http.Get("/");
  ASSERT_TRUE(page);
  EXPECT_NE(page->body.find("kvtier"), std::string::npos);
}

TEST(DaemonTest, RefusesToStealALiveSocketAndRejectsBadFlags) {
  Daemon d;
  ASSERT_TRUE(d.running());
  auto run = [](std::vector<std::string> args) {
    args.insert(args.begin(), KVTIERD_PATH);
    pid_t pid = fork();
    if (pid == 0) {
      int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, 2);
      dup2(devnull, 1);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  };
  EXPECT_NE(run({"--socket", d.socket(), "--data-dir", d.dir() + "/d2", "--host-capacity", "64M",
                 "--host-region", "4M", "--admin", "off"}),
            0);
  EXPECT_EQ(run({"--no-such-flag"}), 2);
  EXPECT_EQ(run({"--host-capacity", "lots"}), 2);
  EXPECT_EQ(run({"--help"}), 0);
  // The first daemon was not disturbed.
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  EXPECT_TRUE((*c)->Ping().ok());
}

}  // namespace
}  // namespace kvtier

namespace kvtier {
namespace {

// SIGHUP (a reload request from init systems and terminals) is never fatal:
// the daemon keeps its state and serves; SIGTERM still stops it cleanly.
TEST(DaemonSignalTest, SighupIsNotFatal) {
  testing::Daemon d;
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto ns = (*c)->OpenNamespace(testing::DemoSpec());
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  for (int i = 0; i < 3; ++i) d.Signal(SIGHUP);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_FALSE(d.Exited()) << "kvtierd died of SIGHUP";
  auto stats = (*c)->Stats();
  EXPECT_TRUE(stats.ok()) << stats.status().ToString();
  auto c2 = Client::Connect(d.socket());
  EXPECT_TRUE(c2.ok()) << c2.status().ToString();
  httplib::Client http("127.0.0.1", d.admin_port());
  auto ready = http.Get("/readyz");
  ASSERT_TRUE(ready);
  EXPECT_EQ(ready->status, 200);
  EXPECT_EQ(ready->body, "ready\n");
  EXPECT_EQ(d.Stop(), 0);
}

// SIGTERM drains: /readyz turns 503 at once, new leases and stores are
// refused with Unavailable, what clients hold may finish (a store commits, a
// lease is released), and the daemon exits 0 as soon as nothing is open.
TEST(DaemonSignalTest, SigtermDrainsOpenLeasesAndStores) {
  testing::Daemon d({"--drain-timeout", "30"});
  ASSERT_TRUE(d.running());
  auto c = Client::Connect(d.socket());
  ASSERT_TRUE(c.ok());
  auto ns = (*c)->OpenNamespace(testing::DemoSpec());
  ASSERT_TRUE(ns.ok());
  std::vector<uint32_t> tokens(16 * 4);
  std::iota(tokens.begin(), tokens.end(), 7);
  auto keys = (*ns)->HashTokens(tokens);
  std::vector<std::vector<uint8_t>> bufs(2, std::vector<uint8_t>((*ns)->block_bytes()));
  std::vector<const uint8_t*> ptrs;
  for (size_t i = 0; i < 2; ++i) {
    testing::FillFromKey(keys[i], bufs[i].data(), bufs[i].size());
    ptrs.push_back(bufs[i].data());
  }
  ASSERT_TRUE((*ns)->Store(std::span(keys).first(2), ptrs).ok());
  auto lease = (*ns)->Lookup(std::span(keys).first(2));
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), 2u);
  auto txn = (*ns)->Reserve(std::span(keys).subspan(2, 2));
  ASSERT_TRUE(txn.ok()) << txn.status().ToString();

  const auto t0 = std::chrono::steady_clock::now();
  d.Signal(SIGTERM);
  httplib::Client http("127.0.0.1", d.admin_port());
  std::shared_ptr<httplib::Response> ready;
  for (int i = 0; i < 100; ++i) {
    auto r = http.Get("/readyz");
    if (r && r->status == 503) {
      ready = std::make_shared<httplib::Response>(*r);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_NE(ready, nullptr) << "/readyz never turned 503";
  EXPECT_NE(ready->body.find("draining"), std::string::npos) << ready->body;
  auto refused = (*ns)->Lookup(std::span(keys).first(1));
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable) << refused.status().ToString();
  EXPECT_NE(refused.status().message().find("draining"), std::string::npos);
  EXPECT_FALSE(d.Exited()) << "exited with a lease and a store open";

  for (auto& slot : txn->slots())
    if (slot.data != nullptr) testing::FillFromKey(slot.key, slot.data, slot.size);
  EXPECT_TRUE(txn->Commit().ok()) << "an open store may commit while draining";
  EXPECT_TRUE(lease->Release().ok());
  *txn = ClientTxn();  // the client lets go of both; its next call carries
  *lease = ClientLease();  // the capability drops to the daemon
  EXPECT_TRUE((*c)->Stats().ok()) << "calls that start no work are served while draining";
  EXPECT_EQ(d.Stop(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10))
      << "the drain waited for its timeout although nothing was open";
}

}  // namespace
}  // namespace kvtier
