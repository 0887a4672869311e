#!/usr/bin/env python
"""Perplexity-vs-tokens curves of several runs in one PNG. See olmo_scone/plotting.py."""

from olmo_scone.errors import run_cli
from olmo_scone.plotting import main

if __name__ == "__main__":
    run_cli(main)
