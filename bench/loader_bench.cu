// kvtier-loader-bench: bandwidth of the paged KV loader next to the copy
// roofline measured in the same run.
//
// Workload: Llama-3-8B KV (32 layers, 8 KV heads, head_dim 128, bf16, 16-token
// pages) over 32K tokens = 2048 canonical blocks of 2 MiB (4 GiB). The engine
// pool is vLLM's flash-attention layout (and FlashInfer HND for comparison),
// the batch's pages a random permutation. Each row times one GpuCopier::Copy
// of the whole batch (block-list upload and checksum zeroing included) with
// CUDA events: warm-up, then the median of several repetitions. The roofline
// is one contiguous cudaMemcpyAsync of the same bytes in the same direction.
// GB/s are 10^9 bytes copied per second (each byte counted once).
//
// Usage: kvtier-loader-bench [csv_path]
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "loader/gpu_copy.h"
#include "loader/kv_pool.h"
#include "loader/paged_transfer.h"
#include "tiers/checksum.h"
#include "tiers/slab_allocator.h"

namespace {

using namespace kvtier;

#define CUDA_CHECK(expr)                                                            \
  do {                                                                              \
    cudaError_t _e = (expr);                                                        \
    if (_e != cudaSuccess) {                                                        \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr,             \
                   cudaGetErrorString(_e));                                         \
      std::exit(1);                                                                 \
    }                                                                               \
  } while (0)

#define OK_CHECK(expr)                                                                  \
  do {                                                                                  \
    const ::kvtier::Status _s = (expr);                                                 \
    if (!_s.ok()) {                                                                     \
      std::fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #expr, _s.ToString().c_str()); \
      std::exit(1);                                                                     \
    }                                                                                   \
  } while (0)

template <typename T>
T Unwrap(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "%s: %s\n", what, r.status().ToString().c_str());
    std::exit(1);
  }
  return std::move(r).value();
}

__global__ void FillRandomKernel(uint4* p, size_t n, uint64_t seed) {
  for (size_t i = blockIdx.x * size_t{blockDim.x} + threadIdx.x; i < n;
       i += size_t{gridDim.x} * blockDim.x) {
    uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
    x ^= x >> 31;
    x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27;
    uint64_t y = x * 0x94D049BB133111EBull;
    y ^= y >> 31;
    p[i] = make_uint4(static_cast<uint32_t>(x), static_cast<uint32_t>(x >> 32),
                      static_cast<uint32_t>(y), static_cast<uint32_t>(y >> 32));
  }
}

void FillRandom(void* p, size_t bytes, uint64_t seed) {
  FillRandomKernel<<<1024, 256>>>(static_cast<uint4*>(p), bytes / 16, seed);
  CUDA_CHECK(cudaGetLastError());
  CUDA_CHECK(cudaDeviceSynchronize());
}

// Median milliseconds of `reps` runs of op() on `stream`, after `warmup` runs.
float MedianMs(cudaStream_t stream, int warmup, int reps, const std::function<void()>& op) {
  cudaEvent_t a, b;
  CUDA_CHECK(cudaEventCreate(&a));
  CUDA_CHECK(cudaEventCreate(&b));
  for (int i = 0; i < warmup; ++i) op();
  CUDA_CHECK(cudaStreamSynchronize(stream));
  std::vector<float> ms;
  for (int i = 0; i < reps; ++i) {
    CUDA_CHECK(cudaEventRecord(a, stream));
    op();
    CUDA_CHECK(cudaEventRecord(b, stream));
    CUDA_CHECK(cudaEventSynchronize(b));
    float t = 0;
    CUDA_CHECK(cudaEventElapsedTime(&t, a, b));
    ms.push_back(t);
  }
  CUDA_CHECK(cudaEventDestroy(a));
  CUDA_CHECK(cudaEventDestroy(b));
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

struct Row {
  std::string op;
  double bytes;
  float ms;
  std::string roof_name;
  float roof_ms;
};

double Gbps(double bytes, float ms) { return bytes / (ms * 1e6); }

}  // namespace

