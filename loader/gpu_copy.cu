// CUDA implementation of loader/gpu_copy.h: the paged gather/scatter kernel,
// the block-list staging ring, and layer-wise events.
//
// Work split. A launch covers the bytes [range_begin, range_end) of every
// block of the batch (a layer range is a contiguous byte range of a canonical
// block). Each block's range is cut into tiles of kThreads * kUnroll * 16
// bytes; a CTA takes tiles (blockIdx.x, then + gridDim.x when the grid is
// capped). Thread i of a CTA moves the 16-byte vectors at tile offsets
// 16 * (i + k * kThreads), k < kUnroll: a warp reads and writes 512
// contiguous canonical bytes per step, and every 16-byte vector lies in one
// contiguous run of the pool (runs are multiples of 16 bytes), so pool
// accesses are coalesced as well. All kUnroll loads are issued before the
// first store, to keep bytes in flight over PCIe and HBM.
//
// Tile order. By default tiles go block by block. Loads into pools where one
// run position of consecutive pages is contiguous (vLLM: page stride = run)
// go in write order instead: the uploaded list is sorted by page and tiles go
// run position by run position across the blocks, so the CTAs in flight write
// one stretch of neighbouring pages and read scattered slot pieces; HBM
// sustains that better than scattered writes (docs/loader.md).
#include "loader/gpu_copy.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "loader/block_order.h"
#include "loader/copy_geometry.h"
#include "loader/cuda_status.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

constexpr int kThreads = 256;
constexpr uint32_t kVecBytes = 16;

struct KernelParams {
  CopyGeometry geo;
  const BlockRef* blocks;          // device copy of the batch
  unsigned long long* sums;        // per block, or nullptr
  uint32_t range_begin;            // canonical bytes [range_begin, range_end)
  uint32_t range_end;
  uint32_t tiles_per_block;
  uint32_t total_tiles;
  // Run-major order (loads): tile t is tile t % tiles_per_run of run
  // t / (tiles_per_run * num_blocks) of block (t / tiles_per_run) % num_blocks,
  // so CTAs running at once write one run position of neighbouring pages.
  bool run_major;
  uint32_t tiles_per_run;
  uint32_t num_blocks;
  char* layer_base[kMaxPoolLayers];
};

// The checksum terms of one 16-byte vector whose first word's position key
// is `pos` = word_index * kPos (mod 2^64): checksum::Term without its
// multiply, since consecutive words' keys differ by kPos (the caller derives
// each vector's key by additions from one product per tile).
__device__ __forceinline__ uint64_t Mix(uint64_t x) {
  x *= checksum::kMul;
  return x ^ (x >> 29);
}
__device__ __forceinline__ uint64_t VectorTerms(uint64_t pos, const int4& v) {
  const uint64_t w0 = (static_cast<uint64_t>(static_cast<uint32_t>(v.y)) << 32) |
                      static_cast<uint32_t>(v.x);
  const uint64_t w1 = (static_cast<uint64_t>(static_cast<uint32_t>(v.w)) << 32) |
                      static_cast<uint32_t>(v.z);
  return Mix(w0 ^ pos) + Mix(w1 ^ (pos + checksum::kPos));
}

// Block and canonical byte offset of tile `tile` of `tile_bytes`.
__device__ __forceinline__ void TileAt(const KernelParams& p, uint32_t tile, uint32_t tile_bytes,
                                       uint32_t* b, uint32_t* off) {
  if (p.run_major) {
    const uint32_t u = tile / p.tiles_per_run;
    const uint32_t j = tile - u * p.tiles_per_run;
    const uint32_t r = u / p.num_blocks;
    *b = u - r * p.num_blocks;
    *off = p.range_begin + r * p.geo.run_bytes + j * tile_bytes;
  } else {
    *b = tile / p.tiles_per_block;
    *off = p.range_begin + (tile - *b * p.tiles_per_block) * tile_bytes;
  }
}

template <bool kLoad, bool kSum, int kUnroll>
__global__ void __launch_bounds__(kThreads)
    PagedCopyKernel(const __grid_constant__ KernelParams p) {
  constexpr uint32_t kTileBytes = kThreads * kUnroll * kVecBytes;
  __shared__ unsigned long long warp_sums[kThreads / 32];

  for (uint32_t tile = blockIdx.x; tile < p.total_tiles; tile += gridDim.x) {
    uint32_t b, tile_off;
    TileAt(p, tile, kTileBytes, &b, &tile_off);
    const BlockRef ref = p.blocks[b];
    char* const slot = static_cast<char*>(ref.slot);
    const int64_t page_off = static_cast<int64_t>(ref.page) * p.geo.page_stride;
    const uint32_t first = tile_off + threadIdx.x * kVecBytes;

    int4 v[kUnroll];
    char* pool_ptr[kUnroll];
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const uint32_t off = first + k * kThreads * kVecBytes;
      pool_ptr[k] = nullptr;
      if (off < p.range_end) {
        uint32_t layer;
        const int64_t in_page = p.geo.PageOffset(off, &layer);
        pool_ptr[k] = p.layer_base[layer] + page_off + in_page;
        const char* src = kLoad ? slot + off : pool_ptr[k];
        v[k] = __ldcs(reinterpret_cast<const int4*>(src));
      }
    }
    unsigned long long sum = 0;
    // Position key of this thread's first word; vector k's is k steps on.
    const uint64_t pos0 = static_cast<uint64_t>(first >> 3) * checksum::kPos;
    constexpr uint64_t kPosStep = uint64_t{kThreads} * (kVecBytes / 8) * checksum::kPos;
#pragma unroll
    for (int k = 0; k < kUnroll; ++k) {
      const uint32_t off = first + k * kThreads * kVecBytes;
      if (off < p.range_end) {
        char* dst = kLoad ? pool_ptr[k] : slot + off;
        *reinterpret_cast<int4*>(dst) = v[k];
        if constexpr (kSum) sum += VectorTerms(pos0 + k * kPosStep, v[k]);
      }
    }
    if constexpr (kSum) {
#pragma unroll
      for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
      if ((threadIdx.x & 31) == 0) warp_sums[threadIdx.x >> 5] = sum;
      __syncthreads();
      if (threadIdx.x == 0) {
        unsigned long long total = 0;
#pragma unroll
        for (int w = 0; w < kThreads / 32; ++w) total += warp_sums[w];
        atomicAdd(&p.sums[ref.sum_index], total);  // modulo 2^64, as the spec's sum
      }
      __syncthreads();  // warp_sums is reused by the next tile
    }
  }
}

