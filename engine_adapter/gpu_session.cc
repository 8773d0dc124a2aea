// GpuSession: planning in gpu_plan.cc, copies by the loader's GpuCopier,
// device plumbing through loader/gpu_runtime.h — no CUDA header here, so the
// file builds (and Create() answers Unavailable) without CUDA.
#include "engine_adapter/gpu_session.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <string>
#include <utility>

#include "tiers/checksum.h"
#include "tiers/gpu_hbm_tier.h"

namespace kvtier {

// Buffers of one transfer in flight, reused across transfers.
struct GpuTransferScratch {
  GpuPlanScratch plan;
  DeviceBuffer sums_device;      // per-block checksum sums the kernel adds into
  PinnedHostBuffer sums_host;    // their copy, read after `done`
  size_t capacity = 0;           // blocks the sum buffers hold
  GpuEvent done;                 // recorded after the copy and the sum read-back
  bool recorded = false;
  // A store through the copy engines: its last DMA into the slots, which
  // `done` does not cover (GpuCopier::CopyStaged's store_done_event).
  GpuEvent dma_done;
  bool dma_pending = false;

  // Blocks until the transfer's work, the DMA into the slots included, is done.
  Status Synchronize() const {
    Status st = done.Synchronize();
    if (st.ok() && dma_pending) st = dma_done.Synchronize();
    return st;
  }
  Result<bool> Query() const {
    Result<bool> r = done.Query();
    if (!r.ok() || !*r || !dma_pending) return r;
    return dma_done.Query();
  }
  bool verify = true;            // sums computed (and, for loads, verified)
  uint64_t block_bytes = 0;
  std::vector<uint64_t> values;  // store: the sums to commit
  std::vector<BlockRef> dma_refs;  // the plan with host addresses, for the copy engines
  // Load: the lease's blocks, whose committed checksums the sums are checked
  // against (the lease outlives Wait(), see StartLoad).
  const RemoteBlock* lease = nullptr;

