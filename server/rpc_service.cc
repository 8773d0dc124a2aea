#include "server/rpc_service.h"

#include <algorithm>
#include <chrono>
#include <unordered_set>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "server/kvtier.capnp.h"
#include "server/rpc_convert.h"

namespace kvtier {

namespace {

template <typename T, typename List>
std::vector<T> ToVector(List list) {
  std::vector<T> v;
  v.reserve(list.size());
  for (auto x : list) v.push_back(x);
  return v;
}

using rpcconv::FromRpc;
using rpcconv::KeysFromRpc;
using rpcconv::Throw;
using rpcconv::ToRpc;

// What a connection of tenant `tenant` (-1: none yet) may see: with tenants,
// only its own tiers (and NVMe) and its own namespaces; the aggregate
// counters are the daemon's.
void FillStats(const Cache& cache, const RpcService& svc, int tenant, rpc::Stats::Builder out) {
  const RpcMetrics& m = *svc.metrics();
  CacheStats s = cache.Stats();
  if (svc.resolver().multi_tenant()) {
    std::vector<TierStats> tiers;
    for (size_t i = 0; i < s.tiers.size(); ++i)
      if (i >= cache.num_tiers() ||
          (tenant >= 0 && cache.tier_tenant(static_cast<TierId>(i)) == tenant))
        tiers.push_back(std::move(s.tiers[i]));
    s.tiers = std::move(tiers);
    std::vector<NamespaceInfo> nss;
    for (auto& n : s.namespaces)
      if (tenant >= 0 && n.spec.tenant == svc.resolver().name(static_cast<size_t>(tenant)))
        nss.push_back(std::move(n));
    s.namespaces = std::move(nss);
  }
  out.setBlocksReady(s.blocks_ready);
  out.setBlocksWriting(s.blocks_writing);
  out.setPinnedBlocks(s.pinned_blocks);
  out.setAcquires(s.acquires);
  out.setBlocksHit(s.blocks_hit);
  out.setBlocksMissed(s.blocks_missed);
  out.setCommits(s.commits);
  out.setAborts(s.aborts);
  out.setLeasesOpen(m.leases_open.load());
  out.setTxnsOpen(m.txns_open.load());
  out.setConnectionsOpen(m.connections_open.load());
  auto tiers = out.initTiers(static_cast<unsigned>(s.tiers.size()));
  for (size_t i = 0; i < s.tiers.size(); ++i) {
    auto t = tiers[static_cast<unsigned>(i)];
    t.setName(s.tiers[i].name);
    t.setCapacityBytes(s.tiers[i].capacity_bytes);
    t.setUsedBytes(s.tiers[i].used_bytes);
    t.setBlocks(s.tiers[i].blocks);
    t.setHits(s.tiers[i].hits);
    t.setBytesIn(s.tiers[i].bytes_in);
    t.setBytesOut(s.tiers[i].bytes_out);
    t.setEvictions(s.tiers[i].evictions);
  }
  auto nss = out.initNamespaces(static_cast<unsigned>(s.namespaces.size()));
  for (size_t i = 0; i < s.namespaces.size(); ++i) {
    const NamespaceInfo& n = s.namespaces[i];
    auto o = nss[static_cast<unsigned>(i)];
    o.setId(n.id);
    o.setModelId(n.spec.model_id);
    o.setModelRevision(n.spec.model_revision);
    o.setTpRank(n.spec.tp_rank);
    o.setTpSize(n.spec.tp_size);
    o.setBlockBytes(n.spec.layout.BlockBytes());
    o.setSalted(!n.spec.tenant_salt.empty());
    o.setBlocks(n.blocks);
    o.setBytes(n.bytes);
    o.setHits(n.hits);
    o.setEvictions(n.evictions);
  }
}

// A promise fulfilled (on this thread's event loop) when `lease` is ready.
kj::Promise<void> WhenReady(Cache* cache, const std::shared_ptr<Lease>& lease) {
  if (lease->ready()) return kj::READY_NOW;
  struct Waker {
    std::mutex mu;
    kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
  };
  auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
  auto waker = std::make_shared<Waker>();
  waker->fulfiller = kj::mv(paf.fulfiller);
  cache->OnReady(*lease, [waker] {
    std::lock_guard<std::mutex> l(waker->mu);
    if (waker->fulfiller) waker->fulfiller->fulfill();
  });
  // If the call is cancelled (client gone), forget the fulfiller first.
  auto guard = kj::defer([waker] {
    std::lock_guard<std::mutex> l(waker->mu);
    waker->fulfiller = nullptr;
  });
  return paf.promise.attach(kj::mv(guard));
}

// The CUDA device of an HBM tier, -1 for other tiers.
int DeviceOf(const Cache& cache, TierId t) {
  if (cache.tier_kind(t) != TierKind::kHbm) return -1;
  return static_cast<const GpuHbmTier&>(cache.tier(t)).device();
}

void FillBlocks(const Cache& cache, const Lease& lease,
                capnp::List<rpc::BlockLocation>::Builder blocks) {
  for (size_t i = 0; i < lease.size(); ++i) {
    const auto& b = lease.blocks()[i];
    auto o = blocks[static_cast<unsigned>(i)];
    o.setTier(rpcconv::TierToRpc(cache.tier_kind(b.tier)));
    o.setOffset(b.offset);
    o.setSize(b.size);
    o.setChecksum(b.checksum);
    o.setDevice(DeviceOf(cache, b.tier));
  }
}

using Usage = std::shared_ptr<ConnectionUsage>;

// Leases taken from a connection's usage before the work, given back on
// destruction unless LeaseImpls took them over (one each).
class LeaseHold {
 public:
  LeaseHold(Usage u, int64_t n) : u_(std::move(u)), n_(n) {}
  LeaseHold(LeaseHold&& o) noexcept : u_(std::move(o.u_)), n_(o.n_) { o.n_ = 0; }
  ~LeaseHold() {
    if (u_ && n_ > 0) u_->GiveLeases(n_);
  }
  Usage TakeOne() {
    --n_;
    return u_;
  }

