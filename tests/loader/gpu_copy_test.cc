// Tests loader/gpu_copy.{h,cu} and loader/gpu_runtime.{h,cu} on a real GPU:
// the kernels against CpuCopy for every layout, block size and dtype, with
// slots in mapped pinned host memory and in device memory; checksums equal to
// the CPU's; layer-wise events; corruption detection; batch splitting;
// registered host memory; kernel tuning variants. Every test skips when no
// GPU answers (CI, CPU builds), and compiles without CUDA headers.
#include "loader/gpu_copy.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "loader/cpu_copy.h"
#include "loader/gpu_runtime.h"
#include "loader/kv_pool.h"
#include "loader/paged_transfer.h"
#include "tests/loader/loader_test_util.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using namespace loader_test;  // NOLINT: test helpers

#define ASSERT_OK(expr)                              \
  do {                                               \
    const ::kvtier::Status _st = (expr);             \
    ASSERT_TRUE(_st.ok()) << #expr << ": " << _st.ToString(); \
  } while (0)

#define ASSIGN_OR_FAIL(lhs, expr)                                       \
  auto KVTIER_CONCAT(_r_, __LINE__) = (expr);                           \
  ASSERT_TRUE(KVTIER_CONCAT(_r_, __LINE__).ok())                        \
      << #expr << ": " << KVTIER_CONCAT(_r_, __LINE__).status().ToString(); \
  lhs = std::move(KVTIER_CONCAT(_r_, __LINE__)).value()

#define SKIP_WITHOUT_GPU() \
  if (!GpuAvailable()) GTEST_SKIP() << "no CUDA device"

// A pool (random contents) on the device with its host mirror, and a batch of
// slots in pinned host or device memory.
struct Fixture {
  CaseSpec spec;
  KvPoolShape shape;
  std::vector<uint32_t> pages = CasePages();
  std::vector<uint64_t> slot_offsets;
  uint64_t pool_bytes = 0, block_bytes = 0, slots_bytes = 0;

  HostBytes host_pool{0};
  DeviceBuffer dev_pool;
  KvPool host_desc, dev_desc;

  bool pinned = false;
  PinnedHostBuffer pinned_slots;
  DeviceBuffer device_slots;
  char* slots_dev = nullptr;  // what kernels dereference

  Status Init(const CaseSpec& c, bool use_pinned, uint64_t seed, uint32_t num_layers = 0) {
    spec = c;
    shape = CaseShape(c);
    if (num_layers != 0) shape.num_layers = num_layers;
    pinned = use_pinned;
    pool_bytes = PoolAllocBytes(c.layout, shape);
    block_bytes = shape.block_bytes();
    for (size_t i = 0; i < pages.size(); ++i) slot_offsets.push_back(i * (block_bytes + kSlotGap));
    slots_bytes = pages.size() * (block_bytes + kSlotGap);

    host_pool = HostBytes(pool_bytes);
    FillRandom(host_pool.data(), pool_bytes, seed);
    KVTIER_ASSIGN_OR_RETURN(dev_pool, DeviceBuffer::Allocate(pool_bytes));
    KVTIER_RETURN_IF_ERROR(GpuCopyBytes(dev_pool.data(), host_pool.data(), pool_bytes));
    KVTIER_ASSIGN_OR_RETURN(host_desc, BuildPool(c.layout, shape, host_pool.data()));
    KVTIER_ASSIGN_OR_RETURN(dev_desc,
                            BuildPool(c.layout, shape, static_cast<char*>(dev_pool.data())));
    if (pinned) {
      KVTIER_ASSIGN_OR_RETURN(pinned_slots, PinnedHostBuffer::Allocate(slots_bytes));
      slots_dev = static_cast<char*>(pinned_slots.device());
    } else {
      KVTIER_ASSIGN_OR_RETURN(device_slots, DeviceBuffer::Allocate(slots_bytes));
      slots_dev = static_cast<char*>(device_slots.data());
    }
    return PoisonSlots(kPoisonA);
  }

  Status PoisonSlots(uint8_t byte) {
    if (pinned) {
      std::memset(pinned_slots.host(), byte, slots_bytes);
      return Status::OK();
    }
    return GpuFillBytes(device_slots.data(), byte, slots_bytes);
  }

  std::vector<BlockRef> Blocks(char* base) const {
    std::vector<BlockRef> b;
    for (size_t i = 0; i < pages.size(); ++i) b.push_back({base + slot_offsets[i], pages[i]});
    return b;
  }

  // CPU reference store into poisoned host slots; returns their sums.
  std::vector<uint64_t> ReferenceStore(HostBytes* slots) const {
    std::memset(slots->data(), kPoisonA, slots_bytes);
    auto blocks = Blocks(slots->data());
    std::vector<uint64_t> sums(blocks.size());
    PagedTransfer t{&host_desc, blocks, TransferDirection::kStore};
    t.checksum_sums = sums.data();
    EXPECT_TRUE(CpuCopy(t).ok());
    return sums;
  }
};

