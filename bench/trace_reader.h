// Trace: the requests of an LLM-serving trace as chains of dense block ids,
// and the readers of the trace formats kvtier-bench replays (the files are
// described in the trace folder's SOURCES.md):
//
//  - Mooncake JSONL (conversation_trace.jsonl, synthetic_trace.jsonl): one
//    request per line, `timestamp` (ms), `input_length`, `hash_ids` (global
//    chained ids, 512-token blocks; the last block may be partial).
//  - Agentic-coding sessions (kv-cache-tester traces): one JSON object per
//    session with `block_size` and `requests` (`t` in s, `in`, `hash_ids`
//    of full blocks); `type: "subagent"` entries nest `requests` whose `t`
//    is relative to the sub-agent's. Ids are local to a session (sub-agents
//    share the parent's), so each session is its own namespace. Read from a
//    tar archive (.tar.xz, .tar.gz, .tar, ...: libarchive, members ending in
//    .json in archive order), a directory of .json files, or a single .json
//    file.
//
// Hash ids are remapped to dense ids 0..num_unique_blocks-1 (per session for
// agentic traces), so replay state can live in flat vectors. Requests are
// ordered by arrival time (ties keep file order); agentic sessions all start
// at time 0 unless staggered.
//
// Thread safety: a Trace is immutable after reading and may be shared by
// concurrent replays. Readers are reentrant.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tiers/status.h"

namespace kvtier::bench {

struct TraceRequest {
  double time_s = 0;          // arrival, seconds since the trace (session) start
  uint64_t input_tokens = 0;  // prompt length
  uint64_t first_ref = 0;     // index of its first block in Trace::refs
  uint32_t num_blocks = 0;
  uint32_t session = 0;       // session (file) index; 0 for Mooncake traces
};

struct Trace {
  std::string name;               // label for reports
  uint32_t block_tokens = 0;      // tokens per hash id
  std::vector<TraceRequest> requests;  // replay order
  std::vector<uint32_t> refs;     // dense block ids, each request's in prompt order
  uint32_t num_unique_blocks = 0;
  uint32_t num_sessions = 0;
  uint64_t total_input_tokens = 0;
  uint32_t max_request_blocks = 0;

  std::span<const uint32_t> blocks(const TraceRequest& r) const {
    return {refs.data() + r.first_ref, r.num_blocks};
  }
};

enum class TraceFormat : uint8_t { kAuto = 0, kMooncake = 1, kAgentic = 2 };

struct TraceReadOptions {
  TraceFormat format = TraceFormat::kAuto;  // auto: .jsonl is Mooncake, else agentic
  // Agentic: read only the first N sessions (archive / file-name order); 0 = all.
  uint32_t max_sessions = 0;
  // Keep only the first N requests in replay order; 0 = all.
  uint64_t max_requests = 0;
  // Agentic: session k (in reading order) starts at k * stagger seconds.
  double session_stagger_s = 0;
  // Tokens per hash id; 0 = the trace's (512 for Mooncake, `block_size`).
  uint32_t block_tokens = 0;
  std::string name;  // report label; empty: derived from the file name
};

// Collects requests while a trace is parsed: remaps ids, then orders.
class TraceBuilder {
 public:
  TraceBuilder();
  ~TraceBuilder();
  TraceBuilder(const TraceBuilder&) = delete;
  TraceBuilder& operator=(const TraceBuilder&) = delete;

  // Starts a new id namespace (a session); returns its index.
  uint32_t BeginSession();
  // Adds a request of the current session. REQUIRES: BeginSession() called.
  void AddRequest(double time_s, uint64_t input_tokens, std::span<const uint64_t> hash_ids);
  // Tokens per hash id as a trace file declares it; InvalidArgument when two
  // files disagree.
  Status SetBlockTokens(uint32_t tokens);
  uint32_t sessions() const;
  // Requests added so far, and a shift of the times of those from `first`
  // on (sub-agent requests are timed relative to their sub-agent entry).
  size_t num_requests() const;
  void ShiftTimes(size_t first, double delta_s);

  // Orders requests by time (stable), truncates, fills the statistics.
  Trace Finish(const TraceReadOptions& options);

 private:
  struct Impl;
  Impl* impl_;
};

// Parses Mooncake JSONL text (one request object per line; blank lines ok).
// InvalidArgument with the line number on malformed input.
Status ParseMooncakeJsonl(std::string_view text, TraceBuilder* builder);

// Parses one agentic session object (a whole trace_NNNN.json) as a new
// session. `stagger_s` is added to its times. InvalidArgument on malformed
// input.
Status ParseAgenticSession(std::string_view text, double stagger_s, TraceBuilder* builder);

// Reads a trace file, archive or directory (see the file comment).
// Errors: NotFound / IOError (files, a damaged archive), InvalidArgument
// (malformed trace, no requests).
Result<Trace> ReadTrace(const std::string& path, const TraceReadOptions& options);

}  // namespace kvtier::bench
