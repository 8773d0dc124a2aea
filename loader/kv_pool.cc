#include "loader/kv_pool.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>

#include "loader/copy_geometry.h"

namespace kvtier {

size_t KvDtypeSize(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBf16:
    case KvDtype::kFp16:
      return 2;
    case KvDtype::kFp8E4M3:
    case KvDtype::kFp8E5M2:
      return 1;
  }
  return 0;
}

const char* KvDtypeName(KvDtype dtype) {
  switch (dtype) {
    case KvDtype::kBf16: return "bf16";
    case KvDtype::kFp16: return "fp16";
    case KvDtype::kFp8E4M3: return "fp8_e4m3";
    case KvDtype::kFp8E5M2: return "fp8_e5m2";
  }
  return "unknown";
}

namespace {

std::string Num(uint64_t v) { return std::to_string(v); }
std::string Num(int64_t v) { return std::to_string(v); }

Status ValidateShape(const KvPoolShape& s) {
  if (KvDtypeSize(s.dtype) == 0) {
    return Status::InvalidArgument("kv pool: unknown dtype " +
                                   Num(uint64_t{static_cast<uint8_t>(s.dtype)}));
  }
  if (s.num_layers == 0 || s.num_layers > kMaxPoolLayers) {
    return Status::InvalidArgument("kv pool: num_layers = " + Num(uint64_t{s.num_layers}) +
                                   " is outside [1, " + Num(uint64_t{kMaxPoolLayers}) + "]");
  }
  if (s.kv_heads == 0) return Status::InvalidArgument("kv pool: kv_heads = 0");
  if (s.head_dim == 0) return Status::InvalidArgument("kv pool: head_dim = 0");
  if (s.tokens_per_page < kMinTokensPerPage || s.tokens_per_page > kMaxTokensPerPage) {
    return Status::InvalidArgument("kv pool: tokens_per_page = " +
                                   Num(uint64_t{s.tokens_per_page}) + " is outside [" +
                                   Num(uint64_t{kMinTokensPerPage}) + ", " +
                                   Num(uint64_t{kMaxTokensPerPage}) + "]");
  }
  if (s.num_pages == 0) return Status::InvalidArgument("kv pool: num_pages = 0");
  if (s.row_bytes() % kPoolAlignment != 0) {
    return Status::InvalidArgument("kv pool: head_dim * elem_size = " + Num(s.row_bytes()) +
                                   " bytes is not a multiple of 16 (copies move 16-byte vectors)");
  }
  // Each factor is bounded above, so this product cannot overflow 64 bits.
  if (s.block_bytes() > kMaxCanonicalBlockBytes) {
    return Status::InvalidArgument("kv pool: canonical block of " + Num(s.block_bytes()) +
                                   " bytes exceeds the 2 GiB limit");
  }
  return Status::OK();
}

uint64_t AbsStride(int64_t s) {
  return s < 0 ? uint64_t{0} - static_cast<uint64_t>(s) : static_cast<uint64_t>(s);
}

}  // namespace

Status KvPool::Validate() const {
  KVTIER_RETURN_IF_ERROR(ValidateShape(shape));
  if (layer_base.size() != shape.num_layers) {
    return Status::InvalidArgument("kv pool: " + Num(uint64_t{layer_base.size()}) +
                                   " layer bases for " + Num(uint64_t{shape.num_layers}) +
                                   " layers");
  }
  for (size_t l = 0; l < layer_base.size(); ++l) {
    const auto addr = reinterpret_cast<uintptr_t>(layer_base[l]);
    if (addr == 0) {
      return Status::InvalidArgument("kv pool: layer_base[" + Num(uint64_t{l}) + "] is null");
    }
    if (addr % kPoolAlignment != 0) {
      return Status::InvalidArgument("kv pool: layer_base[" + Num(uint64_t{l}) +
                                     "] is not 16-byte aligned");
    }
  }

  struct Dim {
    const char* name;
    int64_t stride;
    uint64_t count;
  };
  std::array<Dim, 4> dims = {{{"head_stride", head_stride, shape.kv_heads},
                              {"token_stride", token_stride, shape.tokens_per_page},
                              {"kv_stride", kv_stride, 2},
                              {"page_stride", page_stride, shape.num_pages}}};
  for (const Dim& d : dims) {
    if (d.count > 1 && AbsStride(d.stride) % kPoolAlignment != 0) {
      return Status::InvalidArgument(std::string("kv pool: ") + d.name + " = " + Num(d.stride) +
                                     " is not a multiple of 16 bytes");
    }
  }
  // No two elements of one layer may share a byte. A sufficient test: sorted
  // by |stride|, each dimension steps over everything the inner ones span.
  std::sort(dims.begin(), dims.end(),
            [](const Dim& a, const Dim& b) { return AbsStride(a.stride) < AbsStride(b.stride); });
  uint64_t span = shape.row_bytes();
  const char* inner = "the head_dim row";
  for (const Dim& d : dims) {
    if (d.count <= 1) continue;
    const uint64_t step = AbsStride(d.stride);
    if (step < span) {
      return Status::InvalidArgument(std::string("kv pool: ") + d.name + " = " + Num(d.stride) +
                                     " overlaps " + inner + " (which spans " + Num(span) +
                                     " bytes)");
    }
    uint64_t extent;
    if (__builtin_mul_overflow(step, d.count - 1, &extent) ||
        __builtin_add_overflow(extent, span, &span)) {
      return Status::InvalidArgument(std::string("kv pool: ") + d.name + " overflows 64 bits");
    }
    inner = d.name;
  }
  return Status::OK();
}

