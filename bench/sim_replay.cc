#include "bench/sim_replay.h"

#include <algorithm>
#include <chrono>
#include <memory>
#include <span>
#include <vector>

#include "cache/cache.h"
#include "eviction/admission.h"
#include "eviction/policy.h"
#include "tiers/accounting_tier.h"

namespace kvtier::bench {

namespace {

constexpr uint32_t kNone = 0xFFFFFFFFu;

uint64_t Mix64(uint64_t x) {  // splitmix64's finalizer: a bijection, 0 -> 0
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  x ^= x >> 31;
  return x;
}

// Distinct dense ids give distinct, non-zero `lo` (the policies' fingerprint).
BlockKey KeyOf(uint32_t dense) {
  return BlockKey{Mix64(uint64_t{dense} + 0x9e3779b97f4a7c15ULL),
                  Mix64(uint64_t{dense} ^ 0xd1b54a32d192ed03ULL)};
}

// The second tier: an accounting tier, its own eviction policy (block ids
// are the trace's dense ids) and the admission policy in front of it.
class LowerTier {
 public:
  static Result<std::unique_ptr<LowerTier>> Create(const ReplayOptions& o, uint32_t num_blocks) {
    AccountingTierOptions ao;
    ao.block_bytes = o.block_bytes;
    ao.capacity_bytes = o.tier2_blocks * o.block_bytes;
    ao.kind = TierKind::kNvme;
    ao.name = "sim-tier2";
    auto tier = AccountingTier::Create(ao);
    if (!tier.ok()) return tier.status();
    auto policy = NewEvictionPolicy(o.tier2_policy);
    if (!policy.ok()) return policy.status();
    AdmissionOptions ado;
    ado.window = o.admission_window;
    auto admission = NewAdmissionPolicy(o.admission, ado);
    if (!admission.ok()) return admission.status();
    auto t = std::unique_ptr<LowerTier>(new LowerTier);
    t->tier_ = std::move(tier).value();
    t->policy_ = std::move(policy).value();
    t->admission_ = std::move(admission).value();
    t->slots_.resize(num_blocks);
    t->present_.assign(num_blocks, 0);
    t->block_bytes_ = o.block_bytes;
    return t;
  }

  bool Contains(uint32_t d) const { return present_[d] != 0; }

  // Takes `d` out (it moves up to tier 1). REQUIRES: Contains(d).
  void Remove(uint32_t d) {
    policy_->Remove(d);
    tier_->Free(slots_[d]);
    present_[d] = 0;
  }

  // A block evicted from tier 1: admitted and stored, or dropped. With
  // r == nullptr the block returns without admission or counting (a
  // promotion that could not be placed).
  void Offer(uint32_t d, uint32_t parent, ReplayResult* r) {
    if (r != nullptr && !admission_->Admit(KeyOf(d).lo)) {
      ++r->admission_refused;
      return;
    }
    auto slot = tier_->Allocate(block_bytes_);
    while (!slot.ok()) {
      const BlockId victim = policy_->PickVictim([](BlockId) { return true; });
      if (victim == kNoBlock) return;  // cannot happen: nothing here is pinned
      Remove(victim);
      if (r != nullptr) ++r->tier2_evictions;
      slot = tier_->Allocate(block_bytes_);
    }
    BlockMeta meta;
    meta.parent = parent != kNone && present_[parent] ? parent : kNoBlock;
    meta.bytes = static_cast<uint32_t>(block_bytes_);
    meta.fingerprint = KeyOf(d).lo;
    slots_[d] = *slot;
    present_[d] = 1;
    policy_->Track(d, meta);
    if (r != nullptr) ++r->demotions;
  }