struct GpuCase {
  CaseSpec c;
  bool pinned;
};

void PrintTo(const GpuCase& g, std::ostream* os) {
  *os << CaseName(g.c) << (g.pinned ? " pinned" : " device");
}

std::vector<GpuCase> AllGpuCases() {
  std::vector<GpuCase> v;
  for (const CaseSpec& c : AllCases())
    for (bool pinned : {true, false}) v.push_back({c, pinned});
  return v;
}

std::vector<uint64_t> ReadSums(const DeviceBuffer& sums, size_t n) {
  std::vector<uint64_t> v(n);
  EXPECT_TRUE(GpuCopyBytes(v.data(), sums.data(), n * 8).ok());
  return v;
}

class GpuCopyMatrixTest : public ::testing::TestWithParam<GpuCase> {};

TEST_P(GpuCopyMatrixTest, StoreAndLoadMatchCpu) {
  SKIP_WITHOUT_GPU();
  const GpuCase gc = GetParam();
  Fixture f;
  ASSERT_OK(f.Init(gc.c, gc.pinned, 21));
  ASSIGN_OR_FAIL(auto copier, GpuCopier::Create({}));
  const size_t n = f.pages.size();
  ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));

  // Store: device pool -> slots.
  auto blocks = f.Blocks(f.slots_dev);
  PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
  store.checksum_sums = static_cast<uint64_t*>(sums.data());
  ASSERT_OK(copier->Copy(store, nullptr));
  ASSERT_OK(GpuSynchronize(nullptr));

  HostBytes ref_slots(f.slots_bytes);
  const std::vector<uint64_t> ref_sums = f.ReferenceStore(&ref_slots);
  HostBytes got_slots(f.slots_bytes);
  ASSERT_OK(GpuCopyBytes(got_slots.data(), f.slots_dev, f.slots_bytes));
  ASSERT_EQ(FirstDiff(got_slots.data(), ref_slots.data(), f.slots_bytes), -1);
  const std::vector<uint64_t> store_sums = ReadSums(sums, n);
  EXPECT_EQ(store_sums, ref_sums);
  for (size_t i = 0; i < n; ++i) {
    EXPECT_EQ(checksum::Finalize(store_sums[i], f.block_bytes),
              checksum::Sum64(ref_slots.data() + f.slot_offsets[i], f.block_bytes));
  }

  // Load: slots -> poisoned device pool.
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
  PagedTransfer load{&f.dev_desc, blocks, TransferDirection::kLoad};
  load.checksum_sums = static_cast<uint64_t*>(sums.data());
  // The copy also reads its sums back into pinned host memory.
  ASSIGN_OR_FAIL(PinnedHostBuffer host_sums, PinnedHostBuffer::Allocate(n * 8));
  std::memset(host_sums.host(), 0x5a, n * 8);
  load.checksum_sums_host = static_cast<uint64_t*>(host_sums.host());
  ASSERT_OK(copier->Copy(load, nullptr));
  ASSERT_OK(GpuSynchronize(nullptr));
  const auto* hs = static_cast<const uint64_t*>(host_sums.host());
  EXPECT_EQ(std::vector<uint64_t>(hs, hs + n), ref_sums);

  HostBytes ref_pool(f.pool_bytes);
  std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
  ASSIGN_OR_FAIL(KvPool ref_desc, BuildPool(gc.c.layout, f.shape, ref_pool.data()));
  auto ref_blocks = f.Blocks(ref_slots.data());
  PagedTransfer ref_load{&ref_desc, ref_blocks, TransferDirection::kLoad};
  ASSERT_OK(CpuCopy(ref_load));
  HostBytes got_pool(f.pool_bytes);
  ASSERT_OK(GpuCopyBytes(got_pool.data(), f.dev_pool.data(), f.pool_bytes));
  ASSERT_EQ(FirstDiff(got_pool.data(), ref_pool.data(), f.pool_bytes), -1);
  EXPECT_EQ(ReadSums(sums, n), ref_sums);
}

INSTANTIATE_TEST_SUITE_P(AllLayouts, GpuCopyMatrixTest, ::testing::ValuesIn(AllGpuCases()),
                         [](const auto& info) {
                           return CaseName(info.param.c) +
                                  (info.param.pinned ? "_pinned" : "_device");
                         });

// Holds a stream until `open` is set, or gives up after 30 s (then
// `timed_out` is set and the test fails instead of hanging).
struct Gate {
  std::atomic<bool> open{false};
  std::atomic<bool> timed_out{false};
  ~Gate() { open = true; }
};

void GateWait(void* arg) {
  auto* gate = static_cast<Gate*>(arg);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (!gate->open.load()) {
    if (std::chrono::steady_clock::now() > deadline) {
      gate->timed_out = true;
      return;
    }
    std::this_thread::yield();
  }
}