__global__ void ZeroSumsKernel(unsigned long long* sums, uint32_t n) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) sums[i] = 0;
}

// Loads every kernel of this file into the context now. With CUDA's lazy
// module loading (the default since 12.2) a kernel's first launch may need a
// context-wide synchronization, which deadlocks if that launch is queued
// behind work that waits on the host (a host function, an event the caller
// records later); it would also put the load on the first transfer's latency.
template <int kUnroll>
Status PreloadKernels() {
  cudaFuncAttributes a;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&a, PagedCopyKernel<true, true, kUnroll>));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&a, PagedCopyKernel<true, false, kUnroll>));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&a, PagedCopyKernel<false, true, kUnroll>));
  KVTIER_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&a, PagedCopyKernel<false, false, kUnroll>));
  return Status::OK();
}

template <int kUnroll>
void LaunchPagedCopy(bool load, bool sum, dim3 grid, cudaStream_t stream,
                     const KernelParams& p) {
  if (load) {
    if (sum) {
      PagedCopyKernel<true, true, kUnroll><<<grid, kThreads, 0, stream>>>(p);
    } else {
      PagedCopyKernel<true, false, kUnroll><<<grid, kThreads, 0, stream>>>(p);
    }
  } else {
    if (sum) {
      PagedCopyKernel<false, true, kUnroll><<<grid, kThreads, 0, stream>>>(p);
    } else {
      PagedCopyKernel<false, false, kUnroll><<<grid, kThreads, 0, stream>>>(p);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// LayerEvents

Result<LayerEvents> LayerEvents::Create(uint32_t max_groups) {
  if (max_groups == 0) return Status::InvalidArgument("LayerEvents: max_groups = 0");
  LayerEvents e;
  e.events_.reserve(max_groups);
  for (uint32_t g = 0; g < max_groups; ++g) {
    cudaEvent_t ev;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    e.events_.push_back(ev);
  }
  return Result<LayerEvents>(std::move(e));
}

LayerEvents::~LayerEvents() {
  for (void* ev : events_) (void)cudaEventDestroy(static_cast<cudaEvent_t>(ev));
}

Result<uint32_t> LayerEvents::GroupOf(uint32_t layer) const {
  if (num_groups_ == 0) return Status::InvalidArgument("LayerEvents: no layer-wise copy recorded");
  if (layer < layer_begin_ || layer >= layer_end_) {
    return Status::InvalidArgument("LayerEvents: layer " + std::to_string(layer) +
                                   " is outside the last copy's range [" +
                                   std::to_string(layer_begin_) + ", " +
                                   std::to_string(layer_end_) + ")");
  }
  return (layer - layer_begin_) / layers_per_group_;
}

Status LayerEvents::StreamWaitLayer(uint32_t layer, GpuStream stream) const {
  KVTIER_ASSIGN_OR_RETURN(uint32_t g, GroupOf(layer));
  return CudaStatus(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream),
                                        static_cast<cudaEvent_t>(events_[g]), 0),
                    "cudaStreamWaitEvent");
}

Status LayerEvents::SynchronizeLayer(uint32_t layer) const {
  KVTIER_ASSIGN_OR_RETURN(uint32_t g, GroupOf(layer));
  return CudaStatus(cudaEventSynchronize(static_cast<cudaEvent_t>(events_[g])),
                    "cudaEventSynchronize");
}

Result<bool> LayerEvents::LayerReady(uint32_t layer) const {
  KVTIER_ASSIGN_OR_RETURN(uint32_t g, GroupOf(layer));
  const cudaError_t err = cudaEventQuery(static_cast<cudaEvent_t>(events_[g]));
  if (err == cudaSuccess) return true;
  if (err == cudaErrorNotReady) return false;
  return CudaStatus(err, "cudaEventQuery");
}

// ---------------------------------------------------------------------------
// GpuCopier

struct GpuCopier::Impl {
  Options options;
  int max_ctas = 0;             // grid cap: resident CTAs of the device
  BlockRef* staging = nullptr;  // pinned host, ring_depth * max_blocks
  BlockRef* device = nullptr;   // device, same shape
  std::vector<cudaEvent_t> done;  // per ring slot: its last launch finished
  uint32_t next = 0;
  std::vector<BlockRef> sort_tmp;

  // The copy-engine path's state, allocated at the first CopyStaged().
  struct Staged {
    char* buffers = nullptr;            // device, count * buffer_bytes
    uint64_t buffer_bytes = 0;
    uint32_t count = 0;
    cudaStream_t dma = nullptr;         // the copy engines' queue
    std::vector<cudaEvent_t> filled;    // per buffer: its DMA (load) or gather (store) is done
    std::vector<cudaEvent_t> drained;   // per buffer: its contents are consumed
    cudaEvent_t tail = nullptr;         // a store's last DMA
    uint64_t next_buffer = 0;           // buffers are taken in turn across transfers
    // Device block lists of staged transfers in flight, a ring like the
    // copier's (each grows to the largest transfer that used it).
    static constexpr uint32_t kLists = 8;
    BlockRef* list_host[kLists] = {};
    BlockRef* list_device[kLists] = {};
    size_t list_capacity[kLists] = {};
    cudaEvent_t list_done[kLists] = {};
    uint32_t next_list = 0;
    bool batch_supported = true;        // cudaMemcpyBatchAsync answered
    // Reused host arrays of one chunk's copies.
    std::vector<void*> dsts;
    std::vector<const void*> srcs;
    std::vector<size_t> sizes;
    std::vector<BlockRef> refs;
    std::vector<uint32_t> order;  // blocks by slot address
  };
  Staged staged;

  ~Impl() {
    for (cudaEvent_t ev : done) {
      (void)cudaEventSynchronize(ev);
      (void)cudaEventDestroy(ev);
    }
    if (staged.dma != nullptr) (void)cudaStreamSynchronize(staged.dma);
    for (uint32_t i = 0; i < Staged::kLists; ++i) {
      if (staged.list_done[i] != nullptr) {
        (void)cudaEventSynchronize(staged.list_done[i]);
        (void)cudaEventDestroy(staged.list_done[i]);
      }
      if (staged.list_device[i] != nullptr) (void)cudaFree(staged.list_device[i]);
      if (staged.list_host[i] != nullptr) (void)cudaFreeHost(staged.list_host[i]);
    }
    for (cudaEvent_t ev : staged.filled) (void)cudaEventDestroy(ev);
    for (cudaEvent_t ev : staged.drained) (void)cudaEventDestroy(ev);
    if (staged.tail != nullptr) (void)cudaEventDestroy(staged.tail);
    if (staged.dma != nullptr) (void)cudaStreamDestroy(staged.dma);
    if (staged.buffers != nullptr) (void)cudaFree(staged.buffers);
    if (device != nullptr) (void)cudaFree(device);
    if (staging != nullptr) (void)cudaFreeHost(staging);
  }

  // Takes the next ring slot, waits until its previous launch is done, and
  // queues the upload of `blocks` into it. Returns the slot index.
  Result<uint32_t> Upload(std::span<const BlockRef> blocks, bool order, cudaStream_t stream) {
    const uint32_t slot = next;
    next = (next + 1) % options.ring_depth;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(done[slot]));
    BlockRef* host = staging + size_t{slot} * options.max_blocks;
    if (order) {
      OrderByPage(blocks, host, &sort_tmp);
    } else {
      for (size_t i = 0; i < blocks.size(); ++i) {
        host[i] = blocks[i];
        host[i].sum_index = static_cast<uint32_t>(i);
      }
    }
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(device + size_t{slot} * options.max_blocks, host,
                                                blocks.size_bytes(), cudaMemcpyHostToDevice,
                                                stream));
    return slot;
  }

  Status Release(uint32_t slot, cudaStream_t stream) {
    return CudaStatus(cudaEventRecord(done[slot], stream), "cudaEventRecord");
  }

  Status ZeroSums(uint64_t* sums, size_t n, cudaStream_t stream) {
    const uint32_t threads = 256;
    const uint32_t blocks = static_cast<uint32_t>((n + threads - 1) / threads);
    ZeroSumsKernel<<<blocks, threads, 0, stream>>>(reinterpret_cast<unsigned long long*>(sums),
                                                   static_cast<uint32_t>(n));
    return CudaStatus(cudaGetLastError(), "ZeroSums launch");
  }

  // Queues the copy of the transfer's final sums to checksum_sums_host.
  static Status ReadBackSums(const PagedTransfer& t, cudaStream_t stream) {
    if (t.checksum_sums_host == nullptr || t.checksum_sums == nullptr || t.blocks.empty())
      return Status::OK();
    return CudaStatus(cudaMemcpyAsync(t.checksum_sums_host, t.checksum_sums,
                                      t.blocks.size() * sizeof(uint64_t), cudaMemcpyDeviceToHost,
                                      stream),
                      "cudaMemcpyAsync (checksum sums)");
  }

  // Whether a transfer is copied in write order: loads, where a run position
  // of consecutive pages is contiguous in the pool (vLLM's K and V tensors:
  // page stride = run = half a page-layer) and runs are whole tiles. Other
  // layouts keep block order, which writes a page's contiguous bytes in turn.
  // Only with one CTA per tile and up to 4 loads per thread: on the H200 a
  // persistent grid or 8 loads per thread ran far slower in write order
  // (docs/loader.md).
  bool RunMajor(const CopyGeometry& geo, TransferDirection d) const {
    const uint32_t tile_bytes = kThreads * options.vector_loads_per_thread * kVecBytes;
    return options.write_order && d == TransferDirection::kLoad &&
           options.max_resident_waves == 0 && options.vector_loads_per_thread <= 4 &&
           geo.page_stride == static_cast<int64_t>(geo.run_bytes) && geo.run_bytes % tile_bytes == 0;
  }

  // Launches one kernel over blocks [0, n) of the uploaded list at `slot`,
  // canonical bytes of layers [l0, l1).
  Status Launch(const PagedTransfer& t, const CopyGeometry& geo, uint32_t slot, size_t first,
                size_t n, uint32_t l0, uint32_t l1, bool run_major, cudaStream_t stream) {
    return LaunchList(t, geo, device + size_t{slot} * options.max_blocks,
                      t.checksum_sums == nullptr ? nullptr : t.checksum_sums + first, n, l0, l1,
                      run_major, max_ctas, stream);
  }

  // One kernel over the n blocks of the device list `blocks`, whose checksum
  // sums are sums[blocks[i].sum_index]; grid capped at `grid_cap` CTAs (0: none).
  Status LaunchList(const PagedTransfer& t, const CopyGeometry& geo, const BlockRef* blocks,
                    uint64_t* sums, size_t n, uint32_t l0, uint32_t l1, bool run_major,
                    int grid_cap, cudaStream_t stream) {
    KernelParams p{};
    p.geo = geo;
    p.blocks = blocks;
    p.sums = reinterpret_cast<unsigned long long*>(sums);
    p.range_begin = l0 * geo.layer_bytes;
    p.range_end = l1 * geo.layer_bytes;
    const int unroll = options.vector_loads_per_thread;
    const uint32_t tile_bytes = kThreads * unroll * kVecBytes;
    p.tiles_per_block = (p.range_end - p.range_begin + tile_bytes - 1) / tile_bytes;
    p.total_tiles = static_cast<uint32_t>(n * p.tiles_per_block);
    for (uint32_t l = 0; l < geo.num_layers; ++l) {
      p.layer_base[l] = static_cast<char*>(t.pool->layer_base[l]);
    }
    const bool load = t.direction == TransferDirection::kLoad;
    const bool sum = p.sums != nullptr;
    p.num_blocks = static_cast<uint32_t>(n);
    p.run_major = run_major;
    p.tiles_per_run = run_major ? geo.run_bytes / tile_bytes : 0;
    uint32_t grid = p.total_tiles;
    if (grid_cap > 0) grid = std::min<uint32_t>(grid, static_cast<uint32_t>(grid_cap));
    if (grid == 0) return Status::OK();
    if (unroll == 8) {
      LaunchPagedCopy<8>(load, sum, dim3(grid), stream, p);
    } else if (unroll == 2) {
      LaunchPagedCopy<2>(load, sum, dim3(grid), stream, p);
    } else {
      LaunchPagedCopy<4>(load, sum, dim3(grid), stream, p);
    }
    return CudaStatus(cudaGetLastError(), "PagedCopyKernel launch");
  }

  // Allocates the staging buffers, the DMA stream and their events.
  Status EnsureStaged() {
    if (staged.buffers != nullptr) return Status::OK();
    const uint32_t count = options.staging_buffers;
    const uint64_t bytes = options.staging_bytes / count / kVecBytes * kVecBytes;
    if (cudaMalloc(reinterpret_cast<void**>(&staged.buffers), bytes * count) != cudaSuccess) {
      (void)cudaGetLastError();
      staged.buffers = nullptr;
      return Status::ResourceExhausted("GpuCopier: no device memory for " +
                                       std::to_string(bytes * count) + " bytes of staging");
    }
    staged.buffer_bytes = bytes;
    staged.count = count;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamCreateWithFlags(&staged.dma, cudaStreamNonBlocking));
    for (uint32_t i = 0; i < count; ++i) {
      cudaEvent_t a, b;
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&a, cudaEventDisableTiming));
      staged.filled.push_back(a);
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&b, cudaEventDisableTiming));
      staged.drained.push_back(b);
    }
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&staged.tail, cudaEventDisableTiming));
    for (uint32_t i = 0; i < Staged::kLists; ++i)
      KVTIER_CUDA_RETURN_IF_ERROR(
          cudaEventCreateWithFlags(&staged.list_done[i], cudaEventDisableTiming));
    return Status::OK();
  }

  // Queues the upload of staged.refs into the next list of the ring, after
  // waiting (host) for the transfer that last used it. Returns the list.
  Result<uint32_t> UploadStagedList(cudaStream_t stream) {
    const uint32_t i = staged.next_list;
    staged.next_list = (i + 1) % Staged::kLists;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventSynchronize(staged.list_done[i]));
    const size_t n = staged.refs.size();
    if (staged.list_capacity[i] < n) {
      if (staged.list_device[i] != nullptr) (void)cudaFree(staged.list_device[i]);
      if (staged.list_host[i] != nullptr) (void)cudaFreeHost(staged.list_host[i]);
      staged.list_device[i] = nullptr;
      staged.list_host[i] = nullptr;
      staged.list_capacity[i] = 0;
      const size_t cap = std::max<size_t>(n, 1024);
      KVTIER_CUDA_RETURN_IF_ERROR(
          cudaHostAlloc(reinterpret_cast<void**>(&staged.list_host[i]), cap * sizeof(BlockRef),
                        cudaHostAllocPortable));
      KVTIER_CUDA_RETURN_IF_ERROR(
          cudaMalloc(reinterpret_cast<void**>(&staged.list_device[i]), cap * sizeof(BlockRef)));
      staged.list_capacity[i] = cap;
    }
    std::memcpy(staged.list_host[i], staged.refs.data(), n * sizeof(BlockRef));
    KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(staged.list_device[i], staged.list_host[i],
                                                n * sizeof(BlockRef), cudaMemcpyHostToDevice,
                                                stream));
    return i;
  }

  // Queues the chunk's copies (staged.dsts/srcs/sizes) on the DMA stream:
  // one cudaMemcpyBatchAsync, or one cudaMemcpyAsync each where the batch
  // call is not supported.
  Status QueueDma() {
    const size_t n = staged.dsts.size();
    if (n == 0) return Status::OK();
    if (n > 1 && staged.batch_supported) {
      cudaMemcpyAttributes attr{};
      attr.srcAccessOrder = cudaMemcpySrcAccessOrderStream;
      attr.flags = cudaMemcpyFlagPreferOverlapWithCompute;
      size_t attr_index = 0;
      const cudaError_t err =
          cudaMemcpyBatchAsync(staged.dsts.data(), const_cast<const void**>(staged.srcs.data()),
                               staged.sizes.data(), n, &attr, &attr_index, 1, staged.dma);
      if (err == cudaSuccess) return Status::OK();
      if (err != cudaErrorNotSupported && err != cudaErrorInvalidValue)
        return CudaStatus(err, "cudaMemcpyBatchAsync");
      (void)cudaGetLastError();
      staged.batch_supported = false;  // the driver lacks it: copies one by one
    }
    for (size_t i = 0; i < n; ++i) {
      KVTIER_CUDA_RETURN_IF_ERROR(cudaMemcpyAsync(staged.dsts[i], staged.srcs[i], staged.sizes[i],
                                                  cudaMemcpyDefault, staged.dma));
    }
    return Status::OK();
  }

  // Adds one piece to the chunk's copies, merged with the previous one where
  // both sides continue it.
  void AddPiece(void* dst, const void* src, size_t bytes) {
    if (!staged.dsts.empty()) {
      const size_t last = staged.dsts.size() - 1;
      if (static_cast<char*>(staged.dsts[last]) + staged.sizes[last] == dst &&
          static_cast<const char*>(staged.srcs[last]) + staged.sizes[last] == src) {
        staged.sizes[last] += bytes;
        return;
      }
    }
    staged.dsts.push_back(dst);
    staged.srcs.push_back(src);
    staged.sizes.push_back(bytes);
  }

  // Blocks per launch: max_blocks, and few enough that tiles fit 32 bits.
  size_t ChunkBlocks(const CopyGeometry& geo, uint32_t l0, uint32_t l1) const {
    const uint64_t tile_bytes = uint64_t{kThreads} * options.vector_loads_per_thread * kVecBytes;
    const uint64_t tiles = (uint64_t{l1 - l0} * geo.layer_bytes + tile_bytes - 1) / tile_bytes;
    return static_cast<size_t>(
        std::min<uint64_t>(options.max_blocks, std::max<uint64_t>(1, INT_MAX / tiles)));
  }
};

