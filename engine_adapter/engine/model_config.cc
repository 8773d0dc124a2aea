// ModelConfig: see engine_adapter/engine/model_config.h.
//
// Parsing follows Hugging Face's LlamaConfig: absent or null optional fields
// take LlamaConfig's defaults, and rope parameters are read from
// "rope_parameters" (transformers 5) when present, else from "rope_theta" and
// "rope_scaling". nlohmann-json's exceptions stay inside this file.
#include "engine_adapter/engine/model_config.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <nlohmann/json.hpp>
#include <numbers>
#include <sstream>
#include <utility>

namespace kvtier::engine {
namespace {

using json = nlohmann::json;
using ordered_json = nlohmann::ordered_json;

// Not among the header's limits: the largest Llama MLP (405B) is 53248 wide.
constexpr uint32_t kMaxIntermediateSize = 1u << 20;

Status FieldError(std::string_view field, const std::string& what) {
  return Status::InvalidArgument(std::string(field) + ": " + what);
}

// A JSON value for an error message, cut short.
std::string Shown(const json& v) {
  std::string s = v.dump();
  if (s.size() > 40) s = s.substr(0, 37) + "...";
  return s;
}

// The value of `key`, or nullptr when absent or null (LlamaConfig treats a
// null like a missing field).
const json* Find(const json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return nullptr;
  return &*it;
}

Status ReadUint32(const json& obj, const char* key, std::string_view field, bool required,
                  uint32_t* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) return required ? FieldError(field, "missing") : Status::OK();
  constexpr uint64_t kMax = std::numeric_limits<uint32_t>::max();
  if (v->is_number_unsigned()) {
    uint64_t u = v->get<uint64_t>();
    if (u > kMax) return FieldError(field, Shown(*v) + " is beyond " + std::to_string(kMax));
    *out = static_cast<uint32_t>(u);
    return Status::OK();
  }
  if (v->is_number_integer()) return FieldError(field, "must not be negative, got " + Shown(*v));
  if (v->is_number_float()) {
    double d = v->get<double>();
    if (!std::isfinite(d) || d != std::floor(d)) {
      return FieldError(field, "must be an integer, got " + Shown(*v));
    }
    if (d < 0) return FieldError(field, "must not be negative, got " + Shown(*v));
    if (d > static_cast<double>(kMax)) {
      return FieldError(field, Shown(*v) + " is beyond " + std::to_string(kMax));
    }
    *out = static_cast<uint32_t>(d);
    return Status::OK();
  }
  return FieldError(field, "must be an integer, got " + Shown(*v));
}

Status ReadDouble(const json& obj, const char* key, std::string_view field, bool required,
                  double* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) return required ? FieldError(field, "missing") : Status::OK();
  if (!v->is_number()) return FieldError(field, "must be a number, got " + Shown(*v));
  *out = v->get<double>();
  return Status::OK();
}

Status ReadBool(const json& obj, const char* key, bool* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) return Status::OK();
  if (!v->is_boolean()) return FieldError(key, "must be true or false, got " + Shown(*v));
  *out = v->get<bool>();
  return Status::OK();
}

Status ReadString(const json& obj, const char* key, std::string* out) {
  const json* v = Find(obj, key);
  if (v == nullptr) return Status::OK();
  if (!v->is_string()) return FieldError(key, "must be a string, got " + Shown(*v));
  *out = v->get<std::string>();
  return Status::OK();
}

// A token id: a non-negative integer within int32.
Status TokenId(const json& v, std::string_view field, int32_t* out) {
  if (v.is_number_unsigned() && v.get<uint64_t>() <= uint64_t{INT32_MAX}) {
    *out = static_cast<int32_t>(v.get<uint64_t>());
    return Status::OK();
  }
  return FieldError(field, "must be a token id (a non-negative integer), got " + Shown(v));
}

Status ReadEos(const json& obj, std::vector<int32_t>* out) {
  const json* v = Find(obj, "eos_token_id");
  out->clear();
  if (v == nullptr) return Status::OK();
  if (!v->is_array()) {
    int32_t id = 0;
    KVTIER_RETURN_IF_ERROR(TokenId(*v, "eos_token_id", &id));
    out->push_back(id);
    return Status::OK();
  }
  for (const json& e : *v) {
    int32_t id = 0;
    KVTIER_RETURN_IF_ERROR(TokenId(e, "eos_token_id", &id));
    out->push_back(id);
  }
  return Status::OK();
}

