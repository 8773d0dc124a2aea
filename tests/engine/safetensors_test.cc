#include "engine_adapter/engine/safetensors.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "tests/engine/engine_test_util.h"

namespace kvtier::engine {
namespace {

using json = nlohmann::json;
using testing::ExpectError;
using testing::RawTensor;
using testing::SafetensorsBytes;
using testing::ScratchDir;
using testing::WriteFile;

class SafetensorsTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  // Writes `bytes` as `name` and opens it.
  Result<std::unique_ptr<SafetensorsFile>> OpenBytes(const std::string& name,
                                                     const std::string& bytes) {
    WriteFile(dir_.File(name), bytes);
    return SafetensorsFile::Open(dir_.File(name));
  }

  // A checkpoint directory `name`: SmallConfig's config.json and one
  // model.safetensors holding `tensors`.
  std::string WriteCheckpoint(const std::string& name, const std::vector<RawTensor>& tensors,
                              const ModelConfig& config = testing::SmallConfig()) {
    std::string d = dir_.Dir(name);
    WriteFile(d + "/config.json", config.ToJson());
    WriteFile(d + "/model.safetensors", SafetensorsBytes(tensors));
    return d;
  }

  ScratchDir dir_;
};

TEST(Bf16Test, RoundsToNearestEven) {
  EXPECT_EQ(FloatToBf16(1.0f), 0x3f80);
  EXPECT_EQ(FloatToBf16(-2.0f), 0xc000);
  EXPECT_EQ(FloatToBf16(-0.0f), 0x8000);
  EXPECT_EQ(FloatToBf16(0.0f), 0x0000);
  // 1 + 2^-8 lies halfway between 0x3f80 and 0x3f81: to the even one.
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f), 0x3f80);
  // 1 + 3 * 2^-8 lies halfway between 0x3f81 and 0x3f82: to the even one.
  EXPECT_EQ(FloatToBf16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(FloatToBf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);  // past half: up
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::infinity()), 0x7f80);
  EXPECT_EQ(FloatToBf16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_EQ(FloatToBf16(std::nanf("")), 0x7fc0);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(-std::nanf("")))));
  // A NaN whose payload is only in the low bits stays a NaN.
  uint32_t bits = 0x7f800001;
  float low_nan;
  std::memcpy(&low_nan, &bits, 4);
  EXPECT_TRUE(std::isnan(Bf16ToFloat(FloatToBf16(low_nan))));
  EXPECT_EQ(Bf16ToFloat(0x3f80), 1.0f);
  EXPECT_EQ(Bf16ToFloat(0x3f81), 1.0f + 0x1p-7f);
  EXPECT_EQ(Bf16ToFloat(0xc000), -2.0f);
  for (float f : {0.02f, -0.0347f, 1.1f, 3.0e-30f, 6.5e4f}) {
    float back = Bf16ToFloat(FloatToBf16(f));
    EXPECT_LE(std::fabs(back - f), std::fabs(f) * 0x1p-8f) << f;
  }
}

TEST(TensorDtypeTest, NamesAndSizes) {
  EXPECT_STREQ(TensorDtypeName(TensorDtype::kBF16), "BF16");
  EXPECT_STREQ(TensorDtypeName(TensorDtype::kF8E4M3), "F8_E4M3");
  EXPECT_STREQ(TensorDtypeName(TensorDtype::kBool), "BOOL");
  EXPECT_EQ(TensorDtypeSize(TensorDtype::kBF16), 2u);
  EXPECT_EQ(TensorDtypeSize(TensorDtype::kF32), 4u);
  EXPECT_EQ(TensorDtypeSize(TensorDtype::kI64), 8u);
  EXPECT_EQ(TensorDtypeSize(TensorDtype::kF8E5M2), 1u);
}

