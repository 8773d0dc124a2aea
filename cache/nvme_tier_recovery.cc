// NvmeTier: restart, recovery and faults — recovery from the index, the
// rebuild of a damaged index from the extents' headers, the index's failure
// state and its probe, durable (write-through) commits and the shutdown
// flush. The steady-state paths (writes, promotions, write-back) are in
// cache/nvme_tier.cc; the contracts in cache/nvme_tier.h.
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <filesystem>

#include "cache/nvme_tier.h"

namespace kvtier {

namespace {
constexpr uint8_t kReady = static_cast<uint8_t>(BlockState::kReady);

BlockKey KeyOf(const ExtentTag& t) {
  BlockKey k;
  std::memcpy(&k.lo, t.data(), 8);
  std::memcpy(&k.hi, t.data() + 8, 8);
  return k;
}
}  // namespace

Status NvmeTier::Recover() {
  std::vector<ExtentTag> tags;
  std::vector<NvmeIndexRecord> records;
  auto scan = index_->ForEach([&](const ExtentTag& tag, const NvmeIndexRecord& r) {
    tags.push_back(tag);
    records.push_back(r);
    return Status::OK();
  });
  if (!scan.ok()) return scan.status();
  std::vector<NvmeExtent> extents;
  for (size_t i = 0; i < tags.size(); ++i) extents.push_back(ToExtent(tags[i], records[i]));
  std::vector<Status> results(extents.size());
  KVTIER_RETURN_IF_ERROR(store_->RecoverExtents(extents, results));
  uint64_t dropped = scan->malformed;
  for (size_t i = 0; i < extents.size(); ++i) {
    const NvmeExtent& x = extents[i];
    if (!results[i].ok() || !AdoptExtent(x, records[i].priority)) {
      std::lock_guard<std::mutex> l(mu_);
      ForgetExtentLocked(x, /*free_after=*/results[i].ok());
      ++dropped;
    }
  }
  recovery_dropped_ = dropped;
  if (dropped > 0 || recovered_ > 0) {
    char buf[160];
    std::snprintf(buf, sizeof(buf), "NVMe tier recovered %lu blocks, dropped %lu index entries",
                  static_cast<unsigned long>(recovered_.load()), static_cast<unsigned long>(dropped));
    if (dropped > 0 && cache_->options_.log_warning) {
      cache_->options_.log_warning(buf);
    } else if (cache_->options_.log_info) {
      cache_->options_.log_info(buf);
    }
  }
  return Status::OK();
}

bool NvmeTier::AdoptExtent(const NvmeExtent& x, uint8_t priority) {
  if (x.payload_bytes > 0xFFFFFFFFull) return false;
  BlockIndex& index = cache_->index_;
  const BlockKey key = KeyOf(x.tag);
  // Lock order: nvme mutex, then the shard: nobody sees the block READY on
  // NVMe before its extent is known here.
  std::lock_guard<std::mutex> ml(mu_);
  BlockId id;
  {
    std::lock_guard<std::mutex> l(index.MutexFor(key));
    if (BlockId found = index.FindLocked(key); found != kNoBlock) {
      // Re-adopted from a persistent host segment: the NVMe copy is its
      // clean copy. Anything else (a duplicate, a block stored meanwhile)
      // keeps no second copy.
      BlockEntry& e = index.entry(found);
      if (!cache_->is_host(e.tier) || e.state.load() != kReady ||
          (e.flags.load() & (kFlagOnNvme | kFlagDemoting)) != 0 || e.size != x.payload_bytes ||
          e.checksum != x.checksum || extents_.count(found) != 0)
        return false;
      e.flags.fetch_or(kFlagOnNvme);
      extents_[found] = x;
      by_offset_[x.offset] = found;
      CountExtentLocked(found, static_cast<int64_t>(x.payload_bytes));
      policy_->Track(found, cache_->MetaOf(e));
      host_clean_bytes_[e.tier] += e.size;
      ++recovered_;
      return true;
    }
    // A record naming a reclaimed namespace (its deletion was lost in a
    // crash) is dropped: its id may be reused by another namespace.
    if (!cache_->options_.namespace_file.empty() && !cache_->namespaces_->Live(x.ns)) return false;
    // A block of a tenant no longer configured is dropped with its record.
    const uint8_t tenant = cache_->namespaces_->Live(x.ns) ? cache_->namespaces_->Tenant(x.ns) : 0;
    if (tenant >= cache_->num_tenants()) return false;
    auto ins = index.InsertLocked(key);
    if (!ins.ok()) return false;
    id = *ins;
    BlockEntry& e = index.entry(id);
    e.ns = x.ns;
    e.tenant = tenant;
    e.size = static_cast<uint32_t>(x.payload_bytes);
    e.checksum = x.checksum;
    e.priority = priority;
    e.tier = kNvmeTier;
    e.flags.store(kFlagOnNvme, std::memory_order_relaxed);
    e.state.store(kReady, std::memory_order_release);
  }
  cache_->namespaces_->AddBlock(x.ns, x.payload_bytes);
  extents_[id] = x;
  by_offset_[x.offset] = id;
  CountExtentLocked(id, static_cast<int64_t>(x.payload_bytes));
  policy_->Track(id, cache_->MetaOf(index.entry(id)));
  ++recovered_;
  return true;
}

std::string NvmeTier::RebuildMarker() const { return options_.index_path + ".rebuilding"; }

Status NvmeTier::StartRebuild(const NvmeIndexOptions& io, const std::string& damage) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::string aside;
  if (fs::exists(options_.index_path, ec)) {
    char stamp[32];
    const std::time_t now = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&now, &tm);
    std::strftime(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ", &tm);
    aside = options_.index_path + ".damaged-" + stamp;
    for (int n = 1; fs::exists(aside, ec); ++n)
      aside = options_.index_path + ".damaged-" + stamp + "-" + std::to_string(n);
    fs::rename(options_.index_path, aside, ec);
    if (ec)
      return Status::IOError("cannot set the damaged NVMe index " + options_.index_path +
                             " aside: " + ec.message());
  }
  // The marker says "this index is being rebuilt": a start that finds it
  // (this run crashed or was stopped mid-rebuild) rebuilds again.
  if (FILE* f = std::fopen(RebuildMarker().c_str(), "w"); f != nullptr) {
    (void)fsync(fileno(f));
    std::fclose(f);
  }
  auto index = NvmeIndex::Open(io);
  if (!index.ok()) return index.status();
  index_ = std::move(index).value();
  rebuild_cursor_ = store_->data_begin();
  rebuild_started_ns_ = SteadyNowNs();
  rebuilding_.store(true, std::memory_order_release);
  if (cache_->options_.log_warning)
    cache_->options_.log_warning(
        "NVMe index damaged (" + damage + ")" +
        (aside.empty() ? std::string() : "; set aside as " + aside) +
        "; rebuilding it from the extents' headers, NVMe writes stopped until it is done");
  return Status::OK();
}