GpuCopier::GpuCopier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
GpuCopier::~GpuCopier() = default;

Result<std::unique_ptr<GpuCopier>> GpuCopier::Create(const Options& options) {
  if (options.max_blocks == 0 || options.ring_depth == 0) {
    return Status::InvalidArgument("GpuCopier: max_blocks and ring_depth must be positive");
  }
  if (options.staging_buffers == 0 || options.staging_bytes / options.staging_buffers < kVecBytes) {
    return Status::InvalidArgument(
        "GpuCopier: staging_buffers must be positive and each buffer at least 16 bytes");
  }
  const int u = options.vector_loads_per_thread;
  if (u != 2 && u != 4 && u != 8) {
    return Status::InvalidArgument("GpuCopier: vector_loads_per_thread must be 2, 4 or 8");
  }
  if (!GpuAvailable()) return Status::Unavailable("GpuCopier: no CUDA device");
  {
    cudaFuncAttributes a;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaFuncGetAttributes(&a, ZeroSumsKernel));
  }
  KVTIER_RETURN_IF_ERROR(PreloadKernels<2>());
  KVTIER_RETURN_IF_ERROR(PreloadKernels<4>());
  KVTIER_RETURN_IF_ERROR(PreloadKernels<8>());
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  if (options.max_resident_waves > 0) {
    int device = 0;
    int sms = 0;
    int per_sm = 0;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaGetDevice(&device));
    KVTIER_CUDA_RETURN_IF_ERROR(
        cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device));
    // Occupancy of the heaviest variant bounds them all.
    KVTIER_CUDA_RETURN_IF_ERROR(cudaOccupancyMaxActiveBlocksPerMultiprocessor(
        &per_sm, PagedCopyKernel<true, true, 8>, kThreads, 0));
    impl->max_ctas = std::max(1, sms * std::max(1, per_sm) * options.max_resident_waves);
  }
  const size_t entries = size_t{options.max_blocks} * options.ring_depth;
  KVTIER_CUDA_RETURN_IF_ERROR(cudaHostAlloc(reinterpret_cast<void**>(&impl->staging),
                                            entries * sizeof(BlockRef), cudaHostAllocPortable));
  KVTIER_CUDA_RETURN_IF_ERROR(
      cudaMalloc(reinterpret_cast<void**>(&impl->device), entries * sizeof(BlockRef)));
  impl->done.reserve(options.ring_depth);
  for (uint32_t i = 0; i < options.ring_depth; ++i) {
    cudaEvent_t ev;
    KVTIER_CUDA_RETURN_IF_ERROR(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    impl->done.push_back(ev);
  }
  return std::unique_ptr<GpuCopier>(new GpuCopier(std::move(impl)));
}

