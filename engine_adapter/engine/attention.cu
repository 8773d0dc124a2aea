// Paged prefill and decode attention; see attention.h.
//
// Prefill follows FlashAttention-2: a CTA of kWarps warps owns 16 * kWarps
// query rows of one head (each warp 16 rows, its Q fragments in registers);
// it walks the key tiles of 64 keys, computing S = Q K^T with
// mma.m16n8k16, an online softmax in registers (base 2), and O += P V with P
// taken straight from the S accumulators. K and V tiles are gathered from
// pages with cp.async into XOR-swizzled shared memory (conflict-free
// ldmatrix), the V load overlapping S and the next K load overlapping P V.
#include "engine_adapter/engine/attention.h"
#include "engine_adapter/engine/attention_sm90.h"

#include <cuda_bf16.h>

#include <algorithm>
#include <cfloat>
#include <cstdlib>
#include <string>

namespace kvtier::engine {
namespace {

constexpr float kLog2e = 1.4426950408889634f;
constexpr int kDefaultPrefillVariant = 11;  // measured fastest at 4K-32K (docs/engine.md)

__device__ __forceinline__ uint32_t SmemAddr(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  int n = valid ? 16 : 0;  // 0: zero-fill, read nothing
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ void CpAsyncCommit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void CpAsyncWaitAll() { asm volatile("cp.async.wait_group 0;\n" ::); }

__device__ __forceinline__ void Ldsm4(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void Ldsm4T(uint32_t (&r)[4], uint32_t addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}

__device__ __forceinline__ void Mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                    uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Byte offset of 16-byte chunk `ch` of row `r` in a swizzled tile whose rows
// hold CH chunks.
template <int CH>
__device__ __forceinline__ uint32_t Swz(int r, int ch) {
  return uint32_t(r * CH + (ch ^ (r & 7))) * 16u;
}

// kWarps warps, each owning MT m-tiles of 16 rows (rows mt * 16 * kWarps +
// warp * 16 + 0..15, so that the warps of one m-tile cover contiguous rows);
// BC keys per tile. With MT = 2 every K/V fragment read from shared memory
// feeds two m-tiles (as FlashAttention-2's 4-warp, 128-row tiles); Q is then
// read from shared memory at each k-step instead of kept in registers.
template <int D, int kWarps, int MT, int BC>
__global__ void __launch_bounds__(kWarps * 32) PrefillKernel(PrefillArgs p) {
  constexpr int BR = 16 * kWarps * MT;
  constexpr int CH = D / 8;       // 16-byte chunks per row
  constexpr int KS = D / 16;      // k-steps of S = Q K^T
  constexpr int NT = BC / 8;      // n-tiles of S
  constexpr int DT = D / 8;       // n-tiles of O
  constexpr int NTH = kWarps * 32;
  constexpr bool kQRegs = MT == 1;
  static_assert(NT % 2 == 0 && DT % 2 == 0, "tiles come in pairs");

  extern __shared__ __align__(128) unsigned char smem[];
  unsigned char* sQ = smem;
  unsigned char* sK = sQ + BR * D * 2;
  unsigned char* sV = sK + BC * D * 2;
  const uint32_t aQ = SmemAddr(sQ), aK = SmemAddr(sK), aV = SmemAddr(sV);

  const AttnArgs& a = p.attn;
  const int h = blockIdx.x;
  const int2 tile = p.tiles[blockIdx.y];
  const int seq = tile.x, m0 = tile.y;
  const int qlen = p.q_len[seq], kvlen = a.kv_len[seq], qs = p.q_start[seq];
  const int pos0 = kvlen - qlen;
  const int kvh = h / (a.num_heads / a.kv_heads);
  const int32_t* pt = a.page_table + size_t(seq) * a.page_table_stride;
  const int P = a.page_tokens;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int kend = min(kvlen, pos0 + m0 + BR);
  const int ntiles = (kend + BC - 1) / BC;

  // Each thread copies chunk `ch` of rows r0, r0 + NTH/CH, ...
  const int ch = tid % CH, r0 = tid / CH;
  constexpr int RSTEP = NTH / CH;
  auto load_kv = [&](uint32_t dst, const bf16_t* base, int n0) {
#pragma unroll 2  // fully unrolled, the page lookups cost registers the tiles need
    for (int r = r0; r < BC; r += RSTEP) {
      int key = n0 + r;
      bool valid = key < kvlen;
      int kk = valid ? key : 0;
      int page = pt[kk / P];
      const bf16_t* src =
          base + ((size_t(page) * P + kk % P) * a.kv_heads + kvh) * D + ch * 8;
      CpAsync16(dst + Swz<CH>(r, ch), src, valid);
    }
  };

#pragma unroll
  for (int r = r0; r < BR; r += RSTEP) {
    int row = m0 + r;
    bool valid = row < qlen;
    const bf16_t* src = a.q + size_t(qs + (valid ? row : 0)) * a.q_stride + h * D + ch * 8;
    CpAsync16(aQ + Swz<CH>(r, ch), src, valid);
  }
  load_kv(aK, a.k_cache, 0);
  CpAsyncCommit();
  CpAsyncWaitAll();
  __syncthreads();

  const int g = lane / 4, t4 = lane % 4;
  int wr[MT];  // first row of each m-tile of this warp
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) wr[mt] = mt * 16 * kWarps + warp * 16;
  uint32_t qf[kQRegs ? KS : 1][4];
  if constexpr (kQRegs) {
#pragma unroll
    for (int ks = 0; ks < KS; ++ks)
      Ldsm4(qf[ks], aQ + Swz<CH>(wr[0] + lane % 16, ks * 2 + lane / 16));
  }

  const float sl2 = a.scale * kLog2e;
  // Last key each of this thread's rows may see: [mt][0] row g, [mt][1] g + 8.
  int lim[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    lim[mt][0] = min(pos0 + m0 + wr[mt] + g, kvlen - 1);
    lim[mt][1] = min(pos0 + m0 + wr[mt] + g + 8, kvlen - 1);
  }
  const int warp_min_lim = min(pos0 + m0 + wr[0], kvlen - 1);

  float o[MT][DT][4];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt)
#pragma unroll
    for (int i = 0; i < DT; ++i) o[mt][i][0] = o[mt][i][1] = o[mt][i][2] = o[mt][i][3] = 0.f;
  float mrow[MT][2], lrow[MT][2];
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
    mrow[mt][0] = mrow[mt][1] = -FLT_MAX;
    lrow[mt][0] = lrow[mt][1] = 0.f;
  }

