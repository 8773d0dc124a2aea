#include "server/admin_http.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <cstdio>
#include <map>
#include <numeric>
#include <regex>
#include <set>
#include <thread>

#include "tests/cache/cache_test_util.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using testing::FillReserved;
using nlohmann::json;
using testing::MakeCache;
using testing::SmallSpec;

constexpr uint64_t kBlock = 16 << 10;

// Prometheus text, parsed strictly: every sample belongs to a family
// declared by # HELP then # TYPE, each family once, its samples together.
struct PromText {
  std::map<std::string, double> samples;  // 'name{labels}' as written → value
  std::map<std::string, std::string> types;
  std::string error;  // empty when the text parsed

  static PromText Parse(const std::string& text) {
    PromText p;
    static const std::regex kHelp(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) .+$)");
    static const std::regex kType(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram)$)");
    static const std::regex kSample(
        R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*",?)*\})? (\S+)$)");
    std::string last_help, current;
    std::set<std::string> done;
    size_t pos = 0;
    int lineno = 0;
    if (text.empty() || text.back() != '\n') p.error = "text does not end with a newline";
    while (p.error.empty() && pos < text.size()) {
      size_t nl = text.find('\n', pos);
      std::string line = text.substr(pos, nl - pos);
      pos = nl + 1;
      ++lineno;
      std::smatch m;
      auto fail = [&](const std::string& why) {
        p.error = "line " + std::to_string(lineno) + ": " + why + ": " + line;
      };
      if (std::regex_match(line, m, kHelp)) {
        last_help = m[1];
      } else if (std::regex_match(line, m, kType)) {
        if (m[1] != last_help) return fail("TYPE without HELP"), p;
        if (done.count(m[1])) return fail("family declared twice"), p;
        if (!current.empty()) done.insert(current);
        current = m[1];
        p.types[current] = m[2];
      } else if (std::regex_match(line, m, kSample)) {
        std::string name = m[1];
        std::string family = name;
        if (p.types.count(current) && p.types[current] == "histogram") {
          for (const char* suffix : {"_bucket", "_sum", "_count"}) {
            const std::string s = suffix;
            if (name.size() > s.size() && name.compare(name.size() - s.size(), s.size(), s) == 0)
              family = name.substr(0, name.size() - s.size());
          }
        }
        if (family != current) return fail("sample outside its family"), p;
        const std::string value = m[5];
        char* end = nullptr;
        double v = value == "+Inf" ? INFINITY : std::strtod(value.c_str(), &end);
        if (value != "+Inf" && (end == nullptr || *end != '\0')) return fail("bad value"), p;
        std::string key = name + std::string(m[2]);
        if (p.samples.count(key)) return fail("duplicate sample"), p;
        p.samples[key] = v;
      } else {
        return fail("unparsable"), p;
      }
    }
    return p;
  }
  double at(const std::string& key) const {
    auto it = samples.find(key);
    EXPECT_NE(it, samples.end()) << "missing sample " << key;
    return it == samples.end() ? -1 : it->second;
  }
};

class AdminHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    cache_ = MakeCache(4 << 20, 1 << 20);  // 256 blocks of 16 KiB
    ASSERT_NE(cache_, nullptr);
    auto ns = cache_->OpenNamespace(SmallSpec());
    ASSERT_TRUE(ns.ok());
    ns_ = *ns;
    KeyHasher h(SmallSpec());
    std::vector<uint32_t> tokens(16 * 40);
    std::iota(tokens.begin(), tokens.end(), 1);
    h.Hash(tokens, &keys_);
    Store(0, 10);
    auto lease = cache_->Acquire(ns_, std::span(keys_).subspan(0, 12));  // 10 hit, 2 miss
    ASSERT_TRUE(lease.ok());
    lease_ = std::move(lease).value();
    // An aborted reservation.
    std::vector<uint64_t> sizes(2, kBlock);
    auto r = cache_->Reserve(ns_, std::span(keys_).subspan(20, 2), sizes);
    ASSERT_TRUE(r.ok());
    cache_->Abort(*r);

    rpc_.Record(RpcMethod::kAcquire, 40'000, true);   // 40 us
    rpc_.Record(RpcMethod::kAcquire, 45'000, true);
    rpc_.Record(RpcMethod::kAcquire, 3'000'000, false);  // 3 ms, failed
    rpc_.Record(RpcMethod::kCommit, 800, true);
    rpc_.connections_open = 2;
    rpc_.connections_total = 5;
    rpc_.leases_open = 1;
    rpc_.txns_open = 3;
  }

  void Store(size_t first, size_t n) {
    auto r = cache_->Reserve(ns_, std::span(keys_).subspan(first, n), std::vector<uint64_t>(n, kBlock));
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(cache_->Commit(*r, FillReserved(*cache_, *r)).ok());
  }

  AdminSources Sources() {
    AdminSources s;
    Cache* c = cache_.get();
    s.cache_stats = [c] { return c->Stats(); };
    s.rpc = &rpc_;
    s.health = [this] { return healthy_ ? Status::OK() : Status::Unavailable("nvme tier offline"); };
    s.readiness = [this] { return ready_ ? Status::OK() : Status::Unavailable("draining"); };
    s.degraded = [this] { return degraded_ ? std::string("nvme tier: writes stopped") : std::string(); };
    s.version = "9.8.7-test";
    s.socket_path = "/run/kvtier/<test>.sock";
    s.started = std::chrono::steady_clock::now() - std::chrono::seconds(90);
    return s;
  }

  std::unique_ptr<AdminServer> StartServer() {
    auto s = AdminServer::Start("127.0.0.1:0", Sources());
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    if (!s.ok()) return nullptr;
    EXPECT_GT((*s)->port(), 0);
    return std::move(s).value();
  }

  std::unique_ptr<Cache> cache_;
  NamespaceId ns_ = 0;
  std::vector<BlockKey> keys_;
  Lease lease_;
  RpcMetrics rpc_;
  std::atomic<bool> healthy_{true};
  std::atomic<bool> ready_{true};
  std::atomic<bool> degraded_{false};
};

TEST_F(AdminHttpTest, Healthz) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  auto res = cli.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok\n");

  healthy_ = false;
  res = cli.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("nvme tier offline"), std::string::npos) << res->body;
}

// Liveness and readiness are separate, and a part that is down while the
// rest serves is reported (body and /metrics) without failing either probe.
TEST_F(AdminHttpTest, ReadyzAndDegradedState) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  // Status and body of a GET, and whether /metrics holds `line`.
  auto get = [&](const char* path) {
    auto r = cli.Get(path);
    return r ? std::to_string(r->status) + " " + r->body : std::string("no answer");
  };
  auto metric = [&](const std::string& line) {
    auto m = cli.Get("/metrics");
    return m && m->body.find("\n" + line + "\n") != std::string::npos;
  };
  EXPECT_EQ(get("/readyz"), "200 ready\n");
  EXPECT_TRUE(metric("kvtier_ready 1"));
  EXPECT_TRUE(metric("kvtier_degraded 0"));

  degraded_ = true;
  EXPECT_EQ(get("/healthz"), "200 ok, degraded: nvme tier: writes stopped\n");
  EXPECT_EQ(get("/readyz"), "200 ready, degraded: nvme tier: writes stopped\n");
  EXPECT_TRUE(metric("kvtier_degraded 1"));

  ready_ = false;
  EXPECT_EQ(get("/readyz"), "503 not ready: Unavailable: draining\n");
  EXPECT_EQ(get("/healthz").substr(0, 4), "200 ") << "draining is alive";
  EXPECT_TRUE(metric("kvtier_ready 0"));
}

