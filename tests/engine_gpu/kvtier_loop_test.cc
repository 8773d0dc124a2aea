// The loop through a real kvtierd: an engine that looks up its prompt's
// prefix, loads it into its pages, prefills only the rest and stores what it
// computed gives the output it gives without a cache — from each tier, in a
// second engine process, with a full and a half hit, and through a damaged
// host slot, a daemon killed with the load in flight, and a daemon that is
// absent or restarted. A tiny random checkpoint whose positions reach 32K.
// Skips without a GPU.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine_adapter/engine/engine.h"
#include "engine_adapter/engine/kvtier_connector.h"
#include "loader/gpu_runtime.h"
#include "tests/engine/engine_test_util.h"
#include "tests/server/daemon_fixture.h"

namespace kvtier::engine {
namespace {

using kvtier::testing::Daemon;
using testing::ScratchDir;

// Bf16 noise between differently shaped GEMMs on the tiny model is ~0.02
// (docs/engine.md); a wrong page, position or block moves logits by ~0.5.
constexpr float kTol = 0.05f;
constexpr uint32_t kSteps = 8;

struct RunResult {
  int rc = -1;
  nlohmann::json out;
  std::vector<std::vector<int32_t>> tokens;  // per sequence
  std::vector<float> prefill, decode;        // logits: [batch, V], [steps, batch, V]
  std::string stderr_text;
};

std::vector<float> ReadFloats(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<float> v(bytes.size() / sizeof(float));
  std::memcpy(v.data(), bytes.data(), v.size() * sizeof(float));
  return v;
}

// Runs kvtier-engine in a process of its own.
RunResult RunEngine(const std::string& model, const std::string& dump,
                    const std::vector<uint32_t>& lens, const std::vector<std::string>& extra) {
  std::string lens_arg;
  for (uint32_t l : lens) lens_arg += (lens_arg.empty() ? "" : ",") + std::to_string(l);
  std::string cmd = std::string("'") + KVTIER_ENGINE_PATH + "' run --model '" + model +
                    "' --prompt-lens " + lens_arg + " --max-new-tokens " + std::to_string(kSteps) +
                    " --ignore-eos --json --dump '" + dump + "' --max-tokens 4096";
  for (const std::string& e : extra) cmd += " '" + e + "'";
  cmd += " 2>'" + dump + ".stderr'";
  RunResult r;
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return r;
  std::string text;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) text.append(buf, n);
  int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  std::ifstream es(dump + ".stderr");
  std::stringstream ss;
  ss << es.rdbuf();
  r.stderr_text = ss.str();
  if (r.rc != 0) return r;
  r.out = nlohmann::json::parse(text, nullptr, false);
  if (r.out.is_discarded()) {
    r.rc = -2;
    return r;
  }
  for (const auto& s : r.out["sequences"]) r.tokens.push_back(s["tokens"].get<std::vector<int32_t>>());
  r.prefill = ReadFloats(dump + "/prefill_logits.f32");
  r.decode = ReadFloats(dump + "/decode_logits.f32");
  return r;
}

// Compares a run with the no-cache reference, sequence by sequence, position
// by position, until the first position whose reference top-2 margin is
// below kTol (past it, bf16 noise may legitimately pick the other token and
// the sequences continue from different tokens). Tokens must be equal and
// logits within kTol up to there. Returns the positions compared.
size_t ExpectSameOutput(const RunResult& ref, const RunResult& got, size_t vocab,
                        const std::string& what) {
  size_t compared = 0;
  const size_t B = ref.tokens.size();
  EXPECT_EQ(got.tokens.size(), B) << what;
  if (got.tokens.size() != B) return 0;
  for (size_t b = 0; b < B; ++b) {
    for (size_t step = 0; step < kSteps; ++step) {
      const float* r = step == 0 ? &ref.prefill[b * vocab] : &ref.decode[((step - 1) * B + b) * vocab];
      const float* g = step == 0 ? &got.prefill[b * vocab] : &got.decode[((step - 1) * B + b) * vocab];
      float diff = 0, top = -1e30f, second = -1e30f;
      for (size_t v = 0; v < vocab; ++v) {
        diff = std::max(diff, std::fabs(r[v] - g[v]));
        if (r[v] > top) {
          second = top;
          top = r[v];
        } else if (r[v] > second) {
          second = r[v];
        }
      }
      EXPECT_LE(diff, kTol) << what << ": sequence " << b << " step " << step;
      EXPECT_EQ(got.tokens[b][step], ref.tokens[b][step]) << what << ": sequence " << b << " step " << step;
      ++compared;
      if (top - second < kTol || diff > kTol || got.tokens[b][step] != ref.tokens[b][step]) break;
    }
  }
  return compared;
}

enum class Tier { kHost, kHbm, kNvme };

class KvtierLoopTest : public ::testing::TestWithParam<Tier> {
 protected:
  void SetUp() override {
    if (!GpuAvailable()) GTEST_SKIP() << "no GPU";
    ASSERT_TRUE(dir_.ok());
    Result<ModelConfig> cfg = PresetConfig("tiny");
    ASSERT_TRUE(cfg.ok());
    cfg->max_position_embeddings = 32768;
    vocab_ = cfg->vocab_size;
    RandomCheckpointOptions opt;
    opt.seed = 23;
    model_ = dir_.Dir("tiny32k");
    ASSERT_TRUE(WriteRandomCheckpoint(*cfg, model_, opt).ok());
  }

