#!/usr/bin/env bash
# Builds kvtier on a GPU machine and runs what needs a GPU: every test (the
# GPU ones run for real there) and the GPU benchmarks. Logs go to ${OUT:-.}.
#
#   scripts/gpu-run.sh tests            # ctest, all folders
#   scripts/gpu-run.sh load             # kvtier-bench load (8B and 70B-like, all tiers)
#   scripts/gpu-run.sh tp               # kvtier-bench tp on every GPU present
#   scripts/gpu-run.sh loader           # kvtier-loader-bench (kernels alone)
#   scripts/gpu-run.sh hbm              # kvtier-bench load, HBM tier only
#   scripts/gpu-run.sh parity           # engine vs HF transformers: tiny (ctest) and 8B
#   scripts/gpu-run.sh engine           # kvtier-bench engine on the 8B shape (vs PyTorch)
#   scripts/gpu-run.sh loop             # the engine's GPU tests, the loop through kvtier included
#   scripts/gpu-run.sh ttft             # kvtier-bench ttft on the 8B shape (vs recompute, PyTorch)
#   scripts/gpu-run.sh ttft-tiny        # the same on a tiny checkpoint (a quick check)
#   scripts/gpu-run.sh tests load tp    # any combination, in order
#
# The libraries it needs there come from ../shared/tools/device-deps, run here
# once with the engine's extra packages: device-deps nlohmann-json3-dev libcli11-dev
#
# The 8B-shaped checkpoint (16 GB of seeded random weights) is written once to
# ${KVTIER_ENGINE_MODEL:-/tmp/kvtier-llama-3-8b} and reused. KVTIER_TARGETS
# (space-separated) builds only those targets instead of everything.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
build="${KVTIER_BUILD_DIR:-/tmp/kvtier-build}"
nvidia-smi --query-gpu=index,name,pci.bus_id,memory.total --format=csv | tee "$out/gpus.txt"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release > "$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log"; exit 1; }
targets=()
for t in ${KVTIER_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}" > "$out/build.log" 2>&1 ||
  { grep -E "error" -A3 "$out/build.log" | head -40; exit 1; }
rc=0
model="${KVTIER_ENGINE_MODEL:-/tmp/kvtier-llama-3-8b}"
engine_bin="$build/engine_adapter/engine/kvtier-engine"
make_model() {
  [ -f "$model/config.json" ] || "$engine_bin" make-random --config llama-3-8b --seed 5 --out "$model" \
    2>"$out/make-random.log" | tail -1
}
for what in "$@"; do
  case "$what" in
    tests) ctest --test-dir "$build" --output-on-failure -j 8 --timeout 600 > "$out/ctest.log" 2>&1 || rc=1
           grep -E "tests passed|tests failed|Failed|\*\*\*" "$out/ctest.log" | tail -15
           grep -c "Skipped" "$out/ctest.log" | sed 's/^/skipped tests: /' ;;
    load)  "$build/bench/kvtier-bench" load 2>&1 | tee "$out/load.txt" | tail -40 || rc=1 ;;
    tp)    "$build/bench/kvtier-bench" tp 2>&1 | tee "$out/tp.txt" | tail -20 || rc=1 ;;
    loader) "$build/bench/kvtier-loader-bench" "$out/loader.csv" 2>&1 | tee "$out/loader.txt" | tail -40 || rc=1 ;;
    hbm)   "$build/bench/kvtier-bench" load --tiers hbm 2>&1 | tee "$out/hbm.txt" | tail -20 || rc=1 ;;
    parity) ctest --test-dir "$build" -R engine_hf_parity --output-on-failure > "$out/parity-tiny.txt" 2>&1 || rc=1
            grep -E "PASS|FAIL|Skipped" "$out/parity-tiny.txt" | tail -3
            make_model
            python3 tests/engine/hf_parity.py --engine "$engine_bin" --model "$model" \
              --prompt-lens 1,17,1000,4096 --decode-steps 32 --work /tmp/kvtier-parity-8b \
              --report "$out/parity-8b.json" > "$out/parity-8b.txt" 2>&1 || rc=1
            grep -E "^(PASS|FAIL)" "$out/parity-8b.txt" ;;
    engine) make_model
            "$build/bench/kvtier-bench" engine --model "$model" --json-out "$out/engine.json" 2>&1 |
              tee "$out/engine.txt" | grep -v "Loading weights" | tail -40 || rc=1 ;;
    loop)  "$build/tests/engine_gpu_tests" > "$out/engine_gpu.txt" 2>&1 || rc=1
           grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|Expected|Which is|actual" "$out/engine_gpu.txt" | head -60 ;;
    ttft)  make_model
           "$build/bench/kvtier-bench" ttft --model "$model" --json-out "$out/ttft.json" 2>&1 |
             tee "$out/ttft.txt" | grep -v "Loading weights" | tail -60 || rc=1 ;;
    ttft-tiny)
           tiny=/tmp/kvtier-tiny-32k
           if [ ! -f "$tiny/config.json" ]; then
             "$engine_bin" make-random --config tiny --seed 3 --out /tmp/kvtier-tiny-cfg > /dev/null &&
               sed 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 32768/' \
                 /tmp/kvtier-tiny-cfg/config.json > /tmp/kvtier-tiny-32k.json &&
               "$engine_bin" make-random --config /tmp/kvtier-tiny-32k.json --seed 3 --out "$tiny" > /dev/null
           fi
           "$build/bench/kvtier-bench" ttft --model "$tiny" --lens 1024,4096,16384 --reps 2 \
             --load-rounds 2 --json-out "$out/ttft-tiny.json" 2>&1 | tee "$out/ttft-tiny.txt" |
             grep -v "Loading weights" | tail -40 || rc=1 ;;
    *)     echo "unknown step $what"; rc=2 ;;
  esac
done
exit $rc
