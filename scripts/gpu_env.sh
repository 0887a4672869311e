# Sourced by scripts/gpu_smoke.sh and scripts/repro_gpu.sh on a GPU node with the stock PyTorch image:
#   gpu_kit_env KIT TARGET
# installs the kit's wheels (make gpu-kit) once with `pip --no-index --no-deps` into TARGET (a folder
# of this checkout, never the image's site-packages) and puts TARGET, then this checkout, first on
# PYTHONPATH. Sets $py to the interpreter (PYTHON, default python3). Exit 2 with one line when the
# kit is missing.
gpu_kit_env() {
  local kit="$1" target="$2" stamp
  py="${PYTHON:-python3}"
  if [ ! -f "$kit/manifest.json" ]; then
    echo "error: $kit/manifest.json not found: run \`make gpu-kit\` where pip reaches the index and copy the folder" >&2
    exit 2
  fi
  stamp="$target/.kit-$(sha256sum "$kit/manifest.json" | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    rm -rf "$target"
    "$py" -m pip install -q --no-index --no-deps --target "$target" "$kit"/wheels/*.whl
    touch "$stamp"
  fi
  export PYTHONPATH="$PWD/$target:$PWD${PYTHONPATH:+:$PYTHONPATH}"
}
