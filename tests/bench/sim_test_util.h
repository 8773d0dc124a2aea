// Builds small traces for the simulator tests.
#pragma once

#include <cstdint>
#include <vector>

#include "bench/trace_reader.h"

namespace kvtier::bench {

// One session; request i arrives at time i and has `input_tokens` tokens
// (default: every block full).
inline Trace MakeTrace(const std::vector<std::vector<uint64_t>>& requests,
                       uint32_t block_tokens = 16,
                       const std::vector<uint64_t>& input_tokens = {}) {
  TraceBuilder b;
  b.BeginSession();
  for (size_t i = 0; i < requests.size(); ++i) {
    const uint64_t in =
        i < input_tokens.size() ? input_tokens[i] : requests[i].size() * uint64_t{block_tokens};
    b.AddRequest(static_cast<double>(i), in, requests[i]);
  }
  TraceReadOptions o;
  o.block_tokens = block_tokens;
  o.name = "test";
  return b.Finish(o);
}

}  // namespace kvtier::bench
