#!/usr/bin/env python
"""The matcher's index at 100M f-grams: RAM vs memory-mapped. See `--help` and olmo_scone/bench/index.py."""

from olmo_scone.bench.index import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
