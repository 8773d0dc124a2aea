// kvtier-bench load: paged load and store bandwidth of the client's GPU path
// (engine_adapter/gpu_session.h) against a live kvtierd, beside the plain
// copy of the same bytes measured in the same run:
//
//   host → engine    GpuSession::Load from the host tier    vs cudaMemcpy H2D (pinned)
//   engine → host    GpuSession::Store into the host tier   vs cudaMemcpy D2H (pinned)
//   HBM → engine     GpuSession::Load from the HBM tier     vs cudaMemcpy D2D
//   NVMe → engine    Lookup (promotes NVMe → host) + Load   vs io_uring O_DIRECT reads
//
// for Llama-3-8B- and 70B-shaped pools (8 KV heads x 128, bf16, vLLM
// layout, --page-tokens tokens per page) over --tokens tokens. Host rows come
// once per copy path (--host-paths: the SM gather kernel, the copy engines);
// --interference adds a cuBLAS GEMM's throughput alone and during a load by
// each path. It spawns one daemon per tier
// setup, sized so the data fits (docs/performance.md, "GPU path").
//
// Without CUDA (or a GPU) it prints why and returns 1. Single-threaded.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "tiers/status.h"

namespace kvtier::bench {

// Plain io_uring O_DIRECT reads of `len` bytes at each of `offsets` from
// `path`, `qd` in flight, into a registered buffer: the disk's own speed, the
// roofline of reads through the NVMe tier. Returns wall milliseconds.
Result<double> UringReads(const std::string& path, const std::vector<uint64_t>& offsets,
                          uint32_t len, uint32_t qd);

struct LoadBenchOptions {
  std::string kvtierd_path;
  std::vector<std::string> models = {"8b", "70b"};  // 8b: 32 layers, 70b: 80 layers
  std::vector<std::string> tiers = {"host", "hbm", "nvme"};
  uint32_t tokens = 32768;
  int reps = 5;          // timed repetitions of PCIe rows (median)
  int hbm_reps = 9;      // of HBM rows
  int nvme_passes = 3;   // timed passes over all tokens from NVMe
  uint32_t nvme_chunk_blocks = 128;  // blocks per Lookup + Load from NVMe
  std::vector<uint32_t> page_tokens = {16};            // tokens per page (block)
  std::vector<std::string> host_paths = {"sm", "dma"};  // HostCopyPath names
  bool interference = false;  // GEMM throughput alone and during host loads
  // Host-tier sessions' store pipeline (GpuSessionOptions); 0: the default.
  uint32_t store_depth = 0;
  uint64_t store_chunk_bytes = 0;
};

int RunLoadBench(const LoadBenchOptions& options);

}  // namespace kvtier::bench