int main(int argc, char** argv) {
  const char* csv_path = argc > 1 ? argv[1] : nullptr;
  int device = 0;
  CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop;
  CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  int runtime = 0, driver = 0;
  CUDA_CHECK(cudaRuntimeGetVersion(&runtime));
  CUDA_CHECK(cudaDriverGetVersion(&driver));
  std::printf("device: %s, %d SMs, L2 %d MB, runtime %d, driver %d\n", prop.name,
              prop.multiProcessorCount, prop.l2CacheSize >> 20, runtime, driver);

  KvPoolShape shape;
  shape.dtype = KvDtype::kBf16;
  shape.num_layers = 32;
  shape.kv_heads = 8;
  shape.head_dim = 128;
  shape.tokens_per_page = 16;
  const uint32_t kBlocks = 2048;  // 32K tokens
  shape.num_pages = kBlocks;
  const uint64_t block_bytes = shape.block_bytes();
  const uint64_t total = block_bytes * kBlocks;
  std::printf("workload: %u blocks x %llu bytes = %.3f GB (%s)\n", kBlocks,
              static_cast<unsigned long long>(block_bytes), total / 1e9,
              "Llama-3-8B, bf16, 16-token pages");

  // Pool: 32 per-layer tensors of one allocation.
  void* pool_mem = nullptr;
  CUDA_CHECK(cudaMalloc(&pool_mem, total));
  std::vector<void*> bases(shape.num_layers);
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    bases[l] = static_cast<char*>(pool_mem) + l * PerLayerTensorBytes(shape);
  }
  const KvPool vllm = Unwrap(MakeVllmFlashPool(shape, bases), "vllm pool");
  const KvPool hnd = Unwrap(MakeFlashInferHndPool(shape, bases), "hnd pool");
  // A page of the layer-first layout is one whole canonical block: the kernel
  // then copies 2 MiB contiguous pieces (separates kernel from gather costs).
  const KvPool layer_first = Unwrap(MakeLayerFirstPool(shape, pool_mem), "layer-first pool");

  void* dev_slots = nullptr;
  CUDA_CHECK(cudaMalloc(&dev_slots, total));
  void* pinned_host = nullptr;
  void* pinned_dev = nullptr;
  CUDA_CHECK(cudaHostAlloc(&pinned_host, total, cudaHostAllocMapped | cudaHostAllocPortable));
  CUDA_CHECK(cudaHostGetDevicePointer(&pinned_dev, pinned_host, 0));
  uint64_t* sums = nullptr;
  CUDA_CHECK(cudaMalloc(&sums, kBlocks * sizeof(uint64_t)));

  FillRandom(dev_slots, total, 1);
  FillRandom(pool_mem, total, 2);
  CUDA_CHECK(cudaMemcpy(pinned_host, dev_slots, total, cudaMemcpyDeviceToHost));

  std::vector<uint32_t> pages(kBlocks);
  std::iota(pages.begin(), pages.end(), 0u);
  std::shuffle(pages.begin(), pages.end(), std::mt19937(42));
  auto make_blocks = [&](void* base) {
    std::vector<BlockRef> v(kBlocks);
    for (uint32_t i = 0; i < kBlocks; ++i) {
      v[i] = {static_cast<char*>(base) + uint64_t{i} * block_bytes, pages[i]};
    }
    return v;
  };
  const std::vector<BlockRef> pinned_blocks = make_blocks(pinned_dev);
  // For the copy engines: host addresses, in slot order (neighbouring slots
  // merge into one DMA) and shuffled (every block its own DMA piece).
  const std::vector<BlockRef> host_blocks = make_blocks(pinned_host);
  std::vector<BlockRef> host_shuffled = host_blocks;
  {
    std::vector<uint32_t> perm(kBlocks);
    std::iota(perm.begin(), perm.end(), 0u);
    std::shuffle(perm.begin(), perm.end(), std::mt19937(7));
    for (uint32_t i = 0; i < kBlocks; ++i) host_shuffled[i].slot = host_blocks[perm[i]].slot;
  }
  const std::vector<BlockRef> device_blocks = make_blocks(dev_slots);
  // The same blocks at the offsets a tier's slab allocator gives them (its
  // default size classes: 2 MiB blocks in 2.22 MiB slots, 4 KiB-aligned),
  // as the daemon's HBM arena holds them.
  void* slab_mem = nullptr;
  std::vector<BlockRef> slab_blocks(kBlocks);
  {
    SlabOptions so;
    so.capacity = (total / so.region_bytes + 8) * 2 * so.region_bytes;
    auto slab = Unwrap(SlabAllocator::Create(so), "slab allocator");
    CUDA_CHECK(cudaMalloc(&slab_mem, so.capacity));
    for (uint32_t i = 0; i < kBlocks; ++i) {
      Slot sl = Unwrap(slab.Allocate(block_bytes), "slab slot");
      slab_blocks[i] = {static_cast<char*>(slab_mem) + sl.offset, pages[i]};
      CUDA_CHECK(cudaMemcpy(slab_blocks[i].slot, device_blocks[i].slot, block_bytes,
                            cudaMemcpyDeviceToDevice));
    }
    std::printf("slab slots: class of %llu bytes for %llu-byte blocks\n",
                static_cast<unsigned long long>(slab.ClassBytes(slab.ClassFor(block_bytes))),
                static_cast<unsigned long long>(block_bytes));
  }

  cudaStream_t stream;
  CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  auto copier = Unwrap(GpuCopier::Create({}), "GpuCopier");
  LayerEvents events = Unwrap(LayerEvents::Create(shape.num_layers), "LayerEvents");

  constexpr int kWarm = 3;
  const int kRepsPcie = 9;
  const int kRepsHbm = 21;

  auto copy_op = [&](GpuCopier* c, const KvPool& pool, const std::vector<BlockRef>& blocks,
                     TransferDirection dir, bool csum) {
    const KvPool* pp = &pool;
    const std::vector<BlockRef>* bp = &blocks;
    return [&stream, &sums, c, pp, bp, dir, csum]() {
      PagedTransfer t{pp, *bp, dir};
      t.checksum_sums = csum ? sums : nullptr;
      OK_CHECK(c->Copy(t, stream));
    };
  };
  auto memcpy_op = [&](void* dst, const void* src, cudaMemcpyKind kind) {
    return [=]() { CUDA_CHECK(cudaMemcpyAsync(dst, src, total, kind, stream)); };
  };

  // Rooflines.
  const float h2d = MedianMs(stream, kWarm, kRepsPcie,
                             memcpy_op(pool_mem, pinned_host, cudaMemcpyHostToDevice));
  const float d2h = MedianMs(stream, kWarm, kRepsPcie,
                             memcpy_op(pinned_host, pool_mem, cudaMemcpyDeviceToHost));
  const float d2d = MedianMs(stream, kWarm, kRepsHbm,
                             memcpy_op(pool_mem, dev_slots, cudaMemcpyDeviceToDevice));
  // d2h wrote pool bytes into the pinned slots: restore the slot contents.
  CUDA_CHECK(cudaMemcpy(pinned_host, dev_slots, total, cudaMemcpyDeviceToHost));

  std::vector<Row> rows;
  auto add = [&](const std::string& op, float ms, const char* roof, float roof_ms) {
    rows.push_back({op, static_cast<double>(total), ms, roof, roof_ms});
  };
  using D = TransferDirection;

  // Correctness of the timed path: GPU checksums of pinned and device slots
  // (same bytes) agree with each other and with the CPU on a sample.
  {
    std::vector<uint64_t> a(kBlocks), b(kBlocks);
    // `stream` is non-blocking: the legacy-stream cudaMemcpy below does not
    // wait for it, so synchronize first.
    copy_op(copier.get(), vllm, pinned_blocks, D::kLoad, true)();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(a.data(), sums, kBlocks * 8, cudaMemcpyDeviceToHost));
    copy_op(copier.get(), vllm, device_blocks, D::kLoad, true)();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(b.data(), sums, kBlocks * 8, cudaMemcpyDeviceToHost));
    int pinned_vs_device = 0, gpu_vs_cpu = 0, sampled = 0;
    for (uint32_t i = 0; i < kBlocks; ++i) pinned_vs_device += a[i] != b[i];
    for (uint32_t i = 0; i < kBlocks; i += 97, ++sampled) {
      const auto* blk = static_cast<const char*>(pinned_host) + uint64_t{i} * block_bytes;
      gpu_vs_cpu += checksum::Finalize(a[i], block_bytes) != checksum::Sum64(blk, block_bytes);
    }
    std::printf("checksum check: %d/%u blocks differ pinned vs device, %d/%d sampled differ "
                "GPU vs CPU: %s\n",
                pinned_vs_device, kBlocks, gpu_vs_cpu, sampled,
                pinned_vs_device + gpu_vs_cpu == 0 ? "OK" : "MISMATCH");
  }

  add("load  pinned -> vllm pool, checksum", MedianMs(stream, kWarm, kRepsPcie,
      copy_op(copier.get(), vllm, pinned_blocks, D::kLoad, true)), "memcpy H2D", h2d);
  add("load  pinned -> vllm pool", MedianMs(stream, kWarm, kRepsPcie,
      copy_op(copier.get(), vllm, pinned_blocks, D::kLoad, false)), "memcpy H2D", h2d);
  add("load  pinned -> vllm, layer-wise 1/grp", MedianMs(stream, kWarm, kRepsPcie, [&]() {
        PagedTransfer t{&vllm, pinned_blocks, D::kLoad};
        t.checksum_sums = sums;
        OK_CHECK(copier->CopyLayerwise(t, 1, &events, stream));
      }), "memcpy H2D", h2d);
  add("load  pinned -> hnd pool, checksum", MedianMs(stream, kWarm, kRepsPcie,
      copy_op(copier.get(), hnd, pinned_blocks, D::kLoad, true)), "memcpy H2D", h2d);
  add("store vllm pool -> pinned, checksum", MedianMs(stream, kWarm, kRepsPcie,
      copy_op(copier.get(), vllm, pinned_blocks, D::kStore, true)), "memcpy D2H", d2h);
  add("store hnd pool -> pinned, checksum", MedianMs(stream, kWarm, kRepsPcie,
      copy_op(copier.get(), hnd, pinned_blocks, D::kStore, true)), "memcpy D2H", d2h);
  add("load  device -> vllm pool, checksum", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), vllm, device_blocks, D::kLoad, true)), "memcpy D2D", d2d);
  add("load  device -> vllm pool", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), vllm, device_blocks, D::kLoad, false)), "memcpy D2D", d2d);
  add("load  device -> vllm, layer-wise 1/grp", MedianMs(stream, kWarm, kRepsHbm, [&]() {
        PagedTransfer t{&vllm, device_blocks, D::kLoad};
        t.checksum_sums = sums;
        OK_CHECK(copier->CopyLayerwise(t, 1, &events, stream));
      }), "memcpy D2D", d2d);
  add("load  device -> hnd pool, checksum", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), hnd, device_blocks, D::kLoad, true)), "memcpy D2D", d2d);
  add("load  device -> layer-first, checksum", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), layer_first, device_blocks, D::kLoad, true)), "memcpy D2D", d2d);
  add("store vllm pool -> device, checksum", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), vllm, device_blocks, D::kStore, true)), "memcpy D2D", d2d);
  add("load  slab slots -> vllm pool, checksum", MedianMs(stream, kWarm, kRepsHbm,
      copy_op(copier.get(), vllm, slab_blocks, D::kLoad, true)), "memcpy D2D", d2d);

  // The copy engines' path (GpuCopier::CopyStaged): DMA into device staging,
  // then a scatter kernel (one CTA per tile by default, staged_ctas caps it).
  auto staged_op = [&](GpuCopier* c, const std::vector<BlockRef>& blocks, TransferDirection dir,
                       uint32_t layers_per_group) {
    const std::vector<BlockRef>* bp = &blocks;
    return [&stream, &sums, &events, &vllm, c, bp, dir, layers_per_group]() {
      PagedTransfer t{&vllm, *bp, dir};
      t.checksum_sums = sums;
      OK_CHECK(c->CopyStaged(t, layers_per_group, layers_per_group ? &events : nullptr, stream));
    };
  };
  {
    // Correctness: the staged load's checksums equal the kernel's.
    std::vector<uint64_t> a(kBlocks), b(kBlocks);
    copy_op(copier.get(), vllm, pinned_blocks, D::kLoad, true)();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(a.data(), sums, kBlocks * 8, cudaMemcpyDeviceToHost));
    staged_op(copier.get(), host_shuffled, D::kLoad, 0)();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(b.data(), sums, kBlocks * 8, cudaMemcpyDeviceToHost));
    // host_shuffled[i] holds another slot than block i: compare by slot.
    int differ = 0;
    const std::vector<uint64_t>& by_slot = a;
    for (uint32_t i = 0; i < kBlocks; ++i) {
      const uint64_t slot = (static_cast<char*>(host_shuffled[i].slot) -
                             static_cast<char*>(pinned_host)) / block_bytes;
      differ += b[i] != by_slot[slot];
    }
    std::printf("copy-engine path: %d/%u blocks' checksums differ from the kernel's: %s\n", differ,
                kBlocks, differ == 0 ? "OK" : "MISMATCH");
  }
  add("load  pinned -> vllm, copy engines, checksum", MedianMs(stream, kWarm, kRepsPcie,
      staged_op(copier.get(), host_blocks, D::kLoad, 0)), "memcpy H2D", h2d);
  add("load  pinned shuffled -> vllm, copy engines", MedianMs(stream, kWarm, kRepsPcie,
      staged_op(copier.get(), host_shuffled, D::kLoad, 0)), "memcpy H2D", h2d);
  add("load  pinned shuffled -> vllm, CE, layer-wise", MedianMs(stream, kWarm, kRepsPcie,
      staged_op(copier.get(), host_shuffled, D::kLoad, 1)), "memcpy H2D", h2d);
  add("store vllm -> pinned, copy engines, checksum", MedianMs(stream, kWarm, kRepsPcie,
      staged_op(copier.get(), host_blocks, D::kStore, 0)), "memcpy D2H", d2h);
  add("store vllm -> pinned shuffled, copy engines", MedianMs(stream, kWarm, kRepsPcie,
      staged_op(copier.get(), host_shuffled, D::kStore, 0)), "memcpy D2H", d2h);
  {
    // Stores as GpuSession::Store pipelines them, without the daemon's RPCs:
    // chunks of 16, 32, 64, then 128 blocks (32 MiB growing to 256 MiB), each
    // a CopyStaged with its own end event, `depth` in flight, the host
    // waiting for the oldest before queueing the next. The checksum sums come
    // back on the caller's stream after each chunk (as GpuSession read them
    // before) or through PagedTransfer::checksum_sums_host, behind the DMA.
    uint64_t* sums_host = nullptr;
    CUDA_CHECK(cudaHostAlloc(reinterpret_cast<void**>(&sums_host), kBlocks * sizeof(uint64_t),
                             cudaHostAllocDefault));
    constexpr uint32_t kMaxDepth = 4;
    cudaEvent_t gathered[kMaxDepth], written[kMaxDepth];
    for (uint32_t i = 0; i < kMaxDepth; ++i) {
      CUDA_CHECK(cudaEventCreateWithFlags(&gathered[i], cudaEventDisableTiming));
      CUDA_CHECK(cudaEventCreateWithFlags(&written[i], cudaEventDisableTiming));
    }
    auto chunked_store = [&](bool sums_in_copier, uint32_t depth) {
      return [&, sums_in_copier, depth]() {
        size_t queued = 0, done = 0, next = 16;
        auto wait_oldest = [&] {
          CUDA_CHECK(cudaEventSynchronize(gathered[done % depth]));
          CUDA_CHECK(cudaEventSynchronize(written[done % depth]));
          ++done;
        };
        for (size_t first = 0; first < kBlocks;) {
          const size_t n = std::min<size_t>(std::min<size_t>(next, 128), kBlocks - first);
          next *= 2;
          const uint32_t k = queued % depth;
          PagedTransfer t{&vllm, std::span(host_blocks).subspan(first, n), D::kStore};
          t.checksum_sums = sums + first;
          if (sums_in_copier) t.checksum_sums_host = sums_host + first;
          OK_CHECK(copier->CopyStaged(t, 0, nullptr, stream, written[k]));
          if (!sums_in_copier)
            CUDA_CHECK(cudaMemcpyAsync(sums_host + first, sums + first, n * sizeof(uint64_t),
                                       cudaMemcpyDeviceToHost, stream));
          CUDA_CHECK(cudaEventRecord(gathered[k], stream));
          ++queued;
          first += n;
          if (queued - done == depth) wait_oldest();
        }
        while (done < queued) wait_oldest();
      };
    };
    add("store -> pinned, CE, Store's chunks, sums on stream", MedianMs(stream, kWarm, kRepsPcie,
        chunked_store(false, 2)), "memcpy D2H", d2h);
    add("store -> pinned, CE, Store's chunks, sums behind DMA", MedianMs(stream, kWarm, kRepsPcie,
        chunked_store(true, 2)), "memcpy D2H", d2h);
    add("store -> pinned, CE, Store's chunks, 3 in flight", MedianMs(stream, kWarm, kRepsPcie,
        chunked_store(true, 3)), "memcpy D2H", d2h);
    // The sums the chunks read back are the whole store's.
    std::vector<uint64_t> whole(kBlocks);
    staged_op(copier.get(), host_blocks, D::kStore, 0)();
    CUDA_CHECK(cudaStreamSynchronize(stream));
    CUDA_CHECK(cudaMemcpy(whole.data(), sums, kBlocks * 8, cudaMemcpyDeviceToHost));
    int differ = 0;
    for (uint32_t i = 0; i < kBlocks; ++i) differ += whole[i] != sums_host[i];
    std::printf("chunked stores: %d/%u blocks' read-back sums differ from one store's: %s\n",
                differ, kBlocks, differ == 0 ? "OK" : "MISMATCH");
    for (uint32_t i = 0; i < kMaxDepth; ++i) {
      CUDA_CHECK(cudaEventDestroy(gathered[i]));
      CUDA_CHECK(cudaEventDestroy(written[i]));
    }
    CUDA_CHECK(cudaFreeHost(sums_host));
  }
  struct StagedVariant {
    const char* name;
    uint64_t bytes;
    uint32_t buffers, ctas, min_piece;
  };
  for (const StagedVariant& v : {StagedVariant{"staging 4 x 4 MiB", 16ull << 20, 4, 0, 256u << 10},
                                 StagedVariant{"staging 2 x 32 MiB", 64ull << 20, 2, 0, 256u << 10},
                                 StagedVariant{"staging 4 x 64 MiB", 256ull << 20, 4, 0, 256u << 10},
                                 StagedVariant{"scatter 8 CTAs", 64ull << 20, 4, 8, 256u << 10},
                                 StagedVariant{"scatter 32 CTAs", 64ull << 20, 4, 32, 256u << 10},
                                 StagedVariant{"layer pieces 64 KiB", 64ull << 20, 4, 0, 1},
                                 StagedVariant{"layer pieces 1 MiB", 64ull << 20, 4, 0, 1u << 20}}) {
    GpuCopier::Options o;
    o.staging_bytes = v.bytes;
    o.staging_buffers = v.buffers;
    o.staged_ctas = v.ctas;
    o.min_dma_piece_bytes = v.min_piece;
    auto c = Unwrap(GpuCopier::Create(o), "GpuCopier staged variant");
    add(std::string("  [CE ") + v.name + "] shuffled->vllm", MedianMs(stream, kWarm, kRepsPcie,
        staged_op(c.get(), host_shuffled, D::kLoad, 0)), "memcpy H2D", h2d);
    add(std::string("  [CE ") + v.name + "] layer-wise", MedianMs(stream, kWarm, kRepsPcie,
        staged_op(c.get(), host_shuffled, D::kLoad, 1)), "memcpy H2D", h2d);
  }

  // Small transfers, where the kAuto rule chooses: the first n blocks by
  // each path (shuffled slots), checksums on.
  for (uint32_t n : {1u, 2u, 4u, 16u, 64u}) {
    std::vector<BlockRef> few(host_shuffled.begin(), host_shuffled.begin() + n);
    std::vector<BlockRef> few_dev(few);
    for (auto& b : few_dev)
      b.slot = static_cast<char*>(pinned_dev) + (static_cast<char*>(b.slot) - static_cast<char*>(pinned_host));
    const uint64_t bytes = uint64_t{n} * block_bytes;
    const float base = MedianMs(stream, kWarm, kRepsPcie, [&]() {
      CUDA_CHECK(cudaMemcpyAsync(pool_mem, pinned_host, bytes, cudaMemcpyHostToDevice, stream));
    });
    const float sm = MedianMs(stream, kWarm, kRepsPcie, [&]() {
      PagedTransfer t{&vllm, few_dev, D::kLoad};
      t.checksum_sums = sums;
      OK_CHECK(copier->Copy(t, stream));
    });
    const float ce = MedianMs(stream, kWarm, kRepsPcie, [&]() {
      PagedTransfer t{&vllm, few, D::kLoad};
      t.checksum_sums = sums;
      OK_CHECK(copier->CopyStaged(t, 0, nullptr, stream));
    });
    rows.push_back({"  [small] " + std::to_string(n) + " blocks, SM gather", double(bytes), sm,
                    "memcpy H2D", base});
    rows.push_back({"  [small] " + std::to_string(n) + " blocks, copy engines", double(bytes), ce,
                    "memcpy H2D", base});
  }

  // Kernel tuning variants (GpuCopier::Options), for the record.
  struct Variant {
    const char* name;
    int loads;
    int waves;
    bool write_order;
  };
  for (const Variant& v : {Variant{"caller's order", 4, 0, false},
                           Variant{"2 loads/thread", 2, 0, true},
                           Variant{"8 loads/thread", 8, 0, true},
                           Variant{"4 loads, persistent 1 wave", 4, 1, true}}) {
    GpuCopier::Options o;
    o.vector_loads_per_thread = v.loads;
    o.max_resident_waves = v.waves;
    o.write_order = v.write_order;
    auto c = Unwrap(GpuCopier::Create(o), "GpuCopier variant");
    add(std::string("  [") + v.name + "] pinned->vllm", MedianMs(stream, kWarm, kRepsPcie,
        copy_op(c.get(), vllm, pinned_blocks, D::kLoad, true)), "memcpy H2D", h2d);
    add(std::string("  [") + v.name + "] device->vllm", MedianMs(stream, kWarm, kRepsHbm,
        copy_op(c.get(), vllm, device_blocks, D::kLoad, true)), "memcpy D2D", d2d);
    if (!v.write_order) {
      add(std::string("  [") + v.name + "] device->vllm, no checksum", MedianMs(stream, kWarm,
          kRepsHbm, copy_op(c.get(), vllm, device_blocks, D::kLoad, false)), "memcpy D2D", d2d);
      add(std::string("  [") + v.name + "] slab slots->vllm", MedianMs(stream, kWarm, kRepsHbm,
          copy_op(c.get(), vllm, slab_blocks, D::kLoad, true)), "memcpy D2D", d2d);
    }
  }

  std::printf("\nroofline (one contiguous cudaMemcpyAsync of %.3f GB): H2D %.1f GB/s, "
              "D2H %.1f GB/s, D2D %.1f GB/s\n\n",
              total / 1e9, Gbps(total, h2d), Gbps(total, d2h), Gbps(total, d2d));
  std::printf("%-42s %9s %9s  %-11s %9s %6s\n", "operation", "ms", "GB/s", "roofline",
              "GB/s", "ratio");
  FILE* csv = csv_path ? std::fopen(csv_path, "w") : nullptr;
  if (csv) std::fprintf(csv, "device,operation,bytes,ms,gbps,roofline,roofline_gbps,ratio\n");
  for (const Row& r : rows) {
    const double g = Gbps(r.bytes, r.ms), rg = Gbps(r.bytes, r.roof_ms);
    std::printf("%-42s %9.3f %9.1f  %-11s %9.1f %6.3f\n", r.op.c_str(), r.ms, g,
                r.roof_name.c_str(), rg, g / rg);
    if (csv) {
      std::fprintf(csv, "\"%s\",\"%s\",%.0f,%.4f,%.2f,%s,%.2f,%.4f\n", prop.name, r.op.c_str(),
                   r.bytes, r.ms, g, r.roof_name.c_str(), rg, g / rg);
    }
  }
  if (csv) std::fclose(csv);

  CUDA_CHECK(cudaStreamDestroy(stream));
  copier.reset();
  CUDA_CHECK(cudaFree(sums));
  CUDA_CHECK(cudaFreeHost(pinned_host));
  CUDA_CHECK(cudaFree(dev_slots));
  CUDA_CHECK(cudaFree(slab_mem));
  CUDA_CHECK(cudaFree(pool_mem));
  return 0;
}