 private:
  Usage u_;
  int64_t n_;
};

class LeaseImpl final : public rpc::Lease::Server {
 public:
  // Takes over one lease the caller took from `usage` (TakeLease).
  LeaseImpl(Lease lease, RpcMetrics* m, Usage usage)
      : lease_(std::move(lease)), m_(m), usage_(std::move(usage)) {
    ++m_->leases_open;
  }
  ~LeaseImpl() noexcept(false) {  // lease_ releases its pins
    --m_->leases_open;
    usage_->GiveLeases(1);
  }

 protected:
  kj::Promise<void> release(ReleaseContext) override {
    lease_.Release();
    return kj::READY_NOW;
  }

 private:
  Lease lease_;
  RpcMetrics* m_;
  Usage usage_;
};

// InvalidArgument for a commit that dropped blocks whose bytes did not have
// their checksum (--verify-checksums commit); the others are stored.
void ThrowIfMismatched(const Reservation& r, RpcMetrics* m) {
  if (r.checksum_mismatches() == 0) return;
  m->commit_checksum_refusals.fetch_add(1, std::memory_order_relaxed);
  Throw(Status::InvalidArgument(
      std::to_string(r.checksum_mismatches()) + " of the reserved blocks (the first: key " +
      std::to_string(r.first_checksum_mismatch()) +
      ") do not have the checksum committed for them: those were dropped, the others stored"));
}

class StoreTxnImpl final : public rpc::StoreTxn::Server {
 public:
  // Takes over a transaction of `blocks` blocks the caller took from `usage`.
  StoreTxnImpl(Cache* cache, Reservation r, RpcMetrics* m, Usage usage, int64_t blocks)
      : cache_(cache), res_(std::move(r)), m_(m), usage_(std::move(usage)), blocks_(blocks) {
    ++m_->txns_open;
  }
  ~StoreTxnImpl() noexcept(false) {  // res_ aborts what is pending
    --m_->txns_open;
    Done();
  }

