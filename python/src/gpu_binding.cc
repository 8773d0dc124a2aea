// GpuSession, GpuLoad, GpuStore, LayerEvents: loads into and stores from an
// engine's paged KV pool in CUDA memory (engine_adapter/gpu_session.h).
#include <pybind11/stl.h>

#include "eviction/policy.h"
#include "python/src/errors.h"
#include "python/src/objects.h"

namespace kvtier::py {

namespace {

const PyPool& GpuPool(const pyb::handle& obj, const GpuSession& s, bool load) {
  const PyPool& p = PoolOf(obj);
  if (p.device != ArrayDevice::kCuda)
    RaiseInvalid("the pool is in " + p.DeviceString() +
                 " memory: a GpuSession moves CUDA memory; use Namespace.load/store for host arrays");
  if (p.device_id >= 0 && p.device_id != s.device())
    RaiseInvalid("the pool is on " + p.DeviceString() + " but the session on cuda:" +
                 std::to_string(s.device()));
  if (load && p.readonly) RaiseInvalid("the pool is read-only: a load writes into it");
  return p;
}

struct LoadArgs {
  std::vector<uint32_t> pages;
  GpuStream stream = nullptr;
  GpuLoadOptions options;
  pyb::object events;
};

LoadArgs ParseLoad(PyGpuSession& s, const PyNamespace& ns, const PyLease& lease, const pyb::object& pool,
                   const pyb::object& pages, const pyb::object& stream, uint32_t layers_per_group,
                   const pyb::object& events, bool verify) {
  lease.CheckUsable(ns);
  const PyPool& p = GpuPool(pool, *s.session, true);
  LoadArgs a;
  a.pages = ToPages(pages, p.pool.shape.num_pages, true);
  if (a.pages.size() > lease.lease->size())
    RaiseInvalid(std::to_string(a.pages.size()) + " pages for a lease of " +
                 std::to_string(lease.lease->size()) + " blocks");
  a.stream = reinterpret_cast<GpuStream>(ReadStream(stream));
  a.options.layers_per_group = layers_per_group;
  a.options.verify = verify;
  if (layers_per_group > 0) {
    if (events.is_none() || !pyb::isinstance<PyLayerEvents>(events))
      RaiseInvalid("layers_per_group > 0 needs events= (GpuSession.layer_events())");
    a.options.events = events.cast<PyLayerEvents*>()->events.get();
    a.events = events;
  } else if (!events.is_none()) {
    RaiseInvalid("events= is for layer-wise loads (layers_per_group > 0)");
  }
  return a;
}

struct StoreArgs {
  std::vector<BlockKey> keys;
  std::vector<uint32_t> pages;
  StoreOptions options;
  GpuStream stream = nullptr;
};

StoreArgs ParseStore(PyGpuSession& s, const pyb::object& keys, const pyb::object& pool,
                     const pyb::object& pages, const pyb::object& stream, int priority, double duration_s,
                     const pyb::object& ranges, const pyb::object& first_parent) {
  StoreArgs a;
  a.keys = ToKeys(keys);
  const PyPool& p = GpuPool(pool, *s.session, false);
  a.pages = ToPages(pages, p.pool.shape.num_pages, false);
  if (a.pages.size() != a.keys.size())
    RaiseInvalid(std::to_string(a.keys.size()) + " keys but " + std::to_string(a.pages.size()) + " pages");
  a.options = ToStoreOptions(priority, duration_s, ranges, first_parent, a.keys.size());
  a.stream = reinterpret_cast<GpuStream>(ReadStream(stream));
  return a;
}

std::unique_ptr<PyGpuLoad> StartLoad(PyGpuSession& s, PyNamespace& ns, PyLease& lease, const pyb::object& pool,
                                     const pyb::object& pages, const pyb::object& stream,
                                     uint32_t layers_per_group, const pyb::object& events, bool verify) {
  LoadArgs a = ParseLoad(s, ns, lease, pool, pages, stream, layers_per_group, events, verify);
  const PyPool& p = PoolOf(pool);
  auto out = std::make_unique<PyGpuLoad>();
  out->worker = s.worker;
  out->session = s.session;
  out->lease = lease.lease;
  out->pool = pool;
  out->events = a.events;
  pyb::gil_scoped_release rel;
  out->load = std::make_shared<GpuLoad>(Take(s.worker->Call([&] {
    return s.session->StartLoad(*ns.ns, *lease.lease, p.pool, a.pages, a.stream, a.options);
  })));
  return out;
}

}  // namespace

void BindGpu(pyb::module_& m) {
  pyb::class_<PyLayerEvents>(m, "LayerEvents", R"doc(
One CUDA event per layer group of a layer-wise load (GpuSession.layer_events).
After start_load(..., layers_per_group=n, events=ev), ev.stream_wait_layer(l,
stream) makes `stream` wait on the GPU (the host does not block) until layer l
has arrived, so attention of layer l can start while later layers stream.)doc")
      .def("stream_wait_layer", [](PyLayerEvents& e, uint32_t layer, const pyb::object& stream) {
             GpuStream st = reinterpret_cast<GpuStream>(ReadStream(stream));
             pyb::gil_scoped_release rel;
             Check(e.worker->Call([&] { return e.events->StreamWaitLayer(layer, st); }));
           }, pyb::arg("layer"), pyb::arg("stream") = pyb::none(),
           "Makes `stream` wait until layer `layer` of the last layer-wise load is copied.")
      .def("synchronize_layer", [](PyLayerEvents& e, uint32_t layer) {
             pyb::gil_scoped_release rel;
             Check(e.worker->Call([&] { return e.events->SynchronizeLayer(layer); }));
           }, pyb::arg("layer"), "Blocks the host until layer `layer` is copied.");

  pyb::class_<PyGpuLoad>(m, "GpuLoad", R"doc(
A load in flight (GpuSession.start_load). wait() blocks until the copy is
done and verifies every block's checksum; until then the lease and the pool
are kept alive by this object.)doc")
      .def_property_readonly("blocks", [](const PyGpuLoad& l) { return l.load->blocks(); }, "Blocks being loaded.")
      // ready() and wait() make no RPC: they run on the calling thread
      // (GpuSession allows it), so a wait costs no hand-off to the worker.
      .def("ready", [](PyGpuLoad& l) {
             pyb::gil_scoped_release rel;
             std::lock_guard<std::mutex> g(l.mu);
             return Take(l.load->Ready());
           }, "Whether the copy is done (wait() would not block).")
      .def("wait", [](PyGpuLoad& l) {
             pyb::gil_scoped_release rel;
             std::lock_guard<std::mutex> g(l.mu);
             l.waited = true;
             Check(l.load->Wait());
           }, R"doc(
Blocks until the copy is done, then verifies. Raises Corruption naming the
first block whose bytes differ from what was committed (verified_blocks says
how many leading blocks are good: keep those, recompute the rest), IOError
(CUDA). Later calls raise the same.)doc")
      .def_property_readonly("verified_blocks", [](const PyGpuLoad& l) { return l.load->verified_blocks(); },
                             "After wait(): leading blocks that arrived intact.");

  pyb::class_<PyGpuStore>(m, "GpuStore", R"doc(
A store in flight (GpuSession.start_store): reserved slots being written.
wait() commits them; dropping it unwaited aborts the reservation.)doc")
      .def_property_readonly("blocks", [](const PyGpuStore& s) { return s.store->blocks(); }, "Reserved slots being written.")
      .def("ready", [](PyGpuStore& s) {
             pyb::gil_scoped_release rel;
             return Take(s.worker->Call([&] { return s.store->Ready(); }));
           }, "Whether the scatter is done.")
      .def("wait", [](PyGpuStore& s) {
             if (s.waited) RaiseInvalid("this store was waited for already");
             s.waited = true;
             pyb::gil_scoped_release rel;
             return Take(s.worker->Call([&] { return s.store->Wait(); }));
           }, "Blocks until the scatter is done, commits, returns the StoreResult. Once only.");

  pyb::class_<PyGpuSession>(m, "GpuSession", R"doc(
The GPU path of a Client (Client.gpu_session()): loads leased blocks straight
into an engine's paged KV pool in CUDA memory and stores pool pages straight
into the daemon's slots, with kvtier's gather/scatter kernels. No byte passes
through the daemon or a staging buffer. At creation it page-locks the
client's mapping of the host segment (cudaHostRegister) and opens the
daemon's HBM tier on its GPU (CUDA IPC) when there is one.

Streams: every call takes `stream`, the CUDA stream to queue the copy on: an
int (a cudaStream_t, 0 = the legacy default stream), None (0), or an object
with `cuda_stream` (torch.cuda.Stream). Pass the stream the engine computes
on (torch.cuda.current_stream()): the copy then follows the work queued
before it, and work queued after it sees the loaded pages.)doc")
      .def_property_readonly("device", [](const PyGpuSession& s) { return s.session->device(); }, "The CUDA device.")
      .def_property_readonly("has_hbm", [](const PyGpuSession& s) { return s.session->has_hbm(); },
                             "Whether the daemon's HBM tier on this GPU is open.")
      .def_property_readonly("hbm_status", [](const PyGpuSession& s) { return s.session->hbm_status().ToString(); },
                             "Why has_hbm is False ('OK' when it is True or was not asked for).")
      .def("layer_events", [](PyGpuSession& s, uint32_t max_groups) {
             auto e = std::make_unique<PyLayerEvents>();
             e->worker = s.worker;
             pyb::gil_scoped_release rel;
             e->events = std::make_shared<LayerEvents>(Take(s.worker->Call([&] { return LayerEvents::Create(max_groups); })));
             return e;
           }, pyb::arg("max_groups"), "Events for layer-wise loads of up to `max_groups` groups.")
      .def("start_load", &StartLoad, pyb::arg("ns"), pyb::arg("lease"), pyb::arg("pool"), pyb::arg("pages"),
           pyb::arg("stream") = pyb::none(), pyb::kw_only(), pyb::arg("layers_per_group") = 0,
           pyb::arg("events") = pyb::none(), pyb::arg("verify") = true, R"doc(
Queues the load of lease blocks [0, len(pages)) into pool pages pages[i] on
`stream` and returns a GpuLoad (wait() verifies). pool: a CUDA KvPool whose
shape matches the namespace layout; pages distinct and < pool.num_pages.
layers_per_group n > 0 with events=: one launch per n layers, an event after
each. verify=False skips checksums (only for memory the engine trusts).
Raises InvalidArgument (pool/layout mismatch, pages, a released lease,
another namespace's lease), Unavailable (an HBM block without the HBM tier
open), IOError (CUDA); nothing is queued then.)doc")
      .def("load", [](PyGpuSession& s, PyNamespace& ns, PyLease& lease, const pyb::object& pool,
                      const pyb::object& pages, const pyb::object& stream, uint32_t layers_per_group,
                      const pyb::object& events, bool verify) {
             auto l = StartLoad(s, ns, lease, pool, pages, stream, layers_per_group, events, verify);
             pyb::gil_scoped_release rel;
             l->waited = true;
             Check(l->worker->Call([&] { return l->load->Wait(); }));
           },
           pyb::arg("ns"), pyb::arg("lease"), pyb::arg("pool"), pyb::arg("pages"), pyb::arg("stream") = pyb::none(),
           pyb::kw_only(), pyb::arg("layers_per_group") = 0, pyb::arg("events") = pyb::none(),
           pyb::arg("verify") = true, "start_load() + wait().")
      .def("start_store", [](PyGpuSession& s, PyNamespace& ns, const pyb::object& keys, const pyb::object& pool,
                             const pyb::object& pages, const pyb::object& stream, int priority, double duration_s,
                             const pyb::object& ranges, const pyb::object& first_parent) {
             StoreArgs a = ParseStore(s, keys, pool, pages, stream, priority, duration_s, ranges, first_parent);
             const PyPool& p = PoolOf(pool);
             auto out = std::make_unique<PyGpuStore>();
             out->worker = s.worker;
             out->session = s.session;
             out->pool = pool;
             pyb::gil_scoped_release rel;
             out->store = std::make_shared<GpuStore>(Take(s.worker->Call([&] {
               return s.session->StartStore(*ns.ns, a.keys, p.pool, a.pages, a.options, a.stream);
             })));
             return out;
           },
           pyb::arg("ns"), pyb::arg("keys"), pyb::arg("pool"), pyb::arg("pages"), pyb::arg("stream") = pyb::none(),
           pyb::kw_only(), pyb::arg("priority") = kDefaultPriority, pyb::arg("duration_s") = 0.0,
           pyb::arg("ranges") = pyb::none(), pyb::arg("first_parent") = pyb::none(), R"doc(
Reserves slots for `keys` (a chain; first_parent is the key before keys[0]),
queues the scatter of pages[i] into the slot of keys[i] on `stream`
(checksums computed in the kernel) and returns a GpuStore; its wait()
commits. Options as Namespace.store_blocks. Binds an unbound namespace to
this session's GPU.)doc")
      .def("store", [](PyGpuSession& s, PyNamespace& ns, const pyb::object& keys, const pyb::object& pool,
                       const pyb::object& pages, const pyb::object& stream, int priority, double duration_s,
                       const pyb::object& ranges, const pyb::object& first_parent) {
             StoreArgs a = ParseStore(s, keys, pool, pages, stream, priority, duration_s, ranges, first_parent);
             const PyPool& p = PoolOf(pool);
             pyb::gil_scoped_release rel;
             return Take(s.worker->Call([&] {
               return s.session->Store(*ns.ns, a.keys, p.pool, a.pages, a.options, a.stream);
             }));
           },
           pyb::arg("ns"), pyb::arg("keys"), pyb::arg("pool"), pyb::arg("pages"), pyb::arg("stream") = pyb::none(),
           pyb::kw_only(), pyb::arg("priority") = kDefaultPriority, pyb::arg("duration_s") = 0.0,
           pyb::arg("ranges") = pyb::none(), pyb::arg("first_parent") = pyb::none(), R"doc(
Stores pool pages under `keys` and returns the StoreResult once committed:
start_store() + wait(), pipelined in chunks for long stores (the session's
store_chunk_bytes): chunks committed before an error stay stored.)doc");

  auto client = pyb::reinterpret_borrow<pyb::class_<PyClient>>(m.attr("Client"));
  client.def("gpu_session", [](PyClient& c, int device, bool open_hbm, const pyb::object& store_chunk_bytes) {
               GpuSessionOptions o;
               o.device = device;
               o.open_hbm = open_hbm;
               if (!store_chunk_bytes.is_none()) o.store_chunk_bytes = store_chunk_bytes.cast<uint64_t>();
               auto s = std::make_unique<PyGpuSession>();
               s->worker = c.worker;
               s->client = c.client;
               pyb::gil_scoped_release rel;
               auto up = Take(c.worker->Call([&] { return GpuSession::Create(c.client.get(), o); }));
               s->session = std::shared_ptr<GpuSession>(up.release());
               return s;
             },
             pyb::arg("device") = -1, pyb::kw_only(), pyb::arg("open_hbm") = true,
             pyb::arg("store_chunk_bytes") = pyb::none(), R"doc(
A GpuSession on CUDA device `device` (-1: device 0, or the current device of
the client's thread). Raises Unavailable without CUDA or a GPU (this build or
this machine), ResourceExhausted (pinning), IOError (CUDA; also an HBM tier
the daemon has but this process cannot open: pass open_hbm=False).)doc");
}

}  // namespace kvtier::py
