#!/usr/bin/env bash
# Installs what is missing, builds, starts kvtierd with its defaults, and shows
# it serving: a demo client stores prompts' KV blocks through the shared
# segment, loads them back byte-exact, and prints the daemon's statistics;
# where a GPU is present, the integrated engine then runs one prompt without
# and with the cache and prints each first token's time.
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
engine="$build/engine_adapter/engine/kvtier-engine"
if [ -x "$engine" ] && command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  # The engine's loop through this daemon: round 0 computes the prompt and
  # stores its KV, round 1 loads it and computes only the last token.
  # KVTIER_DEMO_CONFIG=llama-3-8b shows it at full size (16 GB of weights).
  model="${KVTIER_DEMO_MODEL:-$build/demo-checkpoint-${KVTIER_DEMO_CONFIG:-tiny}}"
  echo
  echo "== the integrated engine through kvtier: one prompt, without the cache, then with it =="
  [ -f "$model/config.json" ] ||
    "$engine" make-random --config "${KVTIER_DEMO_CONFIG:-tiny}" --seed 1 --out "$model" 2>/dev/null
  "$engine" run --model "$model" --prompt-lens "${KVTIER_DEMO_PROMPT:-4000}" --max-new-tokens 8 \
    --rounds 2 --kvtier-socket "$sock"
fi
if [ "${KVTIER_DEMO_EXIT:-0}" = "1" ]; then
  exit 0
fi
echo
echo "kvtierd keeps serving on $sock (status page: http://127.0.0.1:9477/). Ctrl-C stops it."
wait $daemon
