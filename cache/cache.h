// Cache: the orchestrator of keys, tiers and eviction.
//
// Blocks are written in two steps and read under leases:
//
//   Reserve(keys)  → slots in state WRITING (never readable, never evicted)
//   Commit(sums)   → READY: readable, evictable when unpinned
//   Abort()        → slots freed, keys forgotten
//   Acquire(keys)  → the longest READY prefix, pinned by a Lease
//   ~Lease         → unpinned
//
// A second Reserve of a key that is READY or being written is answered
// (kPresent / kInFlight), never duplicated. When a tier cannot allocate, the
// cache evicts unpinned READY blocks chosen by the tier's policy until it can,
// or answers ResourceExhausted. In a memory tier with a slab allocator, sizes
// share the memory by demand: a size short of its share takes a whole region
// from the size most above its own (its blocks evicted or moved down), so a
// tier full of one size still serves every other (cache/cache_rebalance.cc).
// Namespaces are counted and reclaimed by a NamespaceRegistry.
//
// Tenants (docs/security.md): every memory tier belongs to one tenant and
// every namespace to one tenant; a tenant's blocks live only in its own
// tiers (its host segment, its HBM arenas), so what a client is handed to
// map holds nothing of another tenant, and a tenant's stores evict only its
// own blocks (its tiers' capacities are its quotas). The index is keyed by
// (tenant, key): a tenant's keys are scoped (ScopeKey) before they meet the
// index, so no request of one tenant can find, squat or evict another's
// block. With no tenant configured there is one tenant, "", whose keys are
// not scoped: the single-tenant path is the code path of before.
//
// Thread safety: all methods may be called concurrently. Lock order: a tier's
// mutex before an index shard's mutex; no path holds two shard mutexes.
// Lifetime: Reservations and Leases refer to the Cache, which must outlive them.
#pragma once

#include <array>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <thread>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/block_index.h"
#include "cache/keys.h"
#include "cache/namespace_registry.h"
#include "eviction/policy.h"
#include "tiers/io_queue.h"
#include "tiers/nvme_store.h"
#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier {

using TierId = uint8_t;

// The NVMe tier's TierId in BlockEntry::tier and Lease blocks.
inline constexpr TierId kNvmeTier = 0xFE;
// Most memory tiers of one cache (HBM and host tiers of every tenant).
inline constexpr size_t kMaxTiers = 64;
// Most tenants of one cache.
inline constexpr size_t kMaxTenants = 32;

class NvmeTier;
class HostShmTier;

// The NVMe tier below the store tier (cache/nvme_tier.h).
struct NvmeTierOptions {
  NvmeStoreOptions store;
  std::string index_path;  // RocksDB directory of the durable index
  bool sync_index = false;  // fsync the index's WAL on every write
  // false (write-back): a block is written to NVMe when it grows cold in the
  // host tier (usage above high_watermark); true (write-through or
  // write-async): as soon as it is committed.
  bool write_through = false;
  // With write_through: a commit is durable only once the NVMe write and its
  // index record are (the file fdatasync'ed and the index log fsync'ed, once
  // per batch of completions): Cache::Commit reports it (write-through).
  // false: the write is queued at commit and nobody waits (write-async).
  bool durable_commit = false;
  double high_watermark = 0.85;  // of host capacity: start writing cold blocks
  std::string policy = "lru";            // NVMe tier eviction policy
  std::string admission = "always";      // eviction/admission.h name
  uint32_t max_writes_in_flight = 32;
  // Read bandwidth of an index rebuild (a damaged index set aside), bytes
  // per second; 0: as fast as the device reads.
  uint64_t rebuild_bytes_per_second = 0;
  // The I/O queue to drive (tests wrap the real one to inject faults);
  // null: io_uring, else pread/pwrite.
  std::unique_ptr<IoQueue> queue;
};

struct TierSetup {
  std::unique_ptr<Tier> tier;
  std::string policy = "adaptive-2q";  // an eviction/policy.h name
  // The tenant (index into CacheOptions::tenants) whose blocks live here.
  uint8_t tenant = 0;
  // Name in stats and metrics; empty: the tier's own ("host", "hbm").
  std::string name;
};

