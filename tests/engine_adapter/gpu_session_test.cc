// Tests engine_adapter/gpu_session.{h,cc} against a real kvtierd: one process
// stores pool pages through the GPU path, another loads them into another
// pool, through the host tier and through the HBM tier (CUDA IPC), byte-exact
// for the vLLM and FlashInfer HND layouts in bf16 and fp8; the GPU's
// checksums equal the CPU's over the slot bytes (and the CPU client reads
// what the GPU stored, and the reverse); a byte flipped in a host slot is
// caught on load; layer-wise loads signal every layer.
//
// CUDA cannot be used in a process forked from one that initialized it, so
// this test process never touches CUDA: every GPU step runs in a forked child
// (on a fresh thread there, as tests/server/daemon_test.cc does, so that it
// never touches an event loop the parent had), including the check whether a
// GPU is present. Children report failures on stderr and by exit code.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "engine_adapter/gpu_session.h"
#include "loader/cpu_copy.h"
#include "loader/gpu_copy.h"
#include "loader/gpu_runtime.h"
#include "tests/loader/loader_test_util.h"
#include "tests/server/daemon_fixture.h"
#include "tiers/checksum.h"

namespace kvtier {
namespace {

using loader_test::BuildPool;
using loader_test::FillRandom;
using loader_test::FirstDiff;
using loader_test::HostBytes;
using loader_test::Layout;
using loader_test::LayoutName;
using loader_test::PoolAllocBytes;
using testing::Daemon;

// ---- processes ---------------------------------------------------------------

int RunChild(const std::function<int()>& fn) {
  std::fflush(nullptr);
  pid_t pid = fork();
  if (pid == 0) {
    int rc = 99;
    std::thread t([&] { rc = fn(); });
    t.join();
    std::fflush(nullptr);
    _exit(rc);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 100 + WTERMSIG(status);
}

// Asked in a child, once: this process must stay free of CUDA.
bool GpuPresent() {
  static const bool present = RunChild([] { return GpuAvailable() ? 0 : 1; }) == 0;
  return present;
}

#define SKIP_WITHOUT_GPU() \
  if (!GpuPresent()) GTEST_SKIP() << "no CUDA device (asked in a child process)"

// In a child: print what failed and return `code` from the enclosing function.
#define CHILD_CHECK(cond, code, msg)                                                   \
  do {                                                                                 \
    if (!(cond)) {                                                                     \
      std::fprintf(stderr, "child check failed (%d): %s: %s\n", code, #cond,           \
                   std::string(msg).c_str());                                          \
      return code;                                                                     \
    }                                                                                  \
  } while (0)
#define CHILD_OK(expr, code)                     \
  do {                                           \
    const ::kvtier::Status _s = (expr);          \
    CHILD_CHECK(_s.ok(), code, _s.ToString());   \
  } while (0)

// ---- the model ---------------------------------------------------------------

constexpr uint32_t kBlocks = 24;  // blocks stored and loaded
constexpr uint32_t kPages = 40;   // pages of each pool

struct Case {
  Layout layout;
  KvDtype dtype;
  bool hbm;  // daemon with an HBM tier that takes the stores
  // How the storing and the loading process move host slots.
  HostCopyPath store_path = HostCopyPath::kAuto;
  HostCopyPath load_path = HostCopyPath::kAuto;
};

std::string CaseName(const Case& c) {
  std::string n =
      std::string(LayoutName(c.layout)) + "_" + KvDtypeName(c.dtype) + (c.hbm ? "_hbm" : "_host");
  if (c.store_path != HostCopyPath::kAuto || c.load_path != HostCopyPath::kAuto)
    n += std::string("_store_") + HostCopyPathName(c.store_path) + "_load_" +
         HostCopyPathName(c.load_path);
  return n;
}

KvPoolShape Shape(KvDtype dtype) {
  KvPoolShape s;
  s.dtype = dtype;
  s.num_layers = 4;
  s.kv_heads = 4;
  s.head_dim = 128;
  s.tokens_per_page = 16;
  s.num_pages = kPages;
  return s;
}

NamespaceSpec Spec(KvDtype dtype) {
  NamespaceSpec s;
  s.model_id = "test/gpu-path";
  const KvPoolShape sh = Shape(dtype);
  s.layout = KvLayout{sh.num_layers, sh.kv_heads, sh.head_dim, sh.tokens_per_page,
                      dtype == KvDtype::kBf16 ? DType::kBF16 : DType::kFP8, 2};
  return s;
}

std::vector<BlockKey> Keys(const ClientNamespace& ns, uint32_t prompt, size_t blocks) {
  std::vector<uint32_t> tokens(blocks * ns.spec().layout.tokens_per_block);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = static_cast<uint32_t>(prompt * 1000003 + i);
  return ns.HashTokens(tokens);
}

// Pages the store reads and the (different) pages the load writes.
std::vector<uint32_t> StorePages() {
  std::vector<uint32_t> p;
  for (uint32_t i = 0; i < kBlocks; ++i) p.push_back((i * 7 + 3) % kPages);
  return p;
}
std::vector<uint32_t> LoadPages() {
  std::vector<uint32_t> p;
  for (uint32_t i = 0; i < kBlocks; ++i) p.push_back((i * 11 + 5) % kPages);
  return p;
}

std::vector<std::string> DaemonFlags(bool hbm) {
  if (!hbm) return {};
  return {"--hbm-capacity", "64M", "--store-tier", "hbm"};
}

// A pool with its host mirror; the device copy when `device`.
struct Pool {
  Layout layout;
  KvPoolShape shape;
  HostBytes host{0};
  DeviceBuffer dev;
  KvPool host_desc, dev_desc;

  Status Init(Layout l, KvDtype dtype, bool device) {
    layout = l;
    shape = Shape(dtype);
    host = HostBytes(PoolAllocBytes(l, shape));
    KVTIER_ASSIGN_OR_RETURN(host_desc, BuildPool(l, shape, host.data()));
    if (device) {
      KVTIER_ASSIGN_OR_RETURN(dev, DeviceBuffer::Allocate(host.size()));
      KVTIER_ASSIGN_OR_RETURN(dev_desc, BuildPool(l, shape, static_cast<char*>(dev.data())));
    }
    return Status::OK();
  }
  Status Upload() { return GpuCopyBytes(dev.data(), host.data(), host.size()); }
  Status Download(HostBytes* out) { return GpuCopyBytes(out->data(), dev.data(), host.size()); }
};

// Canonical bytes of pages[i] of the host mirror, via the CPU reference copy.
std::vector<std::vector<uint8_t>> CanonicalBlocks(const Pool& p, std::span<const uint32_t> pages) {
  std::vector<std::vector<uint8_t>> out;
  for (uint32_t page : pages) {
    HostBytes buf(p.shape.block_bytes());
    BlockRef ref{buf.data(), page, 0};
    PagedTransfer t{&p.host_desc, std::span(&ref, 1), TransferDirection::kStore};
    EXPECT_TRUE(CpuCopy(t).ok());
    out.emplace_back(buf.data(), buf.data() + buf.size());
  }
  return out;
}

// ---- child bodies ------------------------------------------------------------

// Stores pages StorePages() of a pool filled from `seed` under prompt `prompt`;
// with `chunk_blocks` > 0, Store() pipelines chunks of that many blocks.
int GpuStoreChild(const std::string& socket, const Case& c, uint32_t prompt, uint64_t seed,
                  uint32_t chunk_blocks = 0, uint32_t depth = 2) {
  auto client = Client::Connect(socket);
  CHILD_OK(client.status(), 10);
  auto ns = (*client)->OpenNamespace(Spec(c.dtype));
  CHILD_OK(ns.status(), 11);
  GpuSessionOptions so;
  if (chunk_blocks > 0) so.store_chunk_bytes = uint64_t{chunk_blocks} * Shape(c.dtype).block_bytes();
  so.store_pipeline_depth = depth;
  so.host_path = c.store_path;
  so.copier.staging_buffers = 3;  // a small ring: several chunks, wrapped
  so.copier.staging_bytes = 3 * 5 * Shape(c.dtype).block_bytes();
  auto gpu = GpuSession::Create(client->get(), so);
  CHILD_OK(gpu.status(), 12);
  (*ns)->set_device((*gpu)->device());
  CHILD_CHECK((*gpu)->has_hbm() == c.hbm, 13, (*gpu)->hbm_status().ToString());
  Pool pool;
  CHILD_OK(pool.Init(c.layout, c.dtype, true), 14);
  FillRandom(pool.host.data(), pool.host.size(), seed);
  CHILD_OK(pool.Upload(), 15);
  auto stream = OwnedGpuStream::Create();
  CHILD_OK(stream.status(), 16);
  auto keys = Keys(**ns, prompt, kBlocks);
  auto pages = StorePages();
  {
    // The path taken is the one asked for (kAuto: the SM gather below its
    // threshold, as these small stores are).
    auto probe = (*gpu)->StartStore(**ns, std::span(keys).first(1), pool.dev_desc,
                                    std::span(pages).first(1), {}, stream->get());
    CHILD_OK(probe.status(), 21);
    const HostCopyPath want = c.hbm || c.store_path == HostCopyPath::kAuto ? HostCopyPath::kSmGather
                                                                            : c.store_path;
    CHILD_CHECK(probe->path() == want, 22, HostCopyPathName(probe->path()));
    CHILD_OK(probe->Wait().status(), 23);
  }
  auto r = (*gpu)->Store(**ns, keys, pool.dev_desc, pages, {}, stream->get());
  CHILD_OK(r.status(), 17);
  CHILD_CHECK(r->stored == kBlocks - 1, 18, std::to_string(r->stored));
  {
    // One Reserve per chunk: host-tier chunks grow from an eighth of
    // chunk_blocks (at least 1), doubling up to it. Into HBM: the first
    // chunk (block 0, which the probe stored) copies nothing, the second
    // lands in HBM, and the rest goes at once.
    uint32_t chunks = 1;
    if (chunk_blocks > 0 && kBlocks > chunk_blocks && !c.hbm) {
      chunks = 0;
      for (uint32_t first = 0, next = std::max(1u, chunk_blocks / 8); first < kBlocks; next *= 2) {
        first += std::min(next, chunk_blocks);
        ++chunks;
      }
    } else if (chunk_blocks > 0 && kBlocks > chunk_blocks) {
      chunks = 3;
    }
    const GpuStoreStats& st = (*gpu)->last_store_stats();
    CHILD_CHECK(st.chunks == chunks, 24,
                std::to_string(st.chunks) + " chunks, expected " + std::to_string(chunks));
    CHILD_CHECK(st.first_queued_ms > 0 && st.first_queued_ms <= st.total_ms &&
                    st.reserve_ms > 0 && st.commit_ms > 0 &&
                    st.reserve_ms + st.queue_ms + st.wait_ms + st.commit_ms <= st.total_ms,
                25, "stats do not add up");
  }
  // Again: everything is present, nothing is written.
  r = (*gpu)->Store(**ns, keys, pool.dev_desc, pages, {}, stream->get());
  CHILD_OK(r.status(), 19);
  CHILD_CHECK(r->stored == 0 && r->present == kBlocks, 20, std::to_string(r->present));
  return 0;
}

// Looks up prompt `prompt`, checks every slot's bytes and checksum against
// the pool filled from `seed`, then loads (whole and layer-wise) into other
// pages of a poisoned pool and compares the whole pool byte for byte.
int GpuLoadChild(const std::string& socket, const Case& c, uint32_t prompt, uint64_t seed) {
  auto client = Client::Connect(socket);
  CHILD_OK(client.status(), 30);
  auto ns = (*client)->OpenNamespace(Spec(c.dtype));
  CHILD_OK(ns.status(), 31);
  GpuSessionOptions so;
  so.host_path = c.load_path;
  so.copier.staging_buffers = 2;
  so.copier.staging_bytes = 2 * 7 * Shape(c.dtype).block_bytes();
  auto gpu = GpuSession::Create(client->get(), so);
  CHILD_OK(gpu.status(), 32);
  (*ns)->set_device((*gpu)->device());
  Pool src;
  CHILD_OK(src.Init(c.layout, c.dtype, false), 33);
  FillRandom(src.host.data(), src.host.size(), seed);
  const auto want = CanonicalBlocks(src, StorePages());

  auto keys = Keys(**ns, prompt, kBlocks + 3);  // 3 more than were stored
  auto lease = (*ns)->Lookup(keys);
  CHILD_OK(lease.status(), 34);
  CHILD_CHECK(lease->size() == kBlocks, 35, std::to_string(lease->size()));
  const uint64_t bb = (*ns)->block_bytes();
  std::vector<uint8_t> slot(bb);
  for (size_t i = 0; i < kBlocks; ++i) {
    const RemoteBlock& b = lease->blocks()[i];
    const TierKind tier = c.hbm ? TierKind::kHbm : TierKind::kHost;
    CHILD_CHECK(b.tier == tier, 36, "block " + std::to_string(i) + " in " + TierKindName(b.tier));
    if (b.tier == TierKind::kHost) {
      std::memcpy(slot.data(), (*client)->segment_base() + b.offset, bb);
    } else {
      CHILD_OK(GpuCopyBytes(slot.data(), (*gpu)->segments().hbm + b.offset, bb), 37);
    }
    CHILD_CHECK(slot == want[i], 38, "slot bytes of block " + std::to_string(i));
    CHILD_CHECK(checksum::Sum64(slot.data(), bb) == b.checksum, 39,
                "the GPU's checksum of block " + std::to_string(i) + " differs from the CPU's");
  }

  Pool dst;
  CHILD_OK(dst.Init(c.layout, c.dtype, true), 40);
  auto stream = OwnedGpuStream::Create();
  CHILD_OK(stream.status(), 41);
  const auto pages = LoadPages();
  // What the pool must hold: poison, and block i in page pages[i].
  auto expect_after_load = [&](uint8_t poison) {
    HostBytes e(dst.host.size());
    std::memset(e.data(), poison, e.size());
    KvPool desc = BuildPool(c.layout, dst.shape, e.data()).value();
    for (size_t i = 0; i < kBlocks; ++i) {
      BlockRef ref{const_cast<uint8_t*>(want[i].data()), pages[i], 0};
      PagedTransfer t{&desc, std::span(&ref, 1), TransferDirection::kLoad};
      EXPECT_TRUE(CpuCopy(t).ok());
    }
    return e;
  };
  HostBytes got(dst.host.size());

  // One batched gather.
  std::memset(dst.host.data(), loader_test::kPoisonA, dst.host.size());
  CHILD_OK(dst.Upload(), 42);
  {
    auto one = (*gpu)->StartLoad(**ns, *lease, dst.dev_desc, pages, stream->get());
    CHILD_OK(one.status(), 43);
    const HostCopyPath want = c.hbm || c.load_path == HostCopyPath::kAuto ? HostCopyPath::kSmGather
                                                                           : c.load_path;
    CHILD_CHECK(one->path() == want, 143, HostCopyPathName(one->path()));
    CHILD_OK(one->Wait(), 144);
  }
  CHILD_OK(dst.Download(&got), 44);
  HostBytes e = expect_after_load(loader_test::kPoisonA);
  int64_t diff = FirstDiff(got.data(), e.data(), e.size());
  CHILD_CHECK(diff < 0, 45, "pool byte " + std::to_string(diff) + " differs after the load");

  // Layer-wise: one launch and one event per layer.
  std::memset(dst.host.data(), loader_test::kPoisonB, dst.host.size());
  CHILD_OK(dst.Upload(), 46);
  auto events = LayerEvents::Create(dst.shape.num_layers);
  CHILD_OK(events.status(), 47);
  GpuLoadOptions lo;
  lo.layers_per_group = 1;
  lo.events = &*events;
  auto pending = (*gpu)->StartLoad(**ns, *lease, dst.dev_desc, pages, stream->get(), lo);
  CHILD_OK(pending.status(), 48);
  CHILD_CHECK(events->num_groups() == dst.shape.num_layers, 49, "");
  for (uint32_t l = 0; l < dst.shape.num_layers; ++l) CHILD_OK(events->SynchronizeLayer(l), 50);
  CHILD_OK(pending->Wait(), 51);
  auto ready = pending->Ready();
  CHILD_CHECK(ready.ok() && *ready, 52, "");
  CHILD_OK(dst.Download(&got), 53);
  e = expect_after_load(loader_test::kPoisonB);
  diff = FirstDiff(got.data(), e.data(), e.size());
  CHILD_CHECK(diff < 0, 54, "pool byte " + std::to_string(diff) + " differs after the layer-wise load");

  // A prefix of the lease; pages the load does not name stay untouched.
  std::memset(dst.host.data(), loader_test::kPoisonA, dst.host.size());
  CHILD_OK(dst.Upload(), 55);
  CHILD_OK((*gpu)->Load(**ns, *lease, dst.dev_desc, std::span(pages).first(5), stream->get()), 56);
  CHILD_OK(dst.Download(&got), 57);
  CHILD_CHECK(FirstDiff(got.data(), dst.host.data(), got.size()) >= 0, 58, "nothing was loaded");

  // Without checksums (verify = false): the same bytes.
  std::memset(dst.host.data(), loader_test::kPoisonA, dst.host.size());
  CHILD_OK(dst.Upload(), 160);
  GpuLoadOptions nv;
  nv.verify = false;
  CHILD_OK((*gpu)->Load(**ns, *lease, dst.dev_desc, pages, stream->get(), nv), 161);
  CHILD_OK(dst.Download(&got), 162);
  e = expect_after_load(loader_test::kPoisonA);
  diff = FirstDiff(got.data(), e.data(), e.size());
  CHILD_CHECK(diff < 0, 163, "pool byte " + std::to_string(diff) + " differs after an unverified load");
  CHILD_OK(lease->Release(), 59);
  return 0;
}

// ---- tests -------------------------------------------------------------------

class GpuSessionTest : public ::testing::TestWithParam<Case> {};

TEST_P(GpuSessionTest, OneProcessStoresAnotherLoadsByteExact) {
  SKIP_WITHOUT_GPU();
  const Case c = GetParam();
  Daemon d(DaemonFlags(c.hbm));
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return GpuStoreChild(d.socket(), c, 1, 42); }), 0);
  ASSERT_EQ(RunChild([&] { return GpuLoadChild(d.socket(), c, 1, 42); }), 0);
  // Nothing is left pinned or half-written by either process.
  auto client = Client::Connect(d.socket());
  ASSERT_TRUE(client.ok());
  auto st = (*client)->Stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->blocks_ready, kBlocks);
  EXPECT_EQ(st->blocks_writing, 0u);
  EXPECT_EQ(st->pinned_blocks, 0u);
  EXPECT_EQ(d.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    LayoutsDtypesTiers, GpuSessionTest,
    ::testing::Values(Case{Layout::kVllmFlash, KvDtype::kBf16, false},
                      Case{Layout::kVllmFlash, KvDtype::kFp8E4M3, false},
                      Case{Layout::kFlashInferHnd, KvDtype::kBf16, false},
                      Case{Layout::kFlashInferHnd, KvDtype::kFp8E4M3, false},
                      Case{Layout::kVllmFlash, KvDtype::kBf16, true},
                      Case{Layout::kVllmFlash, KvDtype::kFp8E4M3, true},
                      Case{Layout::kFlashInferHnd, KvDtype::kBf16, true},
                      Case{Layout::kFlashInferHnd, KvDtype::kFp8E4M3, true},
                      // The copy engines' path, and each path reading the other's blocks.
                      Case{Layout::kVllmFlash, KvDtype::kBf16, false, HostCopyPath::kCopyEngine,
                           HostCopyPath::kCopyEngine},
                      Case{Layout::kFlashInferHnd, KvDtype::kFp8E4M3, false,
                           HostCopyPath::kCopyEngine, HostCopyPath::kCopyEngine},
                      Case{Layout::kVllmFlash, KvDtype::kBf16, false, HostCopyPath::kCopyEngine,
                           HostCopyPath::kSmGather},
                      Case{Layout::kVllmFlash, KvDtype::kBf16, false, HostCopyPath::kSmGather,
                           HostCopyPath::kCopyEngine},
                      // HBM slots take the kernel whatever the setting.
                      Case{Layout::kVllmFlash, KvDtype::kBf16, true, HostCopyPath::kCopyEngine,
                           HostCopyPath::kCopyEngine}),
    [](const ::testing::TestParamInfo<Case>& i) { return CaseName(i.param); });