// rope_scaling (or rope_parameters): {"rope_type": "llama3", "factor": 8.0,
// ...}; "type" is the legacy spelling of "rope_type".
Status ReadRopeScaling(const json& v, const std::string& field, bool type_may_be_absent,
                       RopeScaling* out) {
  if (!v.is_object()) return FieldError(field, "must be an object or null, got " + Shown(v));
  const json* type = Find(v, "rope_type");
  if (type == nullptr) type = Find(v, "type");
  std::string name = "default";
  if (type != nullptr) {
    if (!type->is_string()) {
      return FieldError(field + ".rope_type", "must be a string, got " + Shown(*type));
    }
    name = type->get<std::string>();
  } else if (!type_may_be_absent) {
    return FieldError(field + ".rope_type", "missing");
  }
  *out = RopeScaling();
  if (name == "default") return Status::OK();
  if (name != "llama3") {
    return FieldError(field, "unsupported rope_scaling type '" + name +
                                 "' (supported: llama3, default)");
  }
  out->type = RopeScaling::Type::kLlama3;
  KVTIER_RETURN_IF_ERROR(ReadDouble(v, "factor", field + ".factor", true, &out->factor));
  KVTIER_RETURN_IF_ERROR(
      ReadDouble(v, "low_freq_factor", field + ".low_freq_factor", true, &out->low_freq_factor));
  KVTIER_RETURN_IF_ERROR(ReadDouble(v, "high_freq_factor", field + ".high_freq_factor", true,
                                    &out->high_freq_factor));
  return ReadUint32(v, "original_max_position_embeddings",
                    field + ".original_max_position_embeddings", true,
                    &out->original_max_position_embeddings);
}

Status ParseFields(const json& j, ModelConfig* c) {
  KVTIER_RETURN_IF_ERROR(ReadString(j, "model_type", &c->model_type));
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "vocab_size", "vocab_size", true, &c->vocab_size));
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "hidden_size", "hidden_size", true, &c->hidden_size));
  KVTIER_RETURN_IF_ERROR(
      ReadUint32(j, "intermediate_size", "intermediate_size", true, &c->intermediate_size));
  KVTIER_RETURN_IF_ERROR(
      ReadUint32(j, "num_hidden_layers", "num_hidden_layers", true, &c->num_hidden_layers));
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "num_attention_heads", "num_attention_heads", true,
                                    &c->num_attention_heads));
  c->num_key_value_heads = c->num_attention_heads;
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "num_key_value_heads", "num_key_value_heads", false,
                                    &c->num_key_value_heads));
  if (c->num_attention_heads == 0) {
    return FieldError("num_attention_heads", "must be in 1.." + std::to_string(kMaxHeads) +
                                                 ", got 0");
  }
  c->head_dim = c->hidden_size / c->num_attention_heads;
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "head_dim", "head_dim", false, &c->head_dim));
  KVTIER_RETURN_IF_ERROR(ReadUint32(j, "max_position_embeddings", "max_position_embeddings", true,
                                    &c->max_position_embeddings));
  c->rms_norm_eps = 1e-6;
  KVTIER_RETURN_IF_ERROR(ReadDouble(j, "rms_norm_eps", "rms_norm_eps", false, &c->rms_norm_eps));

  c->rope_theta = 10000.0;
  KVTIER_RETURN_IF_ERROR(ReadDouble(j, "rope_theta", "rope_theta", false, &c->rope_theta));
  c->rope_scaling = RopeScaling();
  if (const json* p = Find(j, "rope_parameters")) {
    KVTIER_RETURN_IF_ERROR(ReadRopeScaling(*p, "rope_parameters", true, &c->rope_scaling));
    KVTIER_RETURN_IF_ERROR(
        ReadDouble(*p, "rope_theta", "rope_parameters.rope_theta", false, &c->rope_theta));
  } else if (const json* s = Find(j, "rope_scaling")) {
    KVTIER_RETURN_IF_ERROR(ReadRopeScaling(*s, "rope_scaling", false, &c->rope_scaling));
  }

  c->tie_word_embeddings = false;
  KVTIER_RETURN_IF_ERROR(ReadBool(j, "tie_word_embeddings", &c->tie_word_embeddings));
  c->bos_token_id = -1;
  if (const json* b = Find(j, "bos_token_id")) {
    KVTIER_RETURN_IF_ERROR(TokenId(*b, "bos_token_id", &c->bos_token_id));
  }
  KVTIER_RETURN_IF_ERROR(ReadEos(j, &c->eos_token_ids));

  // "dtype" is transformers 5's name for "torch_dtype".
  c->torch_dtype = "bfloat16";
  KVTIER_RETURN_IF_ERROR(ReadString(j, Find(j, "torch_dtype") ? "torch_dtype" : "dtype",
                                    &c->torch_dtype));

  // What the engine does not compute: refuse rather than run another model.
  for (const char* key : {"attention_bias", "mlp_bias"}) {
    bool bias = false;
    KVTIER_RETURN_IF_ERROR(ReadBool(j, key, &bias));
    if (bias) return FieldError(key, "biases are not supported");
  }
  std::string act = "silu";
  KVTIER_RETURN_IF_ERROR(ReadString(j, "hidden_act", &act));
  if (act != "silu") return FieldError("hidden_act", "'" + act + "' is not supported (silu)");
  // Sliding-window attention (Mistral v0.1) changes every output past the
  // window; the engine attends all keys, so such a model is refused.
  if (auto it = j.find("sliding_window"); it != j.end() && !it->is_null())
    return FieldError("sliding_window", "sliding-window attention is not supported");
  return Status::OK();
}

