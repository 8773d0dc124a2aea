// RpcService: the Cap'n Proto capabilities of kvtierd over a Cache.
//
// NewBootstrap() returns a fresh KvTier capability for one connection. Its
// Namespace, Lease and StoreTxn capabilities hold cache objects (a Lease
// holds pins, a StoreTxn a Reservation); Cap'n Proto destroys them when the
// client drops them or its connection ends, which releases the pins and
// aborts unfinished writes. Every request is validated against the
// namespace's layout and the limits below before it touches the cache.
//
// Tenants (server/tenants.h, docs/security.md): a connection's tenant is
// resolved from its peer's credentials (or a token) when it opens its first
// namespace; it is handed that tenant's host segment and HBM arenas only,
// and only after that. Its namespaces are its tenant's, and the cache keeps
// every tenant's blocks apart.
//
// Thread safety: one RpcService is shared by all RPC worker threads; each
// capability object lives on the event loop of the connection that made it.
// The Cache, HostShmTier and RpcMetrics must outlive every capability.
#pragma once

#include <atomic>

#include <capnp/capability.h>

#include <cstdint>
#include <vector>

#include "cache/cache.h"
#include "server/connection_limits.h"
#include "server/metrics.h"
#include "server/tenants.h"
#include "tiers/gpu_hbm_tier.h"
#include "tiers/host_shm_tier.h"

namespace kvtier {

struct RpcServiceOptions {
  uint32_t max_keys_per_call = 65536;       // acquire / reserve
  uint32_t max_tokens_per_call = 1u << 22;  // hashTokens
  uint32_t max_tp_ranks = 64;               // acquireTp
  // Stores from a client that names its GPU land in that GPU's HBM tier.
  bool store_in_hbm = false;
  // What one connection, and one uid, may hold (server/connection_limits.h).
  ConnectionLimits limits;
};

// One HBM tier of the daemon: which cache tier it is.
struct HbmTierRef {
  const GpuHbmTier* tier = nullptr;
  TierId id = kNoTier;
};

// The memory one tenant's connections are handed (by tenant index).
struct RpcTenant {
  const HostShmTier* host = nullptr;
  std::vector<HbmTierRef> hbm;
};

class RpcService {
 public:
  // One tenant (every connection), owning `host` and `hbm`.
  RpcService(Cache* cache, const HostShmTier* host, RpcMetrics* metrics,
             RpcServiceOptions options = {}, std::vector<HbmTierRef> hbm = {})
      : RpcService(cache, metrics, options, {RpcTenant{host, std::move(hbm)}}, TenantResolver()) {}
  // Tenants: `tenants[i]` is the memory of the resolver's tenant i (whose
  // cache tenant index is i too).
  RpcService(Cache* cache, RpcMetrics* metrics, RpcServiceOptions options,
             std::vector<RpcTenant> tenants, TenantResolver resolver)
      : cache_(cache),
        tenants_(std::move(tenants)),
        resolver_(std::move(resolver)),
        metrics_(metrics),
        options_(options) {}

  // The capability of one connection, whose peer has `peer`'s credentials
  // and whose holdings `usage` counts and bounds. Without a usage: no
  // limits (in-process clients).
  capnp::Capability::Client NewBootstrap(const PeerCredentials& peer,
                                         std::shared_ptr<ConnectionUsage> usage);
  capnp::Capability::Client NewBootstrap(const PeerCredentials& peer = {}) {
    return NewBootstrap(peer, ConnectionUsage::Unlimited());
  }
  capnp::Capability::Client NewBootstrap(std::shared_ptr<ConnectionUsage> usage) {
    return NewBootstrap(PeerCredentials{}, std::move(usage));
  }

  Cache* cache() const { return cache_; }
  const TenantResolver& resolver() const { return resolver_; }
  // Where hits of a client of `tenant` on `device` are promoted (kNoTier:
  // the tenant's default).
  TierId PromoteTier(int tenant, int device) const {
    const HbmTierRef* ref = device >= 0 ? hbm(tenant, device) : nullptr;
    return ref != nullptr ? ref->id : kNoTier;
  }
  const HostShmTier* host(int tenant) const {
    return tenant < 0 || static_cast<size_t>(tenant) >= tenants_.size()
               ? nullptr
               : tenants_[static_cast<size_t>(tenant)].host;
  }
  // The tenant's HBM tier on CUDA device `device` (-1: the first), or null.
  const HbmTierRef* hbm(int tenant, int device) const {
    if (tenant < 0 || static_cast<size_t>(tenant) >= tenants_.size()) return nullptr;
    for (const auto& h : tenants_[static_cast<size_t>(tenant)].hbm)
      if (device < 0 || h.tier->device() == device) return &h;
    return nullptr;
  }
  RpcMetrics* metrics() const { return metrics_; }
  const RpcServiceOptions& options() const { return options_; }

  // Draining (SIGTERM): acquire, acquireTp and reserve answer Unavailable;
  // release, commit and abort of what clients already hold go on.
  void StartDraining() { draining_.store(true, std::memory_order_release); }
  bool draining() const { return draining_.load(std::memory_order_acquire); }
  // Throws Unavailable while draining (for the methods that start work).
  void RefuseIfDraining(const char* method) const;

 private:
  Cache* cache_;
  std::vector<RpcTenant> tenants_;
  TenantResolver resolver_;
  RpcMetrics* metrics_;
  RpcServiceOptions options_;
  std::atomic<bool> draining_{false};
};

}  // namespace kvtier
