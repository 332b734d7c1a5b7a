"""``joint``: train on a labeled source dataset and the target at once.

One shared backbone, two heads (source classes, target classes), one loss:

    loss = L_source + lambda(t) * L_target

the formulation of training both tasks together (multi-task transfer, e.g.
Caruana 1997; the "joint training" baseline of Li & Hoiem's LwF,
https://arxiv.org/abs/1606.09282). ``--source-data`` is any labeled data
headstart reads (folder, table, built-in), all of it used; it must be the
target's modality. ``--joint-lambda`` weighs the target; ``--joint-schedule``
moves it over training: ``constant``, ``linear`` (0 at the first epoch up to
lambda at the last: source first, target last) or ``cosine`` (the same, smooth);
a one-epoch fit gets the full lambda.

Batches are random draws from the union of both sets, so their mix follows the
sizes; each loss is the mean over its own examples in the batch. Only the target
model (backbone + target head) is saved; the source head is discarded. Freezing
and discriminative learning rates are ``finetune``'s; the frozen-layer cache is
not used (the source examples would need their own).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ...config import _opt
from ...data import BUILTINS, load_data
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import register_strategy, with_weight_decay
from .finetune import FineTune

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    import torch
    from torch import nn

SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class JointOptions:
    source_data: str | None = _opt(None, "joint: labeled source data (folder, table or built-in) trained together with the target.")
    joint_lambda: float = _opt(1.0, "joint: weight of the target loss: L_source + lambda * L_target.")
    joint_schedule: str = _opt("constant", "joint: how lambda moves over the epochs: constant, linear (0 -> lambda), cosine.")

    def __post_init__(self) -> None:
        if not self.source_data:
            raise ConfigError("strategy joint needs --source-data: labeled source data (folder, table or built-in)")
        if self.source_data not in BUILTINS and not Path(self.source_data).expanduser().exists():
            raise ConfigError(f"option --source-data: {self.source_data} does not exist (built-in data sets: {', '.join(BUILTINS)})")
        if not self.joint_lambda > 0:
            raise ConfigError(f"option --joint-lambda: {self.joint_lambda} must be positive")
        if self.joint_schedule not in SCHEDULES:
            raise ConfigError(f"option --joint-schedule: '{self.joint_schedule}' is not one of {', '.join(SCHEDULES)}")


def target_weight(lam: float, schedule: str, epoch: int, epochs: int) -> float:
    """lambda at ``epoch`` (0-based) of ``epochs``: a ramp reaches the full lambda at the last epoch.

    A one-epoch fit has no room to ramp: it gets the full lambda (a ramp would start, and so end, at 0 and
    leave the target head untrained).
    """
    if epochs <= 1:
        return lam
    progress = epoch / (epochs - 1)
    if schedule == "linear":
        return lam * progress
    if schedule == "cosine":
        return lam * 0.5 * (1.0 - math.cos(math.pi * progress))
    return lam


@register_strategy
class Joint(FineTune):
    tasks = ("binary", "multiclass")  # the source and target classes share one label space in a batch
    name = "joint"
    summary = "source and target data at once: shared backbone, two heads, L_source + lambda * L_target"
    Options = JointOptions

    no_frozen_cache = "joint training; the source examples are not cached"

    def prepare(self, ctx: FitContext) -> None:
        from ...heads import make_head

        cfg = self.cfg
        self.source = load_data(self.opts.source_data, header=cfg.header, strict=cfg.strict, seed=cfg.seed)
        if self.source.modality != ctx.data.modality:
            raise ConfigError(f"option --source-data: {self.opts.source_data} holds {self.source.modality}s but the target "
                              f"{cfg.data} holds {ctx.data.modality}s; both must be one modality")
        if self.source.task not in ("binary", "multiclass"):
            raise ConfigError(f"option --source-data: task {self.source.task} is not supported as a source")
        self.source_head = make_head(self.source.task, ctx.backbone.num_features, self.source.num_classes, cfg.dropout)
        self.lam = target_weight(self.opts.joint_lambda, self.opts.joint_schedule, 0, cfg.epochs)
        ctx.info.update({"source_data": self.opts.source_data, "source_examples": len(self.source.items),
                         "source_classes": self.source.num_classes})
        super().prepare(ctx)

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]:
        return {"source_head": self.source_head}

    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        """Target training examples, then every source example with its class id offset by the target's class count."""
        data = ctx.data
        items, y = data.subset(data.train_idx)
        self.offset = data.num_classes
        return items + self.source.items, np.concatenate([y, self.source.y + self.offset])

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        super().on_epoch_start(epoch, ctx)
        self.lam = target_weight(self.opts.joint_lambda, self.opts.joint_schedule, epoch, self.cfg.epochs)

    def epoch_record(self, ctx: FitContext) -> dict[str, Any]:
        return {"lambda": round(self.lam, 6)}

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        x, y = batch
        head = ctx.head
        feats = self.features(x, ctx)
        src = y >= self.offset
        tgt_logits = head(feats[~src])
        zero = feats.sum() * 0.0  # keeps the graph when a batch has no example of one side
        l_tgt = head.loss(tgt_logits, y[~src], self.cfg.label_smoothing) if (~src).any() else zero
        l_src = self.source_head.loss(self.source_head(feats[src]), y[src] - self.offset, self.cfg.label_smoothing) if src.any() else zero
        return {"loss": l_src + self.lam * l_tgt, "logits": tgt_logits, "y": y[~src],
                "log": {"source_loss": l_src.detach(), "target_loss": l_tgt.detach()}}

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        lr = self.base_lr(ctx) * self.head_lr_mult(ctx)
        head = [{"params": list(self.source_head.parameters()), "lr": lr, "name": "source_head"}]
        return super().param_groups(ctx) + with_weight_decay(head, self.cfg.weight_decay)
