#!/usr/bin/env python
"""Parameter, FLOP and table-size accounting of configs. See olmo_scone/accounting.py."""

from olmo_scone.errors import run_cli
from olmo_scone.recipes.model_summary import main

if __name__ == "__main__":
    run_cli(main)
