// KvtierConnector: the engine's loop through kvtier — look up, load, prefill
// only what is missing, store, decode.
//
//   auto conn = KvtierConnector::Create(engine.get(), ckpt, {.socket = path});
//   conn->Prefill(ids, &stats);       // hash, lookup, layer-wise load, suffix prefill
//   conn->StartStores(ids);           // new full blocks, on a stream of their own
//   while (...) { engine->Decode(live); conn->PollStores(); }
//   conn->Release(id);                // after its store is done
//
// Per request, Prefill() computes the prompt's block keys (docs/hashing.md)
// in a namespace that names the checkpoint (CheckpointIdentity), sends one
// lookup per sequence (all in flight at once), and queues each hit's load into
// the sequence's own pages on a load stream of its own, one launch per layer
// group with an event after each. The engine's prefill of the rest then runs
// with a layer hook that makes layer l's attention wait for layer l's KV only,
// so later layers stream in while earlier ones compute. At least the last
// prompt token is always computed, so that its logits exist.
//
// Failure is a miss, never wrong output. Every load is verified (checksums
// computed in the copy kernel) once the prefill that read it is done; a block
// that fails, and everything after it, is recomputed: the sequence is rewound
// to the last good block and prefilled again. A lookup or load that cannot be
// had, a daemon that is absent, dies or restarts, costs the hit only: the
// connector drops the connection, runs without the cache, and reconnects at
// most once per `retry_interval`. Each kind of failure is counted
// (Counters) and logged once per episode (the first after a success).
//
// Stores go out after the first token: StartStores() reserves slots for the
// sequence's computed full blocks (not the loaded ones) and queues their
// scatter on a store stream, so decode steps on the engine's stream do not
// wait for them; PollStores() commits those whose copies are done. A
// sequence's pages stay allocated until its store is committed (Release()).
//
// Thread safety: one thread, the engine's (kvtier::Client's rule).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "cache/keys.h"
#include "engine_adapter/engine/checkpoint_identity.h"
#include "engine_adapter/gpu_session.h"
#include "engine_adapter/engine/engine.h"
#include "engine_adapter/engine/load_plan.h"
#include "engine_adapter/engine/safetensors.h"
#include "loader/gpu_runtime.h"

namespace kvtier::engine {

struct ConnectorOptions {
  // kvtierd's socket.
  std::string socket;
  // Namespace identity: blocks are shared only between engines whose KV is
  // interchangeable. Empty: CheckpointIdentity() of the checkpoint.
  std::string model_id;
  std::string model_revision;
  std::string tenant_salt;
  HashMode hash_mode = HashMode::kXxh3_128;
  bool load = true;   // look up and load cached prefixes
  bool store = true;  // store the blocks this engine computed
  // Bind the namespace to the engine's GPU: the daemon promotes its hits into
  // its HBM tier on that GPU and, with --store-tier hbm, stores there.
  bool bind_gpu = false;
  // Layers per load launch (an event after each); 0: all layers in one.
  uint32_t layers_per_group = 1;
  // How loads and stores move host-tier blocks (gpu_session.h): kAuto takes
  // the copy engines for all but small transfers.
  HostCopyPath host_path = HostCopyPath::kAuto;
  // Blocks shorter than this are not worth a lookup (a hit of fewer blocks
  // is loaded anyway once looked up).
  uint32_t min_lookup_blocks = 1;
  // After a failure that dropped the connection, wait this long before the
  // next connection attempt.
  std::chrono::milliseconds retry_interval{1000};
  // Skip the NVMe part of a hit when reading it is estimated slower than
  // recomputing it (load_plan.h): with a daemon that has an NVMe tier, each
  // lookup is preceded by a probe (one round trip, nothing pinned) of where
  // the prefix lives. false: load every hit, whatever it costs.
  bool cost_aware = true;
  // The cost rule's starting estimates; both are then learned from what this
  // engine sees (prefills without loads; lookups that read NVMe). 0 tokens/ms:
  // unknown until the first prefill of at least 256 tokens.
  double prefill_tokens_per_ms = 0;
  double nvme_bytes_per_s = 2.0e9;
  // Store priority (0-100) of the blocks this engine writes.
  uint8_t store_priority = 35;
  // Runs in Prefill() once the loads are queued, before the prefill starts
  // (with the loads in flight): fault tests kill the daemon here.
  std::function<void()> loads_queued;
};

// What the cache did for one sequence in the last Prefill().
struct CacheRequestStats {
  uint32_t prompt_tokens = 0;
  uint32_t lookup_tokens = 0;      // tokens the lease covered
  uint32_t hit_tokens = 0;         // tokens loaded, verified and used
  uint32_t recomputed_tokens = 0;  // covered by the lease but recomputed (a failure)
  uint32_t skipped_tokens = 0;     // cached on NVMe, not worth reading (cost_aware)
  double lookup_ms = 0;            // hashing + lookup (all sequences' lookups in flight)
  double load_ms = 0;              // load queued -> every layer in place (GPU events)
  // GPU events of a loaded sequence: load queued -> the engine's stream past
  // its wait for layer 0, and past its wait for the last layer -> the
  // prefill's end (what the load could not hide).
  double first_layer_ms = 0;
  double after_last_layer_ms = 0;
  double prefill_ms = 0;           // whole Prefill() call, first token sampled
  double ttft_ms = 0;              // Prefill() entered -> this sequence's first token
  std::string failure;             // empty, or why hits were dropped
};

struct ConnectorCounters {
  uint64_t requests = 0;
  uint64_t hit_tokens = 0;
  uint64_t computed_tokens = 0;
  uint64_t blocks_loaded = 0;
  uint64_t blocks_stored = 0;
  uint64_t blocks_present = 0;    // already cached when stored
  uint64_t connects = 0;
  uint64_t connect_failures = 0;
  uint64_t lookup_failures = 0;
  uint64_t load_failures = 0;     // a load that could not be queued or completed
  uint64_t corrupt_loads = 0;     // a block that failed its checksum
  uint64_t recomputed_blocks = 0; // blocks a lease covered but the engine recomputed
  uint64_t skipped_blocks = 0;    // cached on NVMe, recomputed as cheaper (cost_aware)
  uint64_t probe_failures = 0;
  uint64_t store_failures = 0;
};

class KvtierConnector {
 public:
  // Borrows `engine` (which must outlive the connector). Tries to connect at
  // once; a daemon that is absent is not an error (the connector retries).
  // InvalidArgument: empty socket, page size the namespace layout refuses.
  static Result<std::unique_ptr<KvtierConnector>> Create(Engine* engine, const Checkpoint& ckpt,
                                                         const ConnectorOptions& options);
  ~KvtierConnector();
  KvtierConnector(const KvtierConnector&) = delete;
  KvtierConnector& operator=(const KvtierConnector&) = delete;

