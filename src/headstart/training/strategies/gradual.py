"""``gradual``: gradual unfreezing (ULMFiT, Howard & Ruder 2018, https://arxiv.org/abs/1801.06146).

Training starts with only the new head (and ``--start-unfrozen`` top groups)
trainable; every ``--unfreeze-every K`` epochs one more layer group, top down,
joins. Without K the groups are spread over the first half of the epochs (all
trainable from the middle on), so a 2-epoch text fit and a 10-epoch image fit
both end with the whole network trained; with more groups than half the epochs,
several join at once. Learning rates are discriminative as in ``finetune`` (each group below
gets ``--layer-decay`` times its upper neighbour's). Groups below ``--freeze N``
are never unfrozen (and can then be cached, see `_frozen_cache`).

The schedule survives a resume: how many groups are unfrozen is saved in the
checkpoint and a resumed fit never re-freezes a group that was already
training. All groups are in the optimiser from the start; AdamW skips a
parameter while it has no gradient, so its moments start when it is unfrozen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ...config import _opt
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import register_strategy
from .finetune import FineTune


@dataclass
class GradualOptions:
    unfreeze_every: int | None = _opt(
        None, "gradual: epochs between unfreezing one more layer group, top down (default: all unfrozen by half-way).")
    start_unfrozen: int = _opt(0, "gradual: layer groups trainable from the first epoch (0 = only the head).")

    def __post_init__(self) -> None:
        if self.unfreeze_every is not None and self.unfreeze_every < 1:
            raise ConfigError(f"option --unfreeze-every: {self.unfreeze_every} must be at least 1")
        if self.start_unfrozen < 0:
            raise ConfigError(f"option --start-unfrozen: {self.start_unfrozen} must be >= 0")


@register_strategy
class Gradual(FineTune):
    name = "gradual"
    summary = "gradual unfreezing: one more layer group every K epochs, top down, discriminative LRs (ULMFiT)"
    Options = GradualOptions

    def prepare(self, ctx: FitContext) -> None:
        super().prepare(ctx)  # freezes (and may cache) the permanently frozen --freeze groups
        self.movable = self.groups[self.cfg.freeze :]  # shallow -> deep
        self.unfrozen = 0
        self.freeze(self.movable)

    def scheduled(self, epoch: int) -> int:
        """Groups (counted from the top) that should train in ``epoch`` (0-based)."""
        n, start, every = len(self.movable), self.opts.start_unfrozen, self.opts.unfreeze_every
        if every is not None:
            return min(n, start + epoch // every)
        half = max(1, self.cfg.epochs // 2)
        return min(n, start + math.ceil(epoch * max(0, n - start) / half))

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        # max(): a resumed fit keeps what its checkpoint had unfrozen, whatever the schedule says
        self.unfrozen = max(self.unfrozen, self.scheduled(epoch))
        cut = len(self.movable) - self.unfrozen
        self.unfreeze(self.movable[cut:])
        still = self.movable[:cut]
        self.freeze(still)
        self.frozen_bn_eval(self.frozen + still)

    def epoch_record(self, ctx: FitContext) -> dict[str, Any]:
        return {"unfrozen_groups": self.unfrozen}

    def state_dict(self) -> dict[str, Any]:
        return {"unfrozen": self.unfrozen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.unfrozen = int(state.get("unfrozen", 0))
