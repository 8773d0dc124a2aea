// kvtier-policy-bench: per-operation cost of the eviction policies
// (eviction/policy.h) on 1M tracked block ids.
//
//   Touch/<policy>        a hit on a uniformly random tracked id
//   EvictCycle/<policy>   PickVictim (all eligible) + Remove + Track of the
//                         victim's id as a new block: one steady-state
//                         replacement in a full tier
//
// Setup tracks 1M ids and then hits 1M random ones, so list order is not
// memory order. items_per_second counts Touch calls, resp. whole
// replacement cycles (three policy calls each). Ids are laid out as chains of 16 (parent =
// id - 1 inside a chain) so that prefix-lru sees real prefix structure;
// priority-lru gets random priorities, and its "+retention" variant gives
// one block in ten a retention deadline; s3fifo gets fingerprints that recur,
// so its ghost queue sees hits.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "eviction/policy.h"

namespace kvtier {
namespace {

constexpr BlockId kBlocks = 1 << 20;
constexpr uint32_t kChain = 16;
constexpr size_t kRandom = 1 << 22;  // pre-drawn random values, power of two

struct Setup {
  std::string name;
  bool retention = false;
};

class Bench {
 public:
  explicit Bench(const Setup& s) : retention_(s.retention), rng_(1234) {
    PolicyOptions options;
    options.clock = [this] { return now_; };
    policy_ = std::move(NewEvictionPolicy(s.name, options)).value();
    random_.resize(kRandom);
    for (auto& r : random_) r = rng_();
    for (BlockId id = 0; id < kBlocks; ++id) policy_->Track(id, Meta(id));
    // Random hits, so that list order no longer follows id (memory) order
    // and s3fifo has hit counts to spend.
    for (BlockId i = 0; i < kBlocks; ++i) policy_->Touch(static_cast<BlockId>(Next() % kBlocks));
  }

  BlockMeta Meta(BlockId id) {
    const uint64_t r = Next();
    BlockMeta m;
    m.priority = static_cast<uint8_t>(r % 101);
    m.parent = id % kChain ? id - 1 : kNoBlock;
    m.fingerprint = 1 + (r >> 8) % (2 * uint64_t{kBlocks});  // recurring
    if (retention_ && (r >> 40) % 10 == 0) {
      m.retention_deadline_ns = now_ + 1 + (r >> 48) % 1000000;
    }
    return m;
  }

  uint64_t Next() { return random_[cursor_++ & (kRandom - 1)]; }

  EvictionPolicy& policy() { return *policy_; }
  void Tick() { now_ += 100; }  // 100 ns of fake time per cycle

 private:
  bool retention_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> random_;
  size_t cursor_ = 0;
  uint64_t now_ = 1;
  std::unique_ptr<EvictionPolicy> policy_;
};

void BM_Touch(benchmark::State& state, Setup setup) {
  Bench b(setup);
  EvictionPolicy& p = b.policy();
  for (auto _ : state) {
    p.Touch(static_cast<BlockId>(b.Next() % kBlocks));
    b.Tick();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_EvictCycle(benchmark::State& state, Setup setup) {
  Bench b(setup);
  EvictionPolicy& p = b.policy();
  const std::function<bool(BlockId)> all = [](BlockId) { return true; };
  size_t misses = 0;
  for (auto _ : state) {
    const BlockId v = p.PickVictim(all);
    if (v == kNoBlock) {
      ++misses;
      continue;
    }
    p.Remove(v);
    p.Track(v, b.Meta(v));
    b.Tick();
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["no_victim"] = static_cast<double>(misses);
}

#define POLICY_BENCH(fn, label, ...) \
  BENCHMARK_CAPTURE(fn, label, Setup{__VA_ARGS__})->Unit(benchmark::kNanosecond)

POLICY_BENCH(BM_Touch, lru, "lru");
POLICY_BENCH(BM_Touch, priority_lru, "priority-lru");
POLICY_BENCH(BM_Touch, priority_lru_retention, "priority-lru", true);
POLICY_BENCH(BM_Touch, prefix_lru, "prefix-lru");
POLICY_BENCH(BM_Touch, s3fifo, "s3fifo");
POLICY_BENCH(BM_Touch, adaptive_2q, "adaptive-2q");
POLICY_BENCH(BM_EvictCycle, lru, "lru");
POLICY_BENCH(BM_EvictCycle, priority_lru, "priority-lru");
POLICY_BENCH(BM_EvictCycle, priority_lru_retention, "priority-lru", true);
POLICY_BENCH(BM_EvictCycle, prefix_lru, "prefix-lru");
POLICY_BENCH(BM_EvictCycle, s3fifo, "s3fifo");
POLICY_BENCH(BM_EvictCycle, adaptive_2q, "adaptive-2q");

}  // namespace
}  // namespace kvtier

BENCHMARK_MAIN();
