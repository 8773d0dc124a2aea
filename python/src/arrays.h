// ArrayView: what the binding needs to know of an array passed from Python
// (a numpy array, a torch tensor, anything that speaks DLPack, the CUDA Array
// Interface or the buffer protocol), read without copying and without
// linking against any of those libraries.
//
// Order of the protocols tried, first match wins:
//   1. DLPack (__dlpack__ / __dlpack_device__): torch, numpy >= 1.22, cupy,
//      jax. The only one that names bfloat16 and the fp8 formats. For CUDA
//      tensors a nonzero `stream` is passed to __dlpack__(stream=...), so
//      the producer orders its pending work before that stream (the DLPack
//      contract); with 0 nothing is synchronized. CPU arrays that also offer
//      the buffer protocol are read through it instead (it says whether
//      they are read-only).
//   2. __cuda_array_interface__ (version 2 or 3): numba, older cupy.
//   3. The buffer protocol: numpy, bytearray, memoryview, array.array.
//
// Ownership: an ArrayView holds Python references (the object, a DLPack
// capsule, a buffer) that keep the memory alive; its destruction needs the
// GIL. Addresses and strides are in bytes.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

namespace kvtier::py {

namespace pyb = pybind11;

enum class ArrayDevice { kCpu, kCuda };

// Element types, by what they are (not by which protocol named them).
enum class ElemKind { kInt, kUInt, kFloat, kBFloat, kFloat8E4M3, kFloat8E5M2, kBool, kOther };

struct ArrayView {
  void* data = nullptr;
  std::vector<int64_t> shape;
  std::vector<int64_t> strides;  // bytes
  ElemKind kind = ElemKind::kOther;
  uint32_t itemsize = 0;         // bytes
  std::string dtype;             // "bfloat16", "float16", "uint16", "float32", ...
  ArrayDevice device = ArrayDevice::kCpu;
  int device_id = -1;            // CUDA device ordinal (kCuda)
  bool readonly = false;
  std::string protocol;          // "dlpack", "cuda_array_interface", "buffer"
  pyb::object keep;              // the object, a capsule or a buffer holder

  int64_t numel() const;
  // Bytes from the lowest to one past the highest byte the view spans.
  uint64_t span_bytes() const;
  bool c_contiguous() const;
  std::string ShapeString() const;   // "(2, 64, 16, 8, 128)"
  std::string StridesString() const; // in elements where they divide evenly
};

// Reads `obj`. `stream`: a cudaStream_t (as an integer) that DLPack
// producers of CUDA arrays must order their pending work before; 0: none. Raises TypeError (no supported
// protocol, an array of an unsupported device) with the object's type name
// and `what` (e.g. "layers[3]") in the message.
ArrayView ReadArray(const pyb::handle& obj, const std::string& what, uintptr_t stream = 0);

// A CUDA stream given as an int (a cudaStream_t address, 0 = legacy default),
// None (0), or an object with a `cuda_stream` attribute (torch.cuda.Stream,
// cupy streams) or the __cuda_stream__ protocol.
uintptr_t ReadStream(const pyb::handle& obj);

}  // namespace kvtier::py
