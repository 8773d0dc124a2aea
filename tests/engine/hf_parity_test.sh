#!/usr/bin/env bash
# ctest entry: the engine against HF transformers on a tiny random checkpoint
# (prompts of 1, 17, 1000 and 4096 tokens in one batch and alone, every prompt
# position and 32 decode steps). Exit 77 (skipped) without a GPU or without
# python3's torch and transformers.
#   hf_parity_test.sh KVTIER_ENGINE WORKDIR
set -euo pipefail
engine="$1"
work="$2"
if ! python3 -c 'import torch, transformers, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
    >/dev/null 2>&1; then
  echo "skipped: needs a GPU and python3 with torch and transformers"
  exit 77
fi
rm -rf "$work"
mkdir -p "$work"
"$engine" make-random --config tiny --seed 3 --out "$work/model"
exec python3 "$(dirname "$0")/hf_parity.py" --engine "$engine" --model "$work/model" \
  --prompt-lens 1,17,1000,4096 --decode-steps 32 --work "$work/run" --all-positions \
  --report "$work/report.json"
