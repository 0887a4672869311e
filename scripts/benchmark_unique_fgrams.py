#!/usr/bin/env python
"""Unique f-grams per training batch from real text, and A_fgram's training cost. See olmo_scone/bench/unique_fgrams.py."""

from olmo_scone.bench.unique_fgrams import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
