// WriteRandomCheckpoint (engine_adapter/engine/random_checkpoint.cc), read
// back through Checkpoint.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "engine_adapter/engine/safetensors.h"
#include "tests/engine/engine_test_util.h"

namespace kvtier::engine {
namespace {

using json = nlohmann::json;
using testing::ExpectError;
using testing::ReadFile;
using testing::ScratchDir;

std::vector<float> Values(const TensorView& v) {
  std::vector<float> out(v.elements());
  for (size_t i = 0; i < out.size(); ++i) {
    uint16_t b;
    std::memcpy(&b, v.data + 2 * i, 2);
    out[i] = Bf16ToFloat(b);
  }
  return out;
}

std::set<std::string> Files(const std::string& dir) {
  std::set<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.insert(e.path().filename().string());
  }
  return out;
}

class RandomCheckpointTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(dir_.ok()); }

  std::string Write(const std::string& name, const ModelConfig& config, uint64_t seed,
                    uint64_t shard_bytes = uint64_t{5} << 30, unsigned threads = 2) {
    RandomCheckpointOptions options;
    options.seed = seed;
    options.shard_bytes = shard_bytes;
    options.threads = threads;
    const std::string d = dir_.File(name);
    Status st = WriteRandomCheckpoint(config, d, options);
    EXPECT_TRUE(st.ok()) << st.ToString();
    return d;
  }

  ScratchDir dir_;
};

TEST_F(RandomCheckpointTest, TinyCheckpointOpensAndValidates) {
  ModelConfig config = PresetConfig("tiny").value();
  config.num_hidden_layers = 1;
  RandomCheckpointOptions options;
  options.seed = 7;
  options.threads = 2;
  std::vector<std::pair<uint64_t, uint64_t>> calls;
  options.progress = [&](uint64_t done, uint64_t total) { calls.emplace_back(done, total); };
  const std::string d = dir_.File("nested/tiny");  // made with its parents
  ASSERT_TRUE(WriteRandomCheckpoint(config, d, options).ok());
  EXPECT_EQ(Files(d), (std::set<std::string>{"config.json", "model.safetensors"}));

  auto ckpt = Checkpoint::Open(d);
  ASSERT_TRUE(ckpt.ok()) << ckpt.status().ToString();
  Status valid = ValidateLlamaCheckpoint(*ckpt);
  EXPECT_TRUE(valid.ok()) << valid.ToString();
  EXPECT_EQ(ckpt->config().ToJson(), config.ToJson());
  EXPECT_EQ(ckpt->all().size(), LlamaTensorSpecs(config).size());
  EXPECT_EQ(ckpt->all().count("lm_head.weight"), 0u);  // tied

  uint64_t total = 0;
  for (const auto& [name, view] : ckpt->all()) total += view->bytes;
  EXPECT_EQ(total, config.NumParameters() * 2);
  ASSERT_FALSE(calls.empty());
  EXPECT_EQ(calls.back(), std::make_pair(total, total));
  for (size_t i = 1; i < calls.size(); ++i) EXPECT_GT(calls[i].first, calls[i - 1].first);
  // The header is padded so that the data (and the first tensor) start 8-aligned.
  EXPECT_EQ(reinterpret_cast<uintptr_t>(ckpt->all().at("model.embed_tokens.weight")->data) % 8,
            0u);

  // Linear weights and embeddings: uniform, std 0.02, mean 0.
  for (const char* name : {"model.layers.0.self_attn.q_proj.weight", "model.embed_tokens.weight",
                           "model.layers.0.mlp.down_proj.weight"}) {
    SCOPED_TRACE(name);
    std::vector<float> v = Values(*ckpt->all().at(name));
    double sum = 0, sq = 0, max_abs = 0;
    for (float x : v) {
      sum += x;
      sq += double(x) * x;
      max_abs = std::max(max_abs, double(std::fabs(x)));
    }
    const double mean = sum / v.size();
    const double std = std::sqrt(sq / v.size() - mean * mean);
    EXPECT_NEAR(mean, 0.0, 2e-4);
    EXPECT_NEAR(std, 0.02, 2e-4);
    EXPECT_LE(max_abs, 0.02 * std::sqrt(3.0) * (1 + 0x1p-8));
    EXPECT_GT(max_abs, 0.02 * std::sqrt(3.0) * 0.99);
  }
  // Norm weights: 1 + U(-0.1, 0.1).
  std::vector<float> norm = Values(*ckpt->all().at("model.layers.0.input_layernorm.weight"));
  double sum = 0;
  float lo = 2, hi = 0;
  for (float x : norm) {
    sum += x;
    lo = std::min(lo, x);
    hi = std::max(hi, x);
  }
  EXPECT_NEAR(sum / norm.size(), 1.0, 0.01);
  EXPECT_GE(lo, 0.9f - 0x1p-7f);
  EXPECT_LE(hi, 1.1f + 0x1p-7f);
  EXPECT_LT(lo, 0.92f);
  EXPECT_GT(hi, 1.08f);
}