// Store() in a pipeline of 5-block chunks (5 chunks for 24 blocks) stores
// every block byte-exact with the right checksums, into the host tier and
// into HBM (where the first chunk's placement makes it do the rest at once).
TEST(GpuSessionPipelineTest, ChunkedStoreIsByteExact) {
  SKIP_WITHOUT_GPU();
  for (bool hbm : {false, true}) {
    const Case c{Layout::kVllmFlash, KvDtype::kBf16, hbm};
    Daemon d(DaemonFlags(hbm));
    ASSERT_TRUE(d.running());
    ASSERT_EQ(RunChild([&] { return GpuStoreChild(d.socket(), c, 6, 10, 5); }), 0) << CaseName(c);
    ASSERT_EQ(RunChild([&] { return GpuLoadChild(d.socket(), c, 6, 10); }), 0) << CaseName(c);
  }
  // One chunk in flight at a time, and four.
  for (uint32_t depth : {1u, 4u}) {
    const Case c{Layout::kVllmFlash, KvDtype::kBf16, false, HostCopyPath::kCopyEngine,
                 HostCopyPath::kAuto};
    Daemon d(DaemonFlags(false));
    ASSERT_TRUE(d.running());
    ASSERT_EQ(RunChild([&] { return GpuStoreChild(d.socket(), c, 7, 11, 3, depth); }), 0)
        << "depth " << depth;
    ASSERT_EQ(RunChild([&] { return GpuLoadChild(d.socket(), c, 7, 11); }), 0) << "depth " << depth;
  }
}

