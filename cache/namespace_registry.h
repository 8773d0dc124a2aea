// NamespaceRegistry: the namespaces a cache knows, their ids, their usage,
// and their lifecycle.
//
// A namespace (model, revision, layout, TP shard, tenant salt, hash mode) is
// registered by its spec and named by a small id that blocks carry (in the
// index and in NVMe extent headers and records). The registry
//
//   - finds a spec's id through a hash map under `mu_`; registration and
//     reclamation take `mu_`, the block path never does;
//   - answers "is id live" and pins an id for the length of a call without
//     any lock (Enter/Exit: two atomic operations), so a registration never
//     blocks an acquire;
//   - counts each namespace's blocks (in any tier, NVMe included), bytes,
//     hits and evictions with relaxed atomics;
//   - reclaims a namespace that has no block anywhere, no holder (an open
//     RPC capability) and has been idle for `idle_reclaim_ns`; its id is then
//     free for reuse. An id is never reused while any block — NVMe extents
//     included, whose records the cache deletes before it forgets the block —
//     names it, because such a block keeps the count above zero.
//   - persists registrations and reclamations in an append-only file
//     ("v1 <id> <spec>" and "rm <id>" lines), rewritten compactly (temp file
//     + rename) when dead lines outnumber live ones, so it stays bounded.
//
// Ids are < kMaxIds (2^28) at any one time; reused ids keep the id space as
// small as the number of namespaces alive at once. There is no lifetime cap.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/keys.h"
#include "eviction/policy.h"
#include "tiers/status.h"

namespace kvtier {

using NamespaceId = uint32_t;

struct NamespaceRegistryOptions {
  // Append-only record of registrations; empty: not persisted.
  std::string file;
  // A namespace with no blocks and no holder is reclaimed once idle this
  // long (since its last open, close or last block). 0: never reclaimed.
  uint64_t idle_reclaim_ns = 600ull * 1000000000ull;
  ClockFn clock;  // defaults to SteadyNowNs
  std::function<void(const std::string&)> log_warning;
  // The tenant index of a tenant name (NamespaceSpec::tenant), for the
  // namespaces loaded from the file; kNoTenant for a tenant no longer
  // configured. Null: 0 for the default tenant "", kNoTenant for any other.
  std::function<uint8_t(const std::string&)> tenant_index;
};

// A namespace whose tenant is not configured (any more): nobody can open
// it, and its blocks are dropped at start.
inline constexpr uint8_t kNoTenant = 0xFF;

struct NamespaceInfo {
  NamespaceId id = 0;
  NamespaceSpec spec;
  uint64_t blocks = 0;     // in any tier, NVMe included (WRITING included)
  uint64_t bytes = 0;      // payload bytes of those blocks
  uint64_t hits = 0;       // blocks returned by acquires
  uint64_t evictions = 0;  // blocks evicted from any tier
  uint32_t holders = 0;    // open handles (RPC capabilities)
};

class NamespaceRegistry {
 public:
  static constexpr uint32_t kMaxIds = 1u << 28;

  // Loads the file (a torn last line is cut off; a malformed line elsewhere
  // is Corruption; IOError when it cannot be read or rewritten).
  static Result<std::unique_ptr<NamespaceRegistry>> Open(NamespaceRegistryOptions options);
  ~NamespaceRegistry();

  // Finds or registers `spec` (validated by the caller) for the tenant of
  // index `tenant` (the index of spec.tenant). With `hold`, the namespace is
  // held until Release(id). Errors: ResourceExhausted (kMaxIds namespaces
  // alive), IOError (file).
  Result<NamespaceId> Register(const NamespaceSpec& spec, bool hold, uint8_t tenant = 0);
  void Release(NamespaceId id);

  // Pins a live id for one call: while entered it is not reclaimed. False
  // (nothing to Exit) for an unknown or reclaimed id. Lock-free.
  bool Enter(NamespaceId id);
  void Exit(NamespaceId id);
  bool Live(NamespaceId id) const;
  // The tenant index of a live id (kNoTenant for unknown ids). Lock-free.
  uint8_t Tenant(NamespaceId id) const;

