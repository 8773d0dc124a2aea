// Prefill attention with Hopper's warpgroup MMA (wgmma, sm_90a); see
// attention.h for the contract and attention_sm90.h for when it is used.
//
// A CTA of two warpgroups owns 128 query rows of one head (64 per
// warpgroup); it walks key tiles of 64 keys, double-buffered: while tile j
// is computed, tile j + 1 is gathered from its pages with cp.async. Shared
// memory holds Q, K and V in the 128-byte-swizzled layout wgmma reads
// (rows of 64 elements = 128 bytes, 16-byte chunk c of row r at c ^ (r % 8),
// head_dim split into two such 64-column sub-tiles). S = Q K^T is
// wgmma.m64n64k16 with both operands in shared memory (K-major); P stays in
// registers (the S accumulator layout is the A-operand layout) and
// O += P V is wgmma.m64n128k16 with V read N-major (transposed) from shared
// memory. Softmax is FlashAttention-2's online softmax in base 2.
#include "engine_adapter/engine/attention_sm90.h"

#include <cuda_bf16.h>

#include <cfloat>

namespace kvtier::engine {
namespace {

constexpr int kRows = 128;   // query rows per CTA
constexpr int kD = 128;      // head_dim
constexpr int kThreads = 256;
constexpr int kQBytes = 2 * kRows * 128;
// Bytes of one stage of K (or V) for BC keys, and the whole buffer.
template <int BC>
__host__ __device__ constexpr int KVBytes() { return 2 * BC * 128; }
template <int BC>
constexpr int SmemBytes() { return kQBytes + 4 * KVBytes<BC>() + 1024; }  // + alignment slack
constexpr float kLog2e = 1.4426950408889634f;

#if defined(__CUDA_ARCH_FEAT_SM90_ALL)

__device__ __forceinline__ void CpAsync16(uint32_t dst, const void* src, bool valid) {
  int n = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src), "r"(n));
}
__device__ __forceinline__ float Exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
__device__ __forceinline__ uint32_t PackBf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<uint32_t*>(&v);
}

// Byte offset of 16-byte chunk ch (0..15) of row r in a tile of `rows` rows
// split into two 64-column sub-tiles.
__device__ __forceinline__ uint32_t SubSwz(int rows, int r, int ch) {
  return uint32_t((ch >> 3) * rows * 128 + r * 128 + (((ch & 7) ^ (r & 7)) << 4));
}

// wgmma shared-memory descriptor, 128-byte swizzle.
__device__ __forceinline__ uint64_t Desc(uint32_t addr, uint32_t lbo, uint32_t sbo) {
  return uint64_t((addr & 0x3FFFF) >> 4) | (uint64_t((lbo & 0x3FFFF) >> 4) << 16) |
         (uint64_t((sbo & 0x3FFFF) >> 4) << 32) | (uint64_t{1} << 62);
}

__device__ __forceinline__ void WgFence() { asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory"); }
__device__ __forceinline__ void WgCommit() {
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}
__device__ __forceinline__ void WgWait0() {
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
}

// d[64 x 64] (+)= A[64 x 16] * B[16 x 64], both from shared memory, K-major.
__device__ __forceinline__ void WgmmaSS(float (&d)[32], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, %32, %33, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
      : "l"(da), "l"(db), "r"(accumulate));
}

// d[64 x 128] (+)= A[64 x 16] * B[16 x 128], both from shared memory, K-major.
__device__ __forceinline__ void WgmmaSS(float (&d)[64], uint64_t da, uint64_t db, int accumulate) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %66, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, %64, %65, p, 1, 1, 0, 0;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "l"(da), "l"(db), "r"(accumulate));
}

// d[64 x 128] += A[64 x 16] (registers) * B[16 x 128] (shared memory, N-major).
__device__ __forceinline__ void WgmmaRS(float (&d)[64], const uint32_t (&a)[4], uint64_t db) {
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %69, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63}, {%64, %65, %66, %67}, %68, p, 1, 1, 1;\n}\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(db), "r"(1));
}

