"""Offloaded inference: the exported f-gram table (table_format.py: sharded, checksummed, quantized)
in host RAM or memory-mapped from disk (table.py), the served forward with host matching and
prefetch (runtime.py), generation with a KV cache (generate.py), perplexity (evaluate.py) and the
command lines (cli.py)."""
