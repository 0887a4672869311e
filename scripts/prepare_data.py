#!/usr/bin/env python
"""Tokenize documents into OLMo memmap token files. See `--help` and olmo_scone/data/."""

from olmo_scone.data.cli import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
