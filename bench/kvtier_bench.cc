// kvtier-bench: measures kvtier on real workloads.
//
//   kvtier-bench rpc    acquire/release latency and throughput, live daemon
//   kvtier-bench sim    trace replay through the real cache and policies
//   kvtier-bench load   GPU path bandwidth: tiers -> engine pool and back
//
// Each subcommand prints its own flags with --help.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>
#include <vector>

#include "bench/daemon_process.h"
#include "bench/load_bench.h"
#include "bench/tp_bench.h"
#include "bench/rpc_bench.h"
#include "bench/sim_command.h"

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
  std::fputs(kUsage, error != nullptr ? stderr : stdout);
  std::fputs("\n", error != nullptr ? stderr : stdout);
  std::fputs(kvtier::bench::SimUsage(), error != nullptr ? stderr : stdout);
  std::fputs("\n", error != nullptr ? stderr : stdout);
  std::fputs(kvtier::bench::LoadBenchUsage(), error != nullptr ? stderr : stdout);
  std::fputs("\n", error != nullptr ? stderr : stdout);
  std::fputs(kvtier::bench::TpBenchUsage(), error != nullptr ? stderr : stdout);
  return error != nullptr ? 2 : 0;
}

int RunRpc(int argc, char** argv) {
  kvtier::bench::RpcBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") return Usage(nullptr);
    if (i + 1 >= argc) return Usage(("flag " + f + " needs a value").c_str());
    const char* v = argv[++i];
    if (f == "--socket") {
      o.socket = v;
    } else if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--rpc-threads") {
      if (!ParseInt(v, &o.rpc_threads)) return Usage("--rpc-threads needs a positive number");
    } else if (f == "--calls") {
      if (!ParseInt(v, &o.calls)) return Usage("--calls needs a positive number");
    } else if (f == "--seconds") {
      o.seconds = std::atof(v);
      if (o.seconds <= 0) return Usage("--seconds needs a positive number");
    } else if (f == "--spin-us") {
      if (!ParseInt(v, &o.spin_us, /*allow_zero=*/true))
        return Usage("--spin-us needs a number of microseconds (0: no polling)");
    } else if (f == "--clients") {
      o.client_counts.clear();
      std::stringstream ss(v);
      std::string item;
      while (std::getline(ss, item, ',')) {
        int n;
        if (!ParseInt(item.c_str(), &n)) return Usage("--clients needs numbers like 1,8");
        o.client_counts.push_back(n);
      }
    } else {
      return Usage(("unknown flag " + f).c_str());
    }
  }
  return kvtier::bench::RunRpcBench(o);
}

std::vector<std::string> SplitList(const char* v) {
  std::vector<std::string> out;
  std::stringstream ss(v);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(item);
  return out;
}

int RunLoad(int argc, char** argv) {
  kvtier::bench::LoadBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") return Usage(nullptr);
    if (i + 1 >= argc) return Usage(("flag " + f + " needs a value").c_str());
    const char* v = argv[++i];
    int n = 0;
    if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--models") {
      o.models = SplitList(v);
    } else if (f == "--tiers") {
      o.tiers = SplitList(v);
    } else if (f == "--tokens") {
      if (!ParseInt(v, &n)) return Usage("--tokens needs a positive number");
      o.tokens = static_cast<uint32_t>(n);
    } else if (f == "--reps") {
      if (!ParseInt(v, &n)) return Usage("--reps needs a positive number");
      o.reps = n;
      o.hbm_reps = std::max(n, o.hbm_reps);
    } else if (f == "--nvme-passes") {
      if (!ParseInt(v, &o.nvme_passes)) return Usage("--nvme-passes needs a positive number");
    } else if (f == "--nvme-chunk") {
      if (!ParseInt(v, &n)) return Usage("--nvme-chunk needs a positive number");
      o.nvme_chunk_blocks = static_cast<uint32_t>(n);
    } else {
      return Usage(("unknown flag " + f).c_str());
    }
  }
  return kvtier::bench::RunLoadBench(o);
}

int RunTp(int argc, char** argv) {
  kvtier::bench::TpBenchOptions o;
  o.kvtierd_path = kvtier::bench::DaemonProcess::FindBinary(argv[0]);
  for (int i = 2; i < argc; ++i) {
    std::string f = argv[i];
    if (f == "--help" || f == "-h") return Usage(nullptr);
    if (i + 1 >= argc) return Usage(("flag " + f + " needs a value").c_str());
    const char* v = argv[++i];
    int n = 0;
    if (f == "--kvtierd") {
      o.kvtierd_path = v;
    } else if (f == "--gpus" || f == "--tokens" || f == "--layers" || f == "--reps") {
      if (!ParseInt(v, &n)) return Usage((f + " needs a positive number").c_str());
      if (f == "--gpus") o.gpus = n;
      if (f == "--tokens") o.tokens = static_cast<uint32_t>(n);
      if (f == "--layers") o.layers = static_cast<uint32_t>(n);
      if (f == "--reps") o.reps = n;
    } else {
      return Usage(("unknown flag " + f).c_str());
    }
  }
  return kvtier::bench::RunTpBench(o);
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
  return Usage(("unknown command '" + cmd + "'").c_str());
}
