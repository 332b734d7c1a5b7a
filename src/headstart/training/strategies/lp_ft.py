"""``lp-ft``: linear probe, then fine-tuning from that head (Kumar et al., 2022).

https://arxiv.org/abs/2202.10054: fine-tuning with a random head distorts the
pretrained features while the head is still wrong, which hurts most out of
distribution. LP-FT first fits the head on frozen features, then fine-tunes
everything starting from it.

* Phase 1 (LP) is the ``linear`` strategy: logistic regression on cached
  features, its strength C chosen by cross-validation over the training split
  (not the selection split, which then picks the fine-tuning epoch). It has no learning
  rate; its step size is the solver's (L-BFGS).
* Phase 2 (FT) is ``finetune`` with its own, smaller learning rate
  (``--ft-lr``, default a tenth of ``--lr``) and the head learning at
  ``--ft-head-lr-mult`` times that (default 1: it is already fitted).
  BatchNorm statistics stay fixed in this phase (``--train-bn`` to let them
  move): the probe was fitted on features normalised with the running
  statistics, and batch statistics change those features enough to wreck it.
  Measured on sign-language digits (MobileNetV1, 20 labels per class): the
  probe's loss on the same 64 training images is 0.04 with the running
  statistics and 67.7 with batch statistics; fine-tuning from there ended at
  0.15 accuracy, below the probe's 0.79.
"""

from __future__ import annotations

from dataclasses import dataclass

from ...config import _opt
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import register_strategy
from .finetune import FineTune
from .linear import Linear


@dataclass
class LPFTOptions:
    ft_lr: float | None = _opt(None, "lp-ft: learning rate of the fine-tuning phase (default: --lr / 10).")
    ft_head_lr_mult: float = _opt(1.0, "lp-ft: the probed head learns this many times faster than --ft-lr.")

    def __post_init__(self) -> None:
        if self.ft_lr is not None and not self.ft_lr > 0:
            raise ConfigError(f"option --ft-lr: {self.ft_lr} must be positive")
        if not self.ft_head_lr_mult > 0:
            raise ConfigError(f"option --ft-head-lr-mult: {self.ft_head_lr_mult} must be positive")


class _Probe(Linear):
    """`linear` fitted on the training split only: the selection split stays unseen for picking the
    fine-tuning epoch (`linear` alone cross-validates over both)."""

    fits_selection_split = False


@register_strategy
class LPFT(FineTune):
    name = "lp-ft"
    summary = "linear probe on cached features, then fine-tune from that head with its own (smaller) LR"
    Options = LPFTOptions
    compared_by_default = True

    def prepare(self, ctx: FitContext) -> None:
        _Probe(self.cfg).prepare(ctx)
        for key in ("C", "C_per_label", "alpha", "cv_log_loss", "cv_mse_standardised", "decisions"):  # the probe's choices
            if key in ctx.info:
                ctx.info[f"lp_{key}"] = ctx.info.pop(key)
        ctx.history.clear()
        ctx.info["ft_lr"] = self.base_lr(ctx)
        super().prepare(ctx)

    def base_lr(self, ctx: FitContext) -> float:
        return self.opts.ft_lr or self.cfg.lr / 10

    def head_lr_mult(self, ctx: FitContext) -> float:
        return self.opts.ft_head_lr_mult

    def on_epoch_start(self, epoch: int, ctx: FitContext) -> None:
        self.frozen_bn_eval([ctx.backbone])  # the whole backbone: see the module docstring
