// GpuSession: the GPU path of kvtier::Client. Loads leased blocks straight
// into an engine's paged KV pool and stores pool pages straight into the
// daemon's slots; no byte passes through the daemon. Host slots move either
// by the loader's gather/scatter kernel over PCIe or by the copy engines
// through a bounded device staging ring and a device scatter
// (loader/gpu_copy.h, HostCopyPath below); HBM slots by the kernel.
//
//   auto client  = Client::Connect(socket).value();
//   auto gpu     = GpuSession::Create(client.get(), {.device = 0}).value();
//   auto ns      = client->OpenNamespace(spec).value();
//   auto lease   = ns->Lookup(keys).value();                   // pins a prefix
//   gpu->Load(*ns, lease, pool, pages, stream);                // gather + verify
//   ... prefill the rest ...
//   gpu->Store(*ns, new_keys, pool, new_pages, {}, stream);    // reserve, scatter, commit
//
// At Create() the session page-locks the client's mapping of the daemon's
// host segment once (cudaHostRegister, mapped: kernels read and write slots
// over PCIe through its device address) and, when the daemon has an HBM tier
// on the session's GPU, opens that arena through CUDA IPC
// (Client::GetHbmSegment(device)). A lease's blocks then resolve to device
// addresses: host blocks to the registered segment + offset, HBM blocks to
// the IPC mapping + offset.
//
// GPUs: a namespace used with a session should be bound to the session's GPU
// (ns->set_device(session->device()), so that the daemon promotes its hits to
// that GPU's HBM tier); a store binds an unbound namespace itself, so that
// HBM slots are always reserved in the arena this session opened. A
// namespace bound to another GPU is refused. A lease does not say which
// GPU's HBM tier a block is in (kvtier.capnp's BlockLocation has no device):
// HBM blocks are read from this session's arena, and a block that another
// GPU's engine stored in its own arena fails its checksum (Corruption), never
// loads wrong bytes silently.
//
// Load: one batched gather (or one launch per layer group, with LayerEvents
// the engine waits on per layer); the kernel checksums every block it moves
// and Wait() compares each with the checksum the block was committed with:
// Corruption names the first block that differs (treat it and the rest of
// the lease as a miss). Store: Reserve, one scatter kernel into the reserved
// slots (host or HBM) computing the checksums, then Commit with them.
//
// Asynchrony: StartLoad / StartStore queue the work on the engine's stream
// and return a handle; Wait() blocks until it is done, then verifies (load)
// or commits (store). Load() and Store() are Start + Wait.
//
// Ownership: the session borrows the Client (which must outlive it: the
// registration covers the client's mapping) and owns the registration, the
// IPC mapping, a GpuCopier and per-transfer scratch buffers (reused, so a
// warm session allocates nothing per call). Handles borrow the session, which
// must outlive them; a lease must stay alive until its load's Wait() returns
// (the pins keep its slots from being reused), and a pool until the copies
// that name it are done.
//
// Thread safety: like the Client — a session and its handles belong to the
// thread that uses the Client (RPCs run on that thread's event loop). Every
// call makes the session's device current on the calling thread. One
// exception: GpuLoad::Ready() and GpuLoad::Wait() make no RPC and may run on
// any thread, provided nothing else uses that GpuLoad meanwhile (the
// session's pool of scratch buffers, which they return to, is locked).
//
// Without CUDA (or without a GPU) Create() returns Unavailable.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "engine_adapter/client.h"
#include "engine_adapter/gpu_plan.h"
#include "loader/gpu_copy.h"
#include "loader/gpu_runtime.h"
#include "loader/kv_pool.h"
#include "tiers/status.h"

