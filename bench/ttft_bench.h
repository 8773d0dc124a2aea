// kvtier-bench ttft: time to first token of the integrated engine with and
// without kvtier, on one checkpoint, in one run:
//
//   recompute        the engine prefills the whole prompt (and, after the
//                    engine is freed, the PyTorch reference does)
//   full hit         from the HBM tier, the host tier and NVMe (the daemon
//                    restarted before each repetition, so that its host tier
//                    is empty and every block is read from disk)
//   half hit         the first half from the host tier, the rest computed
//
// TTFT is request in -> first token on the host: hashing, lookup, load,
// suffix prefill and sampling included (KvtierConnector::Prefill). Beside
// each hit row, its roofline: KV bytes / the bandwidth of that path measured
// in the same run (pinned H2D memcpy, device copy, plain io_uring reads of
// the daemon's NVMe file) + one decode step at that context. Then a load
// test: rounds of --concurrent requests admitted together, a mix of
// conversation prefixes seen before and fresh prompts, with and without
// kvtier: TTFT p50/p99 and tokens/s.
#pragma once

namespace kvtier::bench {

// argv[0] is "ttft"; returns the process exit code.
int RunTtftBench(int argc, char** argv);

}  // namespace kvtier::bench
