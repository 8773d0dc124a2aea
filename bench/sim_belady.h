// Reference hit rates of a trace: the infinite cache and Belady's MIN.
//
// Both replay the block reference stream (every request references all its
// blocks, in prompt order, requests in trace order) and count prefix hits
// (bench/sim_stats.h).
//
//  - IdealPrefixHits: an infinite cache; a block hits if it was referenced
//    before and every block before it in the request hit.
//  - SimulateBelady: Belady's MIN at `capacity_blocks`. Every referenced
//    block is a candidate for the cache, including blocks after the
//    request's first miss (they are stored by the request). On a miss with
//    the cache full, the block whose next reference is farthest in the
//    future is evicted, the incoming block included (then it is not stored;
//    a block never referenced again is never stored). Next uses are
//    positions in the reference stream, so within a chain a child (referenced
//    right after its parent) always has a later next use than its parent and
//    goes first: the cache stays prefix-closed and MIN's hits are prefix hits.
//    This is MIN for block hits; for prefix hits it is the offline
//    reference, not a proven optimum.
//
// Cost: O(refs log capacity) time, 4 bytes per reference plus 8-16 per
// unique block and cached entry. Thread safety: reentrant; the trace is only
// read. `progress`, if set, is incremented once per replayed request.
#pragma once

#include <atomic>
#include <cstdint>
#include <vector>

#include "bench/sim_stats.h"
#include "bench/trace_reader.h"

namespace kvtier::bench {

PrefixHitCounts IdealPrefixHits(const Trace& trace);

// Next use of every reference: the position (index into trace.refs) of the
// next reference to the same block, or 0xFFFFFFFF for none. Computed once and
// shared by the Belady runs of one trace.
std::vector<uint32_t> NextUses(const Trace& trace);

PrefixHitCounts SimulateBelady(const Trace& trace, const std::vector<uint32_t>& next_use,
                               uint64_t capacity_blocks, std::atomic<uint64_t>* progress = nullptr);
PrefixHitCounts SimulateBelady(const Trace& trace, uint64_t capacity_blocks);

}  // namespace kvtier::bench
