// Block keys: the chained prefix hash that names every KV block.
//
//   k_{-1} = NamespaceSeed(spec)
//   k_i    = H(k_{i-1}, tokens_i, extra_i)
//
// Equal keys mean equal prefixes: a block's key covers every token before it,
// the model, the KV layout, the tensor-parallel shard and the tenant salt.
// H is XXH3-128 (fast, default) or SHA-256 truncated to 128 bits (for tenants
// that do not trust each other). The byte-exact specification, with test
// vectors, is docs/hashing.md; a client in any language can reproduce keys.
//
// Keys are 16-byte values passed by value. Thread safety: all functions are
// pure; KeyHasher is immutable after construction.
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "cache/layout.h"
#include "tiers/status.h"

namespace kvtier {

struct BlockKey {
  uint64_t lo = 0;
  uint64_t hi = 0;

  bool operator==(const BlockKey&) const = default;
  bool IsZero() const { return lo == 0 && hi == 0; }
  // 32 lowercase hex digits: hi then lo, each big-endian (most significant first).
  std::string ToHex() const;
  static Result<BlockKey> FromHex(std::string_view hex);
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const { return static_cast<size_t>(k.lo ^ (k.hi * 31)); }
};

enum class HashMode : uint8_t { kXxh3_128 = 1, kSha256 = 2 };
const char* HashModeName(HashMode m);
Result<HashMode> ParseHashMode(std::string_view name);  // "xxh3-128", "sha256"

struct NamespaceSpec {
  std::string model_id;        // e.g. "meta-llama/Llama-3.1-8B-Instruct", required
  std::string model_revision;  // e.g. a commit id; may be empty
  KvLayout layout;
  uint32_t tp_rank = 0;
  uint32_t tp_size = 1;
  std::string tenant_salt;     // optional; isolates tenants' keys
  HashMode hash_mode = HashMode::kXxh3_128;
  // The tenant that owns the namespace (docs/security.md): set by the daemon
  // from the connection's credentials, never by a client, and no part of the
  // seed (a client hashes the same keys whoever it is). Part of the
  // namespace's identity: two tenants opening one spec get two namespaces.
  // Empty: the single default tenant.
  std::string tenant;

  // InvalidArgument: empty or over-long model id (max 1024 bytes), revision or
  // salt over 1024 bytes, tenant over 64 bytes, tp_rank >= tp_size, tp_size 0 or > 1024, bad layout.
  Status Validate() const;
};

// k_{-1}. REQUIRES: spec.Validate().ok().
BlockKey NamespaceSeed(const NamespaceSpec& spec);

// One link of the chain. `tokens` are token ids (uint32 each); `extra` is
// opaque bytes (LoRA id, multimodal hashes), empty for plain text.
BlockKey ChainKey(HashMode mode, const BlockKey& prev, std::span<const uint32_t> tokens,
                  std::span<const uint8_t> extra = {});

// Hashes token sequences into the keys of their full blocks.
class KeyHasher {
 public:
  explicit KeyHasher(const NamespaceSpec& spec);

  const BlockKey& seed() const { return seed_; }
  uint32_t tokens_per_block() const { return tokens_per_block_; }
  HashMode mode() const { return mode_; }

  // Keys of the full blocks of `tokens` (a trailing partial block is not
  // keyed), starting the chain at `prev` (the seed for a prompt's start).
  // Appends to `out`; returns the number of keys appended.
  size_t Hash(std::span<const uint32_t> tokens, std::vector<BlockKey>* out) const {
    return HashFrom(seed_, tokens, out);
  }
  size_t HashFrom(BlockKey prev, std::span<const uint32_t> tokens,
                  std::vector<BlockKey>* out) const;

 private:
  BlockKey seed_;
  uint32_t tokens_per_block_;
  HashMode mode_;
};

}  // namespace kvtier