namespace kvtier {

class GpuSession;
struct GpuTransferScratch;

// How a transfer between host slots and the pool moves its bytes
// (docs/loader.md, "Two paths for host slots").
enum class HostCopyPath : uint8_t {
  kAuto = 0,        // chosen per transfer from what was measured (below)
  kSmGather = 1,    // the gather/scatter kernel reads (writes) the slots over PCIe
  kCopyEngine = 2,  // DMA by the copy engines into device staging + a device scatter
};
const char* HostCopyPathName(HostCopyPath path);
// "auto", "sm" or "dma" (the names --help shows); InvalidArgument otherwise.
Result<HostCopyPath> ParseHostCopyPath(const std::string& name);

// The kAuto rule: the copy engines for a transfer whose slots are all in the
// host tier and that moves at least `min_bytes`; the SM gather for smaller
// ones (one kernel, no staging hop) and for transfers that mix tiers.
HostCopyPath ChooseHostCopyPath(HostCopyPath setting, bool all_host, uint64_t bytes,
                                uint64_t min_bytes);

struct GpuSessionOptions {
  // CUDA device of the engine's pool; -1: the calling thread's current device.
  int device = -1;
  // Open the daemon's HBM tier (CUDA IPC) when it has one. With false, leases
  // that name HBM blocks and stores that land in HBM fail with Unavailable.
  bool open_hbm = true;
  // The gather/scatter kernels' batch limits and tuning (loader/gpu_copy.h)
  // for transfers that touch host slots (over PCIe) ...
  GpuCopier::Options copier;
  // ... and for transfers whose slots are all in the HBM tier (device to
  // device), which may favour other tuning (docs/gpu.md).
  GpuCopier::Options hbm_copier;
  // Store() of more than this many bytes runs as a pipeline of chunks of
  // about this size: the Reserve of chunk i + 1 and the Commit of chunk i
  // overlap the scatter of chunk i + 1 on the GPU, so that a long store into
  // host slots runs at the PCIe copy's speed instead of adding its RPCs to
  // it. A store whose first chunk to copy lands wholly in HBM does the rest
  // in one chunk (its copy is shorter than the RPCs it would add). 0: one
  // chunk.
  uint64_t store_chunk_bytes = 256ull << 20;
  // Chunks of a pipelined Store() in flight at once (at least 1): the host
  // commits the oldest and reserves the next while the others copy.
  uint32_t store_pipeline_depth = 2;
  // Transfers of host slots: kAuto picks per transfer (ChooseHostCopyPath
  // with auto_dma_min_bytes); kSmGather and kCopyEngine force one path
  // (transfers that mix host and HBM slots always take the SM gather).
  // copier.staging_bytes bounds the device memory the copy engines' path
  // stages through.
  HostCopyPath host_path = HostCopyPath::kAuto;
  uint64_t auto_dma_min_bytes = 16ull << 20;
};

struct GpuLoadOptions {
  // 0: one launch for all layers. n > 0: layer-wise, one launch per n layers,
  // an event of `events` recorded after each (LayerEvents::StreamWaitLayer).
  // Layer-wise loads take at most copier.max_blocks blocks.
  uint32_t layers_per_group = 0;
  LayerEvents* events = nullptr;
  // false: no checksums are computed or verified (the kernel runs 2-3%
  // faster from HBM, docs/gpu.md). Only for memory the engine trusts
  // completely: a damaged host slot, or an HBM block another GPU's engine
  // stored in its own arena, then loads silently wrong.
  bool verify = true;
};

// A load in flight. Move-only; destruction waits for the GPU (not verifying).
class GpuLoad {
 public:
  GpuLoad();
  GpuLoad(GpuLoad&&) noexcept;
  GpuLoad& operator=(GpuLoad&&) noexcept;
  ~GpuLoad();

  size_t blocks() const { return blocks_; }
  // Whether the copy is done (Wait() would not block). IOError from CUDA.
  Result<bool> Ready() const;
  // Blocks until the copy is done, then verifies every block's checksum.
  // OK; Corruption naming the first block (index and key) whose bytes differ
  // from what was committed; IOError (CUDA). Later calls return the same.
  Status Wait();
  // After Wait(): how many leading blocks arrived intact (all of them when
  // Wait() returned OK; the index of the first bad block on Corruption; 0 on
  // IOError or before Wait()). An engine keeps these and recomputes the rest.
  size_t verified_blocks() const { return verified_; }
  // The path the copy took: kCopyEngine or kSmGather (also for HBM slots).
  HostCopyPath path() const { return path_; }

