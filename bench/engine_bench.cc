// kvtier-bench engine; see engine_bench.h.
//
// What it measures, in one run:
//   1. device-to-device cudaMemcpy bandwidth (the weight-read roofline of a
//      decode step: weight bytes / this bandwidth);
//   2. the engine: prefill of one prompt per length (median of --reps after a
//      warm-up), tokens/s and achieved TFLOP/s; decode steps at each batch
//      size from a --decode-context prompt (CUDA graphs), median step time;
//   3. the engine is freed, then the PyTorch reference runs the same lengths
//      and batches on the same checkpoint; the table gives both and the ratio.
//
// FLOPs (the same formula as the reference): 2 * L * (linear weights of the
// layers) + 2 * vocab * hidden (the last token's logits) + causal attention
// 4 * layers * heads * head_dim * L * (L + 1) / 2.
#include "bench/engine_bench.h"

#include <CLI/CLI.hpp>
#include <cuda_runtime.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <cmath>
#include <cstdlib>
#include <map>
#include <numeric>
#include <memory>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "server/cli.h"
#include "bench/gpu_bandwidth.h"
#include "engine_adapter/engine/attention.h"
#include "engine_adapter/engine/engine.h"
#include "engine_adapter/engine/safetensors.h"

namespace kvtier::bench {
namespace {

using engine::Checkpoint;
using engine::Engine;
using engine::EngineOptions;
using engine::ModelConfig;
using engine::Request;

double PrefillFlops(const ModelConfig& c, double L) {
  const double H = c.hidden_size, I = c.intermediate_size, D = c.head_dim;
  const double NH = c.num_attention_heads, KH = c.num_key_value_heads;
  const double linear = c.num_hidden_layers * (H * (NH + 2 * KH) * D + NH * D * H + 3 * H * I);
  return 2 * L * linear + 2.0 * c.vocab_size * H +
         4.0 * c.num_hidden_layers * NH * D * L * (L + 1) / 2;
}

// Prefill attention alone, every tile shape on the same data: one sequence of
// L tokens, the model's heads, KV in pages of 16 tokens in a shuffled order.
// Prints TFLOP/s (causal: 4 * heads * head_dim * L(L+1)/2) per shape, and
// the largest difference of each shape's output from the first shape's.
void AttentionShapes(const ModelConfig& c, const std::vector<uint32_t>& lens,
                     std::vector<int> shapes, nlohmann::json* report) {
  using engine::bf16_t;
  const int NH = int(c.num_attention_heads), KH = int(c.num_key_value_heads), D = int(c.head_dim);
  const int P = 16;
  std::printf("\nprefill attention alone (%d/%d heads x %d, pages of %d in shuffled order)\n", NH,
              KH, D, P);
  std::printf("%8s  %-40s %10s %9s %12s\n", "tokens", "tile shape", "ms", "TFLOP/s", "max|diff|");
  for (uint32_t L : lens) {
    const int pages = int((L + P - 1) / P);
    std::vector<bf16_t> q(size_t(L) * NH * D), kv(size_t(2) * pages * P * KH * D);
    uint64_t x = 88172645463325252ull;
    auto rnd = [&] {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      return engine::FloatToBf16(float(int64_t(x >> 40) - (1 << 23)) / float(1 << 23));
    };
    for (auto& v : q) v = rnd();
    for (auto& v : kv) v = rnd();
    std::vector<int32_t> table(pages);
    std::iota(table.begin(), table.end(), 0);
    for (int i = pages - 1; i > 0; --i) std::swap(table[i], table[int(x % uint64_t(i + 1))]), x ^= x << 7;
    bf16_t *dq, *dkv, *dout;
    int32_t *dtab, *dlen, *dstart;
    int2* dtiles;
    cudaMalloc(&dq, q.size() * 2);
    cudaMalloc(&dkv, kv.size() * 2);
    cudaMalloc(&dout, q.size() * 2);
    cudaMalloc(&dtab, pages * 4);
    cudaMalloc(&dlen, 8);
    cudaMalloc(&dstart, 4);
    cudaMalloc(&dtiles, (L / 16 + 2) * sizeof(int2));
    cudaMemcpy(dq, q.data(), q.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dkv, kv.data(), kv.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(dtab, table.data(), pages * 4, cudaMemcpyHostToDevice);
    int32_t lens2[2] = {int32_t(L), int32_t(L)}, zero = 0;
    cudaMemcpy(dlen, lens2, 8, cudaMemcpyHostToDevice);
    cudaMemcpy(dstart, &zero, 4, cudaMemcpyHostToDevice);
    engine::PrefillArgs pa;
    pa.attn.q = dq;
    pa.attn.q_stride = NH * D;
    pa.attn.out = dout;
    pa.attn.out_stride = NH * D;
    pa.attn.k_cache = dkv;
    pa.attn.v_cache = dkv + kv.size() / 2;
    pa.attn.num_heads = NH;
    pa.attn.kv_heads = KH;
    pa.attn.head_dim = D;
    pa.attn.page_tokens = P;
    pa.attn.page_table = dtab;
    pa.attn.page_table_stride = pages;
    pa.attn.kv_len = dlen;  // kv_len = L
    pa.attn.num_seqs = 1;
    pa.attn.scale = 1.f / std::sqrt(float(D));
    pa.q_start = dstart;
    pa.q_len = dlen + 1;    // q_len = L
    pa.tiles = dtiles;
    const double flops = 4.0 * NH * D * double(L) * (double(L) + 1) / 2;
    std::vector<bf16_t> first, out(q.size());
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const int saved = engine::PrefillVariant();
    if (shapes.empty())
      for (int v = 0; v < engine::NumPrefillVariants(); ++v) shapes.push_back(v);
    for (int v : shapes) {
      if (v < 0 || v >= engine::NumPrefillVariants()) continue;
      engine::SetPrefillVariant(v);
      std::vector<int2> tiles = engine::PrefillTiles({int32_t(L)}, {int32_t(L)}, D);
      cudaMemcpy(dtiles, tiles.data(), tiles.size() * sizeof(int2), cudaMemcpyHostToDevice);
      pa.num_tiles = int(tiles.size());
      std::vector<double> ms;
      for (int r = 0; r < 4; ++r) {
        cudaEventRecord(e0);
        engine::LaunchPrefillAttention(pa, nullptr);
        cudaEventRecord(e1);
        cudaEventSynchronize(e1);
        float t = 0;
        cudaEventElapsedTime(&t, e0, e1);
        if (r > 0) ms.push_back(t);
      }
      if (cudaError_t err = cudaDeviceSynchronize(); err != cudaSuccess) {
        std::fprintf(stderr, "prefill attention shape %d failed: %s\n", v, cudaGetErrorString(err));
        std::exit(1);
      }
      cudaMemcpy(out.data(), dout, out.size() * 2, cudaMemcpyDeviceToHost);
      double diff = 0;
      if (first.empty()) first = out;
      for (size_t i = 0; i < out.size(); ++i)
        diff = std::max(diff, double(std::fabs(engine::Bf16ToFloat(out[i]) - engine::Bf16ToFloat(first[i]))));
      const double m = Median(ms);
      std::printf("%8u  %-40s %10.3f %9.1f %12.3g%s\n", L, engine::PrefillVariantName(v).c_str(), m,
                  flops / (m / 1e3) / 1e12, diff, v == saved ? "  (in use)" : "");
      (*report)["attention"].push_back({{"tokens", L}, {"shape", engine::PrefillVariantName(v)},
                                        {"ms", m}, {"tflops", flops / (m / 1e3) / 1e12},
                                        {"max_diff_vs_first", diff}});
    }
    engine::SetPrefillVariant(saved);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    for (void* ptr : {(void*)dq, (void*)dkv, (void*)dout, (void*)dtab, (void*)dlen, (void*)dstart,
                      (void*)dtiles})
      cudaFree(ptr);
  }
}

struct Flags {
  std::string model;
  std::vector<uint32_t> prefill_lens = {1024, 4096, 16384, 32768};
  std::vector<uint32_t> decode_batches = {1, 32};
  uint32_t decode_context = 1024;
  uint32_t decode_steps = 32;
  uint32_t reps = 3;
  std::string reference = KVTIER_ENGINE_REFERENCE;
  std::string python = "python3";
  std::string json_out;
  bool attention_only = false;
  std::string shape_out;
  std::vector<int> shapes;
};

}  // namespace

std::vector<nlohmann::json> RunReference(const std::string& cmd) {
  std::vector<nlohmann::json> out;
  FILE* p = popen(cmd.c_str(), "r");
  char line[8192];
  while (p && std::fgets(line, sizeof line, p)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.is_object()) out.push_back(std::move(j));
  }
  const int rc = p ? pclose(p) : -1;
  if (rc != 0) std::fprintf(stderr, "reference exited with status %d\n", rc);
  return out;
}

int RunEngineBench(int argc, char** argv) {
  Flags f;
  CLI::App app{"kvtier-bench engine: engine prefill/decode speed vs a PyTorch reference"};
  app.name("kvtier-bench engine");
  app.add_option("--model", f.model,
                 "checkpoint directory (kvtier-engine make-random); with --attention-only "
                 "a preset name (tiny, llama-3-8b) also does")
      ->required();
  app.add_option("--prefill-lens", f.prefill_lens, "prompt lengths")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--decode-batches", f.decode_batches, "decode batch sizes")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  app.add_option("--decode-context", f.decode_context, "prompt tokens before decoding")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  app.add_option("--decode-steps", f.decode_steps, "timed decode steps")
      ->capture_default_str()
      ->check(CLI::Range(1u, 100000u));
  app.add_option("--reps", f.reps, "timed prefill runs per length (after one warm-up)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  app.add_option("--reference", f.reference, "PyTorch reference script; 'none' to skip")
      ->capture_default_str();
  app.add_option("--python", f.python, "interpreter for the reference")->capture_default_str();
  app.add_option("--json-out", f.json_out, "also write every figure here as JSON");
  app.add_option("--shape-out", f.shape_out,
                 "write the index of the prefill tile shape the engine used here");
  app.add_option("--shapes", f.shapes, "prefill tile shapes to measure (default: all)")
      ->delimiter(',');
  app.add_flag("--attention-only", f.attention_only,
               "only the prefill attention kernels, every tile shape (no weights loaded)");
  if (int rc = cli::Parse(app, argc, argv); rc >= 0) return rc;

  if (f.attention_only) {
    // Only the shape matters: a preset name or a checkpoint's config.json.
    Result<ModelConfig> c = engine::PresetConfig(f.model);
    if (!c.ok()) c = engine::LoadModelConfig(f.model + "/config.json");
    if (!c.ok()) {
      std::fprintf(stderr, "kvtier-bench engine: %s\n", c.status().ToString().c_str());
      return 1;
    }
    nlohmann::json report;
    AttentionShapes(*c, f.prefill_lens, f.shapes, &report);
    if (!f.json_out.empty()) std::ofstream(f.json_out) << report.dump(1) << "\n";
    return 0;
  }
  Result<Checkpoint> ck = Checkpoint::Open(f.model);
  if (!ck.ok()) {
    std::fprintf(stderr, "kvtier-bench engine: %s\n", ck.status().ToString().c_str());
    return 1;
  }
  const ModelConfig& cfg = ck->config();
  const uint32_t max_prefill = *std::max_element(f.prefill_lens.begin(), f.prefill_lens.end());
  const uint32_t max_batch = *std::max_element(f.decode_batches.begin(), f.decode_batches.end());
  const uint32_t warm = 2;
  const uint32_t decode_len = f.decode_context + f.decode_steps + warm + 1;
  EngineOptions eo;
  eo.model.page_tokens = 16;
  eo.model.max_tokens = std::max(max_prefill, std::min(f.decode_context * max_batch, 32768u));
  eo.model.max_seqs = max_batch;
  eo.model.max_seq_len = std::min(cfg.max_position_embeddings, std::max(max_prefill, decode_len) + 16);
  const uint64_t pages = std::max<uint64_t>(engine::PagesFor(max_prefill, 16),
                                            uint64_t(max_batch) * engine::PagesFor(decode_len, 16));
  eo.model.num_pages = uint32_t(pages + 64);

  nlohmann::json report;
  AttentionShapes(cfg, f.prefill_lens, f.shapes, &report);
  {
    // The engine runs below with the shape that was fastest at the longest
    // prompt (KVTIER_PREFILL_ATTN set by the caller wins).
    int best = engine::PrefillVariant();
    double best_ms = 0;
    // A shape whose output differs from the first shape's by more than bf16
    // rounding (outputs are O(1)) is broken and never chosen.
    for (const auto& row : report["attention"])
      if (row["tokens"].get<uint32_t>() == max_prefill &&
          row["max_diff_vs_first"].get<double>() < 0.02 &&
          (best_ms == 0 || row["ms"].get<double>() < best_ms)) {
        best_ms = row["ms"].get<double>();
        for (int v = 0; v < engine::NumPrefillVariants(); ++v)
          if (engine::PrefillVariantName(v) == row["shape"].get<std::string>()) best = v;
      }
    if (!std::getenv("KVTIER_PREFILL_ATTN")) engine::SetPrefillVariant(best);
    std::printf("engine prefill attention: %s\n",
                engine::PrefillVariantName(engine::PrefillVariant()).c_str());
    report["prefill_shape"] = engine::PrefillVariantName(engine::PrefillVariant());
    report["prefill_shape_index"] = engine::PrefillVariant();
    if (!f.shape_out.empty()) std::ofstream(f.shape_out) << engine::PrefillVariant() << "\n";
  }
  const double d2d = CopyBandwidth(cudaMemcpyDeviceToDevice, size_t{2} << 30);
  std::printf("device-to-device cudaMemcpy: %.0f GB/s (bytes copied per second, 2 GiB)\n",
              d2d / 1e9);
  report["d2d_bytes_per_s"] = d2d;

  std::map<uint32_t, double> eng_prefill_ms;
  std::map<uint32_t, double> eng_step_ms;
  double weight_bytes = 0;
  {
    auto t0 = Clock::now();
    Result<std::unique_ptr<Engine>> made = Engine::Create(*ck, eo);
    if (!made.ok()) {
      std::fprintf(stderr, "kvtier-bench engine: %s\n", made.status().ToString().c_str());
      return 1;
    }
    Engine& e = **made;
    weight_bytes = double(e.model().weight_bytes());
    std::fprintf(stderr, "engine loaded in %.0f ms (%s, %.2f GB of weights)\n", MsSince(t0),
                 cfg.DebugString().c_str(), weight_bytes / 1e9);
    for (uint32_t L : f.prefill_lens) {
      std::vector<double> runs;
      for (uint32_t r = 0; r <= f.reps; ++r) {
        Request req;
        req.prompt = RandomTokens(L, cfg.vocab_size, L + r);
        req.max_new_tokens = 1;
        Result<int> id = e.Add(req);
        if (!id.ok()) {
          std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
          return 1;
        }
        auto p0 = Clock::now();
        Status st = e.Prefill({*id});
        double ms = MsSince(p0);
        if (!st.ok()) {
          std::fprintf(stderr, "prefill %u: %s\n", L, st.ToString().c_str());
          return 1;
        }
        (void)e.Release(*id);
        if (r > 0) runs.push_back(ms);
      }
      eng_prefill_ms[L] = Median(runs);
      std::fprintf(stderr, "engine prefill %u: %.2f ms\n", L, eng_prefill_ms[L]);
    }
    for (uint32_t B : f.decode_batches) {
      std::vector<int> ids;
      for (uint32_t b = 0; b < B; ++b) {
        Request req;
        req.prompt = RandomTokens(f.decode_context, cfg.vocab_size, 1000 + b);
        req.max_new_tokens = f.decode_steps + warm + 1;
        req.ignore_eos = true;
        Result<int> id = e.Add(req);
        if (!id.ok()) {
          std::fprintf(stderr, "%s\n", id.status().ToString().c_str());
          return 1;
        }
        ids.push_back(*id);
      }
      Status st = e.Prefill(ids);
      std::vector<double> steps;
      for (uint32_t s = 0; st.ok() && s < f.decode_steps + warm; ++s) {
        auto s0 = Clock::now();
        st = e.Decode(ids);
        if (s >= warm) steps.push_back(MsSince(s0));
      }
      if (!st.ok()) {
        std::fprintf(stderr, "decode batch %u: %s\n", B, st.ToString().c_str());
        return 1;
      }
      for (int id : ids) (void)e.Release(id);
      eng_step_ms[B] = Median(steps);
      std::fprintf(stderr, "engine decode batch %u: %.3f ms/step\n", B, eng_step_ms[B]);
    }
  }  // the engine's memory is freed before the reference runs

  std::map<uint32_t, double> ref_prefill_ms, ref_step_ms;
  nlohmann::json ref_info;
  if (f.reference != "none") {
    auto join = [](const std::vector<uint32_t>& v) {
      std::string s;
      for (uint32_t x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
      return s;
    };
    std::string cmd = f.python + " '" + f.reference + "' --json --model '" + f.model +
                      "' --prefill-lens " + join(f.prefill_lens) + " --decode-batches " +
                      join(f.decode_batches) + " --decode-context " +
                      std::to_string(f.decode_context) + " --decode-steps " +
                      std::to_string(f.decode_steps) + " --reps " + std::to_string(f.reps);
    std::fprintf(stderr, "reference: %s\n", cmd.c_str());
    for (const nlohmann::json& j : RunReference(cmd)) {
      std::string kind = j.value("kind", "");
      if (kind == "info") ref_info = j;
      if (kind == "prefill" && j.contains("ms")) ref_prefill_ms[j["tokens"].get<uint32_t>()] = j["ms"];
      if (kind == "decode" && j.contains("step_ms")) ref_step_ms[j["batch"].get<uint32_t>()] = j["step_ms"];
    }
    report["reference_info"] = ref_info;
  }

  std::printf("\nprefill, %s, one sequence, bf16 (ratio = reference ms / engine ms)\n",
              cfg.DebugString().c_str());
  std::printf("%8s %11s %11s %9s %11s %9s %7s\n", "tokens", "engine ms", "tokens/s", "TFLOP/s",
              "torch ms", "TFLOP/s", "ratio");
  for (uint32_t L : f.prefill_lens) {
    double ms = eng_prefill_ms[L], fl = PrefillFlops(cfg, L);
    double rms = ref_prefill_ms.count(L) ? ref_prefill_ms[L] : 0;
    std::printf("%8u %11.2f %11.0f %9.1f %11.2f %9.1f %7.3f\n", L, ms, L / (ms / 1e3),
                fl / (ms / 1e3) / 1e12, rms, rms > 0 ? fl / (rms / 1e3) / 1e12 : 0,
                rms > 0 ? rms / ms : 0);
    report["prefill"].push_back({{"tokens", L}, {"engine_ms", ms}, {"reference_ms", rms},
                                 {"flops", fl}});
  }
  const double limit_ms = d2d > 0 ? weight_bytes / d2d * 1e3 : 0;
  std::printf("\ndecode at %u context, CUDA graphs; weight-read limit %.3f ms = %.2f GB / %.0f GB/s\n",
              f.decode_context, limit_ms, weight_bytes / 1e9, d2d / 1e9);
  std::printf("%6s %12s %11s %12s %12s %11s %7s\n", "batch", "engine ms", "tokens/s", "x limit",
              "torch ms", "tokens/s", "ratio");
  for (uint32_t B : f.decode_batches) {
    double ms = eng_step_ms[B];
    double rms = ref_step_ms.count(B) ? ref_step_ms[B] : 0;
    std::printf("%6u %12.3f %11.0f %12.3f %12.3f %11.0f %7.3f\n", B, ms, B / (ms / 1e3),
                limit_ms > 0 ? ms / limit_ms : 0, rms, rms > 0 ? B / (rms / 1e3) : 0,
                rms > 0 ? rms / ms : 0);
    report["decode"].push_back({{"batch", B}, {"engine_step_ms", ms}, {"reference_step_ms", rms},
                                {"weight_read_limit_ms", limit_ms}});
  }
  if (!f.json_out.empty()) std::ofstream(f.json_out) << report.dump(1) << "\n";
  return 0;
}

}  // namespace kvtier::bench
