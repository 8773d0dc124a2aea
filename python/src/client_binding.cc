// The module `kvtier._kvtier`: errors, Key, KvPool, StoreResult, Stats, Client
// (the rest: namespace_binding.cc, gpu_binding.cc). Docstrings here are the
// reference; python/kvtier/__init__.pyi repeats the signatures for type
// checkers.
#include <pybind11/stl.h>

#include <Python.h>

#include <cstdlib>
#include <unistd.h>

#include "eviction/policy.h"
#include "loader/gpu_runtime.h"
#include "python/src/errors.h"
#include "python/src/objects.h"

namespace kvtier::py {

namespace {

std::string DefaultSocket() {
  if (const char* s = std::getenv("KVTIER_SOCKET"); s != nullptr && *s) return s;
  if (const char* r = std::getenv("XDG_RUNTIME_DIR"); r != nullptr && *r && access(r, W_OK) == 0)
    return std::string(r) + "/kvtier.sock";
  return "./kvtier-data/kvtier.sock";
}

pyb::object TierStatsObject(const RemoteStats::Tier& t) {
  pyb::dict d;
  d["name"] = t.name;
  d["capacity_bytes"] = t.capacity_bytes;
  d["used_bytes"] = t.used_bytes;
  d["blocks"] = t.blocks;
  d["hits"] = t.hits;
  d["evictions"] = t.evictions;
  return d;
}

pyb::object NamespaceStatsObject(const RemoteStats::Namespace& n) {
  pyb::dict d;
  d["id"] = n.id;
  d["model_id"] = n.model_id;
  d["model_revision"] = n.model_revision;
  d["tp_rank"] = n.tp_rank;
  d["tp_size"] = n.tp_size;
  d["block_bytes"] = n.block_bytes;
  d["salted"] = n.salted;
  d["blocks"] = n.blocks;
  d["bytes"] = n.bytes;
  d["hits"] = n.hits;
  d["evictions"] = n.evictions;
  return d;
}

}  // namespace

pyb::object StatsObject(const RemoteStats& s) {
  pyb::dict d;
  d["blocks_ready"] = s.blocks_ready;
  d["blocks_writing"] = s.blocks_writing;
  d["pinned_blocks"] = s.pinned_blocks;
  d["acquires"] = s.acquires;
  d["blocks_hit"] = s.blocks_hit;
  d["blocks_missed"] = s.blocks_missed;
  d["commits"] = s.commits;
  d["aborts"] = s.aborts;
  d["leases_open"] = s.leases_open;
  d["txns_open"] = s.txns_open;
  d["connections_open"] = s.connections_open;
  pyb::list tiers, nss;
  for (const auto& t : s.tiers) tiers.append(TierStatsObject(t));
  for (const auto& n : s.namespaces) nss.append(NamespaceStatsObject(n));
  d["tiers"] = tiers;
  d["namespaces"] = nss;
  return d;
}

std::vector<BlockKey> ToKeys(const pyb::handle& keys, const char* what) {
  if (!pyb::isinstance<pyb::sequence>(keys) || pyb::isinstance<pyb::str>(keys))
    throw pyb::type_error(std::string(what) + ": expected a sequence of kvtier.Key");
  pyb::sequence seq = pyb::reinterpret_borrow<pyb::sequence>(keys);
  std::vector<BlockKey> out;
  out.reserve(seq.size());
  for (size_t i = 0; i < seq.size(); ++i) {
    pyb::object k = seq[i];
    if (!pyb::isinstance<BlockKey>(k))
      throw pyb::type_error(std::string(what) + "[" + std::to_string(i) + "]: expected a kvtier.Key, got " +
                            pyb::str(pyb::type::handle_of(k).attr("__name__")).cast<std::string>());
    out.push_back(k.cast<BlockKey>());
  }
  return out;
}

std::vector<uint32_t> ToU32(const pyb::handle& values, const char* what) {
  std::vector<uint32_t> out;
  auto put = [&](long long v, size_t i) {
    if (v < 0 || v > static_cast<long long>(UINT32_MAX))
      RaiseInvalid(std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(v) +
                   " is outside 0 .. 2^32 - 1");
    out.push_back(static_cast<uint32_t>(v));
  };
  const bool array = !pyb::isinstance<pyb::list>(values) && !pyb::isinstance<pyb::tuple>(values) &&
                     !pyb::isinstance<pyb::bytes>(values) && !pyb::isinstance<pyb::bytearray>(values) &&
                     (PyObject_CheckBuffer(values.ptr()) || pyb::hasattr(values, "__dlpack__"));
  if (array) {  // numpy, torch CPU tensors: read in place
    ArrayView v = ReadArray(values, what);
    if (v.device != ArrayDevice::kCpu)
      RaiseInvalid(std::string(what) + ": expected host memory, got a CUDA array");
    if (v.shape.size() != 1)
      RaiseInvalid(std::string(what) + ": expected a 1-D array, got shape " + v.ShapeString());
    if (v.kind != ElemKind::kInt && v.kind != ElemKind::kUInt)
      RaiseInvalid(std::string(what) + ": expected integers, got " + v.dtype);
    out.reserve(static_cast<size_t>(v.shape[0]));
    const char* p = static_cast<const char*>(v.data);
    for (int64_t i = 0; i < v.shape[0]; ++i, p += v.strides[0]) {
      long long x = 0;
      const bool s = v.kind == ElemKind::kInt;
      switch (v.itemsize) {
        case 1: x = s ? *reinterpret_cast<const int8_t*>(p) : *reinterpret_cast<const uint8_t*>(p); break;
        case 2: x = s ? *reinterpret_cast<const int16_t*>(p) : *reinterpret_cast<const uint16_t*>(p); break;
        case 4: x = s ? *reinterpret_cast<const int32_t*>(p) : *reinterpret_cast<const uint32_t*>(p); break;
        case 8: {
          if (s) {
            x = *reinterpret_cast<const int64_t*>(p);
          } else {
            const uint64_t u = *reinterpret_cast<const uint64_t*>(p);
            x = u > UINT32_MAX ? -1 : static_cast<long long>(u);
          }
          break;
        }
        default: RaiseInvalid(std::string(what) + ": unsupported integer size");
      }
      put(x, static_cast<size_t>(i));
    }
    return out;
  }
  if (!pyb::isinstance<pyb::sequence>(values) || pyb::isinstance<pyb::str>(values))
    throw pyb::type_error(std::string(what) + ": expected a sequence of ints or a 1-D integer array");
  pyb::sequence seq = pyb::reinterpret_borrow<pyb::sequence>(values);
  out.reserve(seq.size());
  for (size_t i = 0; i < seq.size(); ++i) {
    pyb::object o = seq[i];
    if (!PyLong_Check(o.ptr()) && !PyIndex_Check(o.ptr()))
      throw pyb::type_error(std::string(what) + "[" + std::to_string(i) + "]: expected an int");
    long long v = 0;
    try {
      v = pyb::int_(o).cast<long long>();
    } catch (const pyb::cast_error&) {
      v = -1;
    }
    put(v, i);
  }
  return out;
}

std::vector<uint32_t> ToPages(const pyb::handle& pages, uint32_t num_pages, bool unique) {
  std::vector<uint32_t> out = ToU32(pages, "pages");
  std::vector<bool> seen(unique ? num_pages : 0, false);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] >= num_pages)
      RaiseInvalid("pages[" + std::to_string(i) + "] = " + std::to_string(out[i]) +
                   " is out of range: the pool has " + std::to_string(num_pages) + " pages");
    if (unique) {
      if (seen[out[i]])
        RaiseInvalid("pages[" + std::to_string(i) + "] = " + std::to_string(out[i]) +
                     " is named twice: a load writes each page once");
      seen[out[i]] = true;
    }
  }
  return out;
}

