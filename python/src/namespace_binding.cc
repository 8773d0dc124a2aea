// Namespace, Lease, PendingLookup: lookups, the scheduler-side calls, and the
// CPU path (canonical blocks and paged pools in host memory).
#include <pybind11/stl.h>

#include <cstring>

#include "loader/cpu_copy.h"
#include "loader/paged_transfer.h"
#include "engine_adapter/gpu_plan.h"
#include "eviction/policy.h"
#include "python/src/errors.h"
#include "python/src/objects.h"
#include "tiers/checksum.h"

namespace kvtier::py {

namespace {

const char* TierName(TierKind t) { return TierKindName(t); }

pyb::object MakeLease(const PyNamespace& ns, ClientLease lease) {
  auto l = std::make_unique<PyLease>();
  l->worker = ns.worker;
  l->namespace_id = ns.ns->id();
  l->lease = std::make_shared<ClientLease>(std::move(lease));
  return pyb::cast(std::move(l));
}

// A C-contiguous CPU buffer of at least `bytes` bytes, writable when asked.
ArrayView HostBytes(const pyb::handle& obj, const char* what, uint64_t bytes, bool writable) {
  ArrayView v = ReadArray(obj, what);
  if (v.device != ArrayDevice::kCpu)
    RaiseInvalid(std::string(what) + " is in CUDA memory: the CPU path takes host arrays "
                 "(use a GpuSession for device memory)");
  if (!v.c_contiguous())
    RaiseInvalid(std::string(what) + " is not C-contiguous (strides " + v.StridesString() + ")");
  if (writable && v.readonly) RaiseInvalid(std::string(what) + " is read-only");
  const uint64_t have = static_cast<uint64_t>(v.numel()) * v.itemsize;
  if (have != bytes)
    RaiseInvalid(std::string(what) + " holds " + std::to_string(have) + " bytes; expected " +
                 std::to_string(bytes));
  return v;
}

// Checks that `pool` suits the CPU path of `ns`.
const PyPool& CpuPool(const pyb::handle& obj, const ClientNamespace& ns, bool load) {
  const PyPool& p = PoolOf(obj);
  if (p.device != ArrayDevice::kCpu)
    RaiseInvalid("the pool is on " + p.DeviceString() +
                 ": Namespace.load/store move host memory; use GpuSession.load/store");
  if (load && p.readonly) RaiseInvalid("the pool is read-only: a load writes into it");
  Check(CheckPoolMatchesLayout(p.pool, ns.spec().layout));
  return p;
}

Status CpuLoadPages(Client& client, const ClientNamespace& ns, const ClientLease& lease,
                    const KvPool& pool, const std::vector<uint32_t>& pages) {
  const uint64_t bb = ns.block_bytes();
  std::vector<BlockRef> refs(pages.size());
  std::vector<uint64_t> sums(pages.size(), 0), expected(pages.size());
  for (size_t i = 0; i < pages.size(); ++i) {
    const RemoteBlock& b = lease.blocks()[i];
    if (b.tier != TierKind::kHost)
      return Status::Unavailable("block " + std::to_string(i) + " is in the " + TierKindName(b.tier) +
                                 " tier; the CPU path loads host blocks (use a GpuSession)");
    if (b.size != bb || b.offset + b.size > client.segment_bytes())
      return Status::Corruption("block " + std::to_string(i) + " lies outside the host segment");
    refs[i] = BlockRef{client.segment_base() + b.offset, pages[i], 0};
    expected[i] = b.checksum;
  }
  PagedTransfer t{&pool, refs, TransferDirection::kLoad};
  t.checksum_sums = sums.data();
  KVTIER_RETURN_IF_ERROR(CpuCopy(t));
  return VerifyBlockChecksums(sums, expected, bb);
}

Result<StoreResult> CpuStorePages(ClientNamespace& ns, const std::vector<BlockKey>& keys,
                                  const KvPool& pool, const std::vector<uint32_t>& pages,
                                  const StoreOptions& options) {
  KVTIER_ASSIGN_OR_RETURN(ClientTxn txn, ns.Reserve(keys, options));
  StoreResult r;
  std::vector<BlockRef> refs;
  std::vector<size_t> slot_of;
  for (size_t i = 0; i < txn.slots().size(); ++i) {
    const auto& s = txn.slots()[i];
    switch (s.outcome) {
      case ReserveOutcome::kReserved:
        if (s.data == nullptr)
          return Status::Unavailable(std::string("the daemon stores into its ") + TierKindName(s.tier) +
                                     " tier; write those slots with a GpuSession");  // txn aborts
        refs.push_back(BlockRef{s.data, pages[i], 0});
        slot_of.push_back(i);
        break;
      case ReserveOutcome::kPresent: ++r.present; break;
      case ReserveOutcome::kInFlight: ++r.in_flight; break;
      case ReserveOutcome::kNoSpace: ++r.no_space; break;
    }
  }
  if (refs.empty()) return r;
  std::vector<uint64_t> sums(refs.size(), 0), all(txn.slots().size(), 0);
  PagedTransfer t{&pool, refs, TransferDirection::kStore};
  t.checksum_sums = sums.data();
  KVTIER_RETURN_IF_ERROR(CpuCopy(t));
  for (size_t j = 0; j < refs.size(); ++j)
    all[slot_of[j]] = checksum::Finalize(sums[j], pool.block_bytes());
  KVTIER_RETURN_IF_ERROR(txn.Commit(all));
  r.stored = refs.size();
  return r;
}

NamespaceSpec MakeSpec(const std::string& model_id, uint32_t num_layers, uint32_t num_kv_heads,
                       uint32_t head_dim, uint32_t tokens_per_block, const std::string& dtype,
                       uint32_t planes, const std::string& model_revision, uint32_t tp_rank,
                       uint32_t tp_size, const pyb::object& tenant_salt, const std::string& hash_mode) {
  NamespaceSpec s;
  s.model_id = model_id;
  s.model_revision = model_revision;
  s.layout.num_layers = num_layers;
  s.layout.num_kv_heads = num_kv_heads;
  s.layout.head_dim = head_dim;
  s.layout.tokens_per_block = tokens_per_block;
  s.layout.planes = planes;
  s.layout.dtype = Take(ParseDType(dtype == "bfloat16" ? "bf16" : dtype == "float16" ? "fp16" : dtype));
  s.tp_rank = tp_rank;
  s.tp_size = tp_size;
  if (!tenant_salt.is_none()) {
    if (pyb::isinstance<pyb::bytes>(tenant_salt)) {
      s.tenant_salt = tenant_salt.cast<std::string>();
    } else {
      s.tenant_salt = pyb::str(tenant_salt).cast<std::string>();
    }
  }
  s.hash_mode = Take(ParseHashMode(hash_mode));
  Check(s.Validate());
  return s;
}

// The extra bytes of block i (docs/hashing.md): None, one bytes for every
// block, or a sequence with one entry (bytes or None) per block.
std::vector<std::string> ToExtras(const pyb::handle& extra, size_t blocks) {
  std::vector<std::string> out(blocks);
  if (extra.is_none()) return out;
  if (pyb::isinstance<pyb::bytes>(extra) || pyb::isinstance<pyb::str>(extra)) {
    const std::string e = pyb::isinstance<pyb::bytes>(extra) ? extra.cast<std::string>()
                                                             : pyb::str(extra).cast<std::string>();
    for (auto& s : out) s = e;
    return out;
  }
  pyb::sequence seq = pyb::reinterpret_borrow<pyb::sequence>(extra);
  if (seq.size() < blocks)
    RaiseInvalid("extra: " + std::to_string(seq.size()) + " entries for " + std::to_string(blocks) +
                 " full blocks (give one per block, or one bytes for all)");
  for (size_t i = 0; i < blocks; ++i) {
    pyb::object o = seq[i];
    if (o.is_none()) continue;
    out[i] = pyb::isinstance<pyb::bytes>(o) ? o.cast<std::string>() : pyb::str(o).cast<std::string>();
  }
  return out;
}

}  // namespace

void PyLease::CheckUsable(const PyNamespace& ns) const {
  if (released || !lease) RaiseInvalid("the lease was released: look the keys up again");
  if (namespace_id != ns.ns->id())
    RaiseInvalid("the lease comes from namespace " + std::to_string(namespace_id) +
                 ", not from namespace " + std::to_string(ns.ns->id()));
}

void BindNamespace(pyb::module_& m) {
  pyb::class_<PyNamespace> nscls(m, "Namespace", R"doc(
One model's KV space in the daemon: model identity, KV layout, TP shard and
tenant salt (docs/hashing.md). Made by Client.open_namespace(). Keys from one
namespace never meet another's.

The scheduler-side calls an engine connector needs:
  probe(keys)          longest cached prefix, where each block lives; pins nothing
  lookup(keys)         longest cached prefix, pinned (a Lease) until released
  start_lookup(keys)   the same without waiting (a PendingLookup)
  touch(keys)          marks the cached prefix recently used
  store*/load*         with priorities (0-100) and retention per key range)doc");
  nscls
      .def_property_readonly("id", [](const PyNamespace& n) { return n.ns->id(); }, "The daemon's id for it.")
      .def_property_readonly("block_bytes", [](const PyNamespace& n) { return n.ns->block_bytes(); },
                             "Bytes of one canonical block: layers x 2 x tokens_per_block x kv_heads x head_dim x dtype size.")
      .def_property_readonly("seed", [](const PyNamespace& n) { return n.ns->hasher().seed(); },
                             "k_{-1}: the key before a prompt's first block.")
      .def_property_readonly("tokens_per_block", [](const PyNamespace& n) { return n.ns->spec().layout.tokens_per_block; }, "Tokens per block.")
      .def_property_readonly("spec", [](const PyNamespace& n) {
             const NamespaceSpec& s = n.ns->spec();
             pyb::dict d;
             d["model_id"] = s.model_id;
             d["model_revision"] = s.model_revision;
             d["num_layers"] = s.layout.num_layers;
             d["num_kv_heads"] = s.layout.num_kv_heads;
             d["head_dim"] = s.layout.head_dim;
             d["tokens_per_block"] = s.layout.tokens_per_block;
             d["dtype"] = std::string(DTypeName(s.layout.dtype));
             d["planes"] = s.layout.planes;
             d["tp_rank"] = s.tp_rank;
             d["tp_size"] = s.tp_size;
             d["salted"] = !s.tenant_salt.empty();
             d["hash_mode"] = std::string(HashModeName(s.hash_mode));
             return d;
           }, "The namespace spec as a dict (the tenant salt itself is not repeated).")
      .def_property("device", [](const PyNamespace& n) { return n.ns->device(); },
                    [](PyNamespace& n, int d) {
                      pyb::gil_scoped_release rel;
                      n.worker->Call([&] { n.ns->set_device(d); });
                    },
                    "The CUDA device of this namespace's engine (-1: none). The daemon stores "
                    "into and promotes hits to that GPU's HBM tier. A GpuSession store binds an "
                    "unbound namespace to its GPU.")
      .def("hash_tokens", [](const PyNamespace& n, const pyb::object& tokens, const pyb::object& prev,
                             const pyb::object& extra) {
             std::vector<uint32_t> t = ToU32(tokens, "tokens");
             const KeyHasher& h = n.ns->hasher();
             const size_t tpb = h.tokens_per_block();
             const size_t blocks = t.size() / tpb;
             std::vector<std::string> ex = ToExtras(extra, blocks);
             if (!prev.is_none() && !pyb::isinstance<BlockKey>(prev))
               throw pyb::type_error("prev: expected a kvtier.Key or None");
             BlockKey k = prev.is_none() ? h.seed() : prev.cast<BlockKey>();
             std::vector<BlockKey> out;
             out.reserve(blocks);
             {
               pyb::gil_scoped_release rel;
               for (size_t i = 0; i < blocks; ++i) {
                 k = ChainKey(h.mode(), k, std::span<const uint32_t>(t.data() + i * tpb, tpb),
                              std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(ex[i].data()), ex[i].size()));
                 out.push_back(k);
               }
             }
             return out;
           },
           pyb::arg("tokens"), pyb::arg("prev") = pyb::none(), pyb::arg("extra") = pyb::none(), R"doc(
Keys of the full blocks of `tokens` (ints 0..2^32-1, a list or a 1-D integer
array), computed here (docs/hashing.md); a trailing partial block gets none.
prev: the key before tokens[0] (None: the namespace seed, a prompt's start).
extra: per-block extra bytes (LoRA id, multimodal hashes): None, one bytes for
every block, or a list with one bytes (or None) per full block.)doc")
      .def("hash_tokens_remote", [](PyNamespace& n, const pyb::object& tokens) {
             std::vector<uint32_t> t = ToU32(tokens, "tokens");
             pyb::gil_scoped_release rel;
             return Take(n.worker->Call([&] { return n.ns->HashTokensRemote(t); }));
           }, pyb::arg("tokens"), "The same keys, computed by the daemon (one round trip): a check of local hashing.")
      .def("probe", [](PyNamespace& n, const pyb::object& keys) {
             std::vector<BlockKey> k = ToKeys(keys);
             std::vector<TierKind> tiers;
             {
               pyb::gil_scoped_release rel;
               tiers = Take(n.worker->Call([&] { return n.ns->Probe(k); }));
             }
             std::vector<std::string> out;
             for (TierKind t : tiers) out.push_back(TierName(t));
             return out;
           }, pyb::arg("keys"), R"doc(
The longest cached prefix of `keys`, as the tier of each block ('hbm',
'host', 'nvme'); its length is the number of blocks a lookup would find now.
Pins, touches, counts and promotes nothing (one round trip): the scheduler's
"how much is cached" (vLLM's OffloadingManager.lookup). May be stale by the
time of the lookup.)doc")
      .def("lookup", [](PyNamespace& n, const pyb::object& keys) {
             std::vector<BlockKey> k = ToKeys(keys);
             ClientLease lease;
             {
               pyb::gil_scoped_release rel;
               lease = Take(n.worker->Call([&] { return n.ns->Lookup(k); }));
             }
             return MakeLease(n, std::move(lease));
           }, pyb::arg("keys"), R"doc(
The longest cached prefix of `keys`, pinned: a Lease (empty on a miss) that
keeps its blocks from eviction until released (release(), leaving a `with`
block, or the object dying). Blocks on NVMe are first read into host slots
(the answer waits for them). vLLM's prepare_load.)doc")
      .def("start_lookup", [](PyNamespace& n, const pyb::object& keys) {
             std::vector<BlockKey> k = ToKeys(keys);
             auto p = std::make_unique<PyPendingLookup>();
             p->worker = n.worker;
             p->namespace_id = n.ns->id();
             {
               pyb::gil_scoped_release rel;
               p->pending = std::make_shared<PendingLookup>(Take(n.worker->Call([&] { return n.ns->StartLookup(k); })));
             }
             return p;
           }, pyb::arg("keys"), R"doc(
Sends a lookup and returns at once with a PendingLookup; wait() gives the
Lease. Several may be in flight; dropping one unanswered cancels it (the
daemon releases what it pinned for it).)doc")
      .def("touch", [](PyNamespace& n, const pyb::object& keys) {
             std::vector<BlockKey> k = ToKeys(keys);
             pyb::gil_scoped_release rel;
             return n.worker->Call([&]() -> size_t {
               ClientLease l = Take(n.ns->Lookup(k));
               const size_t got = l.size();
               Check(l.Release());
               return got;
             });
           }, pyb::arg("keys"), R"doc(
Marks the cached prefix of `keys` as just used (its blocks move to the
recent end of their tier's eviction order) and returns its length. It is a
lookup released at once: it counts as an acquire in the daemon's stats and,
like any lookup, reads NVMe-resident blocks of the prefix back into host
memory. vLLM's OffloadingManager.touch.)doc")
      .def("store_blocks", [](PyNamespace& n, const pyb::object& keys, const pyb::object& data, int priority,
                              double duration_s, const pyb::object& ranges, const pyb::object& first_parent) {
             std::vector<BlockKey> k = ToKeys(keys);
             const uint64_t bb = n.ns->block_bytes();
             ArrayView v = HostBytes(data, "data", bb * k.size(), false);
             StoreOptions o = ToStoreOptions(priority, duration_s, ranges, first_parent, k.size());
             std::vector<const uint8_t*> payloads(k.size());
             for (size_t i = 0; i < k.size(); ++i) payloads[i] = static_cast<const uint8_t*>(v.data) + i * bb;
             pyb::gil_scoped_release rel;
             return Take(n.worker->Call([&] { return n.ns->Store(k, payloads, o); }));
           },
           pyb::arg("keys"), pyb::arg("data"), pyb::kw_only(), pyb::arg("priority") = kDefaultPriority,
           pyb::arg("duration_s") = 0.0, pyb::arg("ranges") = pyb::none(), pyb::arg("first_parent") = pyb::none(),
           R"doc(
Stores canonical blocks: `data` is a C-contiguous host array of exactly
len(keys) * block_bytes bytes, block i at i * block_bytes (the canonical
order [layer][K, V][token][kv_head][head_dim]). Reserve, copy, checksum,
commit. Keys already cached or being written by someone else are counted,
not written. priority 0..100 (default 35) holds for `duration_s` seconds (0:
for ever); ranges: [(begin, end, priority[, duration_s])] over key indices.
first_parent: the key before keys[0] when keys do not start a prompt.
Returns a StoreResult.)doc")
      .def("load_blocks", [](PyNamespace& n, PyLease& lease, const pyb::object& out, const pyb::object& count) {
             lease.CheckUsable(n);
             const size_t cnt = count.is_none() ? lease.lease->size() : count.cast<size_t>();
             if (cnt > lease.lease->size())
               RaiseInvalid("count = " + std::to_string(cnt) + " but the lease has " +
                            std::to_string(lease.lease->size()) + " blocks");
             const uint64_t bb = n.ns->block_bytes();
             pyb::object dst = out.is_none() ? pyb::object(pyb::bytearray(std::string(cnt * bb, '\0'))) : out;
             ArrayView v = HostBytes(dst, "out", cnt * bb, true);
             std::vector<uint8_t*> ptrs(cnt);
             for (size_t i = 0; i < cnt; ++i) ptrs[i] = static_cast<uint8_t*>(v.data) + i * bb;
             {
               pyb::gil_scoped_release rel;
               Check(n.worker->Call([&] { return n.ns->Load(*lease.lease, ptrs); }));
             }
             return dst;
           },
           pyb::arg("lease"), pyb::arg("out") = pyb::none(), pyb::arg("count") = pyb::none(), R"doc(
Copies the lease's first `count` blocks (default: all) into `out`, a
C-contiguous writable host array of exactly count * block_bytes bytes (None:
a new bytearray), verifying each block's checksum. Returns `out`. Raises
Corruption naming the first bad block, Unavailable for blocks not in host
memory, InvalidArgument for a released lease or a wrong-sized buffer.)doc")
      .def("store", [](PyNamespace& n, const pyb::object& keys, const pyb::object& pool, const pyb::object& pages,
                       int priority, double duration_s, const pyb::object& ranges, const pyb::object& first_parent) {
             std::vector<BlockKey> k = ToKeys(keys);
             const PyPool& p = CpuPool(pool, *n.ns, false);
             std::vector<uint32_t> pg = ToPages(pages, p.pool.shape.num_pages, false);
             if (pg.size() != k.size())
               RaiseInvalid(std::to_string(k.size()) + " keys but " + std::to_string(pg.size()) + " pages");
             StoreOptions o = ToStoreOptions(priority, duration_s, ranges, first_parent, k.size());
             pyb::gil_scoped_release rel;
             return Take(n.worker->Call([&] { return CpuStorePages(*n.ns, k, p.pool, pg, o); }));
           },
           pyb::arg("keys"), pyb::arg("pool"), pyb::arg("pages"), pyb::kw_only(), pyb::arg("priority") = kDefaultPriority,
           pyb::arg("duration_s") = 0.0, pyb::arg("ranges") = pyb::none(), pyb::arg("first_parent") = pyb::none(),
           R"doc(
Stores pages of a host-memory KvPool: block keys[i] from page pages[i]
(scatter into reserved slots, checksums, commit). Options as store_blocks.
Returns a StoreResult. For CUDA pools use GpuSession.store.)doc")
      .def("load", [](PyNamespace& n, PyLease& lease, const pyb::object& pool, const pyb::object& pages) {
             lease.CheckUsable(n);
             const PyPool& p = CpuPool(pool, *n.ns, true);
             std::vector<uint32_t> pg = ToPages(pages, p.pool.shape.num_pages, true);
             if (pg.size() > lease.lease->size())
               RaiseInvalid(std::to_string(pg.size()) + " pages for a lease of " +
                            std::to_string(lease.lease->size()) + " blocks");
             pyb::gil_scoped_release rel;
             Check(n.worker->Call([&] { return CpuLoadPages(*n.client, *n.ns, *lease.lease, p.pool, pg); }));
           },
           pyb::arg("lease"), pyb::arg("pool"), pyb::arg("pages"), R"doc(
Loads lease blocks [0, len(pages)) into pages[i] of a host-memory KvPool and
verifies every checksum (Corruption names the first bad block; treat it and
the rest as a miss). Pages must be distinct and < pool.num_pages.)doc")
      .def("stats", [](PyNamespace& n) {
             RemoteStats s;
             {
               pyb::gil_scoped_release rel;
               s = Take(n.worker->Call([&] { return n.ns->Stats(); }));
             }
             return StatsObject(s);
           }, "The daemon's stats, as Client.stats().")
      .def("__repr__", [](const PyNamespace& n) {
        return "kvtier.Namespace(" + std::to_string(n.ns->id()) + ", '" + n.ns->spec().model_id + "', " +
               n.ns->spec().layout.ToString() + ")";
      });

  // Client.open_namespace
  auto client = pyb::reinterpret_borrow<pyb::class_<PyClient>>(m.attr("Client"));
  client.def("open_namespace",
             [](PyClient& c, const std::string& model_id, uint32_t num_layers, uint32_t num_kv_heads,
                uint32_t head_dim, uint32_t tokens_per_block, const std::string& dtype, uint32_t planes,
                const std::string& model_revision, uint32_t tp_rank, uint32_t tp_size,
                const pyb::object& tenant_salt, const std::string& hash_mode, int device) {
               NamespaceSpec spec = MakeSpec(model_id, num_layers, num_kv_heads, head_dim, tokens_per_block,
                                             dtype, planes, model_revision, tp_rank, tp_size, tenant_salt,
                                             hash_mode);
               auto n = std::make_unique<PyNamespace>();
               n->worker = c.worker;
               n->client = c.client;
               {
                 pyb::gil_scoped_release rel;
                 auto up = Take(c.worker->Call([&] { return c.client->OpenNamespace(spec); }));
                 up->set_device(device);
                 n->ns = std::shared_ptr<ClientNamespace>(up.release());
               }
               return n;
             },
             pyb::arg("model_id"), pyb::kw_only(), pyb::arg("num_layers"), pyb::arg("num_kv_heads"),
             pyb::arg("head_dim"), pyb::arg("tokens_per_block") = 16, pyb::arg("dtype") = "bf16",
             pyb::arg("planes") = 2, pyb::arg("model_revision") = "", pyb::arg("tp_rank") = 0,
             pyb::arg("tp_size") = 1, pyb::arg("tenant_salt") = pyb::none(), pyb::arg("hash_mode") = "xxh3-128",
             pyb::arg("device") = -1, R"doc(
Opens (or finds) a namespace: the same spec always gives the same one, in any
process. model_id (required, no NUL), model_revision; the KV layout
(num_layers, num_kv_heads, head_dim, tokens_per_block, dtype 'bf16' | 'fp16' |
'fp8', planes: 2 = K and V); the TP shard (tp_rank < tp_size); tenant_salt
(str or bytes: isolates a tenant's keys); hash_mode 'xxh3-128' or 'sha256'
(docs/hashing.md); device: the engine's CUDA device (-1: none). Raises
InvalidArgument for a bad spec.)doc");

  // ---- Lease
  pyb::class_<PyLease>(m, "Lease", R"doc(
Pins on a cached prefix: while it lives, its blocks stay where they are. Use
it as a context manager, or call release(); it is released too when the
object dies, and by the daemon when this process ends. len() is the number of
blocks (0: a miss).)doc")
      .def("__len__", [](const PyLease& l) { return l.released || !l.lease ? 0 : l.lease->size(); })
      .def("__bool__", [](const PyLease& l) { return !l.released && l.lease && !l.lease->empty(); })
      .def_property_readonly("keys", [](const PyLease& l) {
             std::vector<BlockKey> out;
             if (!l.released && l.lease) for (const auto& b : l.lease->blocks()) out.push_back(b.key);
             return out;
           }, "Keys of the pinned blocks, in chain order.")
      .def_property_readonly("tiers", [](const PyLease& l) {
             std::vector<std::string> out;
             if (!l.released && l.lease) for (const auto& b : l.lease->blocks()) out.push_back(TierKindName(b.tier));
             return out;
           }, "Tier of each pinned block: 'hbm' or 'host'.")
      .def_property_readonly("released", [](const PyLease& l) { return l.released; }, "Whether release() was called.")
      .def("release", [](PyLease& l) {
             if (l.released || !l.lease) return;
             l.released = true;
             pyb::gil_scoped_release rel;
             Check(l.worker->Call([&] { return l.lease->Release(); }));
           }, "Releases the pins now and waits for the daemon's answer. Idempotent.")
      .def("__enter__", [](PyLease& l) -> PyLease& { return l; }, pyb::return_value_policy::reference)
      .def("__exit__", [](PyLease& l, const pyb::object&, const pyb::object&, const pyb::object&) {
             if (l.released || !l.lease) return false;
             l.released = true;
             pyb::gil_scoped_release rel;
             Check(l.worker->Call([&] { return l.lease->Release(); }));
             return false;
           })
      .def("__repr__", [](const PyLease& l) {
        return std::string("kvtier.Lease(") + (l.released ? "released" : std::to_string(l.lease ? l.lease->size() : 0) + " blocks") + ")";
      });

  // ---- PendingLookup
  pyb::class_<PyPendingLookup>(m, "PendingLookup", "A lookup sent and not yet answered (Namespace.start_lookup).")
      .def("wait", [](PyPendingLookup& p) {
             if (p.waited) RaiseInvalid("this lookup was waited for already");
             p.waited = true;
             ClientLease lease;
             {
               pyb::gil_scoped_release rel;
               lease = Take(p.worker->Call([&] { return p.pending->Wait(); }));
             }
             auto l = std::make_unique<PyLease>();
             l->worker = p.worker;
             l->namespace_id = p.namespace_id;
             l->lease = std::make_shared<ClientLease>(std::move(lease));
             return l;
           }, "Blocks until the daemon answers; returns the Lease. Once only.");
}

}  // namespace kvtier::py