  for (int j = 0; j < ntiles; ++j) {
    const int n0 = j * BC;
    load_kv(aV, a.v_cache, n0);
    CpAsyncCommit();

    float s[MT][NT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int i = 0; i < NT; ++i) s[mt][i][0] = s[mt][i][1] = s[mt][i][2] = s[mt][i][3] = 0.f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t qa[MT][4];
      if constexpr (kQRegs) {
#pragma unroll
        for (int e = 0; e < 4; ++e) qa[0][e] = qf[ks][e];
      } else {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          Ldsm4(qa[mt], aQ + Swz<CH>(wr[mt] + lane % 16, ks * 2 + lane / 16));
      }
#pragma unroll
      for (int jj = 0; jj < NT / 2; ++jj) {
        uint32_t b[4];
        Ldsm4(b, aK + Swz<CH>(jj * 16 + (lane / 16) * 8 + (lane % 8), ks * 2 + ((lane / 8) & 1)));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma(s[mt][2 * jj], qa[mt], b[0], b[1]);
          Mma(s[mt][2 * jj + 1], qa[mt], b[2], b[3]);
        }
      }
    }
    if (n0 + BC - 1 > warp_min_lim) {
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          int key = n0 + nt * 8 + 2 * t4;
          if (key > lim[mt][0]) s[mt][nt][0] = -INFINITY;
          if (key + 1 > lim[mt][0]) s[mt][nt][1] = -INFINITY;
          if (key > lim[mt][1]) s[mt][nt][2] = -INFINITY;
          if (key + 1 > lim[mt][1]) s[mt][nt][3] = -INFINITY;
        }
    }
    // Online softmax, rows g (r = 0) and g + 8 (r = 1) of each m-tile, base 2.
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        float mx = -INFINITY;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
          mx = fmaxf(mx, fmaxf(s[mt][nt][2 * r], s[mt][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float m_new = fmaxf(mrow[mt][r], mx * sl2);  // finite: starts at -FLT_MAX
        const float corr = Exp2(mrow[mt][r] - m_new);
        mrow[mt][r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int nt = 0; nt < NT; ++nt) {
          float e0 = Exp2(s[mt][nt][2 * r] * sl2 - m_new);
          float e1 = Exp2(s[mt][nt][2 * r + 1] * sl2 - m_new);
          s[mt][nt][2 * r] = e0;
          s[mt][nt][2 * r + 1] = e1;
          sum += e0 + e1;
        }
        lrow[mt][r] = lrow[mt][r] * corr + sum;
#pragma unroll
        for (int dt = 0; dt < DT; ++dt) {
          o[mt][dt][2 * r] *= corr;
          o[mt][dt][2 * r + 1] *= corr;
        }
      }

    CpAsyncWaitAll();
    __syncthreads();  // V tile in place; every warp is done with K
    if (j + 1 < ntiles) {
      load_kv(aK, a.k_cache, n0 + BC);
      CpAsyncCommit();
    }
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t pa[MT][4];
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        pa[mt][0] = PackBf16(s[mt][2 * kk][0], s[mt][2 * kk][1]);
        pa[mt][1] = PackBf16(s[mt][2 * kk][2], s[mt][2 * kk][3]);
        pa[mt][2] = PackBf16(s[mt][2 * kk + 1][0], s[mt][2 * kk + 1][1]);
        pa[mt][3] = PackBf16(s[mt][2 * kk + 1][2], s[mt][2 * kk + 1][3]);
      }
#pragma unroll
      for (int dd = 0; dd < DT / 2; ++dd) {
        uint32_t b[4];
        Ldsm4T(b, aV + Swz<CH>(kk * 16 + ((lane / 8) & 1) * 8 + lane % 8, dd * 2 + lane / 16));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
          Mma(o[mt][2 * dd], pa[mt], b[0], b[1]);
          Mma(o[mt][2 * dd + 1], pa[mt], b[2], b[3]);
        }
      }
    }
    CpAsyncWaitAll();
    __syncthreads();  // next K tile in place; every warp is done with V
  }

