// Test helpers for the engine's checkpoint I/O: a scratch directory, whole-file
// reads and writes, hand-built safetensors files, a small model shape.
// Test-only; not thread-safe.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "engine_adapter/engine/model_config.h"
#include "engine_adapter/engine/safetensors.h"
#include "tests/tiers/nvme_test_util.h"

namespace kvtier::engine::testing {

using kvtier::testing::ScratchDir;  // tests/tiers/nvme_test_util.h

inline void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A safetensors file from its header text and data bytes.
inline std::string SafetensorsBytes(const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>(n >> (8 * i));
  return out + header + data;
}

struct RawTensor {
  std::string name;
  std::string dtype = "BF16";
  std::vector<int64_t> shape;
  uint8_t fill = 0;  // every byte of the data
};

inline size_t RawDtypeSize(const std::string& dtype) {
  if (dtype == "F64" || dtype == "I64") return 8;
  if (dtype == "F32" || dtype == "I32") return 4;
  if (dtype == "BF16" || dtype == "F16" || dtype == "I16") return 2;
  return 1;
}

// A well-formed safetensors file holding `tensors`, data back to back.
inline std::string SafetensorsBytes(const std::vector<RawTensor>& tensors) {
  nlohmann::ordered_json header;
  header["__metadata__"] = {{"format", "pt"}};
  std::string data;
  for (const RawTensor& t : tensors) {
    uint64_t bytes = RawDtypeSize(t.dtype);
    for (int64_t d : t.shape) bytes *= static_cast<uint64_t>(d);
    header[t.name] = {{"dtype", t.dtype},
                      {"shape", t.shape},
                      {"data_offsets", {data.size(), data.size() + bytes}}};
    data.append(bytes, static_cast<char>(t.fill));
  }
  return SafetensorsBytes(header.dump(), data);
}

// The tensors LlamaTensorSpecs names for `config`, as BF16 RawTensors.
inline std::vector<RawTensor> RawLlamaTensors(const ModelConfig& config) {
  std::vector<RawTensor> out;
  for (const TensorSpec& s : LlamaTensorSpecs(config)) out.push_back({s.name, "BF16", s.shape});
  return out;
}

// A valid Llama shape small enough to write in milliseconds: vocab 512,
// hidden 128, 2/1 heads x 64, mlp 256, 2 layers, tied embeddings.
inline ModelConfig SmallConfig() {
  ModelConfig c = PresetConfig("tiny").value();
  c.vocab_size = 512;
  c.hidden_size = 128;
  c.intermediate_size = 256;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.num_key_value_heads = 1;
  c.head_dim = 64;
  c.max_position_embeddings = 2048;
  return c;
}

// Expects `st` to carry `code` and every one of `parts` in its message.
inline void ExpectError(const Status& st, StatusCode code,
                        std::initializer_list<std::string> parts) {
  EXPECT_EQ(st.code(), code) << st.ToString();
  for (const std::string& p : parts) {
    EXPECT_NE(st.message().find(p), std::string::npos)
        << "'" << p << "' not in: " << st.ToString();
  }
}

}  // namespace kvtier::engine::testing