std::string KvPool::DebugString() const {
  std::string s = "kv pool: ";
  s += KvDtypeName(shape.dtype);
  s += ", " + Num(uint64_t{shape.num_layers}) + " layers, " + Num(uint64_t{shape.kv_heads}) +
       " kv heads x " + Num(uint64_t{shape.head_dim}) + ", " +
       Num(uint64_t{shape.tokens_per_page}) + " tokens/page, " + Num(uint64_t{shape.num_pages}) +
       " pages; strides kv " + Num(kv_stride) + " page " + Num(page_stride) + " token " +
       Num(token_stride) + " head " + Num(head_stride) + "; block " + Num(block_bytes()) +
       " bytes";
  return s;
}

uint64_t PerLayerTensorBytes(const KvPoolShape& shape) {
  return uint64_t{shape.num_pages} * shape.layer_bytes();
}

uint64_t LayerFirstTensorBytes(const KvPoolShape& shape) {
  return uint64_t{shape.num_pages} * shape.block_bytes();
}

namespace {

Result<KvPool> Finish(KvPool pool) {
  KVTIER_RETURN_IF_ERROR(pool.Validate());
  return pool;
}

Result<KvPool> PerLayerPool(const KvPoolShape& shape, std::span<void* const> layer_bases) {
  KVTIER_RETURN_IF_ERROR(ValidateShape(shape));
  KvPool pool;
  pool.shape = shape;
  pool.layer_base.assign(layer_bases.begin(), layer_bases.end());
  return pool;
}

}  // namespace

Result<KvPool> MakeVllmFlashPool(const KvPoolShape& shape, std::span<void* const> layer_bases) {
  KVTIER_ASSIGN_OR_RETURN(KvPool pool, PerLayerPool(shape, layer_bases));
  const int64_t row = static_cast<int64_t>(shape.row_bytes());
  pool.head_stride = row;
  pool.token_stride = row * shape.kv_heads;
  pool.page_stride = pool.token_stride * shape.tokens_per_page;
  pool.kv_stride = pool.page_stride * shape.num_pages;
  return Finish(std::move(pool));
}

Result<KvPool> MakeFlashInferHndPool(const KvPoolShape& shape,
                                     std::span<void* const> layer_bases) {
  KVTIER_ASSIGN_OR_RETURN(KvPool pool, PerLayerPool(shape, layer_bases));
  const int64_t row = static_cast<int64_t>(shape.row_bytes());
  pool.token_stride = row;
  pool.head_stride = row * shape.tokens_per_page;
  pool.kv_stride = pool.head_stride * shape.kv_heads;
  pool.page_stride = pool.kv_stride * 2;
  return Finish(std::move(pool));
}

Result<KvPool> MakeFlashInferNhdPool(const KvPoolShape& shape,
                                     std::span<void* const> layer_bases) {
  KVTIER_ASSIGN_OR_RETURN(KvPool pool, PerLayerPool(shape, layer_bases));
  const int64_t row = static_cast<int64_t>(shape.row_bytes());
  pool.head_stride = row;
  pool.token_stride = row * shape.kv_heads;
  pool.kv_stride = pool.token_stride * shape.tokens_per_page;
  pool.page_stride = pool.kv_stride * 2;
  return Finish(std::move(pool));
}

Result<KvPool> MakeLayerFirstPool(const KvPoolShape& shape, void* base) {
  KVTIER_RETURN_IF_ERROR(ValidateShape(shape));
  if (base == nullptr) return Status::InvalidArgument("kv pool: layer-first base is null");
  KvPool pool;
  pool.shape = shape;
  const int64_t row = static_cast<int64_t>(shape.row_bytes());
  pool.head_stride = row;
  pool.token_stride = row * shape.kv_heads;
  pool.kv_stride = pool.token_stride * shape.tokens_per_page;
  pool.page_stride = static_cast<int64_t>(shape.block_bytes());
  pool.layer_base.resize(shape.num_layers);
  for (uint32_t l = 0; l < shape.num_layers; ++l) {
    pool.layer_base[l] = static_cast<char*>(base) + uint64_t{l} * shape.layer_bytes();
  }
  return Finish(std::move(pool));
}

CopyGeometry MakeCopyGeometry(const KvPool& pool) {
  const KvPoolShape& s = pool.shape;
  CopyGeometry g;
  g.num_layers = s.num_layers;
  g.block_bytes = static_cast<uint32_t>(s.block_bytes());
  g.layer_bytes = static_cast<uint32_t>(s.layer_bytes());
  g.half_bytes = static_cast<uint32_t>(s.half_bytes());
  g.row_bytes = static_cast<uint32_t>(s.row_bytes());
  g.kv_stride = pool.kv_stride;
  g.page_stride = pool.page_stride;
  g.token_stride = pool.token_stride;
  g.head_stride = pool.head_stride;

  // Merge inner dimensions while they are contiguous in the pool too.
  uint32_t run = g.row_bytes;
  uint32_t runs_per_token = s.kv_heads;
  if (s.kv_heads == 1 || pool.head_stride == static_cast<int64_t>(g.row_bytes)) {
    run = g.row_bytes * s.kv_heads;
    runs_per_token = 1;
    g.head_stride = 0;  // h is always 0 now
    if (pool.token_stride == static_cast<int64_t>(run)) {
      run = g.half_bytes;
      g.token_stride = 0;  // t is always 0 now
    }
  }
  g.run_bytes = run;
  g.div_layer = FastDiv::Make(g.layer_bytes);
  g.div_half = FastDiv::Make(g.half_bytes);
  g.div_run = FastDiv::Make(g.run_bytes);
  g.div_heads = FastDiv::Make(runs_per_token);
  return g;
}

}  // namespace kvtier