// The CPU client and the GPU path agree on bytes and checksums both ways:
// CPU stores → GPU loads, GPU stores → CPU loads (which verifies the GPU's
// checksum on the CPU).
TEST(GpuSessionInteropTest, CpuAndGpuPathsReadEachOthersBlocks) {
  SKIP_WITHOUT_GPU();
  const Case c{Layout::kFlashInferHnd, KvDtype::kBf16, false};
  Daemon d;
  ASSERT_TRUE(d.running());
  auto client = Client::Connect(d.socket());
  ASSERT_TRUE(client.ok());
  auto ns = (*client)->OpenNamespace(Spec(c.dtype));
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  // CPU store of the canonical blocks of a host pool (no CUDA in this process).
  Pool src;
  ASSERT_TRUE(src.Init(c.layout, c.dtype, false).ok());
  FillRandom(src.host.data(), src.host.size(), 7);
  auto blocks = CanonicalBlocks(src, StorePages());
  std::vector<const uint8_t*> payloads;
  for (auto& b : blocks) payloads.push_back(b.data());
  auto r = (*ns)->Store(Keys(**ns, 3, kBlocks), payloads);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->stored, kBlocks);
  ASSERT_EQ(RunChild([&] { return GpuLoadChild(d.socket(), c, 3, 7); }), 0);

  // GPU store; the CPU path loads and checks the GPU's checksums.
  ASSERT_EQ(RunChild([&] { return GpuStoreChild(d.socket(), c, 4, 8); }), 0);
  Pool src2;
  ASSERT_TRUE(src2.Init(c.layout, c.dtype, false).ok());
  FillRandom(src2.host.data(), src2.host.size(), 8);
  auto want = CanonicalBlocks(src2, StorePages());
  auto lease = (*ns)->Lookup(Keys(**ns, 4, kBlocks));
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(lease->size(), kBlocks);
  std::vector<std::vector<uint8_t>> out(kBlocks, std::vector<uint8_t>((*ns)->block_bytes()));
  std::vector<uint8_t*> dst;
  for (auto& o : out) dst.push_back(o.data());
  Status st = (*ns)->Load(*lease, dst);
  ASSERT_TRUE(st.ok()) << st.ToString();
  for (size_t i = 0; i < kBlocks; ++i) EXPECT_EQ(out[i], want[i]) << "block " << i;
}

