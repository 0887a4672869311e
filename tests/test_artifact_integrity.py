"""Every file of an exported folder is covered by its manifest and checked by every loader: one byte
changed anywhere (config.yaml, config.json, the tokenizer, the code files, the model card, the
matcher's index, the manifest itself, ...) is refused by the project's runtime and by the Hugging
Face class, before anything is served."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from olmo_scone.errors import SconeError
from olmo_scone.export import export
from olmo_scone.hf.modeling import SconeOLMoForCausalLM
from olmo_scone.serving.runtime import ServedModel

pytestmark = pytest.mark.slow


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _refused(load, folder: Path) -> str:
    with pytest.raises(SconeError) as e:
        load(folder)
    return str(e.value)


LOADERS = {
    "runtime": lambda f: ServedModel(f, mode="mmap"),
    "transformers": lambda f: SconeOLMoForCausalLM.from_pretrained(str(f)),
}


def test_every_file_of_a_scone_artifact_is_checked_by_every_loader(art, tmp_path):
    files = _files(art.served)
    assert {
        "config.yaml",
        "config.json",
        "tokenizer.json",
        "modeling_olmo_scone.py",
        "manifest.json",
    } <= set(files)
    assert any(f.startswith("matcher/") for f in files) and any(
        f.startswith("table-") for f in files
    )
    for loader in LOADERS.values():  # the untouched copy loads
        loader(art.served)
    for rel in files:
        copy = tmp_path / rel.replace("/", "_")
        shutil.copytree(art.served, copy)
        _flip(copy / rel)
        for name, loader in LOADERS.items():
            why = _refused(loader, copy)
            assert Path(rel).name in why or "manifest.json" in why, (rel, name, why)
        shutil.rmtree(copy)


def test_every_file_of_a_baseline_export_is_checked_by_the_transformers_class(
    baseline_run, tmp_path
):
    out = tmp_path / "baseline-hf"
    export(baseline_run, out)
    files = _files(out)
    assert {"config.json", "model.safetensors", "config.yaml", "olmo_scone_export.json"} <= set(
        files
    )
    SconeOLMoForCausalLM.from_pretrained(str(out))
    for rel in files:
        copy = tmp_path / f"copy-{rel}"
        shutil.copytree(out, copy)
        _flip(copy / rel)
        why = _refused(LOADERS["transformers"], copy)
        assert rel in why or "olmo_scone_export.json" in why, (rel, why)
        shutil.rmtree(copy)
