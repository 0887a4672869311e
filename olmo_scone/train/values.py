"""Range checks of every numeric training key, before any process group exists.

OLMo's config types only say ``float`` or ``int``: ``optimizer.learning_rate=1e30``,
``optimizer.eps=0`` or ``scheduler.alpha_f=nan`` trained NaN losses to a ``finished.json``;
``n_heads=3`` at d 128, ``n_layers=0`` or ``embedding_size=100`` were tracebacks after the process
group started. Each key here has one rule; a value outside it is one error line naming the key,
the value and the rule, and nothing is read or written.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

from ..errors import fail

Rule = Tuple[str, Callable[[Any], bool], str, bool]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def positive(v) -> bool:
    return _finite(v) and v > 0


def non_negative(v) -> bool:
    return _finite(v) and v >= 0


def positive_int(v) -> bool:
    return _int(v) and v > 0


def non_negative_int(v) -> bool:
    return _int(v) and v >= 0


#: (key, test, what the value must be, None allowed)
RULES: Tuple[Rule, ...] = (
    ("optimizer.learning_rate", lambda v: _finite(v) and 0 < v <= 1, "a number in (0, 1]", False),
    ("optimizer.eps", lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)", False),
    ("optimizer.weight_decay", non_negative, "a finite number >= 0", False),
    (
        "optimizer.betas",
        lambda v: len(v) == 2 and all(_finite(b) and 0 <= b < 1 for b in v),
        "two numbers in [0, 1)",
        False,
    ),
    ("scheduler.t_warmup", non_negative, "a finite number >= 0", False),
    ("scheduler.t_max", positive, "a positive number", True),
    ("scheduler.alpha_f", lambda v: _finite(v) and 0 <= v <= 1, "a number in [0, 1]", False),
    ("scheduler.warmup_min_lr", non_negative, "a finite number >= 0", True),
    ("max_grad_norm", positive, "a positive number", True),
    ("time_limit", positive, "a positive number of seconds", True),
    ("save_interval", positive_int, "a positive number of steps", True),
    ("eval_interval", non_negative_int, "0 (off) or a number of steps", True),
    ("console_log_interval", non_negative_int, "0 (off) or a number of steps", False),
    ("seed", lambda v: _int(v) and 0 <= v < 2**32, "an integer in [0, 2^32)", False),
    ("global_train_batch_size", positive_int, "a positive integer", False),
    ("device_train_microbatch_size", positive_int, "a positive integer", False),
    ("device_eval_batch_size", positive_int, "a positive integer", False),
    ("model.d_model", positive_int, "a positive integer", False),
    ("model.n_heads", positive_int, "a positive integer", False),
    ("model.n_kv_heads", positive_int, "a positive integer", True),
    ("model.n_layers", positive_int, "a positive integer", False),
    ("model.mlp_ratio", positive_int, "a positive integer", False),
    ("model.mlp_hidden_size", positive_int, "a positive integer", True),
    ("model.max_sequence_length", lambda v: _int(v) and v >= 2, "an integer >= 2", False),
    ("model.vocab_size", positive_int, "a positive integer", False),
    ("model.embedding_size", positive_int, "a positive integer", True),
    ("model.init_std", positive, "a positive number", False),
    ("model.layer_norm_eps", lambda v: _finite(v) and 0 < v < 1, "a number in (0, 1)", True),
    ("model.attention_dropout", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)", False),
    ("model.residual_dropout", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)", False),
    ("model.embedding_dropout", lambda v: _finite(v) and 0 <= v < 1, "a number in [0, 1)", False),
    ("model.fgram.max_n", lambda v: _int(v) and v >= 2, "an integer >= 2", False),
    ("model.fgram.n_layers", positive_int, "a positive integer", False),
    ("model.fgram.n_heads", positive_int, "a positive integer", True),
    ("model.fgram.mlp_ratio", positive_int, "a positive integer", True),
    ("model.fgram.mlp_hidden_size", positive_int, "a positive integer", True),
)


def _get(cfg, key: str):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def check_values(cfg, world_size: Optional[int] = None) -> None:
    """Fail on the first key outside its rule, then on the relations between keys."""
    for key, test, what, optional in RULES:
        try:
            v = _get(cfg, key)
        except AttributeError:  # an OLMo version without that key
            continue
        if v is None and optional:
            continue
        try:
            ok = v is not None and test(v)
        except TypeError:
            ok = False
        if not ok:
            fail(f"{key} = {v!r}: must be {what}")
    m = cfg.model
    if m.d_model % m.n_heads:
        fail(f"model.d_model {m.d_model} is not a multiple of model.n_heads {m.n_heads}")
    if m.n_kv_heads is not None and m.n_heads % m.n_kv_heads:
        fail(f"model.n_heads {m.n_heads} is not a multiple of model.n_kv_heads {m.n_kv_heads}")
    if m.rope and (m.d_model // m.n_heads) % 2:
        fail(f"model.rope needs an even head size; d_model / n_heads = {m.d_model // m.n_heads}")
    if m.embedding_size is not None and m.embedding_size < m.vocab_size:
        fail(
            f"model.embedding_size {m.embedding_size} is smaller than model.vocab_size {m.vocab_size}"
        )
    for key in ("eos_token_id", "pad_token_id"):
        tid = getattr(m, key)
        if tid is not None and not (_int(tid) and 0 <= tid < m.vocab_size):
            fail(f"model.{key} = {tid!r}: must be a token id below model.vocab_size {m.vocab_size}")
    f = m.fgram
    heads = f.n_heads or m.n_heads
    if f.enabled and m.d_model % heads:
        fail(f"model.d_model {m.d_model} is not a multiple of model.fgram.n_heads {heads}")
    warmup, t_max = cfg.scheduler.t_warmup, cfg.scheduler.t_max
    if t_max is not None and warmup > t_max:
        fail(f"scheduler.t_warmup {warmup} is longer than scheduler.t_max {t_max}")