 protected:
  kj::Promise<void> commit(CommitContext ctx) override {
    RpcTimer timer(m_, RpcMethod::kCommit);
    auto sums = ctx.getParams().getChecksums();
    if (res_.done()) Throw(Status::InvalidArgument("transaction is already committed or aborted"));
    if (sums.size() != res_.blocks().size())
      Throw(Status::InvalidArgument(std::to_string(sums.size()) + " checksums for " +
                                    std::to_string(res_.blocks().size()) + " reserved keys"));
    std::vector<uint64_t> v = ToVector<uint64_t>(sums);
    KJ_DEFER(if (res_.done()) Done());
    if (!cache_->durable_commits()) {
      Status st = cache_->Commit(res_, v);
      if (!st.ok()) Throw(st);
      ThrowIfMismatched(res_, m_);
      return kj::READY_NOW;
    }
    // write-through: answer once the blocks are durable on NVMe (or say why
    // not), without holding this worker's event loop meanwhile.
    struct Waker {
      std::mutex mu;
      kj::Own<kj::CrossThreadPromiseFulfiller<void>> fulfiller;
      Status durable;  // set before the fulfiller fires
    };
    auto paf = kj::newPromiseAndCrossThreadFulfiller<void>();
    auto waker = std::make_shared<Waker>();
    waker->fulfiller = kj::mv(paf.fulfiller);
    Status st = cache_->Commit(res_, v, [waker](Status s) {
      std::lock_guard<std::mutex> l(waker->mu);
      waker->durable = std::move(s);
      if (waker->fulfiller) waker->fulfiller->fulfill();
    });
    if (!st.ok()) Throw(st);
    // If the call is cancelled (client gone), forget the fulfiller first.
    auto guard = kj::defer([waker] {
      std::lock_guard<std::mutex> l(waker->mu);
      waker->fulfiller = nullptr;
    });
    return paf.promise.attach(kj::mv(guard)).then([this, waker] {
      Status durable;
      {
        std::lock_guard<std::mutex> l(waker->mu);
        durable = waker->durable;
      }
      ThrowIfMismatched(res_, m_);
      if (!durable.ok()) Throw(durable);
    });
  }

  kj::Promise<void> abort(AbortContext) override {
    RpcTimer timer(m_, RpcMethod::kAbort);
    cache_->Abort(res_);
    Done();
    return kj::READY_NOW;
  }

 private:
  // The transaction no longer holds uncommitted blocks.
  void Done() {
    if (counted_) usage_->GiveTxn(blocks_);
    counted_ = false;
  }

  Cache* cache_;
  Reservation res_;
  RpcMetrics* m_;
  Usage usage_;
  int64_t blocks_;
  bool counted_ = true;
};

class NamespaceImpl final : public rpc::Namespace::Server {
 public:
  // Takes over one hold of `id` (OpenNamespace(spec, true)): the namespace
  // is not reclaimed while a client holds this capability.
  NamespaceImpl(const RpcService* svc, NamespaceId id, const NamespaceSpec& spec, int tenant,
                Usage usage)
      : svc_(svc), id_(id), tenant_(tenant), hasher_(spec), block_bytes_(spec.layout.BlockBytes()),
        usage_(std::move(usage)) {
    usage_->AddNamespace(1);
  }
  ~NamespaceImpl() {
    svc_->cache()->CloseNamespace(id_);
    usage_->AddNamespace(-1);
  }

