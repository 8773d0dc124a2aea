#include "server/tenants.h"

#include <sys/socket.h>

#include <algorithm>

#include "cache/sha256.h"
#include "server/config.h"

namespace kvtier {

namespace {

Result<uint32_t> ParseId(std::string_view v, std::string_view what) {
  if (v.empty() || v.size() > 10) return Status::InvalidArgument(std::string(what) + " is not a number");
  uint64_t x = 0;
  for (char c : v) {
    if (c < '0' || c > '9') return Status::InvalidArgument(std::string(what) + " is not a number");
    x = x * 10 + static_cast<uint64_t>(c - '0');
  }
  if (x >= UINT32_MAX) return Status::InvalidArgument(std::string(what) + " is out of range");
  return static_cast<uint32_t>(x);
}

int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Constant time in the contents: a token's hash is compared without telling
// by its timing how many leading bytes matched.
bool SameDigest(const std::array<uint8_t, 32>& a, const std::array<uint8_t, 32>& b) {
  uint8_t d = 0;
  for (size_t i = 0; i < a.size(); ++i) d |= static_cast<uint8_t>(a[i] ^ b[i]);
  return d == 0;
}

}  // namespace

Result<TenantConfig> ParseTenant(std::string_view text) {
  const std::string where = "tenant '" + std::string(text) + "': ";
  const size_t eq = text.find('=');
  if (eq == std::string_view::npos)
    return Status::InvalidArgument(where + "expected NAME=RULE[,RULE...], e.g. alice=uid:1000");
  TenantConfig t;
  t.name = std::string(text.substr(0, eq));
  if (t.name.empty() || t.name.size() > 64)
    return Status::InvalidArgument(where + "the name must be 1..64 characters");
  for (char c : t.name)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
          c == '_' || c == '.'))
      return Status::InvalidArgument(where + "the name may hold only letters, digits, '-', '_', '.'");
  std::string_view rest = text.substr(eq + 1);
  if (rest.empty()) return Status::InvalidArgument(where + "no rule (uid:N, gid:N, token-sha256:HEX)");
  while (!rest.empty()) {
    const size_t comma = rest.find(',');
    std::string_view rule = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const size_t colon = rule.find(':');
    if (colon == std::string_view::npos)
      return Status::InvalidArgument(where + "rule '" + std::string(rule) + "' is not KIND:VALUE");
    std::string_view kind = rule.substr(0, colon), value = rule.substr(colon + 1);
    if (kind == "uid" || kind == "gid") {
      auto id = ParseId(value, std::string(kind) + " '" + std::string(value) + "'");
      if (!id.ok()) return Status::InvalidArgument(where + id.status().message());
      (kind == "uid" ? t.uids : t.gids).push_back(*id);
    } else if (kind == "token-sha256") {
      if (value.size() != 64)
        return Status::InvalidArgument(where + "token-sha256 needs 64 hex digits (sha256sum of the token)");
      std::array<uint8_t, 32> d{};
      for (size_t i = 0; i < 32; ++i) {
        const int hi = HexDigit(value[2 * i]), lo = HexDigit(value[2 * i + 1]);
        if (hi < 0 || lo < 0)
          return Status::InvalidArgument(where + "token-sha256 is not hexadecimal");
        d[i] = static_cast<uint8_t>(hi * 16 + lo);
      }
      t.token_sha256.push_back(d);
    } else if (kind == "host" || kind == "hbm" || kind == "nvme") {
      auto size = ParseSize(value);
      if (!size.ok()) return Status::InvalidArgument(where + size.status().message());
      if (*size == 0) return Status::InvalidArgument(where + std::string(kind) + " size must not be 0");
      (kind == "host" ? t.host_bytes : kind == "hbm" ? t.hbm_bytes : t.nvme_bytes) = *size;
    } else {
      return Status::InvalidArgument(where + "unknown rule '" + std::string(kind) +
                                     "' (uid, gid, token-sha256, host, hbm, nvme)");
    }
  }
  if (t.uids.empty() && t.gids.empty() && t.token_sha256.empty())
    return Status::InvalidArgument(where + "no uid, gid or token-sha256 rule: nobody could be it");
  return t;
}

