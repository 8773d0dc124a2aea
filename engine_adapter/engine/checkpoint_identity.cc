// IdentifyCheckpoint; see checkpoint_identity.h.
#include "engine_adapter/engine/checkpoint_identity.h"

#include <xxhash.h>

#include <algorithm>
#include <filesystem>

#include <cstdio>

namespace kvtier::engine {

CheckpointIdentity IdentifyCheckpoint(const Checkpoint& ckpt) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_128bits_reset(st);
  const std::string cfg = ckpt.config().ToJson();
  XXH3_128bits_update(st, cfg.data(), cfg.size());
  constexpr uint64_t kEdge = 256, kStride = 16ull << 20, kSample = 64;
  for (const auto& [name, t] : ckpt.all()) {  // sorted by name
    XXH3_128bits_update(st, name.data(), name.size() + 1);
    const uint8_t dtype = static_cast<uint8_t>(t->dtype);
    XXH3_128bits_update(st, &dtype, 1);
    XXH3_128bits_update(st, t->shape.data(), t->shape.size() * sizeof(int64_t));
    const uint64_t n = t->bytes;
    XXH3_128bits_update(st, t->data, std::min(n, kEdge));
    for (uint64_t off = kStride; off + kSample <= n; off += kStride)
      XXH3_128bits_update(st, t->data + off, kSample);
    if (n > kEdge) XXH3_128bits_update(st, t->data + n - kEdge, kEdge);
  }
  const XXH128_hash_t h = XXH3_128bits_digest(st);
  XXH3_freeState(st);
  char hex[33];
  std::snprintf(hex, sizeof hex, "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  std::string dir = std::filesystem::path(ckpt.dir()).lexically_normal().filename().string();
  if (dir.empty()) dir = std::filesystem::path(ckpt.dir()).lexically_normal().parent_path().filename().string();
  return {"checkpoint:" + dir, hex};
}

}  // namespace kvtier::engine