  std::vector<std::string> DaemonFlags(Tier t) const {
    std::vector<std::string> f = {"--host-capacity", "512M"};
    if (t == Tier::kHbm) f.insert(f.end(), {"--hbm-capacity", "512M", "--store-tier", "hbm"});
    if (t == Tier::kNvme)
      f.insert(f.end(), {"--nvme-capacity", "1G", "--nvme-write-policy", "write-through"});
    return f;
  }

  std::string Dump(const std::string& name) { return dir_.Dir(name); }

  // NVMe: waits until every committed block is on NVMe, then restarts the
  // daemon over the same data dir, so that the host tier is empty and every
  // hit is read from NVMe. The stopped first daemon (which removes the
  // directory when destroyed) is kept in stopped_.
  void MoveEverythingToNvme(std::unique_ptr<Daemon>& d, const std::vector<std::string>& flags) {
    {
      auto client = Client::Connect(d->socket());
      ASSERT_TRUE(client.ok());
      bool done = false;
      for (int i = 0; i < 1000 && !done; ++i) {
        auto st = (*client)->Stats();
        ASSERT_TRUE(st.ok());
        uint64_t host = 0, nvme = 0;
        for (const auto& t : st->tiers) {
          if (t.name == "host") host = t.blocks;
          if (t.name == "nvme") nvme = t.blocks;
        }
        done = host > 0 && nvme >= host;
        if (!done) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      ASSERT_TRUE(done) << "the blocks did not reach NVMe";
    }
    const std::string dir = d->dir();
    ASSERT_EQ(d->Stop(), 0);
    stopped_ = std::move(d);
    d = std::make_unique<Daemon>(flags, dir);
  }

  ScratchDir dir_;
  std::unique_ptr<Daemon> stopped_;
  std::string model_;
  size_t vocab_ = 0;
};

TEST_P(KvtierLoopTest, SecondProcessHitsGiveTheNoCacheOutput) {
  const Tier tier = GetParam();
  const std::vector<uint32_t> lens = {1000, 4100, 16000};
  const std::vector<uint32_t> halves = {500, 2050, 8000};
  RunResult ref = RunEngine(model_, Dump("ref"), lens, {});
  ASSERT_EQ(ref.rc, 0) << ref.stderr_text;
  std::vector<std::string> flags = DaemonFlags(tier);
  for (bool half : {false, true}) {
    SCOPED_TRACE(half ? "half hit" : "full hit");
    auto d = std::make_unique<Daemon>(flags);
    ASSERT_TRUE(d->running());
    // Every hit is loaded: the cost rule would rightly recompute a tiny
    // model's KV rather than read it from disk (load_plan_test covers it).
    std::vector<std::string> kv = {"--kvtier-socket", d->socket(), "--kvtier-always-load"};
    if (tier == Tier::kHbm) kv.push_back("--kvtier-hbm");
    // Process 1 stores (the whole prompts, or their first halves).
    RunResult store = RunEngine(model_, Dump(half ? "store-half" : "store"), half ? halves : lens, kv);
    ASSERT_EQ(store.rc, 0) << store.stderr_text;
    ASSERT_GT(store.out["kvtier"]["blocks_stored"].get<uint64_t>(), 0u) << store.stderr_text;
    if (!half) {
      EXPECT_GE(ExpectSameOutput(ref, store, vocab_, "storing run"), lens.size());
    }
    if (tier == Tier::kNvme) {
      MoveEverythingToNvme(d, flags);
      ASSERT_TRUE(d->running());
    }
    // Process 2 hits.
    RunResult hit = RunEngine(model_, Dump(half ? "hit-half" : "hit"), lens, kv);
    ASSERT_EQ(hit.rc, 0) << hit.stderr_text;
    const auto& seqs = hit.out["sequences"];
    for (size_t i = 0; i < lens.size(); ++i) {
      const uint32_t expect = half ? halves[i] / 16 * 16 : (lens[i] - 1) / 16 * 16;
      EXPECT_EQ(seqs[i]["hit_tokens"].get<uint32_t>(), expect) << "sequence " << i;
    }
    EXPECT_EQ(hit.out["kvtier"]["corrupt_loads"].get<uint64_t>(), 0u);
    EXPECT_GE(ExpectSameOutput(ref, hit, vocab_, "hitting run"), lens.size());
    d.reset();
    stopped_.reset();
  }
}

INSTANTIATE_TEST_SUITE_P(Tiers, KvtierLoopTest,
                         ::testing::Values(Tier::kHost, Tier::kHbm, Tier::kNvme),
                         [](const auto& info) {
                           return std::string(info.param == Tier::kHost  ? "Host"
                                              : info.param == Tier::kHbm ? "Hbm"
                                                                         : "Nvme");
                         });

// In-process: one engine, a connector, and a reference run of the same
// prompt without the cache.
class KvtierFaultTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!GpuAvailable()) GTEST_SKIP() << "no GPU";
    ASSERT_TRUE(dir_.ok());
    Result<ModelConfig> cfg = PresetConfig("tiny");
    ASSERT_TRUE(cfg.ok());
    RandomCheckpointOptions opt;
    opt.seed = 29;
    model_ = dir_.Dir("tiny");
    ASSERT_TRUE(WriteRandomCheckpoint(*cfg, model_, opt).ok());
    Result<Checkpoint> ck = Checkpoint::Open(model_);
    ASSERT_TRUE(ck.ok());
    ckpt_ = std::make_unique<Checkpoint>(std::move(ck.value()));
    EngineOptions eo;
    eo.model.max_tokens = 4096;
    eo.model.max_seqs = 4;
    eo.model.max_seq_len = 4096;
    eo.model.num_pages = 2048;
    Result<std::unique_ptr<Engine>> e = Engine::Create(*ckpt_, eo);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::move(e.value());
    prompt_.resize(3000);
    for (size_t i = 0; i < prompt_.size(); ++i) prompt_[i] = int32_t((i * 2654435761u + 7) % 4096);
    reference_ = Generate(nullptr);
  }

  struct Output {
    std::vector<int32_t> tokens;
    std::vector<float> first_logits;
    CacheRequestStats stats;
  };

  // One request through `conn` (or the bare engine), decoded to kSteps.
  Output Generate(KvtierConnector* conn) {
    Output o;
    Request r;
    r.prompt = prompt_;
    r.max_new_tokens = kSteps;
    r.ignore_eos = true;
    Result<int> id = engine_->Add(r);
    EXPECT_TRUE(id.ok());
    if (!id.ok()) return o;
    LogitCapture cap;
    cap.last = true;
    std::vector<CacheRequestStats> stats;
    Status st = conn ? conn->Prefill({*id}, &stats, cap, &o.first_logits)
                     : engine_->Prefill({*id}, cap, &o.first_logits);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (conn) {
      o.stats = stats.at(0);
      conn->StartStores({*id});
    }
    while (!engine_->Finished(*id)) {
      EXPECT_TRUE(engine_->Decode({*id}).ok());
      if (conn) conn->PollStores();
    }
    o.tokens = engine_->Generated(*id);
    EXPECT_TRUE((conn ? conn->Release(*id) : engine_->Release(*id)).ok());
    return o;
  }

  void ExpectReference(const Output& o, const std::string& what) {
    EXPECT_EQ(o.tokens, reference_.tokens) << what;
    ASSERT_EQ(o.first_logits.size(), reference_.first_logits.size()) << what;
    float diff = 0;
    for (size_t i = 0; i < o.first_logits.size(); ++i)
      diff = std::max(diff, std::fabs(o.first_logits[i] - reference_.first_logits[i]));
    EXPECT_LE(diff, kTol) << what;
  }

  std::unique_ptr<KvtierConnector> Connect(const std::string& socket,
                                           std::function<void()> loads_queued = nullptr,
                                           ConnectorOptions co = {}) {
    co.socket = socket;
    co.retry_interval = std::chrono::milliseconds(0);
    co.loads_queued = std::move(loads_queued);
    auto c = KvtierConnector::Create(engine_.get(), *ckpt_, co);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c.ok() ? std::move(c.value()) : nullptr;
  }

  ScratchDir dir_;
  std::string model_;
  std::unique_ptr<Checkpoint> ckpt_;
  std::unique_ptr<Engine> engine_;
  std::vector<int32_t> prompt_;
  Output reference_;
};

