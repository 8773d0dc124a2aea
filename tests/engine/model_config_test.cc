#include "engine_adapter/engine/model_config.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <nlohmann/json.hpp>
#include <numbers>
#include <string>

#include "tests/engine/engine_test_util.h"

namespace kvtier::engine {
namespace {

using json = nlohmann::json;
using testing::ExpectError;

constexpr const char* kSource = "ckpt/config.json";

// meta-llama/Llama-3.1-8B-Instruct's config.json.
constexpr const char* kLlama31Config = R"({
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [
    128001,
    128008,
    128009
  ],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3",
  "use_cache": true,
  "vocab_size": 128256
})";

void ExpectSameConfig(const ModelConfig& a, const ModelConfig& b) {
  EXPECT_EQ(a.model_type, b.model_type);
  EXPECT_EQ(a.vocab_size, b.vocab_size);
  EXPECT_EQ(a.hidden_size, b.hidden_size);
  EXPECT_EQ(a.intermediate_size, b.intermediate_size);
  EXPECT_EQ(a.num_hidden_layers, b.num_hidden_layers);
  EXPECT_EQ(a.num_attention_heads, b.num_attention_heads);
  EXPECT_EQ(a.num_key_value_heads, b.num_key_value_heads);
  EXPECT_EQ(a.head_dim, b.head_dim);
  EXPECT_EQ(a.max_position_embeddings, b.max_position_embeddings);
  EXPECT_EQ(a.rms_norm_eps, b.rms_norm_eps);
  EXPECT_EQ(a.rope_theta, b.rope_theta);
  EXPECT_EQ(a.rope_scaling.type, b.rope_scaling.type);
  EXPECT_EQ(a.rope_scaling.factor, b.rope_scaling.factor);
  EXPECT_EQ(a.rope_scaling.low_freq_factor, b.rope_scaling.low_freq_factor);
  EXPECT_EQ(a.rope_scaling.high_freq_factor, b.rope_scaling.high_freq_factor);
  EXPECT_EQ(a.rope_scaling.original_max_position_embeddings,
            b.rope_scaling.original_max_position_embeddings);
  EXPECT_EQ(a.tie_word_embeddings, b.tie_word_embeddings);
  EXPECT_EQ(a.bos_token_id, b.bos_token_id);
  EXPECT_EQ(a.eos_token_ids, b.eos_token_ids);
  EXPECT_EQ(a.torch_dtype, b.torch_dtype);
}

TEST(ModelConfigTest, ParsesLlama31Config) {
  auto c = ParseModelConfig(kLlama31Config, kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->vocab_size, 128256u);
  EXPECT_EQ(c->hidden_size, 4096u);
  EXPECT_EQ(c->intermediate_size, 14336u);
  EXPECT_EQ(c->num_hidden_layers, 32u);
  EXPECT_EQ(c->num_attention_heads, 32u);
  EXPECT_EQ(c->num_key_value_heads, 8u);
  EXPECT_EQ(c->head_dim, 128u);
  EXPECT_EQ(c->max_position_embeddings, 131072u);
  EXPECT_EQ(c->rms_norm_eps, 1e-5);
  EXPECT_EQ(c->rope_theta, 500000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 8.0);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 1.0);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 4.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 8192u);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->bos_token_id, 128000);
  EXPECT_EQ(c->eos_token_ids, (std::vector<int32_t>{128001, 128008, 128009}));
  EXPECT_EQ(c->torch_dtype, "bfloat16");
  // The preset is this config.
  ExpectSameConfig(*c, PresetConfig("llama-3-8b").value());
}

TEST(ModelConfigTest, DefaultsAsLlamaConfig) {
  auto c = ParseModelConfig(R"({"vocab_size": 1000, "hidden_size": 1024,
      "intermediate_size": 2048, "num_hidden_layers": 2, "num_attention_heads": 16,
      "max_position_embeddings": 4096, "head_dim": null})", kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->model_type, "llama");
  EXPECT_EQ(c->head_dim, 64u);  // hidden_size / num_attention_heads
  EXPECT_EQ(c->num_key_value_heads, 16u);
  EXPECT_FALSE(c->tie_word_embeddings);
  EXPECT_EQ(c->rope_theta, 10000.0);
  EXPECT_EQ(c->rms_norm_eps, 1e-6);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
  EXPECT_EQ(c->bos_token_id, -1);
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_EQ(c->torch_dtype, "bfloat16");
}

