// kvtier-bench ttft; see ttft_bench.h.
#include "bench/ttft_bench.h"

#include <CLI/CLI.hpp>
#include <cuda_runtime.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "bench/bench_util.h"
#include "server/cli.h"
#include "bench/daemon_process.h"
#include "bench/engine_bench.h"
#include "bench/gpu_bandwidth.h"
#include "bench/load_bench.h"
#include "engine_adapter/client.h"
#include "engine_adapter/engine/engine.h"
#include "engine_adapter/engine/kvtier_connector.h"
#include "engine_adapter/engine/safetensors.h"
#include "tiers/nvme_format.h"

namespace kvtier::bench {
namespace {

using engine::CacheRequestStats;
using engine::Checkpoint;
using engine::ConnectorOptions;
using engine::Engine;
using engine::KvtierConnector;
using engine::Request;

struct Flags {
  std::string model;
  std::string kvtierd;
  std::vector<uint32_t> lens = {1024, 4096, 16384, 32768};
  std::vector<std::string> tiers = {"host", "hbm", "nvme"};
  uint32_t reps = 3;
  bool half = true;
  uint32_t layers_per_group = 1;
  std::string reference;
  std::string python = "python3";
  uint32_t concurrent = 8;
  uint32_t load_rounds = 6;
  uint32_t decode_steps = 32;
  std::string json_out;
};

struct Row {
  uint32_t tokens = 0;
  std::string path;
  std::vector<double> ttft, load;
  uint32_t hit_tokens = 0;
  double roofline_ms = 0;
  std::string roofline;
  bool tokens_match = true;
  std::string note;
};

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  size_t i = size_t(p * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

int Fail(const std::string& where, const Status& st) {
  std::fprintf(stderr, "kvtier-bench ttft: %s: %s\n", where.c_str(), st.ToString().c_str());
  return 1;
}

// The bench's engine and what it measured without a cache.
struct Bench {
  Flags f;
  std::unique_ptr<Checkpoint> ckpt;
  std::unique_ptr<Engine> engine;
  uint64_t kv_bytes_per_token = 0;
  std::map<uint32_t, double> step_ms;           // decode step at context L
  std::map<uint32_t, int32_t> first_token;      // of Prompt(L) without a cache
  std::vector<Row> rows;
  nlohmann::json report;

  std::vector<int32_t> Prompt(uint32_t L, uint64_t salt = 0) const {
    return RandomTokens(L, ckpt->config().vocab_size, 7000 + L + salt * 1000003);
  }

  // One request, prefilled through `conn` (or the bare engine); returns its
  // first token and fills *st. Stores its blocks when `store`.
  Result<int32_t> Request1(const std::vector<int32_t>& prompt, KvtierConnector* conn,
                           CacheRequestStats* st, bool store, double* ttft_ms = nullptr) {
    Request r;
    r.prompt = prompt;
    r.max_new_tokens = 2;
    r.ignore_eos = true;
    KVTIER_ASSIGN_OR_RETURN(int id, engine->Add(r));
    std::vector<CacheRequestStats> stats;
    auto t0 = Clock::now();
    Status s = conn ? conn->Prefill({id}, &stats) : engine->Prefill({id});
    const double ms = MsSince(t0);
    if (ttft_ms) *ttft_ms = ms;
    if (s.ok() && conn && st) *st = stats.at(0);
    const int32_t tok = s.ok() ? engine->Generated(id).at(0) : -1;
    if (s.ok() && conn && store) {
      conn->StartStores({id});
      conn->PollStores(/*wait=*/true);
    }
    Status rel = conn ? conn->Release(id) : engine->Release(id);
    KVTIER_RETURN_IF_ERROR(s);
    KVTIER_RETURN_IF_ERROR(rel);
    return tok;
  }

  // cost_aware: with the cost rule primed with this engine's recompute speed
  // at `tokens` and the disk's measured bandwidth; else every hit is loaded.
  Result<std::unique_ptr<KvtierConnector>> Connector(const std::string& socket, bool bind_gpu,
                                                     bool cost_aware = false, uint32_t tokens = 0,
                                                     double nvme_bytes_per_s = 0,
                                                     HostCopyPath host_path = HostCopyPath::kAuto) {
    ConnectorOptions co;
    co.socket = socket;
    co.host_path = host_path;
    co.bind_gpu = bind_gpu;
    co.cost_aware = cost_aware;
    if (cost_aware) {
      for (const Row& r : rows)
        if (r.tokens == tokens && r.path == "recompute (engine)" && Median(r.ttft) > 0)
          co.prefill_tokens_per_ms = tokens / Median(r.ttft);
      if (nvme_bytes_per_s > 0) co.nvme_bytes_per_s = nvme_bytes_per_s;
    }
    co.layers_per_group = f.layers_per_group;
    co.retry_interval = std::chrono::milliseconds(0);
    KVTIER_ASSIGN_OR_RETURN(auto c, KvtierConnector::Create(engine.get(), *ckpt, co));
    if (!c->connected()) return Status::Unavailable("the connector could not reach " + socket);
    return c;
  }

  Status Recompute() {
    for (uint32_t L : f.lens) {
      Row row;
      row.tokens = L;
      row.path = "recompute (engine)";
      for (uint32_t r = 0; r <= f.reps; ++r) {
        double ms = 0;
        KVTIER_ASSIGN_OR_RETURN(int32_t tok, Request1(Prompt(L, 100 + r), nullptr, nullptr, false, &ms));
        (void)tok;
        if (r > 0) row.ttft.push_back(ms);
      }
      CacheRequestStats unused;
      KVTIER_ASSIGN_OR_RETURN(first_token[L], Request1(Prompt(L), nullptr, &unused, false));
      // Decode steps at this context (batch 1, CUDA graph after the first).
      Request q;
      q.prompt = Prompt(L, 99);
      q.max_new_tokens = 8;
      q.ignore_eos = true;
      KVTIER_ASSIGN_OR_RETURN(int id, engine->Add(q));
      KVTIER_RETURN_IF_ERROR(engine->Prefill({id}));
      std::vector<double> steps;
      for (int s = 0; s < 6; ++s) {
        auto t0 = Clock::now();
        KVTIER_RETURN_IF_ERROR(engine->Decode({id}));
        if (s >= 2) steps.push_back(MsSince(t0));
      }
      KVTIER_RETURN_IF_ERROR(engine->Release(id));
      step_ms[L] = Median(steps);
      std::printf("  recompute %6u tokens: TTFT %.2f ms (median of %u), decode step %.3f ms\n", L,
                  Median(row.ttft), f.reps, step_ms[L]);
      std::fflush(stdout);
      rows.push_back(row);
    }
    return Status::OK();
  }

  // Full hits of Prompt(L) from `tier`; the NVMe tier restarts the daemon
  // before each repetition. `bw` is the path's roofline bandwidth (0: measured
  // here, NVMe).
  Status FullHits(const std::string& tier, double bw, const std::string& bw_name) {
    const uint64_t maxL = *std::max_element(f.lens.begin(), f.lens.end());
    const uint64_t kv_max = maxL * kv_bytes_per_token;
    std::vector<std::string> flags;
    // "host-sm": the host tier read by the SM gather kernel instead of the
    // copy engines (the session's path before the copy-engine path existed).
    const bool sm = tier == "host-sm";
    if (tier == "host" || sm) flags = {"--host-capacity", std::to_string(3 * kv_max + (1ull << 30))};
    if (tier == "hbm")
      flags = {"--host-capacity", "1G", "--hbm-capacity", std::to_string(2 * kv_max + (1ull << 30)),
               "--store-tier", "hbm"};
    if (tier == "nvme")
      flags = {"--host-capacity", std::to_string(kv_max + kv_max / 2), "--host-policy", "lru",
               "--nvme-capacity", std::to_string(3 * kv_max + (2ull << 30)), "--nvme-write-policy",
               "write-through", "--nvme-queue-depth", "256"};
    flags.insert(flags.end(), {"--log-level", "warn"});
    KVTIER_ASSIGN_OR_RETURN(auto d, DaemonProcess::Start(f.kvtierd, flags));
    KVTIER_ASSIGN_OR_RETURN(auto conn,
                            Connector(d->socket(), tier == "hbm", false, 0, 0,
                                      sm ? HostCopyPath::kSmGather : HostCopyPath::kAuto));
    // Store every length's prompt; with NVMe, each written through before
    // the next may push it out of the host tier.
    std::unique_ptr<Client> watch;
    if (tier == "nvme") {
      KVTIER_ASSIGN_OR_RETURN(watch, Client::Connect(d->socket()));
    }
    uint64_t stored_blocks = 0;
    for (uint32_t L : f.lens) {
      CacheRequestStats st;
      KVTIER_ASSIGN_OR_RETURN(int32_t tok, Request1(Prompt(L), conn.get(), &st, true));
      (void)tok;
      stored_blocks += L / engine->model().options().page_tokens;
      for (int i = 0; watch; ++i) {
        KVTIER_ASSIGN_OR_RETURN(RemoteStats s, watch->Stats());
        uint64_t on = 0;
        for (const auto& t : s.tiers)
          if (t.name == "nvme") on = t.blocks;
        if (on >= stored_blocks) break;
        if (i > 30000) return Status::IOError("NVMe writes did not complete");
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    watch.reset();
    if (conn->counters().blocks_stored < stored_blocks)
      return Status::ResourceExhausted("only " + std::to_string(conn->counters().blocks_stored) +
                                       " of " + std::to_string(stored_blocks) + " blocks stored");
    double nvme_bw = 0;
    for (uint32_t L : f.lens) {
      Row row;
      row.tokens = L;
      row.path = sm ? "full hit, host [sm]" : "full hit, " + tier;
      const uint64_t bytes = uint64_t((L - 1) / 16 * 16) * kv_bytes_per_token;
      std::vector<double> plain;
      CacheRequestStats last;  // the last repetition's breakdown
      // NVMe repetitions each start from a restarted daemon: no warm-up.
      for (uint32_t r = tier == "nvme" ? 1 : 0; r <= f.reps; ++r) {
        if (tier == "nvme") {
          KVTIER_RETURN_IF_ERROR(d->Restart());
          if (!conn->Reconnect()) return Status::Unavailable("no connection after the restart");
          // The disk's own speed over the same bytes, in the same stretch of time.
          std::vector<uint64_t> offsets;
          const uint64_t bb = engine->model().kv_bytes_per_page();
          for (uint64_t i = 0; i < bytes / bb; ++i) offsets.push_back(kDataOffset + i * bb);
          double best = 0;
          for (uint32_t qd : {16u, 64u}) {
            Result<double> ms = UringReads(d->dir() + "/data/nvme.dat", offsets, uint32_t(bb), qd);
            if (ms.ok() && (best == 0 || *ms < best)) best = *ms;
          }
          if (r > 0 && best > 0) plain.push_back(best);
        }
        CacheRequestStats st;
        KVTIER_ASSIGN_OR_RETURN(int32_t tok, Request1(Prompt(L), conn.get(), &st, false));
        last = st;
        if (r == 0) continue;  // warm-up
        row.ttft.push_back(st.ttft_ms);
        row.load.push_back(st.load_ms);
        row.hit_tokens = st.hit_tokens;
        if (tok != first_token[L]) row.tokens_match = false;
        if (!st.failure.empty()) row.note = st.failure;
      }
      if (tier == "nvme") {
        const double ms = Median(plain);
        nvme_bw = ms > 0 ? double(bytes) / (ms / 1e3) : 0;
        row.roofline = "io_uring " + std::to_string(int(nvme_bw / 1e6)) + " MB/s";
        row.roofline_ms = ms + step_ms[L];
      } else {
        row.roofline = bw_name;
        row.roofline_ms = double(bytes) / bw * 1e3 + step_ms[L];
      }
      std::printf("  %-16s %6u tokens: TTFT %.2f ms, load %.2f ms, %u tokens hit, roofline %.2f ms%s"
                  " (lookup %.2f ms, layer 0 computes %.2f ms into the load, prefill after the "
                  "last layer's load %.2f ms)\n",
                  row.path.c_str(), L, Median(row.ttft), Median(row.load), row.hit_tokens,
                  row.roofline_ms, row.tokens_match ? "" : " (first token differs!)", last.lookup_ms,
                  last.first_layer_ms, last.after_last_layer_ms);
      std::fflush(stdout);
      rows.push_back(row);
      if (tier == "nvme") {
        // The same requests with the cost rule: NVMe blocks are read only
        // where that beats recomputing them (load_plan.h).
        Row rule;
        rule.tokens = L;
        rule.path = "full hit, nvme, cost rule";
        for (uint32_t r = 1; r <= f.reps; ++r) {
          KVTIER_RETURN_IF_ERROR(d->Restart());
          KVTIER_ASSIGN_OR_RETURN(auto cc, Connector(d->socket(), false, true, L, nvme_bw));
          CacheRequestStats st;
          KVTIER_ASSIGN_OR_RETURN(int32_t tok, Request1(Prompt(L), cc.get(), &st, false));
          rule.ttft.push_back(st.ttft_ms);
          rule.load.push_back(st.load_ms);
          rule.hit_tokens = st.hit_tokens;
          if (tok != first_token[L]) rule.tokens_match = false;
          rule.note = "skipped " + std::to_string(st.skipped_tokens) + " tokens";
        }
        std::printf("  %-16s %6u tokens: TTFT %.2f ms, %u tokens hit, %s\n", rule.path.c_str(), L,
                    Median(rule.ttft), rule.hit_tokens, rule.note.c_str());
        std::fflush(stdout);
        rows.push_back(rule);
      }
    }
    return Status::OK();
  }

  // Half hits from the host tier: per repetition a fresh prompt whose first
  // half was stored by a request of its own.
  Status HalfHits(double h2d) {
    const uint64_t maxL = *std::max_element(f.lens.begin(), f.lens.end());
    KVTIER_ASSIGN_OR_RETURN(
        auto d, DaemonProcess::Start(f.kvtierd, {"--host-capacity",
                                                 std::to_string(3 * maxL * kv_bytes_per_token),
                                                 "--log-level", "warn"}));
    KVTIER_ASSIGN_OR_RETURN(auto conn, Connector(d->socket(), false));
    for (uint32_t L : f.lens) {
      Row row;
      row.tokens = L;
      row.path = "half hit, host";
      for (uint32_t r = 0; r <= f.reps; ++r) {
        std::vector<int32_t> p = Prompt(L, 500 + r);
        std::vector<int32_t> first(p.begin(), p.begin() + L / 2);
        CacheRequestStats st;
        KVTIER_ASSIGN_OR_RETURN(int32_t t0, Request1(first, conn.get(), &st, true));
        (void)t0;
        KVTIER_ASSIGN_OR_RETURN(int32_t tok, Request1(p, conn.get(), &st, false));
        (void)tok;
        if (r == 0) continue;
        row.ttft.push_back(st.ttft_ms);
        row.load.push_back(st.load_ms);
        row.hit_tokens = st.hit_tokens;
        if (!st.failure.empty()) row.note = st.failure;
      }
      row.roofline = "pinned H2D";
      row.roofline_ms = double(row.hit_tokens) * kv_bytes_per_token / h2d * 1e3 + step_ms[L];
      std::printf("  %-16s %6u tokens: TTFT %.2f ms, load %.2f ms, %u tokens hit\n",
                  row.path.c_str(), L, Median(row.ttft), Median(row.load), row.hit_tokens);
      std::fflush(stdout);
      rows.push_back(row);
    }
    return Status::OK();
  }

  // Rounds of `concurrent` requests admitted together: even slots continue
  // one of concurrent/2 conversations (its prefix seen before, a new turn of
  // 256-1023 tokens), odd slots are fresh prompts of 1K-8K tokens.
  Status LoadTest(bool with_kvtier) {
    std::unique_ptr<DaemonProcess> d;
    std::unique_ptr<KvtierConnector> conn;
    if (with_kvtier) {
      KVTIER_ASSIGN_OR_RETURN(
          d, DaemonProcess::Start(f.kvtierd, {"--host-capacity",
                                              std::to_string(uint64_t(f.concurrent) * 12288 *
                                                             kv_bytes_per_token),
                                              "--log-level", "warn"}));
      KVTIER_ASSIGN_OR_RETURN(conn, Connector(d->socket(), false));
    }
    const uint32_t V = ckpt->config().vocab_size;
    const uint32_t convs = std::max(1u, f.concurrent / 2);
    std::vector<std::vector<int32_t>> history(convs);
    for (uint32_t c = 0; c < convs; ++c) history[c] = RandomTokens(2048 + 1024 * c, V, 90000 + c);
    std::vector<double> ttft;
    double wall_ms = 0;
    uint64_t prompt_tokens = 0, generated = 0, hit_tokens = 0;
    uint64_t x = 4242;
    auto rnd = [&x](uint32_t n) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return uint32_t(x % n);
    };
    for (uint32_t round = 0; round <= f.load_rounds; ++round) {  // round 0 warms up
      std::vector<int> ids;
      for (uint32_t i = 0; i < f.concurrent; ++i) {
        Request r;
        if (i % 2 == 0) {
          auto& h = history[(i / 2) % convs];
          std::vector<int32_t> turn = RandomTokens(256 + rnd(768), V, 1000 * round + i);
          r.prompt = h;
          r.prompt.insert(r.prompt.end(), turn.begin(), turn.end());
        } else {
          r.prompt = RandomTokens(1024 + rnd(7168), V, 77777 + 1000 * round + i);
        }
        r.max_new_tokens = f.decode_steps;
        r.ignore_eos = true;
        KVTIER_ASSIGN_OR_RETURN(int id, engine->Add(r));
        ids.push_back(id);
        if (round > 0) prompt_tokens += r.prompt.size();
      }
      auto t0 = Clock::now();
      std::vector<CacheRequestStats> stats;
      KVTIER_RETURN_IF_ERROR(conn ? conn->Prefill(ids, &stats) : engine->Prefill(ids));
      if (conn) conn->StartStores(ids);
      for (uint32_t s = 1; s < f.decode_steps; ++s) {
        KVTIER_RETURN_IF_ERROR(engine->Decode(ids));
        if (conn) conn->PollStores();
      }
      const double ms = MsSince(t0);
      for (size_t i = 0; i < ids.size(); ++i) {
        if (round > 0) {
          ttft.push_back(std::chrono::duration<double, std::milli>(engine->FirstTokenTime(ids[i]) - t0).count());
          generated += engine->Generated(ids[i]).size();
          if (conn) hit_tokens += stats[i].hit_tokens;
        }
        // The conversation goes on with this turn (and its answer's tokens).
        if (i % 2 == 0) {
          auto& h = history[(i / 2) % convs];
          const auto& p = engine->Prompt(ids[i]);
          if (p.size() < 12000) h = p;
        }
        KVTIER_RETURN_IF_ERROR(conn ? conn->Release(ids[i]) : engine->Release(ids[i]));
      }
      if (round > 0) wall_ms += ms;
    }
    const std::string name = with_kvtier ? "with kvtier" : "without kvtier";
    const double p50 = Percentile(ttft, 0.5), p99 = Percentile(ttft, 0.99);
    std::printf("  %-15s %u rounds x %u requests: TTFT p50 %.1f ms p99 %.1f ms, %.0f generated "
                "tokens/s, %.0f prompt tokens/s, %.1f%% of prompt tokens from kvtier\n",
                name.c_str(), f.load_rounds, f.concurrent, p50, p99, generated / (wall_ms / 1e3),
                prompt_tokens / (wall_ms / 1e3), 100.0 * hit_tokens / std::max<uint64_t>(1, prompt_tokens));
    std::fflush(stdout);
    report["load"].push_back({{"name", name}, {"ttft_p50_ms", p50}, {"ttft_p99_ms", p99},
                              {"generated_tokens_per_s", generated / (wall_ms / 1e3)},
                              {"prompt_tokens_per_s", prompt_tokens / (wall_ms / 1e3)},
                              {"hit_fraction", double(hit_tokens) / std::max<uint64_t>(1, prompt_tokens)},
                              {"requests", ttft.size()}});
    return Status::OK();
  }
};

}  // namespace

int RunTtftBench(int argc, char** argv) {
  Bench b;
  Flags& f = b.f;
  f.kvtierd = DaemonProcess::FindBinary(argv[0]);
#ifdef KVTIER_ENGINE_REFERENCE
  f.reference = KVTIER_ENGINE_REFERENCE;
#endif
  CLI::App app{"time to first token with and without kvtier (engine + daemon)", "kvtier-bench ttft"};
  app.add_option("--model", f.model, "checkpoint directory (kvtier-engine make-random)")->required();
  app.add_option("--kvtierd", f.kvtierd, "daemon binary")->capture_default_str();
  app.add_option("--lens", f.lens, "prompt lengths")->delimiter(',')->capture_default_str()
      ->check(CLI::Range(17u, 1u << 20));
  app.add_option("--tiers", f.tiers,
                 "full-hit rows: hbm, host, nvme, host-sm (the host tier through the SM gather "
                 "kernel instead of the copy engines)")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::IsMember({"hbm", "host", "nvme", "host-sm"}));
  app.add_option("--reps", f.reps, "timed repetitions per row (after one warm-up)")
      ->capture_default_str()->check(CLI::Range(1u, 100u));
  app.add_option("--half", f.half, "half-hit rows from the host tier")->capture_default_str();
  app.add_option("--layers-per-group", f.layers_per_group, "layers per load launch (0: whole)")
      ->capture_default_str()->check(CLI::Range(0u, 1024u));
  app.add_option("--reference", f.reference, "PyTorch reference script ('none': skip)")
      ->capture_default_str();
  app.add_option("--python", f.python, "interpreter of the reference")->capture_default_str();
  app.add_option("--concurrent", f.concurrent, "requests per round of the load test (0: skip)")
      ->capture_default_str()->check(CLI::Range(0u, 64u));
  app.add_option("--load-rounds", f.load_rounds, "timed rounds of the load test")
      ->capture_default_str()->check(CLI::Range(1u, 1000u));
  app.add_option("--decode-steps", f.decode_steps, "tokens per request in the load test")
      ->capture_default_str()->check(CLI::Range(1u, 4096u));
  app.add_option("--json-out", f.json_out, "write every figure here as JSON");
  if (int rc = cli::Parse(app, argc, argv); rc >= 0) return rc;
  Result<Checkpoint> ck = Checkpoint::Open(f.model);
  if (!ck.ok()) return Fail("checkpoint", ck.status());
  b.ckpt = std::make_unique<Checkpoint>(std::move(ck.value()));
  const auto& cfg = b.ckpt->config();
  const uint32_t maxL = *std::max_element(f.lens.begin(), f.lens.end());
  engine::EngineOptions eo;
  eo.model.max_tokens = 8192;
  eo.model.max_seqs = std::max(8u, f.concurrent);
  eo.model.max_seq_len = std::max<uint32_t>(maxL + 64, 12288 + f.decode_steps + 64);
  const uint32_t per_seq = (eo.model.max_seq_len + 15) / 16;
  eo.model.num_pages = std::max(2 * per_seq, std::max(1u, f.concurrent) * (12288 + f.decode_steps) / 16 + 64);
  const double h2d = CopyBandwidth(cudaMemcpyHostToDevice, size_t{1} << 30);
  const double d2d = CopyBandwidth(cudaMemcpyDeviceToDevice, size_t{2} << 30);
  std::printf("kvtier-bench ttft: %s\n  pinned H2D memcpy %.1f GB/s, device copy %.0f GB/s\n",
              cfg.DebugString().c_str(), h2d / 1e9, d2d / 1e9);
  b.report["h2d_bytes_per_s"] = h2d;
  b.report["d2d_bytes_per_s"] = d2d;
  {
    Result<std::unique_ptr<Engine>> e = Engine::Create(*b.ckpt, eo);
    if (!e.ok()) return Fail("engine", e.status());
    b.engine = std::move(e.value());
    b.kv_bytes_per_token = b.engine->model().kv_bytes_per_page() / eo.model.page_tokens;
    Status st = b.Recompute();
    if (!st.ok()) return Fail("recompute", st);
    for (const std::string& t : f.tiers) {
      st = b.FullHits(t, t == "hbm" ? d2d : h2d, t == "hbm" ? "device copy" : "pinned H2D");
      if (!st.ok()) return Fail("full hits from " + t, st);
      if (t == "host" && f.half) {
        st = b.HalfHits(h2d);
        if (!st.ok()) return Fail("half hits", st);
      }
    }
    if (f.half && std::find(f.tiers.begin(), f.tiers.end(), "host") == f.tiers.end()) {
      st = b.HalfHits(h2d);
      if (!st.ok()) return Fail("half hits", st);
    }
    if (f.concurrent > 0) {
      std::printf("load test\n");
      for (bool with : {false, true}) {
        st = b.LoadTest(with);
        if (!st.ok()) return Fail("load test", st);
      }
    }
  }
  b.engine.reset();  // the reference needs the GPU's memory
  std::map<uint32_t, double> ref_ms;
  if (f.reference != "none" && !f.reference.empty()) {
    std::string lens;
    for (uint32_t L : f.lens) lens += (lens.empty() ? "" : ",") + std::to_string(L);
    std::string cmd = f.python + " '" + f.reference + "' --json --model '" + f.model +
                      "' --prefill-lens " + lens + " --decode-batches 1 --decode-steps 2 --reps " +
                      std::to_string(f.reps);
    std::fprintf(stderr, "reference: %s\n", cmd.c_str());
    for (const nlohmann::json& j : RunReference(cmd))
      if (j.value("kind", "") == "prefill" && j.contains("ms"))
        ref_ms[j["tokens"].get<uint32_t>()] = j["ms"].get<double>();
  }
  // The table.
  std::printf("\nTTFT, %s (median of %u; ms)\n", cfg.DebugString().c_str(), f.reps);
  std::printf("%7s  %-22s %10s %10s %10s %11s %8s %10s  %s\n", "tokens", "path", "TTFT", "hit tok",
              "load", "roofline", "x roof", "speedup", "roofline is");
  for (uint32_t L : f.lens) {
    double engine_ms = 0;
    for (const Row& r : b.rows)
      if (r.tokens == L && r.path == "recompute (engine)") engine_ms = Median(r.ttft);
    const double torch_ms = ref_ms.count(L) ? ref_ms[L] : 0;
    const double faster = torch_ms > 0 ? std::min(engine_ms, torch_ms) : engine_ms;
    if (torch_ms > 0)
      std::printf("%7u  %-22s %10.2f %10s %10s %11s %8s %10s\n", L, "recompute (PyTorch)", torch_ms,
                  "", "", "", "", "");
    for (const Row& r : b.rows) {
      if (r.tokens != L) continue;
      const double t = Median(r.ttft);
      const bool hit = r.path != "recompute (engine)";
      std::printf("%7u  %-22s %10.2f %10u %10.2f %11.2f %8.3f %10.2f  %s%s%s\n", L, r.path.c_str(), t,
                  r.hit_tokens, Median(r.load), r.roofline_ms, hit && r.roofline_ms > 0 ? t / r.roofline_ms : 0,
                  hit && t > 0 ? faster / t : 0, r.roofline.c_str(),
                  r.tokens_match ? "" : " FIRST TOKEN DIFFERS", r.note.empty() ? "" : (" " + r.note).c_str());
      b.report["ttft"].push_back({{"tokens", L}, {"path", r.path}, {"ttft_ms", t},
                                  {"ttft_ms_all", r.ttft}, {"hit_tokens", r.hit_tokens},
                                  {"load_ms", Median(r.load)}, {"roofline_ms", r.roofline_ms},
                                  {"roofline", r.roofline}, {"faster_recompute_ms", faster},
                                  {"torch_ms", torch_ms}, {"first_token_matches", r.tokens_match},
                                  {"note", r.note}});
    }
  }
  if (!f.json_out.empty()) std::ofstream(f.json_out) << b.report.dump(1) << "\n";
  return 0;
}

}  // namespace kvtier::bench
