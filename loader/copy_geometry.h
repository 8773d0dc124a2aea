// CopyGeometry: how a canonical block maps onto one engine page, in a form
// that host code and CUDA kernels share (plain values, no pointers, no CUDA
// headers).
//
// A canonical block is cut into *runs*: the longest pieces that are
// contiguous both in the block and in the pool. A run is a head_dim row, or
// all heads of one token (when head_stride == row bytes), or all tokens of one
// layer's K or V (when token_stride is also kv_heads rows). Runs never cross a
// K/V or layer boundary. PageOffset() maps a byte offset of the block to its
// layer and to its offset from that layer's base within the page, with four
// multiply-shift divisions and no branches, so a kernel can afford it per
// 16-byte vector.
//
// Thread safety: values; build once per pool with MakeCopyGeometry().
#pragma once

#include <cstdint>

#if defined(__CUDACC__)
#define KVTIER_LOADER_HD __host__ __device__ __forceinline__
#else
#define KVTIER_LOADER_HD inline
#endif

namespace kvtier {

struct KvPool;

// Division of a 32-bit value n < 2^31 by a divisor fixed at setup, with one
// multiply-high and one shift (Granlund-Montgomery, as CUTLASS's FastDivmod).
struct FastDiv {
  uint32_t divisor = 1;
  uint32_t mul = 0;
  uint32_t shift = 0;

  // REQUIRES: 1 <= d < 2^31.
  static FastDiv Make(uint32_t d) {
    FastDiv f;
    f.divisor = d;
    if (d == 1) return f;
    uint32_t log2_ceil = 0;
    while ((uint64_t{1} << log2_ceil) < d) ++log2_ceil;
    const uint32_t p = 31 + log2_ceil;
    f.mul = static_cast<uint32_t>(((uint64_t{1} << p) + d - 1) / d);
    f.shift = p - 32;
    return f;
  }

  // REQUIRES: n < 2^31.
  KVTIER_LOADER_HD uint32_t Div(uint32_t n) const {
    if (divisor == 1) return n;
#if defined(__CUDA_ARCH__)
    return __umulhi(n, mul) >> shift;
#else
    return static_cast<uint32_t>((uint64_t{n} * mul) >> 32) >> shift;
#endif
  }
  KVTIER_LOADER_HD uint32_t DivMod(uint32_t n, uint32_t* rem) const {
    const uint32_t q = Div(n);
    *rem = n - q * divisor;
    return q;
  }
};

struct CopyGeometry {
  uint32_t num_layers = 0;
  uint32_t block_bytes = 0;  // canonical block
  uint32_t layer_bytes = 0;  // one layer of it: K then V
  uint32_t half_bytes = 0;   // K (or V) of one layer
  uint32_t row_bytes = 0;    // one head_dim row
  uint32_t run_bytes = 0;    // contiguous piece: row, token (all heads) or half
  FastDiv div_layer;         // by layer_bytes
  FastDiv div_half;          // by half_bytes
  FastDiv div_run;           // by run_bytes
  FastDiv div_heads;         // runs per token: kv_heads if a run is a row, else 1
  int64_t kv_stride = 0;
  int64_t page_stride = 0;
  int64_t token_stride = 0;
  int64_t head_stride = 0;

  // Byte `off` of a canonical block (off < block_bytes) lies in layer *layer;
  // its pool address is layer_base[*layer] + page * page_stride + return value.
  // The run holding `off` continues contiguously in the pool to the end of the
  // run.
  KVTIER_LOADER_HD int64_t PageOffset(uint32_t off, uint32_t* layer) const {
    uint32_t r;
    *layer = div_layer.DivMod(off, &r);
    const uint32_t kv = div_half.DivMod(r, &r);
    const uint32_t q = div_run.DivMod(r, &r);
    uint32_t h;
    const uint32_t t = div_heads.DivMod(q, &h);
    return (kv ? kv_stride : 0) + static_cast<int64_t>(t) * token_stride +
           static_cast<int64_t>(h) * head_stride + r;
  }
};

// REQUIRES: pool.Validate().ok().
CopyGeometry MakeCopyGeometry(const KvPool& pool);

}  // namespace kvtier