Status GpuCopier::Copy(const PagedTransfer& t, GpuStream gpu_stream) {
  KVTIER_RETURN_IF_ERROR(ValidateTransfer(t));
  auto stream = static_cast<cudaStream_t>(gpu_stream);
  const CopyGeometry geo = MakeCopyGeometry(*t.pool);
  const uint32_t l0 = t.layer_begin;
  const uint32_t l1 = t.resolved_layer_end();
  if (t.checksum_sums != nullptr && !t.accumulate_checksums && !t.blocks.empty()) {
    KVTIER_RETURN_IF_ERROR(impl_->ZeroSums(t.checksum_sums, t.blocks.size(), stream));
  }
  const size_t chunk = impl_->ChunkBlocks(geo, l0, l1);
  const bool order = impl_->RunMajor(geo, t.direction);
  for (size_t first = 0; first < t.blocks.size(); first += chunk) {
    const size_t n = std::min(chunk, t.blocks.size() - first);
    KVTIER_ASSIGN_OR_RETURN(uint32_t slot, impl_->Upload(t.blocks.subspan(first, n), order, stream));
    Status s = impl_->Launch(t, geo, slot, first, n, l0, l1, order, stream);
    KVTIER_RETURN_IF_ERROR(impl_->Release(slot, stream));
    KVTIER_RETURN_IF_ERROR(s);
  }
  return Impl::ReadBackSums(t, stream);
}

