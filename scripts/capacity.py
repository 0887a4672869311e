#!/usr/bin/env python
"""The capacity-bound CPU study (`make repro-cpu-capacity`). See `--help` and olmo_scone/recipes/capacity.py."""

from olmo_scone.errors import run_cli
from olmo_scone.recipes.capacity import main

if __name__ == "__main__":
    run_cli(main)