// One tenant of a cache (docs/security.md).
struct CacheTenant {
  // NamespaceSpec::tenant of its namespaces. "" (the default tenant, the
  // only one when none is configured): keys are used as they are; any other
  // name: keys are scoped to the tenant (Cache::ScopeKey).
  std::string name;
  // Most payload bytes of the tenant's blocks on NVMe; 0: no limit. A
  // write that would pass it is declined (the block stays in memory only).
  uint64_t nvme_quota_bytes = 0;
};

struct CacheOptions {
  // Tiers, fastest first: an optional HBM tier (GpuHbmTier), then the host
  // tier. Stores land in `store_tier`. A block evicted from HBM moves down
  // to the host tier (the daemon's own CUDA stream copies it); one evicted
  // from the host tier lives on in the NVMe tier if it has a copy there.
  std::vector<TierSetup> tiers;
  // The default store tier; a tenant stores into its own tier of the same
  // kind (its first one).
  TierId store_tier = 0;
  // Empty: one tenant "" owning every tier. Otherwise every tier names its
  // tenant, and every tenant has a tier of the store tier's kind (and a host
  // tier with an NVMe tier or HBM promotion).
  std::vector<CacheTenant> tenants;
  // Most blocks indexed at once; 0 = derive from the tiers' capacities
  // (NVMe included) and `min_block_bytes`, the smallest slot (4 KiB).
  uint32_t max_blocks = 0;
  uint64_t min_block_bytes = 4 << 10;
  uint32_t index_shards = 64;
  ClockFn clock;  // defaults to SteadyNowNs
  // Most blocks per Reserve or Acquire call.
  uint32_t max_keys_per_call = 1u << 16;
  // File recording registered namespaces, so that their ids survive a
  // restart (the NVMe tier's blocks carry them). Empty: not persisted.
  std::string namespace_file;
  // A namespace with no block in any tier and no holder is forgotten after
  // this long (its id may then be reused). 0: never.
  uint64_t namespace_idle_reclaim_ns = 600ull * 1000000000ull;
  // NVMe tier below the store tier; empty: none.
  std::optional<NvmeTierOptions> nvme;
  // Where the cache reports what an operator must see (NVMe errors, once per
  // burst; recovery). Null: stderr.
  std::function<void(const std::string&)> log_warning;
  // Host → HBM promotion: a host block hit this many times is moved up to
  // the HBM tier (tier 0 when it is kHbm) by a background thread on the
  // HBM tier's stream. 0: never (blocks reach HBM only when stored there).
  // With several HBM tiers (one per GPU), Acquire names the one to use.
  uint32_t promote_to_hbm_hits = 0;
  // Start-up facts (NVMe recovery counts). Null: not reported.
  std::function<void(const std::string&)> log_info;
  // Checksums (docs/security.md, "Checksums"): every block is checked
  // against its committed checksum before its first NVMe write (the write
  // reads its bytes anyway); with this, host-tier blocks are also checked at
  // Commit, so a block committed with a wrong checksum is never served. A
  // mismatch is the client's fault: the block is dropped and counted
  // (TenantStats::client_checksum_mismatches), never reported as corruption.
  bool verify_at_commit = false;
};

// Per-block retention of a store, as TensorRT-LLM's KvCacheRetentionConfig:
// blocks [begin, end) of the reserved keys get `priority` (0..100) for
// `duration_ns` (0 = for ever), then fall back to the default priority.
struct PriorityRange {
  uint32_t begin = 0;
  uint32_t end = 0;
  uint8_t priority = kDefaultPriority;
  uint64_t duration_ns = 0;
};

struct StoreOptions {
  uint8_t priority = kDefaultPriority;  // for blocks no range covers
  uint64_t duration_ns = 0;
  std::vector<PriorityRange> ranges;
  // Chain parent of keys[0]; zero when keys[0] starts a prompt.
  BlockKey first_parent;
  // Tier to store into instead of CacheOptions::store_tier (e.g. the HBM
  // tier of the writer's GPU); kNoTier: the default.
  TierId tier = 0xFF;
};
inline constexpr TierId kNoTier = 0xFF;

class Cache;

