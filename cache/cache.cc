#include "cache/cache.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <future>
#include <iterator>
#include <sstream>
#include <string>

#include "cache/lease_state.h"
#include "cache/nvme_tier.h"
#include "cache/sha256.h"
#include "tiers/gpu_hbm_tier.h"
#include "tiers/checksum.h"
#include "tiers/host_shm_tier.h"
#include "tiers/slab_allocator.h"

namespace kvtier {

namespace {
constexpr uint8_t kReady = static_cast<uint8_t>(BlockState::kReady);
constexpr uint8_t kWriting = static_cast<uint8_t>(BlockState::kWriting);
constexpr uint8_t kLoading = static_cast<uint8_t>(BlockState::kLoading);
// Whether bytes hit count as demand for a size's share (besides bytes stored).
constexpr bool kHitsAreDemand = true;
}  // namespace

const char* ReserveOutcomeName(ReserveOutcome o) {
  switch (o) {
    case ReserveOutcome::kReserved: return "reserved";
    case ReserveOutcome::kPresent: return "present";
    case ReserveOutcome::kInFlight: return "in-flight";
    case ReserveOutcome::kNoSpace: return "no-space";
  }
  return "unknown";
}

// ---- Lease / Reservation -------------------------------------------------

Lease& Lease::operator=(Lease&& o) noexcept {
  if (this != &o) {
    Release();
    cache_ = o.cache_;
    state_ = std::move(o.state_);
    o.cache_ = nullptr;
  }
  return *this;
}

const std::vector<Lease::Block>& Lease::blocks() const {
  static const std::vector<Block> kNone;
  return state_ ? state_->blocks : kNone;
}

bool Lease::ready() const {
  if (!state_) return true;
  std::lock_guard<std::mutex> l(state_->mu);
  return state_->pending == 0;
}

void Lease::Wait() const {
  if (!state_) return;
  std::unique_lock<std::mutex> l(state_->mu);
  state_->cv.wait(l, [&] { return state_->pending == 0; });
}

void Lease::Truncate(size_t n) {
  if (!state_ || cache_ == nullptr) return;
  std::vector<Block> tail;
  {
    std::lock_guard<std::mutex> l(state_->mu);
    if (n >= state_->blocks.size()) return;
    tail.assign(state_->blocks.begin() + static_cast<std::ptrdiff_t>(n), state_->blocks.end());
    state_->blocks.resize(n);
  }
  cache_->ReleaseBlocks(tail);
}

void Lease::Release() {
  if (cache_ != nullptr && state_) {
    std::vector<Block> blocks;
    {
      std::lock_guard<std::mutex> l(state_->mu);
      if (state_->pending > 0) {
        // Promotions in flight: the last one to finish unpins everything.
        state_->released = true;
        state_->on_ready = nullptr;
      } else {
        blocks = std::move(state_->blocks);
        state_->blocks.clear();
      }
    }
    if (!blocks.empty()) cache_->ReleaseBlocks(blocks);
  }
  state_.reset();
  cache_ = nullptr;
}

Reservation& Reservation::operator=(Reservation&& o) noexcept {
  if (this != &o) {
    if (cache_ != nullptr && pending_ > 0) cache_->Abort(*this);
    cache_ = o.cache_;
    blocks_ = std::move(o.blocks_);
    pending_ = o.pending_;
    o.cache_ = nullptr;
    o.pending_ = 0;
  }
  return *this;
}

Reservation::~Reservation() {
  if (cache_ != nullptr && pending_ > 0) cache_->Abort(*this);
}

// ---- Cache ---------------------------------------------------------------

Result<std::unique_ptr<Cache>> Cache::Create(CacheOptions options) {
  if (options.tiers.empty()) return Status::InvalidArgument("a cache needs at least one tier");
  if (options.tiers.size() > kMaxTiers)
    return Status::InvalidArgument("at most " + std::to_string(kMaxTiers) + " tiers");
  if (options.store_tier >= options.tiers.size())
    return Status::InvalidArgument("store tier " + std::to_string(options.store_tier) +
                                   " does not exist");
  if (options.tenants.empty()) options.tenants.push_back(CacheTenant{});
  if (options.tenants.size() > kMaxTenants)
    return Status::InvalidArgument("at most " + std::to_string(kMaxTenants) + " tenants");
  for (size_t i = 0; i < options.tenants.size(); ++i)
    for (size_t j = 0; j < i; ++j)
      if (options.tenants[i].name == options.tenants[j].name)
        return Status::InvalidArgument("tenant '" + options.tenants[i].name + "' is named twice");
  uint64_t total = 0;
  for (auto& t : options.tiers) {
    if (!t.tier) return Status::InvalidArgument("tier is null");
    if (t.tenant >= options.tenants.size())
      return Status::InvalidArgument("tier '" + std::string(t.tier->name()) +
                                     "' names tenant " + std::to_string(t.tenant) +
                                     ", which does not exist");
    total += t.tier->capacity_bytes();
  }
  if (options.nvme) total += options.nvme->store.capacity_bytes;
  uint32_t max_blocks = options.max_blocks;
  if (max_blocks == 0) {
    // Every block takes at least one slot of min_block_bytes somewhere, so
    // the index is never what limits the cache. Entries are allocated lazily.
    uint64_t n = total / std::max<uint64_t>(options.min_block_bytes, 1) + 1024;
    max_blocks = static_cast<uint32_t>(std::min<uint64_t>(n, 1u << 28));
  }
  if (!options.clock) options.clock = SteadyNowNs;
  std::vector<std::unique_ptr<EvictionPolicy>> policies;
  for (auto& t : options.tiers) {
    PolicyOptions po;
    po.clock = options.clock;
    auto p = NewEvictionPolicy(t.policy, po);
    if (!p.ok()) return p.status();
    policies.push_back(std::move(p).value());
  }
  const TierKind store_kind = options.tiers[options.store_tier].tier->kind();
  std::optional<NvmeTierOptions> nvme = std::move(options.nvme);
  options.nvme.reset();
  std::unique_ptr<Cache> c(new Cache(std::move(options), max_blocks));
  for (size_t i = 0; i < policies.size(); ++i) c->tiers_[i]->policy = std::move(policies[i]);
  for (const CacheTenant& ct : c->options_.tenants) {
    auto ts = std::make_unique<TenantState>();
    ts->name = ct.name;
    ts->scoped = !ct.name.empty();
    ts->nvme_quota = ct.nvme_quota_bytes;
    c->tenants_.push_back(std::move(ts));
  }
  // Each tenant's host tier, default store tier and first HBM tier: its
  // first tier of each kind.
  for (size_t i = 0; i < c->tiers_.size(); ++i) {
    TenantState& ten = *c->tenants_[c->tier_tenant_[i]];
    const TierKind kind = c->tiers_[i]->tier->kind();
    c->is_host_[i] = kind == TierKind::kHost;
    if (kind == TierKind::kHost && ten.host == kNoTier) ten.host = static_cast<TierId>(i);
    if (kind == TierKind::kHbm && ten.first_hbm == kNoTier) ten.first_hbm = static_cast<TierId>(i);
    if (kind == store_kind && ten.store == kNoTier) ten.store = static_cast<TierId>(i);
  }
  // The configured store tier stays the default tenant's (its first of that kind
  // unless said otherwise).
  if (c->tier_tenant_[c->options_.store_tier] == 0) c->tenants_[0]->store = c->options_.store_tier;
  for (const auto& ten : c->tenants_) {
    if (ten->store == kNoTier)
      return Status::InvalidArgument("tenant '" + ten->name + "' has no " +
                                     TierKindName(store_kind) + " tier to store into");
    if (nvme && ten->host == kNoTier)
      return Status::InvalidArgument("the NVMe tier needs a host tier (tenant '" + ten->name +
                                     "' has none)");
    if (c->options_.promote_to_hbm_hits > 0 && (ten->host == kNoTier || ten->first_hbm == kNoTier))
      return Status::InvalidArgument("promotion to HBM needs an HBM tier and a host tier (tenant '" +
                                     ten->name + "')");
    if (ten->host != kNoTier) {
      auto* h = dynamic_cast<HostShmTier*>(c->tiers_[ten->host]->tier.get());
      if (h != nullptr && h->persistent()) ten->persistent = h;
    }
  }
  if (c->options_.promote_to_hbm_hits > 0)
    c->promoter_ = std::thread([p = c.get()] { p->PromoterMain(); });
  NamespaceRegistryOptions ro;
  ro.file = c->options_.namespace_file;
  ro.idle_reclaim_ns = c->options_.namespace_idle_reclaim_ns;
  ro.clock = c->options_.clock;
  ro.log_warning = c->options_.log_warning;
  ro.tenant_index = [p = c.get()](const std::string& name) { return p->TenantIndex(name); };
  auto reg = NamespaceRegistry::Open(std::move(ro));
  if (!reg.ok()) return reg.status();
  c->namespaces_ = std::move(reg).value();
  KVTIER_RETURN_IF_ERROR(c->AdoptHostBlocks());
  if (nvme) {
    auto t = NvmeTier::Open(c.get(), std::move(*nvme));
    if (!t.ok()) return t.status();
    c->nvme_ = std::move(t).value();
  }
  return c;
}

uint8_t Cache::TenantIndex(std::string_view name) const {
  for (size_t i = 0; i < tenants_.size(); ++i)
    if (tenants_[i]->name == name) return static_cast<uint8_t>(i);
  return kNoTenant;
}

BlockKey Cache::ScopeKey(uint8_t t, const BlockKey& key) const {
  const TenantState& ten = *tenants_[t];
  if (!ten.scoped) return key;
  // "kvtier/tenant-key/v1" | u32 name length | name | key.lo | key.hi (LE).
  uint8_t m[20 + 4 + 64 + 16];
  size_t n = 0;
  std::memcpy(m, "kvtier/tenant-key/v1", 20);
  n = 20;
  const uint32_t len = static_cast<uint32_t>(std::min<size_t>(ten.name.size(), 64));
  std::memcpy(m + n, &len, 4);
  n += 4;
  std::memcpy(m + n, ten.name.data(), len);
  n += len;
  std::memcpy(m + n, &key.lo, 8);
  std::memcpy(m + n + 8, &key.hi, 8);
  n += 16;
  const Sha256Bytes d = Sha256Digest(m, n);
  BlockKey out;
  std::memcpy(&out.lo, d.data(), 8);
  std::memcpy(&out.hi, d.data() + 8, 8);
  return out;
}

void Cache::DropClientMismatch(BlockId id) {
  BlockEntry& e = index_.entry(id);
  TierState& ts = *tiers_[e.tier];  // a host tier: fixed while the block is kFlagDemoting
  bool erased = false;
  {
    std::lock_guard<std::mutex> tl(ts.mu);
    {
      std::lock_guard<std::mutex> l(index_.MutexFor(e.key));
      e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
      e.flags.fetch_or(kFlagNvmeDeclined);
      if (e.pins.load() == 0 && e.state.load() == kReady) {
        index_.EraseLocked(id);
        erased = true;
      }
    }
    if (erased) {
      ts.policy->Remove(id);
      ts.tier->Free(e.slot());
      --ts.blocks;
    }
  }
  if (erased) {
    namespaces_->RemoveBlock(e.ns, e.size);
    index_.FreeId(id);
  }
}

void Cache::NoteClientChecksumMismatch(const BlockEntry& e, const char* when) {
  tenants_[e.tenant]->client_mismatches.fetch_add(1, std::memory_order_relaxed);
  const uint64_t now = SteadyNowNs();
  std::string msg;
  {
    std::lock_guard<std::mutex> l(mismatch_log_mu_);
    if (mismatch_log_ns_ != 0 && now - mismatch_log_ns_ < 10'000'000'000ull) {
      ++mismatch_suppressed_;
      return;
    }
    msg = "client checksum mismatch (a client's fault, not media corruption): tenant '" +
          tenants_[e.tenant]->name + "' namespace " + std::to_string(e.ns) + " block " +
          e.key.ToHex() + " was committed with a checksum its bytes do not have (" + when +
          "); dropped";
    if (mismatch_suppressed_ > 0)
      msg += " (" + std::to_string(mismatch_suppressed_) + " more in the last burst)";
    mismatch_suppressed_ = 0;
    mismatch_log_ns_ = now;
  }
  if (options_.log_warning) {
    options_.log_warning(msg);
  } else {
    std::fprintf(stderr, "kvtier: %s\n", msg.c_str());
  }
}

void Cache::RecordInHost(const BlockEntry& e) {
  HostShmTier* persistent = tenants_[e.tenant]->persistent;
  if (persistent == nullptr || e.tier != tenants_[e.tenant]->host) return;
  HostSlotRecord r;
  r.slot = e.slot();
  std::memcpy(r.tag.data(), &e.key.lo, 8);
  std::memcpy(r.tag.data() + 8, &e.key.hi, 8);
  r.ns = e.ns;
  r.checksum = e.checksum;
  r.priority = e.priority;
  persistent->Record(r);
}

// A persistent host segment's blocks from the last run (verified by the
// tier): READY in the host tier again. Slots the cache cannot use (unknown
// namespace, duplicate key, full index) are freed.
Status Cache::AdoptHostBlocks() {
  for (size_t t = 0; t < tenants_.size(); ++t) {
    if (tenants_[t]->persistent == nullptr) continue;
    const uint8_t tenant = static_cast<uint8_t>(t);
    const TierId host = tenants_[t]->host;
    TierState& ts = *tiers_[host];
    uint64_t adopted = 0, dropped = 0;
    for (const HostSlotRecord& r : tenants_[t]->persistent->Reopened()) {
      BlockKey key;
      std::memcpy(&key.lo, r.tag.data(), 8);
      std::memcpy(&key.hi, r.tag.data() + 8, 8);
      // Only a block of one of this tenant's namespaces (a segment holds
      // nothing else, unless the configuration changed).
      bool ok = namespaces_->Live(r.ns) && namespaces_->Tenant(r.ns) == tenant &&
                r.slot.bytes <= 0xFFFFFFFFull;
      BlockId id = kNoBlock;
      if (ok) {
        std::lock_guard<std::mutex> l(index_.MutexFor(key));
        auto ins = index_.FindLocked(key) == kNoBlock ? index_.InsertLocked(key)
                                                      : Result<BlockId>(Status::Rejected("dup"));
        ok = ins.ok();
        if (ok) {
          id = *ins;
          BlockEntry& e = index_.entry(id);
          e.ns = r.ns;
          e.tenant = tenant;
          e.size = static_cast<uint32_t>(r.slot.bytes);
          e.checksum = r.checksum;
          e.priority = r.priority;
          e.tier = host;
          e.offset = r.slot.offset;
          e.size_class = static_cast<uint16_t>(r.slot.size_class);
          e.state.store(kReady, std::memory_order_release);
        }
      }
      std::lock_guard<std::mutex> l(ts.mu);
      if (!ok) {
        ts.tier->Free(r.slot);
        ++dropped;
        continue;
      }
      // As a store's slot: its owner recorded (so that region release finds
      // it) and its namespace's count raised (so that eviction lowers it).
      if (SlabAllocator* sa = ts.tier->slabs()) sa->SetOwner(r.slot, id);
      namespaces_->AddBlock(r.ns, r.slot.bytes);
      ts.policy->Track(id, MetaOf(index_.entry(id)));
      ++ts.blocks;
      ++adopted;
    }
    if ((adopted > 0 || dropped > 0) && options_.log_info)
      options_.log_info("host tier" + (tenants_[t]->name.empty() ? std::string()
                                                                 : " of tenant '" + tenants_[t]->name + "'") +
                        ": re-adopted " + std::to_string(adopted) +
                        " verified blocks from the persistent segment, dropped " +
                        std::to_string(dropped));
  }
  return Status::OK();
}

Cache::Cache(CacheOptions options, uint32_t max_blocks)
    : options_(std::move(options)),
      clock_(options_.clock),
      start_ns_(clock_()),
      index_(max_blocks, options_.index_shards) {
  for (auto& t : options_.tiers) {
    auto ts = std::make_unique<TierState>();
    ts->tier = std::move(t.tier);
    ts->name = t.name.empty() ? std::string(ts->tier->name()) : t.name;
    tier_tenant_[tiers_.size()] = t.tenant;
    tiers_.push_back(std::move(ts));
  }
}

Cache::~Cache() {
  {
    std::lock_guard<std::mutex> l(promote_mu_);
    promote_stop_ = true;
  }
  promote_cv_.notify_all();
  if (promoter_.joinable()) promoter_.join();
}

void Cache::PromoterMain() {
  std::unique_lock<std::mutex> l(promote_mu_);
  for (;;) {
    promote_busy_ = false;
    promote_cv_.notify_all();
    promote_cv_.wait(l, [&] { return promote_stop_ || !promote_queue_.empty(); });
    if (promote_stop_) return;
    promote_busy_ = true;
    PromoteJob job = promote_queue_.front();
    promote_queue_.pop_front();
    l.unlock();
    bool done = PromoteToHbm(job.id, job.to);
    l.lock();
    const BlockId id = job.id;
    if (!done && job.attempts < 100) {
      promote_queue_.push_back(PromoteJob{job.id, job.to, job.attempts + 1});  // pinned: later
      l.unlock();
      std::this_thread::sleep_for(std::chrono::microseconds(200));
      l.lock();
    } else if (!done) {
      BlockEntry& e = index_.entry(id);
      std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
      e.flags.fetch_and(static_cast<uint8_t>(~kFlagHbmQueued));
    }
  }
}

void Cache::DrainPromotions() {
  std::unique_lock<std::mutex> l(promote_mu_);
  promote_cv_.wait(l, [&] { return promote_queue_.empty() && !promote_busy_; });
}

bool Cache::PromoteToHbm(BlockId id, TierId to) {
  TierState& hbm = *tiers_[to];
  BlockEntry& e = index_.entry(id);
  const TierId host_tier = HostTierOfBlock(e);
  TierState& host = *tiers_[host_tier];
  std::lock_guard<std::mutex> hl(hbm.mu);  // lock order: HBM, host, shard
  {
    std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
    // Moved, evicted or reused since it was queued: nothing to do.
    if (e.tier != host_tier || e.state.load() != kReady ||
        (e.flags.load() & kFlagHbmQueued) == 0)
      return true;
    if (e.pins.load() != 0 || (e.flags.load() & kFlagDemoting) != 0) return false;
  }
  auto slot = AllocateLocked(hbm, e.size, id);
  if (!slot.ok()) {
    std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
    e.flags.fetch_and(static_cast<uint8_t>(~kFlagHbmQueued));
    return true;  // HBM full of pinned blocks: stay in host
  }
  std::lock_guard<std::mutex> hostl(host.mu);
  {
    std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
    if (e.tier != host_tier || e.state.load() != kReady || e.pins.load() != 0 ||
        (e.flags.load() & kFlagDemoting) != 0) {
      hbm.tier->Free(*slot);
      return e.pins.load() == 0;
    }
    e.state.store(kLoading, std::memory_order_release);  // not readable while it moves
  }
  const Slot from = e.slot();
  auto* gpu = static_cast<GpuHbmTier*>(hbm.tier.get());
  Status st = gpu->CopyIn(*slot, host.tier->Address(from), e.size);
  std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
  e.flags.fetch_and(static_cast<uint8_t>(~kFlagHbmQueued));
  if (!st.ok()) {
    hbm.tier->Free(*slot);
    e.state.store(kReady, std::memory_order_release);
    return true;
  }
  if (nvme_) nvme_->HostCopyMoved(e, -1);
  e.tier = to;
  e.offset = slot->offset;
  e.size_class = static_cast<uint16_t>(slot->size_class);
  e.state.store(kReady, std::memory_order_release);
  hbm.policy->Track(id, MetaOf(e));
  ++hbm.blocks;
  hbm.bytes_in += e.size;
  ++hbm_promotions_;
  host.policy->Remove(id);
  host.tier->Free(from);
  --host.blocks;
  return true;
}

BlockMeta Cache::MetaOf(const BlockEntry& e) const {
  BlockMeta meta;
  meta.priority = e.priority;
  meta.retention_deadline_ns =
      e.retention_deadline_s == 0 ? 0 : start_ns_ + uint64_t{e.retention_deadline_s} * 1000000000ull;
  meta.bytes = e.size;
  meta.fingerprint = e.key.lo;
  return meta;
}

uint32_t Cache::NowSeconds() const {
  return static_cast<uint32_t>((clock_() - start_ns_) / 1000000000ull);
}

Result<NamespaceId> Cache::OpenNamespace(const NamespaceSpec& spec, bool hold) {
  KVTIER_RETURN_IF_ERROR(spec.Validate());
  const uint8_t tenant = TenantIndex(spec.tenant);
  if (tenant == kNoTenant)
    return Status::NotFound("tenant '" + spec.tenant + "' is not configured");
  return namespaces_->Register(spec, hold, tenant);
}

void Cache::CloseNamespace(NamespaceId ns) { namespaces_->Release(ns); }

Result<NamespaceSpec> Cache::GetNamespace(NamespaceId ns) const { return namespaces_->Get(ns); }

uint8_t* Cache::Address(TierId tier, uint64_t offset) const {
  if (tier >= tiers_.size()) return nullptr;
  uint8_t* base = tiers_[tier]->tier->Address(Slot{0, 0, 0});
  return base == nullptr ? nullptr : base + offset;
}

bool Cache::Evictable(BlockId id) const {
  const BlockEntry& e = index_.entry(id);
  return e.state.load(std::memory_order_acquire) == kReady &&
         e.pins.load(std::memory_order_acquire) == 0 &&
         (e.flags.load(std::memory_order_acquire) & kFlagDemoting) == 0;
}

bool Cache::EvictOneLocked(TierState& ts, uint64_t bytes) {
  Tier& tier = *ts.tier;
  BlockId victim = ts.policy->PickVictim([&](BlockId v) {
    return Evictable(v) && tier.FreeingHelps(index_.entry(v).slot(), bytes);
  });
  if (victim == kNoBlock) return false;
  (void)EvictBlockLocked(ts, victim);
  return true;  // a victim that became pinned meanwhile: the caller tries another
}

bool Cache::EvictBlockLocked(TierState& ts, BlockId victim) {
  Tier& tier = *ts.tier;
  if (tier.kind() == TierKind::kHbm && HostTierOfBlock(index_.entry(victim)) != kNoTier &&
      DemoteToHostLocked(ts, victim))
    return true;
  BlockEntry& e = index_.entry(victim);
  const Slot slot = e.slot();
  bool erased = false;
  {
    std::lock_guard<std::mutex> l(index_.MutexFor(e.key));
    if (e.pins.load(std::memory_order_relaxed) != 0 ||
        e.state.load(std::memory_order_relaxed) != kReady ||
        (e.flags.load(std::memory_order_relaxed) & kFlagDemoting) != 0)
      return false;  // pinned or being written since the pre-check
    if (nvme_ && (e.flags.load(std::memory_order_relaxed) & kFlagOnNvme) != 0) {
      nvme_->BecomeResidentLocked(e);  // lives on in the NVMe tier
    } else {
      index_.EraseLocked(victim);
      erased = true;
    }
  }
  ts.policy->Remove(victim);
  tier.Free(slot);
  ++ts.evictions;
  if (slot.size_class != SlabAllocator::kLargeClass) ++ts.Class(slot.size_class).evictions;
  ts.evicted_bytes += e.size;
  --ts.blocks;
  namespaces_->AddEviction(e.ns);
  if (erased) {
    namespaces_->RemoveBlock(e.ns, e.size);
    index_.FreeId(victim);
  }
  return true;
}

bool Cache::DemoteToHostLocked(TierState& ts, BlockId victim) {
  BlockEntry& e = index_.entry(victim);
  {
    std::lock_guard<std::mutex> l(index_.MutexFor(e.key));
    if (e.pins.load(std::memory_order_relaxed) != 0 ||
        e.state.load(std::memory_order_relaxed) != kReady)
      return false;
    e.state.store(kLoading, std::memory_order_release);  // not readable while it moves
  }
  const Slot from = e.slot();
  const TierId host_tier = HostTierOfBlock(e);
  TierState& host = *tiers_[host_tier];
  bool moved = false;
  {
    // Lock order: HBM tier, then host tier.
    std::lock_guard<std::mutex> l(host.mu);
    auto slot = AllocateLocked(host, e.size, victim);
    if (slot.ok()) {
      auto* hbm = static_cast<GpuHbmTier*>(ts.tier.get());
      Status st = hbm->CopyOut(host.tier->Address(*slot), from, e.size);
      if (st.ok()) {
        {
          std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
          e.tier = host_tier;
          e.offset = slot->offset;
          e.size_class = static_cast<uint16_t>(slot->size_class);
          if (nvme_) nvme_->HostCopyMoved(e, +1);
          RecordInHost(e);
          e.state.store(kReady, std::memory_order_release);
        }
        host.policy->Track(victim, MetaOf(e));
        ++host.blocks;
        host.bytes_in += e.size;
        moved = true;
      } else {
        host.tier->Free(*slot);
      }
    }
  }
  if (!moved) {
    std::lock_guard<std::mutex> sl(index_.MutexFor(e.key));
    e.state.store(kReady, std::memory_order_release);
    return false;  // the caller drops it
  }
  ts.policy->Remove(victim);
  ts.tier->Free(from);
  ++ts.evictions;
  ts.evicted_bytes += e.size;
  --ts.blocks;
  return true;
}

Result<Reservation> Cache::Reserve(NamespaceId ns, std::span<const BlockKey> keys_in,
                                   std::span<const uint64_t> sizes, const StoreOptions& opt) {
  NamespaceGuard guard(*namespaces_, ns);
  if (!guard.entered()) return Status::NotFound("unknown namespace " + std::to_string(ns));
  const uint8_t tenant = namespaces_->Tenant(ns);
  if (tenant >= tenants_.size())
    return Status::NotFound("namespace " + std::to_string(ns) + " belongs to no configured tenant");
  std::span<const BlockKey> keys = keys_in;
  if (keys.size() != sizes.size())
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys but " +
                                   std::to_string(sizes.size()) + " sizes");
  if (keys.size() > options_.max_keys_per_call)
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys exceed the limit of " +
                                   std::to_string(options_.max_keys_per_call) + " per call");
  if (opt.priority > kMaxPriority)
    return Status::InvalidArgument("priority " + std::to_string(opt.priority) + " exceeds 100");
  for (size_t i = 0; i < sizes.size(); ++i)
    if (sizes[i] == 0 || sizes[i] > 0xFFFFFFFFull)
      return Status::InvalidArgument("sizes[" + std::to_string(i) + "] = " +
                                     std::to_string(sizes[i]) + " is out of range 1..2^32-1");
  for (const PriorityRange& r : opt.ranges) {
    if (r.begin >= r.end || r.end > keys.size())
      return Status::InvalidArgument("priority range [" + std::to_string(r.begin) + ", " +
                                     std::to_string(r.end) + ") is empty or outside the " +
                                     std::to_string(keys.size()) + " keys");
    if (r.priority > kMaxPriority)
      return Status::InvalidArgument("range priority " + std::to_string(r.priority) +
                                     " exceeds 100");
  }
  c_.reserves.fetch_add(1, std::memory_order_relaxed);

  if (opt.tier != kNoTier && opt.tier >= tiers_.size())
    return Status::InvalidArgument("store tier " + std::to_string(opt.tier) + " does not exist");
  if (opt.tier != kNoTier && tier_tenant_[opt.tier] != tenant)
    return Status::InvalidArgument("store tier " + std::to_string(opt.tier) +
                                   " is not one of the namespace's tenant's tiers");
  const TierId t = opt.tier != kNoTier ? opt.tier : tenants_[tenant]->store;
  TierState& ts = *tiers_[t];
  const uint64_t now_ns = clock_();
  // A tenant's keys meet the index scoped to it (ScopeKey).
  std::vector<BlockKey> scoped;
  if (tenants_[tenant]->scoped) {
    scoped.reserve(keys_in.size());
    for (const BlockKey& k : keys_in) scoped.push_back(ScopeKey(tenant, k));
    keys = scoped;
  }
  // Which range sets each key's priority (the last one covering it), in
  // time linear in keys + ranges: the ranges painted last to first, each key
  // once, skipping painted runs through `next` (a path-halving union-find).
  constexpr uint32_t kNoRange = UINT32_MAX;
  std::vector<uint32_t> range_of;
  if (!opt.ranges.empty()) {
    range_of.assign(keys.size(), kNoRange);
    std::vector<uint32_t> next(keys.size() + 1);
    for (size_t i = 0; i <= keys.size(); ++i) next[i] = static_cast<uint32_t>(i);
    auto find = [&next](uint32_t i) {
      while (next[i] != i) {
        next[i] = next[next[i]];
        i = next[i];
      }
      return i;
    };
    for (size_t r = opt.ranges.size(); r-- > 0;) {
      for (uint32_t i = find(opt.ranges[r].begin); i < opt.ranges[r].end; i = find(i)) {
        range_of[i] = static_cast<uint32_t>(r);
        next[i] = i + 1;
      }
    }
  }
  Reservation res;
  res.cache_ = this;
  res.blocks_.reserve(keys.size());
  // The chain parent of keys[0], so that prefix-aware policies link the new
  // suffix to the cached prefix.
  BlockId prev_id = kNoBlock;
  const BlockKey first_parent =
      opt.first_parent.IsZero() ? opt.first_parent : ScopeKey(tenant, opt.first_parent);
  if (!first_parent.IsZero()) {
    std::lock_guard<std::mutex> l(index_.MutexFor(first_parent));
    BlockId p = index_.FindLocked(first_parent);
    if (p != kNoBlock && index_.entry(p).tier == t) prev_id = p;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    const BlockKey key = keys[i];
    Reservation::Block b{key, ReserveOutcome::kReserved, kNoBlock, t, 0,
                         static_cast<uint32_t>(sizes[i])};
    uint8_t prio = opt.priority;
    uint64_t duration = opt.duration_ns;
    if (!range_of.empty() && range_of[i] != kNoRange) {
      prio = opt.ranges[range_of[i]].priority;
      duration = opt.ranges[range_of[i]].duration_ns;
    }
    BlockId id;
    {
      std::lock_guard<std::mutex> l(index_.MutexFor(key));
      BlockId found = index_.FindLocked(key);
      if (found != kNoBlock) {
        bool ready = index_.entry(found).state.load(std::memory_order_relaxed) == kReady;
        b.outcome = ready ? ReserveOutcome::kPresent : ReserveOutcome::kInFlight;
        res.blocks_.push_back(b);
        prev_id = found;
        continue;
      }
      auto ins = index_.InsertLocked(key);
      if (!ins.ok()) {
        b.outcome = ReserveOutcome::kNoSpace;
        res.blocks_.push_back(b);
        prev_id = kNoBlock;
        continue;
      }
      id = *ins;
      BlockEntry& e = index_.entry(id);
      e.parent = i == 0 ? first_parent : keys[i - 1];
      e.ns = ns;
      e.tenant = tenant;
      e.size = static_cast<uint32_t>(sizes[i]);
      e.tier = t;
      e.priority = prio;
      e.retention_deadline_s =
          duration == 0 ? 0 : NowSeconds() + static_cast<uint32_t>(duration / 1000000000ull) + 1;
      e.state.store(kWriting, std::memory_order_release);
    }
    bool placed;
    {
      std::lock_guard<std::mutex> l(ts.mu);
      auto slot = AllocateLocked(ts, sizes[i], id);
      placed = slot.ok();
      if (placed) {
        if (ts.tier->slabs() != nullptr) NoteDemandLocked(ts, slot->size_class, sizes[i]);
        BlockEntry& e = index_.entry(id);
        e.offset = slot->offset;
        e.size_class = static_cast<uint16_t>(slot->size_class);
        // The policy learns of the block at Commit: a block being written
        // can never be a victim, and uncommitted reservations must not fill
        // the policy's victim scan (they would stop eviction for everyone).
        ++ts.blocks;
        b.offset = slot->offset;
        b.parent = prev_id;
        b.retention_deadline_ns = duration == 0 ? 0 : now_ns + duration;
      }
    }
    if (!placed) {
      {
        std::lock_guard<std::mutex> l(index_.MutexFor(key));
        index_.EraseLocked(id);
      }
      index_.FreeId(id);
      b.outcome = ReserveOutcome::kNoSpace;
      res.blocks_.push_back(b);
      prev_id = kNoBlock;
      continue;
    }
    b.id = id;
    res.blocks_.push_back(b);
    ++res.pending_;
    prev_id = id;
  }

  // The namespace's block count, once per call: it is entered (guard) until
  // the call returns, and no reserved block can be evicted before Commit.
  uint64_t reserved_bytes = 0;
  for (const auto& b : res.blocks_)
    if (b.outcome == ReserveOutcome::kReserved) reserved_bytes += b.size;
  if (res.pending_ > 0) namespaces_->AddBlocks(ns, res.pending_, reserved_bytes);
  size_t no_space = 0, present = 0, in_flight = 0;
  for (const auto& b : res.blocks_) {
    no_space += b.outcome == ReserveOutcome::kNoSpace;
    present += b.outcome == ReserveOutcome::kPresent;
    in_flight += b.outcome == ReserveOutcome::kInFlight;
  }
  c_.blocks_reserved.fetch_add(res.pending_, std::memory_order_relaxed);
  c_.blocks_present.fetch_add(present, std::memory_order_relaxed);
  c_.blocks_in_flight.fetch_add(in_flight, std::memory_order_relaxed);
  c_.blocks_no_space.fetch_add(no_space, std::memory_order_relaxed);
  c_.writing.fetch_add(res.pending_, std::memory_order_relaxed);
  if (res.pending_ == 0 && no_space > 0)
    return Status::ResourceExhausted(
        "no space for any of the " + std::to_string(keys.size()) + " blocks in the " +
        ts.name + " tier: no block that could make room is evictable (" +
        std::to_string(c_.pinned.load(std::memory_order_relaxed)) + " blocks pinned by leases, " +
        std::to_string(c_.writing.load(std::memory_order_relaxed)) + " being written)");
  return res;
}