#pragma unroll
  for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      lrow[mt][r] += __shfl_xor_sync(0xffffffffu, lrow[mt][r], 1);
      lrow[mt][r] += __shfl_xor_sync(0xffffffffu, lrow[mt][r], 2);
    }
    const int row0 = m0 + wr[mt] + g, row1 = row0 + 8;
    const float inv0 = lrow[mt][0] > 0.f ? 1.f / lrow[mt][0] : 0.f;
    const float inv1 = lrow[mt][1] > 0.f ? 1.f / lrow[mt][1] : 0.f;
    bf16_t* out0 = a.out + size_t(qs + row0) * a.out_stride + h * D + 2 * t4;
    bf16_t* out1 = a.out + size_t(qs + row1) * a.out_stride + h * D + 2 * t4;
#pragma unroll
    for (int dt = 0; dt < DT; ++dt) {
      if (row0 < qlen)
        *reinterpret_cast<uint32_t*>(out0 + dt * 8) =
            PackBf16(o[mt][dt][0] * inv0, o[mt][dt][1] * inv0);
      if (row1 < qlen)
        *reinterpret_cast<uint32_t*>(out1 + dt * 8) =
            PackBf16(o[mt][dt][2] * inv1, o[mt][dt][3] * inv1);
    }
  }
}

// The tile shapes measured (docs/engine.md): warps, m-tiles per warp, keys
// per tile.
struct PrefillShape {
  int warps, mt, bc;
};
// Shapes 4 to 11 are the wgmma kernels (attention_sm90.cu): 4 to 6 two
// warpgroups of 64 rows (64 keys, 64 keys at two CTAs per multiprocessor, 128
// keys); 7 to 10 warp-specialised, a producer warpgroup and two consumers
// taking turns (128 keys, 128 keys with the softmax under the warpgroup's own
// PV, 64 keys, 64 keys overlapped); 11 is 10 with three consumers, 192 rows
// per tile (the others 128). Where wgmma is not available (head_dim 64,
// another GPU) they run shape 1 on 128-row tiles (PrefillTileRows).
constexpr PrefillShape kPrefillShapes[] = {{4, 1, 64},  {4, 2, 64},  {4, 2, 32},  {8, 1, 64},
                                           {8, 1, 64},  {8, 1, 64},  {8, 1, 128}, {12, 1, 128},
                                           {12, 1, 128}, {12, 1, 64}, {12, 1, 64}, {16, 1, 64}};
constexpr int kFirstWgmmaShape = 4;
constexpr int kNumPrefillShapes = sizeof(kPrefillShapes) / sizeof(kPrefillShapes[0]);

int g_prefill_variant = -1;  // -1: not chosen yet

