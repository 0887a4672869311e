"""Test helper: which installed distributions the GPU runs imported (logged by import_log/
sitecustomize.py in every process of a rehearsal), and which of them neither the GPU kit nor the
GPU image provides. The CPU rehearsals run in this project's venv, where missing kit packages would
go unnoticed (wandb did, once): this is the check that catches them."""

from __future__ import annotations

import importlib.metadata
import os
import sys
from pathlib import Path

from packaging.utils import canonicalize_name

from olmo_scone.gpu_kit.build import IMAGE_FILE, PINS_FILE
from olmo_scone.gpu_kit.packages import read_pins

HOOK = Path(__file__).resolve().parent / "import_log"
#: imported here but not by the GPU runs' own versions, each for a stated reason
IMPORTED_ONLY_HERE = {
    # datasets 2.21 (this venv) imports fsspec's S3/HTTP stack; the kit's datasets 5.2 has none of it
    **dict.fromkeys(
        ["aiobotocore", "aiohappyeyeballs", "aiohttp", "aioitertools", "aiosignal", "attrs"]
        + ["frozenlist", "multidict", "propcache", "s3fs", "wrapt", "yarl"],
        "datasets 2.21",
    ),
    "pytz": "pandas 2.2 (the image's pandas 3 no longer imports it)",
    "zstandard": "fsspec imports it when it is installed",
    "cloudpickle": "dill imports it when it is installed",
    "olmo-scone": "the checkout itself, on PYTHONPATH on the node",
    # the optional extra 'fast': the node's numpy 2.5 is newer than numba accepts, so there the
    # serving lookup falls back to the numpy matcher (serving/fast_lookup.py)
    **dict.fromkeys(["numba", "llvmlite"], "olmo-scone[fast], optional"),
    "scipy": "numba imports it when it is installed",
}


def logging_env(log_dir: Path) -> dict:
    log_dir.mkdir(parents=True, exist_ok=True)
    path = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        "OLMO_SCONE_IMPORT_LOG": str(log_dir),
        "PYTHONPATH": f"{HOOK}:{path}" if path else str(HOOK),
    }


def imported_distributions(log_dir: Path) -> set[str]:
    modules = set()
    for f in log_dir.glob("*.txt"):
        modules.update(f.read_text().split())
    by_module = _distributions_by_top_level_module()
    return {
        canonicalize_name(d)
        for m in modules
        if m not in sys.stdlib_module_names
        for d in by_module.get(m, [])
    }


def _distributions_by_top_level_module() -> dict[str, list[str]]:
    """importlib.metadata.packages_distributions, less what a package vendors: importing setuptools
    appends its _vendor folder to sys.path, after which jaraco, more_itertools and backports would
    look like distributions of their own in whichever process had imported setuptools first (an
    order-dependent failure, seen in CI); on the node they come with the image's setuptools."""
    paths = [p for p in sys.path if Path(p).name != "_vendor"]
    installed = {
        canonicalize_name(d.metadata["Name"]) for d in importlib.metadata.distributions(path=paths)
    }
    return {
        module: [d for d in dists if canonicalize_name(d) in installed]
        for module, dists in importlib.metadata.packages_distributions().items()
    }


def missing_on_the_node(log_dir: Path) -> set[str]:
    provided = set(read_pins(IMAGE_FILE)) | set(read_pins(PINS_FILE)) | {"ai2-olmo", "deepspeed"}
    return imported_distributions(log_dir) - provided - set(IMPORTED_ONLY_HERE)
