// The identity of a checkpoint's KV: what kvtier's namespace must name so that
// engines share blocks only when their KV is interchangeable.
//
// Thread safety: a pure function of the checkpoint (reads its mapping).
#pragma once

#include <string>

#include "engine_adapter/engine/safetensors.h"

namespace kvtier::engine {

// "checkpoint:<dir name>" and a 128-bit fingerprint (XXH3-128, 32 hex
// digits) of the checkpoint: its config, every tensor's name, dtype and
// shape, and samples of every tensor's bytes (its first and last 256 bytes
// and 64 bytes every 16 MiB). Checkpoints of other shapes, and checkpoints
// whose weights differ where they are sampled (as a fine-tune's or another
// random seed's differ everywhere), get other fingerprints; reading a few MB
// of a 16 GB checkpoint. A change confined to unsampled bytes is not seen:
// name such a checkpoint's revision explicitly.
struct CheckpointIdentity {
  std::string model_id;
  std::string revision;  // 32 hex digits
};
CheckpointIdentity IdentifyCheckpoint(const Checkpoint& ckpt);

}  // namespace kvtier::engine