TEST_F(SafetensorsTest, OpensAWellFormedFile) {
  auto f = OpenBytes("ok.safetensors",
                     SafetensorsBytes({{"a", "F32", {2, 3}, 0x11}, {"b", "BF16", {4}, 0x22},
                                       {"scalar", "I64", {}, 0x33}, {"empty", "U8", {0}, 0}}));
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ((*f)->path(), dir_.File("ok.safetensors"));
  ASSERT_EQ((*f)->tensors().size(), 4u);
  const TensorView* a = (*f)->Find("a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->dtype, TensorDtype::kF32);
  EXPECT_EQ(a->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(a->elements(), 6u);
  EXPECT_EQ(a->bytes, 24u);
  EXPECT_EQ(a->file, dir_.File("ok.safetensors"));
  EXPECT_EQ(a->data[0], 0x11);
  EXPECT_EQ(a->data[23], 0x11);
  const TensorView* b = (*f)->Find("b");
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->data, a->data + 24);
  EXPECT_EQ(b->data[7], 0x22);
  EXPECT_EQ((*f)->Find("scalar")->elements(), 1u);
  EXPECT_EQ((*f)->Find("scalar")->bytes, 8u);
  EXPECT_EQ((*f)->Find("empty")->bytes, 0u);
  EXPECT_EQ((*f)->Find("absent"), nullptr);

  // No tensors at all, and only metadata, are fine too.
  auto none = OpenBytes("none.safetensors", SafetensorsBytes("{}", ""));
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_TRUE((*none)->tensors().empty());
  auto meta = OpenBytes("meta.safetensors",
                        SafetensorsBytes(R"({"__metadata__": {"format": "pt"}}   )", ""));
  ASSERT_TRUE(meta.ok()) << meta.status().ToString();
  EXPECT_TRUE((*meta)->tensors().empty());
}

TEST_F(SafetensorsTest, RejectsBadFiles) {
  const std::string p = dir_.File("bad.safetensors");
  ExpectError(SafetensorsFile::Open(dir_.File("absent.safetensors")).status(),
              StatusCode::kNotFound, {dir_.File("absent.safetensors")});
  ExpectError(OpenBytes("bad.safetensors", "").status(), StatusCode::kCorruption, {p, "0 bytes"});
  ExpectError(OpenBytes("bad.safetensors", "abc").status(), StatusCode::kCorruption, {p});

  std::string beyond = SafetensorsBytes("{}", std::string(100, '\0'));
  const uint64_t huge = 1000000000000ull;
  std::memcpy(beyond.data(), &huge, 8);  // little-endian host
  ExpectError(OpenBytes("bad.safetensors", beyond).status(), StatusCode::kCorruption,
              {p, "header length 1000000000000 is beyond the file's 110 bytes"});

  ExpectError(OpenBytes("bad.safetensors", SafetensorsBytes("{\"a\": {\"dtype\": ", "")).status(),
              StatusCode::kInvalidArgument, {p, "not JSON"});
  ExpectError(OpenBytes("bad.safetensors", SafetensorsBytes("\x01\x02garbage", "")).status(),
              StatusCode::kInvalidArgument, {p, "not JSON"});
  ExpectError(OpenBytes("bad.safetensors", SafetensorsBytes("[1]", "")).status(),
              StatusCode::kInvalidArgument, {p, "not a JSON object"});

  auto open_header = [&](const std::string& header, size_t data_bytes) {
    return OpenBytes("bad.safetensors", SafetensorsBytes(header, std::string(data_bytes, '\0')))
        .status();
  };
  ExpectError(open_header(R"({"x": {"dtype": "Q4", "shape": [2], "data_offsets": [0, 1]}})", 1),
              StatusCode::kInvalidArgument, {p, "tensor 'x': unknown dtype 'Q4'"});
  ExpectError(open_header(R"({"x": {"shape": [2], "data_offsets": [0, 4]}})", 4),
              StatusCode::kInvalidArgument, {p, "tensor 'x'", "dtype"});
  ExpectError(open_header(R"({"x": [1, 2]})", 0), StatusCode::kInvalidArgument,
              {p, "tensor 'x'"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [3, -4], "data_offsets": [0, 24]}})",
                          24),
              StatusCode::kInvalidArgument, {p, "tensor 'x'", "non-negative"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [3, 4.5], "data_offsets": [0, 24]}})",
                          24),
              StatusCode::kInvalidArgument, {p, "tensor 'x'", "shape"});
  ExpectError(
      open_header(R"({"x": {"dtype": "F64", "shape": [4294967296, 4294967296], "data_offsets": [0, 8]}})",
                  8),
      StatusCode::kInvalidArgument, {p, "tensor 'x'", "overflows"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0]}})", 24),
              StatusCode::kInvalidArgument, {p, "tensor 'x'", "data_offsets"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 10]}})",
                          24),
              StatusCode::kCorruption,
              {p, "tensor 'x': data_offsets [0, 10] do not match BF16 [3, 4] (24 bytes)"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [1], "data_offsets": [4, 2]}})", 8),
              StatusCode::kCorruption, {p, "tensor 'x'", "[4, 2]"});
  ExpectError(open_header(R"({"x": {"dtype": "BF16", "shape": [3, 4], "data_offsets": [0, 24]}})",
                          20),
              StatusCode::kCorruption,
              {p, "truncated: tensor 'x' ends at byte 24, the file's data holds 20"});
  ExpectError(open_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                          12),
              StatusCode::kCorruption, {p, "'a' [0, 8] and 'b' [4, 12] overlap"});
  // An empty tensor inside another's range takes no bytes: no overlap.
  EXPECT_TRUE(open_header(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                              "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]}})",
                          8)
                  .ok());
}