 private:
  friend class GpuSession;
  GpuSession* session_ = nullptr;
  std::unique_ptr<GpuTransferScratch> scratch_;
  HostCopyPath path_ = HostCopyPath::kSmGather;
  size_t blocks_ = 0;
  size_t verified_ = 0;
  bool waited_ = false;
  Status result_;
};

// A store in flight: reserved slots being written. Move-only; destruction
// waits for the GPU, then aborts the reservation unless Wait() committed it.
class GpuStore {
 public:
  GpuStore();
  GpuStore(GpuStore&&) noexcept;
  GpuStore& operator=(GpuStore&&) noexcept;
  ~GpuStore();

  // Reserved slots being written.
  size_t blocks() const;
  // Whether the scatter is done. IOError from CUDA.
  Result<bool> Ready() const;
  // Blocks until the scatter is done, then commits the written slots with the
  // checksums the kernel computed. Errors: IOError (CUDA; the reservation is
  // aborted), Commit's (Unavailable, InvalidArgument). Call once.
  Result<StoreResult> Wait();
  // The path the copy took (as GpuLoad::path()).
  HostCopyPath path() const { return path_; }

 private:
  friend class GpuSession;
  GpuSession* session_ = nullptr;
  std::unique_ptr<GpuTransferScratch> scratch_;
  HostCopyPath path_ = HostCopyPath::kSmGather;
  ClientTxn txn_;
  StoreResult result_;
  bool waited_ = false;
};

// Where the host's time went in one GpuSession::Store() (steady clock, ms),
// for benchmarks and for tracing a slow store. The GPU copies meanwhile: a
// pipelined store hides these under its chunks' copies except the first
// chunk's Reserve and queueing and the last chunk's Commit.
struct GpuStoreStats {
  uint32_t chunks = 0;          // StartStore calls (each a Reserve)
  double total_ms = 0;          // the whole call
  double first_queued_ms = 0;   // until the first chunk's copy was queued
  double reserve_ms = 0;        // Reserve RPCs
  double queue_ms = 0;          // planning and queueing the copies
  double wait_ms = 0;           // waiting for the GPU
  double commit_ms = 0;         // Commit RPCs
};

class GpuSession {
 public:
  // Registers the client's host segment on `options.device` and opens the
  // daemon's HBM tier on that GPU. Errors: InvalidArgument (no client, no
  // mapped segment, the daemon's GPU of that number is another PCI device),
  // Unavailable (no CUDA, no GPU), ResourceExhausted (pinning or device
  // memory), IOError (CUDA; also an HBM tier the daemon has but this process
  // cannot open — pass open_hbm = false to go on without it), and the
  // client's RPC errors.
  static Result<std::unique_ptr<GpuSession>> Create(Client* client,
                                                    const GpuSessionOptions& options = {});
  ~GpuSession();
  GpuSession(const GpuSession&) = delete;
  GpuSession& operator=(const GpuSession&) = delete;

  int device() const { return device_; }
  bool has_hbm() const { return segments_.hbm != nullptr; }
  // Why has_hbm() is false: OK when it is true or open_hbm was false;
  // Unavailable when the daemon has no HBM tier on this GPU.
  const Status& hbm_status() const { return hbm_status_; }
  // Device addresses of the daemon's segments in this process.
  const GpuSegments& segments() const { return segments_; }

