// PrefixHitCounts: what a trace replay counts, and how rates follow from it.
//
// A request's hit is the longest cached prefix of its blocks (lookups stop
// at the first miss). Blocks: hit blocks / referenced blocks. Tokens:
// sum over requests of min(hit_blocks * block_tokens, input_tokens), over the
// sum of input_tokens (a Mooncake request's last block is partial, so a full
// hit covers exactly its input).
//
// Value type; thread-compatible.
#pragma once

#include <algorithm>
#include <cstdint>

namespace kvtier::bench {

struct PrefixHitCounts {
  uint64_t requests = 0;
  uint64_t blocks = 0;        // referenced blocks
  uint64_t hit_blocks = 0;
  uint64_t input_tokens = 0;
  uint64_t hit_tokens = 0;

  void Add(uint64_t request_blocks, uint64_t hits, uint64_t input, uint32_t block_tokens) {
    ++requests;
    blocks += request_blocks;
    hit_blocks += hits;
    input_tokens += input;
    hit_tokens += std::min<uint64_t>(hits * block_tokens, input);
  }
  double block_rate() const { return blocks == 0 ? 0.0 : double(hit_blocks) / double(blocks); }
  double token_rate() const {
    return input_tokens == 0 ? 0.0 : double(hit_tokens) / double(input_tokens);
  }
};

}  // namespace kvtier::bench
