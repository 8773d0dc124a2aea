// Safetensors checkpoints: reading (memory-mapped, validated) and writing.
//
// Format (huggingface/safetensors): an 8-byte little-endian header length N,
// N bytes of JSON {"name": {"dtype": "BF16", "shape": [..],
// "data_offsets": [begin, end]}, "__metadata__": {...}}, then the data; offsets
// are relative to the end of the header. A checkpoint directory holds
// config.json and either model.safetensors or model.safetensors.index.json
// ({"weight_map": {"name": "model-00001-of-00004.safetensors", ...}}).
//
// Every error names the file and, where one is at fault, the tensor.
//
// Ownership: a SafetensorsFile owns its mapping; TensorView::data points into
// it and lives as long as the file (or the Checkpoint holding it).
// Thread safety: reading a const object from several threads is safe.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "engine_adapter/engine/model_config.h"
#include "tiers/status.h"

namespace kvtier::engine {

enum class TensorDtype : uint8_t { kBF16, kF16, kF32, kF64, kI64, kI32, kI16, kI8, kU8, kBool, kF8E4M3, kF8E5M2 };
// "BF16", "F16", ... as safetensors spells them.
const char* TensorDtypeName(TensorDtype dtype);
size_t TensorDtypeSize(TensorDtype dtype);

struct TensorView {
  std::string name;
  TensorDtype dtype = TensorDtype::kBF16;
  std::vector<int64_t> shape;
  const uint8_t* data = nullptr;  // inside the mapping
  uint64_t bytes = 0;
  std::string file;               // the .safetensors file it lives in
  uint64_t elements() const;
};

class SafetensorsFile {
 public:
  // Maps and validates `path`. Errors: NotFound, IOError, Corruption
  // ("<path>: header length 1e12 is beyond the file's 4096 bytes", "<path>:
  // tensor 'x': data_offsets [0, 10] do not match BF16 [3, 4] (24 bytes)",
  // overlapping or out-of-file ranges, truncated file), InvalidArgument
  // (unknown dtype, malformed JSON, negative or overflowing shapes).
  static Result<std::unique_ptr<SafetensorsFile>> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const TensorView* Find(const std::string& name) const;

 private:
  SafetensorsFile() = default;
  std::string path_;
  void* map_ = nullptr;
  size_t map_bytes_ = 0;
  std::map<std::string, TensorView> tensors_;
};

// A checkpoint directory: config.json plus one or several safetensors files.
class Checkpoint {
 public:
  // Errors: NotFound (no config.json, no model.safetensors nor index, a shard
  // the index names is missing), plus those of LoadModelConfig and
  // SafetensorsFile::Open, and Corruption when the index maps a tensor to a
  // shard that does not hold it.
  static Result<Checkpoint> Open(const std::string& dir);

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }

  // The tensor `name`, checked: NotFound ("<dir>: tensor 'model.norm.weight'
  // is missing"), InvalidArgument ("<file>: tensor 'x' has shape [4096, 10],
  // expected [4096, 4096]" or "dtype F32, expected BF16").
  Result<const TensorView*> Get(const std::string& name, std::span<const int64_t> shape,
                                TensorDtype dtype = TensorDtype::kBF16) const;
  // Every tensor, by name.
  const std::map<std::string, const TensorView*>& all() const { return index_; }

 private:
  std::string dir_;
  ModelConfig config_;
  std::vector<std::shared_ptr<SafetensorsFile>> files_;
  std::map<std::string, const TensorView*> index_;
};

// The HF tensor names and shapes a Llama checkpoint must hold for `config`
// (model.embed_tokens.weight, model.layers.N.self_attn.q_proj.weight, ...,
// model.norm.weight, lm_head.weight unless tied), in file order.
struct TensorSpec {
  std::string name;
  std::vector<int64_t> shape;
};
std::vector<TensorSpec> LlamaTensorSpecs(const ModelConfig& config);

// Checks that `ckpt` holds every tensor LlamaTensorSpecs names, in BF16 and of
// the right shape. Errors as Checkpoint::Get.
Status ValidateLlamaCheckpoint(const Checkpoint& ckpt);

// Writes a checkpoint with seeded random bf16 weights: config.json, and
// model.safetensors or, when the weights exceed `shard_bytes`, shards
// model-0000K-of-0000N.safetensors with model.safetensors.index.json.
// Linear weights are uniform with standard deviation 0.02 (HF's
// initializer_range), norm weights 1 + uniform(-0.1, 0.1), embeddings std
// 0.02. The same (config, seed) gives the same bytes on every machine.
// `progress(bytes_written, bytes_total)` is called as the write advances.
// Errors: InvalidArgument (config), IOError (the directory or a write).
struct RandomCheckpointOptions {
  uint64_t seed = 0;
  uint64_t shard_bytes = uint64_t{5} << 30;
  unsigned threads = 0;  // 0: hardware concurrency
  std::function<void(uint64_t, uint64_t)> progress;
};
Status WriteRandomCheckpoint(const ModelConfig& config, const std::string& dir,
                             const RandomCheckpointOptions& options);

// Float <-> bfloat16 (round to nearest even), as PyTorch converts.
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t b);

}  // namespace kvtier::engine
