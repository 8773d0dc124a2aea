// kvtierd: the kvtier daemon.
//
// Starts the host tier, the cache, the RPC server on its Unix socket and the
// admin HTTP endpoint, then waits for SIGTERM or SIGINT and shuts down in
// reverse order: admin, RPC (every client's leases released, open writes
// aborted), cache. Exit codes: 0 clean shutdown, 1 start-up failure,
// 2 bad command line or configuration.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>
#include <cstdio>
#include <filesystem>
#include <algorithm>
#include <memory>

#include <spdlog/fmt/ranges.h>
#include <spdlog/spdlog.h>

#include "cache/cache.h"
#include "server/admin_http.h"
#include "server/config.h"
#include "server/data_dir.h"
#include "server/logging.h"
#include "server/metrics.h"
#include "server/rpc_server.h"
#include "server/rpc_service.h"
#include "server/systemd_notify.h"
#include "server/tenants.h"
#include "tiers/fault_io_queue.h"
#include "tiers/gpu_hbm_tier.h"
#include "tiers/host_shm_tier.h"
#include "tiers/numa.h"

namespace kvtier {
namespace {

// Where the host segment goes (empty: the kernel's default).
std::vector<int> HostNumaNodes(const DaemonConfig& cfg) {
  if (cfg.host_numa == "off") return {};
  if (cfg.host_numa != "auto") {
    auto listed = ParseNodeList(cfg.host_numa);  // validated with the config
    return *listed;
  }
  std::vector<int> online = OnlineNumaNodes();
  if (online.size() < 2) return {};
  std::vector<int> nodes;
  const auto gpus = ParseGpuList(cfg.gpus);  // validated with the config
  for (int gpu : *gpus) {
    auto bus = CudaPciBusId(gpu);
    int node = bus.ok() ? NumaNodeOfPciDevice(*bus) : -1;
    if (node < 0) return online;  // unknown: spread over every node
    if (std::find(nodes.begin(), nodes.end(), node) == nodes.end()) nodes.push_back(node);
  }
  return nodes.empty() ? online : nodes;
}

// The daemon's tiers and cache, with or without the NVMe tier.
struct Tiers {
  std::unique_ptr<Cache> cache;
  std::vector<RpcTenant> tenants;  // by tenant index
};

// With tenants, each has its own host segment (and HBM arena per GPU), its
// share of --host-capacity (--hbm-capacity); without, one tenant "" owns
// them all, as before.
Result<Tiers> BuildCache(const DaemonConfig& cfg, bool with_nvme, bool* cache_failed) {
  auto tenant_cfgs = ParseTenants(cfg.tenants);  // validated with the config
  if (!tenant_cfgs.ok()) return tenant_cfgs.status();
  const bool multi = !tenant_cfgs->empty();
  std::vector<std::string> names;
  std::vector<uint64_t> host_share, hbm_share;
  if (multi) {
    for (const auto& t : *tenant_cfgs) {
      names.push_back(t.name);
      host_share.push_back(t.host_bytes);
      hbm_share.push_back(t.hbm_bytes);
    }
    auto h = SplitShares(host_share, cfg.host_capacity_bytes, cfg.host_region_bytes, "host");
    if (!h.ok()) return h.status();
    host_share = *h;
    if (cfg.hbm_capacity_bytes > 0) {
      auto g = SplitShares(hbm_share, cfg.hbm_capacity_bytes, cfg.host_region_bytes, "HBM");
      if (!g.ok()) return g.status();
      hbm_share = *g;
    }
  } else {
    names.push_back("");
    host_share.push_back(cfg.host_capacity_bytes);
    hbm_share.push_back(cfg.hbm_capacity_bytes);
  }
  Tiers t;
  t.tenants.resize(names.size());
  CacheOptions co;
  std::vector<std::unique_ptr<HostShmTier>> hosts;
  const auto numa = HostNumaNodes(cfg);
  if (!numa.empty()) spdlog::info("host tier placed on NUMA node(s) {}", fmt::join(numa, ","));
  for (size_t i = 0; i < names.size(); ++i) {
    HostShmOptions ho;
    ho.capacity_bytes = host_share[i];
    ho.region_bytes = cfg.host_region_bytes;
    ho.numa_nodes = numa;
    ho.path = cfg.host_shm_path;
    if (multi) {
      ho.name = "kvtier-host-" + names[i];
      if (!ho.path.empty()) ho.path += "." + names[i];
    }
    auto host = HostShmTier::Create(ho);
    if (!host.ok())
      return Status(host.status().code(),
                    (multi ? "host tier of tenant '" + names[i] + "': " : std::string("host tier: ")) +
                        host.status().message());
    t.tenants[i].host = host->get();
    hosts.push_back(std::move(host).value());
    if (multi) spdlog::info("tenant '{}': host segment of {}", names[i], FormatSize(host_share[i]));
  }
  bool any_hbm = false;
  if (cfg.hbm_capacity_bytes > 0) {
    auto gpus = ParseGpuList(cfg.gpus);  // validated with the config
    for (size_t i = 0; i < names.size(); ++i) {
      for (int gpu : *gpus) {
        GpuHbmOptions go;
        go.device = gpu;
        go.capacity_bytes = hbm_share[i];
        go.region_bytes = cfg.host_region_bytes;
        // Each host segment is registered (pinned) once, with the first GPU.
        if (t.tenants[i].hbm.empty()) {
          go.host_base = hosts[i]->base();
          go.host_bytes = hosts[i]->segment_bytes();
        }
        auto hbm = GpuHbmTier::Create(go);
        if (!hbm.ok())
          return Status(hbm.status().code(),
                        "HBM tier on GPU " + std::to_string(gpu) +
                            (multi ? " of tenant '" + names[i] + "'" : std::string()) + ": " +
                            hbm.status().message());
        t.tenants[i].hbm.push_back(HbmTierRef{hbm->get(), static_cast<TierId>(co.tiers.size())});
        TierSetup ts{std::move(hbm).value(), cfg.host_policy};
        ts.tenant = static_cast<uint8_t>(i);
        if (multi) ts.name = "hbm/" + names[i];
        co.tiers.push_back(std::move(ts));
        any_hbm = true;
      }
    }
  }
  // Stores land in the first HBM tier (or the writer's GPU's, when it says
  // which) with --store-tier hbm, else in the host tier, after the HBM tiers.
  const TierId first_host = static_cast<TierId>(co.tiers.size());
  co.store_tier = (any_hbm && cfg.store_tier == "hbm") ? 0 : first_host;
  for (size_t i = 0; i < names.size(); ++i) {
    TierSetup ts{std::move(hosts[i]), cfg.host_policy};
    ts.tenant = static_cast<uint8_t>(i);
    if (multi) {
      ts.name = "host/" + names[i];
      CacheTenant ct;
      ct.name = names[i];
      ct.nvme_quota_bytes = (*tenant_cfgs)[i].nvme_bytes;
      co.tenants.push_back(ct);
    }
    co.tiers.push_back(std::move(ts));
  }
  co.verify_at_commit = cfg.verify_checksums == "commit";
  co.max_keys_per_call = cfg.max_keys_per_call;
  co.promote_to_hbm_hits = cfg.promote_to_hbm_hits;
  co.namespace_file = (std::filesystem::path(cfg.data_dir) / "namespaces").string();
  co.namespace_idle_reclaim_ns = uint64_t{cfg.namespace_idle_seconds} * 1000000000ull;
  co.log_warning = [](const std::string& m) { spdlog::warn("{}", m); };
  co.log_info = [](const std::string& m) { spdlog::info("{}", m); };
  if (with_nvme && cfg.nvme_capacity_bytes > 0) {
    NvmeTierOptions no;
    no.store.path = cfg.nvme_path;
    no.store.capacity_bytes = cfg.nvme_capacity_bytes;
    no.store.region_bytes = kNvmeRegionBytes;
    if (const uint64_t used = NvmeUsableBytes(cfg.nvme_capacity_bytes); used != cfg.nvme_capacity_bytes)
      spdlog::warn("nvme tier: {} of --nvme-capacity {} used (a 1MiB header and whole {}MiB "
                   "regions); the last {} bytes stay unused",
                   used, cfg.nvme_capacity_bytes, kNvmeRegionBytes / kMiB,
                   cfg.nvme_capacity_bytes - used);
    no.store.max_ops = std::max<uint32_t>(cfg.nvme_queue_depth / 2, 8);
    no.index_path = (std::filesystem::path(cfg.data_dir) / "nvme-index").string();
    no.write_through = cfg.nvme_write_policy != "write-back";
    no.durable_commit = cfg.nvme_write_policy == "write-through";
    no.policy = cfg.nvme_policy;
    no.admission = cfg.nvme_admission;
    no.rebuild_bytes_per_second = cfg.nvme_rebuild_rate_bytes;
    if (!cfg.nvme_fault_inject.empty()) {
      // Testing only: the real queue wrapped in one that fails I/O by rule.
      auto rules = ParseFaultSpec(cfg.nvme_fault_inject);
      if (!rules.ok()) return rules.status();
      IoQueueOptions qo;
      qo.queue_depth = 2 * no.store.max_ops;
      auto inner = NewDefaultIoQueue(qo);
      if (!inner.ok()) return inner.status();
      auto faulty = std::make_unique<FaultIoQueue>(std::move(inner).value(),
                                                   static_cast<uint64_t>(getpid()));
      for (const FaultRule& r : *rules) faulty->AddRule(r);
      spdlog::warn("nvme tier: injecting I/O faults ({}): testing only", cfg.nvme_fault_inject);
      no.queue = std::move(faulty);
    }
    co.nvme = std::move(no);
  }
  auto cache = Cache::Create(std::move(co));
  if (!cache.ok()) {
    *cache_failed = true;  // the tiers were built; the cache (or its NVMe tier) was not
    return cache.status();
  }
  t.cache = std::move(cache).value();
  return t;
}

int Run(const DaemonConfig& cfg) {
  // Signals are taken by sigwait() below. They are blocked before any
  // thread starts (the NVMe tier's I/O thread, RocksDB's): a thread that
  // left SIGTERM unblocked would take it with its default action and kill
  // the daemon without a shutdown. Every thread inherits the mask.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGHUP);  // never fatal (see below)
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  signal(SIGPIPE, SIG_IGN);
  // Files: nothing the daemon writes is for other users (docs/security.md).
  umask(DataUmask(!cfg.data_group.empty()));
  auto secured = SecureDataDir(cfg.data_dir, cfg.data_group);
  if (!secured.ok()) {
    spdlog::error("data dir: {}", secured.status().ToString());
    return 1;
  }
  if (*secured > 0)
    spdlog::warn("data dir '{}': took group/other permissions off {} existing paths (files are "
                 "0600, 0640 with --data-group)", cfg.data_dir, *secured);
  // The host tier serves whatever state the NVMe side is in: a device or
  // index error at start-up leaves the daemon up without its NVMe tier,
  // degraded (shown by /healthz, /readyz and kvtier_degraded). Two refusals
  // stay fatal: a bad setting (InvalidArgument) and an NVMe file another
  // daemon holds (Unavailable), which are operators' mistakes to fix.
  std::string nvme_down;
  bool cache_failed = false;
  auto built = BuildCache(cfg, /*with_nvme=*/true, &cache_failed);
  if (!built.ok() && cache_failed && cfg.nvme_capacity_bytes > 0 &&
      !built.status().IsInvalidArgument() && built.status().code() != StatusCode::kUnavailable) {
    nvme_down = "nvme tier: not started: " + built.status().ToString();
    spdlog::error("{}; serving without it", nvme_down);
    built = BuildCache(cfg, /*with_nvme=*/false, &cache_failed);
  }
  if (!built.ok()) {
    spdlog::error("cache: {}", built.status().ToString());
    return 1;
  }
  auto cache = std::move(built->cache);
  const bool any_hbm = !built->tenants.empty() && !built->tenants[0].hbm.empty();


  RpcMetrics metrics;
  RpcServiceOptions so;
  so.max_keys_per_call = cfg.max_keys_per_call;
  so.store_in_hbm = any_hbm && cfg.store_tier == "hbm";
  ConnectionLimits& lim = so.limits;
  lim.max_connections = cfg.max_connections;
  lim.max_connections_per_uid = std::min(cfg.max_connections_per_uid, cfg.max_connections);
  lim.max_connection_memory = cfg.max_connection_memory;
  lim.max_uid_memory = cfg.max_uid_memory;
  lim.max_questions = cfg.max_questions;
  lim.max_leases = cfg.max_leases;
  lim.max_uid_leases = cfg.max_uid_leases;
  lim.max_txns = cfg.max_txns;
  lim.max_uid_txns = cfg.max_uid_txns;
  lim.max_uncommitted_blocks = cfg.max_uncommitted_blocks;
  lim.max_uid_uncommitted_blocks = cfg.max_uid_uncommitted_blocks;
  lim.max_priority_ranges = cfg.max_priority_ranges;
  lim.max_unread_answers = cfg.max_unread_answers;
  lim.handshake_timeout_s = cfg.handshake_timeout_seconds;
  lim.io_timeout_s = cfg.io_timeout_seconds;
  lim.idle_timeout_s = cfg.idle_timeout_seconds;
  RpcService service(cache.get(), &metrics, so, std::move(built->tenants),
                     TenantResolver(*ParseTenants(cfg.tenants)));
  RpcServerOptions ro;
  ro.socket_path = cfg.socket_path;
  ro.threads = static_cast<int>(cfg.rpc_threads);
  ro.max_message_bytes = cfg.max_message_bytes;
  // The socket's final mode and group are set before it listens: no client
  // ever finds it wider or narrower than configured.
  const bool multi_tenant = service.resolver().multi_tenant();
  ro.before_listen = [&](const std::string& path) {
    return SecureSocket(path, multi_tenant, cfg.data_group);
  };
  auto rpc = RpcServer::Start(ro, &service);
  if (!rpc.ok()) {
    spdlog::error("rpc server: {}", rpc.status().ToString());
    return 1;
  }

  std::unique_ptr<AdminServer> admin;
  if (cfg.admin_address != "off") {
    AdminSources src;
    Cache* c = cache.get();
    src.cache_stats = [c] { return c->Stats(); };
    src.namespaces = [c] { return c->Namespaces(); };
    src.evict_namespace = [c](NamespaceId ns) { return c->EvictNamespace(ns); };
    src.rpc = &metrics;
    src.version = std::string(KvtierVersion());
    src.socket_path = cfg.socket_path;
    src.started = std::chrono::steady_clock::now();
    src.readiness = [&service] {
      return service.draining() ? Status::Unavailable("draining (SIGTERM received)")
                                : Status::OK();
    };
    RpcServer* server = rpc->get();
    src.degraded = [c, nvme_down, server, &metrics] {
      std::string d = nvme_down;
      // A worker whose loop has not turned for 5 s: a request hogs it, and
      // every connection on it waits.
      const int stalled = server->StalledWorkers();
      metrics.workers_stalled.store(stalled, std::memory_order_relaxed);
      if (stalled > 0)
        d = "rpc: " + std::to_string(stalled) + " worker thread(s) busy for over 5 s" +
            (d.empty() ? "" : "; " + d);
      for (const TierStats& t : c->Stats().tiers)
        if (!t.degraded.empty()) d += (d.empty() ? "" : "; ") + t.name + " tier: " + t.degraded;
      return d;
    };
    AdminOptions aopt;
    aopt.max_connections = cfg.admin_max_connections;
    aopt.timeout = std::chrono::seconds(cfg.admin_timeout_seconds);
    aopt.refused = &metrics.refused;
    auto a = AdminServer::Start(cfg.admin_address, std::move(src), aopt);
    if (!a.ok()) {
      spdlog::error("admin endpoint: {}", a.status().ToString());
      return 1;
    }
    admin = std::move(a).value();
  }
  spdlog::info("kvtierd {} serving: {}", KvtierVersion(), cfg.ToString());
  // systemd (Type=notify): ready now; the watchdog is petted while the cache answers.
  SystemdNotifier systemd([c = cache.get()] {
    (void)c->Stats();  // blocks, and so stops the watchdog, if a tier is wedged
    return Status::OK();
  });
  systemd.Ready("serving on " + cfg.socket_path);
  if (admin) spdlog::info("admin endpoint http://{}:{}/", ParseHostPort(cfg.admin_address)->host, admin->port());

  int sig = 0;
  // SIGHUP, which init systems and terminals send to reload, kills a process
  // by default: here it is logged and ignored (the logs go to stderr, which
  // needs no re-opening, and no setting is reloadable yet).
  while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP)
    spdlog::info("received SIGHUP: nothing to reload, still serving");
  spdlog::info("received {}, shutting down", sig == SIGTERM ? "SIGTERM" : "SIGINT");
  systemd.Stopping("draining (up to " + std::to_string(cfg.drain_timeout_seconds) + " s)");
  // Drain: /readyz answers 503, new leases and stores are refused, and the
  // clients' open leases and stores get up to --drain-timeout to finish.
  service.StartDraining();
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::seconds(cfg.drain_timeout_seconds);
  // Open work: leases (a client may be loading their blocks) and reserved
  // slots not yet committed. A committed store whose handle a client has
  // not dropped yet holds nothing.
  auto leases = [&] { return metrics.leases_open.load(std::memory_order_relaxed); };
  auto writing = [&] { return cache->Stats().blocks_writing; };
  while ((leases() > 0 || writing() > 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (leases() > 0 || writing() > 0)
    spdlog::warn("drain timeout ({} s): {} leases and {} uncommitted blocks still open, closing them",
                 cfg.drain_timeout_seconds, leases(), writing());
  (*rpc)->Stop();
  cache->DrainNvme();  // in-flight NVMe writes complete and are indexed
  // write-back: host blocks without an NVMe copy would be lost with the
  // process; write them down, for a bounded time.
  if (cfg.nvme_write_policy == "write-back" && cfg.nvme_flush_timeout_seconds > 0 &&
      cache->nvme() != nullptr) {
    (void)cache->FlushHostToNvme(cfg.nvme_flush_timeout_seconds * 1000ull);  // logs what it did
  }
  if (admin) admin->Stop();
  CacheStats s = cache->Stats();
  spdlog::info("stopped: {} blocks ready, {} acquires, {} blocks hit", s.blocks_ready, s.acquires,
               s.blocks_hit);
  return 0;
}

}  // namespace
}  // namespace kvtier

int main(int argc, char** argv) {
  auto cfg = kvtier::ParseDaemonConfig(argc, argv);
  if (!cfg.ok()) {
    std::fprintf(stderr, "kvtierd: %s\nTry 'kvtierd --help'.\n", cfg.status().ToString().c_str());
    return 2;
  }
  if (cfg->show_help) {
    std::fputs(kvtier::DaemonHelpText().c_str(), stdout);
    return 0;
  }
  if (cfg->show_version) {
    std::printf("%s\n", kvtier::DaemonVersion().c_str());
    return 0;
  }
  kvtier::Status st = kvtier::SetupLogging(cfg->log_level, cfg->log_json);
  if (!st.ok()) {
    std::fprintf(stderr, "kvtierd: %s\n", st.ToString().c_str());
    return 2;
  }
  return kvtier::Run(*cfg);
}
