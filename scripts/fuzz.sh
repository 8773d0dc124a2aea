#!/usr/bin/env bash
# Builds the libFuzzer harnesses of fuzz/ (clang, ASan + UBSan, no CUDA) into
# ${KVTIER_FUZZ_BUILD_DIR:-build-fuzz} and runs each for
# ${KVTIER_FUZZ_SECONDS:-30} seconds, starting from its seed corpus in
# fuzz/corpus/<harness>/ (inputs it finds go to the build dir, never into the
# repository). Prints the executions of each; stops at the first crash, with
# the crashing input and the log in <build>/fuzz-work/<harness>/.
# Usage: scripts/fuzz.sh [HARNESS...]   (default: all of them)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${KVTIER_FUZZ_BUILD_DIR:-build-fuzz}"
secs="${KVTIER_FUZZ_SECONDS:-30}"
all=(socket_framing_fuzz rpc_handlers_fuzz admin_http_fuzz nvme_decoders_fuzz
     config_parser_fuzz trace_parser_fuzz)
targets=("${@:-${all[@]}}")
CC=clang CXX=clang++ cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTIER_FUZZ=ON \
  -DKVTIER_WITH_CUDA=OFF -DKVTIER_BUILD_TESTS=OFF -DKVTIER_BUILD_BENCH=OFF >/dev/null
cmake --build "$build" -j "$(nproc)" --target "${targets[@]}"
for t in "${targets[@]}"; do
  work="$build/fuzz-work/$t"
  rm -rf "$work"
  mkdir -p "$work/found" "$work/artifacts"
  log="$work/log"
  if ! ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1 \
       UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
       "$build/fuzz/$t" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
         -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
         "$work/found" "fuzz/corpus/$t" >"$log" 2>&1; then
    tail -n 60 "$log"
    echo "fuzz $t: FAILED (input and log in $work)" >&2
    exit 1
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1)
  echo "fuzz $t: $execs executions in ${secs}s, $cov, no crash"
done
