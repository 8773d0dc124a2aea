// Fused element-wise kernels of the engine; see kernels.h.
#include "engine_adapter/engine/kernels.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>

namespace kvtier::engine {
namespace {

__device__ __forceinline__ float ToF(bf16_t b) { return __uint_as_float(uint32_t{b} << 16); }
__device__ __forceinline__ bf16_t ToB(float f) {
  __nv_bfloat16 h = __float2bfloat16_rn(f);
  return *reinterpret_cast<bf16_t*>(&h);
}
__device__ __forceinline__ float RoundB(float f) { return ToF(ToB(f)); }

// 8 bf16 in one 16-byte vector.
union Vec8 {
  uint4 u;
  bf16_t h[8];
};

__global__ void EmbedKernel(const int32_t* tokens, const bf16_t* embed, int hidden,
                            bf16_t* residual) {
  int t = blockIdx.x;
  const uint4* src = reinterpret_cast<const uint4*>(embed + size_t(tokens[t]) * hidden);
  uint4* dst = reinterpret_cast<uint4*>(residual + size_t(t) * hidden);
  for (int i = threadIdx.x; i < hidden / 8; i += blockDim.x) dst[i] = src[i];
}

__device__ __forceinline__ float BlockSum(float v, float* scratch) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  int warps = blockDim.x / 32;
  v = lane < warps ? scratch[lane] : 0.f;
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// One block per token row. Threads hold their 16-byte chunks in registers
// between the two passes (up to kMaxChunks per thread).
constexpr int kNormThreads = 256;
constexpr int kMaxChunks = 4;  // hidden <= 256 * 4 * 8 = 8192 from registers

__global__ void __launch_bounds__(kNormThreads) AddRmsNormKernel(
    bf16_t* residual, const bf16_t* delta, const bf16_t* weight, float eps, int hidden,
    bf16_t* out) {
  __shared__ float scratch[32];
  const int t = blockIdx.x;
  uint4* r = reinterpret_cast<uint4*>(residual + size_t(t) * hidden);
  const uint4* d = delta ? reinterpret_cast<const uint4*>(delta + size_t(t) * hidden) : nullptr;
  const int chunks = hidden / 8;
  Vec8 keep[kMaxChunks];
  float ss = 0.f;
#pragma unroll
  for (int k = 0; k < kMaxChunks; ++k) {
    int c = threadIdx.x + k * kNormThreads;
    if (c < chunks) {
      Vec8 x;
      x.u = r[c];
      if (d) {
        Vec8 y;
        y.u = d[c];
#pragma unroll
        for (int j = 0; j < 8; ++j) x.h[j] = ToB(ToF(x.h[j]) + ToF(y.h[j]));
        r[c] = x.u;
      }
#pragma unroll
      for (int j = 0; j < 8; ++j) ss += ToF(x.h[j]) * ToF(x.h[j]);
      keep[k] = x;
    }
  }
  // Wider rows than the registers hold: a second loop over global memory.
  for (int c = threadIdx.x + kMaxChunks * kNormThreads; c < chunks; c += kNormThreads) {
    Vec8 x;
    x.u = r[c];
    if (d) {
      Vec8 y;
      y.u = d[c];
#pragma unroll
      for (int j = 0; j < 8; ++j) x.h[j] = ToB(ToF(x.h[j]) + ToF(y.h[j]));
      r[c] = x.u;
    }
#pragma unroll
    for (int j = 0; j < 8; ++j) ss += ToF(x.h[j]) * ToF(x.h[j]);
  }
  ss = BlockSum(ss, scratch);
  const float rs = rsqrtf(ss / float(hidden) + eps);
  const uint4* w = reinterpret_cast<const uint4*>(weight);
  uint4* o = reinterpret_cast<uint4*>(out + size_t(t) * hidden);
  for (int c = threadIdx.x, k = 0; c < chunks; c += kNormThreads, ++k) {
    Vec8 x, wv, y;
    if (k < kMaxChunks) {
      // Compile-time indices only: unrolled selection keeps `keep` in registers.
#pragma unroll
      for (int q = 0; q < kMaxChunks; ++q)
        if (q == k) x = keep[q];
    } else {
      x.u = r[c];
    }
    wv.u = w[c];
#pragma unroll
    for (int j = 0; j < 8; ++j) y.h[j] = ToB(ToF(wv.h[j]) * RoundB(ToF(x.h[j]) * rs));
    o[c] = y.u;
  }
}

// One block per token: sin/cos of the token's angles in shared memory, then
// every (head, pair) of q and k, then V copied to its slot.
__global__ void RopeKvKernel(RopeKvArgs a) {
  extern __shared__ float cs[];  // [half] cos, [half] sin
  const int t = blockIdx.x;
  const int half = a.head_dim / 2;
  const float pos = float(a.positions[t]);
  for (int i = threadIdx.x; i < half; i += blockDim.x) {
    float s, c;
    sincosf(__fmul_rn(pos, a.inv_freq[i]), &s, &c);
    cs[i] = c;
    cs[half + i] = s;
  }
  __syncthreads();
  bf16_t* row = a.qkv + size_t(t) * a.qkv_stride;
  const int slot = a.slots[t];
  const int rot_heads = a.num_heads + a.kv_heads;
  const int items = rot_heads * half;
  for (int it = threadIdx.x; it < items; it += blockDim.x) {
    int h = it / half, i = it % half;
    bf16_t* x = row + h * a.head_dim;
    float x1 = ToF(x[i]), x2 = ToF(x[i + half]);
    float c = cs[i], s = cs[half + i];
    bf16_t y1 = ToB(x1 * c - x2 * s), y2 = ToB(x2 * c + x1 * s);
    if (h < a.num_heads) {
      x[i] = y1;
      x[i + half] = y2;
    } else {
      int kh = h - a.num_heads;
      bf16_t* k = a.k_cache + (size_t(slot) * a.kv_heads + kh) * a.head_dim;
      k[i] = y1;
      k[i + half] = y2;
    }
  }
  const int v_chunks = a.kv_heads * a.head_dim / 8;
  const uint4* v = reinterpret_cast<const uint4*>(row + rot_heads * a.head_dim);
  uint4* vd = reinterpret_cast<uint4*>(a.v_cache + size_t(slot) * a.kv_heads * a.head_dim);
  for (int c = threadIdx.x; c < v_chunks; c += blockDim.x) vd[c] = v[c];
}

__global__ void SwigluKernel(const bf16_t* gate_up, int inter, int num_tokens, bf16_t* out) {
  const int chunks = inter / 8;
  const size_t total = size_t(num_tokens) * chunks;
  for (size_t idx = blockIdx.x * size_t(blockDim.x) + threadIdx.x; idx < total;
       idx += size_t(gridDim.x) * blockDim.x) {
    size_t t = idx / chunks, c = idx % chunks;
    Vec8 g, u, y;
    g.u = reinterpret_cast<const uint4*>(gate_up + t * 2 * inter)[c];
    u.u = reinterpret_cast<const uint4*>(gate_up + t * 2 * inter + inter)[c];
#pragma unroll
    for (int j = 0; j < 8; ++j) {
      float gv = ToF(g.h[j]);
      float sv = gv / (1.f + __expf(-gv));
      y.h[j] = ToB(sv * ToF(u.h[j]));
    }
    reinterpret_cast<uint4*>(out + t * inter)[c] = y.u;
  }
}

__global__ void GatherRowsKernel(const bf16_t* in, const int32_t* rows, int cols, bf16_t* out) {
  int r = blockIdx.x;
  const uint4* s = reinterpret_cast<const uint4*>(in + size_t(rows[r]) * cols);
  uint4* d = reinterpret_cast<uint4*>(out + size_t(r) * cols);
  for (int c = threadIdx.x; c < cols / 8; c += blockDim.x) d[c] = s[c];
}

__device__ __forceinline__ uint64_t Mix64(uint64_t z) {
  z += 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

constexpr int kSampleThreads = 1024;

__global__ void __launch_bounds__(kSampleThreads) SampleKernel(
    const float* logits, int vocab, const float* temperature, const uint64_t* seed,
    int32_t* step, int32_t* out) {
  __shared__ float best_v[32];
  __shared__ int best_i[32];
  const int r = blockIdx.x;
  const float* row = logits + size_t(r) * vocab;
  const float temp = temperature[r];
  const bool greedy = !(temp > 0.f);
  const float inv_t = greedy ? 1.f : 1.f / temp;
  const uint64_t key = Mix64(seed[r] ^ Mix64(uint64_t(uint32_t(step[r])) + 0x5851f42d4c957f2dull));
  float bv = -FLT_MAX;
  int bi = 0x7fffffff;
  for (int i = threadIdx.x; i < vocab; i += kSampleThreads) {
    float v = row[i];
    if (!greedy) {
      // u in (0, 1): 53 random bits would be overkill; 24 suffice for float.
      uint64_t h = Mix64(key + uint64_t(i));
      float u = (float((h >> 40) & 0xffffff) + 0.5f) * (1.f / 16777216.f);
      v = v * inv_t - logf(-logf(u));
    }
    if (v > bv) {  // ascending i per thread: first maximum kept
      bv = v;
      bi = i;
    }
  }
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __shfl_xor_sync(0xffffffffu, bv, o);
    int oi = __shfl_xor_sync(0xffffffffu, bi, o);
    if (ov > bv || (ov == bv && oi < bi)) {
      bv = ov;
      bi = oi;
    }
  }
  int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    best_v[warp] = bv;
    best_i[warp] = bi;
  }
  __syncthreads();
  if (warp == 0) {
    bv = best_v[lane];
    bi = best_i[lane];
    for (int o = 16; o > 0; o >>= 1) {
      float ov = __shfl_xor_sync(0xffffffffu, bv, o);
      int oi = __shfl_xor_sync(0xffffffffu, bi, o);
      if (ov > bv || (ov == bv && oi < bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      out[r] = bi;
      step[r] += 1;
    }
  }
}

}  // namespace

void LaunchEmbed(const int32_t* tokens, int num_tokens, const bf16_t* embed, int hidden,
                 bf16_t* residual, cudaStream_t stream) {
  if (num_tokens <= 0) return;
  EmbedKernel<<<num_tokens, 256, 0, stream>>>(tokens, embed, hidden, residual);
}

void LaunchAddRmsNorm(bf16_t* residual, const bf16_t* delta, const bf16_t* weight, float eps,
                      int num_tokens, int hidden, bf16_t* out, cudaStream_t stream) {
  if (num_tokens <= 0) return;
  AddRmsNormKernel<<<num_tokens, kNormThreads, 0, stream>>>(residual, delta, weight, eps, hidden,
                                                           out);
}

void LaunchRopeKv(const RopeKvArgs& args, cudaStream_t stream) {
  if (args.num_tokens <= 0) return;
  RopeKvKernel<<<args.num_tokens, 256, args.head_dim * sizeof(float), stream>>>(args);
}

void LaunchSwiglu(const bf16_t* gate_up, int num_tokens, int inter, bf16_t* out,
                  cudaStream_t stream) {
  if (num_tokens <= 0) return;
  size_t total = size_t(num_tokens) * (inter / 8);
  int blocks = int(std::min<size_t>((total + 255) / 256, 132 * 16));
  SwigluKernel<<<blocks, 256, 0, stream>>>(gate_up, inter, num_tokens, out);
}

void LaunchGatherRows(const bf16_t* in, const int32_t* rows, int num_rows, int cols, bf16_t* out,
                      cudaStream_t stream) {
  if (num_rows <= 0) return;
  GatherRowsKernel<<<num_rows, 256, 0, stream>>>(in, rows, cols, out);
}

void LaunchSample(const float* logits, int num_rows, int vocab, const float* temperature,
                  const uint64_t* seed, int32_t* step, int32_t* out, cudaStream_t stream) {
  if (num_rows <= 0) return;
  SampleKernel<<<num_rows, kSampleThreads, 0, stream>>>(logits, vocab, temperature, seed, step,
                                                        out);
}

namespace {
__global__ void CopyPiecesKernel(const __grid_constant__ CopyPieces ps) {
  const CopyPiece& p = ps.piece[blockIdx.y];
  const uint32_t words = p.bytes / 4;
  auto* d = static_cast<uint32_t*>(p.dst);
  const auto* s = static_cast<const uint32_t*>(p.src);
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < words; i += gridDim.x * blockDim.x)
    d[i] = s[i];
}
}  // namespace

void LaunchCopyPieces(const CopyPieces& pieces, cudaStream_t stream) {
  if (pieces.count <= 0) return;
  uint32_t words = 1;
  for (int i = 0; i < pieces.count; ++i) words = std::max(words, pieces.piece[i].bytes / 4);
  const uint32_t blocks = std::min<uint32_t>(64, (words + 255) / 256);
  CopyPiecesKernel<<<dim3(blocks, pieces.count), 256, 0, stream>>>(pieces);
}

}  // namespace kvtier::engine
