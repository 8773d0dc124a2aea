// kvtier-bench: measures kvtier on real workloads.
//
//   kvtier-bench rpc    acquire/release latency and throughput, live daemon
//   kvtier-bench sim    trace replay through the real cache and policies
//   kvtier-bench load   GPU path bandwidth: tiers -> engine pool and back
//   kvtier-bench tp     several GPUs: tensor-parallel loads through one daemon
//
// Each subcommand prints its own flags with --help.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "bench/bench_util.h"
#include "bench/daemon_process.h"
#include "bench/load_bench.h"
#include "bench/tp_bench.h"
#include "bench/rpc_bench.h"
#include "bench/sim_command.h"
#if KVTIER_BENCH_ENGINE
#include "bench/engine_bench.h"
#include "bench/ttft_bench.h"
#endif

namespace {

const char* kUsage =
    "usage: kvtier-bench <command> [flags]\n"
    "\n"
    "commands:\n"
    "  rpc     acquire + release latency (1, 64, 2048-key chains) and acquires/s\n"
    "          with concurrent clients, against a live kvtierd over its socket\n"
    "  sim     offline replay of a trace (Mooncake JSONL, agentic sessions) through\n"
    "          the real cache, eviction and admission code: prefix hit rates per\n"
    "          policy and capacity, with Belady's MIN as the reference\n"
    "  load    paged load and store bandwidth of the GPU path (host, HBM and NVMe\n"
    "          tiers into an engine's KV pool) against a live kvtierd, beside\n"
    "          cudaMemcpy and plain io_uring reads of the same bytes\n"
    "  tp      one daemon, a tensor-parallel engine on every GPU: acquireTp round\n"
    "          trips byte-exact, aggregate host->GPU load bandwidth of all GPUs at\n"
    "          once vs the sum of per-GPU memcpy, loads while stores land\n"
    "  engine  the integrated engine's prefill and decode speed on a checkpoint,\n"
    "          beside a PyTorch reference of the same weights in the same run\n"
    "          (flags: kvtier-bench engine --help)\n"
    "  ttft    time to first token of the engine with and without kvtier: full\n"
    "          hits from each tier, half hits, recompute, a load test\n"
    "          (flags: kvtier-bench ttft --help)\n"
    "\n"
    "rpc flags:\n"
    "  --socket PATH       measure this running daemon (default: spawn one)\n"
    "  --kvtierd PATH      daemon binary to spawn (default: next to this program)\n"
    "  --rpc-threads N     RPC threads of the spawned daemon (default 2)\n"
    "  --calls N           timed calls per chain length (default 2000)\n"
    "  --seconds S         duration of each throughput point (default 3)\n"
    "  --clients LIST      comma-separated client counts (default 1,8)\n"
    "  --spin-us N         clients poll N us for each reply before sleeping\n"
    "                      (default 50; 0: sleep at once)\n";

bool ParseInt(const char* s, int* out, bool allow_zero = false) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < (allow_zero ? 0 : 1) || v > 1000000) return false;
  *out = static_cast<int>(v);
  return true;
}

int Usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "kvtier-bench: %s\n\n", error);
  FILE* out = error != nullptr ? stderr : stdout;
  for (const char* text : {kUsage, kvtier::bench::SimUsage(), kvtier::bench::LoadBenchUsage(),
                           kvtier::bench::TpBenchUsage()}) {
    if (text != kUsage) std::fputs("\n", out);
    std::fputs(text, out);
  }
  return error != nullptr ? 2 : 0;
}

// Walks the `--flag value` pairs after the command. `set` applies one and
// returns an error message, empty when it took it. Returns the exit code to
// stop with (help, or a usage error), or -1 when every flag was taken.
int ParseFlags(int argc, char** argv,
               const std::function<std::string(const std::string&, const char*)>& set) {
  for (int i = 2; i < argc; ++i) {
    const std::string f = argv[i];
    if (f == "--help" || f == "-h") return Usage(nullptr);
    if (i + 1 >= argc) return Usage(("flag " + f + " needs a value").c_str());
    const std::string error = set(f, argv[++i]);
    if (!error.empty()) return Usage(error.c_str());
  }
  return -1;
}