// Move-only: the pins on a prefix of blocks. Destruction releases them.
//
// Blocks found only on NVMe are promoted into host slots when acquired: the
// lease is then not ready() until their reads completed. A block whose read
// fails (I/O error, checksum) ends the prefix there: blocks() is truncated
// before it. Read blocks() only when ready() (Wait() or Cache::OnReady()).
class Lease {
 public:
  struct Block {
    BlockKey key;
    BlockId id;
    TierId tier;
    uint64_t offset;
    uint32_t size;
    uint64_t checksum;
  };
  Lease() = default;
  Lease(Lease&& o) noexcept : cache_(o.cache_), state_(std::move(o.state_)) { o.cache_ = nullptr; }
  Lease& operator=(Lease&& o) noexcept;
  ~Lease() { Release(); }

  const std::vector<Block>& blocks() const;
  size_t size() const { return blocks().size(); }
  bool empty() const { return blocks().empty(); }
  bool ready() const;
  // Blocks until ready().
  void Wait() const;
  void Release();
  // Releases blocks [n, size()): a tensor-parallel group keeps only the
  // prefix every rank has. REQUIRES: ready().
  void Truncate(size_t n);

 private:
  friend class Cache;
  friend class NvmeTier;
  struct State;
  Cache* cache_ = nullptr;
  std::shared_ptr<State> state_;
};

enum class ReserveOutcome : uint8_t {
  kReserved = 0,  // a slot is yours to write, then Commit or Abort
  kPresent = 1,   // already READY: nothing to write
  kInFlight = 2,  // another writer holds it: nothing to write
  kNoSpace = 3,   // no room even after eviction
};
const char* ReserveOutcomeName(ReserveOutcome o);

// Move-only: slots being written. Destruction aborts what was not committed.
class Reservation {
 public:
  struct Block {
    BlockKey key;
    ReserveOutcome outcome;
    BlockId id;      // kNoBlock unless kReserved
    TierId tier;
    uint64_t offset;
    uint32_t size;
    BlockId parent = kNoBlock;  // chain predecessor in the same tier, for the policy
    uint64_t retention_deadline_ns = 0;  // for the policy (0: none)
  };
  Reservation() = default;
  Reservation(Reservation&& o) noexcept
      : cache_(o.cache_), blocks_(std::move(o.blocks_)), pending_(o.pending_) {
    o.cache_ = nullptr;
    o.pending_ = 0;
  }
  Reservation& operator=(Reservation&& o) noexcept;
  ~Reservation();

  const std::vector<Block>& blocks() const { return blocks_; }
  size_t reserved() const { return pending_; }
  bool done() const { return pending_ == 0; }
  // After Commit with CacheOptions::verify_at_commit: blocks whose bytes did
  // not have their committed checksum (dropped, not stored; their outcome
  // is then kNoSpace), and the index of the first of them.
  size_t checksum_mismatches() const { return mismatches_; }
  size_t first_checksum_mismatch() const { return first_mismatch_; }

 private:
  friend class Cache;
  Cache* cache_ = nullptr;
  std::vector<Block> blocks_;
  size_t pending_ = 0;  // reserved blocks not yet committed or aborted
  size_t mismatches_ = 0;
  size_t first_mismatch_ = 0;
};

struct TierStats {
  std::string name;
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;
  uint64_t blocks = 0;
  uint64_t hits = 0;          // blocks returned by Acquire from this tier
  uint64_t bytes_in = 0;      // committed into this tier
  uint64_t bytes_out = 0;     // handed out by Acquire from this tier
  uint64_t evictions = 0;
  uint64_t evicted_bytes = 0;
  uint64_t regions_moved = 0;   // memory tiers: regions released to serve another size
  uint64_t policy_memory = 0;
  uint64_t demotions = 0;       // NVMe: blocks written down to it
  uint64_t promotions = 0;      // NVMe: blocks read up from it; HBM: blocks moved up into it
  uint64_t io_errors = 0;       // NVMe: failed reads and writes
  uint64_t checksum_failures = 0;  // NVMe: reads quarantined (never served)
  uint64_t recovered = 0;       // NVMe: blocks recovered at start
  uint64_t recovery_dropped = 0;  // NVMe: index entries dropped at start
  bool admitting = true;        // NVMe: accepts writes
  bool index_ok = true;         // NVMe: the durable index takes writes
  bool index_rebuilding = false;  // NVMe: the index is being rebuilt from the extents
  // NVMe: what is down, for people (/healthz); empty while all is well.
  std::string degraded;
};