// A byte flipped in a host slot (through this process's mapping of the
// segment) fails the GPU load with Corruption naming that block.
TEST(GpuSessionCorruptionTest, FlippedHostByteIsCaughtOnLoad) {
  SKIP_WITHOUT_GPU();
  const Case c{Layout::kVllmFlash, KvDtype::kBf16, false};
  Daemon d;
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&] { return GpuStoreChild(d.socket(), c, 5, 9); }), 0);
  constexpr size_t kBad = 13;
  {
    auto client = Client::Connect(d.socket());
    ASSERT_TRUE(client.ok());
    auto ns = (*client)->OpenNamespace(Spec(c.dtype));
    ASSERT_TRUE(ns.ok());
    auto lease = (*ns)->Lookup(Keys(**ns, 5, kBlocks));
    ASSERT_TRUE(lease.ok());
    ASSERT_EQ(lease->size(), kBlocks);
    const RemoteBlock& b = lease->blocks()[kBad];
    ASSERT_EQ(b.tier, TierKind::kHost);
    (*client)->segment_base()[b.offset + b.size / 2 + 5] ^= 0x10;
  }
  // Both paths catch it: the kernel reading the slot, and the scatter from
  // the staging buffer the copy engines filled.
  for (HostCopyPath path : {HostCopyPath::kSmGather, HostCopyPath::kCopyEngine}) {
  SCOPED_TRACE(HostCopyPathName(path));
  ASSERT_EQ(RunChild([&]() -> int {
              auto client = Client::Connect(d.socket());
              CHILD_OK(client.status(), 60);
              auto ns = (*client)->OpenNamespace(Spec(c.dtype));
              CHILD_OK(ns.status(), 61);
              GpuSessionOptions so;
              so.host_path = path;
              auto gpu = GpuSession::Create(client->get(), so);
              CHILD_OK(gpu.status(), 62);
              Pool dst;
              CHILD_OK(dst.Init(c.layout, c.dtype, true), 63);
              auto keys = Keys(**ns, 5, kBlocks);
              auto lease = (*ns)->Lookup(keys);
              CHILD_OK(lease.status(), 64);
              CHILD_CHECK(lease->size() == kBlocks, 65, "");
              auto pages = LoadPages();
              Status st = (*gpu)->Load(**ns, *lease, dst.dev_desc, pages, nullptr);
              CHILD_CHECK(st.IsCorruption(), 66, st.ToString());
              const std::string want = "block " + std::to_string(kBad) + " (" + keys[kBad].ToHex() + ")";
              CHILD_CHECK(st.message().rfind(want, 0) == 0, 67, st.ToString());
              // The blocks before it load fine.
              CHILD_OK((*gpu)->Load(**ns, *lease, dst.dev_desc, std::span(pages).first(kBad), nullptr),
                       68);
              return 0;
            }),
            0);
  }
}

