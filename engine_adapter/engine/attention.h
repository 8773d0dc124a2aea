// Paged attention kernels of the engine (attention.cu), written for tensor
// cores with mma.sync (bf16 in, float32 accumulate).
//
// Both kernels read K and V from the layer's pages (kernels.h gives the
// layout) through a per-sequence page table, so a sequence may begin with
// pages that something else filled (a prefix loaded from kvtier, or an earlier
// chunk of the same prompt).
//
// Prefill: FlashAttention-2-style tiled causal attention for a batch of
// sequences of different lengths. Sequence s has q_len[s] new query rows
// (rows q_start[s] .. q_start[s] + q_len[s] - 1 of q) whose K/V are already in
// its pages, and kv_len[s] keys in all (kv_len >= q_len): query i sits at
// position kv_len - q_len + i and attends keys 0 .. that position. Work is
// cut into tiles of kPrefillRows query rows of one sequence and one head;
// PrefillTiles() builds the tile list, heaviest first.
//
// Decode: one query row per sequence (row s of q, at position kv_len[s] - 1),
// its keys split across `splits` CTAs per (sequence, kv head) that each keep a
// partial softmax, merged by a second kernel. The grid depends on the batch
// size and `splits` only, never on the lengths, so a CUDA graph captured once
// serves every later step.
//
// Supported: head_dim 64 or 128; num_heads / kv_heads from 1 to 8.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine_adapter/engine/kernels.h"

namespace kvtier::engine {

inline constexpr int kPrefillRows = 64;  // fewest query rows of a prefill tile shape
inline constexpr int kMaxDecodeSplits = 32;

struct AttnArgs {
  const bf16_t* q = nullptr;  // query rows; head h at h * head_dim
  int q_stride = 0;           // elements between query rows
  bf16_t* out = nullptr;      // [rows, num_heads * head_dim]
  int out_stride = 0;
  const bf16_t* k_cache = nullptr;
  const bf16_t* v_cache = nullptr;
  int num_heads = 0;
  int kv_heads = 0;
  int head_dim = 0;
  int page_tokens = 0;
  const int32_t* page_table = nullptr;  // [num_seqs, page_table_stride]
  int page_table_stride = 0;
  const int32_t* kv_len = nullptr;      // [num_seqs]
  int num_seqs = 0;
  float scale = 0.f;                    // softmax scale, 1/sqrt(head_dim)
};

struct PrefillArgs {
  AttnArgs attn;
  const int32_t* q_start = nullptr;  // [num_seqs]
  const int32_t* q_len = nullptr;    // [num_seqs]
  const int2* tiles = nullptr;       // [num_tiles]: (sequence, first query row)
  int num_tiles = 0;
};

// The prefill tile shape in use (an index into the shapes attention.cu
// measures; KVTIER_PREFILL_ATTN in the environment overrides the default),
// its query rows per tile, and a description for benchmark tables.
int PrefillVariant();
void SetPrefillVariant(int variant);
int NumPrefillVariants();
std::string PrefillVariantName(int variant);
int PrefillTileRows(int head_dim);

// Tiles of PrefillTileRows() query rows for sequences of these query and key
// counts, heaviest first.
std::vector<int2> PrefillTiles(const std::vector<int32_t>& q_len,
                               const std::vector<int32_t>& kv_len, int head_dim);

void LaunchPrefillAttention(const PrefillArgs& args, cudaStream_t stream);

struct DecodeArgs {
  AttnArgs attn;
  int splits = 1;               // 1 .. kMaxDecodeSplits
  float* workspace = nullptr;   // DecodeWorkspaceFloats(num_seqs, ...) floats
};
size_t DecodeWorkspaceFloats(int num_seqs, int num_heads, int head_dim, int splits);
// A split count that fills the GPU for this batch (graph-safe: lengths unused).
int DecodeSplits(int num_seqs, int kv_heads, int num_sms);

void LaunchDecodeAttention(const DecodeArgs& args, cudaStream_t stream);

}  // namespace kvtier::engine