// ---- One consumer thread's share of the online softmax, shared by both
// kernels: a warpgroup's 64 rows x BC keys, the thread holding rows
// (row_lo, row_lo + 8) of the accumulator layout: s[nt * 4 + 2 r + {0, 1}]
// are keys n0 + 8 nt + 2 t4 + {0, 1} of row r. ----

// Masks the keys past each row's causal limit (lim0, lim1), when the tile
// reaches past the lowest limit of the warp's rows.
template <int NT>
__device__ __forceinline__ void MaskTile(float (&s)[NT * 4], int n0, int warp_min_lim, int lim0,
                                         int lim1, int t4) {
  if (n0 + NT * 8 - 1 > warp_min_lim) {
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      int key = n0 + nt * 8 + 2 * t4;
      if (key > lim0) s[nt * 4 + 0] = -INFINITY;
      if (key + 1 > lim0) s[nt * 4 + 1] = -INFINITY;
      if (key > lim1) s[nt * 4 + 2] = -INFINITY;
      if (key + 1 > lim1) s[nt * 4 + 3] = -INFINITY;
    }
  }
}

// Turns the scores into exp2(s * sl2 - new row max) in place and updates the
// rows' running maxima and sums; corr[r] is the factor row r of O needs.
// Leaves O alone, so it may run while a PV into O is in flight.
template <int NT>
__device__ __forceinline__ void SoftmaxTile(float (&s)[NT * 4], float sl2, float (&mrow)[2],
                                            float (&lrow)[2], float (&corr)[2]) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float mx = -INFINITY;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) mx = fmaxf(mx, fmaxf(s[nt * 4 + 2 * r], s[nt * 4 + 2 * r + 1]));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
    const float m_new = fmaxf(mrow[r], mx * sl2);
    corr[r] = Exp2(mrow[r] - m_new);
    mrow[r] = m_new;
    float sum = 0.f;
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
      float e0 = Exp2(s[nt * 4 + 2 * r] * sl2 - m_new);
      float e1 = Exp2(s[nt * 4 + 2 * r + 1] * sl2 - m_new);
      s[nt * 4 + 2 * r] = e0;
      s[nt * 4 + 2 * r + 1] = e1;
      sum += e0 + e1;
    }
    lrow[r] = lrow[r] * corr[r] + sum;
  }
}

// Scales O by corr only where a row maximum of the warp moved: after the
// first tiles it rarely does, and the 64 multiplies are a third of the
// softmax's work.
__device__ __forceinline__ void RescaleO(float (&o)[64], const float (&corr)[2]) {
  if (__any_sync(0xffffffffu, corr[0] != 1.f || corr[1] != 1.f)) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
#pragma unroll
      for (int dt = 0; dt < 16; ++dt) {
        o[dt * 4 + 2 * r] *= corr[r];
        o[dt * 4 + 2 * r + 1] *= corr[r];
      }
    }
  }
}

// P (bf16) in the A-operand registers of the PV wgmmas. All of it before the
// first wgmma: a register written between them would make the compiler
// serialise them.
template <int BC>
__device__ __forceinline__ void PackP(const float (&s)[BC / 2], uint32_t (&pa)[BC / 16][4]) {
#pragma unroll
  for (int kk = 0; kk < BC / 16; ++kk) {
    pa[kk][0] = PackBf16(s[(2 * kk) * 4 + 0], s[(2 * kk) * 4 + 1]);
    pa[kk][1] = PackBf16(s[(2 * kk) * 4 + 2], s[(2 * kk) * 4 + 3]);
    pa[kk][2] = PackBf16(s[(2 * kk + 1) * 4 + 0], s[(2 * kk + 1) * 4 + 1]);
    pa[kk][3] = PackBf16(s[(2 * kk + 1) * 4 + 2], s[(2 * kk + 1) * 4 + 3]);
  }
}

