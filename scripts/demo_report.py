#!/usr/bin/env python
"""The last stage of `make demo`: evaluate + generate with both models, table and PNG. See olmo_scone/recipes/demo.py."""

from olmo_scone.recipes.demo import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
