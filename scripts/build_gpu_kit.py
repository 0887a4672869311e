#!/usr/bin/env python
"""See `--help` and olmo_scone/gpu_kit/build.py."""

from olmo_scone.errors import run_cli
from olmo_scone.gpu_kit.build import main

if __name__ == "__main__":
    run_cli(main)
