#include "server/admin_http.h"

#include <spdlog/spdlog.h>

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <vector>

#include "server/admin_namespaces.h"
#include "server/config.h"
#include "tiers/json_string.h"

namespace kvtier {
namespace {

// A small JSON writer: containers, keys and scalars, commas handled.
class JsonWriter {
 public:
  JsonWriter& BeginObject() { return Open('{'); }
  JsonWriter& EndObject() { return Close('}'); }
  JsonWriter& BeginArray() { return Open('['); }
  JsonWriter& EndArray() { return Close(']'); }
  JsonWriter& Key(std::string_view k) {
    Separate();
    out_ += '"';
    AppendJsonEscaped(k, &out_);
    out_ += "\":";
    after_key_ = true;
    return *this;
  }
  JsonWriter& String(std::string_view v) {
    Separate();
    out_ += '"';
    AppendJsonEscaped(v, &out_);
    out_ += '"';
    return *this;
  }
  JsonWriter& Uint(uint64_t v) { return Raw(std::to_string(v)); }
  JsonWriter& Int(int64_t v) { return Raw(std::to_string(v)); }
  JsonWriter& Bool(bool v) { return Raw(v ? "true" : "false"); }
  JsonWriter& Null() { return Raw("null"); }
  JsonWriter& Double(double v) {
    if (!std::isfinite(v)) return Null();
    char buf[64];
    auto r = std::to_chars(buf, buf + sizeof(buf), v);
    return Raw(std::string_view(buf, static_cast<size_t>(r.ptr - buf)));
  }
  // Key and value in one call.
  template <typename F>
  JsonWriter& Field(std::string_view k, F&& write_value) {
    Key(k);
    write_value(*this);
    return *this;
  }
  std::string Take() { return std::move(out_); }

 private:
  void Separate() {
    if (after_key_) {
      after_key_ = false;
      return;
    }
    if (!first_.empty()) {
      if (!first_.back()) out_ += ',';
      first_.back() = false;
    }
  }
  JsonWriter& Open(char c) {
    Separate();
    out_ += c;
    first_.push_back(true);
    return *this;
  }
  JsonWriter& Close(char c) {
    out_ += c;
    first_.pop_back();
    return *this;
  }
  JsonWriter& Raw(std::string_view v) {
    Separate();
    out_ += v;
    return *this;
  }

