#include "python/src/arrays.h"

#include <Python.h>

#include <cstring>
#include <memory>
#include <sstream>

namespace kvtier::py {

namespace {

// DLPack's C structures (dlpack.h, v0.8 and v1.x), declared here so that the
// build needs no DLPack header. Only what a consumer reads.
struct DLDevice {
  int32_t device_type;
  int32_t device_id;
};
struct DLDataType {
  uint8_t code;
  uint8_t bits;
  uint16_t lanes;
};
struct DLTensor {
  void* data;
  DLDevice device;
  int32_t ndim;
  DLDataType dtype;
  int64_t* shape;
  int64_t* strides;  // in elements; null: compact row-major
  uint64_t byte_offset;
};
struct DLManagedTensor {
  DLTensor dl_tensor;
  void* manager_ctx;
  void (*deleter)(DLManagedTensor*);
};
struct DLPackVersion {
  uint32_t major;
  uint32_t minor;
};
struct DLManagedTensorVersioned {
  DLPackVersion version;
  void* manager_ctx;
  void (*deleter)(DLManagedTensorVersioned*);
  uint64_t flags;  // bit 0: read-only
  DLTensor dl_tensor;
};
constexpr int32_t kDLCPU = 1, kDLCUDA = 2, kDLCUDAHost = 3, kDLCUDAManaged = 13;
constexpr uint8_t kDLInt = 0, kDLUInt = 1, kDLFloat = 2, kDLBfloat = 4, kDLBool = 6,
                  kDLFloat8_e4m3fn = 10, kDLFloat8_e5m2 = 12;

std::string TypeName(const pyb::handle& obj) {
  return pyb::str(pyb::type::handle_of(obj).attr("__name__")).cast<std::string>();
}

[[noreturn]] void TypeError(const std::string& msg) { throw pyb::type_error(msg); }

// Names and kinds of DLPack element types.
void DlpackType(const DLDataType& t, ArrayView* v) {
  v->itemsize = t.bits / 8;
  if (t.lanes != 1 || t.bits % 8 != 0) {
    v->kind = ElemKind::kOther;
    v->dtype = "dlpack(code " + std::to_string(t.code) + ", " + std::to_string(t.bits) + " bits, " +
               std::to_string(t.lanes) + " lanes)";
    return;
  }
  const std::string bits = std::to_string(t.bits);
  switch (t.code) {
    case kDLInt: v->kind = ElemKind::kInt; v->dtype = "int" + bits; return;
    case kDLUInt: v->kind = ElemKind::kUInt; v->dtype = "uint" + bits; return;
    case kDLFloat: v->kind = ElemKind::kFloat; v->dtype = "float" + bits; return;
    case kDLBfloat: v->kind = ElemKind::kBFloat; v->dtype = "bfloat" + bits; return;
    case kDLBool: v->kind = ElemKind::kBool; v->dtype = "bool"; return;
    case kDLFloat8_e4m3fn: v->kind = ElemKind::kFloat8E4M3; v->dtype = "float8_e4m3fn"; return;
    case kDLFloat8_e5m2: v->kind = ElemKind::kFloat8E5M2; v->dtype = "float8_e5m2"; return;
    default:
      v->kind = ElemKind::kOther;
      v->dtype = "dlpack(code " + std::to_string(t.code) + ", " + bits + " bits)";
  }
}

void FillFromDlTensor(const DLTensor& t, ArrayView* v) {
  DlpackType(t.dtype, v);
  v->data = static_cast<char*>(t.data) + t.byte_offset;
  v->shape.assign(t.shape, t.shape + t.ndim);
  v->strides.resize(t.ndim);
  int64_t step = v->itemsize;
  for (int i = t.ndim - 1; i >= 0; --i) {
    if (t.strides != nullptr) {
      v->strides[i] = t.strides[i] * static_cast<int64_t>(v->itemsize);
    } else {
      v->strides[i] = step;
      step *= t.shape[i];
    }
  }
  switch (t.device.device_type) {
    case kDLCUDA:
    case kDLCUDAManaged:
      v->device = ArrayDevice::kCuda;
      v->device_id = t.device.device_id;
      break;
    case kDLCPU:
    case kDLCUDAHost:
      v->device = ArrayDevice::kCpu;
      break;
    default:
      TypeError("an array on DLPack device type " + std::to_string(t.device.device_type) +
                " (only CPU and CUDA memory are supported)");
  }
}

ArrayView FromDlpack(const pyb::handle& obj, const std::string& what, bool cuda, uintptr_t stream) {
  ArrayView v;
  v.protocol = "dlpack";
  pyb::object capsule;
  if (cuda) {
    // stream 0: no synchronization asked (the caller orders its work);
    // otherwise the producer makes `stream` wait for its pending work.
    capsule = stream == 0 ? obj.attr("__dlpack__")()
                          : obj.attr("__dlpack__")(pyb::arg("stream") = stream);
  } else {
    capsule = obj.attr("__dlpack__")();
  }
  PyObject* cap = capsule.ptr();
  if (PyCapsule_IsValid(cap, "dltensor")) {
    auto* m = static_cast<DLManagedTensor*>(PyCapsule_GetPointer(cap, "dltensor"));
    FillFromDlTensor(m->dl_tensor, &v);
  } else if (PyCapsule_IsValid(cap, "dltensor_versioned")) {
    auto* m = static_cast<DLManagedTensorVersioned*>(PyCapsule_GetPointer(cap, "dltensor_versioned"));
    FillFromDlTensor(m->dl_tensor, &v);
    v.readonly = (m->flags & 1) != 0;
  } else {
    TypeError(what + ": __dlpack__ of " + TypeName(obj) + " returned no DLPack capsule");
  }
  // The capsule is left unconsumed: while it lives it keeps the producer's
  // memory alive; when it dies, its own destructor calls the deleter.
  v.keep = pyb::make_tuple(pyb::reinterpret_borrow<pyb::object>(obj), capsule);
  return v;
}

ArrayView FromCudaArrayInterface(const pyb::handle& obj, const std::string& what) {
  ArrayView v;
  v.protocol = "cuda_array_interface";
  pyb::dict cai = obj.attr("__cuda_array_interface__");
  const std::string typestr = cai["typestr"].cast<std::string>();
  if (typestr.size() < 3) TypeError(what + ": bad __cuda_array_interface__ typestr '" + typestr + "'");
  const char kind = typestr[1];
  v.itemsize = static_cast<uint32_t>(std::stoul(typestr.substr(2)));
  const std::string bits = std::to_string(v.itemsize * 8);
  switch (kind) {
    case 'f': v.kind = ElemKind::kFloat; v.dtype = "float" + bits; break;
    case 'u': v.kind = ElemKind::kUInt; v.dtype = "uint" + bits; break;
    case 'i': v.kind = ElemKind::kInt; v.dtype = "int" + bits; break;
    case 'b': v.kind = ElemKind::kBool; v.dtype = "bool"; break;
    default: v.kind = ElemKind::kOther; v.dtype = typestr;
  }
  pyb::tuple data = cai["data"];
  v.data = reinterpret_cast<void*>(data[0].cast<uintptr_t>());
  v.readonly = data[1].cast<bool>();
  for (auto d : pyb::tuple(cai["shape"])) v.shape.push_back(d.cast<int64_t>());
  v.strides.resize(v.shape.size());
  if (cai.contains("strides") && !cai["strides"].is_none()) {
    pyb::tuple st = cai["strides"];
    for (size_t i = 0; i < v.shape.size(); ++i) v.strides[i] = st[i].cast<int64_t>();
  } else {
    int64_t step = v.itemsize;
    for (size_t i = v.shape.size(); i-- > 0;) {
      v.strides[i] = step;
      step *= v.shape[i];
    }
  }
  v.device = ArrayDevice::kCuda;
  v.device_id = -1;  // the interface does not say; the copy fails on a wrong device
  v.keep = pyb::reinterpret_borrow<pyb::object>(obj);
  return v;
}

// Keeps a Py_buffer until the holder object dies.
struct BufferHolder {
  Py_buffer view{};
  ~BufferHolder() { PyBuffer_Release(&view); }
};

ArrayView FromBuffer(const pyb::handle& obj, const std::string& what) {
  ArrayView v;
  v.protocol = "buffer";
  auto holder = std::make_unique<BufferHolder>();
  constexpr int kFlags = PyBUF_STRIDES | PyBUF_FORMAT;
  if (PyObject_GetBuffer(obj.ptr(), &holder->view, kFlags | PyBUF_WRITABLE) != 0) {
    PyErr_Clear();
    if (PyObject_GetBuffer(obj.ptr(), &holder->view, kFlags) != 0) {
      PyErr_Clear();
      TypeError(what + ": a " + TypeName(obj) +
                " is not an array (no __dlpack__, __cuda_array_interface__ or buffer protocol)");
    }
    v.readonly = true;
  }
  const Py_buffer& b = holder->view;
  v.data = b.buf;
  v.itemsize = static_cast<uint32_t>(b.itemsize);
  v.shape.assign(b.shape, b.shape + b.ndim);
  if (b.ndim == 0) {
    v.shape = {};
  }
  v.strides.assign(b.strides, b.strides + b.ndim);
  std::string fmt = b.format ? b.format : "B";
  while (!fmt.empty() && (fmt[0] == '<' || fmt[0] == '=' || fmt[0] == '@' || fmt[0] == '|'))
    fmt.erase(0, 1);
  const std::string bits = std::to_string(v.itemsize * 8);
  if (fmt == "e" || fmt == "f" || fmt == "d") {
    v.kind = ElemKind::kFloat;
    v.dtype = "float" + bits;
  } else if (fmt == "B" || fmt == "H" || fmt == "I" || fmt == "L" || fmt == "Q") {
    v.kind = ElemKind::kUInt;
    v.dtype = "uint" + bits;
  } else if (fmt == "b" || fmt == "h" || fmt == "i" || fmt == "l" || fmt == "q") {
    v.kind = ElemKind::kInt;
    v.dtype = "int" + bits;
  } else if (fmt == "?") {
    v.kind = ElemKind::kBool;
    v.dtype = "bool";
  } else {
    v.kind = ElemKind::kOther;
    v.dtype = "format '" + fmt + "'";
  }
  v.device = ArrayDevice::kCpu;
  pyb::capsule keep(holder.release(), [](void* p) { delete static_cast<BufferHolder*>(p); });
  v.keep = pyb::make_tuple(pyb::reinterpret_borrow<pyb::object>(obj), keep);
  return v;
}

}  // namespace

int64_t ArrayView::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

uint64_t ArrayView::span_bytes() const {
  if (numel() == 0) return 0;
  int64_t lo = 0, hi = itemsize;
  for (size_t i = 0; i < shape.size(); ++i) {
    const int64_t ext = (shape[i] - 1) * strides[i];
    if (ext < 0) lo += ext; else hi += ext;
  }
  return static_cast<uint64_t>(hi - lo);
}

bool ArrayView::c_contiguous() const {
  int64_t step = itemsize;
  for (size_t i = shape.size(); i-- > 0;) {
    if (shape[i] != 1 && strides[i] != step) return false;
    step *= shape[i];
  }
  return true;
}

std::string ArrayView::ShapeString() const {
  std::ostringstream s;
  s << "(";
  for (size_t i = 0; i < shape.size(); ++i) s << (i ? ", " : "") << shape[i];
  if (shape.size() == 1) s << ",";
  s << ")";
  return s.str();
}

std::string ArrayView::StridesString() const {
  std::ostringstream s;
  bool elems = itemsize > 0;
  for (int64_t st : strides) elems = elems && st % static_cast<int64_t>(itemsize) == 0;
  s << "(";
  for (size_t i = 0; i < strides.size(); ++i)
    s << (i ? ", " : "") << (elems ? strides[i] / static_cast<int64_t>(itemsize) : strides[i]);
  if (strides.size() == 1) s << ",";
  s << (elems ? ") elements" : ") bytes");
  return s.str();
}

ArrayView ReadArray(const pyb::handle& obj, const std::string& what, uintptr_t stream) {
  if (obj.is_none()) TypeError(what + ": None is not an array");
  if (pyb::hasattr(obj, "__dlpack__") && pyb::hasattr(obj, "__dlpack_device__")) {
    pyb::tuple dev = obj.attr("__dlpack_device__")();
    const int type = pyb::int_(dev[0]).cast<int>();
    if (type == kDLCUDA || type == kDLCUDAManaged) return FromDlpack(obj, what, true, stream);
    if (type == kDLCPU || type == kDLCUDAHost) {
      if (PyObject_CheckBuffer(obj.ptr())) return FromBuffer(obj, what);
      return FromDlpack(obj, what, false, 0);
    }
    TypeError(what + ": a " + TypeName(obj) + " on DLPack device type " + std::to_string(type) +
              " (only CPU and CUDA memory are supported)");
  }
  if (pyb::hasattr(obj, "__cuda_array_interface__")) return FromCudaArrayInterface(obj, what);
  return FromBuffer(obj, what);
}

uintptr_t ReadStream(const pyb::handle& obj) {
  if (obj.is_none()) return 0;
  if (PyLong_Check(obj.ptr())) {
    const long long v = obj.cast<long long>();
    if (v < 0) throw pyb::value_error("stream: a CUDA stream handle cannot be negative");
    return static_cast<uintptr_t>(v);
  }
  if (pyb::hasattr(obj, "__cuda_stream__")) {
    pyb::tuple t = obj.attr("__cuda_stream__")();
    return t[1].cast<uintptr_t>();
  }
  if (pyb::hasattr(obj, "cuda_stream")) return obj.attr("cuda_stream").cast<uintptr_t>();
  throw pyb::type_error("stream: expected an int (a cudaStream_t), None or an object with "
                        "`cuda_stream` (torch.cuda.Stream), got a " + TypeName(obj));
}

}  // namespace kvtier::py