TEST(ModelConfigTest, AcceptsVariants) {
  json j = json::parse(kLlama31Config);
  j["eos_token_id"] = 128001;
  j["rope_scaling"].erase("rope_type");
  j["rope_scaling"]["type"] = "llama3";  // the legacy key
  j["model_type"] = "mistral";
  auto c = ParseModelConfig(j.dump(), kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->eos_token_ids, std::vector<int32_t>{128001});
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->model_type, "mistral");

  j["eos_token_id"] = nullptr;
  j["rope_scaling"] = nullptr;
  c = ParseModelConfig(j.dump(), kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->eos_token_ids.empty());
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);

  j["rope_scaling"] = {{"rope_type", "default"}};
  c = ParseModelConfig(j.dump(), kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);
}

// transformers 5: "dtype", and rope_theta inside "rope_parameters".
TEST(ModelConfigTest, ReadsRopeParameters) {
  json j = json::parse(kLlama31Config);
  j.erase("torch_dtype");
  j["dtype"] = "bfloat16";
  j.erase("rope_theta");
  j.erase("rope_scaling");
  j["rope_parameters"] = {{"rope_type", "llama3"},         {"rope_theta", 250000.0},
                          {"factor", 16.0},                {"low_freq_factor", 2.0},
                          {"high_freq_factor", 8.0},       {"original_max_position_embeddings", 4096}};
  auto c = ParseModelConfig(j.dump(), kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_theta, 250000.0);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(c->rope_scaling.factor, 16.0);
  EXPECT_EQ(c->rope_scaling.low_freq_factor, 2.0);
  EXPECT_EQ(c->rope_scaling.high_freq_factor, 8.0);
  EXPECT_EQ(c->rope_scaling.original_max_position_embeddings, 4096u);

  j["rope_parameters"] = {{"rope_type", "default"}, {"rope_theta", 1e6}};
  c = ParseModelConfig(j.dump(), kSource);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->rope_theta, 1e6);
  EXPECT_EQ(c->rope_scaling.type, RopeScaling::Type::kNone);

  j["rope_parameters"] = {{"rope_type", "yarn"}, {"factor", 4.0}};
  ExpectError(ParseModelConfig(j.dump(), kSource).status(), StatusCode::kInvalidArgument,
              {kSource, "rope_parameters", "unsupported rope_scaling type 'yarn'"});
}

struct BadCase {
  const char* what;
  std::function<void(json&)> edit;
  std::vector<std::string> message;  // besides the source
};

