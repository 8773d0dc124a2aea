#!/usr/bin/env bash
# Installs what is missing, builds, and shows kvtier working: runs the
# foundation's benchmarks (prefix lookup, key hashing, index memory).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build="${KVTIER_BUILD_DIR:-build}"
"$build/bench/kvtier-core-bench" --benchmark_filter='PrefixAcquire|HashTokens/16|IndexMemory'