template <int D, int W, int MT, int BC>
void LaunchPrefillShape(const PrefillArgs& p, cudaStream_t stream) {
  constexpr int kSmem = (16 * W * MT + 2 * BC) * D * 2;
  auto kernel = PrefillKernel<D, W, MT, BC>;
  static bool configured = [&] {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    return true;
  }();
  (void)configured;
  dim3 grid(p.attn.num_heads, p.num_tiles);
  kernel<<<grid, W * 32, kSmem, stream>>>(p);
}

template <int D>
void LaunchPrefillD(const PrefillArgs& p, cudaStream_t stream) {
  const int v = PrefillVariant();
  if (v >= kFirstWgmmaShape) {
    if (WgmmaPrefillAvailable(D)) return LaunchPrefillWgmma(p, v - kFirstWgmmaShape, stream);
    return LaunchPrefillShape<D, 4, 2, 64>(p, stream);
  }
  switch (v) {
    case 0: return LaunchPrefillShape<D, 4, 1, 64>(p, stream);
    case 1: return LaunchPrefillShape<D, 4, 2, 64>(p, stream);
    case 2: return LaunchPrefillShape<D, 4, 2, 32>(p, stream);
    default: return LaunchPrefillShape<D, 8, 1, 64>(p, stream);
  }
}

// ---- Decode: split-K over the keys, then a merge. ----

union Vec8 {
  uint4 u;
  bf16_t h[8];
};
__device__ __forceinline__ float Bf(bf16_t b) { return __uint_as_float(uint32_t{b} << 16); }

constexpr int kDecodeThreads = 128;
constexpr int kDecodeUnroll = 4;

// CTA (kv head, sequence, split). L = D / 8 lanes hold one key row (8 dims
// each); a warp covers 32 / L keys per step; each lane group keeps its own
// running max/sum for the G query heads of this kv head.
template <int D, int G>
__global__ void __launch_bounds__(kDecodeThreads) DecodeKernel(DecodeArgs p) {
  constexpr int L = D / 8;
  constexpr int TPW = 32 / L;
  constexpr int GROUPS = (kDecodeThreads / 32) * TPW;
  __shared__ float sm_m[GROUPS][G], sm_l[GROUPS][G];
  __shared__ float sm_acc[GROUPS][G][D];

  const AttnArgs& a = p.attn;
  const int kvh = blockIdx.x, b = blockIdx.y, split = blockIdx.z, nsplit = gridDim.z;
  const int kvlen = a.kv_len[b];
  const int chunk = (kvlen + nsplit - 1) / nsplit;
  const int start = split * chunk, end = min(kvlen, start + chunk);
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int sub = lane / L, li = lane % L;
  const int group = warp * TPW + sub;
  const int32_t* pt = a.page_table + size_t(b) * a.page_table_stride;
  const int P = a.page_tokens;
  const float sl2 = a.scale * kLog2e;

  float q[G][8];
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    Vec8 v;
    v.u = *reinterpret_cast<const uint4*>(a.q + size_t(b) * a.q_stride + (kvh * G + gi) * D +
                                          li * 8);
#pragma unroll
    for (int e = 0; e < 8; ++e) q[gi][e] = Bf(v.h[e]) * sl2;
  }
  float m[G], l[G], acc[G][8];
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    m[gi] = -FLT_MAX;
    l[gi] = 0.f;
#pragma unroll
    for (int e = 0; e < 8; ++e) acc[gi][e] = 0.f;
  }

  // Every lane runs the same iterations (the shuffles need the whole warp):
  // a key past `end` scores -inf and adds nothing.
  for (int it = start; it < end; it += GROUPS * kDecodeUnroll) {
    Vec8 kv[kDecodeUnroll], vv[kDecodeUnroll];
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      int tok = it + group + u * GROUPS;
      if (tok < end) {
        size_t off = ((size_t(pt[tok / P]) * P + tok % P) * a.kv_heads + kvh) * D + li * 8;
        kv[u].u = *reinterpret_cast<const uint4*>(a.k_cache + off);
        vv[u].u = *reinterpret_cast<const uint4*>(a.v_cache + off);
      } else {
        kv[u].u = make_uint4(0, 0, 0, 0);
        vv[u].u = make_uint4(0, 0, 0, 0);
      }
    }
