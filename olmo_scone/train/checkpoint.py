"""Reading DeepSpeed checkpoints without running code from them.

A DeepSpeed checkpoint is a set of ``torch.save`` pickles. DeepSpeed 0.18 reads them with
``torch.load(..., weights_only=False)`` (its ``TorchCheckpointEngine`` and ``zero_to_fp32``), which
executes whatever a crafted pickle asks for. Researchers pass checkpoints around, so every read
here goes through PyTorch's restricted unpickler (``weights_only=True``) with an explicit allowlist
of the few non-tensor types DeepSpeed's ZeRO-1/2 checkpoints hold (:data:`SAFE_GLOBALS`, listed in
docs/training.md). Anything else in a pickle is refused with one line, before any work starts
(:func:`check_checkpoint`, which only reads the pickle's opcodes) and again at load time
(:func:`weights_only_loading`, which makes every ``torch.load`` DeepSpeed calls a restricted one).

This module is also where a trained model is rebuilt from a save_folder
(:func:`load_trained_model`), for export and for serving a baseline, so that neither imports the
other.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import pickle
import re
import zipfile
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import torch

from ..errors import fail

#: ``module.name`` of every non-tensor global a checkpoint of this trainer may reference. Tensors,
#: ``torch.Size``, dicts, lists, tuples, sets, ``OrderedDict`` and plain numbers/strings are allowed
#: by PyTorch's restricted unpickler already.
SAFE_GLOBALS: Tuple[str, ...] = (
    # the numpy RNG state in the trainer's client state (np.random.get_state(): a uint32 array)
    "numpy.core.multiarray._reconstruct",
    "numpy.ndarray",
    "numpy.dtype",
    # DeepSpeed ZeRO-1/2 optimizer states
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
)


def _resolve(qualname: str):
    module, _, name = qualname.rpartition(".")
    return getattr(importlib.import_module(module), name)


@functools.lru_cache(maxsize=None)
def _allowed_objects() -> tuple:
    """The allowlist as objects, plus numpy's per-dtype classes (``numpy.dtypes.UInt32DType`` is
    what a dtype pickles as on numpy >= 1.25); ``(obj, name)`` pairs keep the names numpy 2's
    ``numpy._core`` module moves would otherwise change."""
    import numpy as np

    objs = []
    for q in SAFE_GLOBALS:
        try:
            objs.append((_resolve(q), q))
        except (ImportError, AttributeError):  # numpy 2 has numpy._core; DeepSpeed may drop a class
            pass
    if hasattr(np, "dtypes"):
        objs.extend(
            (getattr(np.dtypes, n), f"numpy.dtypes.{n}")
            for n in dir(np.dtypes)
            if n.endswith("DType")
        )
    # numpy 2 layout
    if not hasattr(np, "core") or not hasattr(np.core, "multiarray"):  # pragma: no cover
        objs.append((np._core.multiarray._reconstruct, "numpy._core.multiarray._reconstruct"))
    return tuple(objs)


def _allowed_names() -> set:
    return {name for _, name in _allowed_objects()} | {"numpy._core.multiarray._reconstruct"}


def _refusal(path: Path, names: List[str]) -> str:
    return (
        f"refused to load {path}: its pickle references {', '.join(names[:3])}, which a checkpoint of this "
        "trainer never holds (it could run code when loaded); only tensors and the types listed in "
        "docs/training.md#safe-checkpoint-loading are read"
    )


def check_pickle_file(path: Path) -> None:
    """Refuse a ``torch.save`` file that is truncated, not a zip checkpoint, or references a global
    outside the allowlist. Reads only the pickle's opcodes: nothing in it runs."""
    try:
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (
        zipfile.BadZipFile,
        RuntimeError,
        ValueError,
        EOFError,
        OSError,
        pickle.UnpicklingError,
    ) as e:
        fail(
            f"{path} is truncated or is not a PyTorch checkpoint ({type(e).__name__}); re-copy it or save it again"
        )
    bad = sorted(set(unsafe) - _allowed_names())
    if bad:
        fail(_refusal(path, bad))


