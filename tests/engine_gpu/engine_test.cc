// Engine on the GPU: scheduling paths against each other on a tiny random
// checkpoint (chunked vs whole prefill, graphs vs none, a prefix entered
// through SetComputed as kvtier's loop enters it), seeded sampling, EOS and
// budgets, and bad requests. HF parity is tests/engine/hf_parity.py.
// Skips without a GPU.
#include "engine_adapter/engine/engine.h"

#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "loader/gpu_runtime.h"
#include "tests/engine/engine_test_util.h"

namespace kvtier::engine {
namespace {

using testing::ScratchDir;

class EngineGpuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GpuAvailable()) GTEST_SKIP() << "no GPU";
    ASSERT_TRUE(dir_.ok());
    Result<ModelConfig> cfg = PresetConfig("tiny");
    ASSERT_TRUE(cfg.ok());
    RandomCheckpointOptions opt;
    opt.seed = 11;
    model_ = dir_.Dir("tiny");
    ASSERT_TRUE(WriteRandomCheckpoint(*cfg, model_, opt).ok());
  }

  std::unique_ptr<Engine> Make(uint32_t max_tokens, bool graphs, uint32_t pages = 2048,
                               const std::string& dir = "") {
    Result<Checkpoint> ck = Checkpoint::Open(dir.empty() ? model_ : dir);
    EXPECT_TRUE(ck.ok()) << ck.status().ToString();
    if (!ck.ok()) return nullptr;
    EngineOptions eo;
    eo.cuda_graphs = graphs;
    eo.model.max_tokens = max_tokens;
    eo.model.max_seqs = 8;
    eo.model.max_seq_len = 2048;
    eo.model.num_pages = pages;
    Result<std::unique_ptr<Engine>> e = Engine::Create(*ck, eo);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? std::move(e.value()) : nullptr;
  }

  static std::vector<int32_t> Prompt(uint32_t n, uint32_t salt) {
    std::vector<int32_t> p(n);
    for (uint32_t i = 0; i < n; ++i) p[i] = int32_t((i * 2654435761u + salt * 40503u) % 4096);
    return p;
  }

  static float MaxDiff(const std::vector<float>& a, const std::vector<float>& b) {
    EXPECT_EQ(a.size(), b.size());
    float d = 0;
    for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) d = std::max(d, std::fabs(a[i] - b[i]));
    return d;
  }

  ScratchDir dir_;
  std::string model_;
};

// Bf16 noise between differently shaped GEMMs on the tiny model is ~0.02
// (docs/engine.md); a wrong page, position or mask moves logits by ~0.5.
constexpr float kTol = 0.05f;

TEST_F(EngineGpuTest, ChunkedPrefillMatchesOneChunk) {
  const std::vector<uint32_t> lens = {5, 40, 300};
  std::vector<float> whole, chunked;
  for (auto [max_tokens, out] : {std::pair<uint32_t, std::vector<float>*>{4096, &whole},
                                 {64, &chunked}}) {
    auto e = Make(max_tokens, true);
    ASSERT_NE(e, nullptr);
    std::vector<int> ids;
    for (uint32_t i = 0; i < lens.size(); ++i) {
      Request r;
      r.prompt = Prompt(lens[i], i);
      r.max_new_tokens = 4;
      r.ignore_eos = true;
      ids.push_back(e->Add(r).value());
    }
    LogitCapture cap;
    cap.last = true;
    ASSERT_TRUE(e->Prefill(ids, cap, out).ok());
    for (size_t i = 0; i < ids.size(); ++i) EXPECT_EQ(e->Computed(ids[i]), lens[i]);
  }
  ASSERT_EQ(whole.size(), 3u * 4096);
  EXPECT_LT(MaxDiff(whole, chunked), kTol);
  EXPECT_GT(MaxDiff(std::vector<float>(whole.begin(), whole.begin() + 4096),
                    std::vector<float>(whole.begin() + 4096, whole.begin() + 8192)),
            kTol)
      << "different prompts must give different logits";
}