TEST(ModelConfigTest, RejectsBadFields) {
  const std::vector<BadCase> cases = {
      {"missing", [](json& j) { j.erase("hidden_size"); }, {"hidden_size: missing"}},
      {"null required", [](json& j) { j["vocab_size"] = nullptr; }, {"vocab_size: missing"}},
      {"string", [](json& j) { j["hidden_size"] = "4096"; },
       {"hidden_size", "must be an integer", "\"4096\""}},
      {"bool", [](json& j) { j["num_hidden_layers"] = true; }, {"num_hidden_layers", "integer"}},
      {"negative", [](json& j) { j["num_hidden_layers"] = -1; },
       {"num_hidden_layers", "must not be negative"}},
      {"zero", [](json& j) { j["vocab_size"] = 0; }, {"vocab_size", "1..16777216", "got 0"}},
      {"zero heads", [](json& j) { j["num_attention_heads"] = 0; }, {"num_attention_heads"}},
      {"fraction", [](json& j) { j["intermediate_size"] = 14336.5; },
       {"intermediate_size", "must be an integer"}},
      {"beyond uint32", [](json& j) { j["max_position_embeddings"] = 5000000000ull; },
       {"max_position_embeddings", "beyond 4294967295"}},
      {"beyond limit", [](json& j) { j["num_hidden_layers"] = 2000; },
       {"num_hidden_layers", "1..1024"}},
      {"not dividing", [](json& j) { j["num_key_value_heads"] = 5; },
       {"num_key_value_heads", "does not divide"}},
      {"more kv heads", [](json& j) { j["num_key_value_heads"] = 64; },
       {"num_key_value_heads", "1..32"}},
      {"head_dim", [](json& j) { j["head_dim"] = 96; }, {"head_dim", "96", "64, 128"}},
      {"gqa ratio", [](json& j) { j["num_key_value_heads"] = 2; },
       {"num_key_value_heads", "more than 8 query heads"}},
      {"sliding window", [](json& j) { j["sliding_window"] = 4096; },
       {"sliding_window", "not supported"}},
      {"hidden not /8", [](json& j) { j["hidden_size"] = 4100; j["head_dim"] = 128; },
       {"hidden_size", "multiple of 8"}},
      {"mlp not /8", [](json& j) { j["intermediate_size"] = 14338; },
       {"intermediate_size", "multiple of 8"}},
      {"rope type", [](json& j) { j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", 2.0}}; },
       {"rope_scaling", "unsupported rope_scaling type 'linear'"}},
      {"legacy rope type", [](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 2.0}}; },
       {"rope_scaling", "unsupported rope_scaling type 'dynamic'"}},
      {"rope no type", [](json& j) { j["rope_scaling"].erase("rope_type"); },
       {"rope_scaling.rope_type: missing"}},
      {"rope not object", [](json& j) { j["rope_scaling"] = "llama3"; }, {"rope_scaling", "object"}},
      {"rope factor missing", [](json& j) { j["rope_scaling"].erase("factor"); },
       {"rope_scaling.factor: missing"}},
      {"rope factor < 1", [](json& j) { j["rope_scaling"]["factor"] = 0.5; },
       {"rope_scaling.factor", "at least 1"}},
      {"rope low <= 0", [](json& j) { j["rope_scaling"]["low_freq_factor"] = 0.0; },
       {"rope_scaling.low_freq_factor"}},
      {"rope high <= low", [](json& j) { j["rope_scaling"]["high_freq_factor"] = 1.0; },
       {"rope_scaling.high_freq_factor"}},
      {"rope old ctx 0", [](json& j) { j["rope_scaling"]["original_max_position_embeddings"] = 0; },
       {"rope_scaling.original_max_position_embeddings"}},
      {"rope_theta", [](json& j) { j["rope_theta"] = 0.0; }, {"rope_theta", "positive"}},
      {"rope_theta string", [](json& j) { j["rope_theta"] = "500000"; }, {"rope_theta", "number"}},
      {"eps zero", [](json& j) { j["rms_norm_eps"] = 0.0; }, {"rms_norm_eps", "(0, 1)"}},
      {"eps big", [](json& j) { j["rms_norm_eps"] = 1.5; }, {"rms_norm_eps", "(0, 1)"}},
      {"dtype", [](json& j) { j["torch_dtype"] = "float16"; },
       {"torch_dtype", "'float16'", "only bfloat16"}},
      {"new dtype", [](json& j) { j.erase("torch_dtype"); j["dtype"] = "float32"; },
       {"'float32'", "only bfloat16"}},
      {"eos beyond vocab", [](json& j) { j["eos_token_id"] = {128001, 200000}; },
       {"eos_token_id", "200000", "outside the vocabulary"}},
      {"eos negative", [](json& j) { j["eos_token_id"] = -5; }, {"eos_token_id", "token id"}},
      {"bos beyond vocab", [](json& j) { j["bos_token_id"] = 128256; },
       {"bos_token_id", "128256", "outside the vocabulary"}},
      {"attention_bias", [](json& j) { j["attention_bias"] = true; },
       {"attention_bias", "not supported"}},
      {"mlp_bias", [](json& j) { j["mlp_bias"] = true; }, {"mlp_bias", "not supported"}},
      {"bias not bool", [](json& j) { j["mlp_bias"] = 1; }, {"mlp_bias", "true or false"}},
      {"hidden_act", [](json& j) { j["hidden_act"] = "gelu"; }, {"hidden_act", "gelu"}},
      {"model_type", [](json& j) { j["model_type"] = "gpt2"; }, {"model_type", "gpt2"}},
      {"tie not bool", [](json& j) { j["tie_word_embeddings"] = "no"; },
       {"tie_word_embeddings"}},
  };
  for (const BadCase& bad : cases) {
    SCOPED_TRACE(bad.what);
    json j = json::parse(kLlama31Config);
    bad.edit(j);
    auto c = ParseModelConfig(j.dump(), kSource);
    ASSERT_FALSE(c.ok());
    ExpectError(c.status(), StatusCode::kInvalidArgument, {std::string(kSource) + ": "});
    for (const std::string& part : bad.message) {
      EXPECT_NE(c.status().message().find(part), std::string::npos)
          << "'" << part << "' not in: " << c.status().ToString();
    }
  }
  // head_dim derived from hidden_size / heads must also be one the kernels run.
  json j = json::parse(kLlama31Config);
  j.erase("head_dim");
  j["hidden_size"] = 3072;
  j["num_attention_heads"] = 32;  // 96
  ExpectError(ParseModelConfig(j.dump(), kSource).status(), StatusCode::kInvalidArgument,
              {kSource, "head_dim", "96"});
}

