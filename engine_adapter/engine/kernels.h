// The engine's fused element-wise kernels (kernels.cu): embedding gather,
// residual add + RMSNorm, RoPE fused with writing K/V into pages, SwiGLU, row
// gather, and sampling. Attention lives in attention.h, GEMMs in cuBLAS.
//
// All tensors are bf16 (`uint16_t` bit patterns here, so that this header
// needs no CUDA headers beyond the runtime's stream type) and row-major; sizes
// are in elements. Every launch goes on `stream` and returns at once; none
// allocates, so all of them can be captured in a CUDA graph.
//
// KV pages use vLLM's flash layout per layer, [2, num_pages, page_tokens,
// kv_heads, head_dim]: a token's slot is page * page_tokens + offset, its K
// row for head h at k_base + (slot * kv_heads + h) * head_dim, its V row at
// the same place in v_base = k_base + num_pages * page_tokens * kv_heads *
// head_dim.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace kvtier::engine {

using bf16_t = uint16_t;

// residual[t, :] = embed[tokens[t], :] for t < num_tokens.
void LaunchEmbed(const int32_t* tokens, int num_tokens, const bf16_t* embed, int hidden,
                 bf16_t* residual, cudaStream_t stream);

// residual = bf16(residual + delta) when delta is non-null; then
// out = RMSNorm(residual) * weight, rounded as HF's LlamaRMSNorm rounds
// (normalise in float32, round to bf16, multiply by the weight, round).
void LaunchAddRmsNorm(bf16_t* residual, const bf16_t* delta, const bf16_t* weight, float eps,
                      int num_tokens, int hidden, bf16_t* out, cudaStream_t stream);

// RoPE over q and k of a fused qkv row [q heads | k heads | v heads] in
// place (HF rotate_half convention, float32 math, precise sin/cos of
// position * inv_freq[i]), then writes the rotated K and the V of each token
// into its slot of the layer's pages. qkv rows are qkv_stride elements apart.
struct RopeKvArgs {
  bf16_t* qkv = nullptr;
  int qkv_stride = 0;
  int num_tokens = 0;
  int num_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  const int32_t* positions = nullptr;  // [num_tokens]
  const int32_t* slots = nullptr;      // [num_tokens]
  const float* inv_freq = nullptr;     // [head_dim / 2]
  bf16_t* k_cache = nullptr;           // layer base (K half)
  bf16_t* v_cache = nullptr;           // V half
};
void LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream);

// out[t, i] = bf16(silu(gate_up[t, i]) * gate_up[t, inter + i]).
void LaunchSwiglu(const bf16_t* gate_up, int num_tokens, int inter, bf16_t* out,
                  cudaStream_t stream);

// out[r, :] = in[rows[r], :] for r < num_rows (rows of `cols` elements).
void LaunchGatherRows(const bf16_t* in, const int32_t* rows, int num_rows, int cols, bf16_t* out,
                      cudaStream_t stream);

// Picks one token per row of logits [num_rows, vocab] (float32): the argmax
// (lowest index on ties, as torch.argmax) where temperature[r] <= 0, else a
// sample from softmax(logits / temperature) by the Gumbel-max trick with
// noise from a counter-based hash of (seed[r], step[r], index); step[r] is
// then incremented, so a graph replay draws fresh noise. Writes out[r].
void LaunchSample(const float* logits, int num_rows, int vocab, const float* temperature,
                  const uint64_t* seed, int32_t* step, int32_t* out, cudaStream_t stream);

// Copies of a few small buffers by a kernel instead of the copy engines: a
// step's inputs (pinned mirror -> device) and its sampled tokens (device ->
// pinned) then never queue behind the bulk DMA of KV loads and stores that
// keep the copy engines busy while the engine computes. Addresses are device
// memory or mapped pinned host memory; sizes are multiples of 4 bytes.
struct CopyPiece {
  void* dst = nullptr;
  const void* src = nullptr;
  uint32_t bytes = 0;
};
inline constexpr int kMaxCopyPieces = 16;
struct CopyPieces {
  CopyPiece piece[kMaxCopyPieces];
  int count = 0;
};
void LaunchCopyPieces(const CopyPieces& pieces, cudaStream_t stream);

}  // namespace kvtier::engine