Status Cache::Commit(Reservation& r, std::span<const uint64_t> checksums,
                     std::function<void(Status)> on_durable) {
  if (r.cache_ != this || r.pending_ == 0)
    return Status::InvalidArgument("reservation is already committed or aborted");
  if (checksums.size() != r.blocks_.size())
    return Status::InvalidArgument(std::to_string(checksums.size()) + " checksums for " +
                                   std::to_string(r.blocks_.size()) + " reserved keys");
  const uint32_t now_s = NowSeconds();
  const bool write_through = nvme_ && nvme_->write_through();
  // write-through: the commit is durable once every block written at it is.
  std::shared_ptr<NvmeDurableWait> wait;
  // Commit's own wait when there is no callback (made only then: a promise
  // allocates, and the other policies' commits must not pay for it).
  std::optional<std::promise<Status>> waited;
  const bool caller_waits = on_durable == nullptr;
  // Checked at commit (verify_at_commit): host blocks whose bytes do not
  // have their committed checksum are dropped here, never made READY.
  std::vector<uint8_t> bad;
  size_t n_bad = 0;
  if (options_.verify_at_commit) {
    bad.assign(r.blocks_.size(), 0);
    for (size_t i = 0; i < r.blocks_.size(); ++i) {
      const auto& b = r.blocks_[i];
      if (b.outcome != ReserveOutcome::kReserved || !is_host(b.tier)) continue;
      const uint8_t* p = tiers_[b.tier]->tier->Address(index_.entry(b.id).slot());
      if (checksum::Sum64(p, b.size) != checksums[i]) {
        if (n_bad == 0) r.first_mismatch_ = i;
        bad[i] = 1;
        ++n_bad;
      }
    }
  }
  if (write_through && nvme_->durable_commit()) {
    size_t n = 0;
    for (size_t i = 0; i < r.blocks_.size(); ++i)
      n += r.blocks_[i].outcome == ReserveOutcome::kReserved && is_host(r.blocks_[i].tier) &&
           (bad.empty() || !bad[i]);
    if (n > 0) {
      wait = std::make_shared<NvmeDurableWait>();
      wait->remaining = n;
      if (on_durable) {
        wait->done = std::move(on_durable);
      } else {
        waited.emplace();
        wait->done = [&waited](Status s) { waited->set_value(std::move(s)); };
      }
    }
  }
  uint64_t bytes = 0;
  std::vector<BlockId> writes;
  if (!r.blocks_.empty()) {
    // Lock order: the tier, then a shard. The policy learns of each block
    // as it becomes READY, under the tier lock, so that nothing can evict
    // it before it is tracked.
    TierState& ts = *tiers_[r.blocks_.front().tier];
    std::lock_guard<std::mutex> tl(ts.mu);
    for (size_t i = 0; i < r.blocks_.size(); ++i) {
      auto& b = r.blocks_[i];
      if (b.outcome != ReserveOutcome::kReserved) continue;
      BlockEntry& e = index_.entry(b.id);
      if (!bad.empty() && bad[i]) {
        {
          std::lock_guard<std::mutex> l(index_.MutexFor(b.key));
          e.checksum = checksums[i];
          NoteClientChecksumMismatch(e, "checked at commit");
          index_.EraseLocked(b.id);
        }
        ts.tier->Free(e.slot());
        --ts.blocks;
        namespaces_->RemoveBlock(e.ns, e.size);
        index_.FreeId(b.id);
        b.outcome = ReserveOutcome::kNoSpace;  // not stored
        continue;
      }
      // NVMe writes leave from host memory: blocks stored in HBM get their
      // NVMe copy once they move down to the host tier (write-back).
      const bool write = write_through && is_host(b.tier);
      {
        std::lock_guard<std::mutex> l(index_.MutexFor(b.key));
        e.checksum = checksums[i];
        e.last_access_s = now_s;
        if (write) e.flags.fetch_or(kFlagDemoting);
        if (is_host(b.tier)) RecordInHost(e);
        e.state.store(kReady, std::memory_order_release);
      }
      BlockMeta meta = MetaOf(e);
      meta.retention_deadline_ns = b.retention_deadline_ns;
      meta.parent = b.parent;
      ts.policy->Track(b.id, meta);
      if (write) writes.push_back(b.id);
      bytes += b.size;
    }
    ts.bytes_in += bytes;
  }
  for (BlockId id : writes) nvme_->EnqueueWrite(id, wait);
  r.mismatches_ = n_bad;
  c_.writing.fetch_sub(r.pending_, std::memory_order_relaxed);
  c_.commits.fetch_add(1, std::memory_order_relaxed);
  r.pending_ = 0;
  if (!wait) {
    if (on_durable) on_durable(Status::OK());
    return Status::OK();
  }
  if (caller_waits) return waited->get_future().get();
  return Status::OK();
}