  // Queues the load of lease blocks [0, pages.size()) into pool pages
  // pages[i] on `stream` (pages.size() may be below lease.size(): a prefix).
  // Errors (nothing queued): InvalidArgument (the pool does not match the
  // namespace layout or is invalid, more pages than blocks, a page out of
  // range or named twice, layer-wise options, `ns` bound to another GPU),
  // Unavailable (an HBM block
  // without the HBM tier open), Corruption (a location outside a segment),
  // IOError (CUDA).
  // REQUIRES: `lease` comes from `ns` and stays alive until Wait() returns.
  Result<GpuLoad> StartLoad(const ClientNamespace& ns, const ClientLease& lease,
                            const KvPool& pool, std::span<const uint32_t> pages,
                            GpuStream stream, const GpuLoadOptions& options = {});
  // StartLoad + Wait.
  Status Load(const ClientNamespace& ns, const ClientLease& lease, const KvPool& pool,
              std::span<const uint32_t> pages, GpuStream stream,
              const GpuLoadOptions& options = {});

  // Reserves slots for `keys` (a chain, as ClientNamespace::Reserve), then
  // queues the scatter of pages[i] into the slot of keys[i] for every slot
  // reserved, checksums computed in the kernel. Keys already cached or being
  // written by another client are counted, not written.
  // Binds `ns` to this session's GPU when it is unbound.
  // Errors: InvalidArgument (pool/layout mismatch, keys.size() !=
  // pages.size(), a page out of range, `ns` bound to another GPU),
  // Unavailable (the daemon stores into
  // HBM and the HBM tier is not open; the reservation is aborted), Reserve's
  // errors, IOError (CUDA).
  Result<GpuStore> StartStore(ClientNamespace& ns, std::span<const BlockKey> keys,
                              const KvPool& pool, std::span<const uint32_t> pages,
                              const StoreOptions& options, GpuStream stream);
  // StartStore + Wait, pipelined in chunks above
  // GpuSessionOptions::store_chunk_bytes (the first an eighth of it, each
  // next one twice the last up to it; store_pipeline_depth of them in
  // flight): chunk i + 1 is chained to the last
  // key of chunk i, `options.ranges` apply to the keys they name, and each
  // chunk is committed once its copy is done. On an error, the chunks
  // committed before it stay stored and the rest is aborted.
  Result<StoreResult> Store(ClientNamespace& ns, std::span<const BlockKey> keys,
                            const KvPool& pool, std::span<const uint32_t> pages,
                            const StoreOptions& options, GpuStream stream);
  // The timings of the last Store() (also one that failed).
  const GpuStoreStats& last_store_stats() const { return store_stats_; }

 private:
  friend class GpuLoad;
  friend class GpuStore;
  GpuSession() = default;

  // A scratch able to hold `blocks` checksums.
  Result<std::unique_ptr<GpuTransferScratch>> TakeScratch(size_t blocks);
  void ReturnScratch(std::unique_ptr<GpuTransferScratch> scratch);
  // Queues the copy of scratch->plan.refs and the checksum read-back, and
  // records scratch->done.
  // Returns the path the copy took.
  Result<HostCopyPath> Launch(GpuTransferScratch* scratch, const KvPool& pool,
                              TransferDirection direction, GpuStream stream,
                              const GpuLoadOptions& options);

  int device_ = 0;
  uint64_t store_chunk_bytes_ = 0;
  uint32_t store_pipeline_depth_ = 2;
  GpuStoreStats store_stats_;
  GpuStoreStats* timing_ = nullptr;  // &store_stats_ while Store() runs
  std::chrono::steady_clock::time_point store_start_;  // when it began
  HostCopyPath host_path_ = HostCopyPath::kAuto;
  uint64_t auto_dma_min_bytes_ = 0;
  HostRegistration host_reg_;
  IpcMemMapping hbm_map_;
  GpuSegments segments_;
  Status hbm_status_;
  std::unique_ptr<GpuCopier> copier_;      // transfers touching host slots
  std::unique_ptr<GpuCopier> hbm_copier_;  // transfers of HBM slots only
  std::mutex scratch_mu_;  // GpuLoad::Wait() may return scratch from another thread
  std::vector<std::unique_ptr<GpuTransferScratch>> free_scratch_;
};

}  // namespace kvtier