  Result<NamespaceSpec> Get(NamespaceId id) const;

  // Usage, lock-free. REQUIRES: id was live when the block was created.
  void AddBlock(NamespaceId id, uint64_t bytes) { AddBlocks(id, 1, bytes); }
  void AddBlocks(NamespaceId id, uint64_t blocks, uint64_t bytes);
  void RemoveBlock(NamespaceId id, uint64_t bytes);
  void AddHits(NamespaceId id, uint64_t n);
  void AddEviction(NamespaceId id);

  // Reclaims idle empty namespaces now; returns how many.
  size_t Reclaim();
  // Reclaim() when the last pass is older than a quarter of the idle time.
  void MaybeReclaim();

  size_t live() const { return live_.load(std::memory_order_relaxed); }
  // One past the largest id in use (the id space in use).
  uint32_t id_bound() const { return next_id_.load(std::memory_order_relaxed); }
  uint64_t reclaimed() const { return reclaimed_.load(std::memory_order_relaxed); }
  std::vector<NamespaceInfo> List() const;

 private:
  struct Entry {
    // kFree → kLive (registered) → kDying (being reclaimed) → kFree.
    std::atomic<uint32_t> state{0};
    std::atomic<uint32_t> holds{0};  // Register(hold) and Enter
    std::atomic<uint8_t> tenant{0};  // tenant index, set before kLive
    std::atomic<int64_t> blocks{0}, bytes{0};
    std::atomic<uint64_t> hits{0}, evictions{0};
    std::atomic<uint64_t> active_ns{0};  // last open, close, or last block gone
    NamespaceSpec spec;                  // guarded by mu_
  };
  static constexpr uint32_t kFree = 0, kLive = 1, kDying = 2;
  static constexpr uint32_t kChunkShift = 12;
  static constexpr uint32_t kChunkSize = 1u << kChunkShift;

  explicit NamespaceRegistry(NamespaceRegistryOptions options);
  Entry* Find(NamespaceId id) const;
  Entry& At(NamespaceId id);  // allocates the chunk. REQUIRES: mu_
  static std::string KeyOf(const NamespaceSpec& spec);
  Status Load();
  Status AppendLine(const std::string& line);  // REQUIRES: mu_
  Status RewriteLocked();                      // REQUIRES: mu_
  size_t ReclaimLocked(uint64_t now);          // REQUIRES: mu_

  NamespaceRegistryOptions options_;
  std::unique_ptr<std::atomic<Entry*>[]> chunks_;  // kMaxIds / kChunkSize
  std::atomic<size_t> live_{0};
  std::atomic<uint32_t> next_id_{0};
  std::atomic<uint64_t> reclaimed_{0};
  std::atomic<uint64_t> last_reclaim_ns_{0};

  mutable std::mutex mu_;
  std::unordered_map<std::string, NamespaceId> by_spec_;
  std::deque<NamespaceId> free_ids_;  // reclaimed, reused oldest first
  size_t file_lines_ = 0;             // lines in the file (live + dead)
};

// Enter/Exit for one call's scope.
class NamespaceGuard {
 public:
  NamespaceGuard(NamespaceRegistry& r, NamespaceId id) : r_(r), id_(id), entered_(r.Enter(id)) {}
  ~NamespaceGuard() {
    if (entered_) r_.Exit(id_);
  }
  NamespaceGuard(const NamespaceGuard&) = delete;
  NamespaceGuard& operator=(const NamespaceGuard&) = delete;
  bool entered() const { return entered_; }

 private:
  NamespaceRegistry& r_;
  NamespaceId id_;
  bool entered_;
};

// The namespace file's line for a registration (no newline).
std::string NamespaceLine(NamespaceId id, const NamespaceSpec& spec);

}  // namespace kvtier
