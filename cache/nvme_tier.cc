#include "cache/nvme_tier.h"

#include "tiers/checksum.h"

#include <sys/uio.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "cache/lease_state.h"

namespace kvtier {

namespace {
constexpr uint8_t kReady = static_cast<uint8_t>(BlockState::kReady);
constexpr uint8_t kLoading = static_cast<uint8_t>(BlockState::kLoading);

ExtentTag TagOf(const BlockKey& k) {
  ExtentTag t;
  std::memcpy(t.data(), &k.lo, 8);
  std::memcpy(t.data() + 8, &k.hi, 8);
  return t;
}
}  // namespace

Result<std::unique_ptr<NvmeTier>> NvmeTier::Open(Cache* cache, NvmeTierOptions options) {
  std::unique_ptr<NvmeTier> t(new NvmeTier(cache, std::move(options)));
  NvmeTierOptions& o = t->options_;
  if (o.high_watermark <= 0 || o.high_watermark > 1)
    return Status::InvalidArgument("NVMe high watermark must be in (0, 1]");
  if (o.max_writes_in_flight == 0) return Status::InvalidArgument("NVMe writes in flight must be > 0");
  PolicyOptions po;
  po.clock = cache->clock_;
  auto pol = NewEvictionPolicy(o.policy, po);
  if (!pol.ok()) return pol.status();
  t->policy_ = std::move(pol).value();
  auto adm = NewAdmissionPolicy(o.admission);
  if (!adm.ok()) return adm.status();
  t->admission_ = std::move(adm).value();
  o.store.max_ops = std::max<uint32_t>(o.store.max_ops, 8);
  auto store = NvmeStore::Open(o.store, std::move(o.queue));
  if (!store.ok()) return store.status();
  t->store_ = std::move(store).value();
  NvmeIndexOptions io;
  io.path = o.index_path;
  io.sync = o.sync_index;
  // A full data-dir file system must not keep the tier (or the daemon) from
  // starting: the index then comes up read-only, the tier degraded.
  io.read_only_fallback = true;
  io.log = cache->options_.log_warning;
  // A damaged index (RocksDB reports Corruption at open or while it is
  // read) is set aside and rebuilt from the extents' headers; so is one
  // whose rebuild an earlier run did not finish (its marker is still there).
  std::string damage;
  if (std::filesystem::exists(t->RebuildMarker()))
    damage = "an earlier rebuild of the index did not finish";
  if (damage.empty()) {
    auto index = NvmeIndex::Open(io);
    if (index.ok()) {
      t->index_ = std::move(index).value();
    } else if (index.status().IsCorruption()) {
      damage = index.status().ToString();
    } else {
      return index.status();
    }
  }
  // Reads land in, and writes leave from, the host segments (one per
  // tenant): register them.
  std::vector<iovec> segs;
  for (size_t i = 0; i < cache->num_tiers(); ++i) {
    if (!cache->is_host(static_cast<TierId>(i))) continue;
    Tier& host = cache->tier(static_cast<TierId>(i));
    if (uint8_t* base = host.Address(Slot{}); base != nullptr)
      segs.push_back(iovec{base, host.capacity_bytes()});
  }
  if (!segs.empty()) {
    Status st = t->store_->RegisterBuffers(segs);
    if (!st.ok()) t->NoteError(Status(st.code(), "host segment not registered with io_uring (plain I/O used): " + st.message()));
  }
  if (damage.empty()) {
    if (t->index_->failed())
      t->NoteError(Status::IOError("index not writable, NVMe writes stopped until it is: " +
                                   t->index_->failure()));
    Status st = t->Recover();
    if (st.IsCorruption()) {
      damage = st.ToString();
      t->index_.reset();
    } else if (!st.ok()) {
      return st;
    }
  }
  if (!damage.empty()) KVTIER_RETURN_IF_ERROR(t->StartRebuild(io, damage));
  t->thread_ = std::thread([p = t.get()] { p->Run(); });
  return t;
}

NvmeTier::~NvmeTier() {
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    stop_ = true;
  }
  jobs_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void NvmeTier::NoteError(const Status& st) {
  uint64_t now = SteadyNowNs();
  std::string msg;
  {
    std::lock_guard<std::mutex> l(log_mu_);
    if (last_log_ns_ != 0 && now - last_log_ns_ < 10'000'000'000ull) {
      ++suppressed_;
      return;
    }
    msg = "NVMe tier: " + st.ToString();
    if (suppressed_ > 0) msg += " (" + std::to_string(suppressed_) + " more errors in the last burst)";
    suppressed_ = 0;
    last_log_ns_ = now;
  }
  if (cache_->options_.log_warning) {
    cache_->options_.log_warning(msg);
  } else {
    std::fprintf(stderr, "kvtier: %s\n", msg.c_str());
  }
}

void NvmeTier::EnqueueWrite(BlockId id, std::shared_ptr<NvmeDurableWait> wait) {
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    jobs_.push_back(Job{Job::kWrite, id, nullptr, 0, Slot{}, NvmeExtent{}, std::move(wait)});
  }
  jobs_cv_.notify_one();
}

