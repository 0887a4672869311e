"""OLMo's training settings, translated into a DeepSpeed config (ZeRO stage 1 by default).

OLMo's keys keep their meaning: ``global_train_batch_size`` and ``device_train_microbatch_size``
(-> ``gradient_accumulation_steps`` for the world size), ``max_grad_norm`` (-> gradient
clipping), ``precision`` (``amp_bf16`` -> DeepSpeed bf16; ``fp32`` -> none). The optimizer and LR
schedule stay OLMo's (built from the same config, the LR set by the trainer every step).
``deepspeed.config_path`` names a JSON merged over the generated config for anything else; a key
there that contradicts a setting the YAML owns (batch sizes, clipping, ZeRO stage, precision) is an
error naming both values, and the optimizer and scheduler (OLMo's, from the YAML) cannot be set
there at all. The final config is saved with the run (``save_folder/ds_config.json``) and in the
W&B run config.
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


#: DeepSpeed keys the YAML decides, with the YAML key a user changes instead
OWNED = {
    ("train_batch_size",): "global_train_batch_size",
    ("train_micro_batch_size_per_gpu",): "device_train_microbatch_size",
    (
        "gradient_accumulation_steps",
    ): "global_train_batch_size / (device_train_microbatch_size x world size)",
    ("gradient_clipping",): "max_grad_norm",
    ("zero_optimization", "stage"): "deepspeed.zero_stage",
    ("bf16", "enabled"): "precision",
    ("fp16", "enabled"): "precision",
}


def _get(d: Dict[str, Any], path) -> Any:
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return _MISSING
        d = d[k]
    return d


_MISSING = object()


def check_user_config(derived: Dict[str, Any], user: Dict[str, Any], source: Path) -> None:
    """A user JSON may add DeepSpeed settings, not silently override the YAML's."""
    for key in ("optimizer", "scheduler"):
        if key in user:
            fail(
                f"{source} sets DeepSpeed's {key!r}: this trainer builds OLMo's {key} from the YAML "
                f"({'optimizer.*' if key == 'optimizer' else 'scheduler.*'}); remove it there"
            )
    for path, yaml_key in OWNED.items():
        mine, theirs = _get(derived, path), _get(user, path)
        if theirs is not _MISSING and theirs != mine:
            fail(
                f"{source} sets {'.'.join(path)} = {theirs!r} but the YAML gives {mine!r} ({yaml_key}): change "
                "the YAML instead, or remove the key from the JSON"
            )


def deepspeed_config(cfg: SconeTrainConfig, world_size: int) -> Dict[str, Any]:
    for key in ("global_train_batch_size", "device_train_microbatch_size"):
        if not isinstance(getattr(cfg, key), int) or getattr(cfg, key) <= 0:
            fail(f"{key} must be a positive integer, got {getattr(cfg, key)!r}")
    micro, glob = cfg.device_train_microbatch_size, cfg.global_train_batch_size
    if glob % (micro * world_size):
        fail(
            f"global_train_batch_size ({glob}) must be a multiple of device_train_microbatch_size ({micro}) "
            f"x world size ({world_size})"
        )
    if cfg.precision not in (None, "fp32", "amp_bf16", "amp_fp16"):
        fail(f"precision {cfg.precision!r}: use fp32, amp_bf16 or amp_fp16")
    ds = cfg.deepspeed
    if ds.zero_stage not in (0, 1, 2):
        fail(
            f"deepspeed.zero_stage {ds.zero_stage}: this trainer supports 0, 1 and 2 (the paper uses 1)"
        )
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
            user = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            fail(f"deepspeed.config_path {p} is not valid JSON ({e})")
        if not isinstance(user, dict):
            fail(f"deepspeed.config_path {p} is not a JSON object")
        check_user_config(out, user, p)
        out = _merge(out, user)
    return out
