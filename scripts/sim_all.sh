#!/usr/bin/env bash
# Replays every trace through kvtier-bench sim for every eviction policy and
# capacity, then plots hit rate against capacity and writes the markdown
# tables that docs/eviction.md quotes. Builds nothing: it runs the built
# kvtier-bench.
#
#   scripts/sim_all.sh [-b KVTIER_BENCH] [-t TRACE_DIR] [-o OUT_DIR] [-j JOBS] [--quick]
#
#   -b  the kvtier-bench binary      (default: build/bench/kvtier-bench)
#   -t  folder with the traces       (default: ../shared/data/traces)
#   -o  output folder                (default: build/sim-results)
#   -j  parallel replays             (default: all hardware threads)
#   --quick  agentic trace: first 100 sessions only (about a minute)
#
# Plots need python3 with matplotlib ($PYTHON picks the interpreter);
# without it only the tables are written.
#
# Paths are relative to the repository root. Output: <trace>.json/.csv/.txt
# per trace (single tier), two_tier_<trace>.* (host + NVMe model),
# hit_rate_blocks.png, hit_rate_tokens.png and tables.md.
# The full run replays 94M block references per agentic run: about 12
# minutes on 2 cores (see docs/eviction.md).
set -euo pipefail
cd "$(dirname "$0")/.."

BENCH=build/bench/kvtier-bench
TRACES=../shared/data/traces
OUT=build/sim-results
JOBS=()
QUICK=()
while [ $# -gt 0 ]; do
  case "$1" in
    -b) BENCH=$2; shift 2 ;;
    -t) TRACES=$2; shift 2 ;;
    -o) OUT=$2; shift 2 ;;
    -j) JOBS=(--jobs "$2"); shift 2 ;;
    --quick) QUICK=(--max-sessions 100); shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "sim_all.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$BENCH" ] || { echo "sim_all.sh: no kvtier-bench at $BENCH (build it, or pass -b)" >&2; exit 1; }
mkdir -p "$OUT"

POLICIES=lru,priority-lru,prefix-lru,s3fifo,adaptive-2q
CAPACITIES=2%,3%,5%,7%,10%,15%,20%,30%,40%,50%

run() {  # name, trace file, extra flags...
  local name=$1 trace=$2
  shift 2
  echo "== $name" >&2
  "$BENCH" sim --trace "$TRACES/$trace" --name "$name" "${JOBS[@]}" "$@" \
      --json-out "$OUT/$name.json" --csv "$OUT/$name.csv" | tee "$OUT/$name.txt"
}

# Single tier: every policy at every capacity, Belady's MIN as the reference.
run conversation conversation_trace.jsonl --policy "$POLICIES" --tier1-capacity "$CAPACITIES"
run synthetic synthetic_trace.jsonl --policy "$POLICIES" --tier1-capacity "$CAPACITIES"
run agentic kv-cache-tester_traces.tar.xz "${QUICK[@]}" --policy "$POLICIES" \
    --tier1-capacity "$CAPACITIES"

# Two tiers (host + NVMe model): 5% host over 20% NVMe (LRU there), with and
# without second-sighting admission.
for adm in always second-sighting; do
  for t in conversation synthetic; do
    run "two_tier_${t}_${adm}" "${t}_trace.jsonl" --policy lru,adaptive-2q \
        --tier1-capacity 2%,5% --tier2-capacity 20% --tier2-policy lru --admission "$adm"
  done
done

# The plots need matplotlib: take $PYTHON, else the first python3 that has it.
if [ -z "${PYTHON:-}" ]; then
  for p in python3 /usr/bin/python3; do
    if command -v "$p" >/dev/null 2>&1 && "$p" -c "import matplotlib" 2>/dev/null; then PYTHON=$p; break; fi
  done
fi
"${PYTHON:-python3}" scripts/plot_sim.py --out "$OUT" "$OUT"/*.json
echo "results, plots and tables.md are in $OUT/" >&2