void NvmeTier::BecomeResidentLocked(BlockEntry& e) {
  if (cache_->is_host(e.tier)) host_clean_bytes_[e.tier] -= e.size;
  e.tier = kNvmeTier;
  e.offset = 0;
  e.size_class = 0;
}

void NvmeTier::StartPromotion(const std::shared_ptr<Lease::State>& st, size_t i) {
  BlockId id = st->blocks[i].id;
  BlockEntry& e = cache_->index_.entry(id);
  NvmeExtent extent;
  {
    std::lock_guard<std::mutex> l(mu_);
    auto it = extents_.find(id);
    if (it != extents_.end()) extent = it->second;
  }
  Cache::TierState& ts = *cache_->tiers_[cache_->HostTierOfBlock(e)];
  Result<Slot> slot = Status::Internal("no extent");
  if (extent.payload_bytes != 0) {
    std::lock_guard<std::mutex> l(ts.mu);
    slot = cache_->AllocateLocked(ts, e.size, id);
  }
  if (!slot.ok()) {
    // No room in the host tier (or no extent): the block stays on NVMe and
    // the prefix ends here.
    KeepOnNvme(st, i, id);
    return;
  }
  {
    std::lock_guard<std::mutex> l(jobs_mu_);
    jobs_.push_back(Job{Job::kRead, id, st, i, *slot, extent, nullptr});
  }
  jobs_cv_.notify_one();
}

void NvmeTier::KeepOnNvme(const std::shared_ptr<Lease::State>& st, size_t i, BlockId id) {
  BlockEntry& e = cache_->index_.entry(id);
  {
    std::lock_guard<std::mutex> l(cache_->index_.MutexFor(e.key));
    e.state.store(kReady, std::memory_order_release);
  }
  // The lease drops the block (its prefix ends before it), so the pin it
  // took is released here; left, it would pin the block for good.
  const BlockId ids[1] = {id};
  cache_->ReleaseIds(ids);
  CompleteLeaseBlock(st, i, false, kNvmeTier, 0);
}

void NvmeTier::CompleteLeaseBlock(const std::shared_ptr<Lease::State>& st, size_t i, bool ok,
                                  TierId tier, uint64_t offset) {
  std::function<void()> cb;
  std::vector<BlockId> unpin;
  {
    std::lock_guard<std::mutex> l(st->mu);
    if (ok) {
      st->blocks[i].tier = tier;
      st->blocks[i].offset = offset;
    } else {
      st->failed[i] = true;
    }
    if (--st->pending > 0) return;
    // Last promotion: cut the prefix at the first failure.
    size_t cut = st->blocks.size();
    for (size_t j = 0; j < st->blocks.size(); ++j)
      if (st->failed[j]) {
        cut = j;
        break;
      }
    size_t from = st->released ? 0 : cut;
    for (size_t j = from; j < st->blocks.size(); ++j)
      if (!st->failed[j]) unpin.push_back(st->blocks[j].id);
    st->blocks.resize(st->released ? 0 : cut);
    cb = std::move(st->on_ready);
    st->on_ready = nullptr;
  }
  if (!unpin.empty()) cache_->ReleaseIds(unpin);
  st->cv.notify_all();
  if (cb) cb();
}

