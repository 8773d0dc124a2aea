#include "cache/keys.h"

#include <xxhash.h>

#include <bit>
#include <cstring>

#include "cache/sha256.h"

namespace kvtier {

namespace {

// Little-endian appends into a byte buffer.
void PutU32(std::string* b, uint32_t v) {
  for (int i = 0; i < 4; ++i) b->push_back(static_cast<char>(v >> (8 * i)));
}
void PutBytes(std::string* b, std::string_view s) {
  PutU32(b, static_cast<uint32_t>(s.size()));
  b->append(s);
}
uint64_t LoadLe64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

BlockKey Digest(HashMode mode, const void* data, size_t n) {
  if (mode == HashMode::kSha256) {
    const Sha256Bytes d = Sha256Digest(data, n);
    return BlockKey{LoadLe64(d.data()), LoadLe64(d.data() + 8)};
  }
  XXH128_hash_t h = XXH3_128bits(data, n);
  return BlockKey{h.low64, h.high64};
}

constexpr bool kLittleEndian = std::endian::native == std::endian::little;

}  // namespace

std::string BlockKey::ToHex() const {
  static const char* kDigits = "0123456789abcdef";
  std::string s(32, '0');
  for (int i = 0; i < 16; ++i) {
    s[15 - i] = kDigits[(hi >> (4 * i)) & 0xF];
    s[31 - i] = kDigits[(lo >> (4 * i)) & 0xF];
  }
  return s;
}

Result<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != 32) return Status::InvalidArgument("a block key is 32 hex digits, got " +
                                                       std::to_string(hex.size()) + " characters");
  BlockKey k;
  for (int i = 0; i < 32; ++i) {
    char c = hex[i];
    uint64_t d;
    if (c >= '0' && c <= '9') d = c - '0';
    else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    else return Status::InvalidArgument("block key has a non-hex character '" + std::string(1, c) + "'");
    uint64_t& part = i < 16 ? k.hi : k.lo;
    part = (part << 4) | d;
  }
  return k;
}

const char* HashModeName(HashMode m) {
  return m == HashMode::kSha256 ? "sha256" : "xxh3-128";
}

Result<HashMode> ParseHashMode(std::string_view name) {
  if (name == "xxh3-128" || name == "xxh3") return HashMode::kXxh3_128;
  if (name == "sha256") return HashMode::kSha256;
  return Status::InvalidArgument("unknown hash mode '" + std::string(name) +
                                 "' (expected xxh3-128 or sha256)");
}

Status NamespaceSpec::Validate() const {
  if (model_id.empty()) return Status::InvalidArgument("namespace.model_id is empty");
  if (model_id.size() > 1024) return Status::InvalidArgument("namespace.model_id exceeds 1024 bytes");
  if (model_revision.size() > 1024)
    return Status::InvalidArgument("namespace.model_revision exceeds 1024 bytes");
  if (tenant_salt.size() > 1024) return Status::InvalidArgument("namespace.tenant_salt exceeds 1024 bytes");
  if (tenant.size() > 64) return Status::InvalidArgument("namespace.tenant exceeds 64 bytes");
  // Bytes without NUL: Cap'n Proto's Text (the RPC schema) and most client
  // languages' strings end at a NUL, so "abc\0xyz" would become "abc" on the
  // way and share a namespace with it.
  for (auto [name, value] : {std::pair<const char*, const std::string*>{"model_id", &model_id},
                             {"model_revision", &model_revision},
                             {"tenant_salt", &tenant_salt},
                             {"tenant", &tenant}})
    if (value->find('\0') != std::string::npos)
      return Status::InvalidArgument(std::string("namespace.") + name +
                                     " contains a NUL byte (namespace strings are bytes without NUL)");
  if (tp_size == 0 || tp_size > 1024)
    return Status::InvalidArgument("namespace.tp_size = " + std::to_string(tp_size) +
                                   " is out of range 1..1024");
  if (tp_rank >= tp_size)
    return Status::InvalidArgument("namespace.tp_rank = " + std::to_string(tp_rank) +
                                   " must be < tp_size = " + std::to_string(tp_size));
  if (hash_mode != HashMode::kXxh3_128 && hash_mode != HashMode::kSha256)
    return Status::InvalidArgument("namespace.hash_mode is not a known mode");
  return layout.Validate();
}

BlockKey NamespaceSeed(const NamespaceSpec& s) {
  std::string m;
  m.append("kvtier/ns/v1");
  m.push_back(static_cast<char>(s.hash_mode));
  PutBytes(&m, s.model_id);
  PutBytes(&m, s.model_revision);
  PutU32(&m, s.layout.num_layers);
  PutU32(&m, s.layout.num_kv_heads);
  PutU32(&m, s.layout.head_dim);
  m.push_back(static_cast<char>(s.layout.dtype));
  PutU32(&m, s.layout.tokens_per_block);
  PutU32(&m, s.layout.planes);
  PutU32(&m, s.tp_rank);
  PutU32(&m, s.tp_size);
  PutBytes(&m, s.tenant_salt);
  return Digest(s.hash_mode, m.data(), m.size());
}

BlockKey ChainKey(HashMode mode, const BlockKey& prev, std::span<const uint32_t> tokens,
                  std::span<const uint8_t> extra) {
  // Message: prev.lo, prev.hi (LE u64) | ntokens (LE u32) | tokens (LE u32 each)
  //          | extra length (LE u32) | extra bytes.
  const size_t n = 16 + 4 + 4 * tokens.size() + 4 + extra.size();
  uint8_t stack[4096];
  std::string heap;
  uint8_t* p = stack;
  if (n > sizeof(stack)) {
    heap.resize(n);
    p = reinterpret_cast<uint8_t*>(heap.data());
  }
  uint8_t* w = p;
  auto put32 = [&w](uint32_t v) {
    for (int i = 0; i < 4; ++i) *w++ = static_cast<uint8_t>(v >> (8 * i));
  };
  auto put64 = [&w](uint64_t v) {
    for (int i = 0; i < 8; ++i) *w++ = static_cast<uint8_t>(v >> (8 * i));
  };
  put64(prev.lo);
  put64(prev.hi);
  put32(static_cast<uint32_t>(tokens.size()));
  if constexpr (kLittleEndian) {
    std::memcpy(w, tokens.data(), 4 * tokens.size());
    w += 4 * tokens.size();
  } else {
    for (uint32_t t : tokens) put32(t);
  }
  put32(static_cast<uint32_t>(extra.size()));
  if (!extra.empty()) std::memcpy(w, extra.data(), extra.size());
  return Digest(mode, p, n);
}

KeyHasher::KeyHasher(const NamespaceSpec& spec)
    : seed_(NamespaceSeed(spec)),
      tokens_per_block_(spec.layout.tokens_per_block),
      mode_(spec.hash_mode) {}

size_t KeyHasher::HashFrom(BlockKey prev, std::span<const uint32_t> tokens,
                           std::vector<BlockKey>* out) const {
  size_t blocks = tokens.size() / tokens_per_block_;
  out->reserve(out->size() + blocks);
  for (size_t b = 0; b < blocks; ++b) {
    prev = ChainKey(mode_, prev, tokens.subspan(b * tokens_per_block_, tokens_per_block_));
    out->push_back(prev);
  }
  return blocks;
}

}  // namespace kvtier
