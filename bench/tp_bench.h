// kvtier-bench tp: one daemon serving a tensor-parallel engine on several
// GPUs. Each rank's KV slice is stored from and loaded into a pool on its own
// GPU, all GPUs at once, through the real client against a live daemon.
#pragma once

#include <string>

namespace kvtier::bench {

struct TpBenchOptions {
  std::string kvtierd_path;
  int gpus = 0;              // 0: every GPU present
  uint32_t tokens = 32768;   // per rank, per chain
  uint32_t layers = 80;      // 70B-like: 80 layers, 8 KV heads split over the ranks
  uint32_t kv_heads = 8;
  int reps = 5;
};

int RunTpBench(const TpBenchOptions& options);

}  // namespace kvtier::bench
