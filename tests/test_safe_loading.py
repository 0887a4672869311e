"""A checkpoint someone hands you must never run code: every entry point that reads a DeepSpeed
checkpoint refuses a crafted pickle with one line, and the pickle's payload never runs."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_helpers import assert_clean_error, single_rank_env
from omegaconf import OmegaConf

from olmo_scone.config import SconeTrainConfig, load_config
from olmo_scone.errors import SconeError
from olmo_scone.train.checkpoint import check_pickle_file, weights_only_loading

REPO = Path(__file__).resolve().parents[1]


class _Payload:
    """Unpickling this creates ``marker``: what a crafted checkpoint would do with a shell command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _crafted_folder(root: Path, tokens_dir: Path, legacy: bool = False) -> tuple[Path, Path]:
    """A save_folder that looks like an interrupted baseline run whose model states are a crafted pickle."""
    folder, marker = root / "run", root / "PAYLOAD_RAN"
    cfg = load_config(
        SconeTrainConfig,
        REPO / "configs" / "olmo" / "tiny-baseline.yaml",
        [f"data.tokens_dir={tokens_dir}", f"save_folder={folder}", "wandb=null", "evaluators=[]"],
    )
    (folder / "step2").mkdir(parents=True)
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.structured(cfg)))
    (folder / "latest").write_text("step2")
    # the run record of this very config and data, so a relaunch resumes (and reads the checkpoint)
    from olmo_scone.data.manifest import load_manifest
    from olmo_scone.train.run_state import RUN_FILE, fingerprint, run_identity

    identity = run_identity(cfg, load_manifest(tokens_dir).data["fingerprint"], None)
    (folder / RUN_FILE).write_text(
        json.dumps({"fingerprint": fingerprint(identity), "identity": identity})
    )
    evil = {"module": _Payload(marker), "buffer_names": []}
    target = folder / "step2" / "mp_rank_00_model_states.pt"
    if legacy:  # the pre-zip torch.save format: a bare pickle
        target.write_bytes(pickle.dumps(evil))
    else:
        torch.save(evil, target)
    return folder, marker


def _run(script: str, *args: str) -> subprocess.CompletedProcess:
    env = single_rank_env()
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


ENTRY_POINTS = {
    "export": lambda folder, tmp: (
        "export_embeddings.py",
        str(folder),
        "--out",
        str(tmp / "served"),
    ),
    "evaluate": lambda folder, tmp: ("evaluate.py", str(folder), "--text", str(REPO / "README.md")),
    "generate": lambda folder, tmp: ("generate.py", str(folder), "--prompt", "Hello"),
    "train-resume": lambda folder, tmp: ("train.py", str(folder / "config.yaml"), "--resume"),
}


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-pickle"])
@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
def test_crafted_checkpoint_is_refused_and_never_runs(entry, legacy, prepared, tmp_path):
    folder, marker = _crafted_folder(tmp_path, prepared.root, legacy)
    proc = _run(*ENTRY_POINTS[entry](folder, tmp_path))
    assert not marker.exists(), f"{entry}: the crafted pickle ran"
    assert_clean_error(
        proc, r"refused to load .*posix\.system|is truncated or is not a PyTorch checkpoint"
    )
    assert not (tmp_path / "served").exists()


def test_restricted_loader_refuses_at_load_time_too(tmp_path):
    """The pre-check reads opcodes; the load itself is restricted as well (DeepSpeed's torch.load)."""
    marker = tmp_path / "PAYLOAD_RAN"
    path = tmp_path / "model_states.pt"
    original = torch.load
    torch.save({"module": _Payload(marker)}, path)
    with pytest.raises(SconeError, match=r"refused to load .*posix\.system"):
        with weights_only_loading():
            torch.load(str(path), map_location="cpu", weights_only=False)  # what DeepSpeed asks for
    assert not marker.exists()
    assert torch.load is original  # restored on the way out, even after a refusal


def test_allowlisted_types_load(tmp_path):
    """What the trainer's checkpoints really hold (numpy RNG state, DeepSpeed's enums and loss
    scaler) passes both the pre-check and the restricted load, with values intact."""
    import numpy as np
    from deepspeed.runtime.fp16.loss_scaler import LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum

    state = {
        "rng": np.random.RandomState(3).get_state(),
        "stage": ZeroStageEnum.optimizer_states,
        "scaler": LossScaler(1.0),
        "w": torch.arange(4.0),
    }
    path = tmp_path / "ok.pt"
    torch.save(state, path)
    check_pickle_file(path)
    with weights_only_loading():
        back = torch.load(str(path), map_location="cpu", weights_only=False)
    assert back["stage"] == ZeroStageEnum.optimizer_states and back["scaler"].cur_scale == 1.0
    assert np.array_equal(back["rng"][1], state["rng"][1]) and torch.equal(back["w"], state["w"])
