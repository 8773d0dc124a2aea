// kvtier-core-bench: the foundation's hot paths on one core.
//
//   BM_PrefixAcquire/2048   Cache::Acquire + Release of a 2,048-key chain
//                           (index lookups, pins, policy touches): keys/s
//   BM_IndexPrefixLookup    the index walk alone: keys/s
//   BM_HashTokens/<tpb>     KeyHasher over 32K tokens: bytes of token ids/s
//   BM_Sha256ChainMessage   SHA-256 of the chain messages of 32K tokens, OpenSSL
//                           (what the key hash calls) beside the portable code
//                           it replaced: bytes of token ids/s
//   BM_IndexMemory          index bytes per block entry at 1M entries
//   BM_StoreChain/<policy>  reserve + commit of 2,048 blocks into a full tier
//   BM_StoreSizes/<size>_one_size, /<size>_three_sizes
//                           8 MiB of 16 KiB or 2 MiB blocks into a full tier
//                           holding that size only, or other sizes too (the
//                           store takes regions back from them)
//
// Goals (issue 2): >= 5 M keys/s, >= 1 GB/s of tokens, <= 96 bytes/entry.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <numeric>
#include <string>
#include <random>

#include "cache/cache.h"
#include "bench/sha256_portable.h"
#include "cache/keys.h"
#include "cache/sha256.h"
#include "tiers/host_shm_tier.h"