 protected:
  kj::Promise<void> acquire(AcquireContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kAcquire);
    svc_->RefuseIfDraining("acquire");
    auto keys_in = ctx.getParams().getKeys();
    CheckKeyCount(keys_in.size(), "acquire");
    if (Status st = usage_->TakeLeases(1); !st.ok()) Throw(st);
    auto hold = std::make_shared<LeaseHold>(usage_, 1);  // until a LeaseImpl holds it
    auto keys = KeysFromRpc(keys_in);
    auto lease =
        svc_->cache()->Acquire(id_, keys, svc_->PromoteTier(tenant_, ctx.getParams().getDevice()));
    if (!lease.ok()) Throw(lease.status());
    if (lease->ready()) {
      FillAcquire(ctx, std::move(lease).value(), *hold);
      return kj::READY_NOW;
    }
    // Blocks are being promoted from NVMe: answer when their reads are done,
    // without holding this worker's event loop meanwhile.
    auto held = std::make_shared<Lease>(std::move(lease).value());
    return WhenReady(svc_->cache(), held).then([this, ctx, held, hold]() mutable {
      FillAcquire(ctx, std::move(*held), *hold);
    });
  }

  kj::Promise<void> reserve(ReserveContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kReserve);
    svc_->RefuseIfDraining("reserve");
    auto p = ctx.getParams();
    auto keys_in = p.getKeys();
    auto sizes_in = p.getSizes();
    CheckKeyCount(keys_in.size(), "reserve");
    if (sizes_in.size() != keys_in.size())
      Throw(Status::InvalidArgument(std::to_string(keys_in.size()) + " keys but " +
                                    std::to_string(sizes_in.size()) + " sizes"));
    std::vector<uint64_t> sizes = ToVector<uint64_t>(sizes_in);
    for (size_t i = 0; i < sizes.size(); ++i)
      if (sizes[i] != block_bytes_)
        Throw(Status::InvalidArgument("sizes[" + std::to_string(i) + "] = " +
                                      std::to_string(sizes[i]) +
                                      " does not match the namespace's block size of " +
                                      std::to_string(block_bytes_)));
    StoreOptions so;
    if (p.getPriority() > kMaxPriority)
      Throw(Status::InvalidArgument("priority " + std::to_string(p.getPriority()) +
                                    " exceeds 100"));
    so.priority = p.getPriority();
    so.duration_ns = p.getDurationMs() * 1000000ull;
    if (p.getRanges().size() > svc_->options().limits.max_priority_ranges) {
      usage_->Count(Refusal::kRanges);
      Throw(Status::InvalidArgument(
          std::to_string(p.getRanges().size()) + " priority ranges exceed the limit of " +
          std::to_string(svc_->options().limits.max_priority_ranges) +
          " (--max-priority-ranges)"));
    }
    if (p.getRanges().size() > keys_in.size())
      Throw(Status::InvalidArgument("more priority ranges than keys"));
    for (auto r : p.getRanges())
      so.ranges.push_back(PriorityRange{r.getBegin(), r.getEnd(), r.getPriority(),
                                        r.getDurationMs() * 1000000ull});
    if (p.hasFirstParent()) so.first_parent = FromRpc(p.getFirstParent());
    if (svc_->options().store_in_hbm && p.getDevice() >= 0) {
      const HbmTierRef* ref = svc_->hbm(tenant_, p.getDevice());
      if (ref == nullptr)
        Throw(Status::InvalidArgument("no HBM tier on GPU " + std::to_string(p.getDevice())));
      so.tier = ref->id;
    }
    // At most every key reserved: taken before any work, the surplus given
    // back below.
    const int64_t asked = static_cast<int64_t>(keys_in.size());
    if (Status st = usage_->TakeTxn(asked); !st.ok()) Throw(st);
    bool taken_over = false;
    KJ_DEFER(if (!taken_over) usage_->GiveTxn(asked));
    auto keys = KeysFromRpc(keys_in);
    auto r = svc_->cache()->Reserve(id_, keys, sizes, so);
    if (!r.ok()) Throw(r.status());
    auto res = ctx.getResults();
    auto slots = res.initSlots(static_cast<unsigned>(r->blocks().size()));
    for (size_t i = 0; i < r->blocks().size(); ++i) {
      const auto& b = r->blocks()[i];
      auto o = slots[static_cast<unsigned>(i)];
      o.setOutcome(static_cast<rpc::ReserveOutcome>(b.outcome));
      o.setTier(rpcconv::TierToRpc(svc_->cache()->tier_kind(b.tier)));
      o.setOffset(b.offset);
      o.setSize(b.size);
      o.setDevice(DeviceOf(*svc_->cache(), b.tier));
    }
    if (r->reserved() > 0) {
      const int64_t reserved = static_cast<int64_t>(r->reserved());
      usage_->GiveBlocks(asked - reserved);
      taken_over = true;
      res.setTxn(kj::heap<StoreTxnImpl>(svc_->cache(), std::move(r).value(), svc_->metrics(),
                                        usage_, reserved));
    }
    return kj::READY_NOW;
  }