// One size class of a memory tier (slab allocator), for per-size series.
struct SizeClassStats {
  std::string tier;
  uint64_t slot_bytes = 0;
  uint64_t regions = 0;        // regions serving the class now
  uint64_t blocks = 0;         // slots in use
  uint64_t hits = 0;           // blocks returned by acquire from the class
  uint64_t evictions = 0;      // blocks evicted (or moved down) from the class
  uint64_t regions_moved = 0;  // regions taken from the class to serve another
};

// One tenant's share (CacheStats::tenants).
struct TenantStats {
  std::string name;
  // Blocks whose committed checksum did not match their bytes when the
  // daemon checked them (at commit, or before their first NVMe write): the
  // client's fault; the block is dropped and never reported as corruption.
  uint64_t client_checksum_mismatches = 0;
  uint64_t nvme_bytes = 0;           // payload bytes of its blocks on NVMe
  uint64_t nvme_quota_bytes = 0;     // 0: no limit
  uint64_t nvme_quota_declined = 0;  // NVMe writes its quota declined
};

struct CacheStats {
  uint64_t blocks_ready = 0;
  uint64_t blocks_writing = 0;
  uint64_t pinned_blocks = 0;   // READY blocks with at least one pin
  uint64_t acquires = 0;
  uint64_t keys_requested = 0;
  uint64_t blocks_hit = 0;
  uint64_t blocks_missed = 0;   // requested keys past the cached prefix
  uint64_t reserves = 0;
  uint64_t blocks_reserved = 0;
  uint64_t blocks_present = 0;
  uint64_t blocks_in_flight = 0;
  uint64_t blocks_no_space = 0;
  uint64_t commits = 0;
  uint64_t aborts = 0;
  uint64_t index_memory = 0;
  uint64_t index_entries = 0;
  std::vector<TierStats> tiers;
  std::vector<SizeClassStats> sizes;      // memory tiers' classes in use
  std::vector<NamespaceInfo> namespaces;  // live namespaces
  uint64_t namespaces_reclaimed = 0;
  std::vector<TenantStats> tenants;       // by tenant index
};

// One namespace's share of the cache (Cache::Namespaces).
struct NamespaceUsage {
  NamespaceId id = 0;
  NamespaceSpec spec;
  uint64_t blocks = 0;          // readable blocks, all tiers
  uint64_t bytes = 0;           // their payload bytes
  uint64_t hits = 0;            // acquires that returned one of these blocks
  uint64_t pinned = 0;          // of them, held by a lease now
  uint64_t evictions = 0;       // blocks evicted from any tier (the registry's count)
  uint32_t holders = 0;         // open handles (RPC capabilities)
  struct Tier {
    std::string name;           // as in CacheStats::tiers ("host", "hbm0", "nvme")
    uint64_t blocks = 0;
    uint64_t bytes = 0;
  };
  std::vector<Tier> tiers;      // CacheStats::tiers' order
};

// What Cache::EvictNamespace did.
struct NamespaceEviction {
  uint64_t blocks = 0;       // dropped from the memory tiers
  uint64_t bytes = 0;
  uint64_t kept_pinned = 0;  // held by a lease or being written or moved: kept
  uint64_t nvme_blocks = 0;  // NVMe copies dropped (extent freed, record deleted)
};

class Cache {
 public:
  // InvalidArgument: no tiers, bad store tier, unknown policy name.
  static Result<std::unique_ptr<Cache>> Create(CacheOptions options);
  ~Cache();

  // Registers (or finds) a namespace. Same spec → same id while it lives.
  // A namespace with no block in any tier, no holder and idle for
  // `namespace_idle_reclaim_ns` is reclaimed (cache/namespace_registry.h):
  // callers that keep an id across idle periods hold it (`hold`, then
  // CloseNamespace). InvalidArgument from NamespaceSpec::Validate(),
  // ResourceExhausted, IOError (namespace file).
  Result<NamespaceId> OpenNamespace(const NamespaceSpec& spec, bool hold = false);
  // Drops one hold taken by OpenNamespace(spec, true).
  void CloseNamespace(NamespaceId ns);
  // The namespace's spec. NotFound for unknown or reclaimed ids.
  Result<NamespaceSpec> GetNamespace(NamespaceId ns) const;
  NamespaceRegistry& namespaces() const { return *namespaces_; }

