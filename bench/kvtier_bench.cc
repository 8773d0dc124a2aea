// kvtier-bench: measures kvtier on real workloads.
//
//   kvtier-bench rpc     acquire/release latency and throughput, live daemon
//   kvtier-bench sim     trace replay through the real cache and policies
//   kvtier-bench load    GPU path bandwidth: tiers -> engine pool and back
//   kvtier-bench tp      several GPUs: tensor-parallel loads through one daemon
//   kvtier-bench engine  the integrated engine beside a PyTorch reference
//   kvtier-bench ttft    time to first token with and without kvtier
//
// Each command parses its own flags with CLI11 (server/cli.h conventions:
// `kvtier-bench COMMAND --help`, ranges checked before any work, one-line
// errors). A command is a function `int Run(int argc, char** argv)` (argv[0]
// the program, argv[1] the command's name) in its own file, plus one line in
// kCommands below.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "bench/bench_util.h"
#include "bench/daemon_process.h"
#include "bench/load_bench.h"
#include "bench/rpc_bench.h"
#include "bench/sim_command.h"
#include "bench/tp_bench.h"
#include "server/cli.h"
#if KVTIER_BENCH_ENGINE
#include "bench/engine_bench.h"
#include "bench/ttft_bench.h"
#endif

namespace {

using kvtier::cli::kUsageError;

// A comma-separated list of numbers in [lo, hi].
CLI::Validator IntList(int lo, int hi) {
  return kvtier::cli::EachItem(
      [lo, hi](const std::string& v) -> std::string {
        char* end = nullptr;
        const long n = std::strtol(v.c_str(), &end, 10);
        if (*end != '\0' || n < lo || n > hi)
          return "'" + v + "' is not a number in " + std::to_string(lo) + ".." + std::to_string(hi);
        return "";
      },
      "LIST");
}

int RunRpc(int argc, char** argv) {
  kvtier::bench::RpcBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  CLI::App app("acquire + release latency (1, 64, 2048-key chains), reserve and commit latency "
               "(1, 64 blocks) and acquires/s with concurrent clients, against a live kvtierd "
               "over its socket",
               "kvtier-bench rpc");
  std::string clients = "1,8";
  app.add_option("--socket", o.socket, "measure this running daemon (default: spawn one)");
  app.add_option("--kvtierd", o.kvtierd_path, "daemon binary to spawn")->capture_default_str();
  app.add_option("--rpc-threads", o.rpc_threads, "RPC threads of the spawned daemon")
      ->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--calls", o.calls, "timed calls per chain length")
      ->capture_default_str()->check(CLI::Range(1, 10000000));
  app.add_option("--seconds", o.seconds, "duration of each throughput point")
      ->capture_default_str()->check(CLI::Range(0.01, 3600.0));
  app.add_option("--clients", clients, "comma-separated client counts")
      ->capture_default_str()->check(IntList(1, 4096));
  app.add_option("--spin-us", o.spin_us, "clients poll N us for each reply before sleeping (0: sleep at once)")
      ->capture_default_str()->check(CLI::Range(0, 1000000));
  if (int rc = kvtier::cli::Parse(app, argc - 1, argv + 1); rc >= 0) return rc;
  o.client_counts.clear();
  for (const std::string& item : kvtier::bench::SplitList(clients)) o.client_counts.push_back(std::stoi(item));
  return kvtier::bench::RunRpcBench(o);
}

int RunLoad(int argc, char** argv) {
  kvtier::bench::LoadBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  CLI::App app("paged load and store bandwidth of the GPU path (host, HBM and NVMe tiers into an "
               "engine's KV pool) against a live kvtierd, beside cudaMemcpy and plain io_uring "
               "reads of the same bytes",
               "kvtier-bench load");
  std::string models = "8b,70b", tiers = "host,hbm,nvme";
  app.add_option("--kvtierd", o.kvtierd_path, "daemon binary to spawn")->capture_default_str();
  app.add_option("--models", models, "8b (32 layers), 70b (80 layers); 8 KV heads x 128, bf16")
      ->capture_default_str()
      ->check(kvtier::cli::EachItem(
          [](const std::string& m) { return m == "8b" || m == "70b" ? "" : "unknown model '" + m + "' (8b, 70b)"; },
          "LIST"));
  app.add_option("--tiers", tiers, "tiers to load from: host, hbm, nvme")
      ->capture_default_str()
      ->check(kvtier::cli::EachItem(
          [](const std::string& t) {
            return t == "host" || t == "hbm" || t == "nvme" ? "" : "unknown tier '" + t + "' (host, hbm, nvme)";
          },
          "LIST"));
  std::string pages = "16", paths = "sm,dma";
  app.add_option("--page-tokens", pages, "tokens per page (and block): 16, 64, ...")
      ->capture_default_str()
      ->check(kvtier::cli::EachItem(
          [](const std::string& t) {
            return t == "16" || t == "32" || t == "64" || t == "128" ? "" : "page size '" + t + "' (16, 32, 64, 128)";
          },
          "LIST"));
  app.add_option("--host-paths", paths,
                 "host-tier copy paths to measure: sm (gather kernel over PCIe), dma (copy engines "
                 "into staging + device scatter)")
      ->capture_default_str()
      ->check(kvtier::cli::EachItem(
          [](const std::string& t) { return t == "sm" || t == "dma" ? "" : "unknown path '" + t + "' (sm, dma)"; },
          "LIST"));
  app.add_flag("--interference", o.interference,
               "also time a bf16 GEMM (4096 x 4096 x 14336, cuBLAS) alone and during host loads by "
               "each path (the first model and page size only)");
  app.add_option("--store-depth", o.store_depth,
                 "host-tier stores: chunks of a pipelined Store in flight "
                 "(GpuSessionOptions::store_pipeline_depth; 0: the default, 2)")
      ->capture_default_str()->check(CLI::Range(0u, 64u));
  uint32_t store_chunk_mib = 0;
  app.add_option("--store-chunk-mib", store_chunk_mib,
                 "host-tier stores: MiB per pipelined chunk (store_chunk_bytes; 0: the default, "
                 "256)")
      ->capture_default_str()->check(CLI::Range(0u, 1u << 20));
  int reps = o.reps;
  app.add_option("--tokens", o.tokens, "tokens per chain")->capture_default_str()->check(CLI::Range(1u, 1u << 22));
  app.add_option("--reps", reps, "timed repetitions (median)")->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--nvme-passes", o.nvme_passes, "timed passes over all tokens from NVMe")
      ->capture_default_str()->check(CLI::Range(1, 1000));
  app.add_option("--nvme-chunk", o.nvme_chunk_blocks, "blocks per Lookup + Load from NVMe")
      ->capture_default_str()->check(CLI::Range(1u, 1u << 20));
  if (int rc = kvtier::cli::Parse(app, argc - 1, argv + 1); rc >= 0) return rc;
  o.models = kvtier::bench::SplitList(models);
  o.tiers = kvtier::bench::SplitList(tiers);
  o.page_tokens.clear();
  for (const std::string& t : kvtier::bench::SplitList(pages)) o.page_tokens.push_back(std::stoul(t));
  o.host_paths = kvtier::bench::SplitList(paths);
  o.store_chunk_bytes = uint64_t{store_chunk_mib} << 20;
  if (app.get_option("--reps")->count() > 0) {
    o.reps = reps;
    o.hbm_reps = std::max(reps, o.hbm_reps);
  }
  return kvtier::bench::RunLoadBench(o);
}

int RunTp(int argc, char** argv) {
  kvtier::bench::TpBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  CLI::App app("one daemon, a tensor-parallel engine on every GPU: acquireTp round trips "
               "byte-exact, aggregate host->GPU load bandwidth of all GPUs at once vs the sum of "
               "per-GPU memcpy, loads while stores land",
               "kvtier-bench tp");
  app.add_option("--kvtierd", o.kvtierd_path, "daemon binary to spawn")->capture_default_str();
  app.add_option("--gpus", o.gpus, "GPUs (TP ranks) to use; 0: all present")
      ->capture_default_str()->check(CLI::Range(0, 64));
  app.add_option("--tokens", o.tokens, "tokens per rank and chain")
      ->capture_default_str()->check(CLI::Range(1u, 1u << 22));
  app.add_option("--layers", o.layers, "layers of the model")->capture_default_str()->check(CLI::Range(1u, 1024u));
  app.add_option("--reps", o.reps, "timed repetitions (median)")->capture_default_str()->check(CLI::Range(1, 1000));
  if (int rc = kvtier::cli::Parse(app, argc - 1, argv + 1); rc >= 0) return rc;
  return kvtier::bench::RunTpBench(o);
}

int RunEngine(int argc, char** argv) {
#if KVTIER_BENCH_ENGINE
  return kvtier::bench::RunEngineBench(argc - 1, argv + 1);
#else
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "kvtier-bench engine: this build has no CUDA (the engine needs a GPU)\n");
  return 1;
#endif
}

