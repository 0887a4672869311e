#!/usr/bin/env bash
# make repro-gpu (olmo_scone/recipes/repro_gpu.py; docs/gpu.md), from the repository root:
#
#   scripts/repro_gpu.sh [--kit DIR] [--target DIR] [repro_gpu.py options: --minutes, --root, --doc]
#
# On a GPU node: installs the kit's wheels like scripts/gpu_smoke.sh, then trains, exports, evaluates
# and reports. Exit 3 when a run stopped at its time limit (a 10-minute job slot): run it again.
# With --toy it runs on the CPU in this project's own environment (make setup).
set -euo pipefail
cd "$(dirname "$0")/.."
kit=gpu-kit target=.gpu-kit-site toy=0 rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --kit) kit="$2"; shift 2 ;;
    --target) target="$2"; shift 2 ;;
    --toy) toy=1; rest+=("$1"); shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) rest+=("$1"); shift ;;
  esac
done
if [ "$toy" = 1 ]; then
  py="${PYTHON:-.venv/bin/python}"
else
  . scripts/gpu_env.sh
  gpu_kit_env "$kit" "$target"
fi
exec "$py" -m olmo_scone.recipes.repro_gpu --kit "$kit" "${rest[@]}"