TEST_F(AdminHttpTest, MetricsMatchTheCacheStats) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  auto res = cli.Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("version=0.0.4"), std::string::npos);
  PromText p = PromText::Parse(res->body);
  ASSERT_EQ(p.error, "") << res->body;

  const CacheStats s = cache_->Stats();
  ASSERT_EQ(s.tiers.size(), 1u);
  const TierStats& t = s.tiers[0];
  ASSERT_EQ(t.name, "host");
  EXPECT_EQ(t.blocks, 10u);
  const std::string tier = "{tier=\"host\"}";
  EXPECT_EQ(p.at("kvtier_tier_capacity_bytes" + tier), t.capacity_bytes);
  EXPECT_EQ(p.at("kvtier_tier_capacity_bytes" + tier), 4 << 20);
  EXPECT_EQ(p.at("kvtier_tier_used_bytes" + tier), t.used_bytes);
  EXPECT_EQ(p.at("kvtier_tier_blocks" + tier), t.blocks);
  EXPECT_EQ(p.at("kvtier_tier_hits_total" + tier), t.hits);
  EXPECT_EQ(p.at("kvtier_tier_bytes_in_total" + tier), t.bytes_in);
  EXPECT_EQ(p.at("kvtier_tier_bytes_out_total" + tier), t.bytes_out);
  EXPECT_EQ(p.at("kvtier_tier_evictions_total" + tier), t.evictions);
  EXPECT_EQ(p.at("kvtier_tier_evicted_bytes_total" + tier), t.evicted_bytes);
  EXPECT_EQ(p.at("kvtier_eviction_policy_memory_bytes" + tier), t.policy_memory);

  EXPECT_EQ(p.at("kvtier_acquires_total"), s.acquires);
  EXPECT_EQ(p.at("kvtier_acquires_total"), 1);
  EXPECT_EQ(p.at("kvtier_keys_requested_total"), 12);
  EXPECT_EQ(p.at("kvtier_blocks_hit_total"), 10);
  EXPECT_EQ(p.at("kvtier_blocks_missed_total"), 2);
  EXPECT_EQ(p.at("kvtier_reserves_total"), s.reserves);
  EXPECT_EQ(p.at("kvtier_blocks_reserved_total"), s.blocks_reserved);
  EXPECT_EQ(p.at("kvtier_blocks_present_total"), s.blocks_present);
  EXPECT_EQ(p.at("kvtier_blocks_in_flight_total"), s.blocks_in_flight);
  EXPECT_EQ(p.at("kvtier_blocks_no_space_total"), s.blocks_no_space);
  EXPECT_EQ(p.at("kvtier_commits_total"), s.commits);
  EXPECT_EQ(p.at("kvtier_aborts_total"), s.aborts);
  EXPECT_EQ(p.at("kvtier_aborts_total"), 1);  // one reservation
  EXPECT_EQ(p.at("kvtier_blocks_ready"), 10);
  EXPECT_EQ(p.at("kvtier_blocks_writing"), 0);
  EXPECT_EQ(p.at("kvtier_blocks_pinned"), 10);  // the fixture's lease
  EXPECT_EQ(p.at("kvtier_index_entries"), s.index_entries);
  EXPECT_EQ(p.at("kvtier_index_memory_bytes"), s.index_memory);

  EXPECT_EQ(p.types["kvtier_rpc_duration_seconds"], "histogram");
  EXPECT_EQ(p.types["kvtier_acquires_total"], "counter");
  EXPECT_EQ(p.types["kvtier_blocks_ready"], "gauge");
  const std::string acq = "method=\"acquire\"";
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_count{" + acq + "}"), 3);
  EXPECT_NEAR(p.at("kvtier_rpc_duration_seconds_sum{" + acq + "}"), 0.003085, 1e-12);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"2e-05\"}"), 0);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"5e-05\"}"), 2);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"0.002\"}"), 2);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"0.005\"}"), 3);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"10\"}"), 3);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + acq + ",le=\"+Inf\"}"), 3);
  EXPECT_EQ(p.at("kvtier_rpc_errors_total{" + acq + "}"), 1);
  EXPECT_EQ(p.at("kvtier_rpc_errors_total{method=\"commit\"}"), 0);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_count{method=\"host_segment\"}"), 0);
  EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{method=\"commit\",le=\"1e-06\"}"), 1);
  // Buckets are cumulative for every method.
  for (size_t i = 0; i < kNumRpcMethods; ++i) {
    const std::string m = std::string("method=\"") + RpcMethodName(static_cast<RpcMethod>(i)) + "\"";
    double prev = 0;
    for (size_t b = 0; b < HistogramSnapshot::kNumBounds; ++b) {
      std::string le = PrometheusDouble(static_cast<double>(HistogramSnapshot::kBoundsNs[b]) / 1e9);
      double v = p.at("kvtier_rpc_duration_seconds_bucket{" + m + ",le=\"" + le + "\"}");
      EXPECT_GE(v, prev);
      prev = v;
    }
    EXPECT_EQ(p.at("kvtier_rpc_duration_seconds_bucket{" + m + ",le=\"+Inf\"}"),
              p.at("kvtier_rpc_duration_seconds_count{" + m + "}"));
  }
  EXPECT_EQ(p.at("kvtier_connections_open"), 2);
  EXPECT_EQ(p.at("kvtier_connections_total"), 5);
  EXPECT_EQ(p.at("kvtier_leases_open"), 1);
  EXPECT_EQ(p.at("kvtier_txns_open"), 3);
  EXPECT_GE(p.at("kvtier_uptime_seconds"), 90);
  EXPECT_LT(p.at("kvtier_uptime_seconds"), 900);
  EXPECT_EQ(p.at("kvtier_build_info{version=\"9.8.7-test\"}"), 1);
}