  // ---- Tenants ----
  size_t num_tenants() const { return tenants_.size(); }
  const std::string& tenant_name(uint8_t t) const { return tenants_[t]->name; }
  // The index of tenant `name`, or kNoTenant.
  uint8_t TenantIndex(std::string_view name) const;
  // The tenant of a live namespace (kNoTenant for unknown ids).
  uint8_t TenantOf(NamespaceId ns) const { return namespaces_->Tenant(ns); }
  // The tenant a memory tier belongs to.
  uint8_t tier_tenant(TierId t) const { return t < tiers_.size() ? tier_tenant_[t] : kNoTenant; }
  // The index key of `key` for tenant `t`: `key` itself for the default
  // tenant "", else the first 16 bytes of SHA-256("kvtier/tenant-key/v1" |
  // len | name | key.lo | key.hi) (little-endian), so that no key of one
  // tenant can be chosen to meet another's (a preimage of SHA-256).
  BlockKey ScopeKey(uint8_t t, const BlockKey& key) const;
  // The tenant's host tier (kNoTier if none) and its tiers of kind `kind`.
  TierId HostTierOf(uint8_t t) const { return tenants_[t]->host; }

  // Slots for `keys` (a consecutive chain) of `sizes[i]` bytes each.
  // Errors: NotFound (namespace), InvalidArgument (sizes/keys mismatch, zero
  // size, too many keys, priority > 100, range outside keys), ResourceExhausted
  // (not one block could be placed and at least one had no space).
  Result<Reservation> Reserve(NamespaceId ns, std::span<const BlockKey> keys,
                              std::span<const uint64_t> sizes, const StoreOptions& options = {});

  // Makes the reserved blocks READY with their checksums. `checksums` has one
  // value per key of the reservation (values of non-reserved keys ignored).
  // InvalidArgument when the count differs or the reservation is done.
  //
  // Durability (an NVMe tier with write_through and durable_commit): the
  // blocks committed into the host tier are written to NVMe at once, and
  // `on_durable` is called when every one of them is durable (OK) or one
  // could not be made so (its error: the tier refused writes, a write or
  // index error). The blocks are READY either way. It runs on this thread
  // before Commit returns when there is nothing to wait for (no such tier,
  // HBM-stored blocks), else on the NVMe I/O thread. Without `on_durable`
  // Commit itself waits and returns that status.
  Status Commit(Reservation& r, std::span<const uint64_t> checksums,
                std::function<void(Status)> on_durable = nullptr);
  // Whether commits wait for NVMe durability (see Commit).
  bool durable_commits() const;

  // On an error return on_durable is never called.
  //
  // Graceful shutdown of write-back: writes every READY host block that has
  // no NVMe copy yet to NVMe (admission not asked), coldest or hottest in no
  // particular order, until done, the tier refuses writes, or `timeout_ms`
  // passed; then syncs the NVMe file and index. Returns the blocks written.
  // No-op (0) without an NVMe tier. REQUIRES: no client stores meanwhile.
  uint64_t FlushHostToNvme(uint64_t timeout_ms);
  void Abort(Reservation& r);

  // The longest prefix of `keys` that is READY in namespace `ns`, pinned.
  // NVMe-resident blocks of the prefix are promoted to the store tier; the
  // lease is ready when their reads completed (OnReady / Lease::Wait).
  // Errors: NotFound (namespace), InvalidArgument (too many keys).
  Result<Lease> Acquire(NamespaceId ns, std::span<const BlockKey> keys,
                        TierId promote_to = kNoTier);
  // Where the longest READY prefix of `keys` in namespace `ns` lives, one
  // tier per block, without pinning, touching, counting or promoting
  // anything: what an engine asks before deciding how much of a hit is
  // worth loading (a block on NVMe may take longer to read than to
  // recompute). The answer may be stale by the time the engine acquires.
  // Errors: NotFound (namespace), InvalidArgument (too many keys).
  Result<std::vector<TierKind>> Probe(NamespaceId ns, std::span<const BlockKey> keys) const;
  // Calls `fn` once `lease` is ready: at once (on this thread) if it is,
  // else on the NVMe I/O thread when the last promotion completed.
  void OnReady(Lease& lease, std::function<void()> fn);

  // Address of a memory tier's slot (nullptr for NVMe).
  uint8_t* Address(TierId tier, uint64_t offset) const;
  Tier& tier(TierId t) const { return *tiers_[t]->tier; }
  size_t num_tiers() const { return tiers_.size(); }
  TierKind tier_kind(TierId t) const {
    return t == kNvmeTier ? TierKind::kNvme : tiers_[t]->tier->kind();
  }
  NvmeTier* nvme() const { return nvme_.get(); }
  // Waits until the NVMe tier has no write or read in flight or queued
  // (tests, shutdown). No-op without an NVMe tier.
  void DrainNvme();

