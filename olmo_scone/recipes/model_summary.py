"""``scripts/model_summary.py CONFIG... [model.key=value ...]``: parameters, FLOPs, table size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from ..errors import ArgumentParser
from ..accounting import account, paper_check, summary_table, to_dict
from ..config import load_model_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="model_summary.py", description=__doc__)
    p.add_argument(
        "configs",
        nargs="+",
        help="YAML configs (configs/olmo/*.yaml), then optional key=value overrides",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    a = p.parse_args(argv)
    paths = [c for c in a.configs if "=" not in c]
    overrides = [c for c in a.configs if "=" in c]
    rows = [account(load_model_config(path, overrides), name=Path(path).stem) for path in paths]
    if a.json:
        print(json.dumps([to_dict(r) for r in rows], indent=2))
        return 0
    print(summary_table(rows))
    for line in paper_check(rows):
        print(line)
    return 0
