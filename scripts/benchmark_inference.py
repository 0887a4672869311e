#!/usr/bin/env python
"""Offloaded-inference benchmark (SCONE vs the same main model without). See `--help` and olmo_scone/bench/inference.py."""

from olmo_scone.bench.inference import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
