// Tenants of kvtierd: who a connection is, and what of the daemon's memory
// is its own (docs/security.md, "Tenants").
//
// A tenant is named by configuration (`--tenant NAME=RULE[,RULE...]`, once
// per tenant) and recognised from the peer's credentials (SO_PEERCRED, read
// by the kernel at connect: a client cannot forge them) or from a token it
// gives when it opens a namespace. Rules:
//
//   uid:N            a connection from user N
//   gid:N            a connection whose primary group is N
//   token-sha256:H   a connection that gives a token whose SHA-256 is H
//                    (64 hex digits; the daemon stores only the hash)
//   host:SIZE        its host segment's size (its host-tier quota)
//   hbm:SIZE         its HBM arena's size on each GPU (its HBM quota)
//   nvme:SIZE        most bytes of its blocks on the NVMe tier
//
// A token, when given, decides (a wrong one is refused, never ignored);
// else the first tenant with the peer's uid, else the first with its gid.
// A connection matching none is refused. With no tenant configured there is
// one tenant, "", that every connection belongs to (a single trusted engine).
//
// Thread safety: immutable after construction.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier {

struct TenantConfig {
  std::string name;
  std::vector<uint32_t> uids;
  std::vector<uint32_t> gids;
  std::vector<std::array<uint8_t, 32>> token_sha256;
  uint64_t host_bytes = 0;  // 0: an even share of what is left
  uint64_t hbm_bytes = 0;   // 0: an even share of what is left
  uint64_t nvme_bytes = 0;  // 0: no NVMe quota
};

// One `--tenant` value. InvalidArgument naming the bad part.
Result<TenantConfig> ParseTenant(std::string_view text);
// Every `--tenant` value; InvalidArgument on a bad one or a name given twice.
Result<std::vector<TenantConfig>> ParseTenants(const std::vector<std::string>& values);

// Splits `total` bytes among tenants: an explicit share each where given,
// the rest evenly among the others; every share rounded down to whole
// `unit`s and at least one. InvalidArgument when that cannot be done.
Result<std::vector<uint64_t>> SplitShares(const std::vector<uint64_t>& explicit_bytes,
                                          uint64_t total, uint64_t unit, std::string_view what);

// The credentials of a connection's peer.
struct PeerCredentials {
  int32_t pid = -1;
  uint32_t uid = UINT32_MAX;
  uint32_t gid = UINT32_MAX;
  bool known = false;  // SO_PEERCRED answered
};
// SO_PEERCRED of a connected Unix socket.
PeerCredentials ReadPeerCredentials(int fd);

class TenantResolver {
 public:
  // Empty: the single default tenant "".
  explicit TenantResolver(std::vector<TenantConfig> tenants = {});

  bool multi_tenant() const { return !tenants_.empty(); }
  size_t size() const { return tenants_.empty() ? 1 : tenants_.size(); }
  const std::string& name(size_t i) const;

  // Why a connection was refused (counted per reason in /metrics).
  enum class Refusal : uint8_t { kNone = 0, kUnknownPeer, kBadToken };
  struct Match {
    int tenant = -1;  // index, -1 when refused
    Refusal refusal = Refusal::kNone;
  };
  // The tenant of a peer giving `token` (empty: none).
  Match Resolve(const PeerCredentials& peer, std::string_view token) const;

 private:
  std::vector<TenantConfig> tenants_;
};

}  // namespace kvtier