Result<std::vector<TenantConfig>> ParseTenants(const std::vector<std::string>& values) {
  std::vector<TenantConfig> out;
  for (const std::string& v : values) {
    auto t = ParseTenant(v);
    if (!t.ok()) return t.status();
    for (const auto& o : out)
      if (o.name == t->name)
        return Status::InvalidArgument("tenant '" + t->name + "' is configured twice");
    out.push_back(std::move(t).value());
  }
  if (out.size() > 32) return Status::InvalidArgument("at most 32 tenants");
  return out;
}

Result<std::vector<uint64_t>> SplitShares(const std::vector<uint64_t>& explicit_bytes,
                                          uint64_t total, uint64_t unit, std::string_view what) {
  std::vector<uint64_t> out(explicit_bytes.size(), 0);
  uint64_t given = 0;
  size_t open = 0;
  for (size_t i = 0; i < explicit_bytes.size(); ++i) {
    out[i] = explicit_bytes[i] / unit * unit;
    if (explicit_bytes[i] != 0 && out[i] == 0)
      return Status::InvalidArgument(std::string(what) + " share " +
                                     FormatSize(explicit_bytes[i]) + " is below one region (" +
                                     FormatSize(unit) + ")");
    given += out[i];
    open += explicit_bytes[i] == 0;
  }
  if (given > total)
    return Status::InvalidArgument("the tenants' " + std::string(what) + " shares (" +
                                   FormatSize(given) + ") exceed the " + std::string(what) +
                                   " capacity (" + FormatSize(total) + ")");
  if (open > 0) {
    const uint64_t each = (total - given) / open / unit * unit;
    if (each == 0)
      return Status::InvalidArgument("the " + std::string(what) + " capacity (" + FormatSize(total) +
                                     ") leaves less than one region (" + FormatSize(unit) +
                                     ") for each tenant without a share");
    for (size_t i = 0; i < out.size(); ++i)
      if (explicit_bytes[i] == 0) out[i] = each;
  }
  return out;
}

PeerCredentials ReadPeerCredentials(int fd) {
  PeerCredentials p;
  ucred c{};
  socklen_t len = sizeof(c);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &c, &len) == 0 && len == sizeof(c)) {
    p.pid = c.pid;
    p.uid = c.uid;
    p.gid = c.gid;
    p.known = true;
  }
  return p;
}

TenantResolver::TenantResolver(std::vector<TenantConfig> tenants) : tenants_(std::move(tenants)) {}

const std::string& TenantResolver::name(size_t i) const {
  static const std::string kDefault;
  return tenants_.empty() ? kDefault : tenants_[i].name;
}

TenantResolver::Match TenantResolver::Resolve(const PeerCredentials& peer,
                                              std::string_view token) const {
  if (tenants_.empty()) return Match{0, Refusal::kNone};
  if (!token.empty()) {
    const Sha256Bytes d = Sha256Digest(token.data(), token.size());
    int found = -1;
    for (size_t i = 0; i < tenants_.size(); ++i)
      for (const auto& h : tenants_[i].token_sha256)
        if (SameDigest(d, h) && found < 0) found = static_cast<int>(i);
    return found >= 0 ? Match{found, Refusal::kNone} : Match{-1, Refusal::kBadToken};
  }
  if (peer.known) {
    for (size_t i = 0; i < tenants_.size(); ++i)
      if (std::find(tenants_[i].uids.begin(), tenants_[i].uids.end(), peer.uid) != tenants_[i].uids.end())
        return Match{static_cast<int>(i), Refusal::kNone};
    for (size_t i = 0; i < tenants_.size(); ++i)
      if (std::find(tenants_[i].gids.begin(), tenants_[i].gids.end(), peer.gid) != tenants_[i].gids.end())
        return Match{static_cast<int>(i), Refusal::kNone};
  }
  return Match{-1, Refusal::kUnknownPeer};
}

}  // namespace kvtier