Status GpuCopier::CopyLayerwise(const PagedTransfer& t, uint32_t layers_per_group,
                                LayerEvents* events, GpuStream gpu_stream) {
  KVTIER_RETURN_IF_ERROR(ValidateTransfer(t));
  if (events == nullptr) return Status::InvalidArgument("CopyLayerwise: no LayerEvents");
  if (layers_per_group == 0) return Status::InvalidArgument("CopyLayerwise: layers_per_group = 0");
  auto stream = static_cast<cudaStream_t>(gpu_stream);
  const CopyGeometry geo = MakeCopyGeometry(*t.pool);
  const uint32_t l0 = t.layer_begin;
  const uint32_t l1 = t.resolved_layer_end();
  const uint32_t groups = (l1 - l0 + layers_per_group - 1) / layers_per_group;
  if (groups > events->max_groups()) {
    return Status::InvalidArgument("CopyLayerwise: " + std::to_string(groups) +
                                   " layer groups but LayerEvents holds " +
                                   std::to_string(events->max_groups()));
  }
  if (t.blocks.size() > impl_->ChunkBlocks(geo, l0, std::min(l1, l0 + layers_per_group))) {
    return Status::InvalidArgument("CopyLayerwise: " + std::to_string(t.blocks.size()) +
                                   " blocks exceed max_blocks = " +
                                   std::to_string(impl_->options.max_blocks));
  }
  events->num_groups_ = 0;
  if (t.checksum_sums != nullptr && !t.accumulate_checksums && !t.blocks.empty()) {
    KVTIER_RETURN_IF_ERROR(impl_->ZeroSums(t.checksum_sums, t.blocks.size(), stream));
  }
  uint32_t slot = 0;
  const bool order = impl_->RunMajor(geo, t.direction);
  if (!t.blocks.empty()) {
    KVTIER_ASSIGN_OR_RETURN(slot, impl_->Upload(t.blocks, order, stream));
  }
  auto launch_groups = [&]() -> Status {
    for (uint32_t g = 0; g < groups; ++g) {
      const uint32_t a = l0 + g * layers_per_group;
      const uint32_t b = std::min(l1, a + layers_per_group);
      if (!t.blocks.empty()) {
        KVTIER_RETURN_IF_ERROR(impl_->Launch(t, geo, slot, 0, t.blocks.size(), a, b, order, stream));
      }
      KVTIER_CUDA_RETURN_IF_ERROR(
          cudaEventRecord(static_cast<cudaEvent_t>(events->events_[g]), stream));
    }
    return Status::OK();
  };
  Status launched = launch_groups();
  if (!t.blocks.empty()) KVTIER_RETURN_IF_ERROR(impl_->Release(slot, stream));
  KVTIER_RETURN_IF_ERROR(launched);
  KVTIER_RETURN_IF_ERROR(Impl::ReadBackSums(t, stream));
  events->num_groups_ = groups;
  events->layer_begin_ = l0;
  events->layer_end_ = l1;
  events->layers_per_group_ = layers_per_group;
  return Status::OK();
}