// Divides the thread's rows of O by their sums (reduced over the quad) and
// writes those of rows row0 and row0 + 8 that lie below qlen.
__device__ __forceinline__ void StoreRows(const float (&o)[64], float (&lrow)[2], const AttnArgs& a,
                                          int qs, int row0, int qlen, int h, int t4) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 1);
    lrow[r] += __shfl_xor_sync(0xffffffffu, lrow[r], 2);
  }
  const int row1 = row0 + 8;
  const float inv0 = lrow[0] > 0.f ? 1.f / lrow[0] : 0.f;
  const float inv1 = lrow[1] > 0.f ? 1.f / lrow[1] : 0.f;
  bf16_t* out0 = a.out + size_t(qs + row0) * a.out_stride + h * kD + 2 * t4;
  bf16_t* out1 = a.out + size_t(qs + row1) * a.out_stride + h * kD + 2 * t4;
#pragma unroll
  for (int dt = 0; dt < 16; ++dt) {
    if (row0 < qlen)
      *reinterpret_cast<uint32_t*>(out0 + dt * 8) = PackBf16(o[dt * 4] * inv0, o[dt * 4 + 1] * inv0);
    if (row1 < qlen)
      *reinterpret_cast<uint32_t*>(out1 + dt * 8) =
          PackBf16(o[dt * 4 + 2] * inv1, o[dt * 4 + 3] * inv1);
  }
}

