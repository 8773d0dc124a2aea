// ModelConfig: the shape of a Llama-family model, as Hugging Face's
// config.json describes it (LlamaConfig), parsed with nlohmann-json.
//
// Only what changes the computation is kept: sizes, RoPE (rope_theta and the
// "llama3" rope_scaling), RMSNorm epsilon, tied embeddings, special tokens.
// Fields HF derives are derived the same way: head_dim defaults to
// hidden_size / num_attention_heads, num_key_value_heads to
// num_attention_heads, tie_word_embeddings to false.
//
// Thread safety: a value.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier::engine {

struct RopeScaling {
  enum class Type : uint8_t { kNone, kLlama3 };
  Type type = Type::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  uint32_t original_max_position_embeddings = 8192;
};

struct ModelConfig {
  std::string model_type = "llama";
  uint32_t vocab_size = 0;
  uint32_t hidden_size = 0;
  uint32_t intermediate_size = 0;
  uint32_t num_hidden_layers = 0;
  uint32_t num_attention_heads = 0;
  uint32_t num_key_value_heads = 0;
  uint32_t head_dim = 0;
  uint32_t max_position_embeddings = 0;
  double rms_norm_eps = 1e-5;
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  int32_t bos_token_id = -1;                 // -1: none
  std::vector<int32_t> eos_token_ids;        // config's eos_token_id (int or list)
  std::string torch_dtype = "bfloat16";

  // OK, or InvalidArgument naming the field: sizes zero or beyond the limits
  // below, heads not dividing, head_dim not one the kernels support (64, 128),
  // rope_theta <= 0, eps out of (0, 1), token ids outside the vocabulary, an
  // unsupported model_type (llama, mistral) or dtype (bfloat16).
  Status Validate() const;

  // HF config.json text for this configuration (what make-random writes);
  // ParseModelConfig(ToJson()) gives back an equal config.
  std::string ToJson() const;

  // Parameter count (embeddings, layers, final norm, untied lm_head).
  uint64_t NumParameters() const;
  // "llama: 32 layers, hidden 4096, 32/8 heads x 128, mlp 14336, vocab 128256".
  std::string DebugString() const;
};

// Limits Validate() enforces (what the engine's kernels and indices support).
inline constexpr uint32_t kMaxHiddenSize = 65536;
inline constexpr uint32_t kMaxLayers = 1024;
inline constexpr uint32_t kMaxVocab = 1u << 24;
inline constexpr uint32_t kMaxHeads = 1024;

// Parses config.json text. `source` names the file in error messages. Errors:
// InvalidArgument ("<source>: not JSON: ...", "<source>: hidden_size: ...").
Result<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source);
// Reads and parses a config.json. Errors: NotFound, IOError, InvalidArgument.
Result<ModelConfig> LoadModelConfig(const std::string& path);
// Built-in shapes: "tiny" (4 layers, hidden 512, 8/2 heads x 64, tied
// embeddings, vocab 4096, llama3 rope scaling) and "llama-3-8b"
// (Meta-Llama-3.1-8B's config). Errors: NotFound for another name.
Result<ModelConfig> PresetConfig(std::string_view name);

// RoPE inverse frequencies (head_dim / 2 values), computed as HF's
// ROPE_INIT_FUNCTIONS do in float32, including the llama3 scaling.
std::vector<float> RopeInvFreq(const ModelConfig& config);

}  // namespace kvtier::engine
