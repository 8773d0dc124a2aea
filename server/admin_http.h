// AdminServer: the daemon's HTTP admin endpoint (cpp-httplib).
//
//   GET /healthz   liveness: 200 "ok\n" (or "ok, degraded: <reasons>\n" while
//                  a part is down and the rest serves), 503 "unhealthy: <reason>\n"
//   GET /readyz    readiness: 200 "ready\n" (with the same degraded note), or
//                  503 "not ready: <reason>\n" (starting, draining)
//   GET /metrics   Prometheus text format 0.0.4 (server/metrics.h)
//   GET /v1/stats  the same data as JSON (shape in docs/operations.md)
//   GET /v1/namespaces  every namespace with its blocks, bytes and hits
//                  (JSON; ?format=text: a table), server/admin_namespaces.h
//   POST /v1/namespaces/ID/evict  drops namespace ID's blocks from the memory
//                  tiers; served to loopback peers only (403 otherwise)
//   GET /          a small HTML status page, refreshing every 5 s: tiers and
//                  their health, rates over the last minute (sampled every
//                  rate_sample_interval by a thread of the server), totals,
//                  namespaces, RPC latencies
//   anything else  404
//
// Transport: server/http_server.h (one request per connection, a deadline
// for the whole request, a connection cap with slots of their own for
// /healthz and /readyz, bounded heads and bodies); AdminOptions sets it.
//
// The server reads the daemon only through AdminSources: callbacks and a
// const RpcMetrics*, called from the server's own threads while it runs.
//
// Ownership: the AdminServer owns its listening socket and threads; the
// caller keeps everything AdminSources points to (RpcMetrics, the cache
// behind cache_stats) alive until Stop() returns or the server is destroyed.
// Thread safety: the sources' callbacks are called concurrently from the
// connection threads (up to max_connections + 4) and must be thread-safe
// (Cache::Stats() is).
// Stop() and the destructor may be called from any one thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "cache/cache.h"
#include "server/admin_rates.h"
#include "server/metrics.h"
#include "tiers/status.h"

#include "server/http_server.h"

namespace kvtier {

struct AdminSources {
  std::function<CacheStats()> cache_stats;  // empty: no cache metrics
  const RpcMetrics* rpc = nullptr;          // null: no RPC metrics
  std::function<Status()> health;           // empty: always healthy (liveness)
  std::function<Status()> readiness;        // empty: always ready
  // What is down while the daemon still serves ("nvme tier: writes
  // stopped"); empty string: nothing. Shown by /healthz, /readyz, /metrics.
  std::function<std::string()> degraded;
  // Namespaces and their usage (Cache::Namespaces); empty: none listed.
  std::function<std::vector<NamespaceUsage>()> namespaces;
  // Cache::EvictNamespace; empty: POST .../evict answers 404.
  std::function<Result<NamespaceEviction>(NamespaceId)> evict_namespace;
  // How often the status page's "last minute" rates sample the counters.
  std::chrono::milliseconds rate_sample_interval{5000};
  std::string version;                      // e.g. KvtierVersion()
  std::string socket_path;                  // shown on the status page
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
};

struct AdminOptions {
  uint32_t max_connections = 32;           // --admin-max-connections
  std::chrono::milliseconds timeout{5000};  // --admin-timeout
  RefusalMetrics* refused = nullptr;        // counts refusals when set
};

class AdminServer {
 public:
  // Binds `address` ("HOST:PORT", "[v6]:PORT"; port 0 picks a free port) and
  // serves until Stop(). Errors: InvalidArgument (malformed address, host
  // that does not resolve), IOError (bind or listen failed, e.g. the port is
  // in use), each naming the address.
  static Result<std::unique_ptr<AdminServer>> Start(const std::string& address,
                                                    AdminSources sources,
                                                    AdminOptions options = {});
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // The bound port (the chosen one when started with port 0).
  int port() const { return port_; }
  const std::string& host() const { return host_; }
  // Stops accepting, finishes requests in progress, joins the threads.
  // Idempotent.
  void Stop();

  // The bodies the endpoints serve, exposed for tests and for the RPC
  // service's stats call. Each reads the sources once.
  std::string MetricsText() const;
  std::string DegradedNote() const;  // ", degraded: ..." or empty
  std::string StatsJson() const;
  std::string StatusPage() const;
  // The answer to one request (routing and every endpoint above).
  HttpResponse Handle(const HttpRequest& request) const;
  // An AdminServer that serves nothing, for Handle() alone (the fuzzer).
  static std::unique_ptr<AdminServer> ForHandling(AdminSources sources);

 private:
  explicit AdminServer(AdminSources sources);
  double UptimeSeconds() const;

  void SamplerMain();

  AdminSources sources_;
  std::unique_ptr<HttpServer> server_;
  // The status page's rates: samples taken by sampler_ (while cache_stats is set).
  RateWindow rates_;
  std::thread sampler_;
  std::mutex sampler_mu_;
  std::condition_variable sampler_cv_;
  bool sampler_stop_ = false;
  std::string host_;
  int port_ = 0;
};

}  // namespace kvtier
