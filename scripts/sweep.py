#!/usr/bin/env python
"""Scaling sweeps (number of f-grams, size of A_fgram). See olmo_scone/recipes/sweeps.py."""

from olmo_scone.errors import run_cli
from olmo_scone.recipes.sweeps import main

if __name__ == "__main__":
    run_cli(main)
