"""A DeepSpeed ZeRO trainer for SCONE and baseline OLMo models, built from OLMo's pieces.

Why not a subclass of ``olmo.train.Trainer``: OLMo 0.6.0's ``Trainer`` is a dataclass whose
``fit``/``train_step``/checkpointing are written against FSDP/DDP modules, OLMo's checkpointers and
its data loader; none of them accepts a DeepSpeed engine. We reuse what is model- and
strategy-agnostic: ``SconeTrainConfig`` (OLMo's ``TrainConfig``), OLMo's param groups
(``get_param_groups``: no weight decay on norms/biases/embeddings as configured), OLMo's LR
schedulers (``build_scheduler``), and OLMo's loss convention (next-token cross-entropy over the
token vocabulary). DeepSpeed owns the ZeRO partitioning, gradient accumulation, clipping,
precision and checkpoint files.

Run with ``torchrun``: ``torchrun --nproc_per_node=N scripts/train.py CONFIG [key=value ...]``.
On CPU the process group uses gloo; on GPUs, NCCL.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from ..config import SconeTrainConfig
from ..data.sources import TokenFiles
from ..errors import fail, full_disk
from ..malloc import keep_large_allocations
from ..peak_memory import peak_rss_gb
from .data import TrainBatches
from .ds_config import deepspeed_config
from .publish import read_latest
from .run_state import (
    FINISHED_FILE,
    plan_start,
    record_finish,
    record_start,
    run_identity,
    wandb_id,
)

CLIENT_STATE = "scone_trainer_state"


def max_steps(cfg: SconeTrainConfig, files: Optional[TokenFiles] = None) -> int:
    """``max_duration`` in steps. OLMo's three forms: steps (``1000``), tokens (``2e11T``) and
    epochs (``2ep``: whole passes over the train instances, which needs the token ``files``)."""
    d = cfg.max_duration
    tokens_per_step = cfg.global_train_batch_size * cfg.model.max_sequence_length
    try:
        if isinstance(d, str) and d.endswith("ep"):
            if files is None:
                raise ValueError("epochs need the training data")
            instances = sum(f.length // cfg.model.max_sequence_length for f in files.files)
            return int(float(d[:-2]) * instances // cfg.global_train_batch_size)
        if isinstance(d, str) and d.endswith("T"):
            steps = int(float(d[:-1]) // tokens_per_step)
            if steps <= 0 < float(d[:-1]):
                fail(
                    f"max_duration {d!r} is less than one step ({tokens_per_step:,} tokens: "
                    "global_train_batch_size x max_sequence_length)"
                )
            return steps
        return int(d)
    except (TypeError, ValueError):
        fail(f"max_duration {d!r} is neither a number of steps, tokens (2e11T) nor epochs (2ep)")


def check_tokenizer(cfg: SconeTrainConfig, data_tokenizer: Dict[str, Any]) -> None:
    """The config's tokenizer is the one the token files were made with (by sha256), and the
    model's EOS id is that tokenizer's."""
    from ..data.tokenizers import resolve_tokenizer
    from ..serving.cli import tokenizer_name

    tok = resolve_tokenizer(tokenizer_name(cfg))
    if tok.sha256 != data_tokenizer["sha256"]:
        fail(
            f"tokenizer.identifier {cfg.tokenizer.identifier} (sha256 {tok.sha256[:12]}) is not the tokenizer the "
            f"training data was made with ({data_tokenizer['name']}, sha256 {data_tokenizer['sha256'][:12]})"
        )
    if cfg.model.eos_token_id != tok.eos_token_id:
        fail(
            f"model.eos_token_id {cfg.model.eos_token_id} is not the EOS id of {tok.name} ({tok.eos_token_id}): "
            f"set model.eos_token_id={tok.eos_token_id} model.pad_token_id={tok.pad_token_id}"
        )


def preflight(cfg: SconeTrainConfig, world_size: int, resume: bool = False):
    """Check the config against the data before training starts, and decide what this launch does
    with the save_folder (run_state.py); returns the f-gram vocabulary, that plan, the run's
    identity and the training token files."""
    from ..fgrams.vocab import load_vocab
    from ..data.sources import check_all_token_ids
    from .data import check_sidecar, train_token_files
    from ..outputs import refuse_overlap
    from .olmo_keys import refuse_unsupported
    from .values import check_values

    refuse_unsupported(cfg)  # OLMo keys this trainer would otherwise ignore
    check_values(cfg, world_size)  # every numeric key in range, before anything is read or written
    refuse_overlap(
        cfg.save_folder,
        {
            "data.tokens_dir": cfg.data.tokens_dir,
            "data.fgram_tags": cfg.data.fgram_tags,
            "model.fgram.vocab_path": cfg.model.fgram.vocab_path,
            **{f"data.paths {x}": x for x in cfg.data.paths or []},
        },
        flag="save_folder",
    )
    deepspeed_config(cfg, world_size)  # batch sizes, precision, ZeRO stage
    files = train_token_files(cfg)
    check_tokenizer(cfg, files.tokenizer)
    check_all_token_ids(files)
    if files.tokenizer["vocab_size"] > cfg.model.vocab_size:
        fail(
            f"model.vocab_size {cfg.model.vocab_size} is smaller than the tokenizer's {files.tokenizer['vocab_size']}"
        )
    vocab = None
    if cfg.model.fgram.enabled:
        cfg.model.fgram.check()
        if cfg.model.fgram.vocab_path is None:
            fail("model.fgram.vocab_path is not set")
        vocab = load_vocab(cfg.model.fgram.vocab_path, tokenizer_sha256=files.tokenizer["sha256"])
        if cfg.data.fgram_tags is None:
            fail("a SCONE model needs data.fgram_tags (the sidecar made by scripts/tag_fgrams.py)")
        if not Path(cfg.data.fgram_tags).exists():
            fail(f"data.fgram_tags not found: {cfg.data.fgram_tags}")
        check_sidecar(files, Path(cfg.data.fgram_tags), vocab.sha256, len(vocab))
    if max_steps(cfg, files) <= 0:
        fail(
            f"max_duration {cfg.max_duration!r} is not a positive number of steps (or tokens, 2e11T, or epochs, 2ep)"
        )
    identity = run_identity(cfg, files.fingerprint, vocab.sha256 if vocab is not None else None)
    plan = plan_start(cfg, identity, max_steps(cfg, files), resume or cfg.load_path == "latest")
    if plan.resume:
        from .checkpoint import check_checkpoint
        from .publish import checkpoint_world_size

        # truncated, missing or crafted files: one line, before any process group
        check_checkpoint(cfg.save_folder, plan.tag)
        saved_world = checkpoint_world_size(Path(cfg.save_folder), plan.tag)
        if saved_world != world_size:
            fail(
                f"{cfg.save_folder}/{plan.tag} was saved by {saved_world} rank(s), this launch has {world_size}: "
                f"relaunch with --nproc_per_node={saved_world} (a ZeRO optimizer partition is per rank)"
            )
    return vocab, plan, identity, files


def _rng_state() -> Dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }


def _set_rng_state(s: Dict[str, Any]) -> None:
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    torch.set_rng_state(s["torch"])


class SconeTrainer:
    def __init__(self, cfg: SconeTrainConfig, resume: bool = False):
        import deepspeed
        from olmo.optim import build_scheduler, get_param_groups

        from ..model import SconeOLMo

        self.cfg = cfg
        self.save_folder = Path(cfg.save_folder)
        world = int(os.environ.get("WORLD_SIZE", "1"))
        # every config/data error, and what to do with the save_folder, before any process group exists
        vocab, self.plan, self.identity, files = preflight(cfg, world, resume)
        if vocab is None:
            # baselines: CPU steps free and re-allocate the same 100+ MB tensors, kept in the heap
            # (olmo_scone/malloc.py). Not with SCONE: its per-batch f-gram tensors vary in size,
            # and with 1 GiB thresholds the heap fragmented by ~100 MB a step until the OOM killer
            # ended a study run at 10.5 GB (docs/benchmarks.md); glibc's default stays flat.
            keep_large_allocations()
        # relaunching a finished run: nothing is built, nothing written
        if self.plan.action == "done":
            return
        cuda = torch.cuda.is_available()
        deepspeed.init_distributed(dist_backend="nccl" if cuda else "gloo")
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.device = torch.device(
            f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu"
        )
        if cuda:
            torch.cuda.set_device(self.device)
        ds_cfg = self.ds_config = deepspeed_config(cfg, self.world)
        torch.manual_seed(cfg.seed)
        model_cfg = cfg.model
        # init_device cpu: the initial weights come from the CPU generator, the same on every machine
        # (a GPU run then starts where a CPU run with the seed does); anything else: built in place
        if model_cfg.init_device != "cpu":
            model_cfg.init_device = str(self.device)
        self.model = SconeOLMo(model_cfg, fgram_vocab=vocab).to(self.device)
        # OLMo's strategies, for the main model and A_fgram alike
        if cfg.activation_checkpointing is not None:
            self.model.set_activation_checkpointing(cfg.activation_checkpointing)
            if self.model.fgram_model is not None:
                for block in self.model.fgram_model.blocks:
                    block.set_activation_checkpointing(cfg.activation_checkpointing)
        self.batches = TrainBatches(
            files,
            model_cfg.max_sequence_length,
            cfg.global_train_batch_size,
            cfg.device_train_microbatch_size,
            self.world,
            self.rank,
            cfg.seed,
            tags_dir=cfg.data.fgram_tags,
            vocab=vocab,
        )
        if vocab is not None:  # in-loop evaluation matches with the same (memory-mapped) index
            self.model._matcher = self.batches.matcher
        o = cfg.optimizer
        if o.name != "adamw":
            fail(f"optimizer.name {o.name!r}: this trainer runs AdamW (the paper's optimizer)")
        optimizer = torch.optim.AdamW(
            get_param_groups(cfg, self.model),
            lr=o.learning_rate,
            betas=tuple(o.betas),
            weight_decay=o.weight_decay,
            eps=o.eps,
        )
        self.engine, self.optimizer, _, _ = deepspeed.initialize(
            model=self.model, optimizer=optimizer, config=ds_cfg
        )
        self.scheduler = build_scheduler(cfg)
        self.max_steps = max_steps(cfg, files)
        self.step = 0
        self.tokens_seen = 0
        from ..accounting import training_flops_rates

        # OLMo's throughput/total_training_Gflops (accounting.py): per token, and per f-gram run
        self.flops_per_token, self.flops_per_fgram = training_flops_rates(
            cfg.model, len(vocab) if vocab is not None else None
        )
        self.training_flops = 0.0
        if self.plan.resume:
            self._resume()
        self.metrics_path = self.save_folder / "metrics.jsonl"
        from .evaluation import build_evaluators

        self.evaluators = build_evaluators(cfg, self.device) if cfg.evaluators else []
        self.autocast = torch.bfloat16 if cfg.precision == "amp_bf16" else None
        self.wandb = None  # started in fit(), once run.json holds this run's W&B id

    # ---- checkpoints ------------------------------------------------------------------
    def save(self) -> None:
        """Save ``step<N>`` and publish it only once every rank's files are whole (publish.py): a
        kill or a full disk at any moment leaves ``latest`` on the previous, whole checkpoint."""
        from .publish import fsync_files, own_files, publish, staging_tag

        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "training_flops": self.training_flops,
            "rng": _rng_state(),
            "world_size": self.world,
        }
        staged = self.save_folder / staging_tag(self.step)
        report: Dict[str, Any] = {"ok": True}
        try:
            self.engine.save_checkpoint(
                str(self.save_folder),
                tag=staging_tag(self.step),
                client_state={CLIENT_STATE: state},
                save_latest=False,
            )
            report["files"] = fsync_files(own_files(staged, self.rank))
        except (OSError, RuntimeError) as e:  # torch.save reports a full disk as a RuntimeError
            if not full_disk(e, self.save_folder):
                raise
            report = {"ok": False, "error": "no space left on device"}
        reports: List[Dict[str, Any]] = [None] * self.world  # type: ignore[list-item]
        dist.all_gather_object(reports, report)
        failed = [r for r in reports if not r["ok"]]
        if failed:
            if self.rank == 0:
                shutil.rmtree(staged, ignore_errors=True)  # the disk must not stay full of it
            kept = read_latest(self.save_folder) or "none"
            fail(
                f"{failed[0]['error']} saving checkpoint step{self.step} in {self.save_folder}: 'latest' still "
                f"points at the last whole checkpoint ({kept}); free space, then resume"
            )
        if self.rank == 0:
            publish(
                self.save_folder,
                self.step,
                self.world,
                [r["files"] for r in reports],
            )
            prune_checkpoints(self.save_folder, self.cfg.save_num_checkpoints_to_keep)
        dist.barrier()  # no rank goes on (or exits) before the checkpoint is published

    def _resume(self) -> None:
        from .checkpoint import weights_only_loading

        # DeepSpeed's loader would unpickle anything: see checkpoint.py
        with weights_only_loading():
            _, client = self.engine.load_checkpoint(str(self.save_folder), tag=self.plan.tag)
        state = client[CLIENT_STATE]
        self.step, self.tokens_seen = int(state["step"]), int(state["tokens_seen"])
        # checkpoints from before the FLOPs count: the main model's part, from the tokens
        self.training_flops = float(
            state.get("training_flops", self.flops_per_token * self.tokens_seen)
        )
        _set_rng_state(state["rng"])

    # ---- one step -----------------------------------------------------------------------
    def _loss(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        ids = batch["input_ids"].to(self.device)
        fb = batch.get("fgram_batch")
        out = self.engine(ids, fgram_batch=fb.to(self.device) if fb is not None else None)
        logits = out.logits[:, :-1].float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))

    def step_flops(self, m: Dict[str, float]) -> float:
        """This step's training FLOPs: its tokens through the main model, and the unique f-grams
        every micro-batch ran through A_fgram (this rank's mean, times the micro-batches of a step)."""
        micro_batches = self.cfg.global_train_batch_size // self.cfg.device_train_microbatch_size
        unique = m.get("scone/unique_fgrams_per_microbatch", 0.0) * micro_batches
        tokens = self.cfg.global_train_batch_size * self.cfg.model.max_sequence_length
        return self.flops_per_token * tokens + self.flops_per_fgram * unique

    def train_step(self) -> Dict[str, float]:
        lr = self.scheduler.get_lr(self.cfg.optimizer.learning_rate, self.step, self.max_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.engine.train()
        losses = []
        fgram = {"matched": 0, "positions": 0, "unique": 0, "micro": 0}
        for batch in self.batches.micro_batches(self.step):
            fb = batch.get("fgram_batch")
            if fb is not None:
                fgram["matched"] += int(fb.inverse.numel())
                fgram["positions"] += int(fb.matched.numel())
                fgram["unique"] += fb.num_unique
                fgram["micro"] += 1
            loss = self._loss(batch)
            self.engine.backward(loss)
            # torch >= 2.13: ZeRO's all-gather into views trips autograd's view check otherwise
            with torch.no_grad():
                self.engine.step()
            losses.append(loss.detach())
        mean = torch.stack(losses).mean()
        dist.all_reduce(mean)
        self.step += 1
        self.tokens_seen += self.cfg.global_train_batch_size * self.cfg.model.max_sequence_length
        return step_metrics(
            mean.item() / self.world,
            [g["lr"] for g in self.optimizer.param_groups],
            self.engine.get_global_grad_norm(),
            fgram,
        )

    # ---- the loop -----------------------------------------------------------------------
    def fit(self) -> None:
        cfg = self.cfg
        if self.plan.action == "done":
            if int(os.environ.get("RANK", "0")) == 0:
                print(self.plan.message, flush=True)
            return
        if self.rank == 0:
            self.save_folder.mkdir(parents=True, exist_ok=True)
            # the resolved config, beside the checkpoints: what export and evaluation rebuild the model from
            from ..atomic import atomic_write_json, atomic_write_text
            from omegaconf import OmegaConf

            atomic_write_text(
                self.save_folder / "config.yaml", OmegaConf.to_yaml(OmegaConf.structured(cfg))
            )
            # the DeepSpeed config this run really used (derived from the YAML + deepspeed.config_path)
            atomic_write_json(self.save_folder / "ds_config.json", self.ds_config)
            if self.plan.action == "fresh":
                # the old record, curve and checkpoint pointer go: none is this run's
                record_start(cfg, self.identity)
            else:  # resuming (perhaps a finished run whose max_duration grew): not finished until it is
                (self.save_folder / FINISHED_FILE).unlink(missing_ok=True)
            if self.plan.message:
                print(self.plan.message, flush=True)
            if cfg.wandb is not None:
                self.wandb = self._init_wandb()
        t_last, tokens_last, step_last = time.time(), self.tokens_seen, self.step
        deadline = _deadline(cfg.time_limit)
        first_step = self.step
        while self.step < self.max_steps:
            # every launch trains at least one step: a time_limit shorter than the start-up must not
            # save the same checkpoint and exit on every relaunch
            if self.step > first_step and _past(deadline):
                self.save()
                if self.rank == 0:
                    print(
                        f"time_limit of {cfg.time_limit:g} s reached at step {self.step}/{self.max_steps}: "
                        "checkpoint saved; launch the same command again to continue",
                        flush=True,
                    )
                return
            m = self.train_step()
            stop_if_not_finite(m, self.step)
            now = time.time()
            self.training_flops += self.step_flops(m)
            seconds = max(now - t_last, 1e-9)
            m.update(
                {
                    "step": self.step,
                    "tokens": self.tokens_seen,
                    "throughput/total_tokens": self.tokens_seen,
                    "throughput/total_training_Gflops": self.training_flops / 1e9,
                    "throughput/total_training_log_Gflops": math.log(self.training_flops / 1e9),
                    "throughput/device/tokens_per_second": (self.tokens_seen - tokens_last)
                    / seconds
                    / self.world,
                    "throughput/device/batches_per_second": (self.step - step_last) / seconds,
                    "System/Peak RSS (MB)": peak_rss_gb() * 1024,
                }
            )
            if self.device.type == "cuda":
                m["System/Peak GPU Memory (MB)"] = (
                    torch.cuda.max_memory_allocated(self.device) / 2**20
                )
            if (
                self.evaluators
                and cfg.eval_interval
                and (self.step % cfg.eval_interval == 0 or self.step == self.max_steps)
            ):
                m.update(self.evaluate())
            if self.rank == 0:
                self._log(m)
            if (
                cfg.save_interval
                and self.step % cfg.save_interval == 0
                and self.step < self.max_steps
            ):
                self.save()
            # throughput counts training time only
            t_last, tokens_last, step_last = time.time(), self.tokens_seen, self.step
        self.save()
        if self.rank == 0:
            record_finish(cfg, self.step)
        if self.wandb is not None:
            self.wandb.finish()

    def evaluate(self) -> Dict[str, float]:
        from .evaluation import run_evaluators

        return run_evaluators(self.engine.module, self.evaluators, self.device, self.autocast)

    def _init_wandb(self):
        """W&B run grouped by the config's group/tags; offline (files under save_folder) without an API key."""
        import wandb

        w = self.cfg.wandb
        mode = (
            "online"
            if os.environ.get("WANDB_API_KEY") and os.environ.get("WANDB_MODE") != "offline"
            else "offline"
        )
        self.save_folder.mkdir(parents=True, exist_ok=True)
        return wandb.init(
            project=w.project,
            entity=w.entity,
            group=w.group,
            name=w.name or self.cfg.run_name,
            tags=w.tags,
            config={**self.cfg.asdict(), "deepspeed_config": self.ds_config},
            dir=str(self.save_folder),
            mode=mode,
            resume="allow",
            id=wandb_id(self.save_folder),
        )

    def _log(self, m: Dict[str, Any]) -> None:
        with open(self.metrics_path, "a") as f:
            f.write(json.dumps(json_safe(m), allow_nan=False) + "\n")
        if self.wandb is not None:
            self.wandb.log({k: v for k, v in m.items() if k != "step"}, step=self.step)
        if "eval/valid/Perplexity" in m or any(k.startswith("eval/") for k in m):
            evals = "  ".join(
                f"{k.split('/', 1)[1]} {v:.4g}" for k, v in m.items() if k.startswith("eval/")
            )
            print(f"step {self.step}  {evals}", flush=True)
        if self.cfg.console_log_interval and self.step % self.cfg.console_log_interval == 0:
            print(
                f"step {self.step}/{self.max_steps}  loss {m['train/CrossEntropyLoss']:.4f}  "
                f"lr {m['optim/learning_rate_group0']:.2e}  "
                f"{m['throughput/device/tokens_per_second'] * self.world:,.0f} tok/s",
                flush=True,
            )


def _deadline(time_limit) -> float | None:
    """When this launch must stop (``time_limit``: OLMo's key, seconds of this launch's training)."""
    return None if time_limit is None else time.time() + float(time_limit)


def _past(deadline: float | None) -> bool:
    """Whether the deadline has passed, agreed by every rank (rank 0's clock decides), so all ranks
    save and stop after the same step."""
    if deadline is None:
        return False
    flag = torch.tensor([time.time() >= deadline], dtype=torch.int32)
    if dist.is_initialized():
        if dist.get_backend() == "nccl":
            flag = flag.cuda()
        dist.broadcast(flag, src=0)
    return bool(flag.item())


def stop_if_not_finite(m: Dict[str, float], step: int) -> None:
    """A run that stops learning stops (as OLMo's trainer does): a non-finite loss or gradient norm
    ends it with one line naming the step, before anything of that step is logged or saved. Every
    rank sees the same all-reduced loss and global norm, so all ranks stop together."""
    import math

    for key in ("train/CrossEntropyLoss", "optim/total_grad_norm"):
        v = m.get(key)
        if v is not None and not math.isfinite(v):
            fail(
                f"{key} is {v} at step {step}: training diverged; the last checkpoint is kept and no "
                "finished.json is written (lower optimizer.learning_rate, check the data, or resume from an earlier step)"
            )


def json_safe(m: Dict[str, Any]) -> Dict[str, Any]:
    """Metrics as strict JSON: a non-finite float (an evaluator's inf perplexity) becomes null."""
    import math

    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in m.items()}


def step_metrics(
    loss: float, lrs: List[float], grad_norm, fgram: Dict[str, int]
) -> Dict[str, float]:
    """One step's metrics under OLMo's names (``train/CrossEntropyLoss``, ``train/Perplexity``,
    ``optim/total_grad_norm``, ``optim/learning_rate_group<i>``), so runs overlay with OLMo's on a
    dashboard, plus SCONE's own under ``scone/`` (this rank's micro-batches: matched share of positions,
    unique f-grams a micro-batch, i.e. what ran through A_fgram)."""
    import math

    out = {"train/CrossEntropyLoss": loss, "train/Perplexity": math.exp(min(loss, 50.0))}
    out.update({f"optim/learning_rate_group{i}": lr for i, lr in enumerate(lrs)})
    if grad_norm is not None:
        out["optim/total_grad_norm"] = float(grad_norm)
    if fgram["micro"]:
        out["scone/matched_fraction"] = fgram["matched"] / max(1, fgram["positions"])
        out["scone/unique_fgrams_per_microbatch"] = fgram["unique"] / fgram["micro"]
    return out


def prune_checkpoints(save_folder: Path, keep: int) -> list:
    """OLMo's ``save_num_checkpoints_to_keep``: after a successful save, delete all but the newest
    ``keep`` checkpoints (never the one ``latest`` names); ``keep`` <= 0 keeps everything (OLMo's -1).
    Returns the tags removed."""
    import shutil

    if keep is None or keep <= 0:
        return []
    latest = save_folder / "latest"
    pinned = latest.read_text().strip() if latest.is_file() else None
    tags = sorted(
        (p for p in save_folder.glob("step*") if p.is_dir() and p.name[4:].isdigit()),
        key=lambda p: int(p.name[4:]),
    )
    removed = []
    for p in tags[:-keep]:
        if p.name != pinned:
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p.name)
    return removed