  // Engine::Prefill through the cache. `stats` (optional) gets one entry per
  // id. `capture` may ask for the sampled rows' logits (capture.last), not
  // every position. Errors: the engine's (a failure of the cache is a miss).
  Status Prefill(const std::vector<int>& ids, std::vector<CacheRequestStats>* stats = nullptr,
                 const LogitCapture& capture = {}, std::vector<float>* logits = nullptr);
  // Queues the stores of the listed sequences' computed full prompt blocks.
  void StartStores(const std::vector<int>& ids);
  // Commits the stores whose copies are done; with `wait`, all of them.
  void PollStores(bool wait = false);
  // Waits for the sequence's store, then Engine::Release.
  Status Release(int id);

  bool connected() const;
  // Drops the connection (if any) and connects now, whatever retry_interval
  // says (e.g. after the daemon was restarted on purpose). Whether it is
  // connected.
  bool Reconnect();
  const ConnectorCounters& counters() const { return counters_; }
  const NamespaceSpec& spec() const { return spec_; }
  // The cost rule's current estimates.
  const NvmeCostModel& cost_model() const { return cost_; }

 private:
  struct Conn;
  struct PendingStore;
  struct Loading;
  // A prefilled sequence's keys and how many of its blocks were loaded
  // (those are in kvtier already; StartStores() writes the rest).
  struct Loaded {
    std::vector<BlockKey> keys;
    uint32_t blocks = 0;
  };
  KvtierConnector() = default;
  bool EnsureConnected();
  void Disconnect(const std::string& why);
  void Failed(const char* kind, uint64_t* counter, const Status& st);

  Engine* engine_ = nullptr;
  ConnectorOptions options_;
  NamespaceSpec spec_;
  std::unique_ptr<KeyHasher> hasher_;
  std::unique_ptr<Conn> conn_;
  std::chrono::steady_clock::time_point next_attempt_{};
  std::vector<std::string> logged_;  // failure kinds logged this episode
  NvmeCostModel cost_;
  bool has_nvme_ = false;  // the daemon has an NVMe tier (probes are worth it)
  std::unordered_map<int, Loaded> loaded_;
  OwnedGpuStream store_stream_;
  std::vector<std::unique_ptr<PendingStore>> stores_;
  std::vector<std::unique_ptr<Loading>> loading_pool_;  // streams and events, reused
  ConnectorCounters counters_;
};

}  // namespace kvtier::engine