int RunTtft(int argc, char** argv) {
#if KVTIER_BENCH_ENGINE
  return kvtier::bench::RunTtftBench(argc - 1, argv + 1);
#else
  (void)argc;
  (void)argv;
  std::fprintf(stderr, "kvtier-bench ttft: this build has no CUDA (the engine needs a GPU)\n");
  return 1;
#endif
}

struct Command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const Command kCommands[] = {
    {"rpc", "acquire + release latency and acquires/s against a live kvtierd", RunRpc},
    {"sim", "offline trace replay through the real cache and policies, with Belady's MIN",
     kvtier::bench::RunSim},
    {"load", "GPU path bandwidth: host, HBM and NVMe tiers into an engine's KV pool", RunLoad},
    {"tp", "several GPUs: tensor-parallel loads through one daemon", RunTp},
    {"engine", "the integrated engine's prefill and decode beside a PyTorch reference", RunEngine},
    {"ttft", "time to first token with and without kvtier: each tier, half hits, load test",
     RunTtft},
};

int Usage(FILE* out) {
  std::fputs("usage: kvtier-bench COMMAND [flags]   (kvtier-bench COMMAND --help: its flags)\n\ncommands:\n",
             out);
  for (const Command& c : kCommands) std::fprintf(out, "  %-8s %s\n", c.name, c.summary);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    Usage(stderr);
    return kUsageError;
  }
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") return Usage(stdout);
  for (const Command& c : kCommands)
    if (cmd == c.name) return c.run(argc, argv);
  std::fprintf(stderr, "kvtier-bench: unknown command '%s' (see kvtier-bench --help)\n", cmd.c_str());
  return kUsageError;
}