bool NvmeTier::DropBlock(BlockId id) {
  std::lock_guard<std::mutex> l(mu_);
  return DropBlockLocked(id);
}

bool NvmeTier::DropBlockLocked(BlockId id) {
  if (extents_.find(id) == extents_.end()) return false;  // no NVMe copy (yet)
  BlockIndex& index = cache_->index_;
  BlockEntry& e = index.entry(id);
  bool erase = false;
  {
    std::lock_guard<std::mutex> l(index.MutexFor(e.key));
    if (e.pins.load() != 0 || e.state.load() != kReady) return false;
    if (e.tier == kNvmeTier) {
      index.EraseLocked(id);
      erase = true;
    } else {
      e.flags.fetch_and(static_cast<uint8_t>(~kFlagOnNvme));  // the memory copy stays
      if (cache_->is_host(e.tier)) host_clean_bytes_[e.tier] -= e.size;
    }
  }
  evicted_bytes_ += e.size;
  ++evictions_;
  DropExtentLocked(id);  // its record is deleted before the namespace forgets the block
  cache_->namespaces_->AddEviction(e.ns);
  if (erase) {
    cache_->namespaces_->RemoveBlock(e.ns, e.size);
    index.FreeId(id);
  }
  return true;
}

bool NvmeTier::RegionReleasableLocked(uint32_t r) {
  const NvmeExtentAllocator& a = store_->allocator();
  const uint64_t slot = a.RegionSlotBytes(r);
  if (slot == 0) return false;
  uint32_t owned = 0;
  for (uint32_t i = 0; i < a.RegionSlots(r); ++i) {
    auto it = by_offset_.find(a.RegionStart(r) + i * slot);
    if (it == by_offset_.end()) continue;
    const BlockEntry& e = cache_->index_.entry(it->second);
    if (e.pins.load(std::memory_order_acquire) != 0 ||
        e.state.load(std::memory_order_acquire) != kReady)
      return false;
    ++owned;
  }
  return owned == a.RegionUsed(r);  // else a write into it is in flight
}

bool NvmeTier::EvictForLocked(uint64_t payload_bytes) {
  BlockIndex& index = cache_->index_;
  const NvmeExtentAllocator& a = store_->allocator();
  const uint64_t want = store_->ExtentBytes(payload_bytes);
  const bool large = want > a.region_bytes();
  std::unordered_map<uint32_t, bool> releasable;  // memo for this call
  BlockId victim = policy_->PickVictim([&](BlockId v) {
    const BlockEntry& e = index.entry(v);
    if (e.pins.load(std::memory_order_acquire) != 0 ||
        e.state.load(std::memory_order_acquire) != kReady)
      return false;
    auto it = extents_.find(v);
    if (it == extents_.end()) return false;
    const uint32_t r = a.RegionOf(it->second.offset);
    const uint64_t slot = a.RegionSlotBytes(r);
    // Large wanted extents need whole free regions; the same slot size, a
    // run, or a region this frees all serve.
    if (slot == 0 || (!large && slot == want) || a.RegionUsed(r) == 1) return true;
    auto m = releasable.find(r);
    if (m == releasable.end()) m = releasable.emplace(r, RegionReleasableLocked(r)).first;
    return m->second;
  });
  if (victim == kNoBlock) return false;
  const uint32_t r = a.RegionOf(extents_[victim].offset);
  const uint64_t slot = a.RegionSlotBytes(r);
  if (slot == 0 || (!large && slot == want) || a.RegionUsed(r) == 1) {
    (void)DropBlockLocked(victim);
    return true;  // or it became pinned: the caller tries again
  }
  // Release the victim's whole region for the wanted size.
  std::vector<BlockId> owners;
  for (uint32_t i = 0; i < a.RegionSlots(r); ++i) {
    auto it = by_offset_.find(a.RegionStart(r) + i * slot);
    if (it != by_offset_.end()) owners.push_back(it->second);
  }
  for (BlockId id : owners) (void)DropBlockLocked(id);
  if (a.RegionSlotBytes(r) == 0) ++regions_moved_;
  return true;
}

