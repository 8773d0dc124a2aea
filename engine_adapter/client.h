// kvtier::Client: the library engines link to use a running kvtierd.
//
//   auto client = Client::Connect("/run/user/1000/kvtier.sock");
//   auto ns     = (*client)->OpenNamespace(spec);
//   auto keys   = (*ns)->HashTokens(prompt_tokens);          // local, spec'd
//   auto lease  = (*ns)->Lookup(keys);                        // pins a prefix
//   (*ns)->Load(*lease, destinations);                        // copy + verify
//   ... prefill the rest ...
//   (*ns)->Store(new_keys, payloads);                         // reserve/write/commit
//
// The daemon hands over its host segment's fd — that of the client's tenant
// (docs/security.md) — when the first namespace is opened; the client maps it
// and reads and writes slots in place, so no payload byte crosses the socket.
// Leases and transactions are RAII: dropping one releases its pins or aborts
// its write on the daemon.
//
// Thread safety: a Client and everything it returns belong to the thread that
// called Connect() (Cap'n Proto runs one event loop per thread). Use one
// Client per thread; several Clients may share a thread. Namespaces, leases
// and transactions keep their connection alive: they may outlive the Client.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "cache/cache.h"
#include "cache/keys.h"
#include "tiers/status.h"
#include "tiers/tier.h"

namespace kvtier {

class ClientNamespace;

struct RemoteBlock {
  BlockKey key;
  TierKind tier;
  uint64_t offset;
  uint32_t size;
  uint64_t checksum;
  int device = -1;  // tier kHbm: the CUDA device of that HBM tier
};

// Pins on a cached prefix. Move-only; destruction releases the pins.
class ClientLease {
 public:
  ClientLease();
  ClientLease(ClientLease&&) noexcept;
  ClientLease& operator=(ClientLease&&) noexcept;
  ~ClientLease();

  const std::vector<RemoteBlock>& blocks() const { return blocks_; }
  size_t size() const { return blocks_.size(); }
  bool empty() const { return blocks_.empty(); }
  // Releases the pins now and waits for the daemon's answer (one round
  // trip). Dropping the lease (destruction, assignment) releases them too,
  // without waiting. Idempotent.
  Status Release();

 private:
  void Drop();
  friend class ClientNamespace;
  friend class Client;
  friend class PendingLookup;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<RemoteBlock> blocks_;
};

// A Lookup sent and not yet answered (ClientNamespace::StartLookup).
// Move-only. Dropping it before Wait() cancels the call: the daemon releases
// what it pinned for it, also when its answer had already arrived.
class PendingLookup {
 public:
  PendingLookup();
  PendingLookup(PendingLookup&&) noexcept;
  PendingLookup& operator=(PendingLookup&&) noexcept;
  ~PendingLookup();

  // Blocks until the daemon answers and returns the lease, as Lookup() does.
  // InvalidArgument if it was waited for already (or is default-constructed).
  Result<ClientLease> Wait();

 private:
  friend class ClientNamespace;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A reservation of slots to write. Move-only; destruction aborts it.
class ClientTxn {
 public:
  struct Slot {
    BlockKey key;
    ReserveOutcome outcome;
    TierKind tier;    // where the slot is (kReserved only): host or hbm
    uint64_t offset;  // in that tier's segment
    uint8_t* data;    // host slots: where to write, in the mapped segment; else null
    uint32_t size;
    int device = -1;  // tier kHbm: the CUDA device of that HBM tier
  };
  ClientTxn();
  ClientTxn(ClientTxn&&) noexcept;
  ClientTxn& operator=(ClientTxn&&) noexcept;
  ~ClientTxn();

  const std::vector<Slot>& slots() const { return slots_; }
  size_t reserved() const;
  // Makes the written slots readable. `checksums` has one value per slot
  // (only kReserved ones are used). With no argument, the client computes
  // the checksums of what is in the slots.
  Status Commit(std::span<const uint64_t> checksums);
  Status Commit();
  Status Abort();

 private:
  friend class ClientNamespace;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::vector<Slot> slots_;
};

struct StoreResult {
  size_t stored = 0;     // blocks written and committed by this call
  size_t present = 0;    // already cached
  size_t in_flight = 0;  // being written by someone else
  size_t no_space = 0;   // refused: tier full of pinned or writing blocks
};

struct RemoteStats {
  uint64_t blocks_ready = 0, blocks_writing = 0, pinned_blocks = 0;
  uint64_t acquires = 0, blocks_hit = 0, blocks_missed = 0, commits = 0, aborts = 0;
  uint64_t leases_open = 0, txns_open = 0, connections_open = 0;
  struct Tier {
    std::string name;
    uint64_t capacity_bytes = 0, used_bytes = 0, blocks = 0, hits = 0, evictions = 0;
  };
  std::vector<Tier> tiers;
  // Live namespaces and what they hold (`kvtier namespaces`).
  struct Namespace {
    uint32_t id = 0;
    std::string model_id, model_revision;
    uint32_t tp_rank = 0, tp_size = 1;
    uint64_t block_bytes = 0;
    bool salted = false;
    uint64_t blocks = 0, bytes = 0, hits = 0, evictions = 0;
  };
  std::vector<Namespace> namespaces;
};

struct ConnectOptions {
  // The tenant token to give when opening namespaces (docs/security.md);
  // empty: the daemon knows the tenant from the process's uid/gid.
  std::string token;
};

class Client {
 public:
  // Connects. Errors: Unavailable (no daemon on the socket), InvalidArgument
  // (bad path).
  static Result<std::unique_ptr<Client>> Connect(const std::string& socket_path,
                                                 const ConnectOptions& options = {});
  ~Client();