// BC keys per tile; MINB CTAs per multiprocessor (the register budget).
template <int BC, int MINB>
__global__ void __launch_bounds__(kThreads, MINB) PrefillWgmmaKernel(PrefillArgs p) {
  constexpr int kKeys = BC;
  constexpr int kKVBytes = KVBytes<BC>();
  constexpr int NT = BC / 8;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t base = (uint32_t(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const uint32_t aQ = base;
  // Stage s of K at aK0 + s * kKVBytes, of V at aV0 + s * kKVBytes.
  const uint32_t aK0 = base + kQBytes, aV0 = base + kQBytes + 2 * kKVBytes;

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
  const int wg = warp / 4, wwarp = warp % 4;
  const int kend = min(kvlen, pos0 + m0 + kRows);
  const int ntiles = (kend + kKeys - 1) / kKeys;

  const int ch = tid % 16, r0 = tid / 16;  // 16 rows per pass
  auto load_kv = [&](int stage, int n0) {
#pragma unroll 2
    for (int r = r0; r < kKeys; r += 16) {
      int key = n0 + r;
      bool valid = key < kvlen;
      int kk = valid ? key : 0;
      size_t off = ((size_t(pt[kk / P]) * P + kk % P) * a.kv_heads + kvh) * kD + ch * 8;
      uint32_t o = SubSwz(kKeys, r, ch);
      CpAsync16(aK0 + stage * kKVBytes + o, a.k_cache + off, valid);
      CpAsync16(aV0 + stage * kKVBytes + o, a.v_cache + off, valid);
    }
  };
#pragma unroll
  for (int r = r0; r < kRows; r += 16) {
    int row = m0 + r;
    bool valid = row < qlen;
    const bf16_t* src = a.q + size_t(qs + (valid ? row : 0)) * a.q_stride + h * kD + ch * 8;
    CpAsync16(aQ + SubSwz(kRows, r, ch), src, valid);
  }
  load_kv(0, 0);
  asm volatile("cp.async.commit_group;\n" ::);

  const int g = lane / 4, t4 = lane % 4;
  const int row_lo = wg * 64 + wwarp * 16 + g;  // this thread's rows: row_lo, row_lo + 8
  const int lim0 = min(pos0 + m0 + row_lo, kvlen - 1);
  const int lim1 = min(pos0 + m0 + row_lo + 8, kvlen - 1);
  const int warp_min_lim = min(pos0 + m0 + wg * 64 + wwarp * 16, kvlen - 1);
  const float sl2 = a.scale * kLog2e;
  // V is read N-major: the leading byte offset steps between the two
  // 64-column blocks of head_dim, the stride byte offset between groups of
  // 8 keys (measured: the other order gives wrong output).
  const uint32_t v_lbo = kKeys * 128, v_sbo = 1024;

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.f;
  float mrow[2] = {-FLT_MAX, -FLT_MAX}, lrow[2] = {0.f, 0.f};

  for (int j = 0; j < ntiles; ++j) {
    const int st = j & 1, n0 = j * kKeys;
    if (j + 1 < ntiles) load_kv(st ^ 1, n0 + kKeys);
    asm volatile("cp.async.commit_group;\n" ::);
    asm volatile("cp.async.wait_group 1;\n" ::);
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    __syncthreads();

    float s[BC / 2];
    WgFence();
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint64_t dq = Desc(aQ + (ks >> 2) * kRows * 128 + wg * 64 * 128 + (ks & 3) * 32, 16, 1024);
      uint64_t dk = Desc(aK0 + st * kKVBytes + (ks >> 2) * kKeys * 128 + (ks & 3) * 32, 16, 1024);
      WgmmaSS(s, dq, dk, ks > 0);
    }
    WgCommit();
    WgWait0();

    MaskTile<NT>(s, n0, warp_min_lim, lim0, lim1, t4);
    float corr[2];
    SoftmaxTile<NT>(s, sl2, mrow, lrow, corr);
    RescaleO(o, corr);
    uint32_t pa[kKeys / 16][4];
    PackP<kKeys>(s, pa);
    WgFence();
#pragma unroll
    for (int kk = 0; kk < kKeys / 16; ++kk)
      WgmmaRS(o, pa[kk], Desc(aV0 + st * kKVBytes + kk * 16 * 128, v_lbo, v_sbo));
    WgCommit();
    WgWait0();
    __syncthreads();  // every warp is done with stage st before it is refilled
  }

  StoreRows(o, lrow, a, qs, m0 + row_lo, qlen, h, t4);
}

// ---- Warp-specialised: one producer warpgroup gathers, NC (2 or 3) compute. ----
//
// Warpgroup 0 gathers Q once and K/V tiles of BC keys from the pages with
// cp.async into a ring of ST stages; when its copies of a tile have landed it
// fences them for the async proxy (wgmma reads shared memory through it) and
// arrives on the stage's `full` mbarrier. Warpgroups 1 .. NC own 64 query rows
// each: they wait on `full`, issue S_j = Q K_j^T together with
// O += P_{j-1} V_{j-1} (the previous tile's PV, so the tensor cores get both
// GEMMs in one batch), then run the online softmax of S_j while the other
// warpgroups' GEMMs run: with PING they take turns through named barriers
// (FlashAttention-3's ping-pong), so one's softmax sits under the others'
// MMAs; with OVL the softmax also runs under the warpgroup's own PV. A stage
// is released (its `empty` mbarrier, one arrival per consumer warp) once the
// PV that read its V has completed. setmaxnreg moves registers from the
// producer to the consumers (S, P and O: BC/2 + BC/4 + 64 per thread).
__device__ __forceinline__ void MbarInit(uint32_t bar, int count) {
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(bar), "r"(count) : "memory");
}
__device__ __forceinline__ void MbarArrive(uint32_t bar) {
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}
__device__ __forceinline__ void MbarWait(uint32_t bar, int parity) {
  asm volatile(
      "{\n.reg .pred P1;\n"
      "LAB_WAIT:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 P1, [%0], %1;\n"
      "@P1 bra DONE;\n"
      "bra LAB_WAIT;\n"
      "DONE:\n}\n" ::"r"(bar),
      "r"(parity)
      : "memory");
}
__device__ __forceinline__ void NamedSync(int id) {
  asm volatile("bar.sync %0, 256;\n" ::"r"(id) : "memory");
}
__device__ __forceinline__ void NamedArrive(int id) {
  asm volatile("bar.arrive %0, 256;\n" ::"r"(id) : "memory");
}

// NC consumer warpgroups of 64 rows each and the producer.
template <int NC>
__host__ __device__ constexpr int WsThreads() { return 128 * (NC + 1); }
// Registers per thread after setmaxnreg: 128 * producer + 128 * NC * consumer
// <= 65536 (two consumers: 56 + 224; three: 40 + 152).
template <int NC>
__host__ __device__ constexpr int WsProducerRegs() { return NC == 2 ? 56 : 40; }
template <int NC>
__host__ __device__ constexpr int WsConsumerRegs() { return NC == 2 ? 224 : 152; }

