#!/usr/bin/env python
"""See `--help` and olmo_scone/fgrams/."""

from olmo_scone.errors import run_cli
from olmo_scone.fgrams.cli import tag_main

if __name__ == "__main__":
    run_cli(tag_main)
