"""OLMo's training settings, translated into a DeepSpeed config (ZeRO stage 1 by default).

OLMo's keys keep their meaning: ``global_train_batch_size`` and ``device_train_microbatch_size``
(-> ``gradient_accumulation_steps`` for the world size), ``max_grad_norm`` (-> gradient
clipping), ``precision`` (``amp_bf16`` -> DeepSpeed bf16; ``fp32`` -> none). The optimizer and LR
schedule stay OLMo's (built from the same config, the LR set by the trainer every step).
``deepspeed.config_path`` names a JSON merged over the generated config for anything else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict

from ..config import SconeTrainConfig
from ..errors import fail


def _merge(base: Dict[str, Any], over: Dict[str, Any]) -> Dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def deepspeed_config(cfg: SconeTrainConfig, world_size: int) -> Dict[str, Any]:
    micro, glob = cfg.device_train_microbatch_size, cfg.global_train_batch_size
    if micro <= 0 or glob % (micro * world_size):
        fail(f"global_train_batch_size ({glob}) must be a multiple of device_train_microbatch_size ({micro}) "
             f"x world size ({world_size})")  # fmt: skip
    if cfg.precision not in (None, "fp32", "amp_bf16", "amp_fp16"):
        fail(f"precision {cfg.precision!r}: use fp32, amp_bf16 or amp_fp16")
    ds = cfg.deepspeed
    if ds.zero_stage not in (0, 1, 2):
        fail(f"deepspeed.zero_stage {ds.zero_stage}: this trainer supports 0, 1 and 2 (the paper uses 1)")
    out: Dict[str, Any] = {
        "train_batch_size": glob,
        "train_micro_batch_size_per_gpu": micro,
        "gradient_accumulation_steps": glob // (micro * world_size),
        "gradient_clipping": float(cfg.max_grad_norm or 0.0),
        "zero_optimization": {
            "stage": ds.zero_stage,
            "overlap_comm": ds.overlap_comm,
            "reduce_bucket_size": ds.reduce_bucket_size,
            "allgather_bucket_size": ds.allgather_bucket_size,
            "contiguous_gradients": ds.contiguous_gradients,
        },
        "bf16": {"enabled": cfg.precision == "amp_bf16"},
        "fp16": {"enabled": cfg.precision == "amp_fp16"},
        "zero_allow_untested_optimizer": True,  # OLMo's param groups with torch AdamW
        "steps_per_print": 10**12,
        "wall_clock_breakdown": False,
    }
    if ds.config_path:
        p = Path(ds.config_path)
        if not p.is_file():
            fail(f"deepspeed.config_path not found: {p}")
        try:
            out = _merge(out, json.loads(p.read_text()))
        except json.JSONDecodeError as e:
            fail(f"deepspeed.config_path {p} is not valid JSON ({e})")
    return out