template <int BC, int ST, int NC>
__host__ __device__ constexpr int WsSmemBytes() {
  return 2 * 64 * NC * 128 + 2 * ST * KVBytes<BC>() + 1024 + 16 * ST;  // + alignment slack, mbarriers
}

template <int BC, int ST, bool PING, bool OVL, int NC>
__global__ void __launch_bounds__(WsThreads<NC>(), 1) PrefillWsKernel(PrefillArgs p) {
  static_assert(ST >= 3, "the producer keeps two tiles in flight; fewer stages deadlock");
  static_assert(NC == 2 || NC == 3, "two or three consumer warpgroups");
  constexpr int kRowsWs = 64 * NC;
  constexpr int kQBytesWs = 2 * kRowsWs * 128;
  constexpr int kKVBytes = KVBytes<BC>();
  constexpr int NT = BC / 8;
  extern __shared__ unsigned char smem_raw[];
  const uint32_t base = (uint32_t(__cvta_generic_to_shared(smem_raw)) + 1023u) & ~1023u;
  const uint32_t aQ = base;
  // Stage s: K at aKV + s * 2 * kKVBytes, V right after it.
  const uint32_t aKV = base + kQBytesWs;
  const uint32_t bars = aKV + 2 * ST * kKVBytes;  // full[s] at bars + 8 s, empty[s] at bars + 8 (ST + s)
  auto full = [&](int s) { return bars + 8u * uint32_t(s); };
  auto empty = [&](int s) { return bars + 8u * uint32_t(ST + s); };

  const AttnArgs& a = p.attn;
  const int h = blockIdx.x;
  const int2 tile = p.tiles[blockIdx.y];
  const int seq = tile.x, m0 = tile.y;
  const int qlen = p.q_len[seq], kvlen = a.kv_len[seq], qs = p.q_start[seq];
  const int pos0 = kvlen - qlen;
  const int kvh = h / (a.num_heads / a.kv_heads);
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32;
  const int wg = warp / 4;
  const int kend = min(kvlen, pos0 + m0 + kRowsWs);
  const int ntiles = (kend + BC - 1) / BC;

  if (tid == 0) {
    for (int s = 0; s < ST; ++s) {
      MbarInit(full(s), 128);  // every producer thread
      MbarInit(empty(s), 4 * NC);  // lane 0 of every consumer warp
    }
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
  }
  __syncthreads();

  if (wg == 0) {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(WsProducerRegs<NC>()));
    const int32_t* pt = a.page_table + size_t(seq) * a.page_table_stride;
    const int P = a.page_tokens;
    const int ch = tid % 16, r0 = tid / 16;  // 8 rows per pass
#pragma unroll
    for (int r = r0; r < kRowsWs; r += 8) {
      int row = m0 + r;
      bool valid = row < qlen;
      const bf16_t* src = a.q + size_t(qs + (valid ? row : 0)) * a.q_stride + h * kD + ch * 8;
      CpAsync16(aQ + SubSwz(kRowsWs, r, ch), src, valid);
    }
    for (int j = 0; j < ntiles; ++j) {
      const int st = j % ST;
      if (j >= ST) MbarWait(empty(st), ((j / ST) - 1) & 1);
      const uint32_t sk = aKV + st * 2 * kKVBytes, sv = sk + kKVBytes;
      const int n0 = j * BC;
#pragma unroll 4
      for (int r = r0; r < BC; r += 8) {
        int key = n0 + r;
        bool valid = key < kvlen;
        int kk = valid ? key : 0;
        size_t off = ((size_t(pt[kk / P]) * P + kk % P) * a.kv_heads + kvh) * kD + ch * 8;
        uint32_t o = SubSwz(BC, r, ch);
        CpAsync16(sk + o, a.k_cache + off, valid);
        CpAsync16(sv + o, a.v_cache + off, valid);
      }
      asm volatile("cp.async.commit_group;\n" ::);
      if (j >= 1) {
        asm volatile("cp.async.wait_group 1;\n" ::: "memory");
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        MbarArrive(full((j - 1) % ST));
      }
    }
    asm volatile("cp.async.wait_group 0;\n" ::: "memory");
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
    MbarArrive(full((ntiles - 1) % ST));
    return;
  }

  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(WsConsumerRegs<NC>()));
  const int c = wg - 1;  // consumer 0 .. NC - 1
  const int wwarp = warp % 4;
  const int g = lane / 4, t4 = lane % 4;
  const int row_lo = c * 64 + wwarp * 16 + g;  // this thread's rows: row_lo, row_lo + 8
  const int lim0 = min(pos0 + m0 + row_lo, kvlen - 1);
  const int lim1 = min(pos0 + m0 + row_lo + 8, kvlen - 1);
  const int warp_min_lim = min(pos0 + m0 + c * 64 + wwarp * 16, kvlen - 1);
  const float sl2 = a.scale * kLog2e;
  const uint32_t v_lbo = BC * 128, v_sbo = 1024;
  // Consumers take turns in order 0, 1, .., NC - 1: c waits on barrier 1 + c
  // and lets the next one go; the last lets consumer 0 go first.
  const int next_bar = 1 + (c + 1) % NC;
  if (PING && c == NC - 1) NamedArrive(1);

  float o[64];
