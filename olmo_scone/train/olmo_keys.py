"""Which of OLMo's ``TrainConfig`` keys this trainer honours, and refusing the others.

``SconeTrainConfig`` is OLMo's ``TrainConfig``, so every OLMo key loads; but this trainer is a
DeepSpeed loop, not OLMo's ``Trainer``, and many keys (FSDP, ``compile``, the speed monitor, data
loader workers, ...) would otherwise be accepted and silently ignored. A key outside
:data:`HONOURED` is refused, before any process starts, when its value differs from OLMo's default
(or from unset). docs/training.md lists both sets.
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, List, Tuple

from ..errors import fail

#: keys (or prefixes ending in ".") this trainer implements
HONOURED: Tuple[str, ...] = (
    "run_name",
    "seed",
    "model.",
    "tokenizer.identifier",
    "optimizer.name",
    "optimizer.learning_rate",
    "optimizer.weight_decay",
    "optimizer.betas",
    "optimizer.eps",
    "optimizer.decay_norm_and_bias",
    "optimizer.decay_embeddings",
    "optimizer.no_decay_norm_and_bias",
    "scheduler.name",
    "scheduler.t_warmup",
    "scheduler.t_max",
    "scheduler.alpha_f",
    "scheduler.warmup_min_lr",
    "data.tokens_dir",
    "data.fgram_tags",
    "data.paths",
    "save_folder",
    "save_interval",
    "save_overwrite",
    "save_num_checkpoints_to_keep",
    "load_path",
    "load_policy",
    "max_duration",
    "time_limit",
    "global_train_batch_size",
    "device_train_microbatch_size",
    "device_eval_batch_size",
    "precision",
    "max_grad_norm",
    "activation_checkpointing",
    "wandb.project",
    "wandb.entity",
    "wandb.group",
    "wandb.name",
    "wandb.tags",
    "evaluators",
    "eval_interval",
    "console_log_interval",
    "deepspeed.",
)

#: honoured keys whose value is nevertheless restricted (the trainer implements one meaning)
RESTRICTED = {
    # a run's own save_folder; other checkpoints: export/serve them instead
    "load_path": (None, "latest"),
    # DeepSpeed ZeRO (deepspeed.zero_stage), never OLMo's FSDP or DDP
    "distributed_strategy": (None,),
}


def _leaves(d: Any, prefix: str = "") -> Iterator[Tuple[str, Any]]:
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _leaves(v, f"{prefix}{k}.")
    else:
        yield prefix[:-1], d


def _lookup(d: Any, key: str) -> Any:
    for part in key.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


def _honoured(key: str) -> bool:
    return any(key == h or (h.endswith(".") and key.startswith(h)) for h in HONOURED)


def unsupported(cfg) -> List[Tuple[str, Any, Any]]:
    """``(key, value, OLMo's default)`` of every key set to something this trainer would ignore."""
    from olmo.config import WandbConfig
    from omegaconf import OmegaConf

    from ..config import SconeTrainConfig

    def plain(c) -> Dict:
        return OmegaConf.to_container(OmegaConf.structured(c), resolve=False, enum_to_str=True)

    reference = SconeTrainConfig.new()
    # unset by default; when set, its own defaults are what OLMo means
    reference.wandb = WandbConfig()
    mine, default = plain(cfg), plain(reference)
    out = []
    for key, value in _leaves(mine):
        if key in RESTRICTED and value not in RESTRICTED[key]:
            out.append((key, value, RESTRICTED[key]))
            continue
        section = _unset_section(key, default)
        # a section OLMo leaves unset (compile, ddp, ...): report it once, whole
        if section is not None:
            if not _honoured(section) and all(k != section for k, _, _ in out):
                out.append((section, _lookup(mine, section), None))
        elif not _honoured(key) and value is not None and value != _lookup(default, key):
            out.append((key, value, _lookup(default, key)))
    return out


def _unset_section(key: str, default: Dict) -> str | None:
    """The enclosing section of ``key`` that is None in OLMo's default config, if any."""
    parts = key.split(".")
    for i in range(1, len(parts)):
        if _lookup(default, ".".join(parts[:i])) is None:
            return ".".join(parts[:i])
    return None


def _shown(key: str, value: Any, default: Any) -> str:
    if key in RESTRICTED:
        allowed = " or ".join("null" if a is None else repr(a) for a in RESTRICTED[key])
        return f"{key} = {value!r} (allowed: {allowed})"
    return f"{key} = {value!r} (OLMo's default: {default!r})"


def refuse_unsupported(cfg) -> None:
    bad = unsupported(cfg)
    if bad:
        shown = "; ".join(_shown(k, v, d) for k, v, d in bad[:3])
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        fail(
            f"this DeepSpeed trainer does not implement {shown}{more}: remove them, or set them to OLMo's "
            "default (docs/training.md lists the keys it honours)"
        )