void NvmeTier::DropExtentLocked(BlockId id) {
  auto it = extents_.find(id);
  if (it == extents_.end()) return;
  const NvmeExtent x = it->second;
  CountExtentLocked(id, -static_cast<int64_t>(x.payload_bytes));
  by_offset_.erase(x.offset);
  extents_.erase(it);
  policy_->Remove(id);
  ForgetExtentLocked(x, /*free_after=*/true);
}

bool NvmeTier::PrepareJob(Job& job) {
  BlockIndex& index = cache_->index_;
  uint64_t ud = next_user_data_++;
  if (job.kind == Job::kRead) {
    uint8_t* buf = cache_->tier(cache_->HostTierOfBlock(cache_->index_.entry(job.id))).Address(job.slot);
    Status st = store_->PrepareRead(job.extent, buf, RoundUpToBlock(job.extent.payload_bytes), ud);
    if (st.code() == StatusCode::kRetry) return false;
    if (!st.ok()) {
      FinishRead(job, st);
      return true;
    }
    in_flight_.emplace(ud, std::move(job));
    return true;
  }
  // Write: the block is READY in the host tier with kFlagDemoting set, so its
  // slot cannot be evicted or reused until the flag is cleared.
  BlockEntry& e = index.entry(job.id);
  auto clear = [&](uint8_t set) {
    std::lock_guard<std::mutex> l(index.MutexFor(e.key));
    e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
    if (set) e.flags.fetch_or(set);
  };
  if (!WritesAllowed()) {
    clear(0);
    Settle(job.wait, Status::Unavailable(Stats().degraded.empty() ? "NVMe writes stopped"
                                                                  : Stats().degraded));
    return true;
  }
  // A tenant's NVMe quota: past it, the block stays in memory only.
  if (Cache::TenantState& ten = *cache_->tenants_[e.tenant];
      ten.nvme_quota != 0 &&
      static_cast<uint64_t>(std::max<int64_t>(0, ten.nvme_bytes.load() + ten.nvme_writing.load())) +
              e.size >
          ten.nvme_quota) {
    ten.nvme_declined.fetch_add(1, std::memory_order_relaxed);
    clear(kFlagNvmeDeclined);
    Settle(job.wait, Status::ResourceExhausted("tenant '" + ten.name + "' is at its NVMe quota of " +
                                               std::to_string(ten.nvme_quota) + " bytes"));
    return true;
  }
  // The bytes must have the checksum their writer committed: if not, the
  // writer committed a wrong one (or rewrote the block since), and the
  // block is dropped as the client's fault before it can ever be reported
  // as media corruption after a round trip through NVMe.
  if (checksum::Sum64(cache_->tier(e.tier).Address(e.slot()), e.size) != e.checksum) {
    cache_->NoteClientChecksumMismatch(e, "checked before its first NVMe write");
    cache_->DropClientMismatch(job.id);
    Settle(job.wait, Status::InvalidArgument(
                         "a block was committed with a checksum that does not match its bytes "
                         "(client checksum mismatch): dropped"));
    return true;
  }
  NvmeWriteRequest req;
  req.tag = TagOf(e.key);
  req.ns = e.ns;
  req.buf = cache_->tier(e.tier).Address(e.slot());
  req.payload_bytes = e.size;
  req.checksum = e.checksum;
  req.user_data = ud;
  for (int attempt = 0;; ++attempt) {
    Status st = store_->PrepareWrite(req);
    if (st.ok()) break;
    if (st.code() == StatusCode::kRetry) return false;
    if (st.IsResourceExhausted() && attempt < 64) {
      std::lock_guard<std::mutex> l(mu_);
      if (EvictForLocked(e.size)) continue;
    }
    if (!st.IsResourceExhausted()) NoteError(st);
    clear(0);
    Settle(job.wait, st);
    return true;
  }
  ++writes_in_flight_;
  writing_bytes_[e.tier] += e.size;
  cache_->tenants_[e.tenant]->nvme_writing += e.size;
  job.extent.payload_bytes = e.size;
  in_flight_.emplace(ud, std::move(job));
  return true;
}