#pragma unroll
    for (int u = 0; u < kDecodeUnroll; ++u) {
      const bool valid = it + group + u * GROUPS < end;
#pragma unroll
      for (int gi = 0; gi < G; ++gi) {
        float s = 0.f;
#pragma unroll
        for (int e = 0; e < 8; ++e) s += q[gi][e] * Bf(kv[u].h[e]);
#pragma unroll
        for (int o = L / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
        if (!valid) s = -INFINITY;
        float m_new = fmaxf(m[gi], s);
        float corr = Exp2(m[gi] - m_new), pe = Exp2(s - m_new);
        m[gi] = m_new;
        l[gi] = l[gi] * corr + pe;
#pragma unroll
        for (int e = 0; e < 8; ++e) acc[gi][e] = acc[gi][e] * corr + pe * Bf(vv[u].h[e]);
      }
    }
  }
  // Merge the lane groups of the CTA.
#pragma unroll
  for (int gi = 0; gi < G; ++gi) {
    if (li == 0) {
      sm_m[group][gi] = m[gi];
      sm_l[group][gi] = l[gi];
    }
#pragma unroll
    for (int e = 0; e < 8; ++e) sm_acc[group][gi][li * 8 + e] = acc[gi][e];
  }
  __syncthreads();
  const int nh = a.num_heads;
  for (int idx = threadIdx.x; idx < G * D; idx += kDecodeThreads) {
    int gi = idx / D, d = idx % D;
    float M = -FLT_MAX;
    for (int gr = 0; gr < GROUPS; ++gr) M = fmaxf(M, sm_m[gr][gi]);
    float Ls = 0.f, A = 0.f;
    for (int gr = 0; gr < GROUPS; ++gr) {
      float w = sm_l[gr][gi] > 0.f ? Exp2(sm_m[gr][gi] - M) : 0.f;
      Ls += sm_l[gr][gi] * w;
      A += sm_acc[gr][gi][d] * w;
    }
    int h = kvh * G + gi;
    size_t part = (size_t(b) * nh + h) * nsplit + split;
    p.workspace[part * D + d] = A;
    if (d == 0) {
      float* ml = p.workspace + size_t(a.num_seqs) * nh * nsplit * D;
      ml[2 * part] = M;
      ml[2 * part + 1] = Ls;
    }
  }
}

template <int D>
__global__ void DecodeMergeKernel(DecodeArgs p) {
  const AttnArgs& a = p.attn;
  const int h = blockIdx.x, b = blockIdx.y, nsplit = p.splits, nh = a.num_heads;
  const size_t part0 = (size_t(b) * nh + h) * nsplit;
  const float* ml = p.workspace + size_t(a.num_seqs) * nh * nsplit * D;
  float M = -FLT_MAX;
  for (int s = 0; s < nsplit; ++s)
    if (ml[2 * (part0 + s) + 1] > 0.f) M = fmaxf(M, ml[2 * (part0 + s)]);
  for (int d = threadIdx.x; d < D; d += blockDim.x) {
    float Ls = 0.f, A = 0.f;
    for (int s = 0; s < nsplit; ++s) {
      float ls = ml[2 * (part0 + s) + 1];
      if (ls > 0.f) {
        float w = Exp2(ml[2 * (part0 + s)] - M);
        Ls += ls * w;
        A += p.workspace[(part0 + s) * D + d] * w;
      }
    }
    __nv_bfloat16 v = __float2bfloat16_rn(Ls > 0.f ? A / Ls : 0.f);
    a.out[size_t(b) * a.out_stride + h * D + d] = *reinterpret_cast<bf16_t*>(&v);
  }
}

template <int D, int G>
void LaunchDecodeDG(const DecodeArgs& p, cudaStream_t stream) {
  dim3 grid(p.attn.kv_heads, p.attn.num_seqs, p.splits);
  DecodeKernel<D, G><<<grid, kDecodeThreads, 0, stream>>>(p);
  DecodeMergeKernel<D><<<dim3(p.attn.num_heads, p.attn.num_seqs), D, 0, stream>>>(p);
}

template <int D>
void LaunchDecodeD(const DecodeArgs& p, cudaStream_t stream) {
  switch (p.attn.num_heads / p.attn.kv_heads) {
    case 1: return LaunchDecodeDG<D, 1>(p, stream);
    case 2: return LaunchDecodeDG<D, 2>(p, stream);
    case 3: return LaunchDecodeDG<D, 3>(p, stream);
    case 4: return LaunchDecodeDG<D, 4>(p, stream);
    case 5: return LaunchDecodeDG<D, 5>(p, stream);
    case 6: return LaunchDecodeDG<D, 6>(p, stream);
    case 7: return LaunchDecodeDG<D, 7>(p, stream);
    case 8: return LaunchDecodeDG<D, 8>(p, stream);
  }
}

}  // namespace