TEST_F(AdminHttpTest, StatsJsonHasTheFields) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  auto res = cli.Get("/v1/stats");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  ASSERT_TRUE(json::accept(res->body)) << res->body;
  const json j = json::parse(res->body);
  const CacheStats s = cache_->Stats();

  EXPECT_EQ(j.at("version"), "9.8.7-test");
  EXPECT_GE(j.at("uptime_seconds").get<double>(), 90.0);
  EXPECT_EQ(j.at("socket_path"), "/run/kvtier/<test>.sock");
  EXPECT_EQ(j.at("healthy"), true);
  EXPECT_EQ(j.at("health_reason"), "");

  const json& c = j.at("cache");
  ASSERT_TRUE(c.is_object());
  EXPECT_EQ(c.at("blocks_ready"), 10);
  EXPECT_EQ(c.at("blocks_writing"), 0);
  EXPECT_EQ(c.at("blocks_pinned"), 10);
  EXPECT_EQ(c.at("index_entries"), static_cast<double>(s.index_entries));
  EXPECT_EQ(c.at("index_memory_bytes"), static_cast<double>(s.index_memory));
  EXPECT_EQ(c.at("acquires"), 1);
  EXPECT_EQ(c.at("keys_requested"), 12);
  EXPECT_EQ(c.at("blocks_hit"), 10);
  EXPECT_EQ(c.at("blocks_missed"), 2);
  EXPECT_NEAR(c.at("hit_rate").get<double>(), 10.0 / 12.0, 1e-12);
  EXPECT_EQ(c.at("reserves"), static_cast<double>(s.reserves));
  EXPECT_EQ(c.at("blocks_reserved"), static_cast<double>(s.blocks_reserved));
  for (const char* k : {"blocks_present", "blocks_in_flight", "blocks_no_space", "commits"})
    EXPECT_TRUE(c.at(k).is_number()) << k;
  EXPECT_EQ(c.at("aborts"), 1);

  const json& tiers = j.at("tiers");
  ASSERT_TRUE(tiers.is_array());
  ASSERT_EQ(tiers.size(), 1u);
  const json& t = tiers.at(0);
  EXPECT_EQ(t.at("name"), "host");
  EXPECT_EQ(t.at("capacity_bytes"), 4 << 20);
  EXPECT_EQ(t.at("used_bytes"), static_cast<double>(s.tiers[0].used_bytes));
  EXPECT_NEAR(t.at("used_fraction").get<double>(),
              static_cast<double>(s.tiers[0].used_bytes) / (4 << 20), 1e-12);
  EXPECT_EQ(t.at("blocks"), 10);
  EXPECT_EQ(t.at("hits"), 10);
  EXPECT_EQ(t.at("bytes_in"), static_cast<double>(s.tiers[0].bytes_in));
  EXPECT_EQ(t.at("bytes_out"), static_cast<double>(s.tiers[0].bytes_out));
  for (const char* k : {"evictions", "evicted_bytes", "policy_memory_bytes"})
    EXPECT_TRUE(t.at(k).is_number()) << k;

  const json& rpc = j.at("rpc");
  ASSERT_TRUE(rpc.is_object());
  const json& methods = rpc.at("methods");
  ASSERT_EQ(methods.size(), kNumRpcMethods);
  for (size_t i = 0; i < kNumRpcMethods; ++i) {
    const json& m = methods.at(RpcMethodName(static_cast<RpcMethod>(i)));
    for (const char* k : {"count", "errors", "mean_us", "p50_us", "p99_us"})
      EXPECT_TRUE(m.at(k).is_number()) << RpcMethodName(static_cast<RpcMethod>(i)) << k;
  }
  const json& acq = methods.at("acquire");
  EXPECT_EQ(acq.at("count"), 3);
  EXPECT_EQ(acq.at("errors"), 1);
  EXPECT_GT(acq.at("p50_us").get<double>(), 20.0);  // 40 and 45 us sit in (20, 50] us
  EXPECT_LE(acq.at("p50_us").get<double>(), 50.0);
  EXPECT_GT(acq.at("p99_us").get<double>(), 2000.0);  // 3 ms sits in (2, 5] ms
  EXPECT_LE(acq.at("p99_us").get<double>(), 5000.0);
  EXPECT_NEAR(acq.at("mean_us").get<double>(), 3085.0 / 3.0, 1e-9);
  EXPECT_EQ(methods.at("stats").at("count"), 0);
  EXPECT_EQ(rpc.at("connections_open"), 2);
  EXPECT_EQ(rpc.at("connections_total"), 5);
  EXPECT_EQ(rpc.at("leases_open"), 1);
  EXPECT_EQ(rpc.at("txns_open"), 3);

  healthy_ = false;
  const std::string body2 = server->StatsJson();
  ASSERT_TRUE(json::accept(body2)) << body2;
  const json j2 = json::parse(body2);
  EXPECT_EQ(j2.at("healthy"), false);
  EXPECT_NE(j2.at("health_reason").get<std::string>().find("nvme tier offline"), std::string::npos);
}

