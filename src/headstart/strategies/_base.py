"""The `Strategy` interface and its registry.

A strategy is a plain object: it prepares the backbone and head (``setup``:
freeze, re-initialise, wrap), says how a batch becomes a loss
(``training_step``), which parameters learn at which rate (``param_groups``)
and what changes per epoch (``on_epoch_start``). The engine runs the loop.
A strategy that needs no gradient loop (the cached-feature linear probe)
overrides ``fit``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..backbones import Backbone
from ..config import FitConfig
from ..data import Dataset
from ..errors import ConfigError
from ..heads import Head

_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register under ``cls.name``; a duplicate name is an error."""
    if cls.name in _STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    _STRATEGIES[cls.name] = cls
    return cls


def list_strategies() -> list[str]:
    return sorted(_STRATEGIES)


def get_strategy(name: str) -> type[Strategy]:
    if name not in _STRATEGIES:
        raise ConfigError(f"option --strategy: {name!r} is unknown; choose one of {', '.join(list_strategies())}")
    return _STRATEGIES[name]


@dataclass
class FitContext:
    """What a strategy's ``fit`` gets: resolved config, data, model parts, where to write."""

    cfg: FitConfig
    data: Dataset
    backbone: Backbone
    head: Head
    run_dir: Path
    cache_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


class Strategy:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.backbone: Backbone | None = None
        self.head: Head | None = None

    # -- override points -------------------------------------------------------
    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        self.backbone, self.head = backbone, head

    def training_step(self, batch: tuple[Any, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.head(self.backbone.forward_features(x))
        return {"loss": self.head.loss(logits, y, self.cfg.label_smoothing), "logits": logits}

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return with_weight_decay([{"params": list(self.backbone.parameters()) + list(self.head.parameters()), "lr": lr}],
                                 self.cfg.weight_decay)

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the engine at the start of each training epoch (after Lightning set train mode)."""

    def fit(self, ctx: FitContext) -> None:
        from ..engine import train

        train(self, ctx)

    # -- helpers (static: no override needed) ----------------------------------
    @staticmethod
    def freeze(modules: list[nn.Module]) -> None:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(False)

    @staticmethod
    def set_bn_eval(modules: list[nn.Module]) -> None:
        """Frozen groups keep BatchNorm statistics fixed (the usual silent failure otherwise)."""
        for m in modules:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def with_weight_decay(groups: list[dict[str, Any]], weight_decay: float) -> list[dict[str, Any]]:
    """Split each group: no weight decay on biases and normalisation weights (1-D tensors)."""
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        rest = {k: v for k, v in g.items() if k != "params"}
        if decay:
            out.append({**rest, "params": decay, "weight_decay": weight_decay})
        if no_decay:
            out.append({**rest, "params": no_decay, "weight_decay": 0.0})
    return out
