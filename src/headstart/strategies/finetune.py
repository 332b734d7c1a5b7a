"""``finetune``: train backbone and head together, carefully.

* the lowest ``--freeze N`` layer groups are frozen, their BatchNorm kept in
  eval mode (``Strategy.set_bn_eval``);
* discriminative learning rates: the new head gets ``lr * head_lr_mult``,
  the top group ``lr * layer_decay``, the one below ``lr * layer_decay**2`` ... (ULMFiT,
  Howard & Ruder 2018, https://arxiv.org/abs/1801.06146; the "layer-wise LR
  decay" of BEiT/ELECTRA fine-tuning);
* AdamW with linear warm-up and cosine decay (built by the engine), label
  smoothing, augmentation presets; epochs chosen on the held-out split
  (early stopping restores the best epoch).
"""

from __future__ import annotations

from typing import Any

from ..backbones import Backbone
from ..data import Dataset
from ..heads import Head
from ._base import FitContext, Strategy, register_strategy, with_weight_decay


@register_strategy
class FineTune(Strategy):
    name = "finetune"
    summary = "fine-tune backbone + new head; freeze lowest groups, layer-wise LR decay, warm-up + cosine"

    def fit(self, ctx: FitContext) -> None:
        if self.cfg.head_init == "linear":
            # Start from the cross-validated linear probe on cached features instead of a random
            # head, so early gradients do not distort the pretrained features (Kumar et al., 2022,
            # https://arxiv.org/abs/2202.10054).
            from .linear import Linear

            Linear(self.cfg).fit(ctx)
            ctx.info["linear_probe_C"] = ctx.info.pop("C")
            ctx.history.clear()
        super().fit(ctx)

    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        super().setup(backbone, head, data)
        self.groups = backbone.layer_groups()
        self.frozen = self.groups[: self.cfg.freeze]
        self.freeze(self.frozen)

    def on_epoch_start(self, epoch: int) -> None:
        self.set_bn_eval(self.frozen)

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        head_lr = lr * self.cfg.head_lr_mult
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters()), "lr": head_lr, "name": "head"}]
        seen = {id(p) for p in self.head.parameters()}
        n = len(self.groups)
        for i, g in enumerate(self.groups):
            params = [p for p in g.parameters() if id(p) not in seen]
            seen.update(id(p) for p in params)
            groups.append({"params": params, "lr": lr * self.cfg.layer_decay ** (n - i), "name": f"group{i}"})
        rest = [p for p in self.backbone.parameters() if id(p) not in seen]
        if rest:  # parameters outside every group (e.g. a final norm) learn like the top group
            groups.append({"params": rest, "lr": lr * self.cfg.layer_decay, "name": "other"})
        return with_weight_decay(groups, self.cfg.weight_decay)


@register_strategy
class Scratch(FineTune):
    """The same network trained from random init: the baseline every comparison needs."""

    name = "scratch"
    summary = "same network, random init, all layers trained (the baseline)"

    def setup(self, backbone: Backbone, head: Head, data: Dataset) -> None:
        backbone.reinit()
        backbone.source_head = None
        Strategy.setup(self, backbone, head, data)
        self.groups, self.frozen = backbone.layer_groups(), []

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        params = list(self.head.parameters()) + list(self.backbone.parameters())
        return with_weight_decay([{"params": params, "lr": lr, "name": "all"}], self.cfg.weight_decay)