TEST(ModelConfigTest, RejectsMalformedJson) {
  ExpectError(ParseModelConfig("{\"hidden_size\": 4096,", kSource).status(),
              StatusCode::kInvalidArgument, {kSource, "not JSON"});
  ExpectError(ParseModelConfig("[1, 2]", kSource).status(), StatusCode::kInvalidArgument,
              {kSource, "not a JSON object"});
  ExpectError(ParseModelConfig("", kSource).status(), StatusCode::kInvalidArgument,
              {kSource, "not JSON"});
}

TEST(ModelConfigTest, LoadsFromFile) {
  testing::ScratchDir dir;
  ASSERT_TRUE(dir.ok());
  testing::WriteFile(dir.File("config.json"), kLlama31Config);
  auto c = LoadModelConfig(dir.File("config.json"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->hidden_size, 4096u);
  ExpectError(LoadModelConfig(dir.File("absent.json")).status(), StatusCode::kNotFound,
              {dir.File("absent.json")});
  json bad = json::parse(kLlama31Config);
  bad["hidden_size"] = "x";
  testing::WriteFile(dir.File("bad.json"), bad.dump());
  ExpectError(LoadModelConfig(dir.File("bad.json")).status(), StatusCode::kInvalidArgument,
              {dir.File("bad.json"), "hidden_size"});
}

TEST(ModelConfigTest, ToJsonRoundTrips) {
  for (const char* name : {"tiny", "llama-3-8b"}) {
    SCOPED_TRACE(name);
    auto preset = PresetConfig(name);
    ASSERT_TRUE(preset.ok()) << preset.status().ToString();
    ASSERT_TRUE(preset->Validate().ok()) << preset->Validate().ToString();
    const std::string text = preset->ToJson();
    auto back = ParseModelConfig(text, name);
    ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << text;
    ExpectSameConfig(*preset, *back);

    json j = json::parse(text);
    EXPECT_EQ(j["architectures"], json({"LlamaForCausalLM"}));
    EXPECT_EQ(j["torch_dtype"], "bfloat16");
    EXPECT_EQ(j["hidden_act"], "silu");
    EXPECT_EQ(j["attention_bias"], false);
    EXPECT_EQ(j["mlp_bias"], false);
    EXPECT_EQ(j["rope_scaling"]["rope_type"], "llama3");
    EXPECT_EQ(j["rope_scaling"]["factor"], 8.0);
  }
  // One eos id is written as an int, several as a list, none as null.
  json tiny = json::parse(PresetConfig("tiny")->ToJson());
  EXPECT_EQ(tiny["eos_token_id"], 2);
  EXPECT_EQ(tiny["tie_word_embeddings"], true);
  json big = json::parse(PresetConfig("llama-3-8b")->ToJson());
  EXPECT_EQ(big["eos_token_id"], json({128001, 128008, 128009}));

  ModelConfig c = PresetConfig("tiny").value();
  c.eos_token_ids.clear();
  c.bos_token_id = -1;
  c.rope_scaling = RopeScaling();
  c.rope_theta = 10000.0;
  json none = json::parse(c.ToJson());
  EXPECT_TRUE(none["eos_token_id"].is_null());
  EXPECT_TRUE(none["bos_token_id"].is_null());
  EXPECT_TRUE(none["rope_scaling"].is_null());
  auto back = ParseModelConfig(c.ToJson(), "none");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameConfig(c, *back);

  c.model_type = "mistral";
  json mistral = json::parse(c.ToJson());
  EXPECT_EQ(mistral["architectures"], json({"MistralForCausalLM"}));
  EXPECT_TRUE(mistral["sliding_window"].is_null());
  back = ParseModelConfig(c.ToJson(), "mistral");
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  ExpectSameConfig(c, *back);
}

TEST(ModelConfigTest, Presets) {
  auto big = PresetConfig("llama-3-8b");
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->NumParameters(), 8030261248ull);  // Llama-3.1-8B
  EXPECT_EQ(big->DebugString(),
            "llama: 32 layers, hidden 4096, 32/8 heads x 128, mlp 14336, vocab 128256");

  auto tiny = PresetConfig("tiny");
  ASSERT_TRUE(tiny.ok());
  EXPECT_EQ(tiny->num_hidden_layers, 4u);
  EXPECT_EQ(tiny->hidden_size, 512u);
  EXPECT_EQ(tiny->num_attention_heads, 8u);
  EXPECT_EQ(tiny->num_key_value_heads, 2u);
  EXPECT_EQ(tiny->head_dim, 64u);
  EXPECT_EQ(tiny->vocab_size, 4096u);
  EXPECT_TRUE(tiny->tie_word_embeddings);
  EXPECT_EQ(tiny->rope_scaling.type, RopeScaling::Type::kLlama3);
  EXPECT_EQ(tiny->rope_scaling.original_max_position_embeddings, 1024u);
  // Tied: no lm_head. 4096*512 + 4 * (2*512 + 2*512*512 + 2*128*512 + 3*512*1408) + 512.
  EXPECT_EQ(tiny->NumParameters(), 2097152ull + 4 * (1024ull + 524288 + 131072 + 2162688) + 512);

  ExpectError(PresetConfig("llama-70b").status(), StatusCode::kNotFound, {"llama-70b"});
}

