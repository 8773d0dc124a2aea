// BlockIndex: the sharded, concurrent map from block key to block entry.
//
// Every block the cache knows — being written or readable, in any tier — has
// one entry, named by a dense BlockId (reused after removal) that eviction
// policies and leases use instead of the 16-byte key. Entries live in chunks
// that never move, so a BlockId stays a valid handle while it is allocated.
//
// The key → id map is split into shards by key; each shard is an
// open-addressing table of 4-byte ids (linear probing, backward-shift
// deletion) under its own mutex. An entry's mutable fields are guarded by the
// mutex of its key's shard; `pins` and `state` are also atomics so that
// eviction can pre-screen candidates without locking and then re-check under
// the shard lock.
//
// Memory: 80 bytes per entry plus 4 bytes per table slot at a load factor
// of 3/8 to 3/4 (tables double as they fill): 85–91 bytes per block.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <vector>

#include "cache/keys.h"
#include "eviction/policy.h"
#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier {

// kLoading: being promoted from NVMe into a host slot; not readable yet.
enum class BlockState : uint8_t { kFree = 0, kWriting = 1, kReady = 2, kLoading = 3 };

// BlockEntry::flags.
inline constexpr uint8_t kFlagOnNvme = 1;        // a durable NVMe copy exists
inline constexpr uint8_t kFlagDemoting = 2;      // an NVMe write of it is in flight
inline constexpr uint8_t kFlagNvmeDeclined = 4;  // admission said no; retried after a hit
inline constexpr uint8_t kFlagHbmQueued = 8;     // queued for promotion host → HBM

struct BlockEntry {
  BlockKey key;                 // immutable while the id is allocated
  BlockKey parent;              // chain predecessor (zero for the first block)
  uint64_t offset = 0;          // slot offset in its tier
  uint64_t checksum = 0;        // checksum::Sum64 of the payload (READY only)
  uint32_t size = 0;            // payload bytes
  uint32_t ns = 0;              // namespace id
  std::atomic<uint32_t> pins{0};
  uint32_t hits = 0;            // acquires that returned this block
  uint32_t last_access_s = 0;   // seconds since cache start
  uint32_t retention_deadline_s = 0;  // 0 = none; seconds since cache start
  uint16_t size_class = 0;      // slot size class in its tier
  uint8_t tier = 0;             // TierId
  std::atomic<uint8_t> state{0};  // BlockState
  uint8_t priority = 35;
  std::atomic<uint8_t> flags{0};  // kFlag*, changed under the shard lock
  uint8_t tenant = 0;           // tenant index; immutable while the id is allocated
  uint8_t reserved_ = 0;

  Slot slot() const { return Slot{offset, size, size_class}; }
};
static_assert(sizeof(BlockEntry) == 80, "BlockEntry is expected to be 80 bytes");

class BlockIndex {
 public:
  // `max_entries`: most blocks held at once (ids are < max_entries).
  BlockIndex(uint32_t max_entries, uint32_t num_shards = 64);
  ~BlockIndex();
  BlockIndex(const BlockIndex&) = delete;
  BlockIndex& operator=(const BlockIndex&) = delete;

  uint32_t ShardOf(const BlockKey& key) const {
    return static_cast<uint32_t>((key.hi ^ (key.hi >> 29)) % num_shards_);
  }
  std::mutex& ShardMutex(uint32_t shard) const { return shards_[shard].mu; }
  std::mutex& MutexFor(const BlockKey& key) const { return ShardMutex(ShardOf(key)); }

  // REQUIRES: the key's shard mutex is held (for all *Locked methods).
  BlockId FindLocked(const BlockKey& key) const;
  // A fresh entry for `key` (state kFree, fields zeroed, key set), inserted
  // in the map. REQUIRES: key absent. ResourceExhausted when max_entries ids
  // are in use.
  Result<BlockId> InsertLocked(const BlockKey& key);
  // Removes `id`'s key from the map. The id stays allocated until FreeId().
  void EraseLocked(BlockId id);

  // Returns an id whose key was erased to the free list.
  void FreeId(BlockId id);

  BlockEntry& entry(BlockId id) const {
    return chunks_[id >> kChunkShift][id & (kChunkSize - 1)];
  }

  // Calls fn(id) for every key in the map, one shard at a time, with that
  // shard's mutex held (fn may read and change the entry's fields as a
  // *Locked caller may). REQUIRES: fn takes no shard mutex and inserts or
  // erases nothing. Cold path (admin listings, shutdown flush), O(entries).
  void ForEachLocked(const std::function<void(BlockId)>& fn) const;

  // Number of keys in the map.
  size_t size() const { return live_.load(std::memory_order_relaxed); }
  uint32_t max_entries() const { return max_entries_; }
  // Bytes held by entries and tables.
  size_t MemoryUsage() const;

 private:
  static constexpr uint32_t kChunkShift = 12;
  static constexpr uint32_t kChunkSize = 1u << kChunkShift;

  struct alignas(64) Shard {
    mutable std::mutex mu;
    std::vector<uint32_t> slots;  // 0 = empty, else id + 1
    uint32_t count = 0;
  };

  size_t Home(const Shard& s, const BlockKey& key) const {
    return static_cast<size_t>(key.lo) & (s.slots.size() - 1);
  }
  void Grow(Shard& s);

  const uint32_t max_entries_;
  const uint32_t num_shards_;
  std::unique_ptr<Shard[]> shards_;
  std::unique_ptr<std::unique_ptr<BlockEntry[]>[]> chunks_;
  std::atomic<size_t> live_{0};

  std::mutex id_mu_;
  std::vector<BlockId> free_ids_;
  uint32_t next_id_ = 0;
  uint32_t num_chunks_ = 0;
  std::atomic<size_t> table_bytes_{0};
};

}  // namespace kvtier
