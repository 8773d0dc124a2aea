#!/usr/bin/env bash
# Builds kvtier on a GPU machine and runs what needs a GPU: every test (the
# GPU ones run for real there) and the GPU benchmarks. Logs go to ${OUT:-.}.
#
#   scripts/gpu-run.sh tests            # ctest, all folders
#   scripts/gpu-run.sh load             # kvtier-bench load (8B and 70B-like, all tiers)
#   scripts/gpu-run.sh tp               # kvtier-bench tp on every GPU present
#   scripts/gpu-run.sh loader           # kvtier-loader-bench (kernels alone)
#   scripts/gpu-run.sh hbm              # kvtier-bench load, HBM tier only
#   scripts/gpu-run.sh tests load tp    # any combination, in order
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
build="${KVTIER_BUILD_DIR:-/tmp/kvtier-build}"
nvidia-smi --query-gpu=index,name,pci.bus_id,memory.total --format=csv | tee "$out/gpus.txt"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
cmake --build "$build" -j "$(nproc)" > "$out/build.log" 2>&1 || { grep -E "error" "$out/build.log" | head -30; exit 1; }
rc=0
for what in "$@"; do
  case "$what" in
    tests) ctest --test-dir "$build" --output-on-failure -j 8 --timeout 600 > "$out/ctest.log" 2>&1 || rc=1
           grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest.log" | tail -15
           grep -c "Skipped" "$out/ctest.log" | sed 's/^/skipped tests: /' ;;
    load)  "$build/bench/kvtier-bench" load 2>&1 | tee "$out/load.txt" | tail -40 || rc=1 ;;
    tp)    "$build/bench/kvtier-bench" tp 2>&1 | tee "$out/tp.txt" | tail -20 || rc=1 ;;
    loader) "$build/bench/kvtier-loader-bench" "$out/loader.csv" 2>&1 | tee "$out/loader.txt" | tail -40 || rc=1 ;;
    hbm)   "$build/bench/kvtier-bench" load --tiers hbm 2>&1 | tee "$out/hbm.txt" | tail -20 || rc=1 ;;
    *)     echo "unknown step $what"; rc=2 ;;
  esac
done
exit $rc
