#!/usr/bin/env python
"""See `--help` and olmo_scone/serving/. Works on SCONE serving artifacts and baseline checkpoints alike."""

from olmo_scone.errors import run_cli
from olmo_scone.serving.cli import evaluate_main

if __name__ == "__main__":
    run_cli(evaluate_main)