// An engine that does not open the HBM tier cannot store into it: the
// reservation is aborted, nothing stays WRITING; pool/layout mismatches and a
// namespace bound to another GPU are refused before anything is reserved.
TEST(GpuSessionErrorsTest, RefusalsLeaveNothingBehind) {
  SKIP_WITHOUT_GPU();
  Daemon d(DaemonFlags(true));
  ASSERT_TRUE(d.running());
  ASSERT_EQ(RunChild([&]() -> int {
              auto client = Client::Connect(d.socket());
              CHILD_OK(client.status(), 70);
              auto ns = (*client)->OpenNamespace(Spec(KvDtype::kBf16));
              CHILD_OK(ns.status(), 71);
              GpuSessionOptions o;
              o.open_hbm = false;
              auto gpu = GpuSession::Create(client->get(), o);
              CHILD_OK(gpu.status(), 72);
              CHILD_CHECK(!(*gpu)->has_hbm(), 73, "");
              Pool pool;
              CHILD_OK(pool.Init(Layout::kVllmFlash, KvDtype::kBf16, true), 74);
              auto keys = Keys(**ns, 6, 4);
              std::vector<uint32_t> pages = {0, 1, 2, 3};
              // A namespace bound to another GPU.
              (*ns)->set_device((*gpu)->device() + 1);
              auto r = (*gpu)->Store(**ns, keys, pool.dev_desc, pages, {}, nullptr);
              CHILD_CHECK(r.status().IsInvalidArgument(), 80, r.status().ToString());
              (*ns)->set_device(-1);
              r = (*gpu)->Store(**ns, keys, pool.dev_desc, pages, {}, nullptr);
              CHILD_CHECK(r.status().code() == StatusCode::kUnavailable, 75, r.status().ToString());
              // An fp8 pool against a bf16 namespace.
              Pool fp8;
              CHILD_OK(fp8.Init(Layout::kVllmFlash, KvDtype::kFp8E4M3, true), 76);
              r = (*gpu)->Store(**ns, keys, fp8.dev_desc, pages, {}, nullptr);
              CHILD_CHECK(r.status().IsInvalidArgument(), 77, r.status().ToString());
              // The aborted reservation is released by the daemon.
              Result<RemoteStats> st = Status::Unavailable("not asked");
              for (int i = 0; i < 100; ++i) {
                st = (*client)->Stats();
                CHILD_OK(st.status(), 78);
                if (st->blocks_writing == 0) break;
                std::this_thread::sleep_for(std::chrono::milliseconds(20));
              }
              CHILD_CHECK(st->blocks_writing == 0 && st->blocks_ready == 0, 79,
                          std::to_string(st->blocks_writing));
              return 0;
            }),
            0);
}

// Without a GPU (CI, CPU builds) a session cannot be created, cleanly.
TEST(GpuSessionNoGpuTest, CreateIsUnavailable) {
  if (GpuPresent()) GTEST_SKIP() << "a GPU is present";
  Daemon d;
  ASSERT_TRUE(d.running());
  auto client = Client::Connect(d.socket());
  ASSERT_TRUE(client.ok());
  // No segment is mapped before a namespace is open (docs/security.md).
  EXPECT_TRUE(GpuSession::Create(client->get()).status().IsInvalidArgument());
  auto ns = (*client)->OpenNamespace(Spec(KvDtype::kBf16));
  ASSERT_TRUE(ns.ok()) << ns.status().ToString();
  auto gpu = GpuSession::Create(client->get());
  EXPECT_EQ(gpu.status().code(), StatusCode::kUnavailable) << gpu.status().ToString();
  GpuSessionOptions no_depth;
  no_depth.store_pipeline_depth = 0;
  EXPECT_TRUE(GpuSession::Create(client->get(), no_depth).status().IsInvalidArgument());
  EXPECT_TRUE(GpuSession::Create(nullptr).status().IsInvalidArgument());
}

}  // namespace
}  // namespace kvtier
