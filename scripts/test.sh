#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test. GPU tests skip
# (reported as skipped) when no GPU is present.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build="${KVTIER_BUILD_DIR:-build}"
ctest --test-dir "$build" --output-on-failure -j "$(nproc)" --timeout 600