TEST(GpuCopyTest, LayerwiseEventsFollowTheCopy) {
  SKIP_WITHOUT_GPU();
  CaseSpec c{Layout::kVllmFlash, KvDtype::kBf16, 64};
  Fixture f;
  // 8 layers in groups of 3: [0,3) [3,6) [6,8).
  ASSERT_OK(f.Init(c, /*pinned=*/true, 31, /*num_layers=*/8));
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
  char* slots_host = static_cast<char*>(f.pinned_slots.host());
  FillRandom(slots_host, f.slots_bytes, 32);

  ASSIGN_OR_FAIL(auto copier, GpuCopier::Create({}));
  ASSIGN_OR_FAIL(LayerEvents events, LayerEvents::Create(8));
  ASSIGN_OR_FAIL(OwnedGpuStream stream, OwnedGpuStream::Create());
  ASSIGN_OR_FAIL(OwnedGpuStream consumer, OwnedGpuStream::Create());
  ASSIGN_OR_FAIL(PinnedHostBuffer sums, PinnedHostBuffer::Allocate(f.pages.size() * 8));
  // Pinned, so that the consumer's copy is asynchronous.
  ASSIGN_OR_FAIL(PinnedHostBuffer layer4, PinnedHostBuffer::Allocate(PerLayerTensorBytes(f.shape)));
  EXPECT_TRUE(events.LayerReady(0).status().IsInvalidArgument());  // nothing recorded yet
  auto blocks = f.Blocks(f.slots_dev);
  PagedTransfer load{&f.dev_desc, blocks, TransferDirection::kLoad};
  load.checksum_sums = static_cast<uint64_t*>(sums.device());  // mapped host sums

  // One ungated round first (kernels loaded, ring warm).
  ASSERT_OK(copier->CopyLayerwise(load, 3, &events, stream.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));

  // Hold the stream behind a host gate so that no group can finish early. The
  // gate opens on every exit, before any CUDA resource is released.
  Gate gate;
  ASSERT_OK(GpuLaunchHostFunc(stream.get(), GateWait, &gate));
  ASSERT_OK(copier->CopyLayerwise(load, 3, &events, stream.get()));
  EXPECT_EQ(events.num_groups(), 3u);
  EXPECT_EQ(events.layer_begin(), 0u);
  EXPECT_EQ(events.layer_end(), 8u);
  for (uint32_t l = 0; l < 8; ++l) {
    auto ready = events.LayerReady(l);
    ASSERT_TRUE(ready.ok()) << ready.status().ToString();
    EXPECT_FALSE(*ready) << "layer " << l << " ready before the gate opened";
  }
  EXPECT_TRUE(events.LayerReady(8).status().IsInvalidArgument());
  // A consumer stream waits for layer 4 on the device, then copies it out.
  ASSERT_OK(events.StreamWaitLayer(4, consumer.get()));
  ASSERT_OK(GpuCopyBytesAsync(layer4.host(), f.dev_desc.layer_base[4], layer4.size(),
                              consumer.get()));
  gate.open = true;
  ASSERT_OK(events.SynchronizeLayer(0));
  ASSERT_OK(GpuSynchronize(consumer.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  ASSERT_FALSE(gate.timed_out) << "the gate timed out: a call blocked while the stream was held";
  for (uint32_t l = 0; l < 8; ++l) EXPECT_TRUE(*events.LayerReady(l));

  // Reference: CPU load into a poisoned host pool.
  HostBytes ref_pool(f.pool_bytes);
  std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
  ASSIGN_OR_FAIL(KvPool ref_desc, BuildPool(c.layout, f.shape, ref_pool.data()));
  auto ref_blocks = f.Blocks(slots_host);
  std::vector<uint64_t> ref_sums(f.pages.size());
  PagedTransfer ref{&ref_desc, ref_blocks, TransferDirection::kLoad};
  ref.checksum_sums = ref_sums.data();
  ASSERT_OK(CpuCopy(ref));
  HostBytes got_pool(f.pool_bytes);
  ASSERT_OK(GpuCopyBytes(got_pool.data(), f.dev_pool.data(), f.pool_bytes));
  ASSERT_EQ(FirstDiff(got_pool.data(), ref_pool.data(), f.pool_bytes), -1);
  // What the consumer saw after waiting on layer 4's event is layer 4 complete.
  ASSERT_EQ(FirstDiff(layer4.host(), ref_pool.data() + LayerOffset(c.layout, f.shape, 4),
                      layer4.size()),
            -1);
  const auto* got_sums = static_cast<const uint64_t*>(sums.host());
  for (size_t i = 0; i < f.pages.size(); ++i) {
    EXPECT_EQ(got_sums[i], ref_sums[i]) << "block " << i;
    EXPECT_EQ(checksum::Finalize(got_sums[i], f.block_bytes),
              checksum::Sum64(slots_host + f.slot_offsets[i], f.block_bytes));
  }

  // Too few events for the groups: refused.
  ASSIGN_OR_FAIL(LayerEvents two, LayerEvents::Create(2));
  EXPECT_TRUE(copier->CopyLayerwise(load, 3, &two, stream.get()).IsInvalidArgument());
}

// The copy-engine path (CopyStaged) gives the CPU's bytes and sums for every
// layout: stores and loads, whole and layer-wise, slots in pinned host memory
// (host addresses, DMA over PCIe) and in device memory, with a staging ring
// large enough for the whole transfer and with one so small that each chunk
// holds one block (or one layer group of one) and the ring wraps many times.
TEST(GpuCopyTest, StagedPathMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  for (const CaseSpec& c : AllCases()) {
    for (bool pinned : {true, false}) {
      for (bool tiny : {false, true}) {
        SCOPED_TRACE(CaseName(c) + (pinned ? " pinned" : " device") + (tiny ? " tiny" : ""));
        Fixture f;
        ASSERT_OK(f.Init(c, pinned, 71, /*num_layers=*/6));
        const size_t n = f.pages.size();
        GpuCopier::Options o;
        if (tiny) {
          o.staging_buffers = 2;
          o.staging_bytes = 2 * f.block_bytes;  // one block per chunk
          o.min_dma_piece_bytes = 1;            // layer-wise: one group per DMA piece
        }
        ASSIGN_OR_FAIL(auto copier, GpuCopier::Create(o));
        ASSIGN_OR_FAIL(OwnedGpuStream stream, OwnedGpuStream::Create());
        ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));
        char* dma_base = pinned ? static_cast<char*>(f.pinned_slots.host()) : f.slots_dev;
        auto blocks = f.Blocks(dma_base);

        // Store: device pool -> slots, through staging and the copy engines.
        PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
        store.checksum_sums = static_cast<uint64_t*>(sums.data());
        ASSIGN_OR_FAIL(PinnedHostBuffer host_sums, PinnedHostBuffer::Allocate(n * 8));
        const auto* hs = static_cast<const uint64_t*>(host_sums.host());
        std::memset(host_sums.host(), 0x5a, n * 8);
        store.checksum_sums_host = static_cast<uint64_t*>(host_sums.host());
        ASSERT_OK(copier->CopyStaged(store, 0, nullptr, stream.get()));
        ASSERT_OK(GpuSynchronize(stream.get()));
        HostBytes ref_slots(f.slots_bytes);
        const std::vector<uint64_t> ref_sums = f.ReferenceStore(&ref_slots);
        EXPECT_EQ(std::vector<uint64_t>(hs, hs + n), ref_sums);
        HostBytes got_slots(f.slots_bytes);
        ASSERT_OK(GpuCopyBytes(got_slots.data(), f.slots_dev, f.slots_bytes));
        ASSERT_EQ(FirstDiff(got_slots.data(), ref_slots.data(), f.slots_bytes), -1);
        EXPECT_EQ(ReadSums(sums, n), ref_sums);

        // The pool a load must produce: poison, then each slot in its page.
        HostBytes ref_pool(f.pool_bytes);
        std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
        ASSIGN_OR_FAIL(KvPool ref_desc, BuildPool(c.layout, f.shape, ref_pool.data()));
        auto ref_blocks = f.Blocks(ref_slots.data());
        PagedTransfer ref_load{&ref_desc, ref_blocks, TransferDirection::kLoad};
        ASSERT_OK(CpuCopy(ref_load));

        for (uint32_t group : {0u, 1u, 4u}) {
          SCOPED_TRACE("layers per group " + std::to_string(group));
          ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
          ASSERT_OK(GpuFillBytes(sums.data(), 0x77, n * 8));
          PagedTransfer load{&f.dev_desc, blocks, TransferDirection::kLoad};
          load.checksum_sums = static_cast<uint64_t*>(sums.data());
          std::memset(host_sums.host(), 0x5a, n * 8);
          load.checksum_sums_host = static_cast<uint64_t*>(host_sums.host());
          ASSIGN_OR_FAIL(LayerEvents events, LayerEvents::Create(6));
          ASSERT_OK(copier->CopyStaged(load, group, group ? &events : nullptr, stream.get()));
          if (group > 0) {
            EXPECT_EQ(events.num_groups(), (6 + group - 1) / group);
            for (uint32_t l = 0; l < 6; ++l) ASSERT_OK(events.SynchronizeLayer(l));
          }
          ASSERT_OK(GpuSynchronize(stream.get()));
          HostBytes got_pool(f.pool_bytes);
          ASSERT_OK(GpuCopyBytes(got_pool.data(), f.dev_pool.data(), f.pool_bytes));
          ASSERT_EQ(FirstDiff(got_pool.data(), ref_pool.data(), f.pool_bytes), -1);
          EXPECT_EQ(ReadSums(sums, n), ref_sums);
          EXPECT_EQ(std::vector<uint64_t>(hs, hs + n), ref_sums);
        }
      }
    }
  }
}

