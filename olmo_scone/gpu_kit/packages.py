"""Which Python packages the GPU kit carries, decided from wheel metadata, not from a hand list.

The GPU image (``configs/gpu-kit/image.txt``) already has torch, numpy 2, transformers and their
dependencies. The kit carries everything else that the runs' packages declare they need at run time
on that image's Python (3.12, Linux x86_64), plus what they import without declaring it
(``olmo.util`` imports ``datasets``). A package the image has at a version that some kit wheel
refuses (``cached_path`` wants ``rich<14``, the image has rich 15) is carried as well: the kit is
installed into its own folder, first on ``PYTHONPATH``, so its version wins for these runs only.

:func:`unmet` is the check that matters: every run-time requirement of every kit wheel must be met
by the kit itself or by the image, at a version the requirement accepts.
"""

from __future__ import annotations

import email.parser
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Iterable, List

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

#: the GPU image's interpreter and platform, for evaluating requirement markers
TARGET_PYTHON = "3.12"
TARGET_MARKERS = {
    "python_version": TARGET_PYTHON,
    "python_full_version": f"{TARGET_PYTHON}.0",
    "sys_platform": "linux",
    "platform_system": "Linux",
    "platform_machine": "x86_64",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
    "extra": "",
}
#: what ``pip download`` is told, so it picks the image's wheels (cp312, manylinux x86_64)
TARGET_PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")

#: imported by the runs' packages without being declared by them
UNDECLARED_IMPORTS = ("datasets",)  # olmo/util.py: `import datasets`


def target_tags() -> frozenset:
    """Every wheel tag the GPU image's pip accepts (CPython 3.12, manylinux x86_64)."""
    from packaging import tags

    version = tuple(int(x) for x in TARGET_PYTHON.split("."))
    platforms = [f"manylinux_2_{m}_x86_64" for m in range(28, 4, -1)]
    platforms += [
        "manylinux2014_x86_64",
        "manylinux2010_x86_64",
        "manylinux1_x86_64",
        "linux_x86_64",
    ]
    return frozenset(tags.cpython_tags(version, platforms=platforms)) | frozenset(
        tags.compatible_tags(version, platforms=platforms)
    )


def installs_on_target(wheel: Path) -> bool:
    from packaging.utils import parse_wheel_filename

    return bool(parse_wheel_filename(Path(wheel).name)[3] & target_tags())


@dataclass(frozen=True)
class Wheel:
    name: str  # canonical
    version: Version
    requires: tuple  # run-time Requirements on the target (markers evaluated, no extras)
    path: Path


def read_pins(path: Path) -> Dict[str, Version]:
    """``name==version`` lines (comments and blank lines skipped) as {canonical name: version}."""
    pins: Dict[str, Version] = {}
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep:
            raise ValueError(f"{path}:{n}: expected name==version, got {line!r}")
        pins[canonicalize_name(name)] = Version(version.strip())
    return pins


def runtime_requirements(requires_dist: Iterable[str]) -> List[Requirement]:
    """The requirements that apply on the target with no extras asked for."""
    out = []
    for text in requires_dist:
        req = Requirement(text)
        if req.marker is None or req.marker.evaluate(TARGET_MARKERS):
            out.append(req)
    return out


def read_wheel(path: Path) -> Wheel:
    """A wheel's name, version and run-time requirements, from its ``METADATA``."""
    with zipfile.ZipFile(path) as z:
        meta_name = next(
            n for n in z.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1
        )
        meta = email.parser.Parser().parsestr(z.read(meta_name).decode())
    return Wheel(
        name=canonicalize_name(meta["Name"]),
        version=Version(meta["Version"]),
        requires=tuple(runtime_requirements(meta.get_all("Requires-Dist") or [])),
        path=Path(path),
    )


def unmet(wheels: Iterable[Wheel], image: Dict[str, Version]) -> List[str]:
    """Every run-time requirement of ``wheels`` that neither the wheels nor ``image`` meet, one line
    each (empty: the kit installs with ``--no-deps`` and nothing it needs is missing)."""
    wheels = list(wheels)
    have = {**image, **{w.name: w.version for w in wheels}}
    problems = []
    for w in wheels:
        for req in w.requires:
            name = canonicalize_name(req.name)
            got = have.get(name)
            if got is None:
                problems.append(
                    f"{w.name} {w.version} needs {req}: neither the kit nor the image has it"
                )
            elif not req.specifier.contains(got, prereleases=True):
                where = "kit" if name in {x.name for x in wheels} else "image"
                problems.append(f"{w.name} {w.version} needs {req}: the {where} has {got}")
    return problems


def carried(
    resolved: Dict[str, Version], requirements: Iterable[Requirement], image: Dict[str, Version]
) -> Dict[str, Version]:
    """The part of a resolved package set the kit must carry: all of it but what the image has at a
    version every requirement on that package accepts."""
    on: Dict[str, List[Requirement]] = {}
    for req in requirements:
        on.setdefault(canonicalize_name(req.name), []).append(req)
    return {
        name: version
        for name, version in resolved.items()
        if not (
            name in image
            and all(r.specifier.contains(image[name], prereleases=True) for r in on.get(name, []))
        )
    }