bool Cache::durable_commits() const {
  return nvme_ && nvme_->write_through() && nvme_->durable_commit();
}

uint64_t Cache::FlushHostToNvme(uint64_t timeout_ms) {
  return nvme_ ? nvme_->FlushHost(SteadyNowNs() + timeout_ms * 1000000ull) : 0;
}

void Cache::Abort(Reservation& r) {
  if (r.cache_ != this || r.pending_ == 0) return;
  for (auto& b : r.blocks_) {
    if (b.outcome != ReserveOutcome::kReserved) continue;
    BlockEntry& e = index_.entry(b.id);
    {
      std::lock_guard<std::mutex> l(index_.MutexFor(b.key));
      index_.EraseLocked(b.id);
    }
    {
      TierState& ts = *tiers_[b.tier];
      std::lock_guard<std::mutex> l(ts.mu);
      ts.policy->Remove(b.id);
      ts.tier->Free(e.slot());
      --ts.blocks;
    }
    namespaces_->RemoveBlock(e.ns, e.size);
    index_.FreeId(b.id);
  }
  c_.writing.fetch_sub(r.pending_, std::memory_order_relaxed);
  c_.aborts.fetch_add(1, std::memory_order_relaxed);
  r.pending_ = 0;
}

Result<Lease> Cache::Acquire(NamespaceId ns, std::span<const BlockKey> keys_in, TierId promote_to) {
  NamespaceGuard guard(*namespaces_, ns);
  if (!guard.entered()) return Status::NotFound("unknown namespace " + std::to_string(ns));
  const uint8_t tenant = namespaces_->Tenant(ns);
  if (tenant >= tenants_.size())
    return Status::NotFound("namespace " + std::to_string(ns) + " belongs to no configured tenant");
  std::span<const BlockKey> keys = keys_in;
  if (keys.size() > options_.max_keys_per_call)
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys exceed the limit of " +
                                   std::to_string(options_.max_keys_per_call) + " per call");
  std::vector<BlockKey> scoped;
  if (tenants_[tenant]->scoped) {
    scoped.reserve(keys_in.size());
    for (const BlockKey& k : keys_in) scoped.push_back(ScopeKey(tenant, k));
    keys = scoped;
  }
  Lease lease;
  lease.cache_ = this;
  lease.state_ = std::make_shared<Lease::State>();
  std::vector<Lease::Block>& blocks = lease.state_->blocks;
  blocks.reserve(keys.size());
  std::vector<size_t> promote;
  const uint32_t now_s = NowSeconds();
  uint64_t newly_pinned = 0;
  // Host blocks hit often enough move up to an HBM tier (in the background).
  // Only into one of the tenant's own HBM tiers.
  if (promote_to == kNoTier || promote_to >= tiers_.size() || tier_tenant_[promote_to] != tenant)
    promote_to = tenants_[tenant]->first_hbm;
  const bool promoting = promoter_.joinable() && promote_to < tiers_.size() &&
                         tiers_[promote_to]->tier->kind() == TierKind::kHbm;
  std::vector<BlockId> up;
  for (const BlockKey& key : keys) {
    std::lock_guard<std::mutex> l(index_.MutexFor(key));
    BlockId id = index_.FindLocked(key);
    if (id == kNoBlock) break;
    BlockEntry& e = index_.entry(id);
    // A block being written or promoted for someone else ends the prefix.
    if (e.state.load(std::memory_order_relaxed) != kReady || e.ns != ns) break;
    if (e.tier == kNvmeTier) {
      if (!nvme_) break;
      e.state.store(kLoading, std::memory_order_release);
      promote.push_back(blocks.size());
    }
    if (e.pins.fetch_add(1, std::memory_order_acq_rel) == 0) ++newly_pinned;
    ++e.hits;
    e.last_access_s = now_s;
    e.flags.fetch_and(static_cast<uint8_t>(~kFlagNvmeDeclined));  // seen again
    if (promoting && is_host(e.tier) && e.hits >= options_.promote_to_hbm_hits &&
        (e.flags.fetch_or(kFlagHbmQueued) & kFlagHbmQueued) == 0)
      up.push_back(id);
    blocks.push_back(Lease::Block{key, id, e.tier, e.offset, e.size, e.checksum});
  }
  c_.pinned.fetch_add(newly_pinned, std::memory_order_relaxed);
  // Tell each memory tier's policy about the hits (blocks are pinned: they stay).
  for (size_t t = 0; t < tiers_.size() && !blocks.empty(); ++t) {
    TierState& ts = *tiers_[t];
    std::lock_guard<std::mutex> l(ts.mu);
    const bool slabs = ts.tier->slabs() != nullptr;
    for (const auto& b : blocks) {
      if (b.tier != t) continue;
      ts.policy->Touch(b.id);
      ++ts.hits;
      // Pinned: its slot cannot change under us.
      const uint16_t cls = index_.entry(b.id).size_class;
      if (slabs && cls != SlabAllocator::kLargeClass) {
        ++ts.Class(cls).hits;
        if (kHitsAreDemand) NoteDemandLocked(ts, cls, b.size);
      }
      ts.bytes_out += b.size;
    }
  }
  if (!up.empty()) {
    std::lock_guard<std::mutex> l(promote_mu_);
    for (BlockId id : up) promote_queue_.push_back(PromoteJob{id, promote_to, 0});
    promote_cv_.notify_one();
  }
  c_.acquires.fetch_add(1, std::memory_order_relaxed);
  c_.keys_requested.fetch_add(keys.size(), std::memory_order_relaxed);
  c_.blocks_hit.fetch_add(blocks.size(), std::memory_order_relaxed);
  if (!blocks.empty()) namespaces_->AddHits(ns, blocks.size());
  c_.blocks_missed.fetch_add(keys.size() - blocks.size(), std::memory_order_relaxed);
  if (!promote.empty()) {
    lease.state_->failed.assign(blocks.size(), false);
    lease.state_->pending = promote.size();
    for (size_t i : promote) nvme_->StartPromotion(lease.state_, i);
  }
  return lease;
}

