#!/usr/bin/env python
"""See `--help` and olmo_scone/vllm_plugin/offline.py. Runs in .venv-serve (make serve-env)."""

from olmo_scone.errors import run_cli
from olmo_scone.vllm_plugin.offline import generate_main

if __name__ == "__main__":
    run_cli(generate_main)
