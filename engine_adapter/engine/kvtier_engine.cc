// kvtier-engine: the integrated decoding engine's command line.
//
//   kvtier-engine make-random --config tiny|llama-3-8b|FILE --seed N --out DIR
//   kvtier-engine run --model DIR (--prompt-tokens 1,2,3 | --prompt-lens N,...)
//       --max-new-tokens M [--temperature T --seed S] [--dump DIR]
//       [--kvtier-socket PATH [--kvtier-hbm] ...] [--rounds N]
//   kvtier-engine info --model DIR
//
// Flags are parsed with CLI11; every subcommand has its own --help.
#include <CLI/CLI.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <string>
#include <vector>

#include "engine_adapter/engine/model_config.h"
#include "engine_adapter/engine/safetensors.h"
#if KVTIER_HAVE_CUDA
#include "engine_adapter/engine/engine.h"
#include "engine_adapter/engine/kvtier_connector.h"
#endif

namespace kvtier::engine {
namespace {

int Fail(const Status& st) {
  std::fprintf(stderr, "kvtier-engine: %s\n", st.ToString().c_str());
  return 1;
}

Result<ModelConfig> ConfigFromFlag(const std::string& name) {
  Result<ModelConfig> preset = PresetConfig(name);
  if (preset.ok()) return preset;
  if (name.find('/') == std::string::npos && name.find('.') == std::string::npos)
    return Status::InvalidArgument("--config " + name +
                                   ": not a preset (tiny, llama-3-8b) nor a config.json path");
  return LoadModelConfig(name);
}

int MakeRandom(const std::string& config_name, uint64_t seed, const std::string& out,
               uint64_t shard_bytes) {
  Result<ModelConfig> cfg = ConfigFromFlag(config_name);
  if (!cfg.ok()) return Fail(cfg.status());
  RandomCheckpointOptions opt;
  opt.seed = seed;
  opt.shard_bytes = shard_bytes;
  auto t0 = std::chrono::steady_clock::now();
  int last_pct = -1;
  opt.progress = [&](uint64_t done, uint64_t total) {
    int pct = total ? int(done * 100 / total) : 100;
    if (pct / 10 != last_pct / 10) {
      std::fprintf(stderr, "make-random: %3d%% of %.2f GB\n", pct, double(total) / 1e9);
      last_pct = pct;
    }
  };
  Status st = WriteRandomCheckpoint(*cfg, out, opt);
  if (!st.ok()) return Fail(st);
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wrote %s: %s, %.2f B parameters, seed %llu, %.1f s\n", out.c_str(),
              cfg->DebugString().c_str(), double(cfg->NumParameters()) / 1e9,
              static_cast<unsigned long long>(seed), s);
  return 0;
}

int Info(const std::string& dir) {
  Result<Checkpoint> ck = Checkpoint::Open(dir);
  if (!ck.ok()) return Fail(ck.status());
  Status st = ValidateLlamaCheckpoint(*ck);
  if (!st.ok()) return Fail(st);
  std::printf("%s\n%s\n%zu tensors, %.2f B parameters\n", dir.c_str(),
              ck->config().DebugString().c_str(), ck->all().size(),
              double(ck->config().NumParameters()) / 1e9);
  return 0;
}

// Prompt i of a run: tokens drawn from (seed, i) so that a prompt can be
// regenerated alone (--prompt-index-base) and compared with the batch.
std::vector<int32_t> SeededPrompt(uint64_t seed, uint64_t index, uint32_t len, uint32_t vocab) {
  std::vector<int32_t> p(len);
  uint64_t x = seed * 0x9e3779b97f4a7c15ull + index * 0xd1b54a32d192ed03ull + 1;
  for (uint32_t j = 0; j < len; ++j) {
    x += 0x9e3779b97f4a7c15ull;
    uint64_t z = x;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    p[j] = int32_t(z % vocab);
  }
  return p;
}

struct RunFlags {
  std::string model;
  std::vector<int32_t> prompt_tokens;
  std::vector<uint32_t> prompt_lens;
  uint64_t prompt_seed = 1;
  uint64_t prompt_index_base = 0;
  uint32_t max_new_tokens = 16;
  float temperature = 0.f;
  uint64_t seed = 0;
  bool ignore_eos = false;
  uint32_t page_tokens = 16;
  uint32_t max_tokens = 8192;
  uint32_t kv_pages = 0;
  bool no_graphs = false;
  std::string dump;
  bool dump_all = false;
  bool json = false;
  uint32_t rounds = 1;
  std::string kvtier_socket;
  std::string kvtier_model_id;
  std::string kvtier_revision;
  std::string kvtier_salt;
  bool kvtier_no_load = false;
  bool kvtier_no_store = false;
  bool kvtier_hbm = false;
  bool kvtier_always_load = false;
  std::string kvtier_host_path = "auto";
  uint32_t kvtier_layers_per_group = 1;
};

#if KVTIER_HAVE_CUDA
Status WriteFloats(const std::string& path, const std::vector<float>& v) {
  std::ofstream f(path, std::ios::binary);
  f.write(reinterpret_cast<const char*>(v.data()), std::streamsize(v.size() * sizeof(float)));
  if (!f) return Status::IOError("cannot write " + path);
  return Status::OK();
}

int Run(const RunFlags& f) {
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a, Clock::time_point b) {
    return std::chrono::duration<double, std::milli>(b - a).count();
  };
  Result<Checkpoint> ck = Checkpoint::Open(f.model);
  if (!ck.ok()) return Fail(ck.status());
  const ModelConfig& cfg = ck->config();
  std::vector<std::vector<int32_t>> prompts;
  if (!f.prompt_tokens.empty()) {
    prompts.push_back(f.prompt_tokens);
  } else {
    for (size_t i = 0; i < f.prompt_lens.size(); ++i)
      prompts.push_back(SeededPrompt(f.prompt_seed, f.prompt_index_base + i, f.prompt_lens[i],
                                     cfg.vocab_size));
  }
  uint32_t longest = 0;
  uint64_t total_prompt = 0;
  for (const auto& p : prompts) {
    longest = std::max<uint32_t>(longest, uint32_t(p.size()));
    total_prompt += p.size();
  }
  const bool cached = !f.kvtier_socket.empty();
  if (cached && f.dump_all)
    return Fail(Status::InvalidArgument(
        "--dump-all-positions needs every position computed: not with --kvtier-socket"));
  EngineOptions eo;
  eo.cuda_graphs = !f.no_graphs;
  eo.model.page_tokens = f.page_tokens;
  eo.model.max_tokens = f.max_tokens;
  eo.model.max_seqs = std::max<uint32_t>(uint32_t(prompts.size()), 1);
  eo.model.max_seq_len = std::min<uint32_t>(cfg.max_position_embeddings,
                                            longest + f.max_new_tokens + f.page_tokens);
  eo.model.num_pages = f.kv_pages;
  if (f.dump_all) {
    eo.model.max_tokens = std::max<uint32_t>(f.max_tokens, uint32_t(total_prompt));
    eo.model.max_logit_rows = eo.model.max_tokens;
  }
  auto t_load = Clock::now();
  Result<std::unique_ptr<Engine>> made = Engine::Create(*ck, eo);
  if (!made.ok()) return Fail(made.status());
  Engine& e = **made;
  std::fprintf(stderr, "loaded %s (%s) in %.0f ms: %.2f GB weights, %u KV pages of %u tokens\n",
               f.model.c_str(), cfg.DebugString().c_str(), ms(t_load, Clock::now()),
               double(e.model().weight_bytes()) / 1e9, e.model().num_pages(), f.page_tokens);
  std::unique_ptr<KvtierConnector> conn;
  if (cached) {
    ConnectorOptions co;
    co.socket = f.kvtier_socket;
    co.model_id = f.kvtier_model_id;
    co.model_revision = f.kvtier_revision;
    co.tenant_salt = f.kvtier_salt;
    co.load = !f.kvtier_no_load;
    co.store = !f.kvtier_no_store;
    co.bind_gpu = f.kvtier_hbm;
    co.layers_per_group = f.kvtier_layers_per_group;
    co.cost_aware = !f.kvtier_always_load;
    co.host_path = ParseHostCopyPath(f.kvtier_host_path).value();  // checked by the parser
    Result<std::unique_ptr<KvtierConnector>> c = KvtierConnector::Create(&e, *ck, co);
    if (!c.ok()) return Fail(c.status());
    conn = std::move(c.value());
    std::fprintf(stderr, "kvtier: %s, namespace %s @ %s\n",
                 conn->connected() ? "connected" : "not connected (running without the cache)",
                 conn->spec().model_id.c_str(), conn->spec().model_revision.c_str());
  }
  const bool dump = !f.dump.empty();
  LogitCapture cap;
  cap.last = dump;
  cap.all_positions = dump && f.dump_all;
  std::vector<float> prefill_logits, all_logits, decode_logits;
  std::vector<int> ids;
  std::vector<CacheRequestStats> cstats;
  std::vector<double> step_ms;
  double prefill_ms = 0;
  nlohmann::json rounds = nlohmann::json::array();
  for (uint32_t round = 0; round < f.rounds; ++round) {
    prefill_logits.clear();
    all_logits.clear();
    decode_logits.clear();
    step_ms.clear();
    ids.clear();
    for (size_t i = 0; i < prompts.size(); ++i) {
      Request r;
      r.prompt = prompts[i];
      r.max_new_tokens = f.max_new_tokens;
      r.ignore_eos = f.ignore_eos;
      r.temperature = f.temperature;
      r.seed = f.seed + i;
      Result<int> id = e.Add(r);
      if (!id.ok()) return Fail(id.status());
      ids.push_back(*id);
    }
    auto t0 = Clock::now();
    Status st = conn ? conn->Prefill(ids, &cstats, cap, &prefill_logits)
                     : e.Prefill(ids, cap, cap.all_positions ? &all_logits : &prefill_logits);
    if (!st.ok()) return Fail(st);
    auto t1 = Clock::now();
    prefill_ms = ms(t0, t1);
    if (conn) conn->StartStores(ids);
    if (cap.all_positions) {
      // The sampled rows are each prompt's last position.
      const size_t V = cfg.vocab_size;
      size_t off = 0;
      for (const auto& p : prompts) {
        off += p.size();
        prefill_logits.insert(prefill_logits.end(), all_logits.begin() + (off - 1) * V,
                              all_logits.begin() + off * V);
      }
    }
    LogitCapture dcap;
    dcap.last = dump;
    while (true) {
      std::vector<int> live;
      for (int id : ids)
        if (!e.Finished(id)) live.push_back(id);
      if (live.empty()) break;
      if (dump && live.size() != ids.size()) {
        // Dumps are [steps, batch, vocab]: keep every sequence to the budget.
        return Fail(Status::Internal("a sequence stopped early in a dump run; pass --ignore-eos"));
      }
      auto s0 = Clock::now();
      st = e.Decode(live, dcap, &decode_logits);
      if (!st.ok()) return Fail(st);
      step_ms.push_back(ms(s0, Clock::now()));
      if (conn) conn->PollStores();
    }
    nlohmann::json seqs = nlohmann::json::array();
    for (size_t i = 0; i < ids.size(); ++i) {
      nlohmann::json s = {{"prompt_len", prompts[i].size()},
                          {"tokens", e.Generated(ids[i])},
                          {"ttft_ms", ms(t0, e.FirstTokenTime(ids[i]))}};
      if (conn) {
        const CacheRequestStats& c = cstats[i];
        s["hit_tokens"] = c.hit_tokens;
        s["lookup_tokens"] = c.lookup_tokens;
        s["recomputed_tokens"] = c.recomputed_tokens;
        s["skipped_tokens"] = c.skipped_tokens;
        s["lookup_ms"] = c.lookup_ms;
        s["load_ms"] = c.load_ms;
        if (!c.failure.empty()) s["cache_failure"] = c.failure;
      }
      seqs.push_back(s);
    }
    rounds.push_back({{"prefill_ms", prefill_ms}, {"sequences", seqs}});
    if (!f.json) {
      for (size_t i = 0; i < ids.size(); ++i) {
        std::printf("round %u sequence %zu (prompt %zu tokens", round, i, prompts[i].size());
        if (conn)
          std::printf(", kvtier hit %u tokens, load %.2f ms%s%s", cstats[i].hit_tokens,
                      cstats[i].load_ms, cstats[i].failure.empty() ? "" : ", ",
                      cstats[i].failure.c_str());
        std::printf(", first token %.2f ms):", ms(t0, e.FirstTokenTime(ids[i])));
        for (int32_t t : e.Generated(ids[i])) std::printf(" %d", t);
        std::printf("\n");
      }
    }
    if (round + 1 < f.rounds)
      for (int id : ids) {
        st = conn ? conn->Release(id) : e.Release(id);
        if (!st.ok()) return Fail(st);
      }
  }
  std::vector<double> sorted = step_ms;
  std::sort(sorted.begin(), sorted.end());
  double median = sorted.empty() ? 0 : sorted[sorted.size() / 2];
  double mean = sorted.empty() ? 0 : std::accumulate(sorted.begin(), sorted.end(), 0.0) / sorted.size();
  nlohmann::json out;
  out["prefill_ms"] = prefill_ms;
  out["prefill_tokens"] = total_prompt;
  out["decode_steps"] = step_ms.size();
  out["decode_step_ms_median"] = median;
  out["decode_step_ms_mean"] = mean;
  out["decode_step_ms"] = step_ms;
  out["sequences"] = rounds.back()["sequences"];
  out["rounds"] = rounds;
  if (conn) {
    conn->PollStores(/*wait=*/true);
    const ConnectorCounters& c = conn->counters();
    out["kvtier"] = {{"connected", conn->connected()},
                     {"hit_tokens", c.hit_tokens},
                     {"computed_tokens", c.computed_tokens},
                     {"blocks_loaded", c.blocks_loaded},
                     {"blocks_stored", c.blocks_stored},
                     {"blocks_present", c.blocks_present},
                     {"connects", c.connects},
                     {"connect_failures", c.connect_failures},
                     {"lookup_failures", c.lookup_failures},
                     {"load_failures", c.load_failures},
                     {"corrupt_loads", c.corrupt_loads},
                     {"recomputed_blocks", c.recomputed_blocks},
                     {"skipped_blocks", c.skipped_blocks},
                     {"probe_failures", c.probe_failures},
                     {"store_failures", c.store_failures}};
  }
  if (f.json) {
    std::printf("%s\n", out.dump().c_str());
  } else {
    std::printf("prefill: %llu tokens in %.2f ms (%.0f tokens/s)\n",
                static_cast<unsigned long long>(total_prompt), prefill_ms,
                double(total_prompt) / (prefill_ms / 1e3));
    if (!step_ms.empty()) {
      std::printf("decode: %zu steps, median %.3f ms, mean %.3f ms per step (batch %zu)\n",
                  step_ms.size(), median, mean, ids.size());
      std::printf("decode step ms:");
      for (double t : step_ms) std::printf(" %.3f", t);
      std::printf("\n");
    }
    if (conn) {
      const ConnectorCounters& c = conn->counters();
      std::printf("kvtier: %llu tokens loaded, %llu computed, %llu blocks stored (%llu present), "
                  "failures: connect %llu, lookup %llu, load %llu, checksum %llu, store %llu\n",
                  (unsigned long long)c.hit_tokens, (unsigned long long)c.computed_tokens,
                  (unsigned long long)c.blocks_stored, (unsigned long long)c.blocks_present,
                  (unsigned long long)c.connect_failures, (unsigned long long)c.lookup_failures,
                  (unsigned long long)c.load_failures, (unsigned long long)c.corrupt_loads,
                  (unsigned long long)c.store_failures);
    }
  }
  if (dump) {
    std::error_code ec;
    std::filesystem::create_directories(f.dump, ec);
    if (ec) return Fail(Status::IOError("cannot create " + f.dump + ": " + ec.message()));
    nlohmann::json meta;
    meta["vocab_size"] = cfg.vocab_size;
    meta["batch"] = ids.size();
    std::vector<size_t> lens;
    for (const auto& p : prompts) lens.push_back(p.size());
    meta["prompt_lens"] = lens;
    meta["steps"] = f.max_new_tokens;
    meta["prompts"] = prompts;
    std::vector<std::vector<int32_t>> gen;
    for (int id : ids) gen.push_back(e.Generated(id));
    meta["generated"] = gen;
    meta["all_positions"] = f.dump_all;
    std::ofstream(f.dump + "/meta.json") << meta.dump() << "\n";
    for (auto& [name, v] : {std::pair<const char*, std::vector<float>*>{"prefill_logits.f32", &prefill_logits},
                            {"decode_logits.f32", &decode_logits}}) {
      Status st = WriteFloats(f.dump + "/" + name, *v);
      if (!st.ok()) return Fail(st);
    }
    if (f.dump_all) {
      Status st = WriteFloats(f.dump + "/all_logits.f32", all_logits);
      if (!st.ok()) return Fail(st);
    }
  }
  for (int id : ids) (void)(conn ? conn->Release(id) : e.Release(id));
  return 0;
}
#else
int Run(const RunFlags&) {
  return Fail(Status::Unavailable("kvtier-engine was built without CUDA: run needs a GPU build"));
}
#endif

}  // namespace
}  // namespace kvtier::engine

