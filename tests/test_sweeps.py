"""The tiny CPU sweep's plan: a re-run keeps finished runs and resumes interrupted ones."""

from __future__ import annotations

from pathlib import Path

from olmo_scone.sweeps import TINY_FGRAMS, _tiny


def _save_folders(cmds):
    return [next(a.split("=", 1)[1] for a in c if a.startswith("save_folder=")) for c in cmds if "scripts/train.py" in c]


def test_rerun_skips_finished_and_resumes_interrupted(tmp_path):
    root, data = tmp_path / "tiny-fgrams", tmp_path / "data"
    fresh = _tiny("fgrams", root, data, steps=60)
    folders = _save_folders(fresh)
    assert len(folders) == 1 + len(TINY_FGRAMS) and not any("--resume" in c for c in fresh)

    (root / "tiny-baseline").mkdir(parents=True)
    (root / "tiny-baseline" / "latest").write_text("step60")  # finished
    interrupted = Path(folders[2])
    interrupted.mkdir(parents=True)
    (interrupted / "latest").write_text("step20")

    again = _tiny("fgrams", root, data, steps=60)
    trains = [c for c in again if "scripts/train.py" in c]
    assert _save_folders(again) == folders[1:]  # the finished baseline is not trained again
    resumed = [c for c in trains if "--resume" in c]
    assert len(resumed) == 1 and f"save_folder={interrupted}" in resumed[0]
    # f-gram vocabularies and tags are still rebuilt by the plan (cheap; --overwrite is atomic)
    assert sum("build_fgrams.py" in " ".join(c) for c in again) == len(TINY_FGRAMS)