TEST_F(KvtierFaultTest, CorruptedHostSlotIsRecomputedNotServed) {
  Daemon d({"--host-capacity", "256M"});
  auto conn = Connect(d.socket());
  ASSERT_NE(conn, nullptr);
  ASSERT_TRUE(conn->connected());
  Output first = Generate(conn.get());
  ExpectReference(first, "storing run");
  EXPECT_EQ(first.stats.hit_tokens, 0u);
  ASSERT_GT(conn->counters().blocks_stored, 100u);
  // Damage one byte of block 40's slot in the daemon's host segment.
  auto client = Client::Connect(d.socket());
  ASSERT_TRUE(client.ok());
  auto ns = (*client)->OpenNamespace(conn->spec());
  ASSERT_TRUE(ns.ok());
  std::vector<uint32_t> toks(prompt_.begin(), prompt_.end());
  auto keys = (*ns)->HashTokens(toks);
  auto lease = (*ns)->Lookup(keys);
  ASSERT_TRUE(lease.ok());
  ASSERT_GT(lease->size(), 40u);
  ASSERT_EQ(lease->blocks()[40].tier, TierKind::kHost);
  (*client)->segment_base()[lease->blocks()[40].offset + 1000] ^= 0x40;
  ASSERT_TRUE(lease->Release().ok());
  Output second = Generate(conn.get());
  ExpectReference(second, "run over a damaged slot");
  EXPECT_EQ(second.stats.hit_tokens, 40u * 16);
  EXPECT_EQ(second.stats.lookup_tokens, (prompt_.size() - 1) / 16 * 16);
  EXPECT_EQ(second.stats.recomputed_tokens, second.stats.lookup_tokens - 40u * 16);
  EXPECT_EQ(conn->counters().corrupt_loads, 1u);
}

