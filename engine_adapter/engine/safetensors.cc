// Safetensors reading and Llama checkpoint checks: see
// engine_adapter/engine/safetensors.h. The writer is random_checkpoint.cc.
#include "engine_adapter/engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <utility>

namespace kvtier::engine {
namespace {

using json = nlohmann::json;

struct DtypeInfo {
  TensorDtype dtype;
  const char* name;
  size_t size;
};
constexpr DtypeInfo kDtypes[] = {
    {TensorDtype::kBF16, "BF16", 2},      {TensorDtype::kF16, "F16", 2},
    {TensorDtype::kF32, "F32", 4},        {TensorDtype::kF64, "F64", 8},
    {TensorDtype::kI64, "I64", 8},        {TensorDtype::kI32, "I32", 4},
    {TensorDtype::kI16, "I16", 2},        {TensorDtype::kI8, "I8", 1},
    {TensorDtype::kU8, "U8", 1},          {TensorDtype::kBool, "BOOL", 1},
    {TensorDtype::kF8E4M3, "F8_E4M3", 1}, {TensorDtype::kF8E5M2, "F8_E5M2", 1},
};

bool DtypeFromName(const std::string& name, TensorDtype* out) {
  for (const DtypeInfo& d : kDtypes) {
    if (name == d.name) {
      *out = d.dtype;
      return true;
    }
  }
  return false;
}

std::string ShapeString(std::span<const int64_t> shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s += ", ";
    s += std::to_string(shape[i]);
  }
  return s + "]";
}

std::string Quoted(const std::string& name) { return "'" + name + "'"; }

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

// A non-negative JSON integer.
bool ReadU64(const json& v, uint64_t* out) {
  if (!v.is_number_unsigned()) return false;
  *out = v.get<uint64_t>();
  return true;
}

struct Range {
  uint64_t begin, end;
  const std::string* name;
};

}  // namespace

const char* TensorDtypeName(TensorDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.name;
  }
  return "?";
}

size_t TensorDtypeSize(TensorDtype dtype) {
  for (const DtypeInfo& d : kDtypes) {
    if (d.dtype == dtype) return d.size;
  }
  return 0;
}

uint64_t TensorView::elements() const {
  uint64_t n = 1;
  for (int64_t d : shape) n *= static_cast<uint64_t>(d);
  return n;
}