// Parses a positive number into *out, or says which flag wanted one.
std::string Positive(const std::string& flag, const char* v, int* out) {
  return ParseInt(v, out) ? "" : flag + " needs a positive number";
}

int RunRpc(int argc, char** argv) {
  kvtier::bench::RpcBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  const int rc = ParseFlags(argc, argv, [&](const std::string& f, const char* v) -> std::string {
    if (f == "--socket") {
      o.socket = v;
    } else if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--rpc-threads") {
      return Positive(f, v, &o.rpc_threads);
    } else if (f == "--calls") {
      return Positive(f, v, &o.calls);
    } else if (f == "--seconds") {
      o.seconds = std::atof(v);
      if (o.seconds <= 0) return "--seconds needs a positive number";
    } else if (f == "--spin-us") {
      if (!ParseInt(v, &o.spin_us, /*allow_zero=*/true))
        return "--spin-us needs a number of microseconds (0: no polling)";
    } else if (f == "--clients") {
      o.client_counts.clear();
      for (const std::string& item : kvtier::bench::SplitList(v)) {
        int n;
        if (!ParseInt(item.c_str(), &n)) return "--clients needs numbers like 1,8";
        o.client_counts.push_back(n);
      }
      if (o.client_counts.empty()) return "--clients needs numbers like 1,8";
    } else {
      return "unknown flag " + f;
    }
    return "";
  });
  return rc >= 0 ? rc : kvtier::bench::RunRpcBench(o);
}

int RunLoad(int argc, char** argv) {
  kvtier::bench::LoadBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  const int rc = ParseFlags(argc, argv, [&](const std::string& f, const char* v) -> std::string {
    int n = 0;
    if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--models") {
      o.models = kvtier::bench::SplitList(v);
    } else if (f == "--tiers") {
      o.tiers = kvtier::bench::SplitList(v);
    } else if (f == "--nvme-passes") {
      return Positive(f, v, &o.nvme_passes);
    } else if (f == "--tokens" || f == "--reps" || f == "--nvme-chunk") {
      if (std::string e = Positive(f, v, &n); !e.empty()) return e;
      if (f == "--tokens") o.tokens = static_cast<uint32_t>(n);
      if (f == "--nvme-chunk") o.nvme_chunk_blocks = static_cast<uint32_t>(n);
      if (f == "--reps") {
        o.reps = n;
        o.hbm_reps = std::max(n, o.hbm_reps);
      }
    } else {
      return "unknown flag " + f;
    }
    return "";
  });
  return rc >= 0 ? rc : kvtier::bench::RunLoadBench(o);
}

int RunTp(int argc, char** argv) {
  kvtier::bench::TpBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  const int rc = ParseFlags(argc, argv, [&](const std::string& f, const char* v) -> std::string {
    int n = 0;
    if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--gpus" || f == "--tokens" || f == "--layers" || f == "--reps") {
      if (std::string e = Positive(f, v, &n); !e.empty()) return e;
      if (f == "--gpus") o.gpus = n;
      if (f == "--tokens") o.tokens = static_cast<uint32_t>(n);
      if (f == "--layers") o.layers = static_cast<uint32_t>(n);
      if (f == "--reps") o.reps = n;
    } else {
      return "unknown flag " + f;
    }
    return "";
  });
  return rc >= 0 ? rc : kvtier::bench::RunTpBench(o);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("missing command");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") return Usage(nullptr);
  if (cmd == "rpc") return RunRpc(argc, argv);
  if (cmd == "sim") return kvtier::bench::RunSim(argc, argv);
  if (cmd == "load") return RunLoad(argc, argv);
  if (cmd == "tp") return RunTp(argc, argv);
  if (cmd == "engine") {
#if KVTIER_BENCH_ENGINE
    return kvtier::bench::RunEngineBench(argc - 1, argv + 1);
#else
    std::fprintf(stderr, "kvtier-bench engine: this build has no CUDA (the engine needs a GPU)\n");
    return 1;
#endif
  }
  if (cmd == "ttft") {
#if KVTIER_BENCH_ENGINE
    return kvtier::bench::RunTtftBench(argc - 1, argv + 1);
#else
    std::fprintf(stderr, "kvtier-bench ttft: this build has no CUDA (the engine needs a GPU)\n");
    return 1;
#endif
  }
  return Usage(("unknown command '" + cmd + "'").c_str());
}
