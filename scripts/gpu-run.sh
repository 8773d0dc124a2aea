#!/usr/bin/env bash
# Builds kvtier on a GPU machine and runs what needs a GPU: every test (the
# GPU ones run for real there) and the GPU benchmarks. Logs go to ${OUT:-.}.
#
#   scripts/gpu-run.sh tests            # ctest, all folders
#   scripts/gpu-run.sh load             # kvtier-bench load (8B and 70B-like, all tiers)
#   scripts/gpu-run.sh tp               # kvtier-bench tp on every GPU present
#   scripts/gpu-run.sh loader           # kvtier-loader-bench (kernels alone)
#   scripts/gpu-run.sh hbm              # kvtier-bench load, HBM tier only
#   scripts/gpu-run.sh copy             # host tier by both copy paths, 16/64-token pages, GEMM interference
#   scripts/gpu-run.sh parity           # engine vs HF transformers: tiny (ctest) and 8B
#   scripts/gpu-run.sh engine           # kvtier-bench engine on the 8B shape (vs PyTorch)
#   scripts/gpu-run.sh loop             # the engine's GPU tests, the loop through kvtier included
#   scripts/gpu-run.sh ttft             # kvtier-bench ttft on the 8B shape (vs recompute, PyTorch)
#   scripts/gpu-run.sh ttft-tiny        # the same on a tiny checkpoint (a quick check)
#   scripts/gpu-run.sh python           # the Python module's tests (the GPU ones for real)
#   scripts/gpu-run.sh python-bench     # Python vs C++ client: kvtier-bench load figures, same run
#   scripts/gpu-run.sh python-hf        # HF transformers restores a prefix and continues (tiny, 8B)
#   scripts/gpu-run.sh tests load tp    # any combination, in order
#
# The libraries it needs there come from ../shared/tools/device-deps, run here
# once with the engine's and the Python module's extra packages:
#   device-deps nlohmann-json3-dev libcli11-dev pybind11-dev
# The Python module is built for that machine's python3 (the one with torch):
# the configure names it with -DPython3_EXECUTABLE.
#
# The 8B-shaped checkpoint (16 GB of seeded random weights) is written once to
# ${KVTIER_ENGINE_MODEL:-/tmp/kvtier-llama-3-8b} and reused. KVTIER_TARGETS
# (space-separated) builds only those targets instead of everything.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-.}"
build="${KVTIER_BUILD_DIR:-/tmp/kvtier-build}"
nvidia-smi --query-gpu=index,name,pci.bus_id,memory.total --format=csv | tee "$out/gpus.txt"
py="$(command -v python3 || true)"
extra=()
# That python3's own pybind11 (pip) where it has one: newer than Debian's 2.10,
# which predates Python 3.12.
if [ -n "$py" ] && pyb="$("$py" -m pybind11 --cmakedir 2>/dev/null)"; then extra+=(-Dpybind11_DIR="$pyb"); fi
# The bundled OpenSSL (device-deps) brings only a static libcrypto, which left
# the Python test peer with undefined EVP symbols there; the machine's shared
# libcrypto (same 3.0 ABI) links.
for lib in crypto ssl; do
  so=/usr/lib/x86_64-linux-gnu/lib$lib.so.3
  [ -f "$so" ] && extra+=(-DOPENSSL_$(echo "$lib" | tr a-z A-Z)_LIBRARY="$so")
done
# The bundle's libsystemd.so (libsystemd-dev) links to libsystemd.so.0, which
# the bundle leaves to the machine (an essential package): without it the link
# dangles and kvtierd does not link ("cannot find -lsystemd"). Point it at the
# machine's own.
IFS=: read -r -a libdirs <<< "${LIBRARY_PATH:-}"
for d in "${libdirs[@]}"; do
  if [ -L "$d/libsystemd.so" ] && [ ! -e "$d/libsystemd.so" ]; then
    for so in /usr/lib/x86_64-linux-gnu/libsystemd.so.0 /lib/x86_64-linux-gnu/libsystemd.so.0; do
      [ -e "$so" ] && { ln -sfn "$so" "$d/libsystemd.so.0"; break; }
    done
  fi
done
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release ${py:+-DPython3_EXECUTABLE="$py"} "${extra[@]}" > "$out/cmake.log" 2>&1 ||
  { tail -30 "$out/cmake.log"; exit 1; }
grep -E "kvtier: (Python module|no pybind11)" "$out/cmake.log" 
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
    copy)  "$build/bench/kvtier-bench" load --tiers host --page-tokens 16,64 --interference --reps 3 2>&1 |
             tee "$out/copy.txt" | grep -E "^\||Interference" || rc=1 ;;
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
           "$build/bench/kvtier-bench" ttft --model "$model" --tiers host,host-sm,hbm,nvme --json-out "$out/ttft.json" 2>&1 |
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
    python|python-bench|python-hf)
           if [ ! -f "$build/python/kvtier/__init__.py" ]; then
             echo "$what: the module was not built (cmake.log says why)"; rc=1; continue
           fi
           export PYTHONPATH="$build/python" KVTIERD="$build/server/kvtierd"
           export KVTIER_PYTHON_PEER="$build/tests/kvtier-python-peer" ;;&
    python)
           python3 -c "import torch, transformers, kvtier; print('python', __import__('sys').version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__)" | tee "$out/python-versions.txt"
           for t in gpu cpu_path errors lifetimes stub; do
             python3 tests/python/test_$t.py > "$out/python-$t.txt" 2>&1; r=$?
             echo "python test_$t: exit $r ($(grep -E '^(Ran|OK|FAILED)' "$out/python-$t.txt" | tr '\n' ' '))"
             [ $r -eq 0 ] || rc=1
           done ;;
    python-bench)
           python3 bench/python_load_bench.py --kvtier-bench "$build/bench/kvtier-bench" --kvtierd "$KVTIERD" \
             --json-out "$out/python-load.json" > "$out/python-load.txt" 2>&1 || rc=1
           grep -A8 "^Python vs C++" "$out/python-load.txt" || tail -20 "$out/python-load.txt" ;;
    python-hf)
           tiny=/tmp/kvtier-tiny-py
           if [ ! -f "$tiny/config.json" ]; then
             "$engine_bin" make-random --config tiny --seed 3 --out /tmp/kvtier-tiny-py-cfg > /dev/null &&
               sed 's/"max_position_embeddings": *[0-9]*/"max_position_embeddings": 32768/' \
                 /tmp/kvtier-tiny-py-cfg/config.json > /tmp/kvtier-tiny-py.json &&
               "$engine_bin" make-random --config /tmp/kvtier-tiny-py.json --seed 3 --out "$tiny" > /dev/null
           fi
           make_model
           for m in tiny:$tiny 8b:$model; do
             python3 tests/python/hf_continue.py drive --model "${m#*:}" --kvtierd "$KVTIERD" \
               --json-out "$out/hf-${m%%:*}.json" > "$out/hf-${m%%:*}.txt" 2> "$out/hf-${m%%:*}.log" || rc=1
             grep -A7 "^HF transformers" "$out/hf-${m%%:*}.txt" || tail -20 "$out/hf-${m%%:*}.log"
           done ;;
    *)     echo "unknown step $what"; rc=2 ;;
  esac
done
exit $rc
