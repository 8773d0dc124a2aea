#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. GPU tests skip
# (reported as skipped) when no GPU is present. Then, unless turned off, the
# suite once more under ASan + UBSan (scripts/sanitize.sh,
# KVTIER_CI_SANITIZE=0 skips it) and every fuzzer for a bounded time
# (scripts/fuzz.sh, KVTIER_CI_FUZZ=0 skips it; KVTIER_FUZZ_SECONDS sets it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build="${KVTIER_BUILD_DIR:-build}"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 600
if [ "${KVTIER_CI_SANITIZE:-1}" = 1 ]; then bash scripts/sanitize.sh; fi
if [ "${KVTIER_CI_FUZZ:-1}" = 1 ]; then KVTIER_FUZZ_SECONDS="${KVTIER_FUZZ_SECONDS:-45}" bash scripts/fuzz.sh; fi