StoreOptions ToStoreOptions(int priority, double duration_s, const pyb::handle& ranges,
                            const pyb::handle& first_parent, size_t num_keys) {
  StoreOptions o;
  if (priority < 0 || priority > 100)
    RaiseInvalid("priority = " + std::to_string(priority) + " is outside 0 .. 100");
  if (!(duration_s >= 0)) RaiseInvalid("duration_s must be >= 0 (0: for ever)");
  o.priority = static_cast<uint8_t>(priority);
  o.duration_ns = static_cast<uint64_t>(duration_s * 1e9);
  if (!ranges.is_none()) {
    pyb::sequence seq = pyb::reinterpret_borrow<pyb::sequence>(ranges);
    for (size_t i = 0; i < seq.size(); ++i) {
      pyb::sequence r = seq[i];
      if (r.size() != 3 && r.size() != 4)
        RaiseInvalid("ranges[" + std::to_string(i) + "]: expected (begin, end, priority[, duration_s])");
      const long long b = r[0].cast<long long>(), e = r[1].cast<long long>(), p = r[2].cast<long long>();
      const double d = r.size() == 4 ? r[3].cast<double>() : 0.0;
      if (b < 0 || e < b || static_cast<size_t>(e) > num_keys)
        RaiseInvalid("ranges[" + std::to_string(i) + "] = [" + std::to_string(b) + ", " +
                     std::to_string(e) + ") is not a range of the " + std::to_string(num_keys) + " keys");
      if (p < 0 || p > 100)
        RaiseInvalid("ranges[" + std::to_string(i) + "]: priority " + std::to_string(p) +
                     " is outside 0 .. 100");
      if (!(d >= 0)) RaiseInvalid("ranges[" + std::to_string(i) + "]: duration_s must be >= 0");
      o.ranges.push_back(PriorityRange{static_cast<uint32_t>(b), static_cast<uint32_t>(e),
                                       static_cast<uint8_t>(p), static_cast<uint64_t>(d * 1e9)});
    }
  }
  if (!first_parent.is_none()) {
    if (!pyb::isinstance<BlockKey>(first_parent))
      throw pyb::type_error("first_parent: expected a kvtier.Key or None");
    o.first_parent = first_parent.cast<BlockKey>();
  }
  return o;
}