TEST_F(KvtierFaultTest, DaemonKilledMidLoadAbsentAndRestartedNeverChangesTheOutput) {
  auto d = std::make_unique<Daemon>(std::vector<std::string>{"--host-capacity", "256M"});
  bool kill_now = false;
  auto conn = Connect(d->socket(), [&] {
    if (kill_now) d->Kill();
  });
  ASSERT_NE(conn, nullptr);
  Output stored = Generate(conn.get());
  ExpectReference(stored, "storing run");
  // The daemon dies with the load in flight: what was loaded is verified and
  // used or recomputed; the output is the reference's.
  kill_now = true;
  Output killed = Generate(conn.get());
  kill_now = false;
  ExpectReference(killed, "daemon killed during the load");
  EXPECT_GT(killed.stats.lookup_tokens, 0u);
  // The engine's mapping of the host segment outlives the daemon: the load
  // finished and verified. (A full hit stores nothing, so the dead
  // connection is found by the next request's lookup.)
  EXPECT_EQ(killed.stats.hit_tokens, killed.stats.lookup_tokens);
  // Absent: a miss; the connection is dropped and cannot be made again.
  const std::string dir = d->dir();
  Output absent = Generate(conn.get());
  ExpectReference(absent, "daemon absent");
  EXPECT_EQ(absent.stats.hit_tokens, 0u);
  EXPECT_FALSE(conn->connected());
  EXPECT_GT(conn->counters().lookup_failures, 0u);
  EXPECT_GT(conn->counters().connect_failures, 0u);
  // Restarted on the same socket: the connector comes back by itself, stores
  // again (the host tier did not survive), and the next request hits.
  Daemon again({"--host-capacity", "256M"}, dir);
  ASSERT_TRUE(again.running());
  Output restored = Generate(conn.get());
  ExpectReference(restored, "first run after the restart");
  EXPECT_TRUE(conn->connected());
  Output hit = Generate(conn.get());
  ExpectReference(hit, "hit after the restart");
  EXPECT_EQ(hit.stats.hit_tokens, (prompt_.size() - 1) / 16 * 16);
  EXPECT_EQ(conn->counters().corrupt_loads, 0u);
}

