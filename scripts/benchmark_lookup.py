#!/usr/bin/env python
"""A decode step's host lookup, numpy against compiled. See `--help` and olmo_scone/bench/lookup.py."""

from olmo_scone.bench.lookup import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
