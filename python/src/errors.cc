#include "python/src/errors.h"

#include <Python.h>

#include <array>

namespace kvtier::py {

namespace {

namespace pyb = pybind11;

struct CodeClass {
  StatusCode code;
  const char* name;
  PyObject* extra_base;  // a builtin exception the class also derives from, or null
  const char* doc;
};

// One Python class per status code; index = StatusCode value.
std::array<PyObject*, 10> g_classes{};
PyObject* g_error = nullptr;

}  // namespace

void RegisterErrors(pyb::module_& m) {
  g_error = PyErr_NewExceptionWithDoc(
      "kvtier.Error",
      "Base of every kvtier error. `status` is the kvtier status name (e.g. "
      "'InvalidArgument'), `message` the text after it.",
      PyExc_Exception, nullptr);
  m.add_object("Error", pyb::handle(g_error));
  const CodeClass classes[] = {
      {StatusCode::kNotFound, "NotFound", PyExc_LookupError, "Something named does not exist."},
      {StatusCode::kInvalidArgument, "InvalidArgument", PyExc_ValueError,
       "A bad argument: wrong dtype, shape or stride, a page out of range, a released lease, "
       "a spec the daemon refuses. Nothing was changed."},
      {StatusCode::kResourceExhausted, "ResourceExhausted", nullptr,
       "A tier (or pinned or device memory) is full and nothing can be evicted."},
      {StatusCode::kRejected, "Rejected", nullptr, "Refused by policy (admission, state)."},
      {StatusCode::kRetry, "Retry", nullptr, "Transient: try again later."},
      {StatusCode::kIOError, "IOError", PyExc_OSError, "A device, system call or CUDA call failed."},
      {StatusCode::kCorruption, "Corruption", nullptr,
       "Bytes failed their checksum: treat the block and the rest of the lease as a miss."},
      {StatusCode::kUnavailable, "Unavailable", nullptr,
       "No daemon on the socket, the connection is gone, no GPU, or a tier this call cannot "
       "reach."},
      {StatusCode::kInternal, "Internal", nullptr, "A bug: an invariant did not hold."},
  };
  for (const CodeClass& c : classes) {
    const std::string qual = std::string("kvtier.") + c.name;
    PyObject* bases = c.extra_base ? PyTuple_Pack(2, g_error, c.extra_base) : PyTuple_Pack(1, g_error);
    PyObject* dict = PyDict_New();
    PyObject* status = PyUnicode_FromString(c.name);
    PyDict_SetItemString(dict, "status", status);
    Py_DECREF(status);
    PyObject* cls = PyErr_NewExceptionWithDoc(qual.c_str(), c.doc, bases, dict);
    Py_DECREF(bases);
    Py_DECREF(dict);
    g_classes[static_cast<size_t>(c.code)] = cls;
    m.add_object(c.name, pyb::handle(cls));
  }
  pyb::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const StatusError& e) {
      const size_t i = static_cast<size_t>(e.status.code());
      PyObject* cls = i < g_classes.size() && g_classes[i] ? g_classes[i] : g_error;
      pyb::object inst = pyb::reinterpret_steal<pyb::object>(
          PyObject_CallFunction(cls, "s", e.text.c_str()));
      if (!inst) return;  // the call set an error already
      inst.attr("status") = StatusCodeName(e.status.code());
      inst.attr("message") = e.status.message();
      PyErr_SetObject(cls, inst.ptr());
    }
  });
}

}  // namespace kvtier::py
