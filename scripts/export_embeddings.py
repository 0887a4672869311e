#!/usr/bin/env python
"""Export a trained SCONE checkpoint to a serving artifact. See olmo_scone/export.py."""

from olmo_scone.errors import run_cli
from olmo_scone.export import main

if __name__ == "__main__":
    run_cli(main)