bool NvmeTier::RebuildStep() {
  const uint64_t end = store_->data_end();
  if (rebuild_cursor_ < end) {
    uint64_t step = 16ull << 20;
    if (options_.rebuild_bytes_per_second > 0) {
      const double secs = static_cast<double>(SteadyNowNs() - rebuild_started_ns_) / 1e9;
      const double allowed = secs * static_cast<double>(options_.rebuild_bytes_per_second) -
                             static_cast<double>(rebuild_cursor_ - store_->data_begin());
      if (allowed < static_cast<double>(1ull << 20)) return false;  // over budget: later
      step = std::min<uint64_t>(step, static_cast<uint64_t>(allowed));
    }
    std::vector<NvmeExtent> found;
    Status st = store_->ScanHeaders(&rebuild_cursor_, step, &found);
    if (!st.ok()) {
      ++io_errors_;
      NoteError(Status(st.code(), "index rebuild: " + st.message() + " (that part skipped)"));
    }
    for (const NvmeExtent& x : found) {
      auto [it, fresh] = rebuild_found_.try_emplace(x.tag, x);
      if (!fresh && x.generation > it->second.generation) it->second = x;  // the later write
    }
    rebuild_scanned_.store(rebuild_cursor_ - store_->data_begin(), std::memory_order_relaxed);
    return true;
  }
  FinishRebuild();
  return true;
}

