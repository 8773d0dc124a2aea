#!/usr/bin/env bash
# Installs what is missing, builds, starts kvtierd with its defaults, and shows
# it serving: a demo client stores prompts' KV blocks through the shared
# segment, loads them back byte-exact, and prints the daemon's statistics.
# The daemon then keeps serving until Ctrl-C (KVTIER_DEMO_EXIT=1: stop after
# the demo).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
build="${KVTIER_BUILD_DIR:-build}"

# The daemon's default socket; kvtier (the CLI) resolves the same one.
if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -w "${XDG_RUNTIME_DIR}" ]; then
  sock="$XDG_RUNTIME_DIR/kvtier.sock"
else
  sock="./kvtier-data/kvtier.sock"
fi

"$build/server/kvtierd" "$@" &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  "$build/engine_adapter/kvtier" health --socket "$sock" >/dev/null 2>&1 && break
  kill -0 $daemon 2>/dev/null || { echo "kvtierd failed to start" >&2; exit 1; }
  sleep 0.1
done
echo
echo "== kvtier demo: 4 prompts sharing a system prompt, Llama-3-8B KV layout =="
"$build/engine_adapter/kvtier" demo --socket "$sock"
echo
echo "== admin endpoint (http://127.0.0.1:9477/metrics), a few lines =="
curl -s http://127.0.0.1:9477/metrics | grep -E '^kvtier_(blocks_ready|blocks_hit_total|tier_used_bytes|rpc_duration_seconds_count)' || true
if [ "${KVTIER_DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo
echo "kvtierd keeps serving on $sock (status page: http://127.0.0.1:9477/). Ctrl-C stops it."
wait $daemon