int main(int argc, char** argv) {
  using namespace kvtier::engine;
  CLI::App app{"kvtier-engine: the integrated CUDA decoding engine (Llama family, bf16)"};
  app.require_subcommand(1);

  std::string config_name, out;
  uint64_t seed = 0;
  uint64_t shard_bytes = uint64_t{5} << 30;
  CLI::App* mk = app.add_subcommand(
      "make-random", "write an HF-format checkpoint (config.json + safetensors) of seeded "
                     "random bf16 weights");
  mk->add_option("--config", config_name, "preset (tiny, llama-3-8b) or a config.json path")
      ->required();
  mk->add_option("--seed", seed, "weight seed (same seed, same bytes)")->required();
  mk->add_option("--out", out, "checkpoint directory to create")->required();
  mk->add_option("--shard-bytes", shard_bytes,
                 "largest shard; bigger checkpoints get model.safetensors.index.json")
      ->capture_default_str()
      ->check(CLI::Range(uint64_t{1} << 20, uint64_t{1} << 40));

  RunFlags rf;
  CLI::App* run = app.add_subcommand("run", "generate for one or several prompts (one batch)");
  run->add_option("--model", rf.model, "checkpoint directory")->required();
  auto* pt = run->add_option("--prompt-tokens", rf.prompt_tokens, "one prompt's token ids")
                 ->delimiter(',');
  auto* pl = run->add_option("--prompt-lens,--prompt-len", rf.prompt_lens,
                             "seeded random prompts of these lengths, one sequence each")
                 ->delimiter(',')
                 ->check(CLI::Range(1u, 1u << 20));
  pt->excludes(pl);
  run->add_option("--prompt-seed", rf.prompt_seed, "seed of the random prompts")
      ->capture_default_str();
  run->add_option("--prompt-index-base", rf.prompt_index_base,
                  "index of the first random prompt (prompt i is drawn from (seed, base + i))")
      ->capture_default_str();
  run->add_option("--max-new-tokens", rf.max_new_tokens, "token budget per sequence")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  run->add_option("--temperature", rf.temperature, "0: greedy; else seeded sampling")
      ->capture_default_str()
      ->check(CLI::Range(0.f, 100.f));
  run->add_option("--seed", rf.seed, "sampling seed (sequence i uses seed + i)")
      ->capture_default_str();
  run->add_flag("--ignore-eos", rf.ignore_eos, "do not stop at the config's EOS tokens");
  run->add_option("--page-tokens", rf.page_tokens, "tokens per KV page")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1024u));
  run->add_option("--max-tokens", rf.max_tokens, "most tokens per prefill chunk")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1u << 20));
  run->add_option("--kv-pages", rf.kv_pages, "KV pool pages (0: 80% of free memory)")
      ->capture_default_str();
  run->add_flag("--no-graphs", rf.no_graphs, "decode without CUDA graphs");
  run->add_option("--dump", rf.dump,
                  "write meta.json, prefill_logits.f32 and decode_logits.f32 here (parity checks)");
  run->add_flag("--dump-all-positions", rf.dump_all,
                "also dump every prompt position's logits (all_logits.f32)");
  run->add_flag("--json", rf.json, "print the result as one JSON object");
  run->add_option("--rounds", rf.rounds,
                  "run the same prompts this many times, one after another (with "
                  "--kvtier-socket the first round stores, the later ones hit)")
      ->capture_default_str()
      ->check(CLI::Range(1u, 1000u));
  auto* ks = run->add_option("--kvtier-socket", rf.kvtier_socket,
                             "use the kvtierd on this socket: look up each prompt's cached "
                             "prefix, load it, prefill only the rest, store new blocks");
  run->add_option("--kvtier-model-id", rf.kvtier_model_id,
                  "namespace model id (default: checkpoint:<directory name>)")
      ->needs(ks);
  run->add_option("--kvtier-revision", rf.kvtier_revision,
                  "namespace revision (default: a fingerprint of the checkpoint's tensors)")
      ->needs(ks);
  run->add_option("--kvtier-salt", rf.kvtier_salt, "tenant salt of the namespace")->needs(ks);
  run->add_flag("--kvtier-no-load", rf.kvtier_no_load, "store only, never look up")->needs(ks);
  run->add_flag("--kvtier-no-store", rf.kvtier_no_store, "look up only, never store")->needs(ks);
  run->add_flag("--kvtier-hbm", rf.kvtier_hbm,
                "bind the namespace to this GPU: the daemon promotes hits into its HBM tier "
                "there (and stores there with --store-tier hbm)")
      ->needs(ks);
  run->add_flag("--kvtier-always-load", rf.kvtier_always_load,
                "load every hit, also NVMe blocks that this engine recomputes faster than the "
                "disk reads them (default: skip those)")
      ->needs(ks);
  run->add_option("--kvtier-host-path", rf.kvtier_host_path,
                  "how host-tier blocks move: dma (copy engines into staging, then a device "
                  "scatter), sm (a gather kernel over PCIe), auto (dma for all but small "
                  "transfers)")
      ->capture_default_str()
      ->needs(ks)
      ->check(CLI::IsMember({"auto", "dma", "sm"}));
  run->add_option("--kvtier-layers-per-group", rf.kvtier_layers_per_group,
                  "layers per load launch; layer l computes once its group is in (0: whole "
                  "load first)")
      ->capture_default_str()
      ->needs(ks)
      ->check(CLI::Range(0u, 1024u));

  std::string info_dir;
  CLI::App* info = app.add_subcommand("info", "validate a checkpoint and print its shape");
  info->add_option("--model", info_dir, "checkpoint directory")->required();

  CLI11_PARSE(app, argc, argv);
  if (*mk) return MakeRandom(config_name, seed, out, shard_bytes);
  if (*info) return Info(info_dir);
  if (rf.prompt_tokens.empty() && rf.prompt_lens.empty()) {
    std::fprintf(stderr, "kvtier-engine run: give --prompt-tokens or --prompt-lens\n");
    return 2;
  }
  return Run(rf);
}