  CacheStats Stats() const;
  const BlockIndex& index() const { return index_; }

  // Every registered namespace with its readable blocks, bytes and hits
  // (hits of the blocks still cached), by id. A walk of the whole index:
  // cold path (admin endpoint), never on an RPC.
  std::vector<NamespaceUsage> Namespaces() const;
  // Drops namespace `ns`'s readable, unpinned blocks from the memory tiers
  // (HBM, host), as eviction would: a block with an NVMe copy lives on
  // there, NVMe-resident blocks stay (they age out under the NVMe policy).
  // Blocks pinned, being written or moving are kept and counted. Errors:
  // NotFound (unknown namespace).
  Result<NamespaceEviction> EvictNamespace(NamespaceId ns);
  // Waits until queued host → HBM promotions are done (tests).
  void DrainPromotions();

 private:
  friend class Lease;
  friend class Reservation;
  friend class NvmeTier;

  struct TierState {
    std::unique_ptr<Tier> tier;
    std::unique_ptr<EvictionPolicy> policy;
    mutable std::mutex mu;  // guards tier, policy and the counters below
    std::string name;  // TierSetup::name, else the tier's own
    uint64_t blocks = 0;
    uint64_t hits = 0, bytes_in = 0, bytes_out = 0, evictions = 0, evicted_bytes = 0;
    uint64_t regions_moved = 0;  // regions released for another size class
    struct ClassCounters {
      uint64_t hits = 0, evictions = 0, regions_moved = 0;
      uint64_t demand = 0;  // recent bytes stored (and hit), halved as it ages
    };
    uint64_t demand_total = 0;
    std::vector<ClassCounters> classes;  // by slab class id, grown on use
    ClassCounters& Class(uint32_t c) {
      if (c >= classes.size()) classes.resize(c + 1);
      return classes[c];
    }
    // MakeRoomLocked's scratch: per region 0 (unknown), 1 (releasable), 2 (not).
    std::vector<uint8_t> region_mark;
    std::vector<uint32_t> marked;
    std::vector<uint32_t> owners;
  };

