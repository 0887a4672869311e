"""``make repro-cpu``: a CPU-scale reproduction of the paper's findings on real text.

The study (all runs share the seed, data order, optimizer and token budget):

* data: ``../shared/data/english-mix`` (six genres of real English, ~5M tokens) tokenized with
  ``dolma tokens``; 2% of the documents held out;
* main models: ``m`` (d 128, 2 layers, seq 128, RoPE as in OLMo) and ``2m`` (4 layers: twice the
  non-embedding parameters); both baselines are trained;
* SCONE with main model ``m``: f-gram counts 25K / 100K / 300K with ``A_fgram`` of 1x m's
  non-embedding parameters, and ``A_fgram`` 0.5x / 2x at 100K f-grams (1 / 2 / 4 layers of the
  same width). The english-mix train split holds only ~301K n-grams seen >= 5 times, so 300K is
  (nearly) all of them; a vocabulary smaller than its run's name is refused, not silently used;
* evaluation through the serving runtime (SCONE from its exported bf16 table, ``A_fgram``
  dropped) on two held-out corpora: WikiText-103 validation (``wikitext/wiki.valid.tokens``) and
  the held-out english-mix documents.

Why RoPE: with learned absolute positions added to the input embedding, a position whose embedding
SCONE replaced by ``A_fgram``'s LayerNorm-ed output (norm ~sqrt(d)) drowns its position signal
(norm ~0.02 sqrt(d)). OLMo itself uses RoPE, which puts positions into attention instead.

Every stage writes a file and is skipped when that file exists, so an interrupted study resumes.
Training commands always run: the trainer does nothing for a finished run, resumes an interrupted
one (runs checkpoint every ``steps / 3``), continues one whose ``--steps`` grew and refuses a
folder trained with another ``--seed`` (``olmo_scone/train/run_state.py``). ``--print`` shows the
commands; ``--steps`` sets the budget and ``--seed`` the training seed; ``--only`` picks runs (and
builds only their vocabularies);
``--report`` rewrites the report from the runs that have finished. The report (table, plots and
the exact commands) is spliced into ``docs/results.md`` between the ``repro-cpu`` markers, leaving
the analysis around it alone; plots go to ``docs/results-*.png``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from ..paths import REPO, SHARED_DATA
from ..errors import ArgumentParser, fail
from ..launch import torchrun_command
from .tiny import tiny_cpu

PY = sys.executable
# Sized by measurement on this 2-core machine: at d 256 training ran at ~780 tokens/s (the 50K-row
# output layer dominates), at d 128 at ~1.4K tokens/s; see docs/results.md for the budget chosen.
D_MODEL, HEADS, LAYERS_M, SEQ, BATCH = 128, 4, 2, 128, 32
FGRAM_COUNTS = [25_000, 100_000, 300_000]
A_SWEEP_FGRAMS = 100_000  # the f-gram count at which A_fgram's size is varied
A_LAYERS = {"0.5x": 1, "1x": 2, "2x": 4}
SEED = 6198
DEFAULT_STEPS = 200
#: the seeds of the error bars: each draws the initialisation and the data order together
SEEDS = (6198, 6199, 6200)
#: the runs repeated over SEEDS: both baselines and the two SCONE configurations that did best on
#: WikiText-103 validation with seed 6198 (300K f-grams with A_fgram 1x; 100K with A_fgram 0.5x)
SEEDED_RUNS = ("baseline-m", "baseline-2m", "scone-m-300k-a1x", "scone-m-100k-a0.5x")
#: the study's durable state with several seeds: one small JSON per finished run, kept in git
RECORDS = REPO / "docs" / "results-cpu-runs"


def runs() -> List[Dict]:
    """The study's runs: name, main layers, f-grams (0: baseline), A_fgram size (x m), RoPE or not."""
    out = [
        {"name": "baseline-m", "layers": LAYERS_M, "fgrams": 0, "a": None},
        {"name": "baseline-2m", "layers": 2 * LAYERS_M, "fgrams": 0, "a": None},
    ]
    for s in FGRAM_COUNTS:
        out.append(
            {"name": f"scone-m-{s // 1000}k-a1x", "layers": LAYERS_M, "fgrams": s, "a": "1x"}
        )
    for a in ("0.5x", "2x"):
        out.append(
            {
                "name": f"scone-m-{A_SWEEP_FGRAMS // 1000}k-a{a}",
                "layers": LAYERS_M,
                "fgrams": A_SWEEP_FGRAMS,
                "a": a,
            }
        )
    return [{**r, "rope": True, "init": "identity", "ablation": False} for r in out]


