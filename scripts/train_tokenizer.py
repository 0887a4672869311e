#!/usr/bin/env python
"""Train a byte-level BPE tokenizer of one's own. See `--help` and olmo_scone/data/train_tokenizer.py."""

from olmo_scone.data.train_tokenizer import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
