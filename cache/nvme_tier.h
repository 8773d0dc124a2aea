// NvmeTier: the cache's third tier — blocks in an NvmeStore file, indexed
// durably in RocksDB, moved to and from host slots by one I/O thread.
//
// Demotion: write-back (default) writes cold host blocks (host usage above
// the high watermark, coldest first by the host policy, through the
// admission policy) to NVMe in the background, so that when the host tier
// evicts them they live on as NVMe-resident blocks, and FlushHost() writes
// the rest at a graceful stop; write-through and write-async write every
// block at commit (write-through's commits are told when their blocks are
// durable: NvmeDurableWait). The RocksDB record is written only after the
// data write completed; only then is the block marked as having an NVMe copy.
// Promotion: Cache::Acquire marks NVMe-resident blocks LOADING (pinned by the
// lease), allocates host slots and queues reads; each read is verified
// (header and payload checksum). A verification failure is a miss, counted
// and quarantined (extent freed, record deleted), never data; an I/O error
// is retried twice, then a miss that keeps the block and its record.
// Errors: a failed write (ENOSPC, EIO) stops admission (NvmeStore), is
// counted and logged once per burst; reads and the other tiers go on.
// A failed index write (a full data-dir file system) makes the tier
// degraded the same way: writes stop (a failed RocksDB is never written
// again), reads of recovered and written blocks go on, and every
// admission_probe_ms the I/O thread reopens the index; the first reopen
// that takes the deletes left pending resumes writes. An extent whose
// record could not be deleted keeps its space until the delete lands, so it
// is never reused under a record that still names it.
// Restart: Open() recovers every index record whose extent header agrees;
// the rest are dropped and counted. A damaged index (RocksDB reports
// Corruption: a deleted CURRENT, a bit-flipped .sst, an empty MANIFEST) is
// renamed aside (<index>.damaged-<UTC time>, never deleted) and rebuilt in
// the background from the extents' self-describing headers
// (NvmeStore::ScanHeaders): writes stop meanwhile, Stats() says
// index_rebuilding, and the blocks found become NVMe-resident at the end.
//
// Thread safety: the public methods may be called from any thread; the
// NvmeStore is driven only by the I/O thread. Lock order: host tier mutex →
// nvme mutex → index shard mutex; jobs_mu_ is a leaf.
#pragma once

#include <array>
#include <atomic>
#include <cstring>
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

// A write-through commit waiting for its blocks' NVMe writes: `done` is
// called once, with OK or the first error, when `remaining` reaches 0.
struct NvmeDurableWait {
  std::mutex mu;
  size_t remaining = 0;
  Status first_error;
  std::function<void(Status)> done;
};

class NvmeTier {
 public:
  // Opens store and index, recovers the blocks the index names into the
  // cache's index as NVMe-resident, and starts the I/O thread.
  static Result<std::unique_ptr<NvmeTier>> Open(Cache* cache, NvmeTierOptions options);
  ~NvmeTier();  // stops the I/O thread after in-flight I/O completed

  // Queues the NVMe write of a committed host block; `wait` (if any) is
  // settled when the write and its index record are durable or failed.
  // REQUIRES: the block is READY in the host tier and its kFlagDemoting is
  // set by the caller.
  void EnqueueWrite(BlockId id, std::shared_ptr<NvmeDurableWait> wait = nullptr);
  // See Cache::FlushHostToNvme; `deadline_ns` on the SteadyNowNs clock.
  uint64_t FlushHost(uint64_t deadline_ns);
  // Starts promotion of lease block `i` (state LOADING, pinned): allocates a
  // host slot and queues the read. On failure, completes it as failed.
  void StartPromotion(const std::shared_ptr<Lease::State>& st, size_t i);
  // Host eviction of a block with an NVMe copy: it becomes NVMe-resident.
  // REQUIRES: the shard lock of the block is held.
  void BecomeResidentLocked(BlockEntry& e);
  // Drops block `id`'s NVMe copy (its extent freed, its index record
  // deleted) unless it is pinned, not readable or being written; a block
  // whose only copy it was leaves the index. Whether it was dropped.
  // (An operator's eviction of a namespace, Cache::EvictNamespace.)
  bool DropBlock(BlockId id);

  // A block with an NVMe copy moved into (+1) or out of (-1) the host tier
  // between memory tiers (HBM ⇄ host): write-back's accounting follows it.
  void HostCopyMoved(const BlockEntry& e, int direction) {
    if ((e.flags.load(std::memory_order_relaxed) & kFlagOnNvme) && e.tier < kMaxTiers)
      host_clean_bytes_[e.tier] += direction * static_cast<int64_t>(e.size);
  }

  void Drain();
  TierStats Stats() const;
  bool write_through() const { return options_.write_through; }
  bool durable_commit() const { return options_.durable_commit; }