Status CheckRange(std::string_view field, uint64_t v, uint64_t lo, uint64_t hi) {
  if (v >= lo && v <= hi) return Status::OK();
  return FieldError(field, "must be in " + std::to_string(lo) + ".." + std::to_string(hi) +
                               ", got " + std::to_string(v));
}

std::string Num(double d) {
  std::ostringstream s;
  s << d;
  return s.str();
}

}  // namespace

Status ModelConfig::Validate() const {
  if (model_type != "llama" && model_type != "mistral") {
    return FieldError("model_type", "'" + model_type + "' is not supported (llama, mistral)");
  }
  if (torch_dtype != "bfloat16") {
    return FieldError("torch_dtype", "'" + torch_dtype +
                                         "': only bfloat16 checkpoints are supported");
  }
  KVTIER_RETURN_IF_ERROR(CheckRange("vocab_size", vocab_size, 1, kMaxVocab));
  KVTIER_RETURN_IF_ERROR(CheckRange("hidden_size", hidden_size, 1, kMaxHiddenSize));
  KVTIER_RETURN_IF_ERROR(
      CheckRange("intermediate_size", intermediate_size, 1, kMaxIntermediateSize));
  KVTIER_RETURN_IF_ERROR(CheckRange("num_hidden_layers", num_hidden_layers, 1, kMaxLayers));
  KVTIER_RETURN_IF_ERROR(CheckRange("num_attention_heads", num_attention_heads, 1, kMaxHeads));
  KVTIER_RETURN_IF_ERROR(
      CheckRange("num_key_value_heads", num_key_value_heads, 1, num_attention_heads));
  KVTIER_RETURN_IF_ERROR(CheckRange("max_position_embeddings", max_position_embeddings, 1,
                                    std::numeric_limits<uint32_t>::max()));
  if (num_attention_heads % num_key_value_heads != 0) {
    return FieldError("num_key_value_heads", std::to_string(num_key_value_heads) +
                                                 " does not divide num_attention_heads " +
                                                 std::to_string(num_attention_heads));
  }
  if (num_attention_heads / num_key_value_heads > 8) {
    return FieldError("num_key_value_heads",
                      "more than 8 query heads per kv head (" + std::to_string(num_attention_heads) +
                          " / " + std::to_string(num_key_value_heads) +
                          ") is not supported by the decode kernel");
  }
  if (head_dim != 64 && head_dim != 128) {
    return FieldError("head_dim", std::to_string(head_dim) + " is not supported (64, 128)");
  }
  // Rows of 16 bytes in bf16: the kernels' vector loads.
  if (hidden_size % 8 != 0) {
    return FieldError("hidden_size", std::to_string(hidden_size) + " is not a multiple of 8");
  }
  if (intermediate_size % 8 != 0) {
    return FieldError("intermediate_size",
                      std::to_string(intermediate_size) + " is not a multiple of 8");
  }
  if (!(rope_theta > 0) || !std::isfinite(rope_theta)) {
    return FieldError("rope_theta", "must be positive, got " + Num(rope_theta));
  }
  if (!(rms_norm_eps > 0 && rms_norm_eps < 1)) {
    return FieldError("rms_norm_eps", "must be in (0, 1), got " + Num(rms_norm_eps));
  }
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    const RopeScaling& r = rope_scaling;
    if (!(r.factor >= 1) || !std::isfinite(r.factor)) {
      return FieldError("rope_scaling.factor", "must be at least 1, got " + Num(r.factor));
    }
    if (!(r.low_freq_factor > 0) || !std::isfinite(r.low_freq_factor)) {
      return FieldError("rope_scaling.low_freq_factor",
                        "must be positive, got " + Num(r.low_freq_factor));
    }
    if (!(r.high_freq_factor > r.low_freq_factor) || !std::isfinite(r.high_freq_factor)) {
      return FieldError("rope_scaling.high_freq_factor",
                        "must exceed low_freq_factor, got " + Num(r.high_freq_factor));
    }
    if (r.original_max_position_embeddings == 0) {
      return FieldError("rope_scaling.original_max_position_embeddings", "must be positive");
    }
  }
  if (bos_token_id < -1 || (bos_token_id >= 0 && uint32_t(bos_token_id) >= vocab_size)) {
    return FieldError("bos_token_id", std::to_string(bos_token_id) +
                                          " is outside the vocabulary of " +
                                          std::to_string(vocab_size));
  }
  for (int32_t eos : eos_token_ids) {
    if (eos < 0 || uint32_t(eos) >= vocab_size) {
      return FieldError("eos_token_id", std::to_string(eos) + " is outside the vocabulary of " +
                                            std::to_string(vocab_size));
    }
  }
  return Status::OK();
}

