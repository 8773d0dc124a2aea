// kvtier-bench rpc: latency and throughput of acquire + release against a
// live kvtierd (spawned by the benchmark unless --socket names one).
#pragma once

#include <string>
#include <vector>

namespace kvtier::bench {

struct RpcBenchOptions {
  std::string socket;        // empty: spawn kvtierd_path in a temporary dir
  std::string kvtierd_path;  // the daemon binary to spawn
  int rpc_threads = 2;
  int calls = 2000;          // timed calls per chain length (2,048-key: a quarter)
  double seconds = 3;        // per throughput point
  std::vector<int> client_counts = {1, 8};
  int spin_us = 50;          // clients' reply spin (Client::set_reply_spin)
};

int RunRpcBench(const RpcBenchOptions& options);

}  // namespace kvtier::bench
