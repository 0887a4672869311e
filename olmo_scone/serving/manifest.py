"""An exported folder's manifest: its fields type-checked, its paths kept inside the folder, and
every file of the folder listed with its size and sha256.

An edited ``config.yaml`` (``activation_type: relu``) served another model with exit 0, an edited
``config.json`` or a flipped ``model.safetensors`` loaded silently through ``transformers``, and a
manifest path ``../../other/table-00000.safetensors`` was read. So the manifest's ``files`` lists
every file an export wrote (``{relative path: {"bytes", "sha256"}}``) but the manifest itself and
the files it already binds with checksums of their own (table shards, the matcher's arrays, the
vocabulary: they grow with S and their loaders check them), and every loader calls
:func:`verify_files` before it reads anything: sizes always, content hashes always up to 64 MiB and
for the main model, beyond that unless ``verify`` is off (``--no-verify``, for folders of hundreds
of GB already verified once; a shard's header checksum is still compared with the manifest then).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Optional

from ..errors import fail

#: files larger than this are hashed only when verifying (the main model is hashed whatever its size)
ALWAYS_HASHED_BYTES = 64 << 20
MANIFEST = "manifest.json"
#: a baseline's exported folder (no table) has this record instead of manifest.json
BASELINE_RECORD = "olmo_scone_export.json"


def digest(record: Dict) -> str:
    """sha256 of a manifest's canonical JSON without its own ``record_sha256``: any edit of a field
    (the export's wall time included) is found, as for every other file of the folder."""
    import hashlib

    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def seal(record: Dict) -> Dict:
    """``record`` with its ``record_sha256`` set (what an export writes last)."""
    return {**record, "record_sha256": digest(record)}


def check_seal(path: Path, record: Dict) -> None:
    if record.get("record_sha256") != digest(record):
        fail(
            f"{path} does not match its own checksum (record_sha256): it was edited or corrupted (re-export it)"
        )


def confined(root: Path, rel: Any, what: str) -> Path:
    """``root/rel``, refused unless ``rel`` is a relative path that stays inside ``root``."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\\" in rel:
        fail(f"{root}/{MANIFEST}: {what} {rel!r} is not a relative path inside the folder")
    p = root / rel
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_root, os.path.realpath(p)]) != real_root:
        fail(
            f"{root}/{MANIFEST}: {what} {rel!r} points outside the folder; the manifest is crafted or corrupt"
        )
    return p


def list_files(folder: Path, skip=()) -> Dict[str, Dict[str, Any]]:
    """Every file under ``folder`` but the manifest/record and ``skip`` (the table shards, which
    the manifest's ``shards`` cover with their own checksums): ``{relative path: {bytes, sha256}}``."""
    from ..atomic import sha256_file

    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if p.is_file() and rel not in (MANIFEST, BASELINE_RECORD, *skip):
            out[rel] = {"bytes": p.stat().st_size, "sha256": sha256_file(p)}
    return out


def verify_files(root: Path, files: Any, verify: bool = True, record: str = MANIFEST) -> None:
    """Each listed file present, of its size, and (see the module docstring) of its sha256."""
    from ..atomic import sha256_file

    if not isinstance(files, dict) or not files:
        fail(
            f"{root}/{record} lists no files: it predates file checksums or is corrupt; re-export it"
        )
    for rel, info in files.items():
        p = confined(root, rel, "file")
        if (
            not isinstance(info, dict)
            or not isinstance(info.get("bytes"), int)
            or not isinstance(info.get("sha256"), str)
        ):
            fail(
                f"{root}/{record}: the entry of {rel!r} is not {{bytes, sha256}}; the manifest is corrupt"
            )
        if not p.is_file():
            fail(f"{p} is missing: the folder is incomplete (re-export it)")
        size = p.stat().st_size
        if size != info["bytes"]:
            fail(
                f"{p} is {size:,} bytes, the manifest says {info['bytes']:,}: it was edited, truncated or replaced (re-export it)"
            )
        if verify or size <= ALWAYS_HASHED_BYTES or rel == "model.safetensors":
            if sha256_file(p) != info["sha256"]:
                fail(
                    f"{p} does not match its sha256 in {record}: it was edited or corrupted (re-export it)"
                )


def _require(m: Dict, path: Path, key: str, kind, optional: bool = False) -> None:
    v = m.get(key)
    if v is None and optional:
        return
    ok = isinstance(v, kind) and not isinstance(v, bool)
    if not ok:
        name = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        fail(f"{path}: {key} is {v!r}, expected {name}; the manifest is corrupt (re-export it)")


def check_fields(root: Path, m: Dict) -> None:
    """The manifest's fields have the types the readers assume, and its paths stay inside ``root``."""
    p = root / MANIFEST
    for key in ("d_model", "rows", "vocab_size"):
        _require(m, p, key, int)
    _require(m, p, "max_n", int, optional=True)
    for key in ("dtype",):
        _require(m, p, key, str)
    for key in ("vocab_sha256", "tokenizer_sha256", "model_sha256", "model_file"):
        _require(m, p, key, str, optional=True)
    _require(m, p, "shards", list)
    _require(m, p, "files", dict)
    if m["d_model"] <= 0 or m["rows"] < 0:
        fail(
            f"{p}: d_model {m['d_model']} / rows {m['rows']} out of range; the manifest is corrupt"
        )
    for i, s in enumerate(m["shards"]):
        if not isinstance(s, dict):
            fail(f"{p}: shard {i} is not an object; the manifest is corrupt")
        _require(s, p, "file", str)
        _require(s, p, "sha256", str)
        _require(s, p, "row_start", int)
        _require(s, p, "row_stop", int)
        confined(root, s["file"], f"shard {i}")
    if m.get("model_file") is not None:
        confined(root, m["model_file"], "model_file")
    if m.get("matcher") is not None:
        _require(m, p, "matcher", dict)
        _require(m["matcher"], p, "folder", str)
        confined(root, m["matcher"]["folder"], "matcher folder")


def read_baseline_record(root: Path) -> Optional[Dict]:
    """A baseline export's record (None if ``root`` has none)."""
    p = root / BASELINE_RECORD
    if not p.is_file():
        return None
    try:
        r = json.loads(p.read_text("utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        fail(f"{p} is not valid JSON ({e}); the folder is corrupt: re-export it")
    if not isinstance(r, dict):
        fail(f"{p}: not an export record; the folder is corrupt")
    check_seal(p, r)
    return r


def verify_export_folder(root: Path, verify: bool = True) -> None:
    """What the Hugging Face class (and any other loader of the folder) checks first: a SCONE
    artifact's manifest (fields, paths, every file) or a baseline export's record (every file)."""
    from .table import load_artifact_manifest

    root = Path(root)
    if (root / MANIFEST).is_file():
        m = load_artifact_manifest(root)
        verify_files(root, m["files"], verify)
        return
    r = read_baseline_record(root)
    if r is not None:
        verify_files(root, r.get("files"), verify, record=BASELINE_RECORD)