TEST_F(AdminHttpTest, StatusPage) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  auto res = cli.Get("/");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_NE(res->get_header_value("Content-Type").find("text/html"), std::string::npos);
  const std::string& b = res->body;
  const TierStats t = cache_->Stats().tiers[0];
  char occupancy[32];
  std::snprintf(occupancy, sizeof(occupancy), "width:%.1f%%",
                100.0 * static_cast<double>(t.used_bytes) / static_cast<double>(t.capacity_bytes));
  for (const char* want :
       {"<!doctype html>", "http-equiv=\"refresh\" content=\"5\"", "kvtier 9.8.7-test",
        "uptime 1m 3", "/run/kvtier/&lt;test&gt;.sock",  // escaped
        "<td>host</td>", static_cast<const char*>(occupancy), "hit rate", "83.3%",
        "<td>acquire</td>", "<td>host_segment</td>", "p99 (&micro;s)", "/metrics"}) {
    EXPECT_NE(b.find(want), std::string::npos) << want << "\n" << b;
  }
  EXPECT_EQ(b.find("<test>"), std::string::npos);  // never unescaped
  // Tier health, and the last minute: collecting right after the start.
  EXPECT_NE(b.find("<th>health</th>"), std::string::npos) << b;
  EXPECT_NE(b.find("<span class=\"ok\">ok</span></td>"), std::string::npos) << b;
  EXPECT_NE(b.find("<h2>Last minute</h2>\n<p>Collecting"), std::string::npos) << b;
}

// Rates over the last minute from the server's own sampler: acquires made
// after the start show up as a rate, totals since the start do not.
TEST_F(AdminHttpTest, StatusPageShowsRatesOverTheLastMinute) {
  AdminSources src = Sources();
  src.rate_sample_interval = std::chrono::milliseconds(100);
  auto s = AdminServer::Start("127.0.0.1:0", std::move(src));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  for (int i = 0; i < 30; ++i) {
    auto lease = cache_->Acquire(ns_, std::span(keys_).subspan(0, 4));  // 4 of 4 hit
    ASSERT_TRUE(lease.ok());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  const std::string b = (*s)->StatusPage();
  const std::string head = "<h2>Last minute</h2>\n<p>Over the last ";
  const size_t at = b.find(head);
  ASSERT_NE(at, std::string::npos) << b;
  // 30 acquires in ~1.5 s: between 10 and 30 per second; every key of them hit.
  const double secs = std::stod(b.substr(at + head.size()));
  EXPECT_GT(secs, 1.0);
  EXPECT_LT(secs, 10.0);
  const size_t per = b.find(" acquires/s", at);
  const size_t from = b.rfind(' ', per - 1) + 1;
  const double rate = std::stod(b.substr(from, per - from));
  EXPECT_NEAR(rate, 30.0 / secs, 0.15 * 30.0 / secs) << b.substr(at, 200);
  EXPECT_NE(b.find("hit rate 100.0%", at), std::string::npos) << b.substr(at, 300);
  EXPECT_NE(b.find("<th>hits/s</th>", at), std::string::npos);
}

TEST_F(AdminHttpTest, UnknownPathsAre404) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  httplib::Client cli("127.0.0.1", server->port());
  for (const char* path : {"/nope", "/metrics/extra", "/v1/stats/x", "/healthz2", "/v2/stats"}) {
    auto res = cli.Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
    EXPECT_EQ(res->body, "not found\n") << path;
  }
}