def ablation_runs() -> List[Dict]:
    """The A_fgram-initialisation ablation: SCONE-m (middle f-gram count, A_fgram 1x) with OLMo's own
    init and final LayerNorm instead of the identity start (``model.fgram.init``), trained after
    the main runs."""
    scone = next(r for r in runs() if r["fgrams"] == A_SWEEP_FGRAMS and r["a"] == "1x")
    return [{**scone, "name": f"{scone['name']}-olmoinit", "init": "olmo", "ablation": True}]


def all_runs() -> List[Dict]:
    return runs() + ablation_runs()


def select_runs(only: Optional[Sequence[str]], every: Optional[List[Dict]] = None) -> List[Dict]:
    """The runs of ``every`` (this study's by default) named by ``--only`` (all when none); an
    unknown name is an error, not a no-op."""
    every = all_runs() if every is None else every
    if not only:
        return every
    names = {r["name"] for r in every}
    unknown = [n for n in only if n not in names]
    if unknown:
        fail(
            f"unknown run(s) {', '.join(unknown)}; the study's runs are: {', '.join(sorted(names))}"
        )
    return [r for r in every if r["name"] in set(only)]


def execution_order(selected: Sequence[Dict], first: Optional[Sequence[str]] = None) -> List[Dict]:
    """The order runs are trained in: the central comparison first (this study's: baseline-m vs
    SCONE-m at the middle f-gram count), so that a study cut short still answers its first question."""
    first = list(first or ["baseline-m", f"scone-m-{A_SWEEP_FGRAMS // 1000}k-a1x", "baseline-2m"])
    return sorted(
        selected, key=lambda r: first.index(r["name"]) if r["name"] in first else len(first)
    )


def vocab_file(root: Path, fgrams: int) -> Path:
    """Where the study keeps its vocabulary of ``fgrams`` f-grams (one name for builder and runs)."""
    return root / f"fgrams-{fgrams // 1000}k.safetensors"


def tags_dir(root: Path, fgrams: int) -> Path:
    return root / f"tags-{fgrams // 1000}k"


def run_folder(root: Path, name: str, seed: int = SEED) -> Path:
    """Where one run of the study trains: ``root/NAME`` for the study's own seed (as before seeds
    were added), ``root/seedN/NAME`` for the others; data, vocabularies and tags are shared."""
    return root / name if seed == SEED else root / f"seed{seed}" / name


def run_label(name: str, seed: int = SEED) -> str:
    return name if seed == SEED else f"{name}-seed{seed}"


@dataclasses.dataclass(frozen=True)
class Shape:
    """What a study fixes for all its runs: the main model's width, heads and context, the batch,
    ``A_fgram``'s depth per size, the learning rate, and how often runs evaluate and save."""

    d_model: int
    heads: int
    seq: int
    batch: int
    a_layers: Dict[str, int]
    learning_rate: float
    group: str
    evals_per_run: int
    saves_per_run: int


#: this study's shape
SHAPE = Shape(D_MODEL, HEADS, SEQ, BATCH, A_LAYERS, 0.002, "repro-cpu", 8, 3)