std::string ModelConfig::ToJson() const {
  // Keys in HF's order (sorted), so the file reads like a downloaded one.
  ordered_json j;
  j["architectures"] = {model_type == "mistral" ? "MistralForCausalLM" : "LlamaForCausalLM"};
  j["attention_bias"] = false;
  j["attention_dropout"] = 0.0;
  j["bos_token_id"] = bos_token_id < 0 ? ordered_json(nullptr) : ordered_json(bos_token_id);
  if (eos_token_ids.empty()) {
    j["eos_token_id"] = nullptr;
  } else if (eos_token_ids.size() == 1) {
    j["eos_token_id"] = eos_token_ids[0];
  } else {
    j["eos_token_id"] = eos_token_ids;
  }
  j["head_dim"] = head_dim;
  j["hidden_act"] = "silu";
  j["hidden_size"] = hidden_size;
  j["initializer_range"] = 0.02;
  j["intermediate_size"] = intermediate_size;
  j["max_position_embeddings"] = max_position_embeddings;
  j["mlp_bias"] = false;
  j["model_type"] = model_type;
  j["num_attention_heads"] = num_attention_heads;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_key_value_heads"] = num_key_value_heads;
  j["pretraining_tp"] = 1;
  j["rms_norm_eps"] = rms_norm_eps;
  if (rope_scaling.type == RopeScaling::Type::kLlama3) {
    ordered_json r;
    r["factor"] = rope_scaling.factor;
    r["high_freq_factor"] = rope_scaling.high_freq_factor;
    r["low_freq_factor"] = rope_scaling.low_freq_factor;
    r["original_max_position_embeddings"] = rope_scaling.original_max_position_embeddings;
    r["rope_type"] = "llama3";
    j["rope_scaling"] = r;
  } else {
    j["rope_scaling"] = nullptr;
  }
  j["rope_theta"] = rope_theta;
  if (model_type == "mistral") j["sliding_window"] = nullptr;  // the engine has none
  j["tie_word_embeddings"] = tie_word_embeddings;
  j["torch_dtype"] = torch_dtype;
  j["use_cache"] = true;
  j["vocab_size"] = vocab_size;
  return j.dump(2) + "\n";
}

uint64_t ModelConfig::NumParameters() const {
  const uint64_t h = hidden_size;
  const uint64_t q = uint64_t{num_attention_heads} * head_dim;
  const uint64_t kv = uint64_t{num_key_value_heads} * head_dim;
  const uint64_t per_layer = 2 * h            // input and post-attention norms
                             + 2 * q * h      // q_proj, o_proj
                             + 2 * kv * h     // k_proj, v_proj
                             + 3 * h * intermediate_size;
  uint64_t n = uint64_t{vocab_size} * h + per_layer * num_hidden_layers + h;
  if (!tie_word_embeddings) n += uint64_t{vocab_size} * h;
  return n;
}

std::string ModelConfig::DebugString() const {
  return model_type + ": " + std::to_string(num_hidden_layers) + " layers, hidden " +
         std::to_string(hidden_size) + ", " + std::to_string(num_attention_heads) + "/" +
         std::to_string(num_key_value_heads) + " heads x " + std::to_string(head_dim) +
         ", mlp " + std::to_string(intermediate_size) + ", vocab " + std::to_string(vocab_size);
}