TEST_F(SafetensorsTest, CutFileIsTruncated) {
  std::string bytes = SafetensorsBytes({{"first", "BF16", {16}}, {"last", "BF16", {8}}});
  bytes.resize(bytes.size() - 5);
  ExpectError(OpenBytes("cut.safetensors", bytes).status(), StatusCode::kCorruption,
              {dir_.File("cut.safetensors"), "truncated: tensor 'last' ends at byte 48",
               "holds 43"});
}

TEST_F(SafetensorsTest, CheckpointValidates) {
  std::string d = WriteCheckpoint("ok", testing::RawLlamaTensors(testing::SmallConfig()));
  auto ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_EQ(ckpt->dir(), d);
  EXPECT_EQ(ckpt->config().hidden_size, 128u);
  EXPECT_EQ(ckpt->all().size(), LlamaTensorSpecs(testing::SmallConfig()).size());
  EXPECT_TRUE(ValidateLlamaCheckpoint(*ckpt).ok()) << ValidateLlamaCheckpoint(*ckpt).ToString();

  // Moved, the views still point into the live mappings.
  Checkpoint moved = std::move(ckpt).value();
  const int64_t shape[] = {128};
  auto norm = moved.Get("model.norm.weight", shape);
  ASSERT_TRUE(norm.ok()) << norm.status().ToString();
  EXPECT_EQ((*norm)->bytes, 256u);
  EXPECT_EQ((*norm)->data[255], 0);
  EXPECT_EQ((*norm)->file, d + "/model.safetensors");

  // Tied: a stored lm_head.weight is allowed and ignored.
  std::vector<RawTensor> with_head = testing::RawLlamaTensors(testing::SmallConfig());
  with_head.push_back({"lm_head.weight", "BF16", {512, 128}});
  auto tied = Checkpoint::Open(WriteCheckpoint("tied", with_head));
  ASSERT_TRUE(tied.ok()) << tied.status().ToString();
  EXPECT_TRUE(ValidateLlamaCheckpoint(*tied).ok()) << ValidateLlamaCheckpoint(*tied).ToString();

  // Untied, lm_head.weight is required.
  ModelConfig untied = testing::SmallConfig();
  untied.tie_word_embeddings = false;
  std::string ud = WriteCheckpoint("untied", testing::RawLlamaTensors(testing::SmallConfig()), untied);
  auto u = Checkpoint::Open(ud);
  ASSERT_TRUE(u.ok()) << u.status().ToString();
  ExpectError(ValidateLlamaCheckpoint(*u), StatusCode::kNotFound,
              {ud + ": tensor 'lm_head.weight' is missing"});
}

TEST_F(SafetensorsTest, CheckpointTensorErrors) {
  const ModelConfig config = testing::SmallConfig();
  std::vector<RawTensor> missing = testing::RawLlamaTensors(config);
  ASSERT_EQ(missing.back().name, "model.norm.weight");
  missing.pop_back();
  std::string d = WriteCheckpoint("missing", missing);
  auto ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectError(ValidateLlamaCheckpoint(*ckpt), StatusCode::kNotFound,
              {d + ": tensor 'model.norm.weight' is missing"});

  std::vector<RawTensor> misshapen = testing::RawLlamaTensors(config);
  for (RawTensor& t : misshapen) {
    if (t.name == "model.layers.1.self_attn.k_proj.weight") t.shape = {128, 64};
  }
  d = WriteCheckpoint("misshapen", misshapen);
  ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectError(ValidateLlamaCheckpoint(*ckpt), StatusCode::kInvalidArgument,
              {d + "/model.safetensors: tensor 'model.layers.1.self_attn.k_proj.weight' has "
                   "shape [128, 64], expected [64, 128]"});

  std::vector<RawTensor> wrong_dtype = testing::RawLlamaTensors(config);
  wrong_dtype.back().dtype = "F32";
  d = WriteCheckpoint("dtype", wrong_dtype);
  ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  ExpectError(ValidateLlamaCheckpoint(*ckpt), StatusCode::kInvalidArgument,
              {d + "/model.safetensors: tensor 'model.norm.weight' has dtype F32, expected BF16"});
}

