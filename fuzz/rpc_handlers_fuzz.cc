// Fuzzes every RPC handler of kvtierd (server/rpc_service.h) over a real
// cache and host tier, in process: the capabilities are called locally, so
// each call runs the same decoding and validation as over the socket,
// without the transport (fuzzed on its own: socket_framing_fuzz.cc).
//
// The input is a sequence of operations, each one byte that names it and,
// for the raw ones, a 16-bit length and that many bytes taken as a Cap'n
// Proto message whose root is the method's parameter struct (any bytes: the
// reader's own checks apply first). Structured operations build valid
// requests from a few bytes, so that the fuzzer reaches past validation:
// open a namespace, reserve and commit chains, acquire, release, drop.
// Per-connection limits are small, so that their refusals are fuzzed too.
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/async.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "server/kvtier.capnp.h"
#include "server/rpc_service.h"
#include "tests/cache/cache_test_util.h"

namespace {

using namespace kvtier;

struct World {
  kj::EventLoop loop;
  kj::WaitScope ws{loop};
  std::unique_ptr<Cache> cache = testing::MakeCache(16 << 20, 1 << 20);
  RpcMetrics metrics;
  ConnectionLimits limits;
  UidTable uids;
  std::unique_ptr<RpcService> svc;
  World() {
    limits.max_leases = 8;
    limits.max_uid_leases = 12;
    limits.max_txns = 4;
    limits.max_uncommitted_blocks = 64;
    limits.max_priority_ranges = 16;
    HostShmTier* host = nullptr;  // the fuzzer never maps the segment
    RpcServiceOptions o;
    o.max_keys_per_call = 256;
    o.max_tokens_per_call = 4096;
    o.limits = limits;
    svc = std::make_unique<RpcService>(cache.get(), host, &metrics, o);
  }
};

class Input {
 public:
  Input(const uint8_t* d, size_t n) : d_(d), n_(n) {}
  bool empty() const { return n_ == 0; }
  uint8_t Byte() {
    if (n_ == 0) return 0;
    --n_;
    return *d_++;
  }
  uint16_t U16() { return static_cast<uint16_t>(Byte() | (Byte() << 8)); }
  // The next `len` bytes as message words (copied, aligned).
  kj::Array<capnp::word> Words(size_t len) {
    len = std::min(len, n_);
    auto w = kj::heapArray<capnp::word>((len + 7) / 8);
    std::memset(w.begin(), 0, w.size() * 8);
    std::memcpy(w.begin(), d_, len);
    d_ += len;
    n_ -= len;
    return w;
  }