 private:
  LowerTier() = default;
  std::unique_ptr<AccountingTier> tier_;
  std::unique_ptr<EvictionPolicy> policy_;
  std::unique_ptr<AdmissionPolicy> admission_;
  std::vector<Slot> slots_;
  std::vector<uint8_t> present_;
  uint64_t block_bytes_ = 0;
};

}  // namespace

Result<ReplayResult> Replay(const Trace& t, const ReplayOptions& o, std::atomic<uint64_t>* progress) {
  if (o.tier1_blocks == 0) return Status::InvalidArgument("tier-1 capacity is 0 blocks");
  if (o.block_bytes == 0 || o.block_bytes > 0xFFFFFFFFull)
    return Status::InvalidArgument("block bytes out of range");
  const auto t0 = std::chrono::steady_clock::now();
  ReplayResult res;

  // ---- Tier 1: the real cache over an accounting tier.
  uint64_t now_ns = 1000000000ull;
  AccountingTierOptions ao;
  ao.block_bytes = o.block_bytes;
  ao.capacity_bytes = o.tier1_blocks * o.block_bytes;
  ao.name = "sim-tier1";
  auto tier = AccountingTier::Create(ao);
  if (!tier.ok()) return tier.status();
  AccountingTier* t1 = tier->get();
  std::vector<uint64_t> freed;
  t1->set_free_log(&freed);
  CacheOptions co;
  co.tiers.push_back(TierSetup{std::move(tier).value(), o.policy});
  const uint32_t max_keys = std::max<uint32_t>(t.max_request_blocks, 1);
  co.max_blocks = static_cast<uint32_t>(std::min<uint64_t>(o.tier1_blocks + max_keys + 1024, 1u << 30));
  co.max_keys_per_call = max_keys;
  co.clock = [&now_ns] { return now_ns; };  // trace time: retention follows the trace
  auto cache_or = Cache::Create(std::move(co));
  if (!cache_or.ok()) return cache_or.status();
  Cache& cache = **cache_or;
  NamespaceSpec spec;
  spec.model_id = "kvtier-sim";
  spec.layout.num_layers = 1;
  spec.layout.num_kv_heads = 1;
  spec.layout.head_dim = 1;
  spec.layout.tokens_per_block = std::clamp<uint32_t>(t.block_tokens, 1, 4096);
  auto ns_or = cache.OpenNamespace(spec);
  if (!ns_or.ok()) return ns_or.status();
  const NamespaceId ns = *ns_or;

  // ---- Tier 2 (optional).
  std::unique_ptr<LowerTier> lower;
  std::vector<uint32_t> parent_of;
  if (o.tier2_blocks > 0) {
    auto l = LowerTier::Create(o, t.num_unique_blocks);
    if (!l.ok()) return l.status();
    lower = std::move(l).value();
    parent_of.assign(t.num_unique_blocks, kNone);
  }

  // Reused per request: no allocation in the loop beyond the cache's own.
  std::vector<BlockKey> keys(max_keys);
  const std::vector<uint64_t> sizes(max_keys, o.block_bytes);
  const std::vector<uint64_t> zeros(max_keys, 0);
  std::vector<uint32_t> slot_owner(t1->address_blocks(), kNone);  // slot -> dense id
  std::vector<uint8_t> promoted(max_keys, 0);  // per request position: a tier-2 hit
  std::vector<Lease> leases;

  // Tier-1 evictions since the last call: demote (or drop) them. Must run
  // before slot_owner learns the slots of a new reservation.
  auto handle_freed = [&] {
    for (uint64_t off : freed) {
      uint32_t& owner = slot_owner[off / o.block_bytes];
      ++res.tier1_evictions;
      if (lower && owner != kNone) lower->Offer(owner, parent_of[owner], &res);
      owner = kNone;
    }
    freed.clear();
  };
  size_t hit_end = 0;  // end of the current request's hit prefix
  // Stores keys [from, to) (a run with no tier-2 block), chained to
  // keys[from - 1] when from > 0. `anchor`: keys[from - 1] is in tier 1 and
  // is passed along (answered kPresent) so the policy links the first new
  // block to its parent.
  auto store = [&](std::span<const uint32_t> blocks, size_t from, size_t to, bool anchor) -> Status {
    size_t s = anchor && from > 0 ? from - 1 : from;
    StoreOptions so;
    if (s > 0) so.first_parent = keys[s - 1];
    const size_t m = to - s;
    auto rsv = cache.Reserve(ns, std::span<const BlockKey>(keys.data() + s, m),
                             std::span<const uint64_t>(sizes.data(), m), so);
    handle_freed();
    if (!rsv.ok()) {
      if (!rsv.status().IsResourceExhausted()) return rsv.status();
      // Nothing could be placed (tier 1 is full of pinned blocks). Hits of
      // tier 1 in the run were answered present; everything else had no room.
      for (size_t i = from; i < to; ++i) {
        if (i < hit_end && !promoted[i]) continue;
        ++res.no_space_blocks;
        if (promoted[i]) lower->Offer(blocks[i], parent_of[blocks[i]], nullptr);
      }
      return Status::OK();
    }
    const auto& rb = rsv->blocks();
    for (size_t i = 0; i < rb.size(); ++i) {
      if (rb[i].outcome == ReserveOutcome::kReserved) {
        slot_owner[rb[i].offset / o.block_bytes] = blocks[s + i];
        ++res.stored_blocks;
        res.promotions += promoted[s + i];
      } else if (rb[i].outcome == ReserveOutcome::kNoSpace) {
        ++res.no_space_blocks;
        // A promotion that found no room (tier 1 full of pinned blocks)
        // leaves the block where it was.
        if (promoted[s + i]) lower->Offer(blocks[s + i], parent_of[blocks[s + i]], nullptr);
      }
    }
    if (rsv->done()) return Status::OK();
    return cache.Commit(*rsv, std::span<const uint64_t>(zeros.data(), m));
  };

  for (const TraceRequest& r : t.requests) {
    now_ns = 1000000000ull + static_cast<uint64_t>(r.time_s * 1e9);
    const std::span<const uint32_t> blocks = t.blocks(r);
    const size_t n = blocks.size();
    for (size_t i = 0; i < n; ++i) keys[i] = KeyOf(blocks[i]);
    if (lower)
      for (size_t i = 1; i < n; ++i) parent_of[blocks[i]] = blocks[i - 1];

    // Tokens of blocks [a, b) of this request (the last block may be partial).
    auto tokens = [&](size_t a, size_t b) {
      const uint64_t bt = t.block_tokens;
      return std::min<uint64_t>(b * bt, r.input_tokens) - std::min<uint64_t>(a * bt, r.input_tokens);
    };
    auto lease = cache.Acquire(ns, std::span<const BlockKey>(keys.data(), n));
    if (!lease.ok()) return lease.status();
    const size_t h1 = lease->size();
    size_t pos = h1;
    res.tier_hits[0] += h1;
    res.tier_hit_tokens[0] += tokens(0, h1);
    leases.push_back(std::move(lease).value());
    while (lower && pos < n && lower->Contains(blocks[pos])) {
      lower->Remove(blocks[pos]);  // promoted: stored into tier 1 below
      promoted[pos] = 1;
      ++res.tier_hits[1];
      res.tier_hit_tokens[1] += tokens(pos, pos + 1);
      if (++pos == n) break;
      auto more = cache.Acquire(ns, std::span<const BlockKey>(keys.data() + pos, n - pos));
      if (!more.ok()) return more.status();
      res.tier_hits[0] += more->size();
      res.tier_hit_tokens[0] += tokens(pos, pos + more->size());
      pos += more->size();
      leases.push_back(std::move(more).value());
    }
    res.hits.Add(n, pos, r.input_tokens, t.block_tokens);
    hit_end = pos;

    if (h1 < n) {
      if (!lower) {
        KVTIER_RETURN_IF_ERROR(store(blocks, h1, n, true));
      } else {
        // Blocks past the hit prefix that tier 2 holds stay there (the
        // daemon's index answers them as present); the rest are stored.
        size_t from = h1;
        bool anchor = true;
        for (size_t i = h1; i <= n; ++i) {
          if (i < n && (i < pos || !lower->Contains(blocks[i]))) continue;
          if (i > from) KVTIER_RETURN_IF_ERROR(store(blocks, from, i, anchor));
          from = i + 1;
          anchor = false;
        }
      }
    }
    if (lower) std::fill(promoted.begin() + static_cast<std::ptrdiff_t>(h1),
                         promoted.begin() + static_cast<std::ptrdiff_t>(pos), 0);
    leases.clear();  // releases the pins
    if (progress != nullptr) progress->fetch_add(1, std::memory_order_relaxed);
  }
  const CacheStats st = cache.Stats();
  if (!st.tiers.empty()) res.policy_memory = st.tiers[0].policy_memory;
  res.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return res;
}

}  // namespace kvtier::bench
