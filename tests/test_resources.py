"""Bounded inputs: process counts capped at the CPUs this process may use, a batch checked against
the memory available before any work."""

from __future__ import annotations

import os

import pytest
from cli_helpers import assert_clean_error, cli_run

from olmo_scone.errors import run_cli
from olmo_scone.fgrams.cli import build_main
from olmo_scone.fgrams.vocab import load_vocab
from olmo_scone.resources import cap_processes, usable_cpus
from olmo_scone.serving.cli import evaluate_main


def test_process_counts_are_capped_at_the_usable_cpus(capsys):
    cpus = len(os.sched_getaffinity(0))
    assert usable_cpus() == cpus
    assert cap_processes(0) == cpus and cap_processes(1) == 1
    assert cap_processes(100_000) == cpus
    assert (
        f"--processes 100000 is more than the {cpus} CPU(s) here; using {cpus}"
        in capsys.readouterr().err
    )


@pytest.mark.slow
def test_build_with_absurd_processes_runs_on_the_cpus_there_are(art, tmp_path, capsys):
    """Was: ~3,500 forked workers and 22.5 of 24 GB before it was stopped."""
    out = tmp_path / "v.safetensors"
    with pytest.raises(SystemExit) as e:
        run_cli(
            build_main,
            [
                "--tokens",
                str(art.tokens),
                "--num-fgrams",
                "100",
                "--processes",
                "100000",
                "--out",
                str(out),
            ],
        )
    err = capsys.readouterr().err
    assert e.value.code == 0, err
    assert "using" in err and len(load_vocab(out)) == 100


@pytest.mark.slow
def test_an_evaluation_batch_larger_than_memory_is_refused_before_evaluating(
    art, tmp_path, capsys, monkeypatch
):
    import olmo_scone.resources as resources

    monkeypatch.setattr(resources, "available_memory_bytes", lambda: 1 << 30)
    argv = [str(art.served), "--tokens", str(art.tokens), "--batch-size", "100000000"]
    proc = cli_run(evaluate_main, argv, capsys)
    assert_clean_error(
        proc,
        r"--batch-size 100000000 \(\d+ sequences of 64 tokens x 50,304 logits\) needs about [\d.,]+ GiB, 1\.0 GiB are available: lower --batch-size",
    )
    assert "perplexity" not in proc.stdout
