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

# Where the daemon will listen: its defaults, then a --config file's
# `socket`/`admin`/`data-dir` keys, then the flags given to this script (the
# daemon's own precedence), so that the probes below reach the daemon started
# with "$@" and not a default one.
sock="" admin="127.0.0.1:9477" data_dir="./kvtier-data" config=""
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --config) config="${args[i + 1]:-}" ;;
    --config=*) config="${args[i]#--config=}" ;;
  esac
done
if [ -n "$config" ] && [ -r "$config" ]; then
  while IFS='=' read -r key value; do
    key="$(echo "$key" | tr -d ' \t' | tr _ -)"
    value="$(echo "$value" | sed -e 's/[[:space:]]#.*//' -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//' -e 's/^"\(.*\)"$/\1/')"
    case "$key" in
      socket) sock="$value" ;;
      admin) admin="$value" ;;
      data-dir) data_dir="$value" ;;
    esac
  done < <(grep -E '^[[:space:]]*[a-z_-]+[[:space:]]*=' "$config")
fi
for ((i = 0; i < ${#args[@]}; i++)); do
  case "${args[i]}" in
    --socket) sock="${args[i + 1]:-}" ;;
    --socket=*) sock="${args[i]#--socket=}" ;;
    --admin) admin="${args[i + 1]:-}" ;;
    --admin=*) admin="${args[i]#--admin=}" ;;
    --data-dir) data_dir="${args[i + 1]:-}" ;;
    --data-dir=*) data_dir="${args[i]#--data-dir=}" ;;
  esac
done
if [ -z "$sock" ]; then  # the daemon's default; kvtier resolves the same one
  if [ -n "${XDG_RUNTIME_DIR:-}" ] && [ -w "${XDG_RUNTIME_DIR}" ]; then
    sock="$XDG_RUNTIME_DIR/kvtier.sock"
  else
    sock="${data_dir%/}/kvtier.sock"
  fi
fi
admin_url=""
case "$admin" in
  off) ;;
  0.0.0.0:*) admin_url="http://127.0.0.1:${admin##*:}" ;;
  "[::]:"*) admin_url="http://[::1]:${admin##*:}" ;;
  *) admin_url="http://$admin" ;;
esac

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
if [ -n "$admin_url" ]; then
  echo
  echo "== admin endpoint ($admin_url/metrics), a few lines =="
  curl -s "$admin_url/metrics" | grep -E '^kvtier_(blocks_ready|blocks_hit_total|tier_used_bytes|rpc_duration_seconds_count)' || true
fi
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
echo "kvtierd keeps serving on $sock${admin_url:+ (status page: $admin_url/)}. Ctrl-C stops it."
wait $daemon
