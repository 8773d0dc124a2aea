// kvtier-bench: measures kvtier on real workloads.
//
//   kvtier-bench rpc    acquire/release latency and throughput, live daemon
//   kvtier-bench sim    trace replay through the real cache and policies
//
// Each subcommand prints its own flags with --help.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <string>

#include "bench/daemon_process.h"
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
    "\n"
    "rpc flags:\n"
    "  --socket PATH       measure this running daemon (default: spawn one)\n"
    "  --kvtierd PATH      daemon binary to spawn (default: next to this program)\n"
    "  --rpc-threads N     RPC threads of the spawned daemon (default 2)\n"
    "  --calls N           timed calls per chain length (default 2000)\n"
    "  --seconds S         duration of each throughput point (default 3)\n"
    "  --clients LIST      comma-separated client counts (default 1,8)\n";

bool ParseInt(const char* s, int* out) {
  char* end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v <= 0 || v > 1000000) return false;
  *out = static_cast<int>(v);
  return true;
}

int Usage(const char* error) {
  if (error != nullptr) std::fprintf(stderr, "kvtier-bench: %s\n\n", error);
  std::fputs(kUsage, error != nullptr ? stderr : stdout);
  std::fputs("\n", error != nullptr ? stderr : stdout);
  std::fputs(kvtier::bench::SimUsage(), error != nullptr ? stderr : stdout);
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return Usage("missing command");
  std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") return Usage(nullptr);
  if (cmd == "rpc") return RunRpc(argc, argv);
  if (cmd == "sim") return kvtier::bench::RunSim(argc, argv);
  return Usage(("unknown command '" + cmd + "'").c_str());
}
