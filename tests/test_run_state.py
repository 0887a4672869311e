"""The launch policy (train/run_state.py) on its own: every case of the decision table, no training."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from olmo_scone.errors import SconeError
from olmo_scone.train.run_state import FINISHED_FILE, RUN_FILE, fingerprint, plan_start

IDENTITY = {
    "model": {"d_model": 64, "fgram": {"n_layers": 2}},
    "seed": 7,
    "data": {"tokens_fingerprint": "aa", "vocab_sha256": "bb"},
}


def cfg(folder, **kw):
    return SimpleNamespace(
        **{"save_folder": str(folder), "save_overwrite": False, "load_policy": "refuse", **kw}
    )


def folder_with(tmp_path, identity=IDENTITY, finished_step=None, latest="step4"):
    f = tmp_path / "run"
    f.mkdir()
    (f / "latest").write_text(latest)
    # a published checkpoint: its files at the sizes its checkpoint.json records (train/publish.py)
    (f / latest).mkdir()
    (f / latest / "mp_rank_00_model_states.pt").write_bytes(b"x" * 10)
    (f / latest / "checkpoint.json").write_text(
        json.dumps({"files": {"mp_rank_00_model_states.pt": 10}, "world_size": 1})
    )
    (f / RUN_FILE).write_text(
        json.dumps({"fingerprint": fingerprint(identity), "identity": identity})
    )
    if finished_step is not None:
        (f / FINISHED_FILE).write_text(
            json.dumps({"step": finished_step, "fingerprint": fingerprint(identity)})
        )
    return f


def changed(path: str, value):
    ident = copy.deepcopy(IDENTITY)
    *parents, last = path.split(".")
    node = ident
    for p in parents:
        node = node[p]
    node[last] = value
    return ident


def test_an_empty_folder_starts_fresh_and_resume_needs_a_checkpoint(tmp_path):
    assert plan_start(cfg(tmp_path / "new"), IDENTITY, 10, resume=False).action == "fresh"
    with pytest.raises(SconeError, match="nothing to resume"):
        plan_start(cfg(tmp_path / "new"), IDENTITY, 10, resume=True)


def test_same_inputs(tmp_path):
    f = folder_with(tmp_path)
    assert (
        plan_start(cfg(f), IDENTITY, 10, resume=False).action == "resume"
    )  # interrupted: resumes unasked
    (f / FINISHED_FILE).write_text(json.dumps({"step": 10}))
    p = plan_start(cfg(f), IDENTITY, 10, resume=False)
    assert p.action == "done" and "nothing to do" in p.message
    p = plan_start(cfg(f), IDENTITY, 12, resume=False)
    assert (
        p.action == "resume"
        and "max_duration raised from 10 to 12 steps: continuing from step4" in p.message
    )
    with pytest.raises(SconeError, match=r"finished at step 10, past max_duration \(8 steps\)"):
        plan_start(cfg(f), IDENTITY, 8, resume=False)
    assert plan_start(cfg(f, load_policy="restart"), IDENTITY, 8, resume=False).action == "fresh"


@pytest.mark.parametrize(
    "path, value, named",
    [
        ("data.vocab_sha256", "cc", r"data\.vocab_sha256 'bb' -> 'cc'"),
        ("data.tokens_fingerprint", "zz", r"data\.tokens_fingerprint 'aa' -> 'zz'"),
        ("model.fgram.n_layers", 4, r"model\.fgram\.n_layers 2 -> 4"),
        ("seed", 8, r"seed 7 -> 8"),
    ],
)
def test_other_inputs_are_refused_or_restarted(tmp_path, path, value, named):
    f = folder_with(tmp_path, finished_step=10)
    with pytest.raises(SconeError, match=named):
        plan_start(cfg(f), changed(path, value), 10, resume=False)
    with pytest.raises(SconeError, match=named):  # an explicit --resume does not override it either
        plan_start(cfg(f, load_policy="restart"), changed(path, value), 10, resume=True)
    p = plan_start(cfg(f, load_policy="restart"), changed(path, value), 10, resume=False)
    assert p.action == "fresh" and "starting over" in p.message


def test_a_checkpoint_without_a_run_record_is_refused_unless_overwritten(tmp_path):
    f = folder_with(tmp_path)
    (f / RUN_FILE).unlink()
    with pytest.raises(SconeError, match="records no run.json"):
        plan_start(cfg(f), IDENTITY, 10, resume=False)
    assert plan_start(cfg(f, save_overwrite=True), IDENTITY, 10, resume=False).action == "fresh"
    (f / RUN_FILE).write_text("{not json")
    with pytest.raises(SconeError, match="unreadable or corrupt"):
        plan_start(cfg(f), IDENTITY, 10, resume=False)


def test_max_duration_in_steps_tokens_and_epochs():
    """OLMo's three forms; epochs count whole instances of the train files (a tail shorter than
    one sequence is no instance)."""
    import numpy as np

    from olmo_scone.config import SconeTrainConfig
    from olmo_scone.data.sources import TokenFile, TokenFiles
    from olmo_scone.train.trainer import max_steps

    c = SconeTrainConfig.new()
    c.global_train_batch_size, c.model.max_sequence_length = 8, 64
    files = TokenFiles(
        [
            TokenFile(Path("a.npy"), np.dtype(np.uint16), 64 * 100 + 63, "train", "a.npy"),
            TokenFile(Path("b.npy"), np.dtype(np.uint16), 64 * 30, "train", "b.npy"),
        ],
        {},
        None,
        None,
    )
    want = {"100": 100, "5120T": 10, "5119T": 9, "1ep": 16, "2ep": 32, "0.5ep": 8}
    got = {}
    for d in want:
        c.max_duration = d
        got[d] = max_steps(c, files)
    assert got == want