 private:
  struct Job {
    enum Kind : uint8_t { kWrite, kRead } kind;
    BlockId id;
    // Reads: the lease and block index to complete, and the host slot.
    std::shared_ptr<Lease::State> lease;
    size_t lease_index = 0;
    Slot slot;
    NvmeExtent extent;
    // Writes of a write-through commit: settled when durable or failed.
    std::shared_ptr<NvmeDurableWait> wait;
    // Reads: failed attempts so far (an I/O error is retried kReadRetries
    // times before the lookup is answered with a miss).
    uint8_t attempts = 0;
  };
  static constexpr uint8_t kReadRetries = 2;
  static void Settle(const std::shared_ptr<NvmeDurableWait>& wait, const Status& st);

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
  // Drops block `id`'s NVMe copy unless it is pinned or not readable; a block
  // with no other copy leaves the index (and its namespace's count). Shared
  // by NVMe eviction and namespace eviction. REQUIRES: mu_.
  bool DropBlockLocked(BlockId id);
  // REQUIRES: mu_. Whether every slot of region r holds an extent of an
  // evictable block (none is being written or read).
  bool RegionReleasableLocked(uint32_t r);
  void DropExtentLocked(BlockId id);  // REQUIRES: mu_
  void Clean();           // write-back: demote cold host blocks
  void NoteError(const Status& st);
  // Deletes `x`'s record, then frees it (when `free_after`); when the index
  // cannot take the delete, both wait in pending_ for ProbeIndex().
  // REQUIRES: mu_.
  void ForgetExtentLocked(const NvmeExtent& x, bool free_after);
  // I/O thread: while the index is failed, every admission_probe_ms reopens
  // it and applies the pending deletes; on success writes resume.
  void ProbeIndex();
  bool WritesAllowed() const {
    return store_->AcceptsWrites() && !index_->failed() &&
           !rebuilding_.load(std::memory_order_relaxed);
  }
  // Makes `x` (verified by RecoverExtents) an NVMe-resident block of the
  // cache; false when the key is present already or the index is full.
  bool AdoptExtent(const NvmeExtent& x, uint8_t priority);
  // Index rebuild: sets the damaged index aside (renamed, never deleted),
  // opens a fresh one and lets the I/O thread scan the file. Open() only.
  Status StartRebuild(const NvmeIndexOptions& io, const std::string& damage);
  std::string RebuildMarker() const;
  // I/O thread: scans the next part of the file (false: over the read
  // budget, nothing done); at the end adopts what was found.
  bool RebuildStep();
  void FinishRebuild();

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
  // Records the index could not delete (it had failed), and whether their
  // extents are to be freed once it can.
  struct Unindexed {
    NvmeExtent extent;
    bool free_after;
  };
  std::vector<Unindexed> pending_;
  // I/O thread: when the index was last probed (or its failure first
  // seen); 0 while it is healthy.
  int64_t last_index_probe_ms_ = 0;

  // Index rebuild (I/O thread, but rebuilding_ and rebuild_scanned_ are read
  // by Stats()): the scan's position, and per tag the newest extent found.
  std::atomic<bool> rebuilding_{false};
  std::atomic<uint64_t> rebuild_scanned_{0};
  uint64_t rebuild_cursor_ = 0;
  uint64_t rebuild_started_ns_ = 0;
  struct TagHash {
    size_t operator()(const ExtentTag& t) const {
      uint64_t v;
      std::memcpy(&v, t.data(), 8);
      return static_cast<size_t>(v);
    }
  };
  std::unordered_map<ExtentTag, NvmeExtent, TagHash> rebuild_found_;

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
  // Commits whose writes completed and were indexed in this round: settled
  // after one fdatasync of the file and one fsync of the index log.
  std::vector<std::shared_ptr<NvmeDurableWait>> durable_pending_;
  uint64_t next_user_data_ = 1;
  uint32_t writes_in_flight_ = 0;

  std::atomic<uint64_t> demotions_{0}, promotions_{0}, io_errors_{0}, checksum_failures_{0};
  std::atomic<uint64_t> evictions_{0}, evicted_bytes_{0}, recovered_{0}, recovery_dropped_{0};
  std::atomic<uint64_t> declined_{0};
  // Bytes of host-resident blocks that also have an NVMe copy (clean), and of
  // NVMe writes in flight: write-back keeps free + clean + writing above
  // (1 - high_watermark) of the host tier, so evictions find clean victims.
  // One of each per host tier (a tenant's), by TierId.
  std::array<std::atomic<int64_t>, kMaxTiers> host_clean_bytes_{};
  std::array<std::atomic<int64_t>, kMaxTiers> writing_bytes_{};
  // Extent payload bytes added (+) or dropped (-) for block `id`: the
  // tier's and its tenant's counts. REQUIRES: mu_ held.
  void CountExtentLocked(BlockId id, int64_t bytes);
  // Write-back of one host tier (Clean).
  void CleanTier(TierId host);
  // Error logging, once per burst.
  std::mutex log_mu_;
  uint64_t last_log_ns_ = 0;
  uint64_t suppressed_ = 0;
};

}  // namespace kvtier