namespace kvtier {
namespace {

NamespaceSpec Spec(uint32_t tokens_per_block, HashMode mode = HashMode::kXxh3_128) {
  NamespaceSpec s;
  s.model_id = "bench-model";
  s.layout = KvLayout{1, 1, 64, tokens_per_block, DType::kBF16, 2};
  s.hash_mode = mode;
  return s;
}

void BM_PrefixAcquire(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  HostShmOptions ho;
  ho.capacity_bytes = 256ull << 20;
  ho.region_bytes = 16 << 20;
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "priority-lru"});
  auto cache = std::move(Cache::Create(std::move(o))).value();
  NamespaceSpec spec = Spec(16);
  NamespaceId ns = *cache->OpenNamespace(spec);
  std::vector<uint32_t> tokens(16 * n);
  std::iota(tokens.begin(), tokens.end(), 0);
  std::vector<BlockKey> keys;
  KeyHasher(spec).Hash(tokens, &keys);
  const uint64_t bytes = spec.layout.BlockBytes();  // 4 KiB
  auto r = cache->Reserve(ns, keys, std::vector<uint64_t>(n, bytes));
  if (!r.ok() || !cache->Commit(*r, std::vector<uint64_t>(n, 0)).ok()) {
    state.SkipWithError("store failed");
    return;
  }
  for (auto _ : state) {
    auto lease = cache->Acquire(ns, keys);
    if (lease->size() != n) state.SkipWithError("prefix not found");
    benchmark::DoNotOptimize(lease->blocks().data());
  }
  state.SetItemsProcessed(static_cast<int64_t>(state.iterations() * n));
  state.counters["keys/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_PrefixAcquire)->Arg(1)->Arg(64)->Arg(2048);

// Reserve + commit of a 2,048-block chain into a tier of 8,192 slots that is
// full: every reservation evicts (the store path of the daemon), per policy.
void BM_StoreChain(benchmark::State& state, const char* policy) {
  const size_t n = 2048;
  HostShmOptions ho;
  ho.capacity_bytes = 8192ull * 4096;
  ho.region_bytes = 8 << 20;
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), policy});
  auto cache = std::move(Cache::Create(std::move(o))).value();
  NamespaceSpec spec = Spec(16);
  NamespaceId ns = *cache->OpenNamespace(spec);
  std::vector<uint32_t> tokens(16 * n);
  std::vector<uint64_t> sizes(n, spec.layout.BlockBytes()), sums(n, 0);
  uint32_t round = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i + round * 7919);
    std::vector<BlockKey> keys;
    KeyHasher(spec).Hash(tokens, &keys);
    ++round;
    state.ResumeTiming();
    auto r = cache->Reserve(ns, keys, sizes);
    if (!r.ok() || !cache->Commit(*r, sums).ok()) state.SkipWithError("store failed");
  }
  state.counters["blocks/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_StoreChain, priority_lru, "priority-lru")->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_StoreChain, adaptive_2q, "adaptive-2q")->Unit(benchmark::kMicrosecond);

// What rebalancing costs on the store path: each timed iteration stores
// 8 MiB of one size (512 blocks of 16 KiB, or 4 of 2 MiB; one Reserve +
// Commit) into a full 32 MiB tier of 8 MiB regions. `one_size`: the tier
// holds that size only (evictions within the class, no region moves: the
// path as it was). `three_sizes`: before each timed store, untimed, 8 MiB of
// each other size (16 KiB, 100 KiB, 2 MiB: three models) was stored, so the
// timed store takes regions back (regions/iter: regions it released; it
// evicts every block in them).
void BM_StoreSizes(benchmark::State& state, int timed, bool others) {
  HostShmOptions ho;
  ho.capacity_bytes = 32ull << 20;
  ho.region_bytes = 8 << 20;
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(HostShmTier::Create(ho)).value(), "adaptive-2q"});
  auto cache = std::move(Cache::Create(std::move(o))).value();
  const uint64_t kSizes[] = {16 << 10, 100 << 10, 2 << 20};
  NamespaceId ns[3];
  for (int i = 0; i < 3; ++i) {
    NamespaceSpec spec = Spec(16);
    spec.model_id = "bench-model-" + std::to_string(i);
    ns[i] = *cache->OpenNamespace(spec);
  }
  uint32_t round = 0;
  auto store = [&](int m) {
    const size_t n = (8u << 20) / kSizes[m];
    std::vector<uint32_t> tokens(16 * n);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(i + round * 7919);
    ++round;
    std::vector<BlockKey> keys;
    KeyHasher(*cache->GetNamespace(ns[m])).Hash(tokens, &keys);
    return std::make_pair(keys, std::vector<uint64_t>(n, kSizes[m]));
  };
  uint64_t moved = 0, blocks = 0;
  for (auto _ : state) {
    state.PauseTiming();
    for (int m = 0; others && m < 3; ++m) {
      if (m == timed) continue;
      auto [keys, sizes] = store(m);
      auto r = cache->Reserve(ns[m], keys, sizes);
      if (!r.ok() || !cache->Commit(*r, std::vector<uint64_t>(keys.size(), 0)).ok())
        state.SkipWithError("store failed");
    }
    auto [keys, sizes] = store(timed);
    const std::vector<uint64_t> sums(keys.size(), 0);
    const uint64_t moved0 = cache->Stats().tiers[0].regions_moved;
    state.ResumeTiming();
    auto r = cache->Reserve(ns[timed], keys, sizes);
    if (!r.ok() || r->reserved() != keys.size() || !cache->Commit(*r, sums).ok())
      state.SkipWithError("store failed");
    state.PauseTiming();
    moved += cache->Stats().tiers[0].regions_moved - moved0;
    blocks += keys.size();
    state.ResumeTiming();
  }
  state.counters["blocks/s"] =
      benchmark::Counter(static_cast<double>(blocks), benchmark::Counter::kIsRate);
  state.counters["regions/iter"] = benchmark::Counter(
      static_cast<double>(moved) / static_cast<double>(std::max<int64_t>(state.iterations(), 1)));
}
BENCHMARK_CAPTURE(BM_StoreSizes, 16k_one_size, 0, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_StoreSizes, 16k_three_sizes, 0, true)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_StoreSizes, 2m_one_size, 2, false)->Unit(benchmark::kMicrosecond);
BENCHMARK_CAPTURE(BM_StoreSizes, 2m_three_sizes, 2, true)->Unit(benchmark::kMicrosecond);

