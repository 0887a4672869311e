#!/usr/bin/env python
"""Host RAM to build the matcher's index, measured and extrapolated to 1B f-grams. See `--help` and olmo_scone/bench/matcher_build.py."""

from olmo_scone.bench.matcher_build import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