Result<std::unique_ptr<SafetensorsFile>> SafetensorsFile::Open(const std::string& path) {
  int raw = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (raw < 0) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": open: " + std::strerror(err));
  }
  Fd fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::IOError(path + ": fstat: " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return Status::IOError(path + ": not a regular file");
  const uint64_t file_bytes = static_cast<uint64_t>(st.st_size);
  if (file_bytes < 8) {
    return Status::Corruption(path + ": " + std::to_string(file_bytes) +
                              " bytes, too short for the 8-byte header length");
  }

  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->path_ = path;
  void* map = ::mmap(nullptr, file_bytes, PROT_READ, MAP_PRIVATE, fd.get(), 0);
  if (map == MAP_FAILED) return Status::IOError(path + ": mmap: " + std::strerror(errno));
  f->map_ = map;
  f->map_bytes_ = file_bytes;
  (void)::madvise(map, file_bytes, MADV_SEQUENTIAL);  // advice only

  const uint8_t* base = static_cast<const uint8_t*>(map);
  uint64_t header_bytes = 0;
  for (int i = 7; i >= 0; --i) header_bytes = (header_bytes << 8) | base[i];
  if (header_bytes > file_bytes - 8) {
    return Status::Corruption(path + ": header length " + std::to_string(header_bytes) +
                              " is beyond the file's " + std::to_string(file_bytes) + " bytes");
  }
  const char* header = reinterpret_cast<const char*>(base + 8);
  json j;
  try {
    j = json::parse(header, header + header_bytes);
  } catch (const json::exception& e) {
    return Status::InvalidArgument(path + ": header is not JSON: " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument(path + ": header is not a JSON object");

  const uint8_t* data = base + 8 + header_bytes;
  const uint64_t data_bytes = file_bytes - 8 - header_bytes;
  std::vector<Range> ranges;
  for (auto it = j.begin(); it != j.end(); ++it) {
    const std::string& name = it.key();
    if (name == "__metadata__") continue;
    const std::string where = path + ": tensor " + Quoted(name);
    const json& e = it.value();
    if (!e.is_object()) return Status::InvalidArgument(where + ": not a JSON object");
    auto dt = e.find("dtype");
    auto sh = e.find("shape");
    auto off = e.find("data_offsets");
    if (dt == e.end() || !dt->is_string()) {
      return Status::InvalidArgument(where + ": dtype missing or not a string");
    }
    TensorView v;
    v.name = name;
    v.file = path;
    if (!DtypeFromName(dt->get<std::string>(), &v.dtype)) {
      return Status::InvalidArgument(where + ": unknown dtype '" + dt->get<std::string>() + "'");
    }
    if (sh == e.end() || !sh->is_array()) {
      return Status::InvalidArgument(where + ": shape missing or not an array");
    }
    uint64_t bytes = TensorDtypeSize(v.dtype);
    for (const json& d : *sh) {
      uint64_t n = 0;
      if (!ReadU64(d, &n) || n > uint64_t{INT64_MAX}) {
        return Status::InvalidArgument(where + ": shape " + sh->dump() +
                                       " is not a list of non-negative integers");
      }
      if (__builtin_mul_overflow(bytes, n, &bytes)) {
        return Status::InvalidArgument(where + ": shape " + sh->dump() + " overflows");
      }
      v.shape.push_back(static_cast<int64_t>(n));
    }
    uint64_t begin = 0, end = 0;
    if (off == e.end() || !off->is_array() || off->size() != 2 || !ReadU64((*off)[0], &begin) ||
        !ReadU64((*off)[1], &end)) {
      return Status::InvalidArgument(where + ": data_offsets missing or not [begin, end]");
    }
    const std::string offsets = "[" + std::to_string(begin) + ", " + std::to_string(end) + "]";
    if (begin > end) return Status::Corruption(where + ": data_offsets " + offsets + " reversed");
    if (end > data_bytes) {
      return Status::Corruption(path + ": truncated: tensor " + Quoted(name) + " ends at byte " +
                                std::to_string(end) + ", the file's data holds " +
                                std::to_string(data_bytes));
    }
    if (end - begin != bytes) {
      return Status::Corruption(where + ": data_offsets " + offsets + " do not match " +
                                TensorDtypeName(v.dtype) + " " + ShapeString(v.shape) + " (" +
                                std::to_string(bytes) + " bytes)");
    }
    v.data = data + begin;
    v.bytes = bytes;
    auto [pos, inserted] = f->tensors_.emplace(name, std::move(v));
    if (bytes > 0) ranges.push_back({begin, end, &pos->first});
  }

  std::sort(ranges.begin(), ranges.end(),
            [](const Range& a, const Range& b) { return a.begin < b.begin; });
  for (size_t i = 1; i < ranges.size(); ++i) {
    const Range& a = ranges[i - 1];
    const Range& b = ranges[i];
    if (b.begin < a.end) {
      return Status::Corruption(path + ": tensors " + Quoted(*a.name) + " [" +
                                std::to_string(a.begin) + ", " + std::to_string(a.end) + "] and " +
                                Quoted(*b.name) + " [" + std::to_string(b.begin) + ", " +
                                std::to_string(b.end) + "] overlap");
    }
  }
  return f;
}

SafetensorsFile::~SafetensorsFile() {
  if (map_ != nullptr) ::munmap(map_, map_bytes_);
}

const TensorView* SafetensorsFile::Find(const std::string& name) const {
  auto it = tensors_.find(name);
  return it == tensors_.end() ? nullptr : &it->second;
}

Result<Checkpoint> Checkpoint::Open(const std::string& dir) {
  Checkpoint ckpt;
  ckpt.dir_ = dir;
  KVTIER_ASSIGN_OR_RETURN(ckpt.config_, LoadModelConfig(dir + "/config.json"));

  const std::string index_path = dir + "/model.safetensors.index.json";
  std::map<std::string, std::string> weight_map;  // tensor -> shard
  std::vector<std::string> shards;
  if (Exists(index_path)) {
    std::ifstream in(index_path, std::ios::binary);
    std::ostringstream text;
    text << in.rdbuf();
    if (!in) return Status::IOError(index_path + ": read failed");
    json j;
    try {
      j = json::parse(text.str());
    } catch (const json::exception& e) {
      return Status::InvalidArgument(index_path + ": not JSON: " + e.what());
    }
    auto wm = j.is_object() ? j.find("weight_map") : j.end();
    if (!j.is_object() || wm == j.end() || !wm->is_object()) {
      return Status::InvalidArgument(index_path + ": no weight_map object");
    }
    std::set<std::string> seen;
    for (auto it = wm->begin(); it != wm->end(); ++it) {
      if (!it->is_string()) {
        return Status::InvalidArgument(index_path + ": tensor " + Quoted(it.key()) +
                                       ": the shard is not a string");
      }
      const std::string shard = it->get<std::string>();
      if (shard.empty() || shard == "." || shard == ".." ||
          shard.find('/') != std::string::npos || shard.find('\0') != std::string::npos) {
        return Status::InvalidArgument(index_path + ": tensor " + Quoted(it.key()) + ": shard " +
                                       Quoted(shard) + " is not a plain file name");
      }
      weight_map[it.key()] = shard;
      if (seen.insert(shard).second) shards.push_back(shard);
    }
  } else {
    if (!Exists(dir + "/model.safetensors")) {
      return Status::NotFound(dir + ": neither model.safetensors nor "
                                    "model.safetensors.index.json");
    }
    shards.push_back("model.safetensors");
  }

  std::map<std::string, std::shared_ptr<SafetensorsFile>> by_shard;
  for (const std::string& shard : shards) {
    auto file = SafetensorsFile::Open(dir + "/" + shard);
    if (!file.ok()) {
      if (file.status().IsNotFound() && !weight_map.empty()) {
        return Status::NotFound(index_path + ": shard " + Quoted(shard) + " is missing");
      }
      return file.status();
    }
    std::shared_ptr<SafetensorsFile> f = std::move(file).value();
    for (const auto& [name, view] : f->tensors()) {
      auto [it, inserted] = ckpt.index_.emplace(name, &view);
      if (!inserted) {
        return Status::Corruption(dir + ": tensor " + Quoted(name) + " is in both " +
                                  it->second->file + " and " + f->path());
      }
    }
    by_shard[shard] = f;
    ckpt.files_.push_back(std::move(f));
  }
  for (const auto& [name, shard] : weight_map) {
    if (by_shard[shard]->Find(name) == nullptr) {
      return Status::Corruption(index_path + ": tensor " + Quoted(name) + " is mapped to " +
                                Quoted(shard) + ", which does not hold it");
    }
  }
  return ckpt;
}

Result<const TensorView*> Checkpoint::Get(const std::string& name,
                                          std::span<const int64_t> shape,
                                          TensorDtype dtype) const {
  auto it = index_.find(name);
  if (it == index_.end()) return Status::NotFound(dir_ + ": tensor " + Quoted(name) + " is missing");
  const TensorView* v = it->second;
  if (v->dtype != dtype) {
    return Status::InvalidArgument(v->file + ": tensor " + Quoted(name) + " has dtype " +
                                   TensorDtypeName(v->dtype) + ", expected " +
                                   TensorDtypeName(dtype));
  }
  if (!std::equal(v->shape.begin(), v->shape.end(), shape.begin(), shape.end())) {
    return Status::InvalidArgument(v->file + ": tensor " + Quoted(name) + " has shape " +
                                   ShapeString(v->shape) + ", expected " + ShapeString(shape));
  }
  return v;
}

std::vector<TensorSpec> LlamaTensorSpecs(const ModelConfig& c) {
  const int64_t h = c.hidden_size;
  const int64_t q = int64_t{c.num_attention_heads} * c.head_dim;
  const int64_t kv = int64_t{c.num_key_value_heads} * c.head_dim;
  const int64_t mlp = c.intermediate_size;
  const int64_t vocab = c.vocab_size;
  std::vector<TensorSpec> specs;
  specs.push_back({"model.embed_tokens.weight", {vocab, h}});
  for (uint32_t i = 0; i < c.num_hidden_layers; ++i) {
    const std::string p = "model.layers." + std::to_string(i) + ".";
    specs.push_back({p + "input_layernorm.weight", {h}});
    specs.push_back({p + "self_attn.q_proj.weight", {q, h}});
    specs.push_back({p + "self_attn.k_proj.weight", {kv, h}});
    specs.push_back({p + "self_attn.v_proj.weight", {kv, h}});
    specs.push_back({p + "self_attn.o_proj.weight", {h, q}});
    specs.push_back({p + "post_attention_layernorm.weight", {h}});
    specs.push_back({p + "mlp.gate_proj.weight", {mlp, h}});
    specs.push_back({p + "mlp.up_proj.weight", {mlp, h}});
    specs.push_back({p + "mlp.down_proj.weight", {h, mlp}});
  }
  specs.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) specs.push_back({"lm_head.weight", {vocab, h}});
  return specs;
}

Status ValidateLlamaCheckpoint(const Checkpoint& ckpt) {
  // With tied embeddings a stored lm_head.weight is not among the specs, so
  // it is not looked at.
  for (const TensorSpec& spec : LlamaTensorSpecs(ckpt.config())) {
    auto v = ckpt.Get(spec.name, spec.shape);
    if (!v.ok()) return v.status();
  }
  return Status::OK();
}

uint16_t FloatToBf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof(u));
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;  // NaN, as c10::BFloat16
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

float Bf16ToFloat(uint16_t b) {
  uint32_t u = uint32_t{b} << 16;
  float f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

}  // namespace kvtier::engine
