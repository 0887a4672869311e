#!/usr/bin/env python
"""CPU training step with/without the allocator tuning. See `--help` and olmo_scone/bench/train_step.py."""

from olmo_scone.bench.train_step import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
