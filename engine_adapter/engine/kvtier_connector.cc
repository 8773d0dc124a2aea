// KvtierConnector: the engine's loop through kvtier; see kvtier_connector.h.
#include "engine_adapter/engine/kvtier_connector.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>

#include "engine_adapter/client.h"
#include "engine_adapter/gpu_session.h"
#include "loader/gpu_copy.h"
#include "loader/gpu_runtime.h"

namespace kvtier::engine {
namespace {

using Clock = std::chrono::steady_clock;

double MsBetween(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::milli>(b - a).count();
}

}  // namespace

// The connection: client, namespace and GPU session, dropped together.
struct KvtierConnector::Conn {
  std::unique_ptr<Client> client;
  std::unique_ptr<ClientNamespace> ns;
  std::unique_ptr<GpuSession> gpu;
  ~Conn() {
    gpu.reset();  // borrows the client
    ns.reset();
  }
};

struct KvtierConnector::PendingStore {
  int id = -1;
  GpuStore store;
};

// A load stream with its layer events and timing events, reused.
struct KvtierConnector::Loading {
  OwnedGpuStream stream;
  LayerEvents events;
  GpuEvent start, end;
  // On the engine's stream: past the wait for layer 0, past the wait for
  // the last layer, and the end of the prefill (CacheRequestStats timings).
  GpuEvent first_layer, last_layer, done;
};

KvtierConnector::~KvtierConnector() {
  stores_.clear();  // waits for their copies; aborts what was not committed
  conn_.reset();
}

Result<std::unique_ptr<KvtierConnector>> KvtierConnector::Create(Engine* engine,
                                                                 const Checkpoint& ckpt,
                                                                 const ConnectorOptions& options) {
  if (engine == nullptr) return Status::InvalidArgument("KvtierConnector: no engine");
  if (options.socket.empty()) return Status::InvalidArgument("KvtierConnector: no socket path");
  std::unique_ptr<KvtierConnector> c(new KvtierConnector());
  c->engine_ = engine;
  c->options_ = options;
  const ModelConfig& cfg = engine->config();
  NamespaceSpec& s = c->spec_;
  if (options.model_id.empty() || options.model_revision.empty()) {
    CheckpointIdentity id = IdentifyCheckpoint(ckpt);
    s.model_id = options.model_id.empty() ? id.model_id : options.model_id;
    s.model_revision = options.model_revision.empty() ? id.revision : options.model_revision;
  } else {
    s.model_id = options.model_id;
    s.model_revision = options.model_revision;
  }
  s.layout = KvLayout{cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.head_dim,
                      engine->model().options().page_tokens, DType::kBF16, 2};
  s.tenant_salt = options.tenant_salt;
  s.hash_mode = options.hash_mode;
  KVTIER_RETURN_IF_ERROR(s.Validate());
  c->hasher_ = std::make_unique<KeyHasher>(s);
  c->cost_.prefill_tokens_per_ms = options.prefill_tokens_per_ms;
  c->cost_.nvme_bytes_per_s = options.nvme_bytes_per_s;
  (void)c->EnsureConnected();
  return c;
}

bool KvtierConnector::connected() const { return conn_ != nullptr; }

void KvtierConnector::Failed(const char* kind, uint64_t* counter, const Status& st) {
  if (counter) ++*counter;
  if (std::find(logged_.begin(), logged_.end(), kind) != logged_.end()) return;
  logged_.push_back(kind);
  std::fprintf(stderr,
               "kvtier-engine: kvtier %s failed: %s (the engine recomputes what it could not "
               "load; further %s failures are counted, not logged)\n",
               kind, st.ToString().c_str(), kind);
}

void KvtierConnector::Disconnect(const std::string& why) {
  if (!conn_) return;
  stores_.clear();
  conn_.reset();
  next_attempt_ = Clock::now() + options_.retry_interval;
  std::fprintf(stderr, "kvtier-engine: dropped the kvtier connection (%s); next attempt in %lld ms\n",
               why.c_str(), static_cast<long long>(options_.retry_interval.count()));
}

bool KvtierConnector::Reconnect() {
  stores_.clear();
  conn_.reset();
  next_attempt_ = Clock::time_point{};
  return EnsureConnected();
}

bool KvtierConnector::EnsureConnected() {
  if (conn_) return true;
  const auto now = Clock::now();
  if (now < next_attempt_) return false;
  next_attempt_ = now + options_.retry_interval;
  auto conn = std::make_unique<Conn>();
  Status st;
  Result<std::unique_ptr<Client>> client = Client::Connect(options_.socket);
  if (client.ok()) {
    conn->client = std::move(client.value());
    Result<std::unique_ptr<ClientNamespace>> ns = conn->client->OpenNamespace(spec_);
    if (ns.ok()) {
      conn->ns = std::move(ns.value());
      GpuSessionOptions go;  // the engine's (current) device
      go.host_path = options_.host_path;
      Result<std::unique_ptr<GpuSession>> gpu = GpuSession::Create(conn->client.get(), go);
      if (gpu.ok()) {
        conn->gpu = std::move(gpu.value());
        if (options_.bind_gpu) conn->ns->set_device(conn->gpu->device());
      } else {
        st = gpu.status();
      }
    } else {
      st = ns.status();
    }
  } else {
    st = client.status();
  }
  if (!st.ok()) {
    Failed("connect", &counters_.connect_failures,
           Status(st.code(), options_.socket + ": " + st.ToString()));
    return false;
  }
  // Probes pay only where some of a hit may be on NVMe.
  Result<RemoteStats> rs = conn->client->Stats();
  has_nvme_ = false;
  if (rs.ok())
    for (const auto& t : rs->tiers) has_nvme_ |= t.name == "nvme";
  conn_ = std::move(conn);
  ++counters_.connects;
  logged_.clear();  // a new episode: the next failure of each kind is logged again
  return true;
}

Status KvtierConnector::Prefill(const std::vector<int>& ids, std::vector<CacheRequestStats>* stats,
                                const LogitCapture& capture, std::vector<float>* logits) {
  if (capture.all_positions)
    return Status::InvalidArgument("KvtierConnector::Prefill: every-position logits are not "
                                   "kept through the cache (a hit computes only the suffix)");
  const auto t0 = Clock::now();
  const uint32_t P = engine_->model().options().page_tokens;
  const uint32_t layers = engine_->config().num_hidden_layers;
  struct Item {
    int id = -1;
    std::vector<BlockKey> keys;
    PendingLookup pending;
    bool sent = false;
    uint32_t nvme_blocks = 0;  // of the lookup, by the probe
    ClientLease lease;
    GpuLoad load;
    Loading* loading = nullptr;
    uint32_t hit = 0;  // blocks loaded (then: verified)
    CacheRequestStats st;
  };
  std::vector<Item> items(ids.size());
  bool use = options_.load && EnsureConnected();
  std::vector<uint32_t> tokens;
  for (size_t i = 0; i < ids.size(); ++i) {
    Item& it = items[i];
    it.id = ids[i];
    const std::vector<int32_t>& prompt = engine_->Prompt(it.id);
    it.st.prompt_tokens = uint32_t(prompt.size());
    tokens.assign(prompt.begin(), prompt.end());
    hasher_->Hash(tokens, &it.keys);
    // Sequences already started (SetComputed by the caller) keep their own KV.
    if (!use || engine_->Computed(it.id) != 0) continue;
    size_t usable = std::min<size_t>(it.keys.size(), (prompt.size() - 1) / P);
    if (usable == 0 || usable < options_.min_lookup_blocks) continue;
    if (options_.cost_aware && has_nvme_ && cost_.prefill_tokens_per_ms > 0) {
      Result<std::vector<TierKind>> tiers = conn_->ns->Probe(std::span(it.keys).first(usable));
      if (!tiers.ok()) {
        Failed("probe", &counters_.probe_failures, tiers.status());
        it.st.failure = "probe: " + tiers.status().ToString();
        Disconnect("probe failed");
        use = false;
        break;
      }
      const uint32_t worth = BlocksWorthLoading(*tiers, spec_.layout.BlockBytes(), P, cost_);
      it.st.skipped_tokens = uint32_t(tiers->size() - worth) * P;
      counters_.skipped_blocks += tiers->size() - worth;
      it.nvme_blocks = uint32_t(std::count(tiers->begin(), tiers->begin() + worth, TierKind::kNvme));
      usable = worth;
      if (usable == 0) continue;
    }
    Result<PendingLookup> p = conn_->ns->StartLookup(std::span(it.keys).first(usable));
    if (!p.ok()) {
      Failed("lookup", &counters_.lookup_failures, p.status());
      it.st.failure = "lookup: " + p.status().ToString();
      Disconnect("lookup failed");
      use = false;
      break;
    }
    it.pending = std::move(p.value());
    it.sent = true;
  }
  for (Item& it : items) {
    if (!it.sent) continue;
    if (!use) {
      it.pending = PendingLookup();  // cancels
      continue;
    }
    Result<ClientLease> l = it.pending.Wait();
    if (!l.ok()) {
      Failed("lookup", &counters_.lookup_failures, l.status());
      it.st.failure = "lookup: " + l.status().ToString();
      Disconnect("lookup failed");
      use = false;
      continue;
    }
    it.lease = std::move(l.value());
    it.st.lookup_tokens = uint32_t(it.lease.size()) * P;
  }
  const double lookup_ms = MsBetween(t0, Clock::now());
  // What the disk delivered: the NVMe blocks the probes saw, read by the
  // lookups (all in flight together) in lookup_ms.
  uint64_t nvme_read = 0;
  for (const Item& it : items)
    if (it.lease.size() >= it.nvme_blocks) nvme_read += it.nvme_blocks;
  if (nvme_read >= 8 && lookup_ms > 0)
    cost_.nvme_bytes_per_s = NvmeCostModel::Blend(
        cost_.nvme_bytes_per_s, double(nvme_read * spec_.layout.BlockBytes()) / (lookup_ms / 1e3));
  // Queue the loads, each on a stream of its own, layer-wise.
  std::vector<Loading*> active;
  size_t next_loading = 0;
  for (Item& it : items) {
    it.st.lookup_ms = lookup_ms;
    if (!use || it.lease.empty()) continue;
    const uint32_t hit = uint32_t(it.lease.size());
    Status st = engine_->EnsurePages(it.id, hit * P);
    if (!st.ok()) {
      it.st.failure = "pages: " + st.ToString();
      continue;
    }
    if (next_loading == loading_pool_.size()) {
      auto l = std::make_unique<Loading>();
      Result<OwnedGpuStream> s = OwnedGpuStream::Create(StreamPriority::kLow);
      Result<LayerEvents> ev = LayerEvents::Create(layers);
      Result<GpuEvent> a = GpuEvent::Create(true), b = GpuEvent::Create(true);
      Result<GpuEvent> f = GpuEvent::Create(true), la = GpuEvent::Create(true),
                       dn = GpuEvent::Create(true);
      if (!f.ok() || !la.ok() || !dn.ok()) b = !f.ok() ? f.status() : !la.ok() ? la.status() : dn.status();
      if (!s.ok() || !ev.ok() || !a.ok() || !b.ok()) {
        Failed("load", &counters_.load_failures,
               !s.ok() ? s.status() : !ev.ok() ? ev.status() : !a.ok() ? a.status() : b.status());
        continue;
      }
      l->stream = std::move(s.value());
      l->events = std::move(ev.value());
      l->start = std::move(a.value());
      l->end = std::move(b.value());
      l->first_layer = std::move(f.value());
      l->last_layer = std::move(la.value());
      l->done = std::move(dn.value());
      loading_pool_.push_back(std::move(l));
    }
    Loading* l = loading_pool_[next_loading].get();
    const std::vector<int32_t>& pages = engine_->Pages(it.id);
    std::vector<uint32_t> dst(pages.begin(), pages.begin() + hit);
    GpuLoadOptions lo;
    lo.layers_per_group = options_.layers_per_group ? options_.layers_per_group : layers;
    lo.events = &l->events;
    st = l->start.Record(l->stream.get());
    Result<GpuLoad> load = st.ok() ? conn_->gpu->StartLoad(*conn_->ns, it.lease,
                                                          engine_->model().kv_pool(), dst,
                                                          l->stream.get(), lo)
                                   : Result<GpuLoad>(st);
    if (load.ok()) st = l->end.Record(l->stream.get());
    if (!load.ok() || !st.ok()) {
      const Status& e = load.ok() ? st : load.status();
      Failed("load", &counters_.load_failures, e);
      it.st.failure = "load: " + e.ToString();
      continue;
    }
    it.load = std::move(load.value());
    it.loading = l;
    it.hit = hit;
    ++next_loading;
    active.push_back(l);
    KVTIER_RETURN_IF_ERROR(engine_->SetComputed(it.id, hit * P));
  }
  auto hook = [&active, layers](int layer, cudaStream_t stream) {
    for (Loading* l : active) {
      (void)l->events.StreamWaitLayer(uint32_t(layer), stream);
      if (layer == 0) (void)l->first_layer.Record(stream);
      if (uint32_t(layer) + 1 == layers) (void)l->last_layer.Record(stream);
    }
  };
  if (options_.loads_queued) options_.loads_queued();
  const size_t logit_base = logits ? logits->size() : 0;
  const auto p0 = Clock::now();
  Status result = engine_->Prefill(ids, capture, logits,
                                   active.empty() ? LlamaModel::LayerHook() : hook);
  for (Loading* l : active) (void)l->done.Record(engine_->model().stream());
  // The engine's own speed, from prefills that waited for no load.
  if (result.ok() && active.empty()) {
    uint64_t computed = 0;
    for (const Item& it : items) computed += it.st.prompt_tokens;
    const double ms = MsBetween(p0, Clock::now());
    if (computed >= 256 && ms > 0)
      cost_.prefill_tokens_per_ms =
          NvmeCostModel::Blend(cost_.prefill_tokens_per_ms, double(computed) / ms);
  }
  // Verify every load now that the prefill that read it is done; a bad block
  // and what follows it is recomputed.
  std::vector<int> redo;
  for (Item& it : items) {
    if (it.loading == nullptr) continue;
    Status v = it.load.Wait();
    Result<float> ms = it.loading->end.Synchronize().ok()
                           ? GpuEvent::ElapsedMs(it.loading->start, it.loading->end)
                           : Result<float>(Status::IOError("load events"));
    if (ms.ok()) it.st.load_ms = *ms;
    if (it.loading->done.Synchronize().ok()) {
      Result<float> first = GpuEvent::ElapsedMs(it.loading->start, it.loading->first_layer);
      Result<float> tail = GpuEvent::ElapsedMs(it.loading->last_layer, it.loading->done);
      if (first.ok()) it.st.first_layer_ms = *first;
      if (tail.ok()) it.st.after_last_layer_ms = *tail;
    }
    const uint32_t good = uint32_t(it.load.verified_blocks());
    if (!v.ok()) {
      if (v.code() == StatusCode::kCorruption)
        Failed("checksum", &counters_.corrupt_loads, v);
      else
        Failed("load", &counters_.load_failures, v);
      it.st.failure = "load: " + v.ToString();
    }
    if (good < it.hit) {
      counters_.recomputed_blocks += it.hit - good;
      it.st.recomputed_tokens = (it.hit - good) * P;
      it.hit = good;
      if (result.ok()) {
        result = engine_->Rewind(it.id, good * P);
        redo.push_back(it.id);
      }
    }
    it.lease = ClientLease();  // released without waiting for the answer
  }
  if (result.ok() && !redo.empty()) {
    std::vector<float> redo_logits;
    const bool want = logits && capture.last;
    result = engine_->Prefill(redo, capture, want ? &redo_logits : nullptr);
    if (result.ok() && want) {
      const size_t V = engine_->config().vocab_size;
      for (size_t j = 0; j < redo.size(); ++j) {
        const size_t row = std::find(ids.begin(), ids.end(), redo[j]) - ids.begin();
        std::copy(redo_logits.begin() + j * V, redo_logits.begin() + (j + 1) * V,
                  logits->begin() + logit_base + row * V);
      }
    }
  }
  const auto t1 = Clock::now();
  loaded_.clear();
  for (Item& it : items) {
    ++counters_.requests;
    it.st.hit_tokens = it.hit * P;
    counters_.hit_tokens += it.st.hit_tokens;
    counters_.computed_tokens += it.st.prompt_tokens - it.st.hit_tokens;
    counters_.blocks_loaded += it.hit;
    it.st.prefill_ms = MsBetween(t0, t1);
    it.st.ttft_ms = MsBetween(t0, engine_->FirstTokenTime(it.id));
    loaded_[it.id] = Loaded{std::move(it.keys), it.hit};
  }
  if (stats) {
    stats->clear();
    for (Item& it : items) stats->push_back(std::move(it.st));
  }
  return result;
}

void KvtierConnector::StartStores(const std::vector<int>& ids) {
  if (!options_.store) return;
  if (!EnsureConnected()) return;
  if (store_stream_.get() == nullptr) {
    Result<OwnedGpuStream> s = OwnedGpuStream::Create(StreamPriority::kLow);
    if (!s.ok()) {
      Failed("store", &counters_.store_failures, s.status());
      return;
    }
    store_stream_ = std::move(s.value());
  }
  const uint32_t P = engine_->model().options().page_tokens;
  for (int id : ids) {
    auto found = loaded_.find(id);
    if (found == loaded_.end()) continue;
    const Loaded& ld = found->second;
    const uint32_t full = std::min<uint32_t>(uint32_t(ld.keys.size()), engine_->Computed(id) / P);
    if (full <= ld.blocks) continue;
    const std::vector<int32_t>& pages = engine_->Pages(id);
    std::vector<uint32_t> src(pages.begin() + ld.blocks, pages.begin() + full);
    StoreOptions so;
    so.priority = options_.store_priority;
    if (ld.blocks > 0) so.first_parent = ld.keys[ld.blocks - 1];
    Result<GpuStore> s =
        conn_->gpu->StartStore(*conn_->ns, std::span(ld.keys).subspan(ld.blocks, full - ld.blocks),
                               engine_->model().kv_pool(), src, so, store_stream_.get());
    if (!s.ok()) {
      Failed("store", &counters_.store_failures, s.status());
      Disconnect("store failed");
      return;
    }
    auto p = std::make_unique<PendingStore>();
    p->id = id;
    p->store = std::move(s.value());
    stores_.push_back(std::move(p));
  }
}

void KvtierConnector::PollStores(bool wait) {
  for (size_t i = 0; i < stores_.size();) {
    GpuStore& s = stores_[i]->store;
    if (!wait) {
      Result<bool> ready = s.Ready();
      if (ready.ok() && !*ready) {
        ++i;
        continue;
      }
    }
    Result<StoreResult> r = s.Wait();
    stores_.erase(stores_.begin() + i);
    if (!r.ok()) {
      Failed("store", &counters_.store_failures, r.status());
      Disconnect("store failed");
      return;
    }
    counters_.blocks_stored += r->stored;
    counters_.blocks_present += r->present + r->in_flight;
  }
}

Status KvtierConnector::Release(int id) {
  for (size_t i = 0; i < stores_.size();) {
    if (stores_[i]->id != id) {
      ++i;
      continue;
    }
    Result<StoreResult> r = stores_[i]->store.Wait();
    stores_.erase(stores_.begin() + i);
    if (!r.ok()) {
      Failed("store", &counters_.store_failures, r.status());
      Disconnect("store failed");
      break;
    }
    counters_.blocks_stored += r->stored;
    counters_.blocks_present += r->present + r->in_flight;
  }
  loaded_.erase(id);
  return engine_->Release(id);
}

}  // namespace kvtier::engine
