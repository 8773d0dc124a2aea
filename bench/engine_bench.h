// kvtier-bench engine: the integrated engine's prefill and decode speed on
// the H200, beside a PyTorch reference (HF transformers, sdpa, bf16) of the
// same checkpoint run in the same command (bench/engine_reference.py).
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace kvtier::bench {

// Runs the PyTorch reference (`cmd`, with --json) and returns the JSON
// objects it printed, one per line; other lines are skipped. A non-zero exit
// is reported on stderr.
std::vector<nlohmann::json> RunReference(const std::string& cmd);

// argv[0] is "engine"; returns the process exit code.
int RunEngineBench(int argc, char** argv);

}  // namespace kvtier::bench