def study_command(
    root: Path, data: Path, steps: int, r: Dict, seed: int, shape: Shape
) -> tuple[str, List[str]]:
    """The config and the key=value overrides of one run of a study of ``shape``."""
    cfg = "configs/olmo/tiny-scone.yaml" if r["fgrams"] else "configs/olmo/tiny-baseline.yaml"
    label = run_label(r["name"], seed)
    args = [
        f"save_folder={run_folder(root, r['name'], seed)}",
        f"run_name={label}",
        f"wandb.name={label}",
        *tiny_cpu(
            steps,
            data,
            group=shape.group,
            eval_every=max(1, steps // shape.evals_per_run),
            warmup=max(1, steps // 20),
            save_every=max(1, steps // shape.saves_per_run),
            eval_batches=25,
            seed=seed,
            global_batch=shape.batch,
        ),
        f"optimizer.learning_rate={shape.learning_rate:g}",
        f"model.d_model={shape.d_model}",
        f"model.n_heads={shape.heads}",
        f"model.n_layers={r['layers']}",
        f"model.max_sequence_length={shape.seq}",
        f"model.rope={str(r['rope']).lower()}",
    ]
    if r["fgrams"]:
        args += [
            f"model.fgram.vocab_path={vocab_file(root, r['fgrams'])}",
            f"data.fgram_tags={tags_dir(root, r['fgrams'])}",
            f"model.fgram.n_layers={shape.a_layers[r['a']]}",
            f"model.fgram.n_heads={shape.heads}",
            f"model.fgram.init={r['init']}",
        ]
    return cfg, args


def train_command(
    root: Path, data: Path, steps: int, r: Dict, seed: int = SEED
) -> tuple[str, List[str]]:
    """The config and the key=value overrides of one run of this study."""
    return study_command(root, data, steps, r, seed, SHAPE)


class Study:
    def __init__(self, root: Path, steps: int, dry: bool):
        self.root, self.steps, self.dry = root, steps, dry
        self.data = root / "data"
        self.log: List[str] = []

    def sh(self, cmd: List[str], done: Optional[Path] = None) -> None:
        line = " ".join(shlex.quote(portable(c)) for c in cmd)
        self.log.append(line)
        if done is not None and done.exists():
            print(f"# done: {done}", flush=True)
            return
        print(line, flush=True)
        if not self.dry:
            r = subprocess.run(cmd, cwd=REPO)
            if r.returncode != 0:
                fail(f"study step failed (exit {r.returncode}): {line[:200]}")

    def prepare(self, selected: Sequence[Dict]) -> None:
        self.prepare_tokens()
        self.build_fgrams(selected)

    def prepare_tokens(self) -> None:
        mix = SHARED_DATA / "english-mix"
        if not mix.is_dir():
            fail(
                f"{mix} not found: the reproduction study needs ../shared/data (OLMO_SCONE_SHARED_DATA=...)"
            )
        # always run: prepare_data.py reuses a finished identical output in a second, and refuses a
        # directory holding other token files (e.g. made by an older pipeline) instead of using it
        self.sh(
            [
                PY,
                "scripts/prepare_data.py",
                str(mix / "*.jsonl.gz"),
                "--valid-fraction",
                "0.02",
                "--out",
                str(self.data),
            ]
        )

    def build_fgrams(self, selected: Sequence[Dict]) -> None:
        """The vocabulary and sidecar of every f-gram count the selected runs use."""
        for s in sorted({r["fgrams"] for r in selected if r["fgrams"]}):
            vocab, tags = vocab_file(self.root, s), tags_dir(self.root, s)
            self.sh(
                [
                    PY,
                    "scripts/build_fgrams.py",
                    "--tokens",
                    str(self.data),
                    "--num-fgrams",
                    str(s),
                    "--out",
                    str(vocab),
                ],
                vocab,
            )
            if not self.dry:
                check_vocab_size(vocab, s)
            self.sh(
                [
                    PY,
                    "scripts/tag_fgrams.py",
                    "--vocab",
                    str(vocab),
                    "--tokens",
                    str(self.data),
                    "--out",
                    str(tags),
                ],
                tags / "fgram_tags.json",
            )
            if not self.dry:
                check_tags_match(tags, self.data)

    def train_command(self, r: Dict, seed: int) -> tuple[str, List[str]]:
        return train_command(self.root, self.data, self.steps, r, seed)

    def train(self, r: Dict, seed: int) -> Path:
        folder = run_folder(self.root, r["name"], seed)
        cfg, args = self.train_command(r, seed)
        # always run: the trainer does nothing for a finished run, resumes an interrupted one, continues
        # one whose --steps grew, and refuses a folder trained with another --seed (train/run_state.py)
        # the default port: the command is recorded for people to copy
        self.sh([*torchrun_command(2, own_port=False), "scripts/train.py", cfg, *args])
        if not r["fgrams"]:
            return folder
        art = folder.parent / f"{r['name']}-served"
        self.sh(
            [PY, "scripts/export_embeddings.py", str(folder), "--out", str(art), "--dtype", "bf16"],
            art / "manifest.json",
        )
        return art

    def evaluate(self, r: Dict, model: Path, seed: int) -> Dict[str, float]:
        """Both held-out perplexities of one run (each evaluation is skipped when its file exists)."""
        wiki = SHARED_DATA / "wikitext" / "wiki.valid.tokens"
        out: Dict[str, float] = {}
        for name, flags in (
            ("wikitext103-valid", ["--text", str(wiki)]),
            ("english-mix-valid", ["--tokens", str(self.data)]),
        ):
            path = run_folder(self.root, r["name"], seed) / f"eval-{name}.json"
            self.sh(
                [
                    PY,
                    "scripts/evaluate.py",
                    str(model),
                    "--table",
                    "mmap",
                    *flags,
                    "--out",
                    str(path),
                ],
                path,
            )
            if not self.dry:
                out[name] = json.loads(path.read_text())["perplexity"]
        return out

    def run(self, r: Dict, seed: int, records: Optional[Path]) -> None:
        """Train, export and evaluate one run, then keep its result as a record in ``records`` (the
        study's durable state: a recorded run is not trained again, in this checkout or another)."""
        from .repro_seeds import read_record, write_record

        if records is not None and read_record(records, r["name"], seed, self.steps) is not None:
            print(f"# recorded: {r['name']} seed {seed} ({records})", flush=True)
            return
        start = len(self.log)
        evals = self.evaluate(r, self.train(r, seed), seed)
        if records is not None and not self.dry:
            extra = self.record_extra(r, seed)
            write_record(records, r["name"], seed, self.steps, evals, self.log[start:], extra)

    def record_extra(self, r: Dict, seed: int) -> Optional[Dict]:
        """What a record keeps beside the perplexities (nothing, in this study)."""
        return None


def portable(arg: str) -> str:
    """``arg`` with this checkout's absolute paths made relative to the repository root (where every
    command runs), so a printed command can be pasted into another clone; paths elsewhere stay."""
    arg = arg.replace(f"{REPO}/", "")
    if REPO.parent != Path(REPO.anchor):
        arg = arg.replace(f"{REPO.parent}/", "../")
    return arg


def check_vocab_size(vocab: Path, asked: int) -> None:
    """A run named for S f-grams must have S: a corpus with fewer frequent n-grams gives a smaller
    vocabulary, and a study that silently used it would mislabel its axis."""
    from ..fgrams.vocab import load_vocab

    got = len(load_vocab(vocab))
    if got < asked:
        fail(
            f"{vocab} holds {got:,} f-grams, fewer than the {asked:,} its runs are named for "
            "(the corpus has too few n-grams seen --min-count times); use a smaller count"
        )


def check_tags_match(tags: Path, data: Path) -> None:
    """Sidecar tags left in the study folder from other token files are refused, not reused."""
    made_for = json.loads((tags / "fgram_tags.json").read_text()).get("tokens_fingerprint")
    have = json.loads((data / "manifest.json").read_text()).get("fingerprint")
    if made_for != have:
        fail(
            f"{tags} was made for other token files than {data}; move the study folder away and run again"
        )


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = ArgumentParser(prog="repro.py", description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--root", type=Path, default=REPO / "runs" / "repro-cpu", help="the study's working folder"
    )
    p.add_argument(
        "--steps",
        type=int,
        default=DEFAULT_STEPS,
        help="training steps per run (default: %(default)s)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[SEED],
        help="training seeds (each draws the initialisation and the data order); with more than "
        "one, every run is recorded in --records and the error-bar report is written "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--records",
        type=Path,
        default=None,
        help="where finished runs are recorded and, once recorded, not trained again (default with "
        "several seeds: docs/results-cpu-runs)",
    )
    p.add_argument("--only", nargs="*", help="run names to train/evaluate (default: all)")
    p.add_argument(
        "--print",
        dest="dry",
        action="store_true",
        help="print every command (done ones too), run nothing",
    )
    p.add_argument(
        "--report",
        action="store_true",
        help="only rewrite the report from the runs that have finished",
    )
    p.add_argument(
        "--doc",
        type=Path,
        default=REPO / "docs" / "results.md",
        help="where the report is spliced in",
    )
    a = p.parse_args(argv)
    if a.steps < 3:
        fail(f"--steps must be at least 3, got {a.steps}")
    seeded = len(set(a.seeds)) > 1
    records = a.records or (RECORDS if seeded else None)
    selected = select_runs(a.only)
    study = Study(a.root, a.steps, a.dry or a.report)
    study.prepare(selected)
    for seed in dict.fromkeys(a.seeds):  # seed by seed: a study cut short has whole seeds
        for r in execution_order(selected):
            study.run(r, seed, records)
    if a.dry:
        return 0
    if seeded:
        from .repro_seeds import read_records, seeds_report

        print(seeds_report(read_records(records, a.steps), a.steps, a.doc))
        return 0
    from .repro_report import collect, report

    rows = collect(a.root)
    if not rows:
        fail(f"no finished run under {a.root} to report on")
    print(report(a.root, rows, study.log, a.steps, a.doc, a.seeds[0]))
    return 0