  std::string out_;
  std::vector<bool> first_;  // per open container: nothing written yet
  bool after_key_ = false;
};

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string FormatDuration(double seconds) {
  uint64_t s = seconds > 0 ? static_cast<uint64_t>(seconds) : 0;
  const uint64_t d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
  std::string out;
  if (d) out += std::to_string(d) + "d ";
  if (d || h) out += std::to_string(h) + "h ";
  if (d || h || m) out += std::to_string(m) + "m ";
  return out + std::to_string(sec) + "s";
}

// "12.3" (one decimal).
std::string Fixed1(double v) {
  if (!std::isfinite(v)) return "-";
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed, 1);
  return std::string(buf, r.ptr);
}

double Ratio(uint64_t num, uint64_t den) {
  return den == 0 ? 0.0 : static_cast<double>(num) / static_cast<double>(den);
}

constexpr std::string_view kStyle = R"(
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
th, td { padding: 0.25em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.bar { display: inline-block; width: 12em; height: 0.9em; background: #eee; vertical-align: middle; }
.bar > span { display: block; height: 100%; background: #3b7ddd; }
.bad { color: #b00; font-weight: bold; }
.ok { color: #080; font-weight: bold; }
code { background: #f4f4f4; padding: 0 0.2em; }
)";

}  // namespace

AdminServer::AdminServer(AdminSources sources) : sources_(std::move(sources)) {}

AdminServer::~AdminServer() { Stop(); }

double AdminServer::UptimeSeconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - sources_.started)
      .count();
}

std::unique_ptr<AdminServer> AdminServer::ForHandling(AdminSources sources) {
  return std::unique_ptr<AdminServer>(new AdminServer(std::move(sources)));
}

Result<std::unique_ptr<AdminServer>> AdminServer::Start(const std::string& address,
                                                        AdminSources sources,
                                                        AdminOptions options) {
  auto hp = ParseHostPort(address);
  if (!hp.ok()) return Status::InvalidArgument("admin address: " + hp.status().message());
  std::unique_ptr<AdminServer> s(new AdminServer(std::move(sources)));
  s->host_ = hp->host;
  HttpServer::Options ho;
  ho.max_connections = options.max_connections;
  ho.timeout = options.timeout;
  ho.refused = options.refused;
  AdminServer* self = s.get();
  auto server = HttpServer::Start(hp->host, hp->port, ho,
                                  [self](const HttpRequest& req) { return self->Handle(req); });
  if (!server.ok()) {
    const Status& st = server.status();
    return Status(st.code(), "admin address '" + address + "': " + st.message());
  }
  s->server_ = std::move(server).value();
  s->port_ = s->server_->port();
  if (s->sources_.cache_stats) s->sampler_ = std::thread([p = s.get()] { p->SamplerMain(); });
  return s;
}

HttpResponse AdminServer::Handle(const HttpRequest& req) const {
  auto text = [](int status, std::string body) {
    return HttpResponse{status, "text/plain; charset=utf-8", std::move(body)};
  };
  const bool get = req.method == "GET" || req.method == "HEAD";
  // A probe answers 200 "<ok_word>[, degraded: ...]" or 503 "<bad_word>: <reason>".
  auto probe = [&](const std::function<Status()>& fn, const char* ok_word, const char* bad_word) {
    Status st = fn ? fn() : Status::OK();
    if (st.ok()) return text(200, ok_word + DegradedNote() + "\n");
    return text(503, std::string(bad_word) + ": " + st.ToString() + "\n");
  };
  if (get && req.path == "/healthz") return probe(sources_.health, "ok", "unhealthy");
  if (get && req.path == "/readyz") return probe(sources_.readiness, "ready", "not ready");
  if (get && req.path == "/metrics")
    return HttpResponse{200, "text/plain; version=0.0.4; charset=utf-8", MetricsText()};
  if (get && req.path == "/v1/stats") return HttpResponse{200, "application/json", StatsJson()};
  if (get && req.path == "/v1/namespaces") {
    const auto list = sources_.namespaces ? sources_.namespaces() : std::vector<NamespaceUsage>{};
    if (req.param("format") == "text") return text(200, NamespacesText(list));
    return HttpResponse{200, "application/json", NamespacesJson(list)};
  }
  if (get && req.path == "/") return HttpResponse{200, "text/html; charset=utf-8", StatusPage()};
  // POST /v1/namespaces/ID/evict, ID of 1..9 digits.
  constexpr std::string_view kPrefix = "/v1/namespaces/", kSuffix = "/evict";
  std::string_view path = req.path;
  if (req.method == "POST" && path.size() > kPrefix.size() + kSuffix.size() &&
      path.substr(0, kPrefix.size()) == kPrefix &&
      path.substr(path.size() - kSuffix.size()) == kSuffix) {
    std::string_view digits =
        path.substr(kPrefix.size(), path.size() - kPrefix.size() - kSuffix.size());
    bool ok = !digits.empty() && digits.size() <= 9;
    for (char c : digits) ok = ok && c >= '0' && c <= '9';
    if (ok) {
      // Evicting a namespace is privileged: only a peer on the loopback
      // interface may (someone on the daemon's host or in its pod), whatever
      // address the endpoint listens on; scrapers elsewhere only read.
      if (!IsLoopbackPeer(req.remote_addr))
        return text(403, "forbidden: evict is served to loopback peers only (run kvtier evict "
                         "on the daemon's host)\n");
      if (!sources_.evict_namespace)
        return text(404, "not found: this daemon has no cache to evict from\n");
      const auto ns = static_cast<NamespaceId>(std::stoul(std::string(digits)));
      auto r = sources_.evict_namespace(ns);
      if (!r.ok()) return text(r.status().IsNotFound() ? 404 : 500, r.status().ToString() + "\n");
      spdlog::info("admin: namespace {} evicted by {}: {} blocks, {} bytes, {} NVMe copies (kept {} in use)",
                   ns, req.remote_addr, r->blocks, r->bytes, r->nvme_blocks, r->kept_pinned);
      if (req.param("format") == "text") return text(200, EvictionText(ns, *r));
      return HttpResponse{200, "application/json", EvictionJson(ns, *r)};
    }
  }
  return text(404, "not found\n");
}

void AdminServer::SamplerMain() {
  std::unique_lock<std::mutex> l(sampler_mu_);
  while (!sampler_stop_) {
    l.unlock();
    rates_.Add(SampleOf(sources_.cache_stats(), sources_.rpc, std::chrono::steady_clock::now()));
    l.lock();
    sampler_cv_.wait_for(l, sources_.rate_sample_interval, [this] { return sampler_stop_; });
  }
}

void AdminServer::Stop() {
  if (server_ != nullptr) server_->Stop();
  {
    std::lock_guard<std::mutex> l(sampler_mu_);
    sampler_stop_ = true;
  }
  sampler_cv_.notify_all();
  if (sampler_.joinable()) sampler_.join();
}

std::string AdminServer::DegradedNote() const {
  std::string d = sources_.degraded ? sources_.degraded() : std::string();
  return d.empty() ? std::string() : ", degraded: " + d;
}

std::string AdminServer::MetricsText() const {
  CacheStats stats;
  MetricsInput in;
  if (sources_.cache_stats) {
    stats = sources_.cache_stats();
    in.cache = &stats;
  }
  in.rpc = sources_.rpc;
  in.version = sources_.version;
  in.uptime_seconds = UptimeSeconds();
  in.ready = !sources_.readiness || sources_.readiness().ok();
  in.degraded = sources_.degraded && !sources_.degraded().empty();
  return RenderPrometheus(in);
}

std::string AdminServer::StatsJson() const {
  JsonWriter w;
  Status health = sources_.health ? sources_.health() : Status::OK();
  w.BeginObject();
  w.Key("version").String(sources_.version);
  w.Key("uptime_seconds").Double(UptimeSeconds());
  w.Key("socket_path").String(sources_.socket_path);
  w.Key("healthy").Bool(health.ok());
  w.Key("health_reason").String(health.ok() ? "" : health.ToString());

  if (sources_.cache_stats) {
    const CacheStats s = sources_.cache_stats();
    w.Key("cache").BeginObject();
    w.Key("blocks_ready").Uint(s.blocks_ready);
    w.Key("blocks_writing").Uint(s.blocks_writing);
    w.Key("blocks_pinned").Uint(s.pinned_blocks);
    w.Key("index_entries").Uint(s.index_entries);
    w.Key("index_memory_bytes").Uint(s.index_memory);
    w.Key("acquires").Uint(s.acquires);
    w.Key("keys_requested").Uint(s.keys_requested);
    w.Key("blocks_hit").Uint(s.blocks_hit);
    w.Key("blocks_missed").Uint(s.blocks_missed);
    w.Key("hit_rate").Double(Ratio(s.blocks_hit, s.keys_requested));
    w.Key("reserves").Uint(s.reserves);
    w.Key("blocks_reserved").Uint(s.blocks_reserved);
    w.Key("blocks_present").Uint(s.blocks_present);
    w.Key("blocks_in_flight").Uint(s.blocks_in_flight);
    w.Key("blocks_no_space").Uint(s.blocks_no_space);
    w.Key("commits").Uint(s.commits);
    w.Key("aborts").Uint(s.aborts);
    w.EndObject();
    w.Key("tiers").BeginArray();
    for (const auto& t : s.tiers) {
      w.BeginObject();
      w.Key("name").String(t.name);
      w.Key("capacity_bytes").Uint(t.capacity_bytes);
      w.Key("used_bytes").Uint(t.used_bytes);
      w.Key("used_fraction").Double(Ratio(t.used_bytes, t.capacity_bytes));
      w.Key("blocks").Uint(t.blocks);
      w.Key("hits").Uint(t.hits);
      w.Key("bytes_in").Uint(t.bytes_in);
      w.Key("bytes_out").Uint(t.bytes_out);
      w.Key("evictions").Uint(t.evictions);
      w.Key("evicted_bytes").Uint(t.evicted_bytes);
      w.Key("policy_memory_bytes").Uint(t.policy_memory);
      w.Key("demotions").Uint(t.demotions);
      w.Key("promotions").Uint(t.promotions);
      w.Key("io_errors").Uint(t.io_errors);
      w.Key("checksum_failures").Uint(t.checksum_failures);
      w.Key("recovered").Uint(t.recovered);
      w.Key("recovery_dropped").Uint(t.recovery_dropped);
      w.Key("admitting").Bool(t.admitting);
      w.Key("index_ok").Bool(t.index_ok);
      w.Key("index_rebuilding").Bool(t.index_rebuilding);
      w.Key("regions_moved").Uint(t.regions_moved);
      w.EndObject();
    }
    w.EndArray();
    w.Key("sizes").BeginArray();
    for (const auto& z : s.sizes) {
      w.BeginObject();
      w.Key("tier").String(z.tier);
      w.Key("slot_bytes").Uint(z.slot_bytes);
      w.Key("regions").Uint(z.regions);
      w.Key("blocks").Uint(z.blocks);
      w.Key("bytes").Uint(z.blocks * z.slot_bytes);
      w.Key("hits").Uint(z.hits);
      w.Key("evictions").Uint(z.evictions);
      w.Key("regions_moved").Uint(z.regions_moved);
      w.EndObject();
    }
    w.EndArray();
    w.Key("namespaces").BeginArray();
    for (const auto& n : s.namespaces) {
      w.BeginObject();
      w.Key("id").Uint(n.id);
      w.Key("model").String(n.spec.model_id);
      w.Key("revision").String(n.spec.model_revision);
      w.Key("tp_rank").Uint(n.spec.tp_rank);
      w.Key("tp_size").Uint(n.spec.tp_size);
      w.Key("block_bytes").Uint(n.spec.layout.BlockBytes());
      w.Key("salted").Bool(!n.spec.tenant_salt.empty());
      w.Key("blocks").Uint(n.blocks);
      w.Key("bytes").Uint(n.bytes);
      w.Key("hits").Uint(n.hits);
      w.Key("evictions").Uint(n.evictions);
      w.Key("holders").Uint(n.holders);
      w.EndObject();
    }
    w.EndArray();
  } else {
    w.Key("cache").Null();
    w.Key("tiers").BeginArray().EndArray();
  }

  if (sources_.rpc != nullptr) {
    const RpcMetrics& m = *sources_.rpc;
    w.Key("rpc").BeginObject();
    w.Key("methods").BeginObject();
    for (size_t i = 0; i < kNumRpcMethods; ++i) {
      const HistogramSnapshot h = m.methods[i].latency.Snapshot();
      w.Key(RpcMethodName(static_cast<RpcMethod>(i))).BeginObject();
      w.Key("count").Uint(h.count);
      w.Key("errors").Uint(m.methods[i].errors.load(std::memory_order_relaxed));
      w.Key("mean_us").Double(h.MeanNs() / 1e3);
      w.Key("p50_us").Double(h.QuantileNs(0.50) / 1e3);
      w.Key("p99_us").Double(h.QuantileNs(0.99) / 1e3);
      w.EndObject();
    }
    w.EndObject();
    w.Key("connections_open").Int(m.connections_open.load(std::memory_order_relaxed));
    w.Key("connections_total").Uint(m.connections_total.load(std::memory_order_relaxed));
    w.Key("leases_open").Int(m.leases_open.load(std::memory_order_relaxed));
    w.Key("txns_open").Int(m.txns_open.load(std::memory_order_relaxed));
    w.EndObject();
  } else {
    w.Key("rpc").Null();
  }
  w.EndObject();
  std::string out = w.Take();
  out += '\n';
  return out;
}

std::string AdminServer::StatusPage() const {
  Status health = sources_.health ? sources_.health() : Status::OK();
  std::string h;
  h += "<!doctype html>\n<html><head><meta charset=\"utf-8\">"
       "<meta http-equiv=\"refresh\" content=\"5\"><title>kvtier</title><style>";
  h += kStyle;
  h += "</style></head><body>\n<h1>kvtier ";
  h += HtmlEscape(sources_.version);
  h += "</h1>\n<p>Status: ";
  if (health.ok()) {
    h += "<span class=\"ok\">ok</span>";
  } else {
    h += "<span class=\"bad\">unhealthy: " + HtmlEscape(health.ToString()) + "</span>";
  }
  h += " &middot; uptime " + FormatDuration(UptimeSeconds());
  h += " &middot; socket <code>" + HtmlEscape(sources_.socket_path) + "</code></p>\n";

  if (sources_.cache_stats) {
    const CacheStats s = sources_.cache_stats();
    const auto rates = rates_.Compute(SampleOf(s, sources_.rpc, std::chrono::steady_clock::now()));
    h += "<h2>Tiers</h2>\n<table><tr><th>tier</th><th>health</th><th>occupancy</th><th>used</th>"
         "<th>capacity</th><th>blocks</th><th>hits</th><th>evictions</th></tr>\n";
    for (const auto& t : s.tiers) {
      const double pct = 100.0 * Ratio(t.used_bytes, t.capacity_bytes);
      // Health: writes stopped after a device error, and errors seen.
      std::string health = t.admitting ? "<span class=\"ok\">ok</span>"
                                       : "<span class=\"bad\">writes stopped (device error; probing)</span>";
      if (t.io_errors != 0 || t.checksum_failures != 0)
        health += " &middot; " + std::to_string(t.io_errors) + " I/O errors, " +
                  std::to_string(t.checksum_failures) + " checksum failures";
      h += "<tr><td>" + HtmlEscape(t.name) + "</td><td>" + health +
           "</td><td><span class=\"bar\"><span style=\"width:" +
           Fixed1(pct) + "%\"></span></span> " + Fixed1(pct) + "%</td><td>" +
           FormatSize(t.used_bytes) + "</td><td>" + FormatSize(t.capacity_bytes) + "</td><td>" +
           std::to_string(t.blocks) + "</td><td>" + std::to_string(t.hits) + "</td><td>" +
           std::to_string(t.evictions) + "</td></tr>\n";
    }
    h += "</table>\n<h2>Last minute</h2>\n";
    if (!rates) {
      h += "<p>Collecting (rates appear once the counters have been sampled for a second).</p>\n";
    } else {
      h += "<p>Over the last " + Fixed1(rates->seconds) + " s: " + Fixed1(rates->acquires_per_s) +
           " acquires/s, " + Fixed1(rates->keys_per_s) + " keys requested/s, hit rate " +
           Fixed1(100.0 * rates->hit_rate) + "%, " + Fixed1(rates->commits_per_s) + " commits/s, " +
           Fixed1(rates->no_space_per_s) + " blocks refused for space/s, " +
           Fixed1(rates->rpc_calls_per_s) + " RPCs/s (" + Fixed1(rates->rpc_errors_per_s) +
           " errors/s).</p>\n<table><tr><th>tier</th><th>hits/s</th><th>in</th><th>out</th>"
           "<th>evictions/s</th><th>new I/O errors</th></tr>\n";
      for (const auto& t : rates->tiers) {
        h += "<tr><td>" + HtmlEscape(t.name) + "</td><td>" + Fixed1(t.hits_per_s) + "</td><td>" +
             FormatSize(static_cast<uint64_t>(t.bytes_in_per_s)) + "/s</td><td>" +
             FormatSize(static_cast<uint64_t>(t.bytes_out_per_s)) + "/s</td><td>" +
             Fixed1(t.evictions_per_s) + "</td><td>" + std::to_string(t.io_errors) + "</td></tr>\n";
      }
      h += "</table>\n";
    }
    h += "<h2>Totals since start</h2>\n<table>\n";
    auto row = [&h](std::string_view name, const std::string& value) {
      h += "<tr><td>";
      h += name;
      h += "</td><td>" + value + "</td></tr>\n";
    };
    row("hit rate (blocks hit / keys requested)",
        Fixed1(100.0 * Ratio(s.blocks_hit, s.keys_requested)) + "%");
    row("acquires", std::to_string(s.acquires));
    row("blocks hit / missed", std::to_string(s.blocks_hit) + " / " +
                                   std::to_string(s.blocks_missed));
    row("reserves", std::to_string(s.reserves));
    row("blocks reserved / present / in flight / no space",
        std::to_string(s.blocks_reserved) + " / " + std::to_string(s.blocks_present) + " / " +
            std::to_string(s.blocks_in_flight) + " / " + std::to_string(s.blocks_no_space));
    row("commits / aborts", std::to_string(s.commits) + " / " + std::to_string(s.aborts));
    row("blocks ready / writing / pinned", std::to_string(s.blocks_ready) + " / " +
                                               std::to_string(s.blocks_writing) + " / " +
                                               std::to_string(s.pinned_blocks));
    row("index entries", std::to_string(s.index_entries));
    row("index memory", FormatSize(s.index_memory));
    h += "</table>\n";
  }

  if (sources_.namespaces) h += "<h2>Namespaces</h2>\n" + NamespacesHtml(sources_.namespaces());

  if (sources_.rpc != nullptr) {
    const RpcMetrics& m = *sources_.rpc;
    h += "<h2>RPC</h2>\n<p>connections open " +
         std::to_string(m.connections_open.load(std::memory_order_relaxed)) + " (total " +
         std::to_string(m.connections_total.load(std::memory_order_relaxed)) +
         ") &middot; leases open " + std::to_string(m.leases_open.load(std::memory_order_relaxed)) +
         " &middot; write transactions open " +
         std::to_string(m.txns_open.load(std::memory_order_relaxed)) + "</p>\n";
    h += "<table><tr><th>method</th><th>calls</th><th>errors</th><th>p50 (&micro;s)</th>"
         "<th>p99 (&micro;s)</th></tr>\n";
    for (size_t i = 0; i < kNumRpcMethods; ++i) {
      const HistogramSnapshot s = m.methods[i].latency.Snapshot();
      h += "<tr><td>";
      h += RpcMethodName(static_cast<RpcMethod>(i));
      h += "</td><td>" + std::to_string(s.count) + "</td><td>" +
           std::to_string(m.methods[i].errors.load(std::memory_order_relaxed)) + "</td><td>" +
           (s.count ? Fixed1(s.QuantileNs(0.5) / 1e3) : "-") + "</td><td>" +
           (s.count ? Fixed1(s.QuantileNs(0.99) / 1e3) : "-") + "</td></tr>\n";
    }
    h += "</table>\n";
  }
  h += "<p><a href=\"/metrics\">/metrics</a> &middot; <a href=\"/v1/stats\">/v1/stats</a> "
       "&middot; <a href=\"/healthz\">/healthz</a></p>\n</body></html>\n";
  return h;
}

}  // namespace kvtier