TEST_F(EngineGpuTest, GraphReplayEqualsPlainForward) {
  std::vector<std::vector<int32_t>> tokens;
  std::vector<std::vector<float>> logits;
  for (bool graphs : {true, false}) {
    auto e = Make(4096, graphs);
    ASSERT_NE(e, nullptr);
    std::vector<int> ids;
    for (uint32_t i = 0; i < 3; ++i) {
      Request r;
      r.prompt = Prompt(20 + 50 * i, i);
      r.max_new_tokens = 12;
      r.ignore_eos = true;
      ids.push_back(e->Add(r).value());
    }
    ASSERT_TRUE(e->Prefill(ids).ok());
    std::vector<float> l;
    LogitCapture cap;
    cap.last = true;
    while (!e->Finished(ids[0])) ASSERT_TRUE(e->Decode(ids, cap, &l).ok());
    logits.push_back(l);
    std::vector<int32_t> all;
    for (int id : ids) {
      EXPECT_EQ(e->Generated(id).size(), 12u);
      all.insert(all.end(), e->Generated(id).begin(), e->Generated(id).end());
    }
    tokens.push_back(all);
  }
  EXPECT_EQ(tokens[0], tokens[1]);
  EXPECT_EQ(MaxDiff(logits[0], logits[1]), 0.f) << "a replayed graph runs the same kernels";
}

// A prefix whose KV someone else put into the pages (as kvtier's loader
// does) gives the same first token and logits as computing it.
TEST_F(EngineGpuTest, PrefixEnteredThroughSetComputed) {
  auto e = Make(4096, true);
  ASSERT_NE(e, nullptr);
  const std::vector<int32_t> prompt = Prompt(200, 3);
  Request r;
  r.prompt = prompt;
  r.max_new_tokens = 1;
  LogitCapture cap;
  cap.last = true;
  std::vector<float> full, cached;
  int a = e->Add(r).value();
  ASSERT_TRUE(e->Prefill({a}, cap, &full).ok());

  int b = e->Add(r).value();
  const uint32_t n = 160;  // 10 whole pages of 16
  ASSERT_TRUE(e->EnsurePages(b, n).ok());
  const KvPool& pool = e->model().kv_pool();
  ASSERT_FALSE(pool.layer_base.empty());
  for (uint32_t p = 0; p < n / 16; ++p)
    for (size_t l = 0; l < pool.layer_base.size(); ++l)
      for (int kv = 0; kv < 2; ++kv) {
        char* base = static_cast<char*>(pool.layer_base[l]) + kv * pool.kv_stride;
        ASSERT_EQ(cudaMemcpy(base + e->Pages(b)[p] * pool.page_stride,
                             base + e->Pages(a)[p] * pool.page_stride, pool.page_stride,
                             cudaMemcpyDeviceToDevice),
                  cudaSuccess);
      }
  ASSERT_TRUE(e->SetComputed(b, n).ok());
  ASSERT_TRUE(e->Prefill({b}, cap, &cached).ok());
  EXPECT_LT(MaxDiff(full, cached), kTol);
  EXPECT_EQ(e->Generated(a), e->Generated(b));

  // Without the copy the "prefix" is another sequence's garbage: the check
  // above can fail.
  int c = e->Add(r).value();
  ASSERT_TRUE(e->EnsurePages(c, n).ok());
  ASSERT_TRUE(e->SetComputed(c, n).ok());
  std::vector<float> wrong;
  ASSERT_TRUE(e->Prefill({c}, cap, &wrong).ok());
  EXPECT_GT(MaxDiff(full, wrong), kTol);
}

TEST_F(EngineGpuTest, SeededSamplingIsReproducible) {
  auto e = Make(4096, true);
  ASSERT_NE(e, nullptr);
  std::vector<int> ids;
  for (uint64_t seed : {7, 7, 8}) {
    Request r;
    r.prompt = Prompt(30, 1);
    r.max_new_tokens = 24;
    r.ignore_eos = true;
    r.temperature = 1.0f;
    r.seed = seed;
    ids.push_back(e->Add(r).value());
  }
  Request greedy;
  greedy.prompt = Prompt(30, 1);
  greedy.max_new_tokens = 24;
  greedy.ignore_eos = true;
  ids.push_back(e->Add(greedy).value());
  ASSERT_TRUE(e->Prefill(ids).ok());
  while (!e->Finished(ids[0])) ASSERT_TRUE(e->Decode(ids).ok());
  EXPECT_EQ(e->Generated(ids[0]), e->Generated(ids[1]));
  EXPECT_NE(e->Generated(ids[0]), e->Generated(ids[2]));
  EXPECT_NE(e->Generated(ids[0]), e->Generated(ids[3]));
  // Random weights give near-flat distributions: samples at T = 1 spread.
  std::vector<int32_t> s = e->Generated(ids[0]);
  std::sort(s.begin(), s.end());
  EXPECT_GT(std::unique(s.begin(), s.end()) - s.begin(), 12);
}

