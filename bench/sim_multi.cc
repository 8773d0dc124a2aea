#include "bench/sim_multi.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <numeric>
#include <span>

#include "cache/cache.h"
#include "tiers/slab_allocator.h"

namespace kvtier::bench {

namespace {

uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer: a bijection, 0 -> 0
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Distinct (model, dense id) pairs give distinct keys with non-zero `lo`.
BlockKey KeyOf(uint32_t model, uint32_t dense) {
  const uint64_t x = (uint64_t{model} << 32) | dense;
  return BlockKey{Mix64(x + 0x9e3779b97f4a7c15ULL), Mix64(x ^ 0xd1b54a32d192ed03ULL)};
}

// A memory tier without memory: the offsets of a real SlabAllocator.
class SlabTier final : public Tier {
 public:
  explicit SlabTier(SlabAllocator a) : alloc_(std::move(a)) {}
  TierKind kind() const override { return TierKind::kHost; }
  std::string_view name() const override { return "sim"; }
  Result<Slot> Allocate(uint64_t bytes) override {
    auto s = alloc_.Allocate(bytes);
    ++(s.ok() ? counters_.allocations : counters_.failed_allocations);
    return s;
  }
  void Free(const Slot& slot) override {
    ++counters_.frees;
    alloc_.Free(slot);
  }
  bool FreeingHelps(const Slot& victim, uint64_t bytes) const override {
    return alloc_.FreeingHelps(victim, bytes);
  }
  uint8_t* Address(const Slot&) const override { return nullptr; }
  SlabAllocator* slabs() override { return &alloc_; }
  uint64_t capacity_bytes() const override { return alloc_.capacity(); }
  uint64_t used_bytes() const override { return alloc_.used_bytes(); }
  TierCounters counters() const override { return counters_; }

