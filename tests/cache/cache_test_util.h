// Helpers shared by the cache tests: a cache over a real host segment and
// payloads whose bytes are derived from their key, so any reader can verify
// what it got without a side table.
#pragma once

#include <cstring>
#include <memory>
#include <vector>

#include "cache/cache.h"
#include "tiers/checksum.h"
#include "tiers/host_shm_tier.h"

namespace kvtier::testing {

inline std::unique_ptr<Cache> MakeCache(uint64_t capacity, uint64_t region,
                                        const std::string& policy = "priority-lru",
                                        ClockFn clock = {}) {
  HostShmOptions ho;
  ho.capacity_bytes = capacity;
  ho.region_bytes = region;
  auto tier = HostShmTier::Create(ho);
  if (!tier.ok()) return nullptr;
  CacheOptions o;
  o.tiers.push_back(TierSetup{std::move(tier).value(), policy});
  o.clock = std::move(clock);
  auto c = Cache::Create(std::move(o));
  return c.ok() ? std::move(c).value() : nullptr;
}

inline void FillFromKey(const BlockKey& k, uint8_t* p, size_t n) {
  uint64_t x = k.lo ^ (k.hi * 0x9E3779B97F4A7C15ull);
  for (size_t i = 0; i < n; i += 8) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    std::memcpy(p + i, &x, std::min<size_t>(8, n - i));
  }
}

// Fills every reserved slot of `r` from its key; returns the checksums to
// commit with (0 for blocks that were not reserved).
inline std::vector<uint64_t> FillReserved(Cache& cache, const Reservation& r) {
  std::vector<uint64_t> sums(r.blocks().size(), 0);
  for (size_t i = 0; i < sums.size(); ++i) {
    const auto& b = r.blocks()[i];
    if (b.outcome != ReserveOutcome::kReserved) continue;
    uint8_t* p = cache.Address(b.tier, b.offset);
    FillFromKey(b.key, p, b.size);
    sums[i] = checksum::Sum64(p, b.size);
  }
  return sums;
}

inline bool MatchesKey(const BlockKey& k, const uint8_t* p, size_t n) {
  std::vector<uint8_t> want(n);
  FillFromKey(k, want.data(), n);
  return std::memcmp(want.data(), p, n) == 0;
}

inline NamespaceSpec SmallSpec() {
  NamespaceSpec s;
  s.model_id = "test-model";
  s.layout = KvLayout{2, 2, 64, 16, DType::kBF16, 2};  // 16 KiB blocks
  return s;
}

}  // namespace kvtier::testing
