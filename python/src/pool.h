// PyPool: an engine's paged KV pool given as Python arrays, turned into the
// loader's KvPool descriptor (loader/kv_pool.h) after checking every shape,
// dtype, device and stride against the layout it claims to be.
//
// Layouts (shapes as the arrays must have them; P pages, T tokens per page,
// H KV heads, D head_dim, L layers):
//   vllm_flash      one array per layer [2, P, T, H, D]   (vLLM flash-attn)
//   flashinfer_nhd  one array per layer [P, 2, T, H, D]
//   flashinfer_hnd  one array per layer [P, 2, H, T, D]
//   layer_first     one array [P, L, 2, T, H, D]
//   split_kv        one (K, V) pair per layer, each [P, T, H, D] (SGLang)
// Strides are read from the arrays (views and permuted allocations are
// fine) and need only what the loader needs: head_dim elements contiguous,
// 16-byte aligned rows and strides, no two elements overlapping, and the
// same strides (and, for split_kv, the same V - K distance) in every layer.
//
// Ownership: a PyPool holds references to its arrays, so their memory lives
// as long as the pool. Thread safety: immutable after construction; built
// with the GIL held.
#pragma once

#include <pybind11/pybind11.h>

#include <string>
#include <vector>

#include "loader/kv_pool.h"
#include "python/src/arrays.h"

namespace kvtier::py {

struct PyPool {
  KvPool pool;
  std::string layout;
  ArrayDevice device = ArrayDevice::kCpu;
  int device_id = -1;      // CUDA ordinal where the arrays said
  bool readonly = false;   // some array is read-only: loads refuse it
  std::vector<ArrayView> arrays;  // keeps the memory alive

  std::string DeviceString() const;
};

// Builds a pool; raises kvtier.InvalidArgument (through the callback the
// module installs) or TypeError naming the first array or field that does
// not fit. `dtype`: None, or the KV dtype ("bf16", "fp16", "fp8_e4m3",
// "fp8_e5m2") of arrays whose element type does not say it (numpy has no
// bfloat16: pass uint16/int16 arrays with dtype="bf16").
PyPool MakePool(const pybind11::object& layers, const std::string& layout,
                const pybind11::object& dtype);

// Layout names, for messages and the stub.
const std::vector<std::string>& PoolLayouts();

}  // namespace kvtier::py