Result<std::vector<TierKind>> Cache::Probe(NamespaceId ns, std::span<const BlockKey> keys) const {
  if (!namespaces_->Live(ns)) return Status::NotFound("unknown namespace " + std::to_string(ns));
  const uint8_t tenant = namespaces_->Tenant(ns);
  if (tenant >= tenants_.size())
    return Status::NotFound("namespace " + std::to_string(ns) + " belongs to no configured tenant");
  if (keys.size() > options_.max_keys_per_call)
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys exceed the limit of " +
                                   std::to_string(options_.max_keys_per_call) + " per call");
  std::vector<TierKind> tiers;
  tiers.reserve(keys.size());
  for (const BlockKey& raw : keys) {
    const BlockKey key = ScopeKey(tenant, raw);
    std::lock_guard<std::mutex> l(index_.MutexFor(key));
    BlockId id = index_.FindLocked(key);
    if (id == kNoBlock) break;
    const BlockEntry& e = index_.entry(id);
    if (e.state.load(std::memory_order_relaxed) != kReady || e.ns != ns) break;
    if (e.tier == kNvmeTier && !nvme_) break;
    tiers.push_back(tier_kind(e.tier));
  }
  return tiers;
}

void Cache::OnReady(Lease& lease, std::function<void()> fn) {
  if (lease.state_) {
    std::unique_lock<std::mutex> l(lease.state_->mu);
    if (lease.state_->pending > 0) {
      lease.state_->on_ready = std::move(fn);
      return;
    }
  }
  fn();
}

