#!/usr/bin/env python3
"""Offline bounds for the eviction goal on the Mooncake traces.

Replays a Mooncake JSONL trace with the simulator's semantics (requests in
timestamp order; a request's hits are its longest cached prefix; then every
block of the request is referenced in order, a missing one stored, evicting
by the policy, never a block of the request itself) and reports the block hit
rate of:

  lru           plain LRU; must equal `kvtier-bench sim` (checks the replay)
  dead-first    LRU that knows which blocks are never referenced again and
                evicts those first (an oracle of reuse, not of its timing)
  future-count  evicts the block with the fewest remaining references, LRU
                among equals (an oracle of frequency)
  static-top    the blocks with the most references in the whole trace,
                loaded on first use and never evicted (hindsight frequency)
  class-prio    evicts by the reuse probability of the block's class at store
                time, measured on the whole trace (request length in blocks,
                whether the request hit), LRU within a class
  class-shift   LRU whose recency is credited with 2 x capacity x that
                probability references (a likely-reused block stays longer)

Usage: scripts/eviction_oracles.py [--traces DIR] [--capacity 5,10]
Pure Python; the two Mooncake traces take a few minutes.
"""
import argparse
import collections
import heapq
import json
import os
import sys


def load(path):
    with open(path) as f:
        reqs = [json.loads(line) for line in f if line.strip()]
    reqs.sort(key=lambda r: r["timestamp"])  # stable: ties keep file order
    return [r["hash_ids"] for r in reqs]


def length_class(n):
    for i, edge in enumerate((4, 8, 16, 32, 64)):
        if n < edge:
            return i
    return 5


def class_reuse(reqs):
    """Reuse probability of newly stored blocks per (length class, request hit)."""
    future = collections.Counter(h for hs in reqs for h in hs)
    seen, stats = set(), collections.defaultdict(lambda: [0, 0])
    for hs in reqs:
        for h in hs:
            future[h] -= 1
        k = 0
        while k < len(hs) and hs[k] in seen:
            k += 1
        for h in hs:
            if h not in seen:
                s = stats[(length_class(len(hs)), k > 1)]
                s[0] += 1
                s[1] += future[h] > 0
        seen.update(hs)
    return {c: v[1] / v[0] for c, v in stats.items()}


def replay(reqs, capacity, policy, prob=None):
    remaining = collections.Counter(h for hs in reqs for h in hs)
    total = sum(remaining.values())
    cache, heap, version, hits, t = {}, [], collections.Counter(), 0, 0
    seen = set()

    def key(h, cls):
        if policy == "lru":
            return (0, t)
        if policy == "dead-first":
            return (1 if remaining[h] > 0 else 0, t)
        if policy == "future-count":
            return (remaining[h], t)
        if policy == "class-shift":
            return (0, t + 2 * capacity * prob[cls])
        return (prob[cls], t)  # class-prio

    for hs in reqs:
        k = 0
        while k < len(hs) and hs[k] in cache:
            k += 1
        hits += k
        seen_prefix = 0
        while seen_prefix < len(hs) and hs[seen_prefix] in seen:
            seen_prefix += 1
        cls = (length_class(len(hs)), seen_prefix > 1)
        mine = set(hs)
        for h in hs:
            t += 1
            remaining[h] -= 1
            if h not in cache:
                skipped = []
                while len(cache) >= capacity and heap:
                    entry = heapq.heappop(heap)
                    _, v, b = entry
                    if cache.get(b) != v:
                        continue  # stale entry
                    if b in mine:
                        skipped.append(entry)
                        continue
                    del cache[b]
                for e in skipped:
                    heapq.heappush(heap, e)
                if len(cache) >= capacity:
                    continue  # everything left belongs to this request
            version[h] += 1
            cache[h] = version[h]
            heapq.heappush(heap, (key(h, cls), version[h], h))
        seen.update(hs)
    return hits / total


def static_top(reqs, capacity):
    count = collections.Counter(h for hs in reqs for h in hs)
    keep = {h for h, _ in count.most_common(capacity)}
    loaded, hits, total = set(), 0, 0
    for hs in reqs:
        total += len(hs)
        k = 0
        while k < len(hs) and hs[k] in loaded:
            k += 1
        hits += k
        loaded.update(h for h in hs if h in keep)
    return hits / total


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--traces", default=os.path.join(here, "..", "..", "shared", "data", "traces"))
    ap.add_argument("--capacity", default="5,10", help="percent of unique blocks, comma-separated")
    args = ap.parse_args()
    for name in ("conversation", "synthetic"):
        path = os.path.join(args.traces, f"{name}_trace.jsonl")
        if not os.path.exists(path):
            sys.exit(f"eviction_oracles: no trace at {path} (--traces DIR)")
        reqs = load(path)
        unique = len({h for hs in reqs for h in hs})
        prob = class_reuse(reqs)
        for pct in (float(p) for p in args.capacity.split(",")):
            cap = round(unique * pct / 100)
            row = {p: replay(reqs, cap, p, prob)
                   for p in ("lru", "dead-first", "future-count", "class-prio", "class-shift")}
            row["static-top"] = static_top(reqs, cap)
            print(f"{name} {pct:g}% ({cap} blocks): " +
                  "  ".join(f"{p} {v:.4f}" for p, v in row.items()), flush=True)


if __name__ == "__main__":
    main()