TEST_F(SafetensorsTest, CheckpointDirectoryErrors) {
  const ModelConfig config = testing::SmallConfig();
  std::string d = dir_.Dir("empty");
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kNotFound, {d + "/config.json"});
  WriteFile(d + "/config.json", config.ToJson());
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kNotFound,
              {d, "neither model.safetensors nor model.safetensors.index.json"});

  // A config field out of range, through the checkpoint.
  json j = json::parse(config.ToJson());
  j["num_hidden_layers"] = 5000;
  d = WriteCheckpoint("config", testing::RawLlamaTensors(config));
  WriteFile(d + "/config.json", j.dump());
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {d + "/config.json: num_hidden_layers", "1..1024"});

  // A broken shard's error comes through with its name.
  d = WriteCheckpoint("broken", {});
  WriteFile(d + "/model.safetensors", SafetensorsBytes("{\"x\": 1", ""));
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {d + "/model.safetensors", "not JSON"});
}

// Two hand-built shards and an index.
TEST_F(SafetensorsTest, ShardIndexErrors) {
  const ModelConfig config = testing::SmallConfig();
  std::vector<RawTensor> all = testing::RawLlamaTensors(config);
  const size_t half = all.size() / 2;
  std::vector<RawTensor> first(all.begin(), all.begin() + half);
  std::vector<RawTensor> second(all.begin() + half, all.end());
  auto make = [&](const std::string& name) {
    std::string d = dir_.Dir(name);
    WriteFile(d + "/config.json", config.ToJson());
    WriteFile(d + "/a.safetensors", SafetensorsBytes(first));
    WriteFile(d + "/b.safetensors", SafetensorsBytes(second));
    json index;
    index["metadata"] = {{"total_size", 0}};
    for (size_t i = 0; i < all.size(); ++i) {
      index["weight_map"][all[i].name] = i < half ? "a.safetensors" : "b.safetensors";
    }
    return std::make_pair(d, index);
  };
  auto write_index = [](const std::string& d, const json& index) {
    WriteFile(d + "/model.safetensors.index.json", index.dump());
  };

  auto [d, index] = make("ok");
  write_index(d, index);
  auto ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  EXPECT_TRUE(ValidateLlamaCheckpoint(*ckpt).ok()) << ValidateLlamaCheckpoint(*ckpt).ToString();
  EXPECT_EQ(ckpt->all().at("model.norm.weight")->file, d + "/b.safetensors");
  EXPECT_EQ(ckpt->all().at("model.embed_tokens.weight")->file, d + "/a.safetensors");

  const std::string idx = d + "/model.safetensors.index.json";
  unlink((d + "/b.safetensors").c_str());
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kNotFound,
              {idx, "shard 'b.safetensors' is missing"});

  std::tie(d, index) = make("lacks");
  index["weight_map"]["model.norm.weight"] = "a.safetensors";
  write_index(d, index);
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kCorruption,
              {d + "/model.safetensors.index.json", "tensor 'model.norm.weight'",
               "'a.safetensors', which does not hold it"});

  std::tie(d, index) = make("escape");
  index["weight_map"]["model.norm.weight"] = "../lacks/b.safetensors";
  write_index(d, index);
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {d + "/model.safetensors.index.json", "'../lacks/b.safetensors'",
               "not a plain file name"});
  index["weight_map"]["model.norm.weight"] = "..";
  write_index(d, index);
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {"'..' is not a plain file name"});
  index["weight_map"]["model.norm.weight"] = 3;
  write_index(d, index);
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {"tensor 'model.norm.weight'", "not a string"});
  WriteFile(d + "/model.safetensors.index.json", "{\"metadata\": {}}");
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {d + "/model.safetensors.index.json", "weight_map"});
  WriteFile(d + "/model.safetensors.index.json", "{\"weight_map\": ");
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kInvalidArgument,
              {d + "/model.safetensors.index.json", "not JSON"});

  // The same tensor in two shards.
  std::tie(d, index) = make("twice");
  std::vector<RawTensor> second_plus = second;
  second_plus.push_back(first.front());
  WriteFile(d + "/b.safetensors", SafetensorsBytes(second_plus));
  write_index(d, index);
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kCorruption,
              {"tensor '" + first.front().name + "' is in both", d + "/a.safetensors",
               d + "/b.safetensors"});
}

}  // namespace
}  // namespace kvtier::engine
