"""``make gpu-kit``: one folder (at most 64 MiB) that makes an offline GPU node able to run this
project: the wheels its image lacks, for Python 3.12, and the text the GPU runs train on.

Layout::

    gpu-kit/
      manifest.json        every file (bytes, sha256), the wheels, the image they were checked
                           against, the token corpus, and the sha256 the f-gram vocabularies built
                           from it must have
      wheels/*.whl         installed by scripts/gpu_smoke.sh with `pip --no-index --no-deps`
      data/tokens/         the embedded corpus + ../shared/data/english-mix, one token directory
      data/wikitext/       WikiText-103 validation text

Not carried: the f-gram vocabularies and sidecar tags. Tags are an int32 per token (50 MB for the
12.6M tokens here, most of the budget); counting and tagging are seconds on a GPU node's CPUs, and
give the same bytes everywhere, which the smoke run checks against the sha256 recorded here.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..atomic import atomic_directory, atomic_write_json, atomic_write_text, sha256_file
from ..errors import ArgumentParser, fail
from ..paths import REPO, SHARED_DATA, git_commit
from packaging.utils import canonicalize_name
from packaging.version import Version

from .packages import (
    TARGET_PYTHON,
    UNDECLARED_IMPORTS,
    carried,
    installs_on_target,
    read_pins,
    read_wheel,
    unmet,
)

KIT_LIMIT_BYTES = 64 * 2**20
IMAGE_FILE = REPO / "configs" / "gpu-kit" / "image.txt"
PINS_FILE = REPO / "configs" / "gpu-kit" / "kit.txt"
DEEPSPEED_VERSION = "0.18.9"  # as constraints.txt
OLMO_CORE, OLMO_CORE_VERSION = "ai2-olmo-core", "0.1.0"  # what ai2-olmo 0.6.0 pins
TOKENIZER = "allenai_gpt-neox-olmo-dolma-v1_5"
#: f-gram counts the GPU runs use: tiny-scone's (as make demo) and the GPT-2-size SCONE model's
VOCAB_SIZES = {"tiny": 200_000, "gpt2": 1_000_000}
VALID_FRACTION = 0.02  # as the CPU study


def build_wheels(wheels: Path, lock: bool) -> List[Path]:
    """Every wheel of the kit into ``wheels``; with ``lock``, re-resolve the pins first."""
    from .wheels import build_deepspeed, download, repack_olmo

    wheels.mkdir(parents=True, exist_ok=True)
    own = [repack_olmo(f"{TOKENIZER}.json", wheels), build_deepspeed(DEEPSPEED_VERSION, wheels)]
    if lock:
        write_pins(lock_pins(own, wheels))
    download(read_pins(PINS_FILE), wheels)
    return sorted(wheels.glob("*.whl"))


def lock_pins(own: Sequence[Path], wheels: Path) -> Dict[str, Version]:
    """Resolve what the kit carries. ai2-olmo-core needs torch, which the image has but no index
    here can resolve for it (CUDA wheels), so it is taken without dependencies and its own
    requirements, less torch, join the resolution."""
    from packaging.requirements import Requirement

    from .wheels import download, resolve

    core_pin = {OLMO_CORE: Version(OLMO_CORE_VERSION)}
    download(core_pin, wheels)
    [core] = wheels.glob("ai2_olmo_core-*.whl")
    held = {"torch", OLMO_CORE}
    reqs = [
        r
        for w in (*own, core)
        for r in read_wheel(w).requires
        if canonicalize_name(r.name) not in held
    ]
    reqs += [Requirement(n) for n in UNDECLARED_IMPORTS]
    resolved, on = resolve(reqs)
    return {**carried(resolved, on, read_pins(IMAGE_FILE)), **core_pin}


def write_pins(pins: Dict) -> None:
    head = (
        "# The GPU kit's wheels besides the two built here (ai2-olmo repacked, deepspeed pure):\n"
        "# the run-time closure of what the GPU runs import, for Python 3.12, less what the image\n"
        "# (image.txt) has at an accepted version. Written by `make gpu-kit-lock`; read by `make gpu-kit`.\n"
    )
    atomic_write_text(PINS_FILE, head + "".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))


def check_wheels(wheels: Sequence[Path]) -> List[Dict]:
    """Refuse a wheel set that cannot install with ``--no-deps`` on the image; describe it."""
    parsed = [read_wheel(w) for w in wheels]
    problems = unmet(parsed, read_pins(IMAGE_FILE))
    if problems:
        fail(
            f"the kit's wheels do not fit the GPU image: {problems[0]} (and {len(problems) - 1} more)"
        )
    for w in wheels:
        if not installs_on_target(w):
            fail(
                f"{w.name} does not install on the GPU image (Python {TARGET_PYTHON}, Linux x86_64)"
            )
    return [{"name": p.name, "version": str(p.version), "file": p.path.name} for p in parsed]


def prepare_tokens(out: Path) -> Path:
    """The kit's corpus: the embedded default corpus and ../shared/data/english-mix, one token
    directory (2% of documents held out, as the CPU study)."""
    from ..data.embedded import embedded_corpus_path
    from ..data.prepare import PrepareSettings, prepare

    mix = sorted((SHARED_DATA / "english-mix").glob("*.jsonl.gz"))
    if not mix:
        fail(f"{SHARED_DATA / 'english-mix'} has no .jsonl.gz files: the kit carries that corpus")
    sources = [str(embedded_corpus_path()), *map(str, mix)]
    prepare(
        PrepareSettings(
            sources=sources, out=out, tokenizer=TOKENIZER, valid_fraction=VALID_FRACTION
        )
    )
    return out


def copy_wikitext(out: Path) -> Path:
    src = SHARED_DATA / "wikitext" / "wiki.valid.tokens"
    if not src.is_file():
        fail(f"{src} not found: the kit carries WikiText-103 validation for the GPU evaluations")
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(src, out / src.name)
    return out / src.name


def vocab_sha256(tokens: Path, num_fgrams: int) -> str:
    """The sha256 of the vocabulary ``build_fgrams.py`` makes from the kit's tokens (not kept)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "v.safetensors"
        cmd = [sys.executable, str(REPO / "scripts" / "build_fgrams.py"), "--tokens", str(tokens)]
        cmd += ["--num-fgrams", str(num_fgrams), "--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"build_fgrams.py on the kit's tokens failed: {r.stderr.strip()[-300:]}")
        return sha256_file(out)


def file_list(root: Path) -> Dict[str, Dict]:
    return {
        str(p.relative_to(root)): {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def build(out: Path, lock: bool = False, tokens_from: Optional[Path] = None) -> Dict:
    """The kit in ``out`` (replaced whole, atomically). ``tokens_from``: carry that token directory
    instead of preparing the kit's corpus (the tests' small real-text kit)."""
    with atomic_directory(out, overwrite=True) as tmp:
        wheels = check_wheels(build_wheels(tmp / "wheels", lock))
        tokens = tmp / "data" / "tokens"
        if tokens_from is None:
            prepare_tokens(tokens)
        else:
            shutil.copytree(tokens_from, tokens)
        copy_wikitext(tmp / "data" / "wikitext")
        files = file_list(tmp)
        total = sum(f["bytes"] for f in files.values())
        manifest = {
            "format": "olmo-scone/gpu-kit",
            "format_version": 1,
            "python": TARGET_PYTHON,
            "commit": git_commit(),
            "image": {"file": str(IMAGE_FILE.relative_to(REPO)), "sha256": sha256_file(IMAGE_FILE)},
            "wheels": wheels,
            "tokens": "data/tokens",
            "wikitext": "data/wikitext/wiki.valid.tokens",
            "vocab_sha256": {str(s): vocab_sha256(tokens, s) for s in sorted(VOCAB_SIZES.values())},
            "bytes": total,
            "files": files,
        }
        if total > KIT_LIMIT_BYTES:
            big = sorted(files.items(), key=lambda kv: -kv[1]["bytes"])[:3]
            largest = ", ".join(f"{k} ({v['bytes'] / 2**20:.1f} MiB)" for k, v in big)
            fail(
                f"the kit would be {total / 2**20:.1f} MiB, over the {KIT_LIMIT_BYTES / 2**20:.0f} "
                f"MiB limit; largest: {largest}"
            )
        atomic_write_json(tmp / "manifest.json", manifest)
    return manifest


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="build_gpu_kit.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=REPO / "gpu-kit", help="where the kit is written")
    p.add_argument(
        "--lock",
        action="store_true",
        help=f"re-resolve the wheel pins ({PINS_FILE.relative_to(REPO)}) before building",
    )
    a = p.parse_args(argv)
    m = build(a.out, a.lock)
    print(
        f"{a.out}: {m['bytes'] / 2**20:.1f} MiB ({len(m['wheels'])} wheels, tokens, WikiText); "
        f"limit {KIT_LIMIT_BYTES / 2**20:.0f} MiB"
    )
    return 0
