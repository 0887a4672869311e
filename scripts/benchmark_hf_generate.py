"""A decode step through transformers.generate against the project's own loop. See olmo_scone/bench/hf_generate.py."""

from olmo_scone.bench.hf_generate import main
from olmo_scone.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
