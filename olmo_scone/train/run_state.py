"""Whether a launch starts, resumes, continues or does nothing: one policy, owned by the trainer.

A run's identity is a fingerprint of what determines its trained weights: the model, optimizer,
scheduler, precision, clipping, ZeRO stage, seed, batch sizes and data (the token directory's
fingerprint, the f-gram vocabulary's sha256). Logging, evaluation, saving and W&B settings are not
part of it, and neither is ``max_duration``, which may grow. Rank 0 records the fingerprint when a
run starts (``run.json``) and writes ``finished.json`` after its final checkpoint. On launch:

* finished, same fingerprint, same length → nothing to do (exit 0);
* finished, same fingerprint, ``max_duration`` raised → continue from the last checkpoint;
* a checkpoint, same fingerprint → resume (``--resume`` / ``load_path=latest`` say so explicitly);
* a checkpoint of a different run, or of a run that predates ``run.json``, or a finished run past
  the new ``max_duration`` → one error line naming what differs, unless ``load_policy: restart``
  (or OLMo's ``save_overwrite``) starts it over.

As OLMo-core's load strategy and torchtitan's checkpointer do, this makes relaunching a finished
run a no-op, so drivers (the Makefile, sweeps, the study) just run the command.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import fail

RUN_FILE = "run.json"
FINISHED_FILE = "finished.json"
LOAD_POLICIES = ("refuse", "restart")


@dataclasses.dataclass
class StartPlan:
    action: str  # "fresh" | "resume" | "done"
    message: str = ""
    #: the checkpoint a resume loads (``latest``'s, or the newest complete one: publish.py)
    tag: Optional[str] = None

    @property
    def resume(self) -> bool:
        return self.action == "resume"


def run_identity(cfg, data_fingerprint: str, vocab_sha256: Optional[str]) -> Dict[str, Any]:
    """The settings that determine the trained weights, as plain JSON values."""
    from omegaconf import OmegaConf

    def plain(section) -> Any:
        return OmegaConf.to_container(OmegaConf.structured(section), resolve=True)

    model = plain(cfg.model)
    model.pop("init_device", None)  # where the weights are built, not what they are
    fgram = model.get("fgram") or {}
    # the vocabulary counts by content (vocab_sha256), not by path; num_fgrams is read from it (a
    # run's saved config.yaml holds it, the YAML it was launched from may not)
    fgram.pop("vocab_path", None)
    fgram.pop("num_fgrams", None)
    ds = plain(cfg.deepspeed)
    ds.pop(
        "config_path", None
    )  # its content reaches the fingerprint through the settings it must agree with
    identity = {
        "model": model,
        "optimizer": plain(cfg.optimizer),
        "scheduler": plain(cfg.scheduler),
        "precision": cfg.precision,
        "max_grad_norm": cfg.max_grad_norm,
        "max_grad_norm_ratio": cfg.max_grad_norm_ratio,
        "deepspeed": ds,
        "seed": cfg.seed,
        "global_train_batch_size": cfg.global_train_batch_size,
        "device_train_microbatch_size": cfg.device_train_microbatch_size,
        "data": {"tokens_fingerprint": data_fingerprint, "vocab_sha256": vocab_sha256},
    }
    return json.loads(
        json.dumps(identity, default=str)
    )  # as run.json will hold it (tuples become lists)


def fingerprint(identity: Dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()


def _differences(old: Dict[str, Any], new: Dict[str, Any], prefix: str = "") -> list:
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key} {a!r} -> {b!r}")
    return out


def _read(path: Path) -> Optional[Dict[str, Any]]:
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, json.JSONDecodeError):
        fail(f"{path} is unreadable or corrupt; remove it (or the save_folder) to start over")


def plan_start(cfg, identity: Dict[str, Any], max_steps: int, resume: bool) -> StartPlan:
    """What this launch does with ``cfg.save_folder`` (see the module docstring)."""
    if cfg.load_policy not in LOAD_POLICIES:
        fail(f"load_policy {cfg.load_policy!r}: expected one of {', '.join(LOAD_POLICIES)}")
    from .publish import read_latest, remove_staging, resumable_tag

    folder = Path(cfg.save_folder)
    want = fingerprint(identity)
    if cfg.save_overwrite and not resume:
        return StartPlan("fresh", "save_overwrite=true: starting over")
    rank0 = os.environ.get("RANK", "0") == "0"
    if rank0:
        remove_staging(folder)  # a killed save's leftovers (rank 0 holds the folder's lock)
    tag, note = resumable_tag(folder)
    if tag is None:
        if read_latest(folder) is not None and note:
            # 'latest' names a checkpoint that is not whole, and there is no other to fall back to
            if cfg.load_policy == "restart" and not resume:
                return StartPlan("fresh", f"{note}: starting over (load_policy=restart)")
            fail(f"{note}; use another save_folder, or load_policy=restart to start it over")
        if resume:
            fail(f"nothing to resume: {folder} holds no checkpoint")
        return StartPlan("fresh")
    if note and rank0:
        print(note, flush=True)
    run = _read(folder / RUN_FILE)
    finished = _read(folder / FINISHED_FILE)
    if run is None or run.get("fingerprint") != want:
        changed = (
            _differences(run["identity"], identity)
            if run
            else ["(this checkpoint records no run.json)"]
        )
        if cfg.load_policy == "restart" and not resume:
            return StartPlan(
                "fresh",
                f"{folder} held another run ({'; '.join(changed[:3])}): starting over (load_policy=restart)",
            )
        fail(
            f"save_folder {folder} holds a run made from other inputs ({'; '.join(changed[:4])}"
            f"{'; ...' if len(changed) > 4 else ''}): use another save_folder, or load_policy=restart to start it over"
        )
    if finished is not None:
        if max_steps == finished["step"]:
            return StartPlan(
                "done",
                f"{folder} already finished step {finished['step']} of this run: nothing to do",
            )
        if max_steps < finished["step"]:
            if cfg.load_policy == "restart" and not resume:
                return StartPlan(
                    "fresh",
                    f"{folder} finished at step {finished['step']}, past max_duration: starting over (load_policy=restart)",
                )
            fail(
                f"{folder} finished at step {finished['step']}, past max_duration ({max_steps} steps): raise "
                "max_duration to continue it, or use another save_folder"
            )
        return StartPlan(
            "resume",
            f"max_duration raised from {finished['step']} to {max_steps} steps: continuing from {tag}",
            tag,
        )
    return StartPlan("resume", f"resuming {folder} from {tag}", tag)


def record_start(cfg, identity: Dict[str, Any]) -> None:
    """Rank 0, on a fresh start: the previous run's record and pointers go, this run's is written."""
    from ..atomic import atomic_write_json

    import shutil

    from .publish import published_steps, remove_staging

    folder = Path(cfg.save_folder)
    for stale in (FINISHED_FILE, "latest", "metrics.jsonl"):
        (folder / stale).unlink(missing_ok=True)
    # the old run's checkpoints too: pruning and the fallback to the newest complete checkpoint
    # must only ever see this run's
    for _, tag in published_steps(folder):
        shutil.rmtree(folder / tag)
    remove_staging(folder)
    atomic_write_json(
        folder / RUN_FILE,
        {
            "fingerprint": fingerprint(identity),
            "identity": identity,
            "started": time.time(),
            # this run's own W&B id: a resume continues it, another save_folder (or a restart) gets its own
            "wandb_id": new_wandb_id(),
        },
    )


def new_wandb_id() -> str:
    """8 random characters from W&B's alphabet (lower-case letters and digits), as wandb makes them."""
    import secrets
    import string

    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


def wandb_id(folder: Path) -> str:
    """The W&B id recorded for the run in ``folder`` (one is added to a run.json from before ids)."""
    from ..atomic import atomic_write_json

    run = _read(Path(folder) / RUN_FILE) or {}
    if not run.get("wandb_id"):
        run["wandb_id"] = new_wandb_id()
        atomic_write_json(Path(folder) / RUN_FILE, run)
    return run["wandb_id"]


def record_finish(cfg, step: int) -> None:
    """Rank 0, after the final checkpoint."""
    from ..atomic import atomic_write_json

    folder = Path(cfg.save_folder)
    run = _read(folder / RUN_FILE) or {}
    atomic_write_json(
        folder / FINISHED_FILE,
        {
            "step": step,
            "max_duration": str(cfg.max_duration),
            "fingerprint": run.get("fingerprint"),
            "finished": time.time(),
        },
    )
