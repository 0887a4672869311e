"""The reproduction study is the one the issue asks for: sizes checked on real modules, commands valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from olmo_scone.accounting import account
from olmo_scone.config import SconeTrainConfig, load_config
from olmo_scone.repro import runs, train_command

REPO = Path(__file__).resolve().parents[1]


def _model(r, tmp_path):
    cfg_file, args = train_command(tmp_path, tmp_path / "data", 10, r)
    cfg = load_config(SconeTrainConfig, REPO / cfg_file, args)
    cfg.model.init_device = "meta"
    return cfg, account(cfg.model, r["name"], r["fgrams"] or None)


def test_study_axes_and_sizes(tmp_path):
    rs = {r["name"]: r for r in runs()}
    assert {"baseline-m", "baseline-2m"} <= set(rs)
    assert len({r["fgrams"] for r in rs.values() if r["fgrams"] and r["a"] == "1x"}) >= 3
    assert {r["a"] for r in rs.values() if r["fgrams"] == 200_000} == {"0.5x", "1x", "2x"}
    _, m = _model(rs["baseline-m"], tmp_path)
    _, m2 = _model(rs["baseline-2m"], tmp_path)
    assert m2.main_non_embedding_params / m.main_non_embedding_params == pytest.approx(2.0, rel=0.1)
    for name, r in rs.items():
        cfg, acc = _model(r, tmp_path)
        assert cfg.seed == 6198 and cfg.max_duration == 10
        if r["fgrams"]:
            # SCONE-m: the same main model as baseline-m (resident parameters, inference FLOPs)
            assert acc.main_params == m.main_params and acc.inference_fwd_flops_per_token == m.inference_fwd_flops_per_token
            ratio = float(r["a"][:-1])
            assert acc.fgram_model_params / m.main_non_embedding_params == pytest.approx(ratio, rel=0.15), name
            assert cfg.model.fgram.vocab_path.endswith(f"fgrams-{r['fgrams'] // 1000}k.safetensors")
    # baseline-2m costs about twice the non-embedding FLOPs of SCONE-m at inference
    assert m2.inference_fwd_flops_per_token > 1.6 * m.inference_fwd_flops_per_token