TEST_F(EngineGpuTest, StopsAtEosOrBudget) {
  int32_t first = -1;
  {
    auto e = Make(4096, true);
    ASSERT_NE(e, nullptr);
    Request r;
    r.prompt = Prompt(50, 2);
    r.max_new_tokens = 5;
    r.ignore_eos = true;
    int id = e->Add(r).value();
    ASSERT_TRUE(e->Prefill({id}).ok());
    first = e->Generated(id)[0];
    while (!e->Finished(id)) ASSERT_TRUE(e->Decode({id}).ok());
    EXPECT_EQ(e->Generated(id).size(), 5u);
  }
  // The same weights with that first token as EOS.
  std::string eos_dir = dir_.Dir("eos");
  for (const auto& f : std::filesystem::directory_iterator(model_))
    std::filesystem::copy(f.path(), eos_dir + "/" + f.path().filename().string());
  nlohmann::json cfg = nlohmann::json::parse(testing::ReadFile(eos_dir + "/config.json"));
  cfg["eos_token_id"] = first;
  testing::WriteFile(eos_dir + "/config.json", cfg.dump());
  auto e = Make(4096, true, 2048, eos_dir);
  ASSERT_NE(e, nullptr);
  Request r;
  r.prompt = Prompt(50, 2);
  r.max_new_tokens = 5;
  int stop = e->Add(r).value();
  r.ignore_eos = true;
  int go = e->Add(r).value();
  ASSERT_TRUE(e->Prefill({stop, go}).ok());
  EXPECT_TRUE(e->Finished(stop));
  EXPECT_EQ(e->Generated(stop), std::vector<int32_t>{first});
  EXPECT_FALSE(e->Finished(go));
  Status st = e->Decode({stop});
  EXPECT_TRUE(st.IsInvalidArgument()) << st.ToString();
}

TEST_F(EngineGpuTest, RefusesBadRequests) {
  auto e = Make(4096, true, /*pages=*/8);
  ASSERT_NE(e, nullptr);
  Request r;
  EXPECT_TRUE(e->Add(r).status().IsInvalidArgument());  // empty prompt
  r.prompt = {1, 2, 4096};
  EXPECT_TRUE(e->Add(r).status().IsInvalidArgument());  // beyond the vocabulary
  r.prompt = Prompt(2040, 0);
  r.max_new_tokens = 16;
  EXPECT_TRUE(e->Add(r).status().IsInvalidArgument());  // beyond max_seq_len
  r.prompt = Prompt(10, 0);
  r.max_new_tokens = 0;
  EXPECT_TRUE(e->Add(r).status().IsInvalidArgument());
  r.max_new_tokens = 4;
  int id = e->Add(r).value();
  EXPECT_TRUE(e->Decode({id}).IsInvalidArgument());  // not prefilled
  EXPECT_TRUE(e->SetComputed(id, 10).IsInvalidArgument());  // the whole prompt
  // 8 pages of 16 tokens: a 200-token prompt does not fit, and nothing breaks.
  r.prompt = Prompt(200, 0);
  int big = e->Add(r).value();
  Status st = e->Prefill({big});
  EXPECT_TRUE(st.IsResourceExhausted()) << st.ToString();
  EXPECT_TRUE(e->Release(big).ok());
  ASSERT_TRUE(e->Prefill({id}).ok());
  EXPECT_EQ(e->Generated(id).size(), 1u);
}

}  // namespace
}  // namespace kvtier::engine
