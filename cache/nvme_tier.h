// NvmeTier: the cache's third tier — blocks in an NvmeStore file, indexed
// durably in RocksDB, moved to and from host slots by one I/O thread.
//
// Demotion: write-back (default) writes cold host blocks (host usage above
// the high watermark, coldest first by the host policy, through the
// admission policy) to NVMe in the background, so that when the host tier
// evicts them they live on as NVMe-resident blocks; write-through writes
// every block at commit. The RocksDB record is written only after the data
// write completed; only then is the block marked as having an NVMe copy.
// Promotion: Cache::Acquire marks NVMe-resident blocks LOADING (pinned by the
// lease), allocates host slots and queues reads; each read is verified
// (header and payload checksum) and a failure is a miss, counted and
// quarantined (extent freed, record deleted), never data.
// Errors: a failed write (ENOSPC, EIO) stops admission (NvmeStore), is
// counted and logged once per burst; reads and the other tiers go on.
// Restart: Open() recovers every index record whose extent header agrees;
// the rest are dropped and counted.
//
// Thread safety: the public methods may be called from any thread; the
// NvmeStore is driven only by the I/O thread. Lock order: host tier mutex →
// nvme mutex → index shard mutex; jobs_mu_ is a leaf.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_map>
#include <vector>

#include "cache/cache.h"
#include "eviction/admission.h"
#include "tiers/nvme_index.h"
#include "tiers/nvme_store.h"

namespace kvtier {

class NvmeTier {
 public:
  // Opens store and index, recovers the blocks the index names into the
  // cache's index as NVMe-resident, and starts the I/O thread.
  static Result<std::unique_ptr<NvmeTier>> Open(Cache* cache, NvmeTierOptions options);
  ~NvmeTier();  // stops the I/O thread after in-flight I/O completed

  // Queues the NVMe write of a committed host block. REQUIRES: the block is
  // READY in the host tier and its kFlagDemoting is set by the caller.
  void EnqueueWrite(BlockId id);
  // Starts promotion of lease block `i` (state LOADING, pinned): allocates a
  // host slot and queues the read. On failure, completes it as failed.
  void StartPromotion(const std::shared_ptr<Lease::State>& st, size_t i);
  // Host eviction of a block with an NVMe copy: it becomes NVMe-resident.
  // REQUIRES: the shard lock of the block is held.
  void BecomeResidentLocked(BlockEntry& e);

  // A block with an NVMe copy moved into (+1) or out of (-1) the host tier
  // between memory tiers (HBM ⇄ host): write-back's accounting follows it.
  void HostCopyMoved(const BlockEntry& e, int direction) {
    if (e.flags.load(std::memory_order_relaxed) & kFlagOnNvme)
      host_clean_bytes_ += direction * static_cast<int64_t>(e.size);
  }

  void Drain();
  TierStats Stats() const;
  bool write_through() const { return options_.write_through; }

 private:
  struct Job {
    enum Kind : uint8_t { kWrite, kRead } kind;
    BlockId id;
    // Reads: the lease and block index to complete, and the host slot.
    std::shared_ptr<Lease::State> lease;
    size_t lease_index = 0;
    Slot slot;
    NvmeExtent extent;
  };

  NvmeTier(Cache* cache, NvmeTierOptions options) : cache_(cache), options_(std::move(options)) {}
  Status Recover();
  void Run();
  bool PrepareJob(Job& job);  // false: retry later
  void HandleCompletion(const NvmeCompletion& c);
  void FinishRead(Job& job, const Status& st);
  // Lease block i (block `id`) is not promoted but stays on NVMe: back to
  // READY there, its pin released, the lease told.
  void KeepOnNvme(const std::shared_ptr<Lease::State>& st, size_t i, BlockId id);
  void CompleteLeaseBlock(const std::shared_ptr<Lease::State>& st, size_t i, bool ok,
                          TierId tier, uint64_t offset);
  // REQUIRES: mu_. Frees space for an extent of `payload_bytes`: the
  // policy's first victim of the same slot size, or the whole region of its
  // first victim of another size (every extent in it dropped), so the NVMe
  // tier, like the memory tiers, serves whichever sizes are in demand.
  // False when nothing could be freed.
  bool EvictForLocked(uint64_t payload_bytes);
  // REQUIRES: mu_. Drops block `victim`'s extent (the block leaves the cache
  // when NVMe held its only copy). False when it is pinned or moving.
  bool EvictBlockLocked(BlockId victim);
  // REQUIRES: mu_. Whether every slot of region r holds an extent of an
  // evictable block (none is being written or read).
  bool RegionReleasableLocked(uint32_t r);
  void DropExtentLocked(BlockId id);  // REQUIRES: mu_
  void Clean();           // write-back: demote cold host blocks
  void NoteError(const Status& st);

  Cache* cache_;
  NvmeTierOptions options_;
  std::unique_ptr<NvmeStore> store_;
  std::unique_ptr<NvmeIndex> index_;

  // Guarded by mu_: the NVMe policy, admission and where each block's copy is.
  mutable std::mutex mu_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<AdmissionPolicy> admission_;
  std::unordered_map<BlockId, NvmeExtent> extents_;
  std::unordered_map<uint64_t, BlockId> by_offset_;  // extent offset → block
  uint64_t regions_moved_ = 0;
  uint64_t used_payload_bytes_ = 0;

  // The I/O thread's inbox.
  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::condition_variable idle_cv_;
  std::deque<Job> jobs_;
  bool busy_ = false;  // the I/O thread has jobs in hand or in flight
  bool stop_ = false;
  uint64_t clean_requests_ = 0;  // Drain(): run a write-back pass first
  uint64_t clean_done_ = 0;
  std::thread thread_;

  // I/O thread only.
  std::unordered_map<uint64_t, Job> in_flight_;
  uint64_t next_user_data_ = 1;
  uint32_t writes_in_flight_ = 0;

  std::atomic<uint64_t> demotions_{0}, promotions_{0}, io_errors_{0}, checksum_failures_{0};
  std::atomic<uint64_t> evictions_{0}, evicted_bytes_{0}, recovered_{0}, recovery_dropped_{0};
  std::atomic<uint64_t> declined_{0};
  // Bytes of host-resident blocks that also have an NVMe copy (clean), and of
  // NVMe writes in flight: write-back keeps free + clean + writing above
  // (1 - high_watermark) of the host tier, so evictions find clean victims.
  std::atomic<int64_t> host_clean_bytes_{0};
  std::atomic<int64_t> writing_bytes_{0};
  // Error logging, once per burst.
  std::mutex log_mu_;
  uint64_t last_log_ns_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace kvtier