int PrefillVariant() {
  if (g_prefill_variant < 0) {
    const char* env = std::getenv("KVTIER_PREFILL_ATTN");
    int v = env ? std::atoi(env) : kDefaultPrefillVariant;
    g_prefill_variant = (v >= 0 && v < kNumPrefillShapes) ? v : kDefaultPrefillVariant;
  }
  return g_prefill_variant;
}

void SetPrefillVariant(int variant) {
  g_prefill_variant = (variant >= 0 && variant < kNumPrefillShapes) ? variant : kDefaultPrefillVariant;
}

int NumPrefillVariants() { return kNumPrefillShapes; }

std::string PrefillVariantName(int variant) {
  variant = std::clamp(variant, 0, kNumPrefillShapes - 1);
  if (variant >= kFirstWgmmaShape) {
    const int w = variant - kFirstWgmmaShape;
    if (w >= 3)  // warp-specialised (attention_sm90.cu), all ping-pong
      return std::string("wgmma, producer + ") + (w == 7 ? "3 warpgroups (192 rows), " : "2 warpgroups, ") +
             (w >= 5 ? "64 keys, 5" : "128 keys, 3") + " stages" + (w == 4 || w >= 6 ? ", overlapped" : "");
    return std::string("wgmma, 2 warpgroups (128 rows), ") + (w == 2 ? "128" : "64") + " keys" +
           (w == 1 ? ", 2 CTAs/SM" : "");
  }
  const PrefillShape& s = kPrefillShapes[variant];
  return std::to_string(s.warps) + " warps x " + std::to_string(s.mt) + " m-tiles (" +
         std::to_string(16 * s.warps * s.mt) + " rows), " + std::to_string(s.bc) + " keys";
}

int PrefillTileRows(int head_dim) {
  if (PrefillVariant() >= kFirstWgmmaShape) {
    if (!WgmmaPrefillAvailable(head_dim)) return 128;  // shape 1 runs instead
    return WgmmaPrefillRows(PrefillVariant() - kFirstWgmmaShape);
  }
  const PrefillShape& s = kPrefillShapes[PrefillVariant()];
  return 16 * s.warps * s.mt;
}

std::vector<int2> PrefillTiles(const std::vector<int32_t>& q_len,
                               const std::vector<int32_t>& kv_len, int head_dim) {
  const int rows = PrefillTileRows(head_dim);
  struct Tile {
    int64_t work;
    int2 t;
  };
  std::vector<Tile> tiles;
  for (size_t s = 0; s < q_len.size(); ++s) {
    for (int m0 = 0; m0 < q_len[s]; m0 += rows) {
      int64_t keys = std::min<int64_t>(kv_len[s], int64_t(kv_len[s]) - q_len[s] + m0 + rows);
      tiles.push_back({keys, make_int2(int(s), m0)});
    }
  }
  std::stable_sort(tiles.begin(), tiles.end(),
                   [](const Tile& x, const Tile& y) { return x.work > y.work; });
  std::vector<int2> out;
  out.reserve(tiles.size());
  for (const Tile& t : tiles) out.push_back(t.t);
  return out;
}

void LaunchPrefillAttention(const PrefillArgs& p, cudaStream_t stream) {
  if (p.num_tiles <= 0) return;
  if (p.attn.head_dim == 128) LaunchPrefillD<128>(p, stream);
  else LaunchPrefillD<64>(p, stream);
}

size_t DecodeWorkspaceFloats(int num_seqs, int num_heads, int head_dim, int splits) {
  size_t parts = size_t(num_seqs) * num_heads * splits;
  return parts * head_dim + 2 * parts;
}

int DecodeSplits(int num_seqs, int kv_heads, int num_sms) {
  int ctas = std::max(1, num_seqs * kv_heads);
  int splits = (2 * num_sms + ctas - 1) / ctas;
  return std::clamp(splits, 1, kMaxDecodeSplits);
}

void LaunchDecodeAttention(const DecodeArgs& p, cudaStream_t stream) {
  if (p.attn.num_seqs <= 0) return;
  if (p.attn.head_dim == 128) LaunchDecodeD<128>(p, stream);
  else LaunchDecodeD<64>(p, stream);
}

}  // namespace kvtier::engine