void NvmeTier::FinishRebuild() {
  std::vector<NvmeExtent> xs;
  xs.reserve(rebuild_found_.size());
  for (const auto& [tag, x] : rebuild_found_) xs.push_back(x);
  rebuild_found_.clear();
  // In file order, so that of two overlapping candidates the first (the
  // one whose header the scan met outside any other extent) wins.
  std::sort(xs.begin(), xs.end(),
            [](const NvmeExtent& a, const NvmeExtent& b) { return a.offset < b.offset; });
  std::vector<Status> results(xs.size());
  Status st = store_->RecoverExtents(xs, results);
  if (!st.ok()) NoteError(Status(st.code(), "index rebuild: " + st.message()));
  uint64_t dropped = 0;
  bool indexed = true;
  std::vector<NvmeIndexUpdate> batch;
  auto flush = [&] {
    if (!batch.empty() && !index_->Apply(batch).ok()) indexed = false;
    batch.clear();
  };
  for (size_t i = 0; i < xs.size(); ++i) {
    if (!results[i].ok()) {
      ++dropped;
      continue;
    }
    // Headers carry no priority: rebuilt blocks get the default.
    if (!AdoptExtent(xs[i], kDefaultPriority)) {
      (void)store_->Free(xs[i]);
      ++dropped;
      continue;
    }
    batch.push_back(NvmeIndexUpdate{xs[i].tag, ToRecord(xs[i], kDefaultPriority)});
    if (batch.size() >= 4096) flush();
  }
  flush();
  if (indexed && index_->Sync().ok()) {
    std::error_code ec;
    std::filesystem::remove(RebuildMarker(), ec);
  } else {
    // The blocks serve now; without their records a restart rebuilds again.
    NoteError(Status::IOError("index rebuild: records not all written (" + index_->failure() +
                              "); the next start rebuilds again"));
  }
  recovery_dropped_ += dropped;
  rebuilding_.store(false, std::memory_order_release);
  char buf[200];
  std::snprintf(buf, sizeof buf,
                "NVMe index rebuilt from the extents' headers in %.1f s: %lu blocks recovered, "
                "%lu candidates dropped; NVMe writes resume",
                static_cast<double>(SteadyNowNs() - rebuild_started_ns_) / 1e9,
                static_cast<unsigned long>(recovered_.load()), static_cast<unsigned long>(dropped));
  if (cache_->options_.log_warning) cache_->options_.log_warning(buf);
}

namespace {
int64_t SteadyMs() { return static_cast<int64_t>(SteadyNowNs() / 1000000); }
}  // namespace

void NvmeTier::ForgetExtentLocked(const NvmeExtent& x, bool free_after) {
  Status st = index_->Delete(x.tag);
  if (!st.ok()) {
    pending_.push_back(Unindexed{x, free_after});
    return;
  }
  if (free_after) (void)store_->Free(x);
}