 private:
  const uint8_t* d_;
  size_t n_;
};

template <typename Params, typename Fill>
void Raw(World& w, Input& in, Fill&& fill) {
  auto words = in.Words(in.U16());
  capnp::ReaderOptions ro;
  ro.traversalLimitInWords = 1 << 16;
  ro.nestingLimit = 16;
  kj::runCatchingExceptions([&] {
    capnp::FlatArrayMessageReader reader(words, ro);
    fill(reader.getRoot<Params>());
  });
  (void)w;
}

BlockKey KeyOf(uint8_t chain, uint32_t i) { return BlockKey{0x1000u + chain, i + 1}; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World();
  Input in(data, size);
  auto usage = std::make_shared<ConnectionUsage>(&w->svc->options().limits, &w->metrics.refused,
                                                 w->uids.Get(1000));
  auto boot = w->svc->NewBootstrap(usage).castAs<rpc::KvTier>();
  std::vector<rpc::Namespace::Client> nss;
  std::vector<rpc::Lease::Client> leases;
  std::vector<rpc::StoreTxn::Client> txns;
  auto run = [&](auto&& promise_fn) {
    kj::runCatchingExceptions([&] { promise_fn(); });
  };
  auto pick_ns = [&]() -> rpc::Namespace::Client* {
    if (nss.empty()) return nullptr;
    return &nss[in.Byte() % nss.size()];
  };
  for (int ops = 0; !in.empty() && ops < 64; ++ops) {
    const uint8_t op = in.Byte() % 16;
    switch (op) {
      case 0:
        Raw<rpc::NamespaceSpec>(*w, in, [&](rpc::NamespaceSpec::Reader spec) {
          auto req = boot.openNamespaceRequest();
          req.setSpec(spec);
          auto r = req.send().wait(w->ws);
          if (nss.size() < 8) nss.push_back(r.getNs());
        });
        break;
      case 1: run([&] { boot.hostSegmentRequest().send().wait(w->ws); }); break;
      case 2: run([&] { boot.statsRequest().send().wait(w->ws); }); break;
      case 3: run([&] { boot.pingRequest().send().wait(w->ws); }); break;
      case 4:
        run([&] {
          auto req = boot.hbmSegmentRequest();
          req.setDevice(static_cast<int8_t>(in.Byte()));
          req.send().wait(w->ws);
        });
        break;
      case 5:
        Raw<rpc::KvTier::AcquireTpParams>(*w, in, [&](rpc::KvTier::AcquireTpParams::Reader p) {
          auto req = boot.acquireTpRequest();
          req.setRanks(p.getRanks());
          auto r = req.send().wait(w->ws);
          for (auto x : r.getResults())
            if (leases.size() < 16) leases.push_back(x.getLease());
        });
        break;
      case 6:
        if (auto* ns = pick_ns())
          Raw<rpc::Namespace::AcquireParams>(*w, in, [&](rpc::Namespace::AcquireParams::Reader p) {
            auto req = ns->acquireRequest();
            req.setKeys(p.getKeys());
            req.setDevice(p.getDevice());
            auto r = req.send().wait(w->ws);
            if (leases.size() < 16) leases.push_back(r.getLease());
          });
        break;
      case 7:
        if (auto* ns = pick_ns())
          Raw<rpc::Namespace::ReserveParams>(*w, in, [&](rpc::Namespace::ReserveParams::Reader p) {
            auto req = ns->reserveRequest();
            req.setKeys(p.getKeys());
            req.setSizes(p.getSizes());
            req.setPriority(p.getPriority());
            req.setDurationMs(p.getDurationMs());
            req.setRanges(p.getRanges());
            if (p.hasFirstParent()) req.setFirstParent(p.getFirstParent());
            req.setDevice(p.getDevice());
            auto r = req.send().wait(w->ws);
            if (txns.size() < 8) txns.push_back(r.getTxn());
          });
        break;
      case 8:
        if (auto* ns = pick_ns())
          Raw<rpc::Namespace::HashTokensParams>(*w, in,
                                                [&](rpc::Namespace::HashTokensParams::Reader p) {
            auto req = ns->hashTokensRequest();
            req.setTokens(p.getTokens());
            if (p.hasPrev()) req.setPrev(p.getPrev());
            req.send().wait(w->ws);
          });
        break;
      case 9:
        if (auto* ns = pick_ns())
          Raw<rpc::Namespace::ProbeParams>(*w, in, [&](rpc::Namespace::ProbeParams::Reader p) {
            auto req = ns->probeRequest();
            req.setKeys(p.getKeys());
            req.send().wait(w->ws);
          });
        break;
      case 10:  // a valid namespace: 4 KiB blocks, or 8 KiB
        run([&] {
          auto req = boot.openNamespaceRequest();
          auto s = req.initSpec();
          s.setModelId(in.Byte() & 1 ? "fuzz/a" : "fuzz/b");
          s.setNumLayers(1 + (in.Byte() & 1));
          s.setNumKvHeads(1);
          s.setHeadDim(64);
          s.setTokensPerBlock(16);
          s.setDtype(rpc::DType::BF16);
          auto r = req.send().wait(w->ws);
          if (nss.size() < 8) nss.push_back(r.getNs());
        });
        break;
      case 11:  // reserve a chain of 1..16 keys with ranges, valid sizes
        if (auto* ns = pick_ns())
          run([&] {
            const uint8_t chain = in.Byte(), n = 1 + in.Byte() % 16, nr = in.Byte() % 20;
            auto st = ns->statsRequest().send().wait(w->ws);
            (void)st;
            auto req = ns->reserveRequest();
            auto keys = req.initKeys(n);
            auto sizes = req.initSizes(n);
            const uint64_t bytes = (in.Byte() & 1) ? 8192 : 4096;
            for (uint32_t i = 0; i < n; ++i) {
              keys[i].setLo(KeyOf(chain, i).lo);
              keys[i].setHi(KeyOf(chain, i).hi);
              sizes.set(i, bytes);
            }
            req.setPriority(in.Byte() % 128);
            auto ranges = req.initRanges(nr);
            for (uint32_t r = 0; r < nr; ++r) {
              ranges[r].setBegin(in.Byte() % 20);
              ranges[r].setEnd(in.Byte() % 20);
              ranges[r].setPriority(in.Byte() % 110);
              ranges[r].setDurationMs(in.Byte());
            }
            auto r = req.send().wait(w->ws);
            if (txns.size() < 8) txns.push_back(r.getTxn());
          });
        break;
      case 12:  // commit, with as many checksums as asked
        if (!txns.empty()) {
          auto& t = txns[in.Byte() % txns.size()];
          const uint8_t n = in.Byte() % 18;
          run([&] {
            auto req = t.commitRequest();
            auto sums = req.initChecksums(n);
            for (uint32_t i = 0; i < n; ++i) sums.set(i, in.Byte());
            req.send().wait(w->ws);
          });
        }
        break;
      case 13:
        if (!txns.empty()) run([&] { txns[in.Byte() % txns.size()].abortRequest().send().wait(w->ws); });
        break;
      case 14:  // acquire a chain
        if (auto* ns = pick_ns())
          run([&] {
            const uint8_t chain = in.Byte(), n = 1 + in.Byte() % 16;
            auto req = ns->acquireRequest();
            auto keys = req.initKeys(n);
            for (uint32_t i = 0; i < n; ++i) {
              keys[i].setLo(KeyOf(chain, i).lo);
              keys[i].setHi(KeyOf(chain, i).hi);
            }
            auto r = req.send().wait(w->ws);
            if (leases.size() < 16) leases.push_back(r.getLease());
          });
        break;
      case 15: {  // release or drop something
        const uint8_t what = in.Byte();
        if ((what & 3) == 0 && !leases.empty()) {
          auto& l = leases[what % leases.size()];
          run([&] { l.releaseRequest().send().wait(w->ws); });
        } else if ((what & 3) == 1 && !leases.empty()) {
          leases.pop_back();
        } else if ((what & 3) == 2 && !txns.empty()) {
          txns.pop_back();
        } else if (!nss.empty()) {
          nss.pop_back();
        }
        break;
      }
    }
  }
  // Dropped with the connection: leases released, transactions aborted.
  leases.clear();
  txns.clear();
  nss.clear();
  boot = nullptr;
  w->loop.run();
  if (usage->leases() != 0 || usage->txns() != 0) __builtin_trap();
  return 0;
}
