"""The tiny CPU sweep's plan: one command per run, whatever state the run folders are in (the
trainer, not the sweep, decides whether a run is finished, interrupted or stale)."""

from __future__ import annotations

from olmo_scone.recipes.sweeps import TINY_FGRAMS, TINY_FGRAM_LAYERS, _tiny


def _save_folders(cmds):
    return [
        next(a.split("=", 1)[1] for a in c if a.startswith("save_folder="))
        for c in cmds
        if "scripts/train.py" in c
    ]


def test_the_plan_is_the_same_commands_whatever_the_folders_hold(tmp_path):
    root, data = tmp_path / "tiny-fgrams", tmp_path / "data"
    fresh = _tiny("fgrams", root, data, steps=60)
    folders = _save_folders(fresh)
    assert len(folders) == len(set(folders)) == 1 + len(TINY_FGRAMS)
    assert sum("build_fgrams.py" in " ".join(c) for c in fresh) == len(TINY_FGRAMS)
    assert not any("--resume" in c or "save_overwrite=true" in c for c in fresh)

    (root / "tiny-baseline").mkdir(parents=True)
    (root / "tiny-baseline" / "latest").write_text("step60")
    (root / "tiny-baseline" / "finished.json").write_text('{"step": 60}')
    assert _tiny("fgrams", root, data, steps=60) == fresh

    layers = _tiny("layers", root, data, steps=60)
    assert len(_save_folders(layers)) == 1 + len(TINY_FGRAM_LAYERS)
    assert (
        sum("build_fgrams.py" in " ".join(c) for c in layers) == 1
    )  # one vocabulary for the layer axis
