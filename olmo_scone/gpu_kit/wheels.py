"""The kit's wheels: downloaded for the GPU image's Python, DeepSpeed built as a pure-Python wheel,
and OLMo repacked without the data it does not need.

Every step runs ``pip`` of this environment with the target's interpreter and platform, so wheels
are chosen for the GPU image (cp312, manylinux x86_64) whatever this machine runs.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Sequence

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from ..errors import fail
from .packages import TARGET_PLATFORMS, TARGET_PYTHON, runtime_requirements

OLMO_VERSION = "0.6.0"
#: the local version label of the repacked OLMo wheel: same import names, less data
SLIM_LABEL = "kit"
#: what the runs need from olmo_data: its code and the one tokenizer the configs name
OLMO_DATA_KEEP = ("olmo_data/__init__.py", "olmo_data/data.py")


def _target_flags() -> List[str]:
    flags = ["--python-version", TARGET_PYTHON, "--only-binary=:all:"]
    for p in TARGET_PLATFORMS:
        flags += ["--platform", p]
    return flags


def _pip(args: Sequence[str], what: str, env: Dict[str, str] | None = None) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "pip", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
    )
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
        fail(
            f"{what} failed: {tail[0]} (needs the package index; run `make gpu-kit` where pip can reach it)"
        )


def download(pins: Dict[str, Version], dest: Path) -> None:
    """The pinned wheels for the target, without their dependencies (the pins are the closure)."""
    if pins:
        specs = [f"{n}=={v}" for n, v in sorted(pins.items())]
        _pip(
            ["download", "-q", "--no-deps", *_target_flags(), "--dest", str(dest), *specs],
            "pip download",
        )


def build_deepspeed(version: str, dest: Path) -> Path:
    """DeepSpeed from its sdist with no ops compiled (``DS_BUILD_OPS=0``): a pure-Python wheel that
    JIT-builds nothing for a ZeRO-1 run with torch's own AdamW. Built against this environment's
    torch (its setup.py imports torch), which the pure wheel does not bind to."""
    _pip(
        [
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            f"deepspeed=={version}",
            "-w",
            str(dest),
        ],
        "building the deepspeed wheel",
        env={"DS_BUILD_OPS": "0"},
    )
    [whl] = sorted(dest.glob(f"deepspeed-{version}-*.whl"))
    if not whl.name.endswith("-py3-none-any.whl"):
        fail(f"{whl.name} is not a pure-Python wheel; set DS_BUILD_OPS=0 and build again")
    return whl


def repack_olmo(tokenizer_file: str, dest: Path) -> Path:
    """``ai2-olmo`` 0.6.0 with ``olmo`` whole and ``olmo_data`` cut to its code and one tokenizer
    (the published wheel is 145 MB: every tokenizer and eval set). Same import names; version
    ``0.6.0+kit``; ``numpy<2`` relaxed to ``numpy``, since the GPU image has numpy 2 and the smoke
    run is the check that OLMo's model code runs on it."""
    keep = set(OLMO_DATA_KEEP) | {f"olmo_data/tokenizers/{tokenizer_file}"}
    with tempfile.TemporaryDirectory() as tmp:
        _pip(
            [
                "download",
                "-q",
                "--no-deps",
                "--only-binary=:all:",
                f"ai2-olmo=={OLMO_VERSION}",
                "--dest",
                tmp,
            ],
            "pip download ai2-olmo",
        )
        [src] = Path(tmp).glob("ai2_olmo-*.whl")
        version = f"{OLMO_VERSION}+{SLIM_LABEL}"
        out = dest / f"ai2_olmo-{version}-py3-none-any.whl"
        info = f"ai2_olmo-{version}.dist-info"
        records: List[str] = []
        with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
            for item in zin.infolist():
                name = item.filename
                if ".dist-info/" in name:
                    continue
                if name.startswith("olmo_data/") and name not in keep:
                    continue
                _add(zout, records, name, zin.read(item))
            old_info = next(
                n.split("/")[0] for n in zin.namelist() if n.endswith(".dist-info/METADATA")
            )
            meta = zin.read(f"{old_info}/METADATA").decode()
            _add(zout, records, f"{info}/METADATA", _slim_metadata(meta, version).encode())
            _add(zout, records, f"{info}/WHEEL", zin.read(f"{old_info}/WHEEL"))
            _add(zout, records, f"{info}/top_level.txt", b"olmo\nolmo_data\n")
            records.append(f"{info}/RECORD,,")
            zout.writestr(f"{info}/RECORD", "\n".join(records) + "\n")
        if not any(n.endswith(tokenizer_file) for n in zipfile.ZipFile(out).namelist()):
            fail(f"tokenizer {tokenizer_file} is not in the ai2-olmo {OLMO_VERSION} wheel")
    return out


def _add(z: zipfile.ZipFile, records: List[str], name: str, data: bytes) -> None:
    z.writestr(name, data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    records.append(f"{name},sha256={digest},{len(data)}")


def _slim_metadata(meta: str, version: str) -> str:
    lines = []
    for line in meta.splitlines():
        if line.startswith("Version:"):
            line = f"Version: {version}"
        elif (
            line.startswith("Requires-Dist:") and Requirement(line.split(":", 1)[1]).name == "numpy"
        ):
            line = "Requires-Dist: numpy"
        lines.append(line)
    return "\n".join(lines) + "\n"


def resolve(requirements: Iterable[Requirement]) -> tuple[Dict[str, Version], List[Requirement]]:
    """What pip would install for ``requirements`` on the target (``--dry-run --report``): each
    package's version, and every requirement any of them places on another."""
    reqs = [str(r) for r in requirements]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        _pip(
            [
                "install",
                "-q",
                "--dry-run",
                "--ignore-installed",
                "--report",
                str(report),
                *_target_flags(),
                "--target",
                str(Path(tmp) / "t"),
                *reqs,
            ],
            "resolving the kit's packages",
        )
        installs = json.loads(report.read_text())["install"]
    resolved = {
        canonicalize_name(i["metadata"]["name"]): Version(i["metadata"]["version"])
        for i in installs
    }
    on = [Requirement(r) for r in reqs]
    for i in installs:
        on += runtime_requirements(i["metadata"].get("requires_dist") or [])
    return resolved, on
