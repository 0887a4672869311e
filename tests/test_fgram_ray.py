"""Counting and tagging as Ray tasks give the single-machine bytes: on a local Ray runtime, and on a
two-node Ray cluster started on this machine, through a worker killed mid-pass."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from cli_helpers import assert_clean_error

from olmo_scone.errors import SconeError
from olmo_scone.fgrams.counting import CountSettings, TokenSource, count_fgrams
from olmo_scone.fgrams.vocab import load_vocab
from olmo_scone.launch import free_port

REPO = Path(__file__).resolve().parents[1]
RAY = Path(sys.executable).with_name("ray")
#: a test cluster on loopback; its processes, the builds and this test process all agree on it
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
BUILD = ["--num-fgrams", 20000, "--max-n", 5]


def run(script: str, *args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "scripts" / script), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env or RAY_ENV,
    )


@pytest.fixture(scope="module")
def single(prepared, tmp_path_factory):
    """The single-machine vocabulary and sidecar that every Ray run must reproduce byte for byte."""
    d = tmp_path_factory.mktemp("single")
    proc = run(
        "build_fgrams.py",
        "--tokens",
        prepared.root,
        *BUILD,
        "--processes",
        2,
        "--out",
        d / "v.safetensors",
    )
    assert proc.returncode == 0, proc.stderr
    proc = run(
        "tag_fgrams.py",
        "--vocab",
        d / "v.safetensors",
        "--tokens",
        prepared.root,
        "--out",
        d / "tags",
    )
    assert proc.returncode == 0, proc.stderr
    return d / "v.safetensors", d / "tags"


def assert_same_sidecar(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    for f in files:
        if f.name == "fgram_tags.json":
            ma, mb = (json.loads((x / f).read_text()) for x in (a, b))
            ma.pop("wall_time_s"), mb.pop("wall_time_s")
            assert ma == mb
        else:
            assert (a / f).read_bytes() == (b / f).read_bytes(), f


def test_local_ray_runtime_gives_the_single_machine_bytes(prepared, single, tmp_path):
    vocab, tags = single
    proc = run(
        "build_fgrams.py",
        "--tokens",
        prepared.root,
        *BUILD,
        "--processes",
        2,
        "--ray",
        "--chunk-tokens",
        50_000,
        "--memory-gb",
        0.01,
        "--out",
        tmp_path / "v.safetensors",
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        re.search(r"(\d+) partition\(s\)", proc.stdout).group(1) != "1"
    )  # partitioned merge and ranking
    assert load_vocab(tmp_path / "v.safetensors").sha256 == load_vocab(vocab).sha256
    assert (tmp_path / "v.safetensors").read_bytes() == vocab.read_bytes()
    proc = run(
        "tag_fgrams.py",
        "--vocab",
        vocab,
        "--tokens",
        prepared.root,
        "--out",
        tmp_path / "tags",
        "--ray",
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_sidecar(tags, tmp_path / "tags")


def _stop_cluster(temp_dirs) -> None:
    """Kill this cluster's processes (those naming its temp dirs, and their descendants), not any
    other Ray cluster on the machine (`ray stop` would stop them all)."""
    victims = []
    for p in psutil.process_iter(["cmdline"]):
        if any(d in " ".join(p.info["cmdline"] or []) for d in temp_dirs):
            victims += [p, *p.children(recursive=True)]
    for p in victims:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(victims, timeout=10)


def _start_cluster() -> tuple[str, list[str]]:
    """A real two-node Ray cluster on this machine: a head and a worker node, one CPU each, each
    with its own temp dir (short paths: Ray's socket names must fit 107 bytes). Returns the
    address and the two temp dirs (head's first)."""
    head_dir, node_dir = (
        tempfile.mkdtemp(prefix="rh", dir="/tmp"),
        tempfile.mkdtemp(prefix="rn", dir="/tmp"),
    )
    address = f"127.0.0.1:{free_port()}"
    common = [
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(300 * 2**20),
        "--node-ip-address",
        "127.0.0.1",
        "--disable-usage-stats",
    ]
    try:
        subprocess.run(
            [
                RAY,
                "start",
                "--head",
                "--port",
                address.split(":")[1],
                "--temp-dir",
                head_dir,
                "--include-dashboard",
                "false",
                *common,
            ],
            check=True,
            capture_output=True,
            env=RAY_ENV,
            timeout=120,
        )
        subprocess.run(
            [RAY, "start", "--address", address, "--temp-dir", node_dir, *common],
            check=True,
            capture_output=True,
            env=RAY_ENV,
            timeout=120,
        )
    except BaseException:
        _stop_cluster([head_dir, node_dir])
        raise
    return address, [head_dir, node_dir]


@pytest.fixture(scope="module")
def cluster():
    address, dirs = _start_cluster()
    try:
        yield address
    finally:
        _stop_cluster(dirs)


def _wait_for_task_on(node_dir: str, build: subprocess.Popen, timeout: float = 120) -> bool:
    """True once a process below the raylet of the node using ``node_dir`` runs a counting task."""
    deadline = time.time() + timeout
    while time.time() < deadline and build.poll() is None:
        raylets = [
            p
            for p in psutil.process_iter(["cmdline"])
            if node_dir in " ".join(p.info["cmdline"] or [])
            and "raylet" in (p.info["cmdline"] or [""])[0]
        ]
        for raylet in raylets:
            try:
                if any(
                    c.cmdline()[:1] == ["ray::count_chunk"] for c in raylet.children(recursive=True)
                ):
                    return True
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.05)
    return False


def _count_tasks(build: subprocess.Popen, timeout: float = 120):
    """Processes running a counting task now (Ray names a busy worker after its task)."""
    deadline = time.time() + timeout
    while time.time() < deadline and build.poll() is None:
        busy = [
            p
            for p in psutil.process_iter(["cmdline"])
            if (p.info["cmdline"] or [""])[0] == "ray::count_chunk"
        ]
        if busy:
            return busy
        time.sleep(0.05)
    return []


@pytest.mark.slow
def test_two_node_cluster_survives_a_killed_worker_with_the_same_bytes(
    prepared, single, cluster, tmp_path
):
    vocab, tags = single
    out = tmp_path / "v.safetensors"
    cmd = [
        sys.executable,
        str(REPO / "scripts" / "build_fgrams.py"),
        "--tokens",
        str(prepared.root),
        *map(str, BUILD),
        "--ray",
        cluster,
        "--chunk-tokens",
        "20000",
        "--out",
        str(out),
    ]
    build = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=RAY_ENV
    )
    busy = _count_tasks(build)
    assert busy, "no counting task was seen running"
    victim = busy[0]
    os.kill(victim.pid, signal.SIGKILL)  # mid-task: unless Ray re-runs that task, the build fails
    stdout, stderr = build.communicate(timeout=600)
    assert build.returncode == 0, stderr
    assert "ray: tasks ran on 2 node(s)" in stdout  # both nodes counted
    assert out.read_bytes() == vocab.read_bytes()

    proc = run(
        "tag_fgrams.py",
        "--vocab",
        vocab,
        "--tokens",
        prepared.root,
        "--out",
        tmp_path / "tags",
        "--ray",
        cluster,
    )
    assert proc.returncode == 0, proc.stderr
    assert_same_sidecar(tags, tmp_path / "tags")