void Cache::DrainNvme() {
  if (nvme_) nvme_->Drain();
}

void Cache::ReleaseIds(std::span<const BlockId> ids) {
  uint64_t unpinned = 0;
  for (BlockId id : ids) {
    BlockEntry& e = index_.entry(id);
    std::lock_guard<std::mutex> l(index_.MutexFor(e.key));
    if (e.pins.fetch_sub(1, std::memory_order_acq_rel) == 1) ++unpinned;
  }
  c_.pinned.fetch_sub(unpinned, std::memory_order_relaxed);
}

void Cache::ReleaseBlocks(std::span<const Lease::Block> blocks) {
  std::vector<BlockId> ids;
  ids.reserve(blocks.size());
  for (const auto& b : blocks) ids.push_back(b.id);
  ReleaseIds(ids);
}

CacheStats Cache::Stats() const {
  CacheStats s;
  s.acquires = c_.acquires.load();
  s.keys_requested = c_.keys_requested.load();
  s.blocks_hit = c_.blocks_hit.load();
  s.blocks_missed = c_.blocks_missed.load();
  s.reserves = c_.reserves.load();
  s.blocks_reserved = c_.blocks_reserved.load();
  s.blocks_present = c_.blocks_present.load();
  s.blocks_in_flight = c_.blocks_in_flight.load();
  s.blocks_no_space = c_.blocks_no_space.load();
  s.commits = c_.commits.load();
  s.aborts = c_.aborts.load();
  s.blocks_writing = c_.writing.load();
  s.pinned_blocks = c_.pinned.load();
  s.index_entries = index_.size();
  s.blocks_ready = s.index_entries - std::min<uint64_t>(s.index_entries, s.blocks_writing);
  s.index_memory = index_.MemoryUsage();
  for (const auto& tp : tiers_) {
    std::lock_guard<std::mutex> l(tp->mu);
    TierStats t;
    t.name = tp->name;
    t.capacity_bytes = tp->tier->capacity_bytes();
    t.used_bytes = tp->tier->used_bytes();
    t.blocks = tp->blocks;
    t.hits = tp->hits;
    t.bytes_in = tp->bytes_in;
    t.bytes_out = tp->bytes_out;
    t.evictions = tp->evictions;
    t.evicted_bytes = tp->evicted_bytes;
    t.regions_moved = tp->regions_moved;
    t.policy_memory = tp->policy->MemoryUsage();
    if (tp->tier->kind() == TierKind::kHbm) t.promotions = hbm_promotions_;
    if (SlabAllocator* sa = tp->tier->slabs()) {
      for (uint32_t c = 0; c < sa->num_classes(); ++c) {
        const TierState::ClassCounters k = c < tp->classes.size() ? tp->classes[c]
                                                                  : TierState::ClassCounters{};
        if (sa->ClassRegions(c) == 0 && k.hits == 0 && k.evictions == 0) continue;
        SizeClassStats z;
        z.tier = t.name;
        z.slot_bytes = sa->ClassBytes(c);
        z.regions = sa->ClassRegions(c);
        z.blocks = sa->ClassUsedSlots(c);
        z.hits = k.hits;
        z.evictions = k.evictions;
        z.regions_moved = k.regions_moved;
        s.sizes.push_back(z);
      }
    }
    s.tiers.push_back(std::move(t));
  }
  if (nvme_) s.tiers.push_back(nvme_->Stats());
  namespaces_->MaybeReclaim();
  s.namespaces = namespaces_->List();
  s.namespaces_reclaimed = namespaces_->reclaimed();
  for (const auto& ten : tenants_) {
    TenantStats t;
    t.name = ten->name;
    t.client_checksum_mismatches = ten->client_mismatches.load(std::memory_order_relaxed);
    t.nvme_bytes = static_cast<uint64_t>(std::max<int64_t>(0, ten->nvme_bytes.load()));
    t.nvme_quota_bytes = ten->nvme_quota;
    t.nvme_quota_declined = ten->nvme_declined.load(std::memory_order_relaxed);
    s.tenants.push_back(std::move(t));
  }
  return s;
}

}  // namespace kvtier
