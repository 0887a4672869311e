"""``torchrun ... scripts/train.py CONFIG [key=value ...] [--resume]``."""

from __future__ import annotations

import argparse
from typing import Optional, Sequence

from ..config import SconeTrainConfig, load_config


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="train.py", description="Train a SCONE or baseline OLMo model with DeepSpeed ZeRO.")
    p.add_argument("config", help="YAML config (configs/olmo/*.yaml)")
    p.add_argument("overrides", nargs="*", help="OLMo-style key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from save_folder/latest (same as load_path=latest)")
    a = p.parse_args(argv)
    cfg = load_config(SconeTrainConfig, a.config, a.overrides)
    from .trainer import SconeTrainer

    SconeTrainer(cfg, resume=a.resume).fit()
    return 0
