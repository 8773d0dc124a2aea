// AdmissionPolicy: decides whether a block demoted toward the NVMe tier is
// written there at all. Refusing blocks that are unlikely to be read again
// protects SSD endurance and write bandwidth (a KV prefix that is seen once
// is usually never seen again).
//
// A policy sees only a block's fingerprint (BlockMeta::fingerprint: a stable
// identity such as the low 64 bits of its key; 0 = unknown, which every
// policy admits, since it cannot judge it). Admit() both asks and records a
// sighting, so call it once per candidate write.
//
// Ownership: the tier owns its policy. Thread safety: none; REQUIRES external
// synchronization (the tier lock). Memory is bounded by the options.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "tiers/status.h"

namespace kvtier {

class AdmissionPolicy {
 public:
  virtual ~AdmissionPolicy() = default;

  // Short stable name: "always", "second-sighting".
  virtual std::string_view name() const = 0;

  // Whether the block with this fingerprint may be written; records the
  // sighting.
  virtual bool Admit(uint64_t fingerprint) = 0;

  // Bytes of memory the policy's own structures use.
  virtual size_t MemoryUsage() const = 0;
};

struct AdmissionOptions {
  // "second-sighting": how many recent sightings it remembers. A fingerprint
  // is admitted if it was seen within the last `window` sightings; each
  // remembered sighting costs 20-32 bytes (2^20 -> 24 MiB). Size it to the
  // number of blocks demoted during the reuse distance worth keeping on NVMe.
  size_t window = size_t{1} << 20;
};

// Known names: "always" (admits everything) and "second-sighting" (admits a
// fingerprint seen before within the window: refuses the first sighting,
// admits the second and later ones). InvalidArgument for other names or a
// window of 0 or >= 2^31.
Result<std::unique_ptr<AdmissionPolicy>> NewAdmissionPolicy(std::string_view name,
                                                            const AdmissionOptions& options = {});

}  // namespace kvtier