  kj::Promise<void> hashTokens(HashTokensContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kHashTokens);
    auto p = ctx.getParams();
    auto tokens_in = p.getTokens();
    if (tokens_in.size() > svc_->options().max_tokens_per_call)
      Throw(Status::InvalidArgument(std::to_string(tokens_in.size()) +
                                    " tokens exceed the limit of " +
                                    std::to_string(svc_->options().max_tokens_per_call)));
    std::vector<uint32_t> tokens = ToVector<uint32_t>(tokens_in);
    BlockKey prev = p.hasPrev() ? FromRpc(p.getPrev()) : BlockKey{};
    if (prev.IsZero()) prev = hasher_.seed();
    std::vector<BlockKey> keys;
    hasher_.HashFrom(prev, tokens, &keys);
    auto out = ctx.getResults().initKeys(static_cast<unsigned>(keys.size()));
    for (size_t i = 0; i < keys.size(); ++i) ToRpc(keys[i], out[static_cast<unsigned>(i)]);
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kStats);
    FillStats(*svc_->cache(), *svc_, tenant_, ctx.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> probe(ProbeContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kProbe);
    auto keys_in = ctx.getParams().getKeys();
    CheckKeyCount(keys_in.size(), "probe");
    auto tiers = svc_->cache()->Probe(id_, KeysFromRpc(keys_in));
    if (!tiers.ok()) Throw(tiers.status());
    auto out = ctx.getResults().initTiers(static_cast<unsigned>(tiers->size()));
    for (size_t i = 0; i < tiers->size(); ++i)
      out.set(static_cast<unsigned>(i), rpcconv::TierToRpc((*tiers)[i]));
    return kj::READY_NOW;
  }

 private:
  void FillAcquire(AcquireContext& ctx, Lease lease, LeaseHold& hold) {
    auto res = ctx.getResults();
    FillBlocks(*svc_->cache(), lease, res.initBlocks(static_cast<unsigned>(lease.size())));
    if (!lease.empty())
      res.setLease(kj::heap<LeaseImpl>(std::move(lease), svc_->metrics(), hold.TakeOne()));
  }

  void CheckKeyCount(size_t n, const char* what) const {
    if (n > svc_->options().max_keys_per_call)
      Throw(Status::InvalidArgument(std::string(what) + " of " + std::to_string(n) +
                                    " keys exceeds the limit of " +
                                    std::to_string(svc_->options().max_keys_per_call)));
  }

  const RpcService* svc_;
  NamespaceId id_;
  int tenant_;
  KeyHasher hasher_;
  uint64_t block_bytes_;
  Usage usage_;
};

class HostSegmentImpl final : public rpc::HostSegment::Server {
 public:
  explicit HostSegmentImpl(const HostShmTier* host) : host_(host) {}
  kj::Maybe<int> getFd() override { return host_->fd(); }

 protected:
  kj::Promise<void> bytes(BytesContext ctx) override {
    ctx.getResults().setBytes(host_->segment_bytes());
    return kj::READY_NOW;
  }

 private:
  const HostShmTier* host_;
};

class KvTierImpl final : public rpc::KvTier::Server {
 public:
  KvTierImpl(const RpcService* svc, const PeerCredentials& peer, Usage usage)
      : svc_(svc), peer_(peer), usage_(std::move(usage)) {}