void NvmeTier::HandleCompletion(const NvmeCompletion& c) {
  auto it = in_flight_.find(c.user_data);
  if (it == in_flight_.end()) return;  // stale completion: never data
  Job job = std::move(it->second);
  in_flight_.erase(it);
  BlockIndex& index = cache_->index_;
  if (job.kind == Job::kRead) {
    FinishRead(job, c.status);
    return;
  }
  --writes_in_flight_;
  BlockEntry& e = index.entry(job.id);
  writing_bytes_[e.tier] -= e.size;
  cache_->tenants_[e.tenant]->nvme_writing -= e.size;
  if (!c.status.ok()) {
    ++io_errors_;
    NoteError(c.status);
    {
      std::lock_guard<std::mutex> l(index.MutexFor(e.key));
      e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
    }
    Settle(job.wait, c.status);
    return;
  }
  // Data is durable: now the index record, then the block may rely on it.
  Status st = index_->Put(c.extent.tag, ToRecord(c.extent, e.priority));
  std::lock_guard<std::mutex> l(mu_);
  if (!st.ok()) {
    // The index failed (a full data dir): writes stop until ProbeIndex()
    // reopens it. The failed Put may still be in the index's log, so the
    // extent keeps its space until a delete of its record lands.
    ++io_errors_;
    NoteError(Status(st.code(), "index write failed, NVMe writes stopped: " + st.message()));
    pending_.push_back(Unindexed{c.extent, true});
    {
      std::lock_guard<std::mutex> sl(index.MutexFor(e.key));
      e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
    }
    Settle(job.wait, st);
    return;
  }
  extents_[job.id] = c.extent;
  by_offset_[c.extent.offset] = job.id;
  CountExtentLocked(job.id, static_cast<int64_t>(c.extent.payload_bytes));
  policy_->Track(job.id, cache_->MetaOf(e));
  {
    std::lock_guard<std::mutex> sl(index.MutexFor(e.key));
    e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
    e.flags.fetch_or(kFlagOnNvme);
  }
  host_clean_bytes_[e.tier] += e.size;
  ++demotions_;
  if (job.wait) durable_pending_.push_back(std::move(job.wait));
}

void NvmeTier::FinishRead(Job& job, const Status& st) {
  BlockIndex& index = cache_->index_;
  BlockEntry& e = index.entry(job.id);
  const TierId host_tier = cache_->HostTierOfBlock(e);
  Cache::TierState& ts = *cache_->tiers_[host_tier];
  if (st.ok()) {
    {
      std::lock_guard<std::mutex> l(index.MutexFor(e.key));
      e.tier = host_tier;
      e.offset = job.slot.offset;
      e.size_class = static_cast<uint16_t>(job.slot.size_class);
      cache_->RecordInHost(e);
      e.state.store(kReady, std::memory_order_release);
    }
    {
      std::lock_guard<std::mutex> l(ts.mu);
      ts.policy->Track(job.id, cache_->MetaOf(e));
      ++ts.blocks;
      ts.bytes_in += e.size;
    }
    host_clean_bytes_[e.tier] += e.size;
    ++promotions_;
    CompleteLeaseBlock(job.lease, job.lease_index, true, e.tier, e.offset);
    return;
  }
  if (!st.IsCorruption()) {
    // An I/O error proves nothing about the block's bytes (a transient EIO
    // would otherwise cost the record of an intact block): read it again, a
    // few times, into the same slot; then a miss now, and the block stays on
    // NVMe for the next lookup.
    ++io_errors_;
    if (job.attempts < kReadRetries) {
      ++job.attempts;
      std::lock_guard<std::mutex> l(jobs_mu_);
      jobs_.push_front(std::move(job));
      return;
    }
    NoteError(Status(st.code(), "block " + e.key.ToHex() + " not promoted: " + st.message()));
    {
      std::lock_guard<std::mutex> l(ts.mu);
      ts.tier->Free(job.slot);
    }
    KeepOnNvme(job.lease, job.lease_index, job.id);
    return;
  }
  // Corruption (checksum or header mismatch, short read): a miss, counted
  // and quarantined.
  ++checksum_failures_;
  NoteError(Status(st.code(), "block " + e.key.ToHex() + " dropped: " + st.message()));
  {
    std::lock_guard<std::mutex> l(mu_);
    DropExtentLocked(job.id);
  }
  {
    std::lock_guard<std::mutex> l(index.MutexFor(e.key));
    index.EraseLocked(job.id);
  }
  {
    std::lock_guard<std::mutex> l(ts.mu);
    ts.tier->Free(job.slot);
  }
  CompleteLeaseBlock(job.lease, job.lease_index, false, kNvmeTier, 0);
  cache_->namespaces_->RemoveBlock(e.ns, e.size);
  index.FreeId(job.id);
}

