#!/usr/bin/env python
"""CPU-scale reproduction study (`make repro-cpu`). See `--help` and olmo_scone/recipes/repro.py."""

from olmo_scone.errors import run_cli
from olmo_scone.recipes.repro import main

if __name__ == "__main__":
    run_cli(main)