Result<ModelConfig> ParseModelConfig(std::string_view json_text, std::string_view source) {
  const std::string prefix = std::string(source) + ": ";
  json j;
  try {
    j = json::parse(json_text.begin(), json_text.end());
  } catch (const json::exception& e) {
    return Status::InvalidArgument(prefix + "not JSON: " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument(prefix + "not a JSON object");
  ModelConfig c;
  Status st = ParseFields(j, &c);
  if (st.ok()) st = c.Validate();
  if (!st.ok()) return Status::InvalidArgument(prefix + st.message());
  return c;
}

Result<ModelConfig> LoadModelConfig(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    int err = errno;
    if (err == ENOENT) return Status::NotFound(path + ": no such file");
    return Status::IOError(path + ": " + std::strerror(err));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::IOError(path + ": read failed");
  return ParseModelConfig(text.str(), path);
}

Result<ModelConfig> PresetConfig(std::string_view name) {
  ModelConfig c;
  if (name == "llama-3-8b") {  // Meta-Llama-3.1-8B
    c.vocab_size = 128256;
    c.hidden_size = 4096;
    c.intermediate_size = 14336;
    c.num_hidden_layers = 32;
    c.num_attention_heads = 32;
    c.num_key_value_heads = 8;
    c.head_dim = 128;
    c.max_position_embeddings = 131072;
    c.rope_scaling.original_max_position_embeddings = 8192;
    c.tie_word_embeddings = false;
    c.bos_token_id = 128000;
    c.eos_token_ids = {128001, 128008, 128009};
  } else if (name == "tiny") {
    c.vocab_size = 4096;
    c.hidden_size = 512;
    c.intermediate_size = 1408;
    c.num_hidden_layers = 4;
    c.num_attention_heads = 8;
    c.num_key_value_heads = 2;
    c.head_dim = 64;
    c.max_position_embeddings = 8192;
    // Below 8192 tokens, so that the scaling changes the computation.
    c.rope_scaling.original_max_position_embeddings = 1024;
    c.tie_word_embeddings = true;
    c.bos_token_id = 1;
    c.eos_token_ids = {2};
  } else {
    return Status::NotFound("unknown model preset '" + std::string(name) +
                            "' (tiny, llama-3-8b)");
  }
  c.rms_norm_eps = 1e-5;
  c.rope_theta = 500000.0;
  c.rope_scaling.type = RopeScaling::Type::kLlama3;
  c.rope_scaling.factor = 8.0;
  c.rope_scaling.low_freq_factor = 1.0;
  c.rope_scaling.high_freq_factor = 4.0;
  return c;
}

std::vector<float> RopeInvFreq(const ModelConfig& config) {
  // transformers, _compute_default_rope_parameters, in float32:
  //   1.0 / (base ** (torch.arange(0, dim, 2).float() / dim))
  // A Python scalar divided by a tensor is reciprocal(tensor) * scalar
  // (Tensor.__rdiv__); for the scalar 1.0 that equals 1 / x.
  const uint32_t dim = config.head_dim;
  const float base = static_cast<float>(config.rope_theta);
  std::vector<float> inv(dim / 2);
  for (uint32_t i = 0; i < dim / 2; ++i) {
    float exponent = static_cast<float>(2 * i) / static_cast<float>(dim);
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  if (config.rope_scaling.type != RopeScaling::Type::kLlama3) return inv;

  // _compute_llama3_parameters. Python scalars meet float32 tensors, so each
  // is rounded to float32 first; the wavelengths are Python floats (double).
  const RopeScaling& r = config.rope_scaling;
  const double old_ctx = r.original_max_position_embeddings;
  const float factor = static_cast<float>(r.factor);
  const float low = static_cast<float>(r.low_freq_factor);
  const float old_ctx_f = static_cast<float>(old_ctx);
  const float low_freq_wavelen = static_cast<float>(old_ctx / r.low_freq_factor);
  const float high_freq_wavelen = static_cast<float>(old_ctx / r.high_freq_factor);
  const float band = static_cast<float>(r.high_freq_factor - r.low_freq_factor);
  const float two_pi = static_cast<float>(2 * std::numbers::pi);
  for (float& f : inv) {
    const float wavelen = (1.0f / f) * two_pi;  // 2 * math.pi / inv_freq
    const float inv_llama = wavelen > low_freq_wavelen ? f / factor : f;
    const float smooth = ((1.0f / wavelen) * old_ctx_f - low) / band;
    const float a = (1.0f - smooth) * inv_llama;
    const float b = a / factor;
    const float c = smooth * inv_llama;
    const float smoothed = b + c;
    const bool medium = !(wavelen < high_freq_wavelen) && !(wavelen > low_freq_wavelen);
    f = medium ? smoothed : inv_llama;
  }
  return inv;
}

}  // namespace kvtier::engine