@pytest.mark.slow
def test_a_worker_that_cannot_read_the_tokens_is_one_clear_line(
    prepared, cluster, tmp_path, monkeypatch
):
    from olmo_scone.fgrams.counting.ray_executor import RayExecutor

    for k, v in RAY_ENV.items():
        monkeypatch.setenv(k, v)
    missing = tmp_path / "only-on-the-driver.npy"  # as if --tokens were not on shared storage
    ex = RayExecutor(cluster)
    try:
        with pytest.raises(
            SconeError,
            match=rf"cannot read token file {missing} on node \w+: No such file.*same path",
        ):
            count_fgrams(
                [TokenSource(missing, np.dtype(np.uint16), 100_000)],
                50280,
                50279,
                1,
                CountSettings(),
                executor=ex,
            )
    finally:
        ex.close()


def test_an_unreachable_ray_address_is_one_clear_line(prepared, tmp_path):
    t0 = time.time()
    proc = run(
        "build_fgrams.py",
        "--tokens",
        prepared.root,
        "--num-fgrams",
        10,
        "--ray",
        f"127.0.0.1:{free_port()}",
        "--out",
        tmp_path / "v.safetensors",
    )
    assert_clean_error(proc, r"--ray 127\.0\.0\.1:\d+: no Ray cluster answers there")
    assert time.time() - t0 < 60 and not (tmp_path / "v.safetensors").exists()
    assert_clean_error(
        run(
            "build_fgrams.py",
            "--tokens",
            prepared.root,
            "--num-fgrams",
            10,
            "--ray",
            "--work-dir",
            tmp_path / "w",
            "--out",
            tmp_path / "v.safetensors",
        ),
        r"--work-dir is for local runs",
    )


@pytest.mark.slow
def test_a_worker_node_killed_mid_pass_costs_its_tasks_not_the_run(prepared, single, tmp_path):
    """Ray re-runs the lost node's tasks (and rebuilds the outputs it held from their lineage) on the
    node that is left: the build still writes the single-machine bytes."""
    vocab, _ = single
    address, (head_dir, node_dir) = _start_cluster()
    try:
        out = tmp_path / "v.safetensors"
        cmd = [
            sys.executable,
            str(REPO / "scripts" / "build_fgrams.py"),
            "--tokens",
            str(prepared.root),
            *map(str, BUILD),
            "--ray",
            address,
            "--chunk-tokens",
            "5000",
            "--out",
            str(out),
        ]
        build = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=RAY_ENV
        )
        # kill the worker node while it runs a counting task (so it holds work and outputs)
        assert _wait_for_task_on(node_dir, build), "the worker node ran no counting task to kill"
        assert build.poll() is None, "the build ended before a node could be killed"
        _stop_cluster([node_dir])  # the second node's raylet, object store and workers, all at once
        stdout, stderr = build.communicate(timeout=600)
        assert build.returncode == 0, stderr[-3000:]
        assert out.read_bytes() == vocab.read_bytes()
    finally:
        _stop_cluster([head_dir, node_dir])
