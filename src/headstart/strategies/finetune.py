"""``finetune``: train backbone and head together, carefully.

* the lowest ``--freeze N`` layer groups are frozen, their BatchNorm kept in
  eval mode (``Strategy.frozen_bn_eval``; ``--train-bn`` lets it update);
* with frozen groups and no augmentation, their output is computed once and
  cached, and training runs only the layers above (``--cache-frozen``,
  `_frozen_cache`);
* discriminative learning rates: the new head gets ``lr * head_lr_mult``,
  the top group ``lr * layer_decay``, the one below ``lr * layer_decay**2`` ... (ULMFiT,
  Howard & Ruder 2018, https://arxiv.org/abs/1801.06146; the "layer-wise LR
  decay" of BEiT/ELECTRA fine-tuning);
* AdamW with linear warm-up and cosine decay (built by the engine), label
  smoothing, augmentation presets; epochs chosen on the held-out split
  (early stopping restores the best epoch).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from ..backbones import Backbone
from ..data import Dataset
from ..errors import ConfigError
from ..heads import Head
from ._base import FitContext, Strategy, register_strategy, with_weight_decay
from ._frozen_cache import FrozenPrefix


@register_strategy
class FineTune(Strategy):
    name = "finetune"
    summary = "fine-tune backbone + new head; freeze lowest groups, layer-wise LR decay, warm-up + cosine"

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.ctx: FitContext | None = None  # set by fit; without it (setup alone) nothing is cached

    def fit(self, ctx: FitContext) -> None:
        self.ctx = ctx
        super().fit(ctx)

    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        super().setup(backbone, head, data)
        self.groups = backbone.layer_groups()
        self.frozen = self.groups[: self.cfg.freeze]
        self.freeze(self.frozen)
        self.prefix: FrozenPrefix | None = None
        self.cache_file: str | None = None
        self._setup_cache(data)

    # -- partial feature caching -------------------------------------------------------
    def _setup_cache(self, data: Dataset) -> None:
        """Cache the frozen groups' output when it is the same every epoch (see `_frozen_cache`)."""
        if self.ctx is None:
            return
        mode, info = self.cfg.cache_frozen, self.ctx.info
        if not self.frozen:
            if mode == "yes":
                raise ConfigError("option --cache-frozen yes: nothing is frozen; give --freeze N (N >= 1)")
            return
        if mode == "no":
            info["cache_frozen"] = "off: --cache-frozen no"
            return
        why_not = None
        if self.cfg.augment != "none":
            why_not = "training images are augmented (--augment none allows it)"
        elif self.cfg.train_bn:
            why_not = "--train-bn changes the frozen layers' statistics every step"
        prefix = None
        if why_not is None:
            prefix, why_not = FrozenPrefix.try_build(self.backbone, self.frozen, [data.items[i] for i in data.train_idx[:4]])
        if prefix is None:
            if mode == "yes":
                raise ConfigError(f"option --cache-frozen yes: cannot cache the frozen layers: {why_not}")
            info["cache_frozen"] = f"off: {why_not}"
            if self.backbone.modality == "image" and self.cfg.augment == "none" and not self.cfg.train_bn:
                warnings.warn(f"frozen layers not cached: {why_not}", stacklevel=2)
            return
        t0 = time.perf_counter()
        _, got = prefix.cached_rows(data, self.ctx.cache_dir, max(64, self.cfg.batch_size))
        self.cache_file = got["path"]
        self.prefix = prefix
        info["cache_frozen"] = f"on: output of {len(self.frozen)} frozen groups, shape {list(prefix.shape)}"
        info["cache_frozen_seconds"] = round(time.perf_counter() - t0, 2)
        info["cache_frozen_reused"] = got["cached"]

    def train_examples(self, data: Dataset) -> tuple[list[Any], np.ndarray]:
        if self.prefix is None:
            return super().train_examples(data)
        return list(range(len(data.train_idx))), data.y[data.train_idx]

    def batcher(self, train: bool, augment: str) -> Any:
        if train and self.prefix is not None:
            return self.prefix.batcher(self.cache_file)
        return super().batcher(train, augment)

    def features(self, x: Any) -> torch.Tensor:
        return self.prefix.forward(x) if self.prefix is not None else self.backbone.forward_features(x)

    def teardown(self) -> None:
        if self.prefix is not None:
            self.prefix.restore()

    def on_epoch_start(self, epoch: int) -> None:
        self.frozen_bn_eval(self.frozen)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        """Head at ``lr * head_lr_mult``; group i of n at ``lr * layer_decay ** (n - i)``.

        Every group not frozen by ``--freeze`` is in the optimiser, trainable yet or not
        (`gradual` unfreezes them later; AdamW skips a parameter without a gradient).
        """
        head_lr = lr * self.cfg.head_lr_mult
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "lr": head_lr, "name": "head"}]
        seen = {id(p) for p in self.head.parameters()} | {id(p) for g in self.frozen for p in g.parameters()}
        n = len(self.groups)
        for i, g in enumerate(self.groups):
            params = [p for p in g.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": lr * self.cfg.layer_decay ** (n - i), "name": f"group{i}"})
        rest = [p for p in self.backbone.parameters() if id(p) not in seen]
        if rest:  # parameters outside every group (e.g. a final norm) learn like the top group
            groups.append({"params": rest, "lr": lr * self.cfg.layer_decay, "name": "other"})
        return with_weight_decay(groups, self.cfg.weight_decay, trainable_only=False)


@register_strategy
class Scratch(FineTune):
    """The same network trained from random init: the baseline every comparison needs."""

    name = "scratch"
    summary = "same network, random init, all layers trained (the baseline)"

    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        backbone.reinit()
        backbone.source_head = None
        Strategy.setup(self, backbone, head, data)
        self.groups, self.frozen, self.prefix = backbone.layer_groups(), [], None

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        params = list(self.head.parameters()) + list(self.backbone.parameters())
        return with_weight_decay([{"params": params, "lr": lr, "name": "all"}], self.cfg.weight_decay)