TEST_F(RandomCheckpointTest, SameSeedSameBytes) {
  const ModelConfig config = testing::SmallConfig();
  const std::string a = Write("a", config, 42, uint64_t{5} << 30, 1);
  const std::string b = Write("b", config, 42, uint64_t{5} << 30, 3);
  const std::string c = Write("c", config, 43);
  const std::string bytes_a = ReadFile(a + "/model.safetensors");
  ASSERT_GT(bytes_a.size(), config.NumParameters() * 2);
  EXPECT_TRUE(bytes_a == ReadFile(b + "/model.safetensors"));  // any thread count
  EXPECT_EQ(ReadFile(a + "/config.json"), config.ToJson());

  auto ca = Checkpoint::Open(a);
  auto cc = Checkpoint::Open(c);
  ASSERT_TRUE(ca.ok()) << ca.status().ToString();
  ASSERT_TRUE(cc.ok()) << cc.status().ToString();
  for (const auto& [name, view] : ca->all()) {
    SCOPED_TRACE(name);
    std::vector<float> va = Values(*view);
    std::vector<float> vc = Values(*cc->all().at(name));
    size_t same = 0;
    for (size_t i = 0; i < va.size(); ++i) same += va[i] == vc[i];
    EXPECT_LT(same, va.size() / 10 + 1);  // another seed: other values
  }
  // Tensors of one checkpoint differ from each other too.
  EXPECT_NE(std::memcmp(ca->all().at("model.layers.0.mlp.up_proj.weight")->data,
                        ca->all().at("model.layers.0.mlp.gate_proj.weight")->data, 1024),
            0);
}

TEST_F(RandomCheckpointTest, ShardedEqualsUnsharded) {
  ModelConfig config = testing::SmallConfig();
  config.tie_word_embeddings = false;
  const std::string whole = Write("whole", config, 5);
  // 100 KB shards: the 128 KB embeddings and lm_head each get one alone.
  const uint64_t shard_bytes = 100 * 1000;
  const std::string sharded = Write("sharded", config, 5, shard_bytes);

  json index = json::parse(ReadFile(sharded + "/model.safetensors.index.json"));
  const json& wm = index["weight_map"];
  std::set<std::string> shards;
  for (auto it = wm.begin(); it != wm.end(); ++it) shards.insert(it->get<std::string>());
  ASSERT_GT(shards.size(), 2u);
  const size_t n = shards.size();
  char first[64], last[64];
  std::snprintf(first, sizeof(first), "model-00001-of-%05zu.safetensors", n);
  std::snprintf(last, sizeof(last), "model-%05zu-of-%05zu.safetensors", n, n);
  EXPECT_EQ(*shards.begin(), first);
  EXPECT_EQ(*shards.rbegin(), last);
  std::set<std::string> expected_files = shards;
  expected_files.insert({"config.json", "model.safetensors.index.json"});
  EXPECT_EQ(Files(sharded), expected_files);  // and no temporary left behind
  EXPECT_EQ(wm["model.embed_tokens.weight"], first);
  EXPECT_EQ(wm["lm_head.weight"], last);

  auto a = Checkpoint::Open(whole);
  auto b = Checkpoint::Open(sharded);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_TRUE(ValidateLlamaCheckpoint(*b).ok()) << ValidateLlamaCheckpoint(*b).ToString();
  ASSERT_EQ(a->all().size(), b->all().size());
  uint64_t total = 0;
  std::map<std::string, uint64_t> shard_sizes;
  for (const auto& [name, va] : a->all()) {
    SCOPED_TRACE(name);
    const TensorView* vb = b->all().at(name);
    EXPECT_EQ(va->shape, vb->shape);
    ASSERT_EQ(va->bytes, vb->bytes);
    EXPECT_EQ(std::memcmp(va->data, vb->data, va->bytes), 0);
    EXPECT_EQ(vb->file, sharded + "/" + wm[name].get<std::string>());
    total += vb->bytes;
    shard_sizes[vb->file] += vb->bytes;
  }
  EXPECT_EQ(index["metadata"]["total_size"], total);
  for (const auto& [file, bytes] : shard_sizes) {
    SCOPED_TRACE(file);
    auto f = SafetensorsFile::Open(file);
    ASSERT_TRUE(f.ok());
    // Within the limit, unless the shard is one tensor larger than it.
    EXPECT_TRUE(bytes <= shard_bytes || (*f)->tensors().size() == 1) << bytes;
  }

  // Rewritten unsharded in the same place, the stale index is gone.
  Write("sharded", config, 5);
  auto again = Checkpoint::Open(sharded);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->all().at("lm_head.weight")->file, sharded + "/model.safetensors");
}

TEST_F(RandomCheckpointTest, DamagedCheckpointsAreRefused) {
  const ModelConfig config = testing::SmallConfig();
  const std::string d = Write("cut", config, 1);
  const std::string path = d + "/model.safetensors";
  struct stat st;
  ASSERT_EQ(stat(path.c_str(), &st), 0);
  ASSERT_EQ(truncate(path.c_str(), st.st_size - 3), 0);
  // The last tensor in file order is model.norm.weight.
  ExpectError(Checkpoint::Open(d).status(), StatusCode::kCorruption,
              {path, "truncated: tensor 'model.norm.weight'"});

  const std::string s = Write("shards", config, 1, 100 * 1000);
  json index = json::parse(ReadFile(s + "/model.safetensors.index.json"));
  const std::string shard = index["weight_map"]["model.norm.weight"];
  ASSERT_NE(shard, "model-00001-of-00001.safetensors");
  ASSERT_EQ(unlink((s + "/" + shard).c_str()), 0);
  ExpectError(Checkpoint::Open(s).status(), StatusCode::kNotFound,
              {s + "/model.safetensors.index.json", "'" + shard + "' is missing"});
}

TEST_F(RandomCheckpointTest, RejectsBadArguments) {
  ModelConfig config = testing::SmallConfig();
  config.head_dim = 96;
  ExpectError(WriteRandomCheckpoint(config, dir_.File("x"), {}), StatusCode::kInvalidArgument,
              {"head_dim"});
  EXPECT_FALSE(std::filesystem::exists(dir_.File("x")));

  testing::WriteFile(dir_.File("file"), "not a directory");
  ExpectError(WriteRandomCheckpoint(testing::SmallConfig(), dir_.File("file/ckpt"), {}),
              StatusCode::kIOError, {dir_.File("file/ckpt")});
}

}  // namespace
}  // namespace kvtier::engine