  const uint64_t* sums() const { return static_cast<const uint64_t*>(sums_host.host()); }
};

namespace {

constexpr size_t kMinScratchBlocks = 256;

using StatClock = std::chrono::steady_clock;

double MsBetween(StatClock::time_point a, StatClock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

bool SameBusId(const std::string& a, const std::string& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

// A namespace bound to another GPU would reserve and promote there.
Status CheckDevice(const ClientNamespace& ns, int device) {
  if (ns.device() >= 0 && ns.device() != device)
    return Status::InvalidArgument("the namespace is bound to GPU " + std::to_string(ns.device()) +
                                   ", this session to GPU " + std::to_string(device));
  return Status::OK();
}

}  // namespace

const char* HostCopyPathName(HostCopyPath path) {
  switch (path) {
    case HostCopyPath::kAuto: return "auto";
    case HostCopyPath::kSmGather: return "sm";
    case HostCopyPath::kCopyEngine: return "dma";
  }
  return "?";
}

Result<HostCopyPath> ParseHostCopyPath(const std::string& name) {
  for (HostCopyPath p : {HostCopyPath::kAuto, HostCopyPath::kSmGather, HostCopyPath::kCopyEngine})
    if (name == HostCopyPathName(p)) return p;
  return Status::InvalidArgument("unknown host copy path '" + name +
                                 "' (expected auto, sm or dma)");
}

HostCopyPath ChooseHostCopyPath(HostCopyPath setting, bool all_host, uint64_t bytes,
                                uint64_t min_bytes) {
  if (!all_host) return HostCopyPath::kSmGather;
  if (setting != HostCopyPath::kAuto) return setting;
  return bytes >= min_bytes ? HostCopyPath::kCopyEngine : HostCopyPath::kSmGather;
}

// ---- GpuLoad -----------------------------------------------------------------

GpuLoad::GpuLoad() = default;

GpuLoad::GpuLoad(GpuLoad&& o) noexcept
    : session_(std::exchange(o.session_, nullptr)),
      scratch_(std::move(o.scratch_)),
      path_(o.path_),
      blocks_(o.blocks_),
      verified_(o.verified_),
      waited_(o.waited_),
      result_(std::move(o.result_)) {}

GpuLoad& GpuLoad::operator=(GpuLoad&& o) noexcept {
  if (this != &o) {
    if (session_ != nullptr && scratch_) session_->ReturnScratch(std::move(scratch_));
    session_ = std::exchange(o.session_, nullptr);
    scratch_ = std::move(o.scratch_);
    path_ = o.path_;
    blocks_ = o.blocks_;
    verified_ = o.verified_;
    waited_ = o.waited_;
    result_ = std::move(o.result_);
  }
  return *this;
}

GpuLoad::~GpuLoad() {
  if (session_ != nullptr && scratch_) session_->ReturnScratch(std::move(scratch_));
}

Result<bool> GpuLoad::Ready() const {
  if (waited_ || !scratch_ || !scratch_->recorded) return true;
  return scratch_->Query();
}

Status GpuLoad::Wait() {
  if (waited_) return result_;
  waited_ = true;
  if (!scratch_) {  // nothing was queued
    verified_ = blocks_;
    return result_;
  }
  GpuTransferScratch& s = *scratch_;
  result_ = s.Synchronize();
  if (result_.ok()) verified_ = blocks_;
  if (result_.ok() && s.verify) {
    const uint64_t* sums = s.sums();
    for (size_t i = 0; i < blocks_; ++i) {
      const uint64_t got = checksum::Finalize(sums[i], s.block_bytes);
      if (got != s.lease[i].checksum) {
        verified_ = i;
        result_ = Status::Corruption("block " + std::to_string(i) + " (" + s.lease[i].key.ToHex() +
                                     ") failed its checksum: the GPU computed " +
                                     std::to_string(got) + ", the block was committed with " +
                                     std::to_string(s.lease[i].checksum));
        break;
      }
    }
  }
  session_->ReturnScratch(std::move(scratch_));
  return result_;
}

// ---- GpuStore ----------------------------------------------------------------

GpuStore::GpuStore() = default;

GpuStore::GpuStore(GpuStore&& o) noexcept
    : session_(std::exchange(o.session_, nullptr)),
      scratch_(std::move(o.scratch_)),
      path_(o.path_),
      txn_(std::move(o.txn_)),
      result_(o.result_),
      waited_(o.waited_) {}

GpuStore& GpuStore::operator=(GpuStore&& o) noexcept {
  if (this != &o) {
    // The GPU must be done with our slots before the reservation is aborted.
    if (session_ != nullptr && scratch_) session_->ReturnScratch(std::move(scratch_));
    session_ = std::exchange(o.session_, nullptr);
    scratch_ = std::move(o.scratch_);
    path_ = o.path_;
    txn_ = std::move(o.txn_);  // aborts ours
    result_ = o.result_;
    waited_ = o.waited_;
  }
  return *this;
}

GpuStore::~GpuStore() {
  // Wait for the kernel before txn_'s destructor aborts (frees) its slots.
  if (session_ != nullptr && scratch_) session_->ReturnScratch(std::move(scratch_));
}

size_t GpuStore::blocks() const { return result_.stored; }

Result<bool> GpuStore::Ready() const {
  if (waited_ || !scratch_ || !scratch_->recorded) return true;
  return scratch_->Query();
}

Result<StoreResult> GpuStore::Wait() {
  if (waited_) return Status::InvalidArgument("GpuStore::Wait() was already called");
  waited_ = true;
  if (!scratch_) return result_;  // nothing reserved: nothing to commit
  GpuTransferScratch& s = *scratch_;
  GpuStoreStats* timing = session_->timing_;
  const auto t0 = StatClock::now();
  Status st = s.Synchronize();
  const auto t1 = StatClock::now();
  if (timing != nullptr) timing->wait_ms += MsBetween(t0, t1);
  if (!st.ok()) {
    session_->ReturnScratch(std::move(scratch_));
    (void)txn_.Abort();
    return st;
  }
  s.values.assign(txn_.slots().size(), 0);
  const uint64_t* sums = s.sums();
  for (size_t k = 0; k < s.plan.slot_index.size(); ++k)
    s.values[s.plan.slot_index[k]] = checksum::Finalize(sums[k], s.block_bytes);
  st = txn_.Commit(s.values);
  if (timing != nullptr) timing->commit_ms += MsBetween(t1, StatClock::now());
  session_->ReturnScratch(std::move(scratch_));
  if (!st.ok()) return st;
  return result_;
}

// ---- GpuSession --------------------------------------------------------------

Result<std::unique_ptr<GpuSession>> GpuSession::Create(Client* client,
                                                       const GpuSessionOptions& options) {
  if (client == nullptr) return Status::InvalidArgument("GpuSession: no client");
  if (client->segment_base() == nullptr || client->segment_bytes() == 0)
    return Status::InvalidArgument("GpuSession: the client has no mapped host segment");
  if (options.store_pipeline_depth == 0)
    return Status::InvalidArgument("GpuSession: store_pipeline_depth must be at least 1");
  if (!GpuAvailable()) {
#if defined(KVTIER_HAVE_CUDA)
    return Status::Unavailable("GpuSession: no CUDA device");
#else
    return Status::Unavailable("GpuSession: kvtier was built without CUDA");
#endif
  }
  std::unique_ptr<GpuSession> s(new GpuSession());
  s->store_chunk_bytes_ = options.store_chunk_bytes;
  s->store_pipeline_depth_ = options.store_pipeline_depth;
  s->host_path_ = options.host_path;
  s->auto_dma_min_bytes_ = options.auto_dma_min_bytes;
  if (options.device >= 0) {
    KVTIER_RETURN_IF_ERROR(GpuSetDevice(options.device));
    s->device_ = options.device;
  } else {
    KVTIER_ASSIGN_OR_RETURN(s->device_, GpuGetDevice());
  }
  KVTIER_ASSIGN_OR_RETURN(s->host_reg_,
                          HostRegistration::Register(client->segment_base(),
                                                     client->segment_bytes(),
                                                     HostRegisterMode::kReadWrite));
  s->segments_.host = static_cast<uint8_t*>(s->host_reg_.device_ptr());
  s->segments_.host_bytes = client->segment_bytes();
  s->segments_.host_cpu = client->segment_base();
  KVTIER_ASSIGN_OR_RETURN(s->copier_, GpuCopier::Create(options.copier));
  KVTIER_ASSIGN_OR_RETURN(s->hbm_copier_, GpuCopier::Create(options.hbm_copier));
  if (options.open_hbm) {
    auto seg = client->GetHbmSegment(s->device_);
    std::string mine;
    if (seg.ok()) {
      if (auto bus = CudaPciBusId(s->device_); bus.ok()) mine = *bus;
      if (!mine.empty() && !seg->pci_bus_id.empty() && !SameBusId(mine, seg->pci_bus_id))
        return Status::InvalidArgument(
            "the daemon's HBM tier on GPU " + std::to_string(seg->device) + " is at " +
            seg->pci_bus_id + ", but this session's GPU " + std::to_string(s->device_) +
            " is at " + mine +
            " (CUDA_VISIBLE_DEVICES differs between the processes?); "
            "GpuSessionOptions::open_hbm = false goes on without the HBM tier");
    }
    if (!seg.ok()) {
      if (seg.status().code() != StatusCode::kUnavailable) return seg.status();
      s->hbm_status_ = seg.status();  // the daemon has no HBM tier on this GPU
    } else {
      auto map = IpcMemMapping::Open(seg->ipc_handle.data(), seg->ipc_handle.size(), seg->bytes);
      if (!map.ok()) {
        return Status(map.status().code(),
                      "opening the daemon's HBM tier (its GPU " + std::to_string(seg->device) +
                          " at " + seg->pci_bus_id + "; this session's GPU " +
                          std::to_string(s->device_) + " at " + mine +
                          "): " + map.status().message() +
                          " (GpuSessionOptions::open_hbm = false goes on without it)");
      }
      s->hbm_map_ = std::move(map).value();
      s->segments_.hbm = static_cast<uint8_t*>(s->hbm_map_.data());
      s->segments_.hbm_bytes = seg->bytes;
      s->segments_.hbm_device = seg->device;
    }
  }
  return s;
}

GpuSession::~GpuSession() {
  for (auto& sc : free_scratch_)
    if (sc->recorded) (void)sc->Synchronize();
}

Result<std::unique_ptr<GpuTransferScratch>> GpuSession::TakeScratch(size_t blocks) {
  std::unique_ptr<GpuTransferScratch> s;
  {
    std::lock_guard<std::mutex> g(scratch_mu_);
    if (!free_scratch_.empty()) {
      s = std::move(free_scratch_.back());
      free_scratch_.pop_back();
    }
  }
  if (!s) {
    s = std::make_unique<GpuTransferScratch>();
    KVTIER_ASSIGN_OR_RETURN(s->done, GpuEvent::Create());
    KVTIER_ASSIGN_OR_RETURN(s->dma_done, GpuEvent::Create());
  }
  if (s->capacity < blocks || s->capacity == 0) {
    size_t cap = std::max(kMinScratchBlocks, s->capacity);
    while (cap < blocks) cap *= 2;
    // Free the old buffers first: a larger pair replaces them.
    s->sums_device = DeviceBuffer();
    s->sums_host = PinnedHostBuffer();
    s->capacity = 0;
    KVTIER_ASSIGN_OR_RETURN(s->sums_device, DeviceBuffer::Allocate(cap * sizeof(uint64_t)));
    KVTIER_ASSIGN_OR_RETURN(s->sums_host, PinnedHostBuffer::Allocate(cap * sizeof(uint64_t)));
    s->capacity = cap;
  }
  s->recorded = false;
  s->dma_pending = false;
  return s;
}

void GpuSession::ReturnScratch(std::unique_ptr<GpuTransferScratch> scratch) {
  if (scratch->recorded) (void)scratch->Synchronize();
  scratch->recorded = false;
  scratch->dma_pending = false;
  std::lock_guard<std::mutex> g(scratch_mu_);
  free_scratch_.push_back(std::move(scratch));
}

Result<HostCopyPath> GpuSession::Launch(GpuTransferScratch* s, const KvPool& pool,
                                        TransferDirection direction, GpuStream stream,
                                        const GpuLoadOptions& options) {
  PagedTransfer t;
  t.pool = &pool;
  t.blocks = s->plan.refs;
  t.direction = direction;
  s->verify = options.verify;
  t.checksum_sums = s->verify ? static_cast<uint64_t*>(s->sums_device.data()) : nullptr;
  // The copier reads them back as part of the copy (for a store through the
  // copy engines, behind its DMA: see PagedTransfer::checksum_sums_host).
  t.checksum_sums_host = s->verify ? static_cast<uint64_t*>(s->sums_host.host()) : nullptr;
  const uint64_t bytes = uint64_t{s->plan.refs.size()} * pool.block_bytes();
  HostCopyPath path = ChooseHostCopyPath(host_path_, s->plan.all_host, bytes, auto_dma_min_bytes_);
  // One block's layer group (or one layer) must fit a staging buffer; else
  // the kernel path.
  const uint32_t group = options.layers_per_group > 0 ? options.layers_per_group : 1;
  if (path == HostCopyPath::kCopyEngine &&
      uint64_t{std::min(group, pool.shape.num_layers)} * pool.block_bytes() /
              pool.shape.num_layers >
          copier_->staging_buffer_bytes())
    path = HostCopyPath::kSmGather;
  Status st;
  if (path == HostCopyPath::kCopyEngine) {
    // The copy engines take host addresses of the registered segment.
    s->dma_refs.resize(s->plan.refs.size());
    for (size_t i = 0; i < s->plan.refs.size(); ++i) {
      s->dma_refs[i] = s->plan.refs[i];
      s->dma_refs[i].slot =
          segments_.host_cpu + (static_cast<uint8_t*>(s->plan.refs[i].slot) - segments_.host);
    }
    t.blocks = s->dma_refs;
    const bool store = direction == TransferDirection::kStore;
    st = copier_->CopyStaged(t, options.layers_per_group, options.events, stream,
                             store ? s->dma_done.get() : nullptr);
    s->dma_pending = store && st.ok();
  } else {
    GpuCopier* copier = s->plan.all_hbm ? hbm_copier_.get() : copier_.get();
    st = options.layers_per_group > 0
             ? copier->CopyLayerwise(t, options.layers_per_group, options.events, stream)
             : copier->Copy(t, stream);
  }
  if (st.ok()) st = s->done.Record(stream);
  if (st.ok()) {
    s->recorded = true;
  } else {
    // Part of the work may be queued: let it finish before the buffers are reused.
    (void)GpuSynchronize(stream);
    return st;
  }
  return path;
}

Result<GpuLoad> GpuSession::StartLoad(const ClientNamespace& ns, const ClientLease& lease,
                                      const KvPool& pool, std::span<const uint32_t> pages,
                                      GpuStream stream, const GpuLoadOptions& options) {
  KVTIER_RETURN_IF_ERROR(CheckPoolMatchesLayout(pool, ns.spec().layout));
  KVTIER_RETURN_IF_ERROR(pool.Validate());
  KVTIER_RETURN_IF_ERROR(CheckDevice(ns, device_));
  if (options.layers_per_group > 0 && options.events == nullptr)
    return Status::InvalidArgument("a layer-wise load needs LayerEvents");
  KVTIER_RETURN_IF_ERROR(GpuSetDevice(device_));
  GpuLoad load;
  load.session_ = this;
  load.blocks_ = pages.size();
  if (pages.empty() && options.layers_per_group == 0) return load;
  KVTIER_ASSIGN_OR_RETURN(std::unique_ptr<GpuTransferScratch> s, TakeScratch(pages.size()));
  Status st = PlanLoad(lease.blocks(), pages, pool.block_bytes(), pool.shape.num_pages, segments_,
                       &s->plan);
  if (st.ok()) {
    s->block_bytes = pool.block_bytes();
    s->lease = lease.blocks().data();
    auto path = Launch(s.get(), pool, TransferDirection::kLoad, stream, options);
    st = path.status();
    if (path.ok()) load.path_ = *path;
  }
  if (!st.ok()) {
    ReturnScratch(std::move(s));
    return st;
  }
  load.scratch_ = std::move(s);
  return load;
}

Status GpuSession::Load(const ClientNamespace& ns, const ClientLease& lease, const KvPool& pool,
                        std::span<const uint32_t> pages, GpuStream stream,
                        const GpuLoadOptions& options) {
  KVTIER_ASSIGN_OR_RETURN(GpuLoad load, StartLoad(ns, lease, pool, pages, stream, options));
  return load.Wait();
}

Result<GpuStore> GpuSession::StartStore(ClientNamespace& ns, std::span<const BlockKey> keys,
                                        const KvPool& pool, std::span<const uint32_t> pages,
                                        const StoreOptions& options, GpuStream stream) {
  KVTIER_RETURN_IF_ERROR(CheckPoolMatchesLayout(pool, ns.spec().layout));
  KVTIER_RETURN_IF_ERROR(pool.Validate());
  if (keys.size() != pages.size())
    return Status::InvalidArgument(std::to_string(keys.size()) + " keys but " +
                                   std::to_string(pages.size()) + " pages");
  for (size_t i = 0; i < pages.size(); ++i)
    if (pages[i] >= pool.shape.num_pages)
      return Status::InvalidArgument("pages[" + std::to_string(i) + "] = " +
                                     std::to_string(pages[i]) + " but the pool has " +
                                     std::to_string(pool.shape.num_pages) + " pages");
  KVTIER_RETURN_IF_ERROR(CheckDevice(ns, device_));
  KVTIER_RETURN_IF_ERROR(GpuSetDevice(device_));
  // Reserve on this GPU: with --store-tier hbm the slots are then in the HBM
  // tier this session opened, never in another GPU's.
  if (ns.device() < 0) ns.set_device(device_);
  GpuStore store;
  store.session_ = this;
  if (keys.empty()) return store;
  const auto t0 = StatClock::now();
  KVTIER_ASSIGN_OR_RETURN(store.txn_, ns.Reserve(keys, options));
  const auto t1 = StatClock::now();
  if (timing_ != nullptr) {
    timing_->reserve_ms += MsBetween(t0, t1);
    ++timing_->chunks;
  }
  for (const auto& slot : store.txn_.slots()) {
    switch (slot.outcome) {
      case ReserveOutcome::kReserved: ++store.result_.stored; break;
      case ReserveOutcome::kPresent: ++store.result_.present; break;
      case ReserveOutcome::kInFlight: ++store.result_.in_flight; break;
      case ReserveOutcome::kNoSpace: ++store.result_.no_space; break;
    }
  }
  if (store.result_.stored == 0) return store;
  KVTIER_ASSIGN_OR_RETURN(std::unique_ptr<GpuTransferScratch> s, TakeScratch(keys.size()));
  // On an error below, `store` goes out of scope and its reservation aborts.
  Status st = PlanStore(store.txn_.slots(), pages, pool.block_bytes(), pool.shape.num_pages,
                        segments_, &s->plan);
  if (st.ok()) {
    s->block_bytes = pool.block_bytes();
    auto path = Launch(s.get(), pool, TransferDirection::kStore, stream, GpuLoadOptions{});
    st = path.status();
    if (path.ok()) store.path_ = *path;
  }
  if (timing_ != nullptr) {
    const auto t2 = StatClock::now();
    timing_->queue_ms += MsBetween(t1, t2);
    if (st.ok() && timing_->first_queued_ms == 0)
      timing_->first_queued_ms = MsBetween(store_start_, t2);
  }
  if (!st.ok()) {
    ReturnScratch(std::move(s));
    return st;
  }
  store.scratch_ = std::move(s);
  return store;
}

namespace {

void Add(const StoreResult& r, StoreResult* total) {
  total->stored += r.stored;
  total->present += r.present;
  total->in_flight += r.in_flight;
  total->no_space += r.no_space;
}

}  // namespace

Result<StoreResult> GpuSession::Store(ClientNamespace& ns, std::span<const BlockKey> keys,
                                      const KvPool& pool, std::span<const uint32_t> pages,
                                      const StoreOptions& options, GpuStream stream) {
  store_stats_ = {};
  store_start_ = StatClock::now();
  timing_ = &store_stats_;
  struct Done {  // ends the timing on every return
    GpuSession* s;
    ~Done() {
      s->store_stats_.total_ms = MsBetween(s->store_start_, StatClock::now());
      s->timing_ = nullptr;
    }
  } done_timing{this};
  const uint64_t block_bytes = pool.block_bytes();
  size_t chunk = keys.size();
  if (store_chunk_bytes_ > 0 && block_bytes > 0)
    chunk = static_cast<size_t>(std::max<uint64_t>(1, store_chunk_bytes_ / block_bytes));
  if (keys.size() <= chunk || keys.size() != pages.size()) {  // StartStore refuses a mismatch
    KVTIER_ASSIGN_OR_RETURN(GpuStore store, StartStore(ns, keys, pool, pages, options, stream));
    return store.Wait();
  }
  // store_pipeline_depth chunks in flight: while the host waits for the
  // oldest and commits it, the GPU copies the ones queued behind it. The
  // chunks grow from an eighth of the size: the first copy starts after a
  // short Reserve.
  StoreResult total;
  const size_t depth = store_pipeline_depth_;
  std::vector<GpuStore> pending(depth);
  size_t queued = 0, done = 0;
  size_t next_chunk = std::max<size_t>(1, chunk / 8);
  bool placed = false;
  for (size_t first = 0; first < keys.size();) {
    const size_t n = std::min(std::min(next_chunk, chunk), keys.size() - first);
    next_chunk *= 2;
    KVTIER_ASSIGN_OR_RETURN(pending[queued % depth],
                            StartStore(ns, keys.subspan(first, n), pool, pages.subspan(first, n),
                                       StoreChunkOptions(options, keys, first, n), stream));
    // The first chunk that copies anything tells where the daemon puts them.
    const GpuStore& started = pending[queued % depth];
    if (!placed && started.scratch_) {
      placed = true;
      if (started.scratch_->plan.all_hbm) {
        chunk = keys.size();
        next_chunk = chunk;
      }
    }
    ++queued;
    first += n;
    if (queued - done == depth) {
      KVTIER_ASSIGN_OR_RETURN(StoreResult r, pending[done % depth].Wait());
      Add(r, &total);
      ++done;
    }
  }
  for (; done < queued; ++done) {
    KVTIER_ASSIGN_OR_RETURN(StoreResult r, pending[done % depth].Wait());
    Add(r, &total);
  }
  return total;
}

}  // namespace kvtier