#pragma unroll
  for (int i = 0; i < 64; ++i) o[i] = 0.f;
  float mrow[2] = {-FLT_MAX, -FLT_MAX}, lrow[2] = {0.f, 0.f};
  uint32_t pa[BC / 16][4];

  // The online softmax of tile j's scores in two halves: `scores` masks,
  // finds the new row maxima and turns S into exp2 in place (O untouched, so
  // it may run while a PV into O is still in flight); `rescale_pack` scales O
  // by the correction and packs P for the next PV.
  auto scores = [&](float (&s)[BC / 2], int n0, float (&corr)[2]) {
    MaskTile<NT>(s, n0, warp_min_lim, lim0, lim1, t4);
    SoftmaxTile<NT>(s, sl2, mrow, lrow, corr);
  };
  auto rescale_pack = [&](float (&s)[BC / 2], const float (&corr)[2]) {
    RescaleO(o, corr);
    PackP<BC>(s, pa);
  };
  auto issue_qk = [&](float (&s)[BC / 2], uint32_t sk) {
#pragma unroll
    for (int ks = 0; ks < kD / 16; ++ks) {
      uint64_t dq = Desc(aQ + (ks >> 2) * kRowsWs * 128 + c * 64 * 128 + (ks & 3) * 32, 16, 1024);
      uint64_t dk = Desc(sk + (ks >> 2) * BC * 128 + (ks & 3) * 32, 16, 1024);
      WgmmaSS(s, dq, dk, ks > 0);
    }
  };
  auto issue_pv = [&](uint32_t sv) {
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) WgmmaRS(o, pa[kk], Desc(sv + kk * 16 * 128, v_lbo, v_sbo));
  };

  // Tile 0 (no PV yet), then every later tile with the previous one's PV.
  // The last consumer arrives on consumer 0's barrier once per tile and once
  // at the start, so consumer 0 syncs once more after the loop: every
  // named-barrier phase completes, and the loop body has no branch around its
  // wgmmas.
  {
    float s[BC / 2];
    MbarWait(full(0), 0);
    if (PING) NamedSync(1 + c);
    WgFence();
    issue_qk(s, aKV);
    WgCommit();
    if (PING) NamedArrive(next_bar);
    WgWait0();
    float corr[2];
    scores(s, 0, corr);
    rescale_pack(s, corr);
  }
  for (int j = 1; j < ntiles; ++j) {
    const int st = j % ST, prev = (j - 1) % ST;
    float s[BC / 2];
    MbarWait(full(st), (j / ST) & 1);
    if (PING) NamedSync(1 + c);
    WgFence();
    issue_qk(s, aKV + st * 2 * kKVBytes);
    float corr[2];
    if constexpr (OVL) {
      // S_j in its own group: its softmax runs while this warpgroup's
      // PV_{j-1} is still on the tensor cores (FlashAttention-3's
      // intra-warpgroup overlap); O is rescaled once the PV is done.
      WgCommit();
      issue_pv(aKV + prev * 2 * kKVBytes + kKVBytes);
      WgCommit();
      if (PING) NamedArrive(next_bar);
      asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
      scores(s, j * BC, corr);
      WgWait0();
    } else {
      issue_pv(aKV + prev * 2 * kKVBytes + kKVBytes);
      WgCommit();
      if (PING) NamedArrive(next_bar);
      WgWait0();
      scores(s, j * BC, corr);
    }
    if (lane == 0) MbarArrive(empty(prev));
    rescale_pack(s, corr);
  }
  if (PING && c == 0) NamedSync(1);
  WgFence();
  issue_pv(aKV + ((ntiles - 1) % ST) * 2 * kKVBytes + kKVBytes);
  WgCommit();
  WgWait0();

  StoreRows(o, lrow, a, qs, m0 + row_lo, qlen, h, t4);
}