 private:
  // Namespaces opened on this connection (acquireTp names them by id).
  std::unordered_set<NamespaceId> opened_;
  PeerCredentials peer_;
  // The connection's tenant, fixed by its first openNamespace; -1 before.
  int tenant_ = -1;

  [[noreturn]] void Refuse(TenantRefusal why, const std::string& msg) const {
    svc_->metrics()->Refuse(why);
    Throw(Status::PermissionDenied(msg));
  }
  // REQUIRES nothing: refuses (PermissionDenied) before a namespace is open.
  void RequireTenant(const char* method) const {
    if (tenant_ < 0)
      Refuse(TenantRefusal::kNoNamespace,
             std::string(method) +
                 ": open a namespace first (a connection is handed only its tenant's memory, "
                 "once its tenant is known)");
  }

 public:

 protected:
  kj::Promise<void> openNamespace(OpenNamespaceContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kOpenNamespace);
    NamespaceSpec spec;
    auto params = ctx.getParams();
    Status st = rpcconv::SpecFromRpc(params.getSpec(), &spec);
    if (!st.ok()) Throw(st);
    const auto token = params.getToken();
    const TenantResolver::Match m =
        svc_->resolver().Resolve(peer_, std::string_view(token.cStr(), token.size()));
    if (m.tenant < 0) {
      if (m.refusal == TenantResolver::Refusal::kBadToken)
        Refuse(TenantRefusal::kBadToken, "openNamespace: the token matches no tenant");
      Refuse(TenantRefusal::kUnknownPeer,
             "openNamespace: no tenant has this connection's uid " + std::to_string(peer_.uid) +
                 " or gid " + std::to_string(peer_.gid) + " (and no token was given)");
    }
    if (tenant_ >= 0 && m.tenant != tenant_)
      Refuse(TenantRefusal::kTenantSwitch,
             "openNamespace: this connection belongs to tenant '" +
                 svc_->resolver().name(static_cast<size_t>(tenant_)) + "', not '" +
                 svc_->resolver().name(static_cast<size_t>(m.tenant)) +
                 "' (one tenant per connection)");
    spec.tenant = svc_->resolver().name(static_cast<size_t>(m.tenant));
    auto id = svc_->cache()->OpenNamespace(spec, /*hold=*/true);
    if (!id.ok()) Throw(id.status());
    tenant_ = m.tenant;
    auto res = ctx.getResults();
    res.setNs(kj::heap<NamespaceImpl>(svc_, *id, spec, tenant_, usage_));
    res.setId(*id);
    res.setTenant(spec.tenant);
    opened_.insert(*id);
    ToRpc(NamespaceSeed(spec), res.initSeed());
    res.setBlockBytes(spec.layout.BlockBytes());
    return kj::READY_NOW;
  }

  kj::Promise<void> hostSegment(HostSegmentContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kHostSegment);
    RequireTenant("hostSegment");
    const HostShmTier* host = svc_->host(tenant_);
    if (host == nullptr) Throw(Status::Unavailable("this daemon has no host tier"));
    auto res = ctx.getResults();
    res.setSegment(kj::heap<HostSegmentImpl>(host));
    res.setBytes(host->segment_bytes());
    return kj::READY_NOW;
  }

  kj::Promise<void> stats(StatsContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kStats);
    FillStats(*svc_->cache(), *svc_, tenant_, ctx.getResults().initStats());
    return kj::READY_NOW;
  }

  kj::Promise<void> ping(PingContext) override { return kj::READY_NOW; }

  kj::Promise<void> acquireTp(AcquireTpContext ctx) override {
    RpcTimer timer(svc_->metrics(), RpcMethod::kAcquire);
    svc_->RefuseIfDraining("acquireTp");
    auto ranks = ctx.getParams().getRanks();
    if (ranks.size() == 0 || ranks.size() > svc_->options().max_tp_ranks)
      Throw(Status::InvalidArgument("acquireTp needs 1.." +
                                    std::to_string(svc_->options().max_tp_ranks) + " ranks, got " +
                                    std::to_string(ranks.size())));
    if (Status st = usage_->TakeLeases(ranks.size()); !st.ok()) Throw(st);
    auto hold = std::make_shared<LeaseHold>(usage_, ranks.size());
    auto leases = std::make_shared<std::vector<std::shared_ptr<Lease>>>();
    for (unsigned r = 0; r < ranks.size(); ++r) {
      auto rank = ranks[r];
      if (opened_.count(rank.getNamespaceId()) == 0)
        Throw(Status::NotFound("rank " + std::to_string(r) + ": namespace " +
                               std::to_string(rank.getNamespaceId()) +
                               " was not opened on this connection"));
      if (rank.getKeys().size() > svc_->options().max_keys_per_call)
        Throw(Status::InvalidArgument("rank " + std::to_string(r) + ": " +
                                      std::to_string(rank.getKeys().size()) +
                                      " keys exceed the limit of " +
                                      std::to_string(svc_->options().max_keys_per_call)));
      auto keys = KeysFromRpc(rank.getKeys());
      auto lease = svc_->cache()->Acquire(rank.getNamespaceId(), keys,
                                          svc_->PromoteTier(tenant_, rank.getDevice()));
      if (!lease.ok()) Throw(lease.status());
      leases->push_back(std::make_shared<Lease>(std::move(lease).value()));
    }
    auto all = kj::heapArrayBuilder<kj::Promise<void>>(leases->size());
    for (auto& l : *leases) all.add(WhenReady(svc_->cache(), l));
    return kj::joinPromises(all.finish()).then([this, ctx, leases, hold]() mutable {
      // A prefix is a hit only if every rank has it.
      size_t prefix = SIZE_MAX;
      for (auto& l : *leases) prefix = std::min(prefix, l->size());
      auto results = ctx.getResults();
      results.setPrefix(static_cast<uint32_t>(prefix));
      auto out = results.initResults(static_cast<unsigned>(leases->size()));
      for (size_t r = 0; r < leases->size(); ++r) {
        Lease& l = *(*leases)[r];
        l.Truncate(prefix);
        auto o = out[static_cast<unsigned>(r)];
        FillBlocks(*svc_->cache(), l, o.initBlocks(static_cast<unsigned>(l.size())));
        if (!l.empty())
          o.setLease(kj::heap<LeaseImpl>(std::move(l), svc_->metrics(), hold->TakeOne()));
      }
    });
  }

  kj::Promise<void> hbmSegment(HbmSegmentContext ctx) override {
    const int device = ctx.getParams().getDevice();
    RequireTenant("hbmSegment");
    const HbmTierRef* ref = svc_->hbm(tenant_, device);
    if (ref == nullptr)
      Throw(Status::Unavailable(device < 0 ? std::string("this daemon has no HBM tier")
                                           : "this daemon has no HBM tier on GPU " +
                                                 std::to_string(device)));
    const GpuHbmTier* hbm = ref->tier;
    auto res = ctx.getResults();
    res.setDevice(hbm->device());
    res.setIpcHandle(kj::arrayPtr(reinterpret_cast<const capnp::byte*>(hbm->ipc_handle().data()),
                                  hbm->ipc_handle().size()));
    res.setBytes(hbm->capacity_bytes());
    res.setPciBusId(hbm->pci_bus_id());
    return kj::READY_NOW;
  }

 private:
  const RpcService* svc_;
  Usage usage_;
};

}  // namespace

void RpcService::RefuseIfDraining(const char* method) const {
  if (draining())
    Throw(Status::Unavailable(std::string(method) +
                              ": kvtierd is draining (shutting down): no new leases or stores"));
}

capnp::Capability::Client RpcService::NewBootstrap(const PeerCredentials& peer,
                                                   std::shared_ptr<ConnectionUsage> usage) {
  return kj::heap<KvTierImpl>(this, peer, std::move(usage));
}

}  // namespace kvtier
