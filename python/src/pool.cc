#include "python/src/pool.h"

#include <optional>

#include "python/src/errors.h"

namespace kvtier::py {

namespace pyb = pybind11;

namespace {

// Where each dimension sits in one layer's array (-1: absent).
struct Dims {
  int ndim, page, kv, token, head, dim, layer;
};

const Dims* DimsOf(const std::string& layout) {
  static const Dims kVllm{5, 1, 0, 2, 3, 4, -1};
  static const Dims kNhd{5, 0, 1, 2, 3, 4, -1};
  static const Dims kHnd{5, 0, 1, 3, 2, 4, -1};
  static const Dims kLayerFirst{6, 0, 2, 3, 4, 5, 1};
  static const Dims kSplit{4, 0, -1, 1, 2, 3, -1};
  if (layout == "vllm_flash") return &kVllm;
  if (layout == "flashinfer_nhd") return &kNhd;
  if (layout == "flashinfer_hnd") return &kHnd;
  if (layout == "layer_first") return &kLayerFirst;
  if (layout == "split_kv") return &kSplit;
  return nullptr;
}

const char* ShapeDoc(const std::string& layout) {
  if (layout == "vllm_flash") return "one array per layer of shape [2, pages, tokens, kv_heads, head_dim]";
  if (layout == "flashinfer_nhd") return "one array per layer of shape [pages, 2, tokens, kv_heads, head_dim]";
  if (layout == "flashinfer_hnd") return "one array per layer of shape [pages, 2, kv_heads, tokens, head_dim]";
  if (layout == "layer_first") return "one array of shape [pages, layers, 2, tokens, kv_heads, head_dim]";
  return "one (K, V) pair per layer, each of shape [pages, tokens, kv_heads, head_dim]";
}

std::optional<KvDtype> ParseKvDtype(const std::string& s) {
  if (s == "bf16" || s == "bfloat16") return KvDtype::kBf16;
  if (s == "fp16" || s == "float16") return KvDtype::kFp16;
  if (s == "fp8" || s == "fp8_e4m3" || s == "float8_e4m3fn") return KvDtype::kFp8E4M3;
  if (s == "fp8_e5m2" || s == "float8_e5m2") return KvDtype::kFp8E5M2;
  return std::nullopt;
}

std::optional<KvDtype> DtypeOfArray(const ArrayView& v) {
  if (v.kind == ElemKind::kBFloat && v.itemsize == 2) return KvDtype::kBf16;
  if (v.kind == ElemKind::kFloat && v.itemsize == 2) return KvDtype::kFp16;
  if (v.kind == ElemKind::kFloat8E4M3) return KvDtype::kFp8E4M3;
  if (v.kind == ElemKind::kFloat8E5M2) return KvDtype::kFp8E5M2;
  return std::nullopt;
}

KvDtype ResolveDtype(const ArrayView& v, const pyb::object& dtype) {
  const std::optional<KvDtype> own = DtypeOfArray(v);
  if (dtype.is_none()) {
    if (own) return *own;
    RaiseInvalid("arrays of " + v.dtype + " do not hold a KV dtype (bfloat16, float16, "
                 "float8_e4m3fn, float8_e5m2); for raw bits (numpy has no bfloat16) pass "
                 "integer arrays with dtype='bf16', 'fp16', 'fp8_e4m3' or 'fp8_e5m2'");
  }
  const std::string name = pyb::str(dtype).cast<std::string>();
  const std::optional<KvDtype> want = ParseKvDtype(name);
  if (!want)
    RaiseInvalid("dtype '" + name + "' is not a KV dtype (bf16, fp16, fp8_e4m3, fp8_e5m2)");
  if (own) {
    if (*own != *want)
      RaiseInvalid(std::string("arrays of ") + v.dtype + " hold " + KvDtypeName(*own) + ", not " +
                   KvDtypeName(*want));
    return *want;
  }
  const bool raw = v.kind == ElemKind::kInt || v.kind == ElemKind::kUInt;
  if (!raw || v.itemsize != KvDtypeSize(*want))
    RaiseInvalid("arrays of " + v.dtype + " (" + std::to_string(v.itemsize) +
                 "-byte elements) cannot hold " + KvDtypeName(*want) + " (" +
                 std::to_string(KvDtypeSize(*want)) + "-byte elements)");
  return *want;
}

uint32_t Dim(const ArrayView& v, int i, const char* name, const std::string& what) {
  const int64_t n = v.shape[static_cast<size_t>(i)];
  if (n <= 0 || n > int64_t{UINT32_MAX})
    RaiseInvalid(what + ": " + name + " = " + std::to_string(n) + " is out of range");
  return static_cast<uint32_t>(n);
}

}  // namespace

const std::vector<std::string>& PoolLayouts() {
  static const std::vector<std::string> k = {"vllm_flash", "flashinfer_nhd", "flashinfer_hnd",
                                             "layer_first", "split_kv"};
  return k;
}

std::string PyPool::DeviceString() const {
  if (device == ArrayDevice::kCpu) return "cpu";
  return device_id >= 0 ? "cuda:" + std::to_string(device_id) : "cuda";
}

PyPool MakePool(const pyb::object& layers, const std::string& layout, const pyb::object& dtype) {
  const Dims* d = DimsOf(layout);
  if (d == nullptr) {
    std::string names;
    for (const auto& n : PoolLayouts()) names += (names.empty() ? "" : ", ") + n;
    RaiseInvalid("unknown layout '" + layout + "' (" + names + ")");
  }
  PyPool p;
  p.layout = layout;
  // The arrays, one per layer (two for split_kv), or the single layer-first one.
  std::vector<std::string> names;
  if (layout == "layer_first") {
    if (pyb::isinstance<pyb::list>(layers) || pyb::isinstance<pyb::tuple>(layers))
      RaiseInvalid("layer_first: pass one array of shape [pages, layers, 2, tokens, kv_heads, "
                   "head_dim], not a sequence");
    p.arrays.push_back(ReadArray(layers, "pool"));
    names.push_back("pool");
  } else {
    if (!pyb::isinstance<pyb::sequence>(layers) || pyb::isinstance<pyb::str>(layers))
      RaiseInvalid(layout + ": pass a list with " + ShapeDoc(layout));
    pyb::sequence seq = layers;
    if (seq.size() == 0) RaiseInvalid(layout + ": no layers");
    for (size_t l = 0; l < seq.size(); ++l) {
      const std::string what = "layers[" + std::to_string(l) + "]";
      if (layout == "split_kv") {
        pyb::object item = seq[l];
        if (!pyb::isinstance<pyb::sequence>(item) || pyb::len(item) != 2)
          RaiseInvalid(what + ": split_kv takes a (K, V) pair per layer");
        pyb::sequence pair = item;
        p.arrays.push_back(ReadArray(pair[0], what + "[0] (K)"));
        names.push_back(what + "[0] (K)");
        p.arrays.push_back(ReadArray(pair[1], what + "[1] (V)"));
        names.push_back(what + "[1] (V)");
      } else {
        p.arrays.push_back(ReadArray(seq[l], what));
        names.push_back(what);
      }
    }
  }
  const ArrayView& a0 = p.arrays[0];
  // Every array alike: device, dtype, shape, strides.
  for (size_t i = 0; i < p.arrays.size(); ++i) {
    const ArrayView& a = p.arrays[i];
    if (static_cast<int>(a.shape.size()) != d->ndim)
      RaiseInvalid(names[i] + " has shape " + a.ShapeString() + "; " + layout + " takes " +
                   ShapeDoc(layout));
    if (a.device != a0.device || a.device_id != a0.device_id)
      RaiseInvalid(names[i] + " is on another device than " + names[0]);
    if (a.kind != a0.kind || a.itemsize != a0.itemsize)
      RaiseInvalid(names[i] + " is " + a.dtype + " but " + names[0] + " is " + a0.dtype);
    if (a.shape != a0.shape)
      RaiseInvalid(names[i] + " has shape " + a.ShapeString() + " but " + names[0] + " has " +
                   a0.ShapeString());
    if (a.strides != a0.strides)
      RaiseInvalid(names[i] + " has strides " + a.StridesString() + " but " + names[0] + " has " +
                   a0.StridesString() + ": the loader takes one set of strides for all layers");
    p.readonly = p.readonly || a.readonly;
  }
  p.device = a0.device;
  p.device_id = a0.device_id;
  KvPool& k = p.pool;
  k.shape.dtype = ResolveDtype(a0, dtype);
  if (d->kv >= 0 && a0.shape[static_cast<size_t>(d->kv)] != 2)
    RaiseInvalid(names[0] + " has shape " + a0.ShapeString() + ": dimension " +
                 std::to_string(d->kv) + " (K and V) must be 2 in " + layout);
  k.shape.num_pages = Dim(a0, d->page, "pages", names[0]);
  k.shape.tokens_per_page = Dim(a0, d->token, "tokens per page", names[0]);
  k.shape.kv_heads = Dim(a0, d->head, "kv_heads", names[0]);
  k.shape.head_dim = Dim(a0, d->dim, "head_dim", names[0]);
  if (a0.strides[static_cast<size_t>(d->dim)] != static_cast<int64_t>(a0.itemsize))
    RaiseInvalid(names[0] + " has strides " + a0.StridesString() +
                 ": head_dim (the last dimension) must be contiguous (stride 1 element)");
  k.page_stride = a0.strides[static_cast<size_t>(d->page)];
  k.token_stride = a0.strides[static_cast<size_t>(d->token)];
  k.head_stride = a0.strides[static_cast<size_t>(d->head)];
  if (layout == "layer_first") {
    k.shape.num_layers = Dim(a0, d->layer, "layers", names[0]);
    k.kv_stride = a0.strides[static_cast<size_t>(d->kv)];
    const int64_t ls = a0.strides[static_cast<size_t>(d->layer)];
    for (uint32_t l = 0; l < k.shape.num_layers; ++l)
      k.layer_base.push_back(static_cast<char*>(a0.data) + static_cast<int64_t>(l) * ls);
  } else if (layout == "split_kv") {
    k.shape.num_layers = static_cast<uint32_t>(p.arrays.size() / 2);
    const auto dist = [&](size_t l) {
      return static_cast<int64_t>(reinterpret_cast<uintptr_t>(p.arrays[2 * l + 1].data) -
                                  reinterpret_cast<uintptr_t>(p.arrays[2 * l].data));
    };
    k.kv_stride = dist(0);
    for (size_t l = 0; l < k.shape.num_layers; ++l) {
      if (dist(l) != k.kv_stride)
        RaiseInvalid("split_kv: layer " + std::to_string(l) + "'s V lies " +
                     std::to_string(dist(l)) + " bytes from its K, layer 0's " +
                     std::to_string(k.kv_stride) +
                     ": the loader takes one K-to-V distance for all layers (allocate K and V "
                     "of every layer alike, e.g. as halves of one buffer per layer)");
      k.layer_base.push_back(p.arrays[2 * l].data);
    }
  } else {
    k.shape.num_layers = static_cast<uint32_t>(p.arrays.size());
    k.kv_stride = a0.strides[static_cast<size_t>(d->kv)];
    for (const ArrayView& a : p.arrays) k.layer_base.push_back(a.data);
  }
  Status st = k.Validate();
  if (!st.ok()) RaiseInvalid(layout + " pool " + a0.ShapeString() + " " + a0.StridesString() + ": " + st.message());
  return p;
}

}  // namespace kvtier::py
