#include "server/metrics.h"

#include "tiers/checksum.h"

#include <charconv>
#include <cstdio>
#include <cmath>

namespace kvtier {

std::array<uint64_t, HistogramSnapshot::kNumBuckets> HistogramSnapshot::Cumulative() const {
  std::array<uint64_t, kNumBuckets> c{};
  uint64_t run = 0;
  for (size_t i = 0; i < kNumBuckets; ++i) {
    run += buckets[i];
    c[i] = run;
  }
  return c;
}

double HistogramSnapshot::QuantileNs(double q) const {
  if (count == 0) return 0.0;
  q = std::clamp(q, 0.0, 1.0);
  const double rank = q * static_cast<double>(count);
  uint64_t below = 0;  // values in buckets before i
  for (size_t i = 0; i < kNumBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (static_cast<double>(below + buckets[i]) >= rank) {
      if (i == kNumBounds) return static_cast<double>(kBoundsNs[kNumBounds - 1]);
      const double lo = i == 0 ? 0.0 : static_cast<double>(kBoundsNs[i - 1]);
      const double hi = static_cast<double>(kBoundsNs[i]);
      const double within = std::max(0.0, rank - static_cast<double>(below));
      return lo + (hi - lo) * (within / static_cast<double>(buckets[i]));
    }
    below += buckets[i];
  }
  return static_cast<double>(kBoundsNs[kNumBounds - 1]);
}

HistogramSnapshot LatencyHistogram::Snapshot() const {
  HistogramSnapshot s;
  for (size_t i = 0; i < kNumBuckets; ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  return s;
}

const char* TenantRefusalName(TenantRefusal r) {
  switch (r) {
    case TenantRefusal::kUnknownPeer: return "unknown_peer";
    case TenantRefusal::kBadToken: return "bad_token";
    case TenantRefusal::kNoNamespace: return "no_namespace";
    case TenantRefusal::kTenantSwitch: return "tenant_switch";
  }
  return "unknown";
}

const char* RpcMethodName(RpcMethod m) {
  switch (m) {
    case RpcMethod::kOpenNamespace: return "open_namespace";
    case RpcMethod::kAcquire: return "acquire";
    case RpcMethod::kReserve: return "reserve";
    case RpcMethod::kCommit: return "commit";
    case RpcMethod::kAbort: return "abort";
    case RpcMethod::kHashTokens: return "hash_tokens";
    case RpcMethod::kStats: return "stats";
    case RpcMethod::kHostSegment: return "host_segment";
    case RpcMethod::kProbe: return "probe";
  }
  return "unknown";
}

const char* RefusalName(Refusal r) {
  switch (r) {
    case Refusal::kConnections: return "connections";
    case Refusal::kConnectionsPerUid: return "connections_per_uid";
    case Refusal::kFdExhausted: return "fd_exhausted";
    case Refusal::kMessageTooLarge: return "message_too_large";
    case Refusal::kMalformed: return "malformed";
    case Refusal::kMemory: return "memory";
    case Refusal::kFds: return "fds";
    case Refusal::kQuestions: return "questions";
    case Refusal::kLeases: return "leases";
    case Refusal::kTxns: return "txns";
    case Refusal::kUncommittedBlocks: return "uncommitted_blocks";
    case Refusal::kRanges: return "priority_ranges";
    case Refusal::kHandshakeTimeout: return "handshake_timeout";
    case Refusal::kFrameTimeout: return "frame_timeout";
    case Refusal::kStalled: return "stalled";
    case Refusal::kIdleTimeout: return "idle_timeout";
    case Refusal::kAdminConnections: return "admin_connections";
    case Refusal::kAdminTimeout: return "admin_timeout";
    case Refusal::kAdminBadRequest: return "admin_bad_request";
  }
  return "unknown";
}

std::string PrometheusDouble(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

namespace {

// Label values escape backslash, double quote and newline.
std::string LabelValue(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  return out;
}

class PromWriter {
 public:
  // Starts a family: its HELP and TYPE lines.
  void Family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;  // our own constant text: no backslashes or newlines
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }
  // `labels` is "" or 'a="x",b="y"' (already escaped).
  void Sample(std::string_view name, std::string_view labels, std::string_view value) {
    out_ += name;
    if (!labels.empty()) {
      out_ += '{';
      out_ += labels;
      out_ += '}';
    }
    out_ += ' ';
    out_ += value;
    out_ += '\n';
  }
  void Sample(std::string_view name, std::string_view labels, uint64_t v) {
    Sample(name, labels, std::to_string(v));
  }
  void SampleSigned(std::string_view name, std::string_view labels, int64_t v) {
    Sample(name, labels, std::to_string(v));
  }
  void Sample(std::string_view name, std::string_view labels, double v) {
    Sample(name, labels, PrometheusDouble(v));
  }
  std::string Take() { return std::move(out_); }

 private:
  std::string out_;
};

// One Prometheus family read from a uint64_t field of a stats struct.
template <typename Stats>
struct Family {
  const char* name;
  const char* type;
  const char* help;
  uint64_t Stats::*field;
};

constexpr Family<TierStats> kTierFamilies[] = {
    {"kvtier_tier_capacity_bytes", "gauge", "Bytes the tier can hold.",
     &TierStats::capacity_bytes},
    {"kvtier_tier_used_bytes", "gauge", "Bytes of the tier's slots in use (size classes included).",
     &TierStats::used_bytes},
    {"kvtier_tier_blocks", "gauge", "Blocks stored in the tier (READY and WRITING).",
     &TierStats::blocks},
    {"kvtier_tier_hits_total", "counter", "Blocks returned by acquire from the tier.",
     &TierStats::hits},
    {"kvtier_tier_bytes_in_total", "counter", "Bytes committed into the tier.",
     &TierStats::bytes_in},
    {"kvtier_tier_bytes_out_total", "counter", "Bytes handed out by acquire from the tier.",
     &TierStats::bytes_out},
    {"kvtier_tier_evictions_total", "counter", "Blocks evicted from the tier.",
     &TierStats::evictions},
    {"kvtier_tier_evicted_bytes_total", "counter", "Bytes evicted from the tier.",
     &TierStats::evicted_bytes},
    {"kvtier_tier_regions_moved_total", "counter",
     "Regions released by the tier to serve another block size (rebalancing).",
     &TierStats::regions_moved},
    {"kvtier_eviction_policy_memory_bytes", "gauge",
     "Memory used by the tier's eviction policy metadata.", &TierStats::policy_memory},
    {"kvtier_tier_demotions_total", "counter",
     "NVMe: blocks written down to the tier (durable, indexed).", &TierStats::demotions},
    {"kvtier_tier_promotions_total", "counter",
     "NVMe: blocks read up from the tier; HBM: blocks moved up into it.",
     &TierStats::promotions},
    {"kvtier_tier_io_errors_total", "counter", "NVMe: failed reads and writes.",
     &TierStats::io_errors},
    {"kvtier_tier_checksum_failures_total", "counter",
     "NVMe: reads whose header or payload checksum did not match (dropped, never served).",
     &TierStats::checksum_failures},
    {"kvtier_tier_recovered_blocks", "gauge", "NVMe: blocks recovered from the index at start.",
     &TierStats::recovered},
    {"kvtier_tier_recovery_dropped_blocks", "gauge",
     "NVMe: index entries dropped at start (header or record disagreed).",
     &TierStats::recovery_dropped},
};

constexpr Family<CacheStats> kCacheFamilies[] = {
    {"kvtier_acquires_total", "counter", "Acquire calls.", &CacheStats::acquires},
    {"kvtier_keys_requested_total", "counter", "Keys asked for by acquire calls.",
     &CacheStats::keys_requested},
    {"kvtier_blocks_hit_total", "counter", "Blocks found by acquire (the cached prefixes).",
     &CacheStats::blocks_hit},
    {"kvtier_blocks_missed_total", "counter",
     "Keys asked for by acquire past the cached prefix.", &CacheStats::blocks_missed},
    {"kvtier_reserves_total", "counter", "Reserve calls.", &CacheStats::reserves},
    {"kvtier_blocks_reserved_total", "counter", "Blocks given a slot to write by reserve.",
     &CacheStats::blocks_reserved},
    {"kvtier_blocks_present_total", "counter", "Blocks reserve found already stored.",
     &CacheStats::blocks_present},
    {"kvtier_blocks_in_flight_total", "counter", "Blocks reserve found being written by another.",
     &CacheStats::blocks_in_flight},
    {"kvtier_blocks_no_space_total", "counter", "Blocks reserve could not place (tier full).",
     &CacheStats::blocks_no_space},
    {"kvtier_commits_total", "counter", "Reservations committed (their blocks made readable).",
     &CacheStats::commits},
    {"kvtier_aborts_total", "counter",
     "Reservations aborted, explicitly or dropped uncommitted (their blocks freed).",
     &CacheStats::aborts},
    {"kvtier_blocks_ready", "gauge", "Blocks readable now.", &CacheStats::blocks_ready},
    {"kvtier_blocks_writing", "gauge", "Blocks reserved and not yet committed or aborted.",
     &CacheStats::blocks_writing},
    {"kvtier_blocks_pinned", "gauge", "Readable blocks held by at least one lease.",
     &CacheStats::pinned_blocks},
    {"kvtier_index_entries", "gauge", "Entries of the block index.", &CacheStats::index_entries},
    {"kvtier_index_memory_bytes", "gauge", "Memory of the block index.",
     &CacheStats::index_memory},
};

constexpr Family<SizeClassStats> kSizeFamilies[] = {
    {"kvtier_size_regions", "gauge", "Regions of the tier serving the block size.",
     &SizeClassStats::regions},
    {"kvtier_size_blocks", "gauge", "Slots of the block size in use.", &SizeClassStats::blocks},
    {"kvtier_size_hits_total", "counter", "Blocks of the size returned by acquire.",
     &SizeClassStats::hits},
    {"kvtier_size_evictions_total", "counter", "Blocks of the size evicted (or moved down).",
     &SizeClassStats::evictions},
    {"kvtier_size_regions_moved_total", "counter",
     "Regions taken from the size to serve another one.", &SizeClassStats::regions_moved},
};

// Per block size (slot bytes) of each memory tier; bytes = slots x size.
void RenderSizes(const CacheStats& s, PromWriter& w) {
  auto labels = [](const SizeClassStats& z) {
    return "tier=\"" + LabelValue(z.tier) + "\",size=\"" + std::to_string(z.slot_bytes) + "\"";
  };
  w.Family("kvtier_size_bytes", "gauge", "Bytes of the tier held by slots of the block size.");
  for (const auto& z : s.sizes) w.Sample("kvtier_size_bytes", labels(z), z.blocks * z.slot_bytes);
  for (const auto& f : kSizeFamilies) {
    w.Family(f.name, f.type, f.help);
    for (const auto& z : s.sizes) w.Sample(f.name, labels(z), z.*f.field);
  }
}

constexpr Family<NamespaceInfo> kNamespaceFamilies[] = {
    {"kvtier_namespace_blocks", "gauge", "Blocks of the namespace in any tier (NVMe included).",
     &NamespaceInfo::blocks},
    {"kvtier_namespace_bytes", "gauge", "Payload bytes of those blocks.", &NamespaceInfo::bytes},
    {"kvtier_namespace_hits_total", "counter", "Blocks of the namespace returned by acquire.",
     &NamespaceInfo::hits},
    {"kvtier_namespace_evictions_total", "counter",
     "Blocks of the namespace evicted from a tier.", &NamespaceInfo::evictions},
};

// Per live namespace. The tenant salt is never shown: `tenant` is a short
// hash of it (empty without a salt), enough to tell tenants apart.
void RenderNamespaces(const CacheStats& s, PromWriter& w) {
  auto labels = [](const NamespaceInfo& n) {
    char tenant[17] = "";
    if (!n.spec.tenant_salt.empty())
      std::snprintf(tenant, sizeof(tenant), "%08x",
                    static_cast<uint32_t>(checksum::Sum64(n.spec.tenant_salt.data(),
                                                          n.spec.tenant_salt.size())));
    return "ns=\"" + std::to_string(n.id) + "\",model=\"" + LabelValue(n.spec.model_id) +
           "\",tenant=\"" + tenant + "\",tp_rank=\"" + std::to_string(n.spec.tp_rank) + "\"";
  };
  for (const auto& f : kNamespaceFamilies) {
    w.Family(f.name, f.type, f.help);
    for (const auto& n : s.namespaces) w.Sample(f.name, labels(n), n.*f.field);
  }
  w.Family("kvtier_namespaces", "gauge", "Namespaces alive (registered and not reclaimed).");
  w.Sample("kvtier_namespaces", "", uint64_t{s.namespaces.size()});
  w.Family("kvtier_namespaces_reclaimed_total", "counter",
           "Namespaces reclaimed after idling with no block in any tier.");
  w.Sample("kvtier_namespaces_reclaimed_total", "", s.namespaces_reclaimed);
}

// Per tenant (docs/security.md); the default tenant is tenant="".
void RenderTenants(const CacheStats& s, PromWriter& w) {
  auto label = [](const TenantStats& t) { return "tenant=\"" + LabelValue(t.name) + "\""; };
  w.Family("kvtier_client_checksum_mismatch_total", "counter",
           "Blocks committed with a checksum their bytes do not have (found at commit or "
           "before their first NVMe write): the client's fault, dropped, never counted as "
           "NVMe corruption.");
  for (const auto& t : s.tenants)
    w.Sample("kvtier_client_checksum_mismatch_total", label(t), t.client_checksum_mismatches);
  w.Family("kvtier_tenant_nvme_bytes", "gauge", "Payload bytes of the tenant's blocks on NVMe.");
  for (const auto& t : s.tenants) w.Sample("kvtier_tenant_nvme_bytes", label(t), t.nvme_bytes);
  w.Family("kvtier_tenant_nvme_quota_bytes", "gauge",
           "The tenant's NVMe quota (0: none).");
  for (const auto& t : s.tenants)
    w.Sample("kvtier_tenant_nvme_quota_bytes", label(t), t.nvme_quota_bytes);
  w.Family("kvtier_tenant_nvme_quota_declined_total", "counter",
           "NVMe writes of the tenant's blocks declined by its quota (the block stays in memory).");
  for (const auto& t : s.tenants)
    w.Sample("kvtier_tenant_nvme_quota_declined_total", label(t), t.nvme_quota_declined);
}
void RenderCache(const CacheStats& s, PromWriter& w) {
  for (const auto& f : kTierFamilies) {
    w.Family(f.name, f.type, f.help);
    for (const auto& t : s.tiers) {
      w.Sample(f.name, "tier=\"" + LabelValue(t.name) + "\"", t.*f.field);
    }
  }
  w.Family("kvtier_tier_admitting", "gauge",
           "1 while the tier accepts writes; 0 after a device error stopped it (NVMe).");
  for (const auto& t : s.tiers)
    w.Sample("kvtier_tier_admitting", "tier=\"" + LabelValue(t.name) + "\"", uint64_t{t.admitting});
  w.Family("kvtier_tier_index_ok", "gauge",
           "1 while the tier's durable index takes writes; 0 after an index write failed "
           "(a full data dir): NVMe writes stop until a probe reopens it.");
  for (const auto& t : s.tiers)
    w.Sample("kvtier_tier_index_ok", "tier=\"" + LabelValue(t.name) + "\"", uint64_t{t.index_ok});
  w.Family("kvtier_tier_index_rebuilding", "gauge",
           "1 while the NVMe index is rebuilt from the extents' headers (a damaged index was "
           "set aside at start).");
  for (const auto& t : s.tiers)
    w.Sample("kvtier_tier_index_rebuilding", "tier=\"" + LabelValue(t.name) + "\"",
             uint64_t{t.index_rebuilding});
  for (const auto& f : kCacheFamilies) {
    w.Family(f.name, f.type, f.help);
    w.Sample(f.name, "", s.*f.field);
  }
  RenderSizes(s, w);
  RenderNamespaces(s, w);
  RenderTenants(s, w);
}

void RenderTenantRefusals(const RpcMetrics& m, PromWriter& w) {
  w.Family("kvtier_tenant_refusals_total", "counter",
           "Requests refused for their tenant (PermissionDenied), by reason: unknown_peer (no "
           "tenant has the peer's uid or gid), bad_token, no_namespace (a memory mapping asked "
           "for before opening a namespace), tenant_switch (a second tenant on one connection).");
  for (size_t i = 0; i < kNumTenantRefusals; ++i)
    w.Sample("kvtier_tenant_refusals_total",
             std::string("reason=\"") + TenantRefusalName(static_cast<TenantRefusal>(i)) + "\"",
             m.tenant_refusals[i].load(std::memory_order_relaxed));
  w.Family("kvtier_commit_checksum_refusals_total", "counter",
           "Commits answered InvalidArgument because a block's bytes did not match its checksum "
           "(--verify-checksums commit).");
  w.Sample("kvtier_commit_checksum_refusals_total", "",
           m.commit_checksum_refusals.load(std::memory_order_relaxed));
}
void RenderRpc(const RpcMetrics& m, PromWriter& w) {
  RenderTenantRefusals(m, w);
  std::array<HistogramSnapshot, kNumRpcMethods> snaps;
  for (size_t i = 0; i < kNumRpcMethods; ++i) snaps[i] = m.methods[i].latency.Snapshot();

  std::array<std::string, HistogramSnapshot::kNumBuckets> le;
  for (size_t b = 0; b < HistogramSnapshot::kNumBounds; ++b)
    le[b] = PrometheusDouble(static_cast<double>(HistogramSnapshot::kBoundsNs[b]) / 1e9);
  le[HistogramSnapshot::kNumBounds] = "+Inf";

  w.Family("kvtier_rpc_duration_seconds", "histogram",
           "Time to serve an RPC, by method (failed calls included).");
  for (size_t i = 0; i < kNumRpcMethods; ++i) {
    const std::string method =
        std::string("method=\"") + RpcMethodName(static_cast<RpcMethod>(i)) + "\"";
    const auto cum = snaps[i].Cumulative();
    for (size_t b = 0; b < HistogramSnapshot::kNumBuckets; ++b) {
      w.Sample("kvtier_rpc_duration_seconds_bucket", method + ",le=\"" + le[b] + "\"", cum[b]);
    }
    w.Sample("kvtier_rpc_duration_seconds_sum", method,
             static_cast<double>(snaps[i].sum_ns) / 1e9);
    w.Sample("kvtier_rpc_duration_seconds_count", method, snaps[i].count);
  }
  w.Family("kvtier_rpc_errors_total", "counter", "RPCs that returned an error, by method.");
  for (size_t i = 0; i < kNumRpcMethods; ++i) {
    w.Sample("kvtier_rpc_errors_total",
             std::string("method=\"") + RpcMethodName(static_cast<RpcMethod>(i)) + "\"",
             m.methods[i].errors.load(std::memory_order_relaxed));
  }
  w.Family("kvtier_connections_open", "gauge", "Client connections open now.");
  w.SampleSigned("kvtier_connections_open", "", m.connections_open.load(std::memory_order_relaxed));
  w.Family("kvtier_connections_total", "counter", "Client connections accepted.");
  w.Sample("kvtier_connections_total", "", m.connections_total.load(std::memory_order_relaxed));
  w.Family("kvtier_leases_open", "gauge", "Leases (pinned prefixes) held by clients now.");
  w.SampleSigned("kvtier_leases_open", "", m.leases_open.load(std::memory_order_relaxed));
  w.Family("kvtier_txns_open", "gauge", "Write transactions (reservations) open now.");
  w.SampleSigned("kvtier_txns_open", "", m.txns_open.load(std::memory_order_relaxed));
  w.Family("kvtier_refused_total", "counter",
           "Things refused to clients because a limit was hit, by reason (docs/security.md).");
  for (size_t i = 0; i < kNumRefusals; ++i) {
    w.Sample("kvtier_refused_total",
             std::string("reason=\"") + RefusalName(static_cast<Refusal>(i)) + "\"",
             m.refused.counts[i].load(std::memory_order_relaxed));
  }
  w.Family("kvtier_rpc_workers_stalled", "gauge",
           "RPC worker threads whose event loop has not turned for over 5 s.");
  w.SampleSigned("kvtier_rpc_workers_stalled", "",
                 m.workers_stalled.load(std::memory_order_relaxed));
}

}  // namespace

std::string RenderPrometheus(const MetricsInput& in) {
  PromWriter w;
  if (in.cache != nullptr) RenderCache(*in.cache, w);
  if (in.rpc != nullptr) RenderRpc(*in.rpc, w);
  w.Family("kvtier_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.Sample("kvtier_uptime_seconds", "", in.uptime_seconds);
  w.Family("kvtier_ready", "gauge", "1 while /readyz answers 200 (0: starting or draining).");
  w.Sample("kvtier_ready", "", uint64_t{in.ready ? 1u : 0u});
  w.Family("kvtier_degraded", "gauge",
           "1 while the daemon serves with a part down (the reason is in /healthz and /readyz).");
  w.Sample("kvtier_degraded", "", uint64_t{in.degraded ? 1u : 0u});
  w.Family("kvtier_build_info", "gauge", "Always 1; the label carries the kvtier version.");
  w.Sample("kvtier_build_info", "version=\"" + LabelValue(in.version) + "\"", uint64_t{1});
  return w.Take();
}

}  // namespace kvtier