void NvmeTier::ProbeIndex() {
  if (!index_->failed()) {
    last_index_probe_ms_ = 0;
    return;
  }
  const int64_t now = SteadyMs();
  if (last_index_probe_ms_ == 0) last_index_probe_ms_ = now;  // the failure was just seen
  const uint32_t every = options_.store.admission_probe_ms;
  if (every == 0 || now - last_index_probe_ms_ < static_cast<int64_t>(every)) return;
  last_index_probe_ms_ = now;
  Status st = index_->Reopen();
  std::vector<Unindexed> pend;
  if (st.ok()) {
    {
      std::lock_guard<std::mutex> l(mu_);
      pend.swap(pending_);
    }
    std::vector<NvmeIndexUpdate> deletes;
    deletes.reserve(pend.size());
    for (const Unindexed& u : pend) deletes.push_back(NvmeIndexUpdate{u.extent.tag, std::nullopt});
    if (!deletes.empty()) st = index_->Apply(deletes);
  }
  std::lock_guard<std::mutex> l(mu_);
  if (!st.ok()) {
    pending_.insert(pending_.end(), pend.begin(), pend.end());
    NoteError(Status(st.code(), "index probe failed, NVMe writes stay stopped: " + st.message()));
    return;
  }
  for (const Unindexed& u : pend)
    if (u.free_after) (void)store_->Free(u.extent);
  if (cache_->options_.log_warning)
    cache_->options_.log_warning("NVMe tier: index writable again (" + std::to_string(pend.size()) +
                                 " pending deletes applied), NVMe writes resume");
}

void NvmeTier::Settle(const std::shared_ptr<NvmeDurableWait>& wait, const Status& st) {
  if (!wait) return;
  std::function<void(Status)> done;
  Status result;
  {
    std::lock_guard<std::mutex> l(wait->mu);
    if (!st.ok() && wait->first_error.ok()) wait->first_error = st;
    if (--wait->remaining > 0) return;
    done = std::move(wait->done);
    result = wait->first_error;
  }
  if (!result.ok())
    result = Status(result.code(), "committed to the host tier but not durable on NVMe: " +
                                       result.message());
  if (done) done(std::move(result));
}

uint64_t NvmeTier::FlushHost(uint64_t deadline_ns) {
  BlockIndex& index = cache_->index_;
  // Every READY host block without an NVMe copy, marked as being written
  // (so nothing evicts or rewrites it meanwhile).
  std::vector<BlockId> dirty;
  index.ForEachLocked([&](BlockId id) {
    BlockEntry& e = index.entry(id);
    if (!cache_->is_host(e.tier) || e.state.load(std::memory_order_acquire) != kReady ||
        (e.flags.load(std::memory_order_acquire) & (kFlagOnNvme | kFlagDemoting)) != 0)
      return;
    e.flags.fetch_or(kFlagDemoting);
    dirty.push_back(id);
  });
  const uint64_t before = demotions_.load();
  size_t next = 0;
  constexpr size_t kBatch = 1024;
  while (next < dirty.size() && SteadyNowNs() < deadline_ns &&
         store_->admitting() && !index_->failed() && !rebuilding_.load()) {
    const size_t end = std::min(dirty.size(), next + kBatch);
    {
      std::lock_guard<std::mutex> l(jobs_mu_);
      for (; next < end; ++next)
        jobs_.push_back(Job{Job::kWrite, dirty[next], nullptr, 0, Slot{}, NvmeExtent{}, nullptr});
    }
    jobs_cv_.notify_one();
    Drain();
  }
  // What was not queued keeps its host copy only.
  for (; next < dirty.size(); ++next) {
    BlockEntry& e = index.entry(dirty[next]);
    std::lock_guard<std::mutex> l(index.MutexFor(e.key));
    e.flags.fetch_and(static_cast<uint8_t>(~kFlagDemoting));
  }
  Drain();
  const uint64_t written = demotions_.load() - before;
  // Sync: the flushed blocks must survive what follows (a reboot too).
  (void)store_->Sync();
  (void)index_->Sync();
  if (cache_->options_.log_info)
    cache_->options_.log_info("NVMe flush: " + std::to_string(written) + " of " +
                              std::to_string(dirty.size()) + " host-only blocks written to NVMe");
  return written;
}

}  // namespace kvtier
