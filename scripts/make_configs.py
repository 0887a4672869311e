#!/usr/bin/env python
"""Write configs/olmo/*.yaml from olmo_scone/recipes/model_configs.py (the single source of the paper's settings)."""

from pathlib import Path

from olmo_scone.atomic import atomic_write_text
from olmo_scone.recipes.model_configs import render_all, to_yaml

if __name__ == "__main__":
    out = Path(__file__).resolve().parents[1] / "configs" / "olmo"
    for name, cfg in render_all().items():
        atomic_write_text(out / f"{name}.yaml", to_yaml(name, cfg))
        print(out / f"{name}.yaml")
