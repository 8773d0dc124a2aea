#!/usr/bin/env bash
# Builds kvtier with AddressSanitizer + UndefinedBehaviorSanitizer into
# ${KVTIER_SANITIZE_BUILD_DIR:-build-asan} and runs the whole test suite
# there. CUDA is left out of this build (ASan's shadow memory and the CUDA
# driver's address reservations do not mix; without a GPU the CUDA tests
# skip anyway): the CUDA code compiles in the main build. Any ASan or UBSan
# report fails its test (UBSan aborts; leaks fail the process that leaked).
set -euo pipefail
cd "$(dirname "$0")/.."
build="${KVTIER_SANITIZE_BUILD_DIR:-build-asan}"
# The Python module is left out too: an instrumented extension needs the ASan
# runtime loaded before the interpreter starts (its CPU tests run in the main
# build).
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVTIER_SANITIZE=address,undefined \
  -DKVTIER_WITH_CUDA=OFF -DKVTIER_PYTHON=OFF >/dev/null
cmake --build "$build" -j "$(nproc)"
# quarantine_size_mb: ASan keeps freed memory out of reuse (256 MiB by
# default) to catch use-after-free, and the daemon's RSS then counts it: the
# limits tests, which bound the daemon's RSS, would measure the quarantine.
# 16 MiB still catches a use of recently freed memory.
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0:detect_stack_use_after_return=0:quarantine_size_mb=16"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 900 ${KVTIER_SANITIZE_CTEST_ARGS:-}
