#!/usr/bin/env bash
# Configures and builds kvtier into ${KVTIER_BUILD_DIR:-build}.
set -euo pipefail
cd "$(dirname "$0")/.."
build="${KVTIER_BUILD_DIR:-build}"
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
jobs="$(nproc)"
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE="${KVTIER_BUILD_TYPE:-RelWithDebInfo}" ${KVTIER_CMAKE_ARGS:-}
cmake --build "$build" -j "$jobs"