void NvmeTier::Clean() {
  if (options_.write_through || !WritesAllowed()) return;
  for (size_t t = 0; t < cache_->num_tiers(); ++t)
    if (cache_->is_host(static_cast<TierId>(t))) CleanTier(static_cast<TierId>(t));
}

void NvmeTier::CountExtentLocked(BlockId id, int64_t bytes) {
  used_payload_bytes_ += bytes;
  const uint8_t tenant = cache_->index_.entry(id).tenant;
  if (tenant < cache_->tenants_.size()) cache_->tenants_[tenant]->nvme_bytes += bytes;
}

void NvmeTier::CleanTier(TierId host) {
  Cache::TierState& ts = *cache_->tiers_[host];
  BlockIndex& index = cache_->index_;
  std::vector<BlockId> picked;
  {
    std::lock_guard<std::mutex> l(ts.mu);
    // Keep free + clean + being-written at (1 - high watermark) of the tier.
    const double cap = static_cast<double>(ts.tier->capacity_bytes());
    double need = (1.0 - options_.high_watermark) * cap -
                  (cap - static_cast<double>(ts.tier->used_bytes())) -
                  static_cast<double>(host_clean_bytes_[host].load()) -
                  static_cast<double>(writing_bytes_[host].load());
    if (need <= 0) return;
    uint32_t budget = options_.max_writes_in_flight > writes_in_flight_
                          ? options_.max_writes_in_flight - writes_in_flight_
                          : 0;
    for (uint32_t n = 0; n < budget; ++n) {
      BlockId v = ts.policy->PickVictim([&](BlockId b) {
        const BlockEntry& e = index.entry(b);
        return e.state.load(std::memory_order_acquire) == kReady &&
               (e.flags.load(std::memory_order_acquire) &
                (kFlagOnNvme | kFlagDemoting | kFlagNvmeDeclined)) == 0;
      });
      if (v == kNoBlock) break;
      BlockEntry& e = index.entry(v);
      bool admit;
      {
        std::lock_guard<std::mutex> ml(mu_);
        admit = admission_->Admit(e.key.lo);
      }
      std::lock_guard<std::mutex> sl(index.MutexFor(e.key));
      if (e.state.load() != kReady) continue;
      if (!admit) {
        e.flags.fetch_or(kFlagNvmeDeclined);
        ++declined_;
        continue;
      }
      e.flags.fetch_or(kFlagDemoting);
      picked.push_back(v);
      need -= e.size;
      if (need <= 0) break;
    }
  }
  if (picked.empty()) return;
  std::lock_guard<std::mutex> l(jobs_mu_);
  for (BlockId id : picked) jobs_.push_back(Job{Job::kWrite, id, nullptr, 0, Slot{}, NvmeExtent{}, nullptr});
}