TEST(ModelConfigTest, RopeInvFreqWithoutScaling) {
  ModelConfig c = PresetConfig("llama-3-8b").value();
  c.rope_scaling = RopeScaling();
  c.rope_theta = 10000.0;
  std::vector<float> inv = RopeInvFreq(c);
  ASSERT_EQ(inv.size(), 64u);
  EXPECT_EQ(inv[0], 1.0f);
  const float last = 1.0f / std::pow(10000.0f, 126.0f / 128.0f);
  EXPECT_LE(std::fabs(inv[63] - last), std::nextafter(last, 1.0f) - last);
  for (size_t i = 1; i < inv.size(); ++i) {
    EXPECT_LT(inv[i], inv[i - 1]);
    const double exact = std::pow(10000.0, -2.0 * i / 128.0);
    EXPECT_NEAR(inv[i] / exact, 1.0, 1e-6) << i;
  }
  // 10000^(-1/2) at i = 32.
  EXPECT_NEAR(inv[32], 0.01f, 1e-8f);
}

TEST(ModelConfigTest, RopeInvFreqLlama3) {
  ModelConfig scaled = PresetConfig("llama-3-8b").value();
  ModelConfig plain = scaled;
  plain.rope_scaling = RopeScaling();
  std::vector<float> s = RopeInvFreq(scaled);
  std::vector<float> p = RopeInvFreq(plain);
  ASSERT_EQ(s.size(), 64u);
  ASSERT_EQ(p.size(), 64u);
  int high = 0, medium = 0, low = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const double wavelen = 2 * std::numbers::pi / p[i];
    if (wavelen < 8192.0 / 4.0) {  // high frequency: untouched
      EXPECT_EQ(s[i], p[i]) << i;
      ++high;
    } else if (wavelen > 8192.0) {  // low frequency: divided by the factor
      EXPECT_EQ(s[i], p[i] / 8.0f) << i;
      ++low;
    } else {  // in between: interpolated
      const double smooth = (8192.0 / wavelen - 1.0) / 3.0;
      const double expected = (1 - smooth) * p[i] / 8.0 + smooth * p[i];
      EXPECT_NEAR(s[i] / expected, 1.0, 1e-5) << i;
      EXPECT_LT(s[i], p[i]);
      EXPECT_GT(s[i], p[i] / 8.0f);
      ++medium;
    }
  }
  // theta 500000, dim 128: wavelengths cross 2048 after i = 28, 8192 after 34.
  EXPECT_EQ(high, 29);
  EXPECT_EQ(medium, 6);
  EXPECT_EQ(low, 29);

  // tiny's original context of 1024 puts scaled frequencies in its window.
  ModelConfig tiny = PresetConfig("tiny").value();
  ModelConfig tiny_plain = tiny;
  tiny_plain.rope_scaling = RopeScaling();
  std::vector<float> t = RopeInvFreq(tiny);
  std::vector<float> tp = RopeInvFreq(tiny_plain);
  ASSERT_EQ(t.size(), 32u);
  EXPECT_EQ(t[0], tp[0]);
  EXPECT_EQ(t[31], tp[31] / 8.0f);
  // Some scaled frequency has a wavelength within the 8192 positions.
  int scaled_within_context = 0;
  for (size_t i = 0; i < t.size(); ++i) {
    scaled_within_context += t[i] != tp[i] && 2 * std::numbers::pi / tp[i] < 8192.0;
  }
  EXPECT_GT(scaled_within_context, 3);
}

}  // namespace
}  // namespace kvtier::engine
