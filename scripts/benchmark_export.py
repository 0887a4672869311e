#!/usr/bin/env python
"""Export throughput (rows/s, achieved FLOP/s). See `--help` and olmo_scone/bench/export.py."""

from olmo_scone.bench.export import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
