"""Configs load the OLMo way and reproduce the paper's parameter counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from olmo_scone.accounting import PAPER_PARAMS, account
from olmo_scone.config import SconeTrainConfig, load_config, load_model_config
from olmo_scone.recipes.model_configs import render_all, to_yaml
from olmo_scone.errors import SconeError

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "olmo"


def test_committed_configs_are_the_generated_ones():
    rendered = render_all()
    on_disk = {p.stem: p.read_text() for p in CONFIGS.glob("*.yaml")}
    assert set(on_disk) == set(rendered)
    for name, cfg in rendered.items():
        assert on_disk[name] == to_yaml(name, cfg), (
            f"{name}.yaml is stale: run scripts/make_configs.py"
        )


@pytest.mark.parametrize("name", sorted(render_all()))
def test_every_config_loads_with_olmo_loader(name):
    cfg = load_config(SconeTrainConfig, CONFIGS / f"{name}.yaml", ["seed=1"])
    assert cfg.seed == 1 and cfg.deepspeed.zero_stage == 1
    if name.startswith("scone"):
        assert cfg.model.fgram.enabled and cfg.data.fgram_tags
    if not name.startswith(("tiny", "gpt2", "scone-gpt2")):  # the paper's optimizer settings
        o, s = cfg.optimizer, cfg.scheduler
        assert (o.name, o.learning_rate, tuple(o.betas), o.weight_decay) == (
            "adamw",
            4e-4,
            (0.9, 0.95),
            0.1,
        )
        assert (s.name, s.t_warmup, cfg.max_grad_norm, cfg.global_train_batch_size) == (
            "cosine_with_warmup",
            2000,
            1.0,
            2048,
        )
        assert (cfg.precision, cfg.model.max_sequence_length, cfg.model.d_model) in {
            ("amp_bf16", 2048, 2048),
            ("amp_bf16", 2048, 2560),
        }


def test_unknown_keys_and_bad_overrides_are_errors(tmp_path):
    with pytest.raises(SconeError, match="not_a_key"):
        load_config(SconeTrainConfig, CONFIGS / "tiny-scone.yaml", ["model.fgram.not_a_key=3"])
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (CONFIGS / "tiny-baseline.yaml").read_text().replace("d_model: 128", "d_modle: 128")
    )
    with pytest.raises(SconeError, match="d_modle"):
        load_config(SconeTrainConfig, bad)
    with pytest.raises(SconeError, match="not of the form key=value"):
        load_config(SconeTrainConfig, CONFIGS / "tiny-scone.yaml", ["seed"])
    with pytest.raises(SconeError, match="config file not found"):
        load_config(SconeTrainConfig, tmp_path / "nope.yaml")


@pytest.mark.parametrize("name", sorted(PAPER_PARAMS))
def test_paper_parameter_counts_within_one_percent(name):
    a = account(load_model_config(CONFIGS / f"{name}.yaml"), name)
    assert abs(a.main_params - PAPER_PARAMS[name]) / PAPER_PARAMS[name] < 0.01
    assert (
        a.fgram_model_params == 0
        and a.inference_fwd_flops_per_token == a.training_fwd_flops_per_token
    )


def test_pinned_counts():
    """The exact figures (docs/model.md) so that an accidental architecture change shows up."""
    got = {
        n: account(load_model_config(CONFIGS / f"{n}.yaml"), n)
        for n in [
            "olmo-0.7b",
            "olmo-1b",
            "olmo-1.3b",
            "olmo-1.9b",
            "scone-1b-10m-a0.6b",
            "scone-1b-10m-a1.8b",
        ]
    }
    assert {n: a.main_params for n, a in got.items()} == {
        "olmo-0.7b": 711_520_256,
        "olmo-1b": 1_013_669_888,
        "olmo-1.3b": 1_315_819_520,
        "olmo-1.9b": 1_920_118_784,
        "scone-1b-10m-a0.6b": 1_013_669_888,
        "scone-1b-10m-a1.8b": 1_013_669_888,
    }
    s06, s18 = got["scone-1b-10m-a0.6b"], got["scone-1b-10m-a1.8b"]
    assert (s06.fgram_model_params, s18.fgram_model_params) == (604_313_600, 1_812_912_128)
    # OLMo's own FLOP count for the baseline, and SCONE's inference equals it
    from olmo.model import OLMo

    olmo_1b = OLMo(
        load_model_config(CONFIGS / "olmo-1b.yaml").update_with(init_device="meta"),
        init_params=False,
    )
    assert got["olmo-1b"].inference_fwd_flops_per_token == olmo_1b.num_fwd_flops == 2_114_895_872
    assert 0.59e9 < s06.fgram_model_params < 0.62e9 and 1.79e9 < s18.fgram_model_params < 1.83e9
    # SCONE's inference costs what its main model costs; the 10M table is 40.96 GB at 16 bits
    assert s06.inference_fwd_flops_per_token == got["olmo-1b"].inference_fwd_flops_per_token
    assert s06.table_gb == pytest.approx(40.96, abs=0.01)


def test_gpt2_size_setting():
    """GPT-2 small's main model (124.5M with the 50K vocabulary, tied) and SCONE's 1M f-grams on it."""
    base = account(load_model_config(CONFIGS / "gpt2-128m.yaml"), "gpt2-128m")
    scone = account(
        load_model_config(CONFIGS / "scone-gpt2-128m-1m.yaml"), "scone-gpt2-128m-1m", 1_000_000
    )
    assert 124e6 < base.main_params < 125.5e6 and scone.main_params == base.main_params
    assert scone.inference_fwd_flops_per_token == base.inference_fwd_flops_per_token
    assert 84e6 < scone.fgram_model_params < 86.5e6  # 12 GPT-2 blocks + 5 positions
    assert scone.table_gb == pytest.approx(
        1_000_000 * 768 * 2 / 1e9, rel=1e-6
    )  # 1M x 768 at 16 bits
    cfg = load_config(SconeTrainConfig, CONFIGS / "scone-gpt2-128m-1m.yaml")
    assert (cfg.model.max_sequence_length, cfg.precision, cfg.deepspeed.zero_stage) == (
        1024,
        "amp_bf16",
        1,
    )


def test_model_summary_script():
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "model_summary.py"),
            str(CONFIGS / "olmo-1b.yaml"),
            str(CONFIGS / "scone-1b-10m-a0.6b.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "olmo-1b: 1,013.7M parameters, paper 1,014M (-0.03%)" in proc.stdout
    assert "table 40.96 GB" in proc.stdout
    proc = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "model_summary.py"),
            str(CONFIGS / "olmo-1b.yaml"),
            "n_layers=3",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and "model overrides are written model.key=value" in proc.stderr


@pytest.fixture(scope="module")
def vocabularies(prepared):
    """Real f-gram vocabularies of 1K and 50K rows, counted from real text."""
    from olmo_scone.data.sources import open_token_files
    from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
    from olmo_scone.fgrams.vocab import FgramVocab

    files = open_token_files(str(prepared.root), "train")
    r = count_fgrams(
        [TokenSource(f.path, f.dtype, f.length) for f in files.files],
        50280,
        50279,
        1,
        CountSettings(num_fgrams=50_000, min_count=2, processes=1),
    )
    assert len(r.counts) == 50_000
    return {n: FgramVocab(r.tokens[:n], r.lengths[:n], r.counts[:n], {}) for n in (1_000, 50_000)}


def test_accelerator_bytes_of_the_fgram_branch_do_not_grow_with_the_vocabulary(vocabularies):
    """A SCONE model built by the training constructor with real vocabularies of 1K and 50K f-grams
    holds byte-for-byte the same parameters and buffers (nothing sized by S goes to the device), and
    the accounting (meta device, same constructor) reports that figure, at 10M, 100M and 1B too."""
    import torch

    from olmo_scone.accounting import fgram_branch_device_bytes
    from olmo_scone.config import FgramConfig, SconeModelConfig
    from olmo_scone.model import SconeOLMo

    def cfg():
        return SconeModelConfig(
            d_model=64,
            n_heads=4,
            n_layers=2,
            max_sequence_length=64,
            vocab_size=50280,
            embedding_size=50304,
            eos_token_id=50279,
            pad_token_id=1,
            init_device="cpu",
            fgram=FgramConfig(n_layers=2),
        )

    def all_bytes(m):
        return sum(t.numel() * t.element_size() for t in [*m.parameters(), *m.buffers()])

    models = {n: SconeOLMo(cfg(), fgram_vocab=v) for n, v in vocabularies.items()}
    assert len({all_bytes(m) for m in models.values()}) == 1
    branch = {n: fgram_branch_device_bytes(m) for n, m in models.items()}
    assert len(set(branch.values())) == 1 and branch[1_000] > 0
    # the same after .to(): nothing else is moved along with the model
    moved = SconeOLMo(cfg(), fgram_vocab=vocabularies[50_000]).to(torch.device("cpu"))
    assert all_bytes(moved) == all_bytes(models[1_000])
    for s in (1_000, 50_000, 10_000_000, 100_000_000, 1_000_000_000):
        assert account(cfg(), num_fgrams=s).fgram_device_bytes == branch[1_000]
    paper = {
        s: account(load_model_config(CONFIGS / f"scone-1b-{s}-a1.8b.yaml"))
        for s in ("10m", "100m", "1b")
    }
    assert len({a.fgram_device_bytes for a in paper.values()}) == 1
    assert (
        paper["1b"].fgram_device_bytes == 4 * paper["1b"].fgram_model_params
    )  # A_fgram's fp32 weights, nothing else
