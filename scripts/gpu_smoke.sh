#!/usr/bin/env bash
# The GPU smoke run (olmo_scone/gpu_kit/smoke.py; docs/gpu.md), from the repository root:
#
#   scripts/gpu_smoke.sh [--device cuda|cpu] [--kit DIR] [--target DIR] [--out DIR] [--tokens DIR]
#
# --device cuda (default): on an offline GPU node with the stock PyTorch image. The kit's wheels
#   (make gpu-kit) are installed with `pip --no-index --no-deps` into --target (default
#   .gpu-kit-site), which goes first on PYTHONPATH; nothing is installed into the image itself.
# --device cpu: the CPU rehearsal in this project's own environment (make setup), small models;
#   the kit's wheels are for the GPU image's Python 3.12 and are not installed.
# Writes OUT/gpu_smoke.json and OUT/gpu_smoke.md (default OUT: runs/gpu-smoke); exit 1 if a check
# failed, 2 on bad input.
set -euo pipefail
cd "$(dirname "$0")/.."

device=cuda kit=gpu-kit target=.gpu-kit-site out=runs/gpu-smoke tokens=""
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --kit) kit="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tokens) tokens="$2"; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "error: gpu_smoke.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done

args=(--device "$device" --out "$out")
[ -n "$tokens" ] && args+=(--tokens "$tokens")
if [ "$device" = cuda ]; then
  . scripts/gpu_env.sh
  gpu_kit_env "$kit" "$target"
  [ -z "$tokens" ] && args+=(--kit "$kit")
else
  py="${PYTHON:-.venv/bin/python}"
  [ -z "$tokens" ] && [ -f "$kit/manifest.json" ] && args+=(--kit "$kit")
fi
exec "$py" -m olmo_scone.gpu_kit.smoke "${args[@]}"
