#!/usr/bin/env python
"""Train with DeepSpeed ZeRO under torchrun. See `--help` and olmo_scone/train/."""

from olmo_scone.errors import run_cli
from olmo_scone.train.cli import main

if __name__ == "__main__":
    run_cli(main)