void NvmeTier::Run() {
  std::deque<Job> local;
  std::vector<NvmeCompletion> done(64);
  uint64_t clean_seen = 0;
  bool rebuild_waiting = false;  // the rebuild is over its read budget for now
  for (;;) {
    bool stopping;
    uint64_t pass_for = 0;
    {
      std::unique_lock<std::mutex> l(jobs_mu_);
      bool idle = local.empty() && in_flight_.empty() && jobs_.empty();
      if (idle) {
        // Idle after a write-back pass that queued nothing: drains are done.
        clean_done_ = clean_seen;
        busy_ = false;
        idle_cv_.notify_all();
        // Wake for jobs, drains, shutdown, and periodically for write-back.
        // While the index is rebuilt, the loop runs on (rate-limited steps).
        if (!rebuilding_.load(std::memory_order_relaxed) || rebuild_waiting)
          jobs_cv_.wait_for(l, std::chrono::milliseconds(20), [&] {
            return stop_ || !jobs_.empty() || clean_requests_ > clean_done_;
          });
      }
      pass_for = clean_requests_;
      stopping = stop_;
      if (stopping && jobs_.empty() && local.empty() && in_flight_.empty()) break;
      // Still idle (a rebuild step or a probe is all there is to do): a
      // Drain() may return meanwhile.
      if (!idle || !jobs_.empty() || pass_for > clean_done_) busy_ = true;
      while (!jobs_.empty()) {
        local.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      }
    }
    while (!local.empty()) {
      if (!PrepareJob(local.front())) break;  // store busy: after completions
      local.pop_front();
    }
    if (!in_flight_.empty()) {
      auto n = store_->Wait(done, 1);
      if (n.ok()) {
        for (size_t i = 0; i < *n; ++i) HandleCompletion(done[i]);
      } else {
        NoteError(n.status());
      }
    }
    if (!durable_pending_.empty()) {
      // One flush of the device's cache and one fsync of the index log for
      // every write-through commit whose writes completed in this round.
      Status st = store_->Sync();
      if (st.ok()) st = index_->Sync();
      if (!st.ok()) NoteError(st);
      for (const auto& w : durable_pending_) Settle(w, st);
      durable_pending_.clear();
    }
    if (!stopping) {
      ProbeIndex();
      Clean();
      rebuild_waiting = false;
      if (rebuilding_.load(std::memory_order_relaxed) && in_flight_.empty())
        rebuild_waiting = !RebuildStep();
    }
    clean_seen = pass_for;
  }
}

void NvmeTier::Drain() {
  std::unique_lock<std::mutex> l(jobs_mu_);
  const uint64_t target = ++clean_requests_;
  jobs_cv_.notify_all();
  idle_cv_.wait(l, [&] { return clean_done_ >= target && !busy_ && jobs_.empty(); });
}

TierStats NvmeTier::Stats() const {
  NvmeStoreStats s = store_->stats();
  TierStats t;
  t.name = "nvme";
  t.capacity_bytes = s.capacity_bytes;
  t.used_bytes = s.used_bytes;
  {
    std::lock_guard<std::mutex> l(mu_);
    t.blocks = extents_.size();
    t.regions_moved = regions_moved_;
    t.policy_memory = policy_->MemoryUsage();
  }
  t.hits = promotions_.load();
  t.bytes_in = s.bytes_written;
  t.bytes_out = s.bytes_read;
  t.evictions = evictions_.load();
  t.evicted_bytes = evicted_bytes_.load();
  t.promotions = promotions_.load();
  t.demotions = demotions_.load();
  t.io_errors = io_errors_.load();
  t.checksum_failures = checksum_failures_.load();
  t.recovered = recovered_.load();
  t.recovery_dropped = recovery_dropped_.load();
  t.index_ok = !index_->failed();
  t.index_rebuilding = rebuilding_.load(std::memory_order_acquire);
  t.admitting = store_->admitting() && t.index_ok && !t.index_rebuilding;
  if (t.index_rebuilding)
    t.degraded = "index rebuilding from the extents' headers (" +
                 std::to_string(rebuild_scanned_.load(std::memory_order_relaxed) >> 20) + " of " +
                 std::to_string((store_->data_end() - store_->data_begin()) >> 20) +
                 " MiB scanned): writes stopped until it is done";
  else if (!t.index_ok)
    t.degraded = "index not writable (" + index_->failure() +
                 "): writes stopped, reads go on, probing to resume";
  else if (!store_->admitting())
    t.degraded = "writes stopped after a device error, probing to resume";
  return t;
}

}  // namespace kvtier
