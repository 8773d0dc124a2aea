// The Hopper (sm_90a) prefill attention kernel, attention_sm90.cu: the same
// contract as LaunchPrefillAttention (attention.h) with wgmma instead of
// mma.sync, for head_dim 128 on compute capability 9.0. attention.cu
// dispatches to it as one of its tile shapes; nothing else calls it.
#pragma once

#include <cuda_runtime.h>

#include "engine_adapter/engine/attention.h"

namespace kvtier::engine {

// True on a compute capability 9.0 device for head_dim 128.
bool WgmmaPrefillAvailable(int head_dim);
// Query rows per tile of a shape (PrefillTiles must cut tiles of this size).
int WgmmaPrefillRows(int shape);
// shape 0: 64 keys per tile, one CTA per multiprocessor; 1: 64 keys, two
// CTAs (registers capped at 128); 2: 128 keys, one CTA. Warp-specialised
// (a cp.async producer warpgroup, two consumer warpgroups taking turns on the
// tensor cores, mbarriers): 3: 128 keys, 3 stages; 4: the same with each
// warpgroup's softmax under its own PV (intra-warpgroup overlap); 5: 64
// keys, 5 stages; 6: 5 overlapped; 7: 6 with three consumer warpgroups (192
// rows per tile, registers capped at 152).
inline constexpr int kWgmmaShapes = 8;
void LaunchPrefillWgmma(const PrefillArgs& args, int shape, cudaStream_t stream);

}  // namespace kvtier::engine