  Cache(CacheOptions options, uint32_t max_blocks);
  uint32_t NowSeconds() const;
  // What a tier's policy is told when `e` enters it: its priority and
  // retention travel with the block from tier to tier.
  BlockMeta MetaOf(const BlockEntry& e) const;
  // REQUIRES: ts.mu held. Allocates a slot owned by block `owner`, making
  // room as needed (MakeRoomLocked). ResourceExhausted when no room can be
  // made: every block that could give room is pinned, being written or
  // moving.
  Result<Slot> AllocateLocked(TierState& ts, uint64_t bytes, BlockId owner);
  // REQUIRES: ts.mu held. Frees space for an allocation of `bytes`: evicts
  // the policy's first victim that is of the wanted size class, or releases
  // the whole region of the first victim of another class (rebalancing:
  // every block in it is evicted or moved down, and the region serves the
  // wanted class). False when nothing could be freed.
  bool MakeRoomLocked(TierState& ts, uint64_t bytes);
  // REQUIRES: ts.mu held. Counts `bytes` of demand for class `cls`.
  void NoteDemandLocked(TierState& ts, uint32_t cls, uint64_t bytes);
  // REQUIRES: ts.mu held. The class that should give a region to `cls`:
  // when cls holds half a region or more less than its share of the
  // demand, the class most above its share; else none (0xFFFFFFFF).
  uint32_t DonorClassLocked(TierState& ts, uint32_t cls);
  // REQUIRES: ts.mu held. Evicts one block that helps an allocation of
  // `bytes` (tiers without an exposed slab allocator, large items).
  bool EvictOneLocked(TierState& ts, uint64_t bytes);
  // REQUIRES: ts.mu held. Evicts (HBM: moves down to host; host: leaves
  // on NVMe when it has a copy there) one block of the tier. False when it
  // became pinned, written or moving since it was chosen.
  bool EvictBlockLocked(TierState& ts, BlockId victim);
  // REQUIRES: ts.mu held. Evicts every block of region r; true when the
  // region went back to the free pool.
  bool ReleaseRegionLocked(TierState& ts, uint32_t r);
  // Unlocked pre-screen of a victim (re-checked under the shard lock).
  bool Evictable(BlockId id) const;
  // REQUIRES: ts.mu held. Whether every block of region r is evictable now;
  // memoized in ts.region_mark until ClearRegionMarks.
  bool RegionReleasableLocked(TierState& ts, uint32_t r);
  void ClearRegionMarks(TierState& ts);
  // REQUIRES: ts.mu held (an HBM tier). Moves `victim` down into the host
  // tier; false when the host tier has no room (the block is then dropped).
  bool DemoteToHostLocked(TierState& ts, BlockId victim);
  void ReleaseBlocks(std::span<const Lease::Block> blocks);
  void PromoterMain();
  bool PromoteToHbm(BlockId id, TierId to);  // false: not now (pinned), try later
  // REQUIRES: e is READY in a host tier, its shard lock held or the block
  // otherwise owned by the caller. Records it in a persistent segment.
  void RecordInHost(const BlockEntry& e);
  struct TenantState {
    std::string name;
    bool scoped = false;       // keys scoped (any tenant but "")
    TierId host = kNoTier;     // its host tier
    TierId store = kNoTier;    // its default store tier
    TierId first_hbm = kNoTier;
    // Its host tier when that segment is persistent (else null): blocks that
    // become READY in it are recorded there, and a restart re-adopts them.
    HostShmTier* persistent = nullptr;
    uint64_t nvme_quota = 0;
    std::atomic<uint64_t> client_mismatches{0};
    std::atomic<int64_t> nvme_bytes{0};
    std::atomic<int64_t> nvme_writing{0};  // payload bytes of its NVMe writes in flight
    std::atomic<uint64_t> nvme_declined{0};
  };
  // The host tier of `e`'s tenant (where NVMe reads and HBM demotions land).
  TierId HostTierOfBlock(const BlockEntry& e) const { return tenants_[e.tenant]->host; }
  bool is_host(TierId t) const { return t < tiers_.size() && is_host_[t]; }
  // Counts a block whose bytes did not match its committed checksum (the
  // client's fault) and logs it, once per burst.
  void NoteClientChecksumMismatch(const BlockEntry& e, const char* when);
  // Drops a READY host block being written to NVMe (kFlagDemoting) whose
  // bytes did not match its checksum; one pinned by a lease now stays (its
  // reader's verification fails) but is never written to NVMe.
  void DropClientMismatch(BlockId id);
  std::vector<std::unique_ptr<TenantState>> tenants_;
  std::array<bool, kMaxTiers> is_host_{};
  std::array<uint8_t, kMaxTiers> tier_tenant_{};
  std::mutex mismatch_log_mu_;
  uint64_t mismatch_log_ns_ = 0;
  uint64_t mismatch_suppressed_ = 0;
  Status AdoptHostBlocks();
  void ReleaseIds(std::span<const BlockId> ids);
  void AbortBlocks(Reservation& r);

  CacheOptions options_;
  ClockFn clock_;
  uint64_t start_ns_;
  BlockIndex index_;
  std::vector<std::unique_ptr<TierState>> tiers_;

  std::unique_ptr<NamespaceRegistry> namespaces_;
  std::unique_ptr<NvmeTier> nvme_;  // destroyed first: stops its I/O thread

  // Host → HBM promotion queue and its thread (when promote_to_hbm_hits > 0).
  std::mutex promote_mu_;
  std::condition_variable promote_cv_;
  struct PromoteJob {
    BlockId id;
    TierId to;
    int attempts;
  };
  std::deque<PromoteJob> promote_queue_;
  bool promote_stop_ = false;
  bool promote_busy_ = false;
  std::thread promoter_;
  uint64_t hbm_promotions_ = 0;  // guarded by the HBM tier's mutex

  struct Counters {
    std::atomic<uint64_t> acquires{0}, keys_requested{0}, blocks_hit{0}, blocks_missed{0};
    std::atomic<uint64_t> reserves{0}, blocks_reserved{0}, blocks_present{0};
    std::atomic<uint64_t> blocks_in_flight{0}, blocks_no_space{0}, commits{0}, aborts{0};
    std::atomic<uint64_t> writing{0}, pinned{0};
  };
  mutable Counters c_;
};

}  // namespace kvtier
