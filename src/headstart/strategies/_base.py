"""The `Strategy` interface and its registry.

A strategy is a plain object: it prepares the backbone and head (``setup``:
freeze, re-initialise, wrap), says how a batch becomes a loss
(``training_step``), which parameters learn at which rate (``param_groups``)
and what changes per epoch (``on_epoch_start``). The engine runs the loop.
A strategy that needs no gradient loop (the cached-feature linear probe)
overrides ``fit``.

A strategy with its own knobs declares them in an ``Options`` dataclass (help
text in the field metadata, checks in ``__post_init__``, like `FitConfig`); the
CLI turns every field into a ``fit`` flag and the values live in
``FitConfig.options``. Field names are unique across strategies.
"""

from __future__ import annotations

from dataclasses import Field, dataclass, field, fields
from pathlib import Path
import typing
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ..backbones import Backbone
from ..config import FitConfig
from ..data import Dataset
from ..errors import ConfigError
from ..heads import Head

_STRATEGIES: dict[str, type[Strategy]] = {}


def register_strategy(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: register under ``cls.name``; a duplicate name is an error, and so is an
    option name another strategy already uses for a different option."""
    if cls.name in _STRATEGIES:
        raise ValueError(f"strategy {cls.name!r} is already registered")
    if cls.Options is not None:
        mine = {f.name for f in fields(cls.Options)}
        clash = mine & {f.name for f in fields(FitConfig)}
        for other in _STRATEGIES.values():
            if other.Options is not None and other.Options is not cls.Options:
                clash |= mine & {f.name for f in fields(other.Options)}
        if clash:
            raise ValueError(f"strategy {cls.name!r}: option name(s) {', '.join(sorted(clash))} already in use")
    _STRATEGIES[cls.name] = cls
    return cls


def option_fields() -> dict[str, tuple[Field, list[str]]]:
    """Every strategy option: name -> (dataclass field, strategies that take it)."""
    out: dict[str, tuple[Field, list[str]]] = {}
    for name in list_strategies():
        opts = _STRATEGIES[name].Options
        for f in fields(opts) if opts is not None else ():
            out.setdefault(f.name, (f, []))[1].append(name)
    return out


def option_types() -> dict[str, type]:
    """Every strategy option's value type, ``X | None`` unwrapped to ``X`` (for parsing flags)."""
    out: dict[str, type] = {}
    for name, (_f, owners) in option_fields().items():
        hint = typing.get_type_hints(_STRATEGIES[owners[0]].Options)[name]
        out[name] = next((a for a in typing.get_args(hint) if a is not type(None)), hint)
    return out


def options_for(cfg: FitConfig) -> Any:
    """The chosen strategy's Options built from ``cfg.options``; an option of another strategy is an error."""
    cls = get_strategy(cfg.strategy)
    known = option_fields()
    mine = {f.name for f in fields(cls.Options)} if cls.Options is not None else set()
    for key in cfg.options:
        if key not in mine:
            flag = "--" + key.replace("_", "-")
            if key in known:
                raise ConfigError(f"option {flag} belongs to strategy {'/'.join(known[key][1])}, not {cfg.strategy}; "
                                  f"drop it or use --strategy {known[key][1][0]}")
            raise ConfigError(f"option {flag}: unknown (see `headstart fit --help`)")
    return cls.Options(**cfg.options) if cls.Options is not None else None


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
    # [N, F] features of every example in data.items by the final backbone, when the strategy has them (a frozen
    # backbone's cache): evaluation then reuses them instead of running the backbone over the data again.
    features: np.ndarray | None = None


class Strategy:
    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    Options: ClassVar[type | None] = None  # the strategy's own knobs (a dataclass), if any
    # True when the strategy fits on the selection split too (linear: cross-validation over train + selection):
    # scores on that split are then training scores, and the fit does not report them as a selection result.
    fits_selection_split: ClassVar[bool] = False

    def __init__(self, cfg: FitConfig):
        self.cfg = cfg
        self.opts = options_for(cfg)
        self.backbone: Backbone | None = None
        self.head: Head | None = None

    # -- override points -------------------------------------------------------
    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        self.backbone, self.head = backbone, head

    def training_step(self, batch: tuple[Any, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.head(self.features(x))
        return {"loss": self.head.loss(logits, y, self.cfg.label_smoothing), "logits": logits}

    def features(self, x: Any) -> torch.Tensor:
        """Backbone features of a training batch (a strategy may compute them differently, e.g. from a cache)."""
        return self.backbone.forward_features(x)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return with_weight_decay([{"params": list(self.backbone.parameters()) + list(self.head.parameters()), "lr": lr}],
                                 self.cfg.weight_decay)

    def on_epoch_start(self, epoch: int) -> None:
        """Called by the engine at the start of each training epoch (after Lightning set train mode)."""

    def train_examples(self, data: Dataset) -> tuple[list[Any], np.ndarray]:
        """What the training loader iterates over (default: the training split)."""
        return data.subset(data.train_idx)

    def batcher(self, train: bool, augment: str) -> Callable[[list[Any]], Any]:
        """Turns a list of examples into a batch (default: the backbone's preprocessing)."""
        return self.backbone.preprocess(train=train, augment=augment)

    def extra_modules(self) -> dict[str, nn.Module]:
        """Modules trained besides backbone and head (a source head, a discriminator): checkpointed too."""
        return {}

    def epoch_record(self) -> dict[str, Any]:
        """Extra columns for this epoch's history row (e.g. how many groups are unfrozen)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Schedule state saved in resume checkpoints (e.g. which groups are unfrozen)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what ``state_dict`` saved, when a fit resumes."""

    def after_fit(self, ctx: FitContext, metrics: dict[str, Any]) -> dict[str, Any]:
        """Extra sections for metrics.json once the model is saved (e.g. `distill`'s teacher vs student)."""
        return {}

    def teardown(self) -> None:
        """Called once training ends (also on errors): undo temporary changes to the model."""

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
    def unfreeze(modules: list[nn.Module]) -> None:
        for m in modules:
            for p in m.parameters():
                p.requires_grad_(True)

    def frozen_bn_eval(self, modules: list[nn.Module]) -> None:
        """Frozen groups keep their BatchNorm statistics fixed, unless ``--train-bn``.

        In train mode a frozen BatchNorm still overwrites its running mean/var with
        the target data's: the weights stay, the statistics they were trained with do
        not, and accuracy silently drops, worst with small batches.
        """
        if not self.cfg.train_bn:
            self.set_bn_eval(modules)

    @staticmethod
    def set_bn_eval(modules: list[nn.Module]) -> None:
        for m in modules:
            for sub in m.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.eval()


def with_weight_decay(groups: list[dict[str, Any]], weight_decay: float, trainable_only: bool = True) -> list[dict[str, Any]]:
    """Split each group: no weight decay on biases and normalisation weights (1-D tensors).

    ``trainable_only=False`` keeps frozen parameters too, for schedules that unfreeze
    them later (AdamW skips a parameter while its gradient is None).
    """
    out = []
    for g in groups:
        params = [p for p in g["params"] if p.requires_grad or not trainable_only]
        decay = [p for p in params if p.ndim > 1]
        no_decay = [p for p in params if p.ndim <= 1]
        rest = {k: v for k, v in g.items() if k != "params"}
        if decay:
            out.append({**rest, "params": decay, "weight_decay": weight_decay})
        if no_decay:
            out.append({**rest, "params": no_decay, "weight_decay": 0.0})
    return out