  // Opens a namespace of the client's tenant; the first one also fetches
  // and maps the tenant's host segment. InvalidArgument (bad spec, as the
  // daemon reports it), PermissionDenied (no tenant for this process or
  // token), IOError (mapping), Unavailable.
  Result<std::unique_ptr<ClientNamespace>> OpenNamespace(const NamespaceSpec& spec);
  // The tenant the daemon put this connection in ("" for the default one);
  // empty before the first OpenNamespace.
  const std::string& tenant() const;
  Result<RemoteStats> Stats();
  Status Ping();

  // How long a call polls for the daemon's answer before its thread sleeps
  // (default 50 us; 0: sleep at once). Polling yields the CPU to any other
  // runnable thread between polls. A reply that arrives within the window
  // reaches a running thread instead of one the kernel must wake, which is
  // most of a small call's latency on a virtual machine
  // (docs/performance.md, RPC).
  void set_reply_spin(std::chrono::nanoseconds spin);

  // The daemon's HBM tier, for clients that open it with CUDA IPC.
  // Unavailable when the daemon has none.
  struct HbmSegment {
    int device = 0;
    std::array<char, 64> ipc_handle{};  // a cudaIpcMemHandle_t
    uint64_t bytes = 0;
    std::string pci_bus_id;
  };
  // `device`: the HBM tier on that CUDA device; -1: the first.
  Result<HbmSegment> GetHbmSegment(int device = -1);

  // Tensor parallelism: acquires keys[r] in ranks[r] (namespaces opened on
  // this client, one per TP rank) and keeps only the prefix every rank has:
  // all returned leases have the same length.
  Result<std::vector<ClientLease>> AcquireTp(std::span<ClientNamespace* const> ranks,
                                             std::span<const std::vector<BlockKey>> keys);

  // The daemon's host segment (the tenant's) as mapped in this process;
  // null before the first OpenNamespace.
  uint8_t* segment_base() const;
  uint64_t segment_bytes() const;

  struct Impl;

 private:
  explicit Client(std::shared_ptr<Impl> impl);
  std::shared_ptr<Impl> impl_;
};

class ClientNamespace {
 public:
  ~ClientNamespace();

  const NamespaceSpec& spec() const { return spec_; }
  uint64_t block_bytes() const { return spec_.layout.BlockBytes(); }
  uint32_t id() const { return id_; }
  const KeyHasher& hasher() const { return hasher_; }

  // Keys of the full blocks of `tokens`, computed locally (docs/hashing.md).
  std::vector<BlockKey> HashTokens(std::span<const uint32_t> tokens) const;
  // The same, computed by the daemon.
  Result<std::vector<BlockKey>> HashTokensRemote(std::span<const uint32_t> tokens);

  // Longest cached prefix of `keys`, pinned. An empty lease is a miss.
  Result<ClientLease> Lookup(std::span<const BlockKey> keys);
  // Where the longest cached prefix of `keys` lives, one tier per block, with
  // nothing pinned or promoted (one round trip): to decide how much of a hit
  // is worth loading before Lookup() pins it (and promotes NVMe blocks). The
  // answer may be stale by the time of the Lookup. Errors: Unavailable,
  // InvalidArgument (too many keys).
  Result<std::vector<TierKind>> Probe(std::span<const BlockKey> keys);
  // Lookup in two halves: sends the call and returns without waiting for the
  // answer, so that several may be in flight on one connection and the
  // client may do other work (and other calls) meanwhile. The daemon answers
  // a lookup of blocks it must first read from NVMe when their reads are
  // done; with the next lookup already sent, its disk reads queue behind the
  // current ones instead of waiting for a round trip. The keys are copied.
  Result<PendingLookup> StartLookup(std::span<const BlockKey> keys);

  // Copies the leased blocks into `dst` (dst[i] receives block i, block_bytes()
  // each; dst.size() may be smaller than the lease) and verifies each
  // checksum. Corruption names the first block whose bytes do not match.
  Status Load(const ClientLease& lease, std::span<uint8_t* const> dst);

  // Reserves slots for `keys` (a chain; `options.first_parent` is the key
  // before keys[0]).
  Result<ClientTxn> Reserve(std::span<const BlockKey> keys, const StoreOptions& options = {});

  // Reserve, copy payloads[i] (block_bytes() each) into the reserved slots,
  // checksum, commit.
  Result<StoreResult> Store(std::span<const BlockKey> keys, std::span<const uint8_t* const> payloads,
                            const StoreOptions& options = {});

  Result<RemoteStats> Stats();

  // The CUDA device this namespace's engine runs on (-1: none, the
  // default). The daemon stores its blocks in that GPU's HBM tier (with
  // --store-tier hbm) and promotes its hits there.
  void set_device(int device) { device_ = device; }
  int device() const { return device_; }

  struct Impl;

 private:
  friend class Client;
  int device_ = -1;
  ClientNamespace(std::shared_ptr<Client::Impl> client, std::unique_ptr<Impl> impl,
                  NamespaceSpec spec, uint32_t id);
  std::shared_ptr<Client::Impl> client_;
  std::unique_ptr<Impl> impl_;
  NamespaceSpec spec_;
  KeyHasher hasher_;
  uint32_t id_;
};

}  // namespace kvtier
