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
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from ..protocol import FitContext
from ._base import Strategy, register_strategy, with_weight_decay

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    import numpy as np
    import torch

    from ._frozen_cache import FrozenPrefix


@register_strategy
class FineTune(Strategy):
    name = "finetune"
    summary = "fine-tune backbone + new head; freeze lowest groups, layer-wise LR decay, warm-up + cosine"
    compared_by_default = True
    # The frozen-layer cache needs the same training inputs in every epoch: a strategy whose training
    # examples are not the training split alone says why it cannot use it (None = it can).
    no_frozen_cache: str | None = None

    @classmethod
    def search_space(cls, trial: Any, cfg: Any) -> dict[str, Any]:
        """The base's knobs, the layer-wise decay of the rates (1 = one rate for all layers) and how many of the
        lowest layer groups stay frozen (0 to 3: deeper freezing is what `linear` and `gradual` are for)."""
        return super().search_space(trial, cfg) | {"layer_decay": trial.suggest_float("layer_decay", 0.5, 1.0),
                                                    "freeze": trial.suggest_int("freeze", 0, 3)}

    def __init__(self, cfg: Any):
        super().__init__(cfg)
        self.prefix: FrozenPrefix | None = None  # the frozen-layer cache, once `prepare` built it
        self.cache_file: str | None = None

    def prepare(self, ctx: FitContext) -> None:
        self.groups = ctx.backbone.layer_groups()
        self.frozen = self.groups[: self.cfg.freeze]
        self.freeze(self.frozen)
        self._setup_cache(ctx)

    # -- learning rates (a subclass may give a later phase its own) --------------------
    def base_lr(self, ctx: FitContext) -> float:
        return self.cfg.lr

    def head_lr_mult(self, ctx: FitContext) -> float:
        return self.cfg.head_lr_mult

    # -- partial feature caching -------------------------------------------------------
    def _setup_cache(self, ctx: FitContext) -> None:
        """Cache the frozen groups' output when it is the same every epoch (see `_frozen_cache`)."""
        mode, info, data = self.cfg.cache_frozen, ctx.info, ctx.data
        if self.no_frozen_cache is not None:
            if mode == "yes":
                raise ConfigError(f"option --cache-frozen yes: not available with strategy {self.name} ({self.no_frozen_cache})")
            info["cache_frozen"] = f"off: {self.no_frozen_cache}"
            return
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
            from ._frozen_cache import FrozenPrefix

            prefix, why_not = FrozenPrefix.try_build(ctx.backbone, self.frozen, data.take(data.train_idx[:4]))
        if prefix is None:
            if mode == "yes":
                raise ConfigError(f"option --cache-frozen yes: cannot cache the frozen layers: {why_not}")
            info["cache_frozen"] = f"off: {why_not}"
            if ctx.backbone.frozen_cache and self.cfg.augment == "none" and not self.cfg.train_bn:
                warnings.warn(f"frozen layers not cached: {why_not}", stacklevel=2)
            return
        t0 = time.perf_counter()
        _, got = prefix.cached_rows(data, ctx.cache_dir, max(64, self.cfg.batch_size))
        self.cache_file = got["path"]
        self.prefix = prefix
        info["cache_frozen"] = f"on: output of {len(self.frozen)} frozen groups, shape {list(prefix.shape)}"
        info["cache_frozen_seconds"] = round(time.perf_counter() - t0, 2)
        info["cache_frozen_reused"] = got["cached"]

    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]:
        if self.prefix is None:
            return super().train_examples(ctx)
        return list(range(len(ctx.data.train_idx))), ctx.data.y[ctx.data.train_idx]

    def batcher(self, train: bool, ctx: FitContext) -> Any:
        if train and self.prefix is not None:
            return self.prefix.batcher(self.cache_file)
        return super().batcher(train, ctx)

    def features(self, x: Any, ctx: FitContext) -> torch.Tensor:
        return self.prefix.forward(x) if self.prefix is not None else ctx.backbone.forward_features(x)

    def cleanup(self, ctx: FitContext) -> None:
        if self.prefix is not None:
            self.prefix.restore()

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        self.frozen_bn_eval(self.frozen)

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        """Head at ``lr * head_lr_mult``; group i of n at ``lr * layer_decay ** (n - i)``.

        Every group not frozen by ``--freeze`` is in the optimiser, trainable yet or not
        (a schedule may unfreeze them later; AdamW skips a parameter without a gradient).
        """
        lr, head = self.base_lr(ctx), ctx.head
        groups: list[dict[str, Any]] = [{"params": list(head.parameters()), "lr": lr * self.head_lr_mult(ctx), "name": "head"}]
        seen = {id(p) for p in head.parameters()} | {id(p) for g in self.frozen for p in g.parameters()}
        n = len(self.groups)
        for i, g in enumerate(self.groups):
            params = [p for p in g.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": lr * self.cfg.layer_decay ** (n - i), "name": f"group{i}"})
        rest = [p for p in ctx.backbone.parameters() if id(p) not in seen]
        if rest:  # parameters outside every group (e.g. a final norm) learn like the top group
            groups.append({"params": rest, "lr": lr * self.cfg.layer_decay, "name": "other"})
        return with_weight_decay(groups, self.cfg.weight_decay, trainable_only=False)


@register_strategy
class Scratch(FineTune):
    """The same network trained from random init: the baseline every comparison needs."""

    name = "scratch"
    summary = "same network, random init, all layers trained (the baseline)"

    @classmethod
    def search_space(cls, trial: Any, cfg: Any) -> dict[str, Any]:
        """One rate for the whole network: no layer decay to search (the base's space, not `finetune`'s)."""
        return super(FineTune, cls).search_space(trial, cfg)

    def prepare(self, ctx: FitContext) -> None:
        ctx.backbone.reinit()
        ctx.backbone.source_head = None
        self.groups, self.frozen, self.prefix = ctx.backbone.layer_groups(), [], None

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        params = list(ctx.head.parameters()) + list(ctx.backbone.parameters())
        return with_weight_decay([{"params": params, "lr": self.cfg.lr, "name": "all"}], self.cfg.weight_decay)
