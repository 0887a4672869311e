"""Every bad training value the adversarial pass tried: one ``error:`` line and exit 2 before any
process group starts, and nothing written (no save_folder). The CLI runs in this process, as
``scripts/train.py`` does (run_cli), on conftest's small real artifacts."""

from __future__ import annotations


import pytest
import torch.distributed as dist
from cli_helpers import TINY_SCONE, assert_clean_error, cli_run, train_overrides

from olmo_scone.train.cli import main as train_main

pytestmark = pytest.mark.slow

#: override -> what the error line must say
BAD_VALUES = {
    "optimizer.learning_rate=1e30": r"optimizer\.learning_rate = 1e\+30: must be a number in \(0, 1\]",
    "optimizer.learning_rate=nan": r"optimizer\.learning_rate = nan: must be",
    "optimizer.learning_rate=-1": r"optimizer\.learning_rate = -1(\.0)?: must be",
    "optimizer.eps=0": r"optimizer\.eps = 0(\.0)?: must be a number in \(0, 1\)",
    "optimizer.betas=[2,3]": r"optimizer\.betas = .*2.*3.*: must be two numbers in \[0, 1\)",
    "optimizer.weight_decay=-1": r"optimizer\.weight_decay = -1(\.0)?: must be a finite number >= 0",
    "scheduler.alpha_f=nan": r"scheduler\.alpha_f = nan: must be a number in \[0, 1\]",
    "scheduler.t_warmup=-5": r"scheduler\.t_warmup = -5: must be a finite number >= 0",
    "time_limit=-1": r"time_limit = -1(\.0)?: must be a positive number of seconds",
    "save_interval=-1": r"save_interval = -1: must be a positive number of steps",
    "seed=-1": r"seed = -1: must be an integer in \[0, 2\^32\)",
    "model.max_sequence_length=1": r"model\.max_sequence_length = 1: must be an integer >= 2",
    "model.max_sequence_length=0": r"model\.max_sequence_length = 0: must be an integer >= 2",
    "model.d_model=0": r"model\.d_model = 0: must be a positive integer",
    "model.d_model=-128": r"model\.d_model = -128: must be a positive integer",
    "model.n_heads=3": r"model\.d_model 128 is not a multiple of model\.n_heads 3",
    "model.n_layers=0": r"model\.n_layers = 0: must be a positive integer",
    "model.embedding_size=100": r"model\.embedding_size 100 is smaller than model\.vocab_size 50280",
    "model.init_std=nan": r"model\.init_std = nan: must be a positive number",
    "model.init_std=-1": r"model\.init_std = -1(\.0)?: must be a positive number",
    "model.fgram.n_heads=3": r"model\.d_model 128 is not a multiple of model\.fgram\.n_heads 3",
}


@pytest.mark.parametrize("override", sorted(BAD_VALUES))
def test_a_bad_training_value_is_one_line_before_any_process_group(override, art, tmp_path, capsys):
    folder = tmp_path / "run"
    argv = [TINY_SCONE, *train_overrides(art.tokens, art.vocab, art.tags, folder), override]
    assert_clean_error(cli_run(train_main, argv, capsys), BAD_VALUES[override])
    assert not dist.is_initialized()
    assert not folder.exists()


def test_the_shipped_configs_pass_the_value_checks():
    """The rules refuse nothing a real config uses (every YAML in configs/olmo)."""
    from pathlib import Path

    from olmo_scone.config import SconeTrainConfig, load_config
    from olmo_scone.train.values import check_values

    configs = sorted((Path(TINY_SCONE).parent).glob("*.yaml"))
    assert len(configs) > 10
    for path in configs:
        check_values(load_config(SconeTrainConfig, path))