pyb::object MakeStoreResult(const StoreResult& r) { return pyb::cast(r); }

const PyPool& PoolOf(const pyb::handle& obj) {
  if (!pyb::isinstance<PyPool>(obj))
    throw pyb::type_error("pool: expected a kvtier.KvPool (build one with kvtier.KvPool(arrays, layout))");
  return *obj.cast<const PyPool*>();
}

void BindClient(pyb::module_& m) {
  // ---- Key
  pyb::class_<BlockKey>(m, "Key", R"doc(
A 128-bit block key (docs/hashing.md): `lo` and `hi` 64-bit halves. Keys form
a chain: key i covers every token before it, the model, layout, TP shard and
tenant. Hashable and comparable; str() and hex() give the 32 hex digits of the
spec's text form (hi then lo).)doc")
      .def(pyb::init([](uint64_t lo, uint64_t hi) { return BlockKey{lo, hi}; }), pyb::arg("lo"),
           pyb::arg("hi"), "Key(lo, hi) from its two 64-bit halves.")
      .def_readonly("lo", &BlockKey::lo, "Low 64 bits.")
      .def_readonly("hi", &BlockKey::hi, "High 64 bits.")
      .def("hex", &BlockKey::ToHex, "The 32 lowercase hex digits (hi then lo).")
      .def_static("from_hex", [](const std::string& h) { return Take(BlockKey::FromHex(h)); },
                  pyb::arg("text"), "Parses the 32-hex-digit text form. Raises InvalidArgument.")
      .def("__str__", &BlockKey::ToHex)
      .def("__repr__", [](const BlockKey& k) { return "kvtier.Key('" + k.ToHex() + "')"; })
      .def("__eq__", [](const BlockKey& a, const pyb::object& b) {
        return pyb::isinstance<BlockKey>(b) && a == b.cast<BlockKey>();
      })
      .def("__hash__", [](const BlockKey& k) { return static_cast<Py_hash_t>(BlockKeyHash{}(k) & 0x7fffffffffffffffull); })
      .def(pyb::pickle([](const BlockKey& k) { return pyb::make_tuple(k.lo, k.hi); },
                       [](const pyb::tuple& t) { return BlockKey{t[0].cast<uint64_t>(), t[1].cast<uint64_t>()}; }));

  // ---- StoreResult
  pyb::class_<StoreResult>(m, "StoreResult", "What a store did, block by block counts.")
      .def_readonly("stored", &StoreResult::stored, "Blocks written and committed by this call.")
      .def_readonly("present", &StoreResult::present, "Blocks already cached (nothing written).")
      .def_readonly("in_flight", &StoreResult::in_flight, "Blocks another writer is writing.")
      .def_readonly("no_space", &StoreResult::no_space,
                    "Blocks refused: the tier is full of pinned or writing blocks.")
      .def("__repr__", [](const StoreResult& r) {
        return "StoreResult(stored=" + std::to_string(r.stored) + ", present=" + std::to_string(r.present) +
               ", in_flight=" + std::to_string(r.in_flight) + ", no_space=" + std::to_string(r.no_space) + ")";
      });

  // ---- KvPool
  pyb::class_<PyPool>(m, "KvPool", R"doc(
An engine's paged KV pool, given as arrays (numpy or torch CPU arrays for the
CPU path, CUDA tensors for GpuSession), read without copying through DLPack,
__cuda_array_interface__ or the buffer protocol.

KvPool(layers, layout="vllm_flash", dtype=None)

layout and the arrays it takes (P pages, T tokens per page, H KV heads, D head_dim):
  "vllm_flash"      a list, one array per layer, [2, P, T, H, D]
  "flashinfer_nhd"  a list, one array per layer, [P, 2, T, H, D]
  "flashinfer_hnd"  a list, one array per layer, [P, 2, H, T, D]
  "layer_first"     one array [P, L, 2, T, H, D]
  "split_kv"        a list of (K, V) pairs, each [P, T, H, D] (SGLang)
Strides come from the arrays (permuted or sliced allocations are fine) and are
checked against what the loader supports: head_dim contiguous, 16-byte aligned
rows and strides, no overlap, the same strides in every layer (and for
split_kv the same K-to-V distance). dtype: the KV dtype ("bf16", "fp16",
"fp8_e4m3", "fp8_e5m2") where the arrays' own element type does not name it
(numpy has no bfloat16: pass uint16 arrays with dtype="bf16"); when both say
one, they must agree. Raises InvalidArgument or TypeError naming the first
array or dimension at fault. The pool keeps its arrays alive.)doc")
      .def(pyb::init([](const pyb::object& layers, const std::string& layout, const pyb::object& dtype) {
             return MakePool(layers, layout, dtype);
           }),
           pyb::arg("layers"), pyb::arg("layout") = "vllm_flash", pyb::arg("dtype") = pyb::none())
      .def_property_readonly("layout", [](const PyPool& p) { return p.layout; }, "The layout name.")
      .def_property_readonly("device", &PyPool::DeviceString, "'cpu', 'cuda:N' (or 'cuda' where the arrays do not say).")
      .def_property_readonly("num_layers", [](const PyPool& p) { return p.pool.shape.num_layers; }, "Layers.")
      .def_property_readonly("num_pages", [](const PyPool& p) { return p.pool.shape.num_pages; }, "Pages; page ids are < num_pages.")
      .def_property_readonly("tokens_per_page", [](const PyPool& p) { return p.pool.shape.tokens_per_page; }, "Tokens per page (= the namespace's tokens per block).")
      .def_property_readonly("kv_heads", [](const PyPool& p) { return p.pool.shape.kv_heads; }, "KV heads.")
      .def_property_readonly("head_dim", [](const PyPool& p) { return p.pool.shape.head_dim; }, "head_dim.")
      .def_property_readonly("dtype", [](const PyPool& p) { return std::string(KvDtypeName(p.pool.shape.dtype)); }, "The KV dtype.")
      .def_property_readonly("block_bytes", [](const PyPool& p) { return p.pool.block_bytes(); }, "Bytes of one canonical block (one page of every layer).")
      .def_property_readonly("readonly", [](const PyPool& p) { return p.readonly; }, "Whether some array is read-only (loads refuse such a pool).")
      .def_property_readonly("strides", [](const PyPool& p) {
             pyb::dict d;
             d["kv"] = p.pool.kv_stride;
             d["page"] = p.pool.page_stride;
             d["token"] = p.pool.token_stride;
             d["head"] = p.pool.head_stride;
             return d;
           }, "Byte strides the loader uses: kv, page, token, head.")
      .def("__repr__", [](const PyPool& p) {
        return "kvtier.KvPool(" + p.layout + " on " + p.DeviceString() + ": " + p.pool.DebugString() + ")";
      });

  // ---- Client
  pyb::class_<PyClient>(m, "Client", R"doc(
A connection to a running kvtierd (Cap'n Proto over its Unix socket). At
connect the daemon hands over its host segment, which the client maps: loads
and stores move bytes in place, never through the socket.

Client(socket=None) connects; socket None takes $KVTIER_SOCKET, else
$XDG_RUNTIME_DIR/kvtier.sock, else ./kvtier-data/kvtier.sock (as the kvtier
CLI). Raises Unavailable (no daemon there), InvalidArgument (bad path),
IOError (mapping the segment).

Threads: a Client may be used from any thread. Its calls run one at a time on
a thread of its own (the C++ client is bound to one event loop); every call
releases the GIL while it waits. Namespaces, leases and sessions keep the
connection alive: it closes when the Client and all of them are gone (or the
process ends: the daemon then releases every lease and aborts every store).)doc")
      .def(pyb::init([](const pyb::object& socket) {
             auto c = std::make_unique<PyClient>();
             c->socket = socket.is_none() ? DefaultSocket() : pyb::str(socket).cast<std::string>();
             c->worker = std::make_shared<Worker>();
             pyb::gil_scoped_release rel;
             const std::string path = c->socket;
             auto r = c->worker->Call([&] { return Client::Connect(path); });
             if (!r.ok()) Raise(r.status());
             std::unique_ptr<Client> up = std::move(r).value();
             c->client = std::shared_ptr<Client>(up.release());
             return c;
           }),
           pyb::arg("socket") = pyb::none())
      .def_property_readonly("socket", [](const PyClient& c) { return c.socket; }, "The daemon's socket path.")
      .def_property_readonly("segment_bytes", [](const PyClient& c) { return c.client->segment_bytes(); },
                             "Bytes of the daemon's host segment mapped in this process.")
      .def("ping", [](PyClient& c) {
             pyb::gil_scoped_release rel;
             Check(c.worker->Call([&] { return c.client->Ping(); }));
           }, "One round trip to the daemon. Raises Unavailable when it is gone.")
      .def("stats", [](PyClient& c) {
             RemoteStats s;
             {
               pyb::gil_scoped_release rel;
               s = Take(c.worker->Call([&] { return c.client->Stats(); }));
             }
             return StatsObject(s);
           }, R"doc(
The daemon's counters as a dict: blocks_ready, blocks_writing, pinned_blocks,
acquires, blocks_hit, blocks_missed, commits, aborts, leases_open, txns_open,
connections_open, tiers (a list of dicts: name, capacity_bytes, used_bytes,
blocks, hits, evictions) and namespaces (id, model_id, model_revision, tp_rank,
tp_size, block_bytes, salted, blocks, bytes, hits, evictions).)doc")
      .def("set_reply_spin", [](PyClient& c, double us) {
             if (!(us >= 0)) RaiseInvalid("spin must be >= 0 microseconds");
             pyb::gil_scoped_release rel;
             c.worker->Call([&] { c.client->set_reply_spin(std::chrono::nanoseconds(static_cast<int64_t>(us * 1000))); });
           }, pyb::arg("microseconds"),
           "How long a call polls for the daemon's answer before its thread sleeps (default 50 us).");
}

}  // namespace kvtier::py

// ---- the module ---------------------------------------------------------------

PYBIND11_MODULE(_kvtier, m) {
  m.doc() = "kvtier's Python binding (the C++ client, engine_adapter/client.h). Import `kvtier`.";
  kvtier::py::RegisterErrors(m);
  kvtier::py::BindClient(m);
  kvtier::py::BindNamespace(m);
  kvtier::py::BindGpu(m);
  m.attr("POOL_LAYOUTS") = kvtier::py::PoolLayouts();
  m.attr("DEFAULT_PRIORITY") = kvtier::kDefaultPriority;
  m.def("gpu_available", [] { return kvtier::GpuAvailable(); },
        "Whether this build has CUDA and a GPU answers (cudaGetDeviceCount > 0).");
}
