#!/usr/bin/env python
"""f-gram counting and matching benchmark. See `--help` and olmo_scone/bench/fgrams.py."""

from olmo_scone.bench.fgrams import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