void BM_IndexPrefixLookup(benchmark::State& state) {
  const size_t n = 2048;
  BlockIndex idx(1 << 20, 64);
  std::mt19937_64 rng(1);
  std::vector<BlockKey> keys;
  for (size_t i = 0; i < (1 << 19); ++i) {
    BlockKey k{rng(), rng()};
    std::lock_guard<std::mutex> l(idx.MutexFor(k));
    (void)idx.InsertLocked(k);
    if (i < n) keys.push_back(k);
  }
  for (auto _ : state) {
    size_t hits = 0;
    for (const auto& k : keys) {
      std::lock_guard<std::mutex> l(idx.MutexFor(k));
      if (idx.FindLocked(k) == kNoBlock) break;
      ++hits;
    }
    benchmark::DoNotOptimize(hits);
  }
  state.counters["keys/s"] =
      benchmark::Counter(static_cast<double>(state.iterations() * n), benchmark::Counter::kIsRate);
}
BENCHMARK(BM_IndexPrefixLookup);

void BM_HashTokens(benchmark::State& state) {
  const uint32_t tpb = static_cast<uint32_t>(state.range(0));
  const HashMode mode = state.range(1) == 0 ? HashMode::kXxh3_128 : HashMode::kSha256;
  KeyHasher h(Spec(tpb, mode));
  std::vector<uint32_t> tokens(32768);
  std::mt19937 rng(2);
  for (auto& t : tokens) t = rng() % 128000;
  std::vector<BlockKey> keys;
  keys.reserve(tokens.size());
  for (auto _ : state) {
    keys.clear();
    h.Hash(tokens, &keys);
    benchmark::DoNotOptimize(keys.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * tokens.size() * 4));
  state.SetLabel(HashModeName(mode));
}
BENCHMARK(BM_HashTokens)->Args({16, 0})->Args({64, 0})->Args({256, 0})->Args({16, 1})->Args({256, 1});

// The chain messages of 32K tokens (docs/hashing.md: prev key, count, token
// ids, empty extra), each hashed and chained as ChainKey does, by OpenSSL
// (impl 0) or by the portable SHA-256 kvtier used before (impl 1). Both must
// give the same digests; the row fails otherwise.
void BM_Sha256ChainMessage(benchmark::State& state) {
  const uint32_t tpb = static_cast<uint32_t>(state.range(0));
  const bool portable = state.range(1) == 1;
  std::vector<uint32_t> tokens(32768);
  std::mt19937 rng(2);
  for (auto& t : tokens) t = rng() % 128000;
  std::vector<uint8_t> msg(16 + 4 + 4 * tpb + 4, 0);
  std::memcpy(msg.data() + 16, &tpb, 4);
  auto chain = [&](auto&& digest) {
    std::array<uint8_t, 32> d{};
    for (size_t b = 0; b + tpb <= tokens.size(); b += tpb) {
      std::memcpy(msg.data(), d.data(), 16);
      std::memcpy(msg.data() + 20, tokens.data() + b, 4 * tpb);
      d = digest(msg.data(), msg.size());
    }
    return d;
  };
  auto openssl = [](const uint8_t* p, size_t n) { return Sha256Digest(p, n); };
  auto old = [](const uint8_t* p, size_t n) {
    bench::PortableSha256 h;
    h.Update(p, n);
    return h.Finish();
  };
  if (chain(openssl) != chain(old)) {
    state.SkipWithError("OpenSSL and portable SHA-256 disagree");
    return;
  }
  for (auto _ : state) {
    auto d = portable ? chain(old) : chain(openssl);
    benchmark::DoNotOptimize(d.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * tokens.size() * 4));
  state.SetLabel(portable ? "portable (before)" : "openssl");
}
BENCHMARK(BM_Sha256ChainMessage)->Args({16, 0})->Args({16, 1})->Args({256, 0})->Args({256, 1});

void BM_IndexMemory(benchmark::State& state) {
  const uint32_t n = 1 << 20;
  double per = 0;
  for (auto _ : state) {
    BlockIndex idx(n, 64);
    std::mt19937_64 rng(3);
    for (uint32_t i = 0; i < n; ++i) {
      BlockKey k{rng(), rng()};
      std::lock_guard<std::mutex> l(idx.MutexFor(k));
      (void)idx.InsertLocked(k);
    }
    per = static_cast<double>(idx.MemoryUsage()) / n;
  }
  state.counters["bytes/entry"] = per;
}
BENCHMARK(BM_IndexMemory)->Iterations(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace kvtier

BENCHMARK_MAIN();
