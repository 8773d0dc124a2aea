#include "server/admin_rates.h"

namespace kvtier {

namespace {

double PerSecond(uint64_t now, uint64_t then, double seconds) {
  return now >= then ? static_cast<double>(now - then) / seconds : 0.0;
}

}  // namespace

RateSample SampleOf(const CacheStats& stats, const RpcMetrics* rpc, std::chrono::steady_clock::time_point at) {
  RateSample s;
  s.at = at;
  s.acquires = stats.acquires;
  s.keys_requested = stats.keys_requested;
  s.blocks_hit = stats.blocks_hit;
  s.commits = stats.commits;
  s.blocks_no_space = stats.blocks_no_space;
  for (const TierStats& t : stats.tiers)
    s.tiers.push_back({t.name, t.hits, t.bytes_in, t.bytes_out, t.evictions, t.io_errors});
  if (rpc != nullptr) {
    for (const auto& m : rpc->methods) {
      s.rpc_calls += m.latency.Snapshot().count;
      s.rpc_errors += m.errors.load(std::memory_order_relaxed);
    }
  }
  return s;
}

void RateWindow::Add(RateSample s) {
  std::lock_guard<std::mutex> l(mu_);
  samples_.push_back(std::move(s));
  // Drop samples older than the window, keeping one at or before its start
  // so that the window stays covered.
  const auto start = samples_.back().at - window_;
  while (samples_.size() > 1 && samples_[1].at <= start) samples_.pop_front();
}

std::optional<Rates> RateWindow::Compute(const RateSample& now, std::chrono::milliseconds min_span) const {
  RateSample then;
  {
    std::lock_guard<std::mutex> l(mu_);
    const auto start = now.at - window_;
    auto it = samples_.begin();
    while (it != samples_.end() && std::next(it) != samples_.end() && std::next(it)->at <= start) ++it;
    if (it == samples_.end()) return std::nullopt;
    then = *it;
  }
  if (now.at - then.at < min_span) return std::nullopt;
  Rates r;
  r.seconds = std::chrono::duration<double>(now.at - then.at).count();
  r.acquires_per_s = PerSecond(now.acquires, then.acquires, r.seconds);
  r.keys_per_s = PerSecond(now.keys_requested, then.keys_requested, r.seconds);
  r.commits_per_s = PerSecond(now.commits, then.commits, r.seconds);
  r.no_space_per_s = PerSecond(now.blocks_no_space, then.blocks_no_space, r.seconds);
  r.rpc_calls_per_s = PerSecond(now.rpc_calls, then.rpc_calls, r.seconds);
  r.rpc_errors_per_s = PerSecond(now.rpc_errors, then.rpc_errors, r.seconds);
  const uint64_t keys = now.keys_requested >= then.keys_requested ? now.keys_requested - then.keys_requested : 0;
  const uint64_t hits = now.blocks_hit >= then.blocks_hit ? now.blocks_hit - then.blocks_hit : 0;
  r.hit_rate = keys == 0 ? 0.0 : static_cast<double>(hits) / static_cast<double>(keys);
  for (const RateSample::Tier& t : now.tiers) {
    Rates::Tier rt;
    rt.name = t.name;
    const RateSample::Tier* old = nullptr;
    for (const auto& o : then.tiers)
      if (o.name == t.name) old = &o;
    const RateSample::Tier zero;
    if (old == nullptr) old = &zero;  // a tier that appeared since: count from 0
    rt.hits_per_s = PerSecond(t.hits, old->hits, r.seconds);
    rt.bytes_in_per_s = PerSecond(t.bytes_in, old->bytes_in, r.seconds);
    rt.bytes_out_per_s = PerSecond(t.bytes_out, old->bytes_out, r.seconds);
    rt.evictions_per_s = PerSecond(t.evictions, old->evictions, r.seconds);
    rt.io_errors = t.io_errors >= old->io_errors ? t.io_errors - old->io_errors : 0;
    r.tiers.push_back(std::move(rt));
  }
  return r;
}

}  // namespace kvtier