// Contiguous slots merge into one DMA; a layer range moves only those layers;
// a layer-wise store, too few events and a group larger than a staging
// buffer are refused; the staged and kernel paths interleave on one copier.
TEST(GpuCopyTest, StagedPathEdges) {
  SKIP_WITHOUT_GPU();
  CaseSpec c{Layout::kVllmFlash, KvDtype::kBf16, 16};
  Fixture f;
  ASSERT_OK(f.Init(c, /*pinned=*/true, 81, /*num_layers=*/8));
  const size_t n = f.pages.size();
  // Slots back to back in pinned memory, random bytes.
  ASSIGN_OR_FAIL(PinnedHostBuffer slots, PinnedHostBuffer::Allocate(n * f.block_bytes));
  FillRandom(slots.host(), n * f.block_bytes, 82);
  std::vector<BlockRef> blocks;
  for (size_t i = 0; i < n; ++i)
    blocks.push_back({static_cast<char*>(slots.host()) + i * f.block_bytes, f.pages[i]});
  GpuCopier::Options o;
  o.staging_buffers = 3;
  o.staging_bytes = 3 * 2 * f.block_bytes;  // two blocks per chunk
  ASSIGN_OR_FAIL(auto copier, GpuCopier::Create(o));
  EXPECT_EQ(copier->staging_buffer_bytes(), 2 * f.block_bytes);
  ASSIGN_OR_FAIL(OwnedGpuStream stream, OwnedGpuStream::Create());
  ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));

  // Layers [2, 5) only: the other layers of every page keep their poison.
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
  PagedTransfer part{&f.dev_desc, blocks, TransferDirection::kLoad};
  part.layer_begin = 2;
  part.layer_end = 5;
  part.checksum_sums = static_cast<uint64_t*>(sums.data());
  ASSERT_OK(copier->CopyStaged(part, 0, nullptr, stream.get()));
  // The kernel path on the same copier, then the staged path again, queued
  // behind each other on one stream.
  PagedTransfer whole{&f.dev_desc, blocks, TransferDirection::kLoad};
  ASSERT_OK(copier->Copy(whole, stream.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  HostBytes ref_pool(f.pool_bytes);
  std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
  ASSIGN_OR_FAIL(KvPool ref_desc, BuildPool(c.layout, f.shape, ref_pool.data()));
  std::vector<BlockRef> ref_blocks = blocks;
  std::vector<uint64_t> ref_sums(n);
  PagedTransfer ref{&ref_desc, ref_blocks, TransferDirection::kLoad};
  ref.layer_begin = 2;
  ref.layer_end = 5;
  ref.checksum_sums = ref_sums.data();
  ASSERT_OK(CpuCopy(ref));
  EXPECT_EQ(ReadSums(sums, n), ref_sums);
  // (the whole load then overwrote every layer)
  PagedTransfer ref_whole{&ref_desc, ref_blocks, TransferDirection::kLoad};
  ASSERT_OK(CpuCopy(ref_whole));
  HostBytes got(f.pool_bytes);
  ASSERT_OK(GpuCopyBytes(got.data(), f.dev_pool.data(), f.pool_bytes));
  ASSERT_EQ(FirstDiff(got.data(), ref_pool.data(), f.pool_bytes), -1);

  // Only the layer range: poison the pool again and load [2, 5) staged.
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
  ASSERT_OK(copier->CopyStaged(part, 0, nullptr, stream.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
  ASSERT_OK(CpuCopy(ref));
  ASSERT_OK(GpuCopyBytes(got.data(), f.dev_pool.data(), f.pool_bytes));
  ASSERT_EQ(FirstDiff(got.data(), ref_pool.data(), f.pool_bytes), -1);

  // Refusals.
  PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
  ASSIGN_OR_FAIL(LayerEvents events, LayerEvents::Create(8));
  EXPECT_TRUE(copier->CopyStaged(store, 1, &events, stream.get()).IsInvalidArgument());
  ASSIGN_OR_FAIL(LayerEvents two, LayerEvents::Create(2));
  EXPECT_TRUE(copier->CopyStaged(whole, 1, &two, stream.get()).IsInvalidArgument());
  EXPECT_TRUE(copier->CopyStaged(whole, 1, nullptr, stream.get()).IsInvalidArgument());
  // Buffers of 3 layers of a block (8 layers): whole copies move in layer
  // ranges of 3, 3 and 2; a layer-wise copy in groups of 4 does not fit.
  GpuCopier::Options small;
  small.staging_buffers = 2;
  small.staging_bytes = 2 * 3 * (f.block_bytes / 8);
  ASSIGN_OR_FAIL(auto small_copier, GpuCopier::Create(small));
  EXPECT_TRUE(small_copier->CopyStaged(whole, 4, &events, stream.get()).IsInvalidArgument());
  ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
  ASSERT_OK(small_copier->CopyStaged(whole, 0, nullptr, stream.get()));
  ASSERT_OK(small_copier->CopyStaged(whole, 2, &events, stream.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
  ASSERT_OK(CpuCopy(ref_whole));
  ASSERT_OK(GpuCopyBytes(got.data(), f.dev_pool.data(), f.pool_bytes));
  ASSERT_EQ(FirstDiff(got.data(), ref_pool.data(), f.pool_bytes), -1);
  // A store in layer ranges writes the pool's bytes back into the slots.
  ASSIGN_OR_FAIL(PinnedHostBuffer back, PinnedHostBuffer::Allocate(n * f.block_bytes));
  std::memset(back.host(), kPoisonA, n * f.block_bytes);
  std::vector<BlockRef> back_blocks = blocks;
  for (size_t i = 0; i < n; ++i)
    back_blocks[i].slot = static_cast<char*>(back.host()) + i * f.block_bytes;
  PagedTransfer store_back{&f.dev_desc, back_blocks, TransferDirection::kStore};
  store_back.checksum_sums = static_cast<uint64_t*>(sums.data());
  ASSERT_OK(small_copier->CopyStaged(store_back, 0, nullptr, stream.get()));
  ASSERT_OK(GpuSynchronize(stream.get()));
  ASSERT_EQ(FirstDiff(back.host(), slots.host(), n * f.block_bytes), -1);
  std::vector<uint64_t> whole_sums(n);
  ref_whole.checksum_sums = whole_sums.data();
  ASSERT_OK(CpuCopy(ref_whole));
  EXPECT_EQ(ReadSums(sums, n), whole_sums);
  // The same store telling its end through an event: once the event is
  // done, the slots are written (the stream need not wait for the DMA).
  // The sums it reads back are in host memory by then too.
  std::memset(back.host(), kPoisonA, n * f.block_bytes);
  ASSIGN_OR_FAIL(PinnedHostBuffer host_sums, PinnedHostBuffer::Allocate(n * 8));
  std::memset(host_sums.host(), 0x5a, n * 8);
  store_back.checksum_sums_host = static_cast<uint64_t*>(host_sums.host());
  ASSIGN_OR_FAIL(GpuEvent slots_written, GpuEvent::Create());
  ASSERT_OK(small_copier->CopyStaged(store_back, 0, nullptr, stream.get(), slots_written.get()));
  ASSERT_OK(slots_written.Synchronize());
  ASSERT_EQ(FirstDiff(back.host(), slots.host(), n * f.block_bytes), -1);
  const auto* hs = static_cast<const uint64_t*>(host_sums.host());
  EXPECT_EQ(std::vector<uint64_t>(hs, hs + n), whole_sums);
  // Host sums without device sums to copy from: refused.
  PagedTransfer no_sums{&f.dev_desc, blocks, TransferDirection::kLoad};
  no_sums.checksum_sums_host = static_cast<uint64_t*>(host_sums.host());
  EXPECT_TRUE(copier->CopyStaged(no_sums, 0, nullptr, stream.get()).IsInvalidArgument());
  EXPECT_TRUE(copier->Copy(no_sums, stream.get()).IsInvalidArgument());
  ASSERT_OK(GpuSynchronize(stream.get()));
  EXPECT_EQ(ReadSums(sums, n), whole_sums);
  // Buffers smaller than one layer of a block: refused.
  GpuCopier::Options tiny;
  tiny.staging_buffers = 2;
  tiny.staging_bytes = f.block_bytes / 8;
  ASSIGN_OR_FAIL(auto tiny_copier, GpuCopier::Create(tiny));
  EXPECT_TRUE(tiny_copier->CopyStaged(whole, 0, nullptr, stream.get()).IsInvalidArgument());
  GpuCopier::Options none;
  none.staging_buffers = 0;
  EXPECT_TRUE(GpuCopier::Create(none).status().IsInvalidArgument());
}

TEST(GpuCopyTest, CorruptedSlotIsDetected) {
  SKIP_WITHOUT_GPU();
  CaseSpec c{Layout::kFlashInferHnd, KvDtype::kBf16, 16};
  Fixture f;
  ASSERT_OK(f.Init(c, /*pinned=*/true, 41));
  ASSIGN_OR_FAIL(auto copier, GpuCopier::Create({}));
  const size_t n = f.pages.size();
  ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));
  auto blocks = f.Blocks(f.slots_dev);

  PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
  store.checksum_sums = static_cast<uint64_t*>(sums.data());
  ASSERT_OK(copier->Copy(store, nullptr));
  ASSERT_OK(GpuSynchronize(nullptr));
  std::vector<uint64_t> stored = ReadSums(sums, n);
  for (auto& s : stored) s = checksum::Finalize(s, f.block_bytes);

  PagedTransfer load{&f.dev_desc, blocks, TransferDirection::kLoad};
  load.checksum_sums = static_cast<uint64_t*>(sums.data());
  ASSERT_OK(copier->Copy(load, nullptr));
  ASSERT_OK(GpuSynchronize(nullptr));
  ASSERT_OK(VerifyBlockChecksums(ReadSums(sums, n), stored, f.block_bytes));

  // Flip one bit of block 2 in host memory; the GPU load must notice.
  static_cast<char*>(f.pinned_slots.host())[f.slot_offsets[2] + f.block_bytes / 2 + 3] ^= 0x01;
  ASSERT_OK(copier->Copy(load, nullptr));
  ASSERT_OK(GpuSynchronize(nullptr));
  const Status st = VerifyBlockChecksums(ReadSums(sums, n), stored, f.block_bytes);
  EXPECT_TRUE(st.IsCorruption()) << st.ToString();
  EXPECT_NE(st.message().find("block 2"), std::string::npos) << st.ToString();
}

// Small rings and max_blocks force several launches per Copy and ring reuse;
// the tuning variants (8 or 2 loads per thread, persistent grid) must agree.
TEST(GpuCopyTest, SplitBatchesAndVariantsAgree) {
  SKIP_WITHOUT_GPU();
  CaseSpec c{Layout::kFlashInferNhd, KvDtype::kFp8E4M3, 64};
  Fixture f;
  ASSERT_OK(f.Init(c, /*pinned=*/false, 51));
  HostBytes ref_slots(f.slots_bytes);
  const std::vector<uint64_t> ref_sums = f.ReferenceStore(&ref_slots);
  const size_t n = f.pages.size();

  std::vector<GpuCopier::Options> variants(4);
  variants[0].max_blocks = 1;
  variants[0].ring_depth = 1;
  variants[1].max_blocks = 3;
  variants[1].ring_depth = 2;
  variants[1].vector_loads_per_thread = 8;
  variants[2].vector_loads_per_thread = 2;
  variants[2].max_resident_waves = 1;
  variants[3].vector_loads_per_thread = 8;
  variants[3].max_resident_waves = 2;
  for (size_t v = 0; v < variants.size(); ++v) {
    SCOPED_TRACE("variant " + std::to_string(v));
    ASSIGN_OR_FAIL(auto copier, GpuCopier::Create(variants[v]));
    ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));
    ASSERT_OK(f.PoisonSlots(kPoisonA));
    auto blocks = f.Blocks(f.slots_dev);
    PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
    store.checksum_sums = static_cast<uint64_t*>(sums.data());
    for (int rep = 0; rep < 3; ++rep) ASSERT_OK(copier->Copy(store, nullptr));
    ASSERT_OK(GpuSynchronize(nullptr));
    HostBytes got(f.slots_bytes);
    ASSERT_OK(GpuCopyBytes(got.data(), f.slots_dev, f.slots_bytes));
    ASSERT_EQ(FirstDiff(got.data(), ref_slots.data(), f.slots_bytes), -1);
    EXPECT_EQ(ReadSums(sums, n), ref_sums);
    if (variants[v].max_blocks < n) {
      LayerEvents events;
      ASSIGN_OR_FAIL(events, LayerEvents::Create(8));
      EXPECT_TRUE(copier->CopyLayerwise(store, 1, &events, nullptr).IsInvalidArgument());
    }
  }
  GpuCopier::Options bad;
  bad.vector_loads_per_thread = 3;
  EXPECT_TRUE(GpuCopier::Create(bad).status().IsInvalidArgument());
}

// The write order of loads (blocks by page, run position major) applies to
// vLLM pools whose K/V halves are whole tiles: 3 heads x 96 dims at 256
// tokens make a 147,456-byte half, 9 tiles of 16 KiB (4 loads per thread)
// and 18 of 8 KiB (2), but not whole 32 KiB tiles (8). Layer-first pools keep
// block order. In every case stores, loads and layer-wise loads give the
// CPU's bytes and sums, with pages out of order, slots in device memory and
// in mapped pinned host memory.
TEST(GpuCopyTest, WriteOrderMatchesTheCpu) {
  SKIP_WITHOUT_GPU();
  for (Layout layout : {Layout::kVllmFlash, Layout::kLayerFirst}) {
    for (bool pinned : {false, true}) {
      SCOPED_TRACE(std::string(layout == Layout::kVllmFlash ? "vllm" : "layer-first") +
                   (pinned ? " pinned" : " device"));
      CaseSpec c{layout, KvDtype::kBf16, 256};
      Fixture f;
      ASSERT_OK(f.Init(c, pinned, 81));
      HostBytes ref_slots(f.slots_bytes);
      const std::vector<uint64_t> ref_sums = f.ReferenceStore(&ref_slots);
      HostBytes ref_pool(f.pool_bytes);
      std::memset(ref_pool.data(), kPoisonB, f.pool_bytes);
      ASSIGN_OR_FAIL(KvPool ref_desc, BuildPool(c.layout, f.shape, ref_pool.data()));
      auto ref_blocks = f.Blocks(ref_slots.data());
      PagedTransfer ref_load{&ref_desc, ref_blocks, TransferDirection::kLoad};
      ASSERT_OK(CpuCopy(ref_load));
      const size_t n = f.pages.size();

      for (int variant = 0; variant < 6; ++variant) {
      GpuCopier::Options o;
      o.vector_loads_per_thread = 2 << (variant % 3);
      o.write_order = variant >= 3;
      SCOPED_TRACE("loads " + std::to_string(o.vector_loads_per_thread) + " write_order " +
                   std::to_string(o.write_order));
      ASSIGN_OR_FAIL(auto copier, GpuCopier::Create(o));
      ASSIGN_OR_FAIL(DeviceBuffer sums, DeviceBuffer::Allocate(n * 8));
      ASSERT_OK(f.PoisonSlots(kPoisonA));
      auto blocks = f.Blocks(f.slots_dev);
      PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
      store.checksum_sums = static_cast<uint64_t*>(sums.data());
      ASSERT_OK(copier->Copy(store, nullptr));
      ASSERT_OK(GpuSynchronize(nullptr));
      HostBytes got(f.slots_bytes);
      ASSERT_OK(GpuCopyBytes(got.data(), f.slots_dev, f.slots_bytes));
      ASSERT_EQ(FirstDiff(got.data(), ref_slots.data(), f.slots_bytes), -1);
      EXPECT_EQ(ReadSums(sums, n), ref_sums);

      for (bool layerwise : {false, true}) {
        SCOPED_TRACE(layerwise ? "layer-wise load" : "load");
        ASSERT_OK(GpuFillBytes(f.dev_pool.data(), kPoisonB, f.pool_bytes));
        PagedTransfer load{&f.dev_desc, blocks, TransferDirection::kLoad};
        load.checksum_sums = static_cast<uint64_t*>(sums.data());
        if (layerwise) {
          ASSIGN_OR_FAIL(LayerEvents events, LayerEvents::Create(f.shape.num_layers));
          ASSERT_OK(copier->CopyLayerwise(load, 1, &events, nullptr));
        } else {
          ASSERT_OK(copier->Copy(load, nullptr));
        }
        ASSERT_OK(GpuSynchronize(nullptr));
        HostBytes got_pool(f.pool_bytes);
        ASSERT_OK(GpuCopyBytes(got_pool.data(), f.dev_pool.data(), f.pool_bytes));
        ASSERT_EQ(FirstDiff(got_pool.data(), ref_pool.data(), f.pool_bytes), -1);
        EXPECT_EQ(ReadSums(sums, n), ref_sums);
      }
      // The next variant stores from the pool again: put it back.
      ASSERT_OK(GpuCopyBytes(f.dev_pool.data(), f.host_pool.data(), f.pool_bytes));
      }
    }
  }
}

// Slots in ordinary host memory registered with cudaHostRegister, as the
// engine adapter does with the daemon's shared segment.
TEST(GpuCopyTest, RegisteredHostSegment) {
  SKIP_WITHOUT_GPU();
  CaseSpec c{Layout::kLayerFirst, KvDtype::kFp16, 16};
  Fixture f;
  ASSERT_OK(f.Init(c, /*pinned=*/false, 61));
  const size_t segment_bytes = (f.slots_bytes + 4096 + 4095) / 4096 * 4096;  // whole pages
  HostBytes segment(segment_bytes);
  std::memset(segment.data(), kPoisonA, segment_bytes);
  ASSIGN_OR_FAIL(HostRegistration reg, HostRegistration::Register(segment.data(), segment_bytes));
  char* slots_host = segment.data() + 4096;
  char* slots_dev = static_cast<char*>(reg.DevicePointer(slots_host));
  ASSERT_NE(slots_dev, nullptr);
  EXPECT_EQ(reg.DevicePointer(segment.data() + segment_bytes), nullptr);

  ASSIGN_OR_FAIL(auto copier, GpuCopier::Create({}));
  auto blocks = f.Blocks(slots_dev);
  PagedTransfer store{&f.dev_desc, blocks, TransferDirection::kStore};
  ASSERT_OK(copier->Copy(store, nullptr));  // no checksums
  ASSERT_OK(GpuSynchronize(nullptr));
  HostBytes ref_slots(f.slots_bytes);
  (void)f.ReferenceStore(&ref_slots);
  ASSERT_EQ(FirstDiff(slots_host, ref_slots.data(), f.slots_bytes), -1);
}

TEST(GpuRuntimeTest, AvailabilityIsConsistent) {
  if (!GpuAvailable()) {
    EXPECT_FALSE(DeviceBuffer::Allocate(16).ok());
    EXPECT_FALSE(GpuCopier::Create({}).ok());
    GTEST_SKIP() << "no CUDA device";
  }
  auto name = GpuDeviceName();
  ASSERT_TRUE(name.ok()) << name.status().ToString();
  EXPECT_FALSE(name->empty());
  std::printf("device: %s\n", name->c_str());
}

}  // namespace
}  // namespace kvtier
