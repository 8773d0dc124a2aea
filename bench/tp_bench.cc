// kvtier-bench tp (see tp_bench.h).
//
// Phases, all GPUs at once, one host thread driving them (launches are
// asynchronous; each rank has its own client connection, GPU session and
// stream):
//   1. store: every rank scatters its pool pages of chain A into the daemon;
//   2. TP round trip: one acquireTp for all ranks (the common prefix), every
//      rank gathers its slice into other pages of its pool; the kernel
//      verifies every block's checksum and the bench compares every byte of
//      the loaded pages with the stored ones;
//   3. aggregate load bandwidth (repeated phase 2) against the sum of each
//      GPU's own pinned host→device cudaMemcpy, measured in the same run;
//   4. loads of chain A while chain B's stores land, on every GPU at once,
//      then chain B loaded back; every byte compared.
#include "bench/tp_bench.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/daemon_process.h"
#include "engine_adapter/client.h"
#include "engine_adapter/gpu_session.h"
#include "loader/gpu_runtime.h"
#include "loader/kv_pool.h"
#include "tiers/gpu_hbm_tier.h"

namespace kvtier::bench {

namespace {

#define TP_CHECK(expr)                                                   \
  do {                                                                   \
    ::kvtier::Status _s = (expr);                                        \
    if (!_s.ok()) {                                                      \
      std::fprintf(stderr, "kvtier-bench tp: %s: %s\n", #expr, _s.ToString().c_str()); \
      return 1;                                                          \
    }                                                                    \
  } while (0)

struct Rank {
  int device = 0;
  std::unique_ptr<Client> client;
  std::unique_ptr<ClientNamespace> ns;
  std::unique_ptr<GpuSession> gpu;
  OwnedGpuStream stream;
  std::vector<DeviceBuffer> layers;  // one [2, pages, T, H, D] tensor per layer
  KvPool pool;
  uint64_t page_bytes = 0;   // one K (or V) page: T * H * D * 2
  uint32_t pages = 0;        // 2 * blocks: [0, B) sources, [B, 2B) destinations
};

// Fills every layer with bytes that differ per rank, layer and position.
Status FillRandom(Rank& r, uint64_t layer_bytes, uint32_t seed) {
  KVTIER_ASSIGN_OR_RETURN(PinnedHostBuffer stage, PinnedHostBuffer::Allocate(layer_bytes));
  std::mt19937_64 rng(seed);
  auto* p = static_cast<uint64_t*>(stage.host());
  for (size_t i = 0; i < layer_bytes / 8; ++i) p[i] = rng();
  for (size_t l = 0; l < r.layers.size(); ++l) {
    p[l % (layer_bytes / 8)] ^= 0x9E3779B97F4A7C15ull * (l + 1);  // differ per layer
    KVTIER_RETURN_IF_ERROR(GpuCopyBytes(r.layers[l].data(), stage.host(), layer_bytes));
  }
  return Status::OK();
}

// Compares pages [0, B) with [B, 2B) of every layer, K and V: every byte.
Result<bool> SourcesEqualDestinations(Rank& r) {
  KVTIER_RETURN_IF_ERROR(GpuSetDevice(r.device));
  const uint64_t half = r.page_bytes * (r.pages / 2);
  std::vector<uint8_t> a(half), b(half);
  for (auto& layer : r.layers) {
    for (int kv = 0; kv < 2; ++kv) {
      const char* base = static_cast<const char*>(layer.data()) + kv * r.page_bytes * r.pages;
      KVTIER_RETURN_IF_ERROR(GpuCopyBytes(a.data(), base, half));
      KVTIER_RETURN_IF_ERROR(GpuCopyBytes(b.data(), base + half, half));
      if (std::memcmp(a.data(), b.data(), half) != 0) return false;
    }
  }
  return true;
}

}  // namespace

int RunTpBench(const TpBenchOptions& o) {
  int n = o.gpus;
  if (n == 0)
    while (n < 64 && CudaPciBusId(n).ok()) ++n;
  if (n < 1 || !CudaPciBusId(n - 1).ok()) {
    std::fprintf(stderr, "kvtier-bench tp: needs %d GPU(s); found fewer\n", std::max(n, 1));
    return 1;
  }
  if (o.kv_heads % n != 0) {
    std::fprintf(stderr, "kvtier-bench tp: %u KV heads do not split over %d ranks\n", o.kv_heads, n);
    return 1;
  }
  const uint32_t heads = o.kv_heads / n, tpb = 16, blocks = o.tokens / tpb;
  NamespaceSpec base;
  base.model_id = "bench/tp-70b-like";
  base.layout = KvLayout{o.layers, heads, 128, tpb, DType::kBF16, 2};
  base.tp_size = static_cast<uint32_t>(n);
  const uint64_t rank_bytes = base.layout.BlockBytes() * blocks;
  std::string gpus;
  for (int i = 0; i < n; ++i) gpus += (i ? "," : "") + std::to_string(i);
  const uint64_t host = (2 * rank_bytes * n * 5 / 4 + (1ull << 30)) >> 20;  // two chains + 25%
  auto d = DaemonProcess::Start(o.kvtierd_path, {"--host-capacity", std::to_string(host) + "M",
                                                  "--gpus", gpus, "--admin", "off",
                                                  "--log-level", "warn"});
  if (!d.ok()) {
    std::fprintf(stderr, "kvtier-bench tp: %s\n", d.status().ToString().c_str());
    return 1;
  }
  auto device_name = GpuDeviceName();
  std::printf("kvtier-bench tp: %d GPUs (%s ...), %u layers, %u KV heads per rank, %u tokens "
              "per rank = %.2f GiB per rank per chain; host tier %lu MiB\n",
              n, device_name.ok() ? device_name->c_str() : "?", o.layers, heads, o.tokens,
              rank_bytes / double(1ull << 30), static_cast<unsigned long>(host));

  // One control connection holds every rank's namespace (acquireTp).
  auto ctl = Client::Connect((*d)->socket());
  if (!ctl.ok()) return std::fprintf(stderr, "%s\n", ctl.status().ToString().c_str()), 1;
  std::vector<std::unique_ptr<ClientNamespace>> ctl_ns;
  std::vector<Rank> ranks(n);
  std::vector<uint32_t> tokens_a(o.tokens), tokens_b(o.tokens);
  for (uint32_t i = 0; i < o.tokens; ++i) {
    tokens_a[i] = i * 7 + 1;
    tokens_b[i] = i * 11 + 5;
  }
  std::vector<std::vector<BlockKey>> keys_a(n), keys_b(n);
  for (int r = 0; r < n; ++r) {
    NamespaceSpec spec = base;
    spec.tp_rank = static_cast<uint32_t>(r);
    auto cns = (*ctl)->OpenNamespace(spec);
    if (!cns.ok()) return std::fprintf(stderr, "%s\n", cns.status().ToString().c_str()), 1;
    ctl_ns.push_back(std::move(cns).value());
    Rank& k = ranks[r];
    k.device = r;
    TP_CHECK(GpuSetDevice(r));
    auto c = Client::Connect((*d)->socket());
    if (!c.ok()) return std::fprintf(stderr, "%s\n", c.status().ToString().c_str()), 1;
    k.client = std::move(c).value();
    auto ns = k.client->OpenNamespace(spec);
    if (!ns.ok()) return std::fprintf(stderr, "%s\n", ns.status().ToString().c_str()), 1;
    k.ns = std::move(ns).value();
    k.ns->set_device(r);
    GpuSessionOptions so;
    so.device = r;
    auto g = GpuSession::Create(k.client.get(), so);
    if (!g.ok()) return std::fprintf(stderr, "GPU %d: %s\n", r, g.status().ToString().c_str()), 1;
    k.gpu = std::move(g).value();
    auto s = OwnedGpuStream::Create();
    if (!s.ok()) return 1;
    k.stream = std::move(s).value();
    k.pages = 2 * blocks;
    k.page_bytes = uint64_t{tpb} * heads * 128 * 2;
    const uint64_t layer_bytes = 2 * k.page_bytes * k.pages;
    std::vector<void*> bases;
    for (uint32_t l = 0; l < o.layers; ++l) {
      auto buf = DeviceBuffer::Allocate(layer_bytes);
      if (!buf.ok()) return std::fprintf(stderr, "GPU %d: %s\n", r, buf.status().ToString().c_str()), 1;
      bases.push_back(buf->data());
      k.layers.push_back(std::move(buf).value());
    }
    KvPoolShape shape{KvDtype::kBf16, o.layers, heads, 128, tpb, k.pages};
    auto pool = MakeVllmFlashPool(shape, bases);
    if (!pool.ok()) return std::fprintf(stderr, "%s\n", pool.status().ToString().c_str()), 1;
    k.pool = *pool;
    TP_CHECK(FillRandom(k, layer_bytes, 1000 + r));
    keys_a[r] = k.ns->HashTokens(tokens_a);
    keys_b[r] = k.ns->HashTokens(tokens_b);
  }
  std::vector<uint32_t> src(blocks), dst(blocks);
  for (uint32_t i = 0; i < blocks; ++i) {
    src[i] = i;
    dst[i] = blocks + i;
  }
  std::vector<ClientNamespace*> rank_ns;
  for (auto& c : ctl_ns) rank_ns.push_back(c.get());
  const double total_gb = double(rank_bytes) * n / 1e9;

  // 1. Store chain A from every GPU at once.
  auto t0 = Clock::now();
  {
    std::vector<GpuStore> stores;
    for (auto& k : ranks) {
      auto st = k.gpu->StartStore(*k.ns, keys_a[k.device], k.pool, src, {}, k.stream.get());
      if (!st.ok()) return std::fprintf(stderr, "store: %s\n", st.status().ToString().c_str()), 1;
      stores.push_back(std::move(st).value());
    }
    for (auto& st : stores) {
      auto r = st.Wait();
      if (!r.ok() || r->stored != blocks)
        return std::fprintf(stderr, "store: %s\n", r.ok() ? "short" : r.status().ToString().c_str()), 1;
    }
  }
  const double store_ms = MsSince(t0);

  // 2+3. acquireTp, then every rank loads its slice into [B, 2B): repeated.
  auto load_all = [&](const std::vector<std::vector<BlockKey>>& keys, double* ms) -> Status {
    // Poison layer 0's destination pages (K and V): stale bytes cannot pass.
    for (auto& k : ranks) {
      KVTIER_RETURN_IF_ERROR(GpuSetDevice(k.device));
      const uint64_t half = k.page_bytes * (k.pages / 2);
      char* l0 = static_cast<char*>(k.layers[0].data());
      KVTIER_RETURN_IF_ERROR(GpuFillBytes(l0 + half, 0xA5, half));
      KVTIER_RETURN_IF_ERROR(GpuFillBytes(l0 + 2 * half + half, 0xA5, half));
    }
    auto t = Clock::now();
    KVTIER_ASSIGN_OR_RETURN(std::vector<ClientLease> leases, (*ctl)->AcquireTp(rank_ns, keys));
    std::vector<GpuLoad> loads;
    for (auto& k : ranks) {
      const ClientLease& l = leases[k.device];
      if (l.size() != blocks) return Status::Internal("acquireTp prefix " + std::to_string(l.size()));
      KVTIER_ASSIGN_OR_RETURN(GpuLoad g, k.gpu->StartLoad(*k.ns, l, k.pool, dst, k.stream.get()));
      loads.push_back(std::move(g));
    }
    for (auto& g : loads) KVTIER_RETURN_IF_ERROR(g.Wait());  // in-kernel checksums verified
    *ms = MsSince(t);
    return Status::OK();
  };
  double ms = 0;
  TP_CHECK(load_all(keys_a, &ms));  // warm-up and the byte-exact round trip
  for (auto& k : ranks) {
    auto eq = SourcesEqualDestinations(k);
    if (!eq.ok() || !*eq) return std::fprintf(stderr, "rank %d: loaded bytes differ\n", k.device), 1;
  }
  std::vector<double> load_ms;
  for (int i = 0; i < o.reps; ++i) {
    TP_CHECK(load_all(keys_a, &ms));
    load_ms.push_back(ms);
  }
  // Roofline: each GPU's own pinned H2D memcpy of its slice, then all at once.
  double sum_gbps = 0;
  std::vector<double> alone;
  {
    std::vector<PinnedHostBuffer> stage;
    for (auto& k : ranks) {
      TP_CHECK(GpuSetDevice(k.device));
      auto b = PinnedHostBuffer::Allocate(rank_bytes);
      if (!b.ok()) return std::fprintf(stderr, "%s\n", b.status().ToString().c_str()), 1;
      stage.push_back(std::move(b).value());
    }
    for (auto& k : ranks) {
      TP_CHECK(GpuSetDevice(k.device));
      std::vector<double> v;
      // Its own destination: the pool's pages must keep what was stored.
      auto scratch = DeviceBuffer::Allocate(rank_bytes);
      if (!scratch.ok()) return std::fprintf(stderr, "%s\n", scratch.status().ToString().c_str()), 1;
      void* to = scratch->data();
      for (int i = 0; i < o.reps + 1; ++i) {
        auto t = Clock::now();
        TP_CHECK(GpuCopyBytesAsync(to, stage[k.device].host(), rank_bytes, k.stream.get()));
        TP_CHECK(GpuSynchronize(k.stream.get()));
        if (i > 0) v.push_back(MsSince(t));
      }
      double gbps = rank_bytes / (Median(v) * 1e6);
      alone.push_back(gbps);
      sum_gbps += gbps;
    }
  }

  // 4. Loads of chain A while chain B's stores land, every GPU at once.
  double mixed_ms = 0;
  {
    auto t = Clock::now();
    auto leases = (*ctl)->AcquireTp(rank_ns, keys_a);
    if (!leases.ok()) return 1;
    std::vector<GpuLoad> loads;
    std::vector<GpuStore> stores;
    std::vector<OwnedGpuStream> store_streams;
    for (auto& k : ranks) {
      TP_CHECK(GpuSetDevice(k.device));
      auto s2 = OwnedGpuStream::Create();
      if (!s2.ok()) return 1;
      store_streams.push_back(std::move(s2).value());
      auto st = k.gpu->StartStore(*k.ns, keys_b[k.device], k.pool, src, {}, store_streams.back().get());
      if (!st.ok()) return std::fprintf(stderr, "store B: %s\n", st.status().ToString().c_str()), 1;
      stores.push_back(std::move(st).value());
      auto g = k.gpu->StartLoad(*k.ns, (*leases)[k.device], k.pool, dst, k.stream.get());
      if (!g.ok()) return std::fprintf(stderr, "load A: %s\n", g.status().ToString().c_str()), 1;
      loads.push_back(std::move(g).value());
    }
    for (auto& g : loads) TP_CHECK(g.Wait());
    for (auto& st : stores) {
      auto r = st.Wait();
      if (!r.ok() || r->stored != blocks) return std::fprintf(stderr, "store B failed\n"), 1;
    }
    mixed_ms = MsSince(t);
  }
  for (auto& k : ranks) {
    auto eq = SourcesEqualDestinations(k);
    if (!eq.ok() || !*eq) return std::fprintf(stderr, "rank %d: chain A differs\n", k.device), 1;
  }
  TP_CHECK(load_all(keys_b, &ms));
  for (auto& k : ranks) {
    auto eq = SourcesEqualDestinations(k);
    if (!eq.ok() || !*eq) return std::fprintf(stderr, "rank %d: chain B differs\n", k.device), 1;
  }

  const double load_gbps = total_gb / (Median(load_ms) / 1e3);
  std::printf("\n%-58s %10s %10s %8s\n", "operation (all GPUs at once)", "GB/s", "roofline", "ratio");
  std::printf("%-58s %10.1f %10s %8s\n", "store chain A, engine -> host (aggregate)",
              total_gb / (store_ms / 1e3), "-", "-");
  std::printf("%-58s %10.1f %10.1f %8.3f\n",
              "acquireTp + load, host -> every GPU (aggregate, median)", load_gbps, sum_gbps,
              load_gbps / sum_gbps);
  for (int r = 0; r < n; ++r)
    std::printf("  GPU %d alone: pinned H2D cudaMemcpy %.1f GB/s\n", r, alone[r]);
  std::printf("%-58s %10.1f %10s %8s\n", "load chain A while chain B stores (aggregate, both ways)",
              2 * total_gb / (mixed_ms / 1e3), "-", "-");
  std::printf("\nverified: TP=%d round trip byte-exact (%.2f GB compared), loads during stores "
              "byte-exact, chain B byte-exact; every block's checksum verified in the kernel\n",
              n, 3 * total_gb);
  return 0;
}

}  // namespace kvtier::bench
