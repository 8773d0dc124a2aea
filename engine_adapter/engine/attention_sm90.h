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
// Query rows per tile (PrefillTiles must cut tiles of this size).
int WgmmaPrefillRows();
// v_desc_order: which of the V descriptor's two strides is the byte offset
// between 64-column blocks of head_dim (0: the leading one).
void LaunchPrefillWgmma(const PrefillArgs& args, int v_desc_order, cudaStream_t stream);

}  // namespace kvtier::engine