def checkpoint_tag(save_folder: str | Path, tag: Optional[str] = None) -> str:
    """The tag to read, checked to exist as a folder: the one given, else ``latest``'s when that
    checkpoint is complete, else the newest complete one (publish.py; said on stderr)."""
    import sys

    from .publish import read_latest, resumable_tag

    folder = Path(save_folder)
    if tag is None:
        if read_latest(folder) is None and not any(folder.glob("step*")):
            fail(f"{folder} has no checkpoint (no 'latest' file)")
        tag, note = resumable_tag(folder)
        if tag is None:
            fail(note or f"{folder} has no complete checkpoint")
        if note:
            print(note, file=sys.stderr, flush=True)
    if not tag or "/" in tag or tag in (".", ".."):
        fail(f"{folder}: checkpoint tag {tag!r} is not a folder name")
    if not (folder / tag).is_dir():
        have = sorted(p.name for p in folder.iterdir() if p.is_dir() and any(p.glob("*.pt")))
        fail(f"{folder}: checkpoint {tag!r} does not exist (there: {', '.join(have) or 'none'})")
    return tag


def check_checkpoint(save_folder: str | Path, tag: Optional[str] = None) -> str:
    """Check every file of a checkpoint before anything loads it; returns its tag."""
    tag = checkpoint_tag(save_folder, tag)
    files = sorted((Path(save_folder) / tag).glob("*.pt"))
    if not any(f.name.endswith("_model_states.pt") for f in files):
        fail(
            f"{Path(save_folder) / tag} holds no *_model_states.pt: not a DeepSpeed checkpoint, or a partial copy"
        )
    for f in files:
        check_pickle_file(f)
    return tag


def _restricted_load(
    original, f, map_location=None, pickle_module=None, *, weights_only=None, **kwargs
):
    """``torch.load`` as DeepSpeed calls it, but always restricted to tensors and the allowlist."""
    with torch.serialization.safe_globals(list(_allowed_objects())):
        try:
            return original(f, map_location=map_location, weights_only=True, **kwargs)
        except pickle.UnpicklingError as e:
            found = re.findall(r"GLOBAL ([\w.]+)", str(e))
            fail(_refusal(Path(str(f)), found or ["an object outside the allowlist"]))
        except (zipfile.BadZipFile, EOFError) as e:
            fail(f"{f} is truncated or is not a PyTorch checkpoint ({type(e).__name__})")


@contextlib.contextmanager
def weights_only_loading() -> Iterator[None]:
    """Within this block every ``torch.load`` (DeepSpeed's included) is a restricted one.

    DeepSpeed's checkpoint engine and ``zero_to_fp32`` call ``torch.load`` through the ``torch``
    module, so replacing the attribute for the duration of a load covers every path they take,
    including ones a later DeepSpeed adds."""
    original = torch.load
    torch.load = functools.partial(_restricted_load, original)
    try:
        yield
    finally:
        torch.load = original


def fp32_state_dict(save_folder: str | Path, tag: Optional[str] = None) -> dict:
    """The fp32 master weights of a ZeRO checkpoint (DeepSpeed's ``zero_to_fp32``), read safely."""
    from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint

    tag = check_checkpoint(save_folder, tag)
    with weights_only_loading():
        return get_fp32_state_dict_from_zero_checkpoint(str(save_folder), tag=tag)


def load_trained_model(save_folder: str | Path, tag: Optional[str] = None, device: str = "cpu"):
    """(config, SconeOLMo with the checkpoint's fp32 weights) from a trainer's save_folder."""
    from ..config import load_run_config
    from ..model import SconeOLMo

    folder = Path(save_folder)
    cfg = load_run_config(folder)
    state = fp32_state_dict(folder, tag)
    cfg.model.init_device = device
    model = SconeOLMo(cfg.model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        fail(
            f"checkpoint in {folder} does not fit its config: missing {missing[:3]}, unexpected {unexpected[:3]}"
        )
    return cfg, model.eval()
