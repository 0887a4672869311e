"""Offloaded inference: the exported f-gram table in host RAM or memory-mapped (work in progress)."""