TEST_F(KvtierFaultTest, NvmeHitSlowerThanRecomputeIsRecomputed) {
  const std::vector<std::string> flags = {"--host-capacity", "256M", "--nvme-capacity", "256M",
                                          "--nvme-write-policy", "write-through"};
  Daemon d(flags);
  std::vector<uint32_t> toks(prompt_.begin(), prompt_.end());
  {
    auto conn = Connect(d.socket());
    ASSERT_NE(conn, nullptr);
    ExpectReference(Generate(conn.get()), "storing run");
    // Wait until the blocks are on NVMe.
    auto client = Client::Connect(d.socket());
    ASSERT_TRUE(client.ok());
    bool on_nvme = false;
    for (int i = 0; i < 500 && !on_nvme; ++i) {
      auto st = (*client)->Stats();
      ASSERT_TRUE(st.ok());
      for (const auto& t : st->tiers) on_nvme |= t.name == "nvme" && t.blocks >= prompt_.size() / 16;
      if (!on_nvme) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ASSERT_TRUE(on_nvme);
  }
  const std::string dir = d.dir();
  ASSERT_EQ(d.Stop(), 0);
  Daemon again(flags, dir);  // the host tier is empty: every block is on NVMe
  const uint32_t cached = uint32_t((prompt_.size() - 1) / 16 * 16);
  // An engine that recomputes far faster than this disk reads: nothing loaded.
  ConnectorOptions fast;
  fast.prefill_tokens_per_ms = 1e9;
  fast.nvme_bytes_per_s = 1e6;
  auto skip = Connect(again.socket(), nullptr, fast);
  ASSERT_NE(skip, nullptr);
  Output skipped = Generate(skip.get());
  ExpectReference(skipped, "NVMe hit skipped");
  EXPECT_EQ(skipped.stats.hit_tokens, 0u);
  EXPECT_EQ(skipped.stats.skipped_tokens, cached);
  EXPECT_EQ(skip->counters().skipped_blocks, cached / 16);
  skip.reset();
  // An engine slower than the disk: the hit is read from NVMe and loaded.
  ConnectorOptions slow;
  slow.prefill_tokens_per_ms = 1e-3;
  auto load = Connect(again.socket(), nullptr, slow);
  ASSERT_NE(load, nullptr);
  Output loaded = Generate(load.get());
  ExpectReference(loaded, "NVMe hit loaded");
  EXPECT_EQ(loaded.stats.hit_tokens, cached);
  EXPECT_EQ(loaded.stats.skipped_tokens, 0u);
}

}  // namespace
}  // namespace kvtier::engine