TEST_F(AdminHttpTest, WithoutSourcesStillServes) {
  AdminSources none;
  none.version = "x";
  auto s = AdminServer::Start("127.0.0.1:0", std::move(none));
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  httplib::Client cli("127.0.0.1", (*s)->port());
  auto m = cli.Get("/metrics");
  ASSERT_TRUE(m);
  PromText p = PromText::Parse(m->body);
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.samples.count("kvtier_acquires_total"), 0u);
  EXPECT_EQ(p.at("kvtier_build_info{version=\"x\"}"), 1);
  auto j = cli.Get("/v1/stats");
  ASSERT_TRUE(j);
  ASSERT_TRUE(json::accept(j->body)) << j->body;
  const json parsed = json::parse(j->body);
  EXPECT_TRUE(parsed.at("cache").is_null());
  EXPECT_TRUE(parsed.at("rpc").is_null());
  EXPECT_TRUE(parsed.at("tiers").is_array());
  EXPECT_EQ(parsed.at("tiers").size(), 0u);
  auto h = cli.Get("/");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
}

TEST_F(AdminHttpTest, OccupiedPortIsAnIOError) {
  auto first = StartServer();
  ASSERT_NE(first, nullptr);
  const std::string addr = "127.0.0.1:" + std::to_string(first->port());
  auto second = AdminServer::Start(addr, Sources());
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), StatusCode::kIOError) << second.status().ToString();
  EXPECT_NE(second.status().message().find(addr), std::string::npos)
      << second.status().message();
  // The first one still serves.
  httplib::Client cli("127.0.0.1", first->port());
  auto res = cli.Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST_F(AdminHttpTest, BadAddressesAreInvalidArgument) {
  for (const char* addr : {"localhost", "127.0.0.1:99999", "127.0.0.1:x", ":9477", "::1:9477"}) {
    auto s = AdminServer::Start(addr, Sources());
    ASSERT_FALSE(s.ok()) << addr;
    EXPECT_TRUE(s.status().IsInvalidArgument()) << addr << ": " << s.status().ToString();
    EXPECT_NE(s.status().message().find(addr), std::string::npos) << s.status().message();
  }
}

TEST_F(AdminHttpTest, StopIsPromptAndIdempotent) {
  for (int i = 0; i < 20; ++i) {  // Stop right after Start never hangs
    auto s = StartServer();
    ASSERT_NE(s, nullptr);
    s->Stop();
  }
  auto s = StartServer();
  ASSERT_NE(s, nullptr);
  const int port = s->port();
  {
    httplib::Client cli("127.0.0.1", port);
    ASSERT_TRUE(cli.Get("/healthz"));
  }
  s->Stop();
  s->Stop();
  httplib::Client cli("127.0.0.1", port);
  cli.set_connection_timeout(1);
  EXPECT_FALSE(cli.Get("/healthz"));
  s.reset();  // destructor after Stop
}

TEST_F(AdminHttpTest, ConcurrentScrapesDuringCacheTraffic) {
  auto server = StartServer();
  ASSERT_NE(server, nullptr);
  std::atomic<bool> stop{false};
  std::thread traffic([&] {
    while (!stop) {
      auto l = cache_->Acquire(ns_, std::span(keys_).subspan(0, 12));
      rpc_.Record(RpcMethod::kAcquire, 1000, l.ok());
    }
  });
  std::vector<std::thread> scrapers;
  std::atomic<int> good{0};
  for (int t = 0; t < 4; ++t) {
    scrapers.emplace_back([&, t] {
      httplib::Client cli("127.0.0.1", server->port());
      const char* path = t % 2 ? "/metrics" : "/v1/stats";
      for (int i = 0; i < 20; ++i) {
        auto res = cli.Get(path);
        if (!res || res->status != 200) continue;
        bool ok = t % 2 ? PromText::Parse(res->body).error.empty()
                        : json::accept(res->body);
        if (ok) ++good;
      }
    });
  }
  for (auto& s : scrapers) s.join();
  stop = true;
  traffic.join();
  EXPECT_EQ(good.load(), 80);
}

}  // namespace
}  // namespace kvtier
