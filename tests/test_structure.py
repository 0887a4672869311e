"""The package's layering: the library never imports the experiments (recipes/) or the benchmarks
(bench/); module names are not one letter apart (config.py / configs.py was)."""

from __future__ import annotations

import ast
from itertools import combinations
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "olmo_scone"
UPPER = ("olmo_scone.recipes", "olmo_scone.bench")


def _module(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """Absolute names of every module ``path`` imports (at any depth: imports inside functions too)."""
    package = _module(path) if path.name == "__init__.py" else _module(path).rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1])
                base = f"{base}.{node.module}" if node.module else base
            yield base
            yield from (f"{base}.{a.name}" for a in node.names)


def test_the_library_does_not_import_recipes_or_benchmarks():
    library = [p for p in PKG.rglob("*.py") if not _module(p).startswith(UPPER)]
    assert len(library) > 30
    offenders = sorted(
        f"{p.relative_to(PKG.parent)} imports {name}"
        for p in library
        for name in _imports(p)
        if name.startswith(UPPER)
    )
    assert offenders == []


def test_the_import_walk_sees_relative_imports_inside_functions(tmp_path):
    """The check above would pass vacuously if relative imports were resolved wrongly."""
    demo = PKG / "recipes" / "demo.py"
    names = set(_imports(demo))
    assert "olmo_scone.serving.runtime" in names and "olmo_scone.markdown.table" in names


def _one_letter_apart(a: str, b: str) -> bool:
    if abs(len(a) - len(b)) > 1 or a == b:
        return False
    if len(a) == len(b):
        return sum(x != y for x, y in zip(a, b)) == 1
    short, long = sorted((a, b), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def test_no_two_modules_are_one_letter_apart():
    names = {p.stem for p in PKG.rglob("*.py") if p.stem != "__init__"}
    assert not [(a, b) for a, b in combinations(sorted(names), 2) if _one_letter_apart(a, b)]


def _flags_without_help(path: Path):
    src = path.read_text()
    for node in ast.walk(ast.parse(src)):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", None) == "add_argument"
            and not any(k.arg == "help" for k in node.keywords)
        ):
            yield f"{path.name}:{node.lineno}"


def test_every_command_line_flag_has_help_text(tmp_path):
    missing = [
        m
        for p in [*PKG.rglob("*.py"), *PKG.parent.glob("scripts/*.py")]
        for m in _flags_without_help(p)
    ]
    assert missing == []
    # the check itself sees a flag without help (and one with it)
    (tmp_path / "x.py").write_text('p.add_argument("--a")\np.add_argument("--b", help="b")\n')
    assert list(_flags_without_help(tmp_path / "x.py")) == ["x.py:1"]


def test_the_formatter_and_linter_see_every_package_folder():
    """ruff's exclude once named ``data`` unanchored, which also hid olmo_scone/data/ from make check."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--show-files", str(PKG)],
        capture_output=True,
        text=True,
        cwd=PKG.parent,
    ).stdout
    seen = {
        Path(line.strip()).resolve() for line in out.splitlines() if line.strip().endswith(".py")
    }
    assert set(PKG.rglob("*.py")) <= seen, sorted(set(PKG.rglob("*.py")) - seen)[:5]


#: the serving core (#25): what an engine plugin imports, in an environment without OLMo's pins
SERVING_CORE = (
    "olmo_scone.fgrams.matching",
    "olmo_scone.serving.table",
    "olmo_scone.serving.manifest",
    "olmo_scone.serving.fast_lookup",
    "olmo_scone.serving.gpt2_layout",
    "olmo_scone.serving.artifact",
    "olmo_scone.serving.slot_history",
    "olmo_scone.vllm_plugin",
)


def test_the_serving_core_imports_neither_olmo_nor_the_training_stack():
    import subprocess
    import sys

    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in SERVING_CORE)
        + "print(sorted(m for m in ('olmo', 'hf_olmo', 'deepspeed', 'transformers', 'dolma', 'ray', 'wandb') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
