#!/usr/bin/env python
"""See `--help` and olmo_scone/bench/vllm.py (needs `make serve-env`)."""

from olmo_scone.bench.vllm import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
