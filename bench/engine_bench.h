// kvtier-bench engine: the integrated engine's prefill and decode speed on
// the H200, beside a PyTorch reference (HF transformers, sdpa, bf16) of the
// same checkpoint run in the same command (bench/engine_reference.py).
#pragma once

namespace kvtier::bench {

// argv[0] is "engine"; returns the process exit code.
int RunEngineBench(int argc, char** argv);

}  // namespace kvtier::bench