#else  // not sm_90a: never launched (WgmmaPrefillAvailable() is false)

template <int BC, int MINB>
__global__ void PrefillWgmmaKernel(PrefillArgs) { __trap(); }
template <int NC>
constexpr int WsThreads() { return 128 * (NC + 1); }
template <int BC, int ST, int NC>
constexpr int WsSmemBytes() { return 2 * 64 * NC * 128 + 2 * ST * KVBytes<BC>() + 1024 + 16 * ST; }
template <int BC, int ST, bool PING, bool OVL, int NC>
__global__ void PrefillWsKernel(PrefillArgs) { __trap(); }


#endif

}  // namespace

bool WgmmaPrefillAvailable(int head_dim) {
  if (head_dim != kD) return false;
  int dev = 0, major = 0, minor = 0;
  if (cudaGetDevice(&dev) != cudaSuccess) return false;
  cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
  cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
  return major == 9 && minor == 0;
}

int WgmmaPrefillRows(int shape) { return shape == 7 ? 192 : kRows; }

namespace {
template <int BC, int MINB>
void LaunchWgmmaShape(const PrefillArgs& p, cudaStream_t stream) {
  auto kernel = PrefillWgmmaKernel<BC, MINB>;
  static bool configured = [&] {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, SmemBytes<BC>());
    return true;
  }();
  (void)configured;
  dim3 grid(p.attn.num_heads, p.num_tiles);
  kernel<<<grid, kThreads, SmemBytes<BC>(), stream>>>(p);
}
template <int BC, int ST, bool PING, bool OVL, int NC = 2>
void LaunchWsShape(const PrefillArgs& p, cudaStream_t stream) {
  auto kernel = PrefillWsKernel<BC, ST, PING, OVL, NC>;
  constexpr int kSmem = WsSmemBytes<BC, ST, NC>();
  static_assert(kSmem <= 227 * 1024, "shared memory of one CTA");
  static bool configured = [&] {
    cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    return true;
  }();
  (void)configured;
  dim3 grid(p.attn.num_heads, p.num_tiles);
  kernel<<<grid, WsThreads<NC>(), kSmem, stream>>>(p);
}
}  // namespace

void LaunchPrefillWgmma(const PrefillArgs& p, int shape, cudaStream_t stream) {
  switch (shape) {
    case 0: return LaunchWgmmaShape<64, 1>(p, stream);
    case 1: return LaunchWgmmaShape<64, 2>(p, stream);
    case 2: return LaunchWgmmaShape<128, 1>(p, stream);
    case 3: return LaunchWsShape<128, 3, true, false>(p, stream);
    case 4: return LaunchWsShape<128, 3, true, true>(p, stream);
    case 5: return LaunchWsShape<64, 5, true, false>(p, stream);
    case 6: return LaunchWsShape<64, 5, true, true>(p, stream);
    default: return LaunchWsShape<64, 5, true, true, 3>(p, stream);
  }
}

}  // namespace kvtier::engine