uint64_t GpuCopier::staging_buffer_bytes() const {
  return impl_->options.staging_bytes / impl_->options.staging_buffers / kVecBytes * kVecBytes;
}

// One chunk: blocks [first, first + n) of the transfer, layers [a, b), in
// staging buffer `buffer`.
namespace {
struct StagedChunk {
  size_t first = 0;
  size_t n = 0;
  uint32_t a = 0;
  uint32_t b = 0;
  uint32_t buffer = 0;
  size_t list_offset = 0;  // its entries in the uploaded list
};
}  // namespace

Status GpuCopier::CopyStaged(const PagedTransfer& t, uint32_t layers_per_group,
                             LayerEvents* events, GpuStream gpu_stream, void* store_done_event) {
  KVTIER_RETURN_IF_ERROR(ValidateTransfer(t));
  const bool load = t.direction == TransferDirection::kLoad;
  if (layers_per_group > 0 && !load)
    return Status::InvalidArgument("CopyStaged: layer-wise stores are not supported");
  if (layers_per_group > 0 && events == nullptr)
    return Status::InvalidArgument("CopyStaged: a layer-wise copy needs LayerEvents");
  auto stream = static_cast<cudaStream_t>(gpu_stream);
  const CopyGeometry geo = MakeCopyGeometry(*t.pool);
  const uint32_t l0 = t.layer_begin;
  const uint32_t l1 = t.resolved_layer_end();
  const uint32_t group = layers_per_group > 0 ? layers_per_group : l1 - l0;
  const uint32_t groups = (l1 - l0 + group - 1) / group;
  if (layers_per_group > 0 && groups > events->max_groups()) {
    return Status::InvalidArgument("CopyStaged: " + std::to_string(groups) +
                                   " layer groups but LayerEvents holds " +
                                   std::to_string(events->max_groups()));
  }
  Impl& m = *impl_;
  KVTIER_RETURN_IF_ERROR(m.EnsureStaged());
  Impl::Staged& st = m.staged;
  const uint64_t buf_bytes = st.buffer_bytes;
  // What must fit one buffer: a caller group of one block (layer-wise), or
  // one layer of one block (a whole copy cuts blocks larger than a buffer
  // into layer ranges).
  const uint32_t unit = layers_per_group > 0 ? group : 1;
  if (uint64_t{unit} * geo.layer_bytes > buf_bytes) {
    return Status::InvalidArgument("CopyStaged: " + std::to_string(unit) +
                                   " layer(s) of a block take " +
                                   std::to_string(uint64_t{unit} * geo.layer_bytes) +
                                   " bytes, more than a staging buffer (" +
                                   std::to_string(buf_bytes) + ")");
  }
  // DMA in pieces of `dma_layers` layers of a block: a whole copy takes whole
  // blocks where they fit a buffer; a layer-wise one whole caller groups,
  // enough of them to reach min_dma_piece_bytes, within one buffer.
  uint32_t dma_layers = group;
  if (layers_per_group == 0) {
    dma_layers = static_cast<uint32_t>(
        std::min<uint64_t>(l1 - l0, buf_bytes / geo.layer_bytes));
  } else {
    while (dma_layers < l1 - l0 &&
           uint64_t{dma_layers} * geo.layer_bytes < m.options.min_dma_piece_bytes &&
           uint64_t{dma_layers + group} * geo.layer_bytes <= buf_bytes)
      dma_layers += group;
  }

  // Blocks go in the order of their slots' addresses: slots the allocator
  // placed side by side (in whatever order the transfer names them) then sit
  // side by side in the buffer too, and their pieces merge into one DMA.
  const size_t n_blocks = t.blocks.size();
  st.order.resize(n_blocks);
  for (size_t i = 0; i < n_blocks; ++i) st.order[i] = static_cast<uint32_t>(i);
  std::sort(st.order.begin(), st.order.end(), [&](uint32_t x, uint32_t y) {
    return reinterpret_cast<uintptr_t>(t.blocks[x].slot) <
           reinterpret_cast<uintptr_t>(t.blocks[y].slot);
  });
  // Plan the chunks and the block list the kernels read.
  std::vector<StagedChunk> chunks;
  st.refs.clear();
  for (uint32_t a = l0; a < l1; a += dma_layers) {
    const uint32_t b = std::min(l1, a + dma_layers);
    const uint64_t piece = uint64_t{b - a} * geo.layer_bytes;
    // At most a buffer, and at least three chunks where the blocks allow:
    // a small transfer still overlaps its DMA with its scatter.
    const size_t per_chunk = static_cast<size_t>(std::max<uint64_t>(
        1, std::min<uint64_t>(buf_bytes / piece, (n_blocks + 2) / 3)));
    for (size_t first = 0; first < t.blocks.size(); first += per_chunk) {
      StagedChunk c;
      c.first = first;
      c.n = std::min(per_chunk, t.blocks.size() - first);
      c.a = a;
      c.b = b;
      c.buffer = static_cast<uint32_t>((st.next_buffer + chunks.size()) % st.count);
      c.list_offset = st.refs.size();
      char* base = st.buffers + uint64_t{c.buffer} * buf_bytes;
      for (size_t k = 0; k < c.n; ++k) {
        // The kernel reads (writes) slot + offset for canonical offsets of
        // layers [a, b): point "slot" so that layer a lands at the piece.
        char* piece_at = base + k * piece;
        BlockRef r;
        r.slot = piece_at - uint64_t{a} * geo.layer_bytes;
        r.page = t.blocks[st.order[first + k]].page;
        r.sum_index = st.order[first + k];
        st.refs.push_back(r);
      }
      chunks.push_back(c);
    }
  }
  st.next_buffer += chunks.size();
  if (layers_per_group > 0) events->num_groups_ = 0;
  if (t.checksum_sums != nullptr && !t.accumulate_checksums && !t.blocks.empty()) {
    KVTIER_RETURN_IF_ERROR(m.ZeroSums(t.checksum_sums, t.blocks.size(), stream));
  }
  uint32_t list = 0;
  if (!st.refs.empty()) {
    KVTIER_ASSIGN_OR_RETURN(list, m.UploadStagedList(stream));
  }
  const int grid_cap = static_cast<int>(m.options.staged_ctas);
  auto run = [&]() -> Status {
    uint32_t next_event = 0;  // caller groups whose events are recorded
    for (size_t ci = 0; ci < chunks.size(); ++ci) {
      const StagedChunk& c = chunks[ci];
      const uint64_t piece = uint64_t{c.b - c.a} * geo.layer_bytes;
      char* base = st.buffers + uint64_t{c.buffer} * buf_bytes;
      const cudaEvent_t filled = st.filled[c.buffer];
      const cudaEvent_t drained = st.drained[c.buffer];
      st.dsts.clear();
      st.srcs.clear();
      st.sizes.clear();
      const BlockRef* list_at = st.list_device[list] + c.list_offset;
      if (load) {
        // DMA slot pieces into the buffer once its last contents are drained,
        // then scatter it on the caller's stream.
        KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(st.dma, drained, 0));
        for (size_t k = 0; k < c.n; ++k) {
          const char* src = static_cast<const char*>(t.blocks[st.order[c.first + k]].slot) +
                            uint64_t{c.a} * geo.layer_bytes;
          m.AddPiece(base + k * piece, src, piece);
        }
        KVTIER_RETURN_IF_ERROR(m.QueueDma());
        KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(filled, st.dma));
        KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, filled, 0));
        KVTIER_RETURN_IF_ERROR(m.LaunchList(t, geo, list_at, t.checksum_sums, c.n, c.a, c.b,
                                            /*run_major=*/false, grid_cap, stream));
        KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(drained, stream));
        // Caller groups complete once the last chunk of their layers is in.
        const bool last_of_layers = ci + 1 == chunks.size() || chunks[ci + 1].a != c.a;
        if (layers_per_group > 0 && last_of_layers) {
          for (; next_event < groups && l0 + (next_event + 1) * group <= c.b; ++next_event)
            KVTIER_CUDA_RETURN_IF_ERROR(
                cudaEventRecord(static_cast<cudaEvent_t>(events->events_[next_event]), stream));
          if (c.b == l1) {
            for (; next_event < groups; ++next_event)
              KVTIER_CUDA_RETURN_IF_ERROR(
                  cudaEventRecord(static_cast<cudaEvent_t>(events->events_[next_event]), stream));
          }
        }
      } else {
        // Gather pages into the buffer once its last DMA has read it, then
        // DMA it into the slots.
        KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, drained, 0));
        KVTIER_RETURN_IF_ERROR(m.LaunchList(t, geo, list_at, t.checksum_sums, c.n, c.a, c.b,
                                            /*run_major=*/false, grid_cap, stream));
        KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(filled, stream));
        KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(st.dma, filled, 0));
        for (size_t k = 0; k < c.n; ++k) {
          char* dst = static_cast<char*>(t.blocks[st.order[c.first + k]].slot) +
                      uint64_t{c.a} * geo.layer_bytes;
          m.AddPiece(dst, base + k * piece, piece);
        }
        KVTIER_RETURN_IF_ERROR(m.QueueDma());
        KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(drained, st.dma));
      }
    }
    if (!load && !chunks.empty()) {
      // The sums are final once the last gather is done, which the DMA
      // stream has waited for: read them back there, behind the last DMA.
      KVTIER_RETURN_IF_ERROR(Impl::ReadBackSums(t, st.dma));
    }
    if (!load && store_done_event != nullptr) {
      // The caller learns of the slots through its event; its stream goes on.
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(static_cast<cudaEvent_t>(store_done_event),
                                                  chunks.empty() ? stream : st.dma));
    } else if (!load && !chunks.empty()) {
      // The caller's stream reaches its end only once the slots are written.
      KVTIER_CUDA_RETURN_IF_ERROR(cudaEventRecord(st.tail, st.dma));
      KVTIER_CUDA_RETURN_IF_ERROR(cudaStreamWaitEvent(stream, st.tail, 0));
    }
    if (load || chunks.empty()) KVTIER_RETURN_IF_ERROR(Impl::ReadBackSums(t, stream));
    if (layers_per_group > 0) {
      for (; next_event < groups; ++next_event)  // an empty transfer
        KVTIER_CUDA_RETURN_IF_ERROR(
            cudaEventRecord(static_cast<cudaEvent_t>(events->events_[next_event]), stream));
    }
    return Status::OK();
  };
  Status ran = run();
  // A failure part-way may leave copies queued on the DMA stream that nothing
  // the caller waits for covers: let them finish before the caller frees the
  // slots (or reuses the staging).
  if (!ran.ok()) (void)cudaStreamSynchronize(st.dma);
  if (!st.refs.empty()) {
    Status rec = CudaStatus(cudaEventRecord(st.list_done[list], stream), "cudaEventRecord");
    if (ran.ok()) ran = rec;
  }
  KVTIER_RETURN_IF_ERROR(ran);
  if (layers_per_group > 0) {
    events->num_groups_ = groups;
    events->layer_begin_ = l0;
    events->layer_end_ = l1;
    events->layers_per_group_ = layers_per_group;
  }
  return Status::OK();
}

}  // namespace kvtier