 private:
  SlabAllocator alloc_;
  TierCounters counters_;
};

struct GroupResult {
  std::vector<PrefixHitCounts> hits;  // per model of the group
  uint64_t no_space = 0, evictions = 0, regions_moved = 0;
};

// Replays `models` (indices into all) together on one cache of `capacity`.
Result<GroupResult> RunGroup(const std::vector<SimModel>& all, const std::vector<uint32_t>& models,
                             uint64_t capacity, const MultiReplayOptions& o) {
  uint64_t max_block = 0, min_block = ~uint64_t{0};
  uint32_t max_keys = 1;
  for (uint32_t m : models) {
    max_block = std::max(max_block, all[m].block_bytes);
    min_block = std::min(min_block, all[m].block_bytes);
    max_keys = std::max(max_keys, all[m].trace->max_request_blocks);
  }
  SlabOptions so;
  so.capacity = capacity / 4096 * 4096;
  so.region_bytes = std::min(o.region_bytes, so.capacity);
  so.region_bytes -= so.region_bytes % 4096;
  if (so.region_bytes < max_block)
    return Status::InvalidArgument("a tier of " + std::to_string(capacity) +
                                   " bytes cannot hold a region of one " +
                                   std::to_string(max_block) + "-byte block");
  auto alloc = SlabAllocator::Create(so);
  if (!alloc.ok()) return alloc.status();
  CacheOptions co;
  co.tiers.push_back(TierSetup{std::make_unique<SlabTier>(std::move(alloc).value()), o.policy});
  co.max_blocks = static_cast<uint32_t>(
      std::min<uint64_t>(capacity / std::max<uint64_t>(min_block, 1) + max_keys + 1024, 1u << 30));
  co.max_keys_per_call = max_keys;
  co.namespace_idle_reclaim_ns = 0;
  uint64_t now_ns = 1000000000ull;
  co.clock = [&now_ns] { return now_ns; };
  auto cache_or = Cache::Create(std::move(co));
  if (!cache_or.ok()) return cache_or.status();
  Cache& cache = **cache_or;

  std::vector<NamespaceId> ns(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    NamespaceSpec spec;
    spec.model_id = "sim-" + std::to_string(models[i]) + "-" + all[models[i]].name;
    spec.layout.num_layers = 1;
    spec.layout.num_kv_heads = 1;
    spec.layout.head_dim = 1;
    spec.layout.tokens_per_block = std::clamp<uint32_t>(all[models[i]].trace->block_tokens, 1, 4096);
    auto id = cache.OpenNamespace(spec);
    if (!id.ok()) return id.status();
    ns[i] = *id;
  }

  // The merged order: each trace's time scaled to [0, 1) of its span.
  struct Event {
    double t;
    uint32_t group_index;
    uint32_t request;
  };
  std::vector<Event> events;
  for (size_t i = 0; i < models.size(); ++i) {
    const Trace& tr = *all[models[i]].trace;
    const size_t n = tr.requests.size();
    const double span = n == 0 ? 0 : tr.requests.back().time_s - tr.requests.front().time_s;
    for (size_t r = 0; r < n; ++r) {
      const double t = span > 0 ? (tr.requests[r].time_s - tr.requests.front().time_s) / span
                                : static_cast<double>(r) / static_cast<double>(n);
      events.push_back(Event{std::min(t, 1.0), static_cast<uint32_t>(i), static_cast<uint32_t>(r)});
    }
  }
  std::stable_sort(events.begin(), events.end(),
                   [](const Event& a, const Event& b) { return a.t < b.t; });

  GroupResult res;
  res.hits.resize(models.size());
  std::vector<BlockKey> keys(max_keys);
  std::vector<uint64_t> sizes(max_keys);
  const std::vector<uint64_t> zeros(max_keys, 0);
  for (const Event& ev : events) {
    now_ns = 1000000000ull + static_cast<uint64_t>(ev.t * 1e12);
    const uint32_t model = models[ev.group_index];
    const Trace& tr = *all[model].trace;
    const TraceRequest& r = tr.requests[ev.request];
    const std::span<const uint32_t> blocks = tr.blocks(r);
    const size_t n = blocks.size();
    for (size_t i = 0; i < n; ++i) keys[i] = KeyOf(model, blocks[i]);
    auto lease = cache.Acquire(ns[ev.group_index], std::span<const BlockKey>(keys.data(), n));
    if (!lease.ok()) return lease.status();
    const size_t h = lease->size();
    res.hits[ev.group_index].Add(n, h, r.input_tokens, tr.block_tokens);
    if (h < n) {
      // From the last hit on, so that the policy links the new suffix.
      const size_t s = h > 0 ? h - 1 : 0;
      StoreOptions so;
      if (s > 0) so.first_parent = keys[s - 1];
      const size_t m = n - s;
      std::fill(sizes.begin(), sizes.begin() + static_cast<std::ptrdiff_t>(m), all[model].block_bytes);
      auto rsv = cache.Reserve(ns[ev.group_index], std::span<const BlockKey>(keys.data() + s, m),
                               std::span<const uint64_t>(sizes.data(), m), so);
      if (!rsv.ok()) {
        if (!rsv.status().IsResourceExhausted()) return rsv.status();
        res.no_space += n - h;
      } else {
        for (const auto& b : rsv->blocks()) res.no_space += b.outcome == ReserveOutcome::kNoSpace;
        if (!rsv->done())
          KVTIER_RETURN_IF_ERROR(cache.Commit(*rsv, std::span<const uint64_t>(zeros.data(), m)));
      }
    }
  }
  const CacheStats st = cache.Stats();
  res.evictions = st.tiers[0].evictions;
  res.regions_moved = st.tiers[0].regions_moved;
  return res;
}

}  // namespace

const char* MultiLayoutName(MultiLayout l) {
  switch (l) {
    case MultiLayout::kShared: return "shared";
    case MultiLayout::kStatic: return "static";
    case MultiLayout::kProportional: return "proportional";
  }
  return "unknown";
}

uint64_t DemandBytes(const SimModel& m) { return m.trace->refs.size() * m.block_bytes; }

Result<MultiReplayResult> ReplayModels(const std::vector<SimModel>& models,
                                       const MultiReplayOptions& o) {
  if (models.empty()) return Status::InvalidArgument("no model to replay");
  for (const SimModel& m : models)
    if (m.trace == nullptr || m.block_bytes == 0 || m.block_bytes > 0xFFFFFFFFull)
      return Status::InvalidArgument("model '" + m.name + "' has no trace or block size");
  if (o.capacity_bytes == 0) return Status::InvalidArgument("capacity is 0 bytes");
  const auto t0 = std::chrono::steady_clock::now();
  MultiReplayResult out;
  out.models.resize(models.size());
  out.tier_bytes.assign(models.size(), o.capacity_bytes);
  auto add = [&](const GroupResult& g, const std::vector<uint32_t>& group) {
    for (size_t i = 0; i < group.size(); ++i) out.models[group[i]] = g.hits[i];
    out.no_space_blocks += g.no_space;
    out.evictions += g.evictions;
    out.regions_moved += g.regions_moved;
  };
  if (o.layout == MultiLayout::kShared) {
    std::vector<uint32_t> all(models.size());
    std::iota(all.begin(), all.end(), 0u);
    auto g = RunGroup(models, all, o.capacity_bytes, o);
    if (!g.ok()) return g.status();
    add(*g, all);
  } else {
    uint64_t demand = 0;
    for (const SimModel& m : models) demand += DemandBytes(m);
    for (uint32_t i = 0; i < models.size(); ++i) {
      const uint64_t cap =
          o.layout == MultiLayout::kStatic
              ? o.capacity_bytes / models.size()
              : static_cast<uint64_t>(static_cast<double>(o.capacity_bytes) *
                                      static_cast<double>(DemandBytes(models[i])) /
                                      static_cast<double>(std::max<uint64_t>(demand, 1)));
      out.tier_bytes[i] = cap;
      auto g = RunGroup(models, {i}, cap, o);
      if (!g.ok()) return g.status();
      add(*g, {i});
    }
  }
  for (const PrefixHitCounts& h : out.models) {
    out.overall.requests += h.requests;
    out.overall.blocks += h.blocks;
    out.overall.hit_blocks += h.hit_blocks;
    out.overall.input_tokens += h.input_tokens;
    out.overall.hit_tokens += h.hit_tokens;
  }
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return out;
}

}  // namespace kvtier::bench
