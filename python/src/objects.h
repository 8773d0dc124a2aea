// The objects the Python module exposes, as C++ structs shared by the files
// that bind them (client_binding.cc, namespace_binding.cc, gpu_binding.cc).
//
// Each holds the kvtier client object it wraps through a shared_ptr and the
// Worker of its Client. kvtier's client objects are used and destroyed on
// the worker thread only (worker.h): methods run there through
// Worker::Call() with the GIL released, and destructors hand the last
// reference over with Worker::Post(). Python references (pools, the lease a
// load reads) are kept as pybind11 objects, which only the GIL-holding side
// touches.
#pragma once

#include <pybind11/pybind11.h>

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "engine_adapter/client.h"
#include "engine_adapter/gpu_session.h"
#include "python/src/pool.h"
#include "python/src/worker.h"

namespace kvtier::py {

namespace pyb = pybind11;

// Drops `p` on the worker thread (where kvtier's client objects must die).
template <typename T>
void DropOnWorker(const std::shared_ptr<Worker>& w, std::shared_ptr<T>& p) {
  if (!p) return;
  if (!w) {
    p.reset();
    return;
  }
  w->Post([q = std::move(p)]() mutable { q.reset(); });
}

struct PyClient {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<Client> client;
  std::string socket;
  ~PyClient() { DropOnWorker(worker, client); }
};

struct PyNamespace {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<Client> client;
  std::shared_ptr<ClientNamespace> ns;
  ~PyNamespace() {
    DropOnWorker(worker, ns);
    DropOnWorker(worker, client);
  }
};

struct PyLease {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<ClientLease> lease;
  uint32_t namespace_id = 0;
  bool released = false;
  ~PyLease() { DropOnWorker(worker, lease); }
  // InvalidArgument if released or from another namespace than `ns`.
  void CheckUsable(const PyNamespace& ns) const;
};

struct PyPendingLookup {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<PendingLookup> pending;
  uint32_t namespace_id = 0;
  bool waited = false;
  ~PyPendingLookup() { DropOnWorker(worker, pending); }
};

struct PyGpuSession {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<Client> client;  // the session borrows it: it must outlive the session
  std::shared_ptr<GpuSession> session;
  ~PyGpuSession() {
    DropOnWorker(worker, session);
    DropOnWorker(worker, client);
  }
};

struct PyLayerEvents {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<LayerEvents> events;
  ~PyLayerEvents() { DropOnWorker(worker, events); }
};

struct PyGpuLoad {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<GpuSession> session;  // the load borrows it
  std::shared_ptr<ClientLease> lease;   // must live until the load is waited for
  std::shared_ptr<GpuLoad> load;
  pyb::object pool;                     // the arrays being written
  pyb::object events;
  std::mutex mu;  // ready() and wait() run on the calling thread, one at a time
  bool waited = false;
  ~PyGpuLoad() {
    DropOnWorker(worker, load);  // first: its destruction waits for the GPU
    DropOnWorker(worker, lease);
    DropOnWorker(worker, session);
  }
};

struct PyGpuStore {
  std::shared_ptr<Worker> worker;
  std::shared_ptr<GpuSession> session;
  std::shared_ptr<GpuStore> store;
  pyb::object pool;
  bool waited = false;
  ~PyGpuStore() {
    DropOnWorker(worker, store);
    DropOnWorker(worker, session);
  }
};

// Conversions shared by the bindings.
std::vector<BlockKey> ToKeys(const pyb::handle& keys, const char* what = "keys");
std::vector<uint32_t> ToU32(const pyb::handle& values, const char* what);
// Pages for a pool of `num_pages`: each < num_pages; `unique` refuses a page
// named twice (loads). Raises InvalidArgument.
std::vector<uint32_t> ToPages(const pyb::handle& pages, uint32_t num_pages, bool unique);
// StoreOptions from the keyword arguments every store takes.
StoreOptions ToStoreOptions(int priority, double duration_s, const pyb::handle& ranges,
                            const pyb::handle& first_parent, size_t num_keys);
pyb::object MakeStoreResult(const StoreResult& r);
pyb::object StatsObject(const RemoteStats& s);  // a dict
// The pool of `obj` (a kvtier.KvPool). Raises TypeError otherwise.
const PyPool& PoolOf(const pyb::handle& obj);

void BindClient(pyb::module_& m);
void BindNamespace(pyb::module_& m);
void BindGpu(pyb::module_& m);

}  // namespace kvtier::py
