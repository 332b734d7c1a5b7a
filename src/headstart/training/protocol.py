"""What the engine and the strategies agree on, defined below both.

The fit pipeline (``tasks/fit.py``) owns the order of a fit and hands one
`FitContext` to every hook. The engine trains anything that satisfies
`Trainable`; it never imports ``strategies/``, and a strategy never imports the
engine: each new method is one file in ``strategies/`` plus its registration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # annotations only: the strategies' registry imports this without torch
    import numpy as np
    import torch
    from torch import nn

    from ..backbones import Backbone
    from ..config import FitConfig
    from ..data import Dataset
    from ..heads import Head


@dataclass
class FitContext:
    """One fit: the resolved config, the data, the model parts, where to write, and what was learned on the way.

    ``info`` collects figures for ``metrics.json["fit"]``; ``history`` the rows of ``history.csv``.
    ``features`` [N, F] holds the final backbone's features of every example in ``data.items`` when a
    strategy has them (a frozen backbone's cache): evaluation then reuses them.
    """

    cfg: FitConfig
    data: Dataset
    backbone: Backbone
    head: Head
    run_dir: Path
    cache_dir: Path
    history: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    features: np.ndarray | None = None
    loggers: list[Any] = field(default_factory=list)  # ``--logger``'s trackers besides CSV (`training.loggers`)
    callbacks: list[Any] = field(default_factory=list)  # Lightning callbacks a caller adds (`tune`'s pruning)


class Trainable(Protocol):
    """What `engine.train` needs of a method: the loss of a batch, the parameter groups, the per-epoch schedule.

    `strategies.Strategy` implements it; the engine knows nothing else about any method.
    """

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        """``{"loss": scalar, "logits"?: [B, C], "y"?: labels the logits are for, "log"?: {name: value}}``."""

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]: ...

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None: ...

    def train_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]: ...

    def val_examples(self, ctx: FitContext) -> tuple[list[Any], np.ndarray]: ...

    def batch_size(self, train: bool, ctx: FitContext) -> int: ...

    def validation_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, torch.Tensor]:
        """``{"loss": scalar, "acc": scalar}`` of one selection batch (epochs are chosen on the loss)."""

    def batcher(self, train: bool, ctx: FitContext) -> Callable[[list[Any]], Any]: ...

    def extra_modules(self, ctx: FitContext) -> dict[str, nn.Module]: ...

    def epoch_record(self, ctx: FitContext) -> dict[str, Any]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


__all__ = ["FitContext", "Trainable"]
