// kvtier-python-peer: the C++ side of tests/python/test_gpu.py. It stores a
// vLLM-layout pool read from a file through GpuSession (so that Python loads
// what C++ stored), or loads into a zeroed pool and writes it to a file (so
// that Python checks what C++ loaded from Python's store).
//
//   kvtier-python-peer store|load SOCKET LAYERS HEADS HEAD_DIM PAGES SEED PAGE_MAP FILE
//
// Namespace "test/py-gpu", bf16, 16-token blocks. The prompt's tokens are
// (SEED * 1000003 + i) mod 2^31 (tests/python/kvtier_testlib.py tokens_of);
// PAGE_MAP ("3,0,7") names the pool page of each block, one per block. FILE
// holds the pool: each layer's [2, PAGES, 16, HEADS, HEAD_DIM] tensor in
// turn. Exit status 0 on success, 1 with the reason on stderr.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "engine_adapter/client.h"
#include "engine_adapter/gpu_session.h"
#include "loader/gpu_runtime.h"
#include "loader/kv_pool.h"

namespace {

int Fail(const std::string& what, const kvtier::Status& st) {
  std::fprintf(stderr, "kvtier-python-peer: %s: %s\n", what.c_str(), st.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace kvtier;
  if (argc != 10) {
    std::fprintf(stderr, "usage: %s store|load SOCKET LAYERS HEADS HEAD_DIM PAGES SEED PAGE_MAP FILE\n", argv[0]);
    return 2;
  }
  const std::string role = argv[1], socket = argv[2], file = argv[9];
  const uint32_t layers = std::stoul(argv[3]), heads = std::stoul(argv[4]), dim = std::stoul(argv[5]),
                 pages = std::stoul(argv[6]), seed = std::stoul(argv[7]);
  std::vector<uint32_t> map;
  std::stringstream ss(argv[8]);
  for (std::string item; std::getline(ss, item, ',');) map.push_back(std::stoul(item));

  auto client = Client::Connect(socket);
  if (!client.ok()) return Fail("connect", client.status());
  NamespaceSpec spec;
  spec.model_id = "test/py-gpu";
  spec.layout = KvLayout{layers, heads, dim, 16, DType::kBF16, 2};
  auto ns = (*client)->OpenNamespace(spec);
  if (!ns.ok()) return Fail("namespace", ns.status());
  std::vector<uint32_t> tokens(map.size() * 16);
  for (size_t i = 0; i < tokens.size(); ++i)
    tokens[i] = static_cast<uint32_t>((uint64_t{seed} * 1000003u + i) % (1u << 31));
  const std::vector<BlockKey> keys = (*ns)->HashTokens(tokens);

  auto gpu = GpuSession::Create(client->get());
  if (!gpu.ok()) return Fail("GPU session", gpu.status());
  KvPoolShape shape{KvDtype::kBf16, layers, heads, dim, 16, pages};
  const uint64_t per_layer = PerLayerTensorBytes(shape);
  auto buf = DeviceBuffer::Allocate(per_layer * layers);
  if (!buf.ok()) return Fail("device memory", buf.status());
  std::vector<void*> bases;
  for (uint32_t l = 0; l < layers; ++l) bases.push_back(static_cast<char*>(buf->data()) + l * per_layer);
  auto pool = MakeVllmFlashPool(shape, bases);
  if (!pool.ok()) return Fail("pool", pool.status());
  auto stream = OwnedGpuStream::Create();
  if (!stream.ok()) return Fail("stream", stream.status());
  std::vector<char> host(per_layer * layers);

  if (role == "store") {
    std::ifstream in(file, std::ios::binary);
    if (!in.read(host.data(), static_cast<std::streamsize>(host.size())))
      return Fail("reading " + file, Status::IOError("short file"));
    if (auto st = GpuCopyBytes(buf->data(), host.data(), host.size()); !st.ok()) return Fail("upload", st);
    auto r = (*gpu)->Store(**ns, keys, *pool, map, {}, stream->get());
    if (!r.ok()) return Fail("store", r.status());
    if (r->stored + r->present != keys.size())
      return Fail("store", Status::Internal("stored " + std::to_string(r->stored) + " of " +
                                            std::to_string(keys.size())));
    std::printf("stored %zu\n", r->stored);
    return 0;
  }
  if (role != "load") return Fail("role", Status::InvalidArgument(role));
  if (auto st = GpuFillBytes(buf->data(), 0, host.size()); !st.ok()) return Fail("zero", st);
  auto lease = (*ns)->Lookup(keys);
  if (!lease.ok()) return Fail("lookup", lease.status());
  if (lease->size() != keys.size())
    return Fail("lookup", Status::NotFound("found " + std::to_string(lease->size()) + " of " +
                                           std::to_string(keys.size()) + " blocks"));
  std::string tiers;
  for (const auto& b : lease->blocks()) tiers += std::string(TierKindName(b.tier)) + " ";
  if (auto st = (*gpu)->Load(**ns, *lease, *pool, map, stream->get()); !st.ok()) return Fail("load", st);
  if (auto st = GpuCopyBytes(host.data(), buf->data(), host.size()); !st.ok()) return Fail("download", st);
  std::ofstream out(file, std::ios::binary);
  if (!out.write(host.data(), static_cast<std::streamsize>(host.size())))
    return Fail("writing " + file, Status::IOError("write failed"));
  std::printf("loaded %zu from %s\n", lease->size(), tiers.c_str());
  return 0;
}
