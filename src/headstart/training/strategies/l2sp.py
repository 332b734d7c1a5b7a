"""``l2sp``: fine-tuning regularised towards the pretrained weights (Li et al., 2018).

https://arxiv.org/abs/1802.01483 ("Explicit inductive bias for transfer learning
with convolutional networks"). Plain weight decay pulls the backbone towards
zero, i.e. away from what it learned on the source; L2-SP pulls it towards its
starting point w0 instead:

    loss = task loss + alpha/2 * ||w - w0||^2  (backbone)  + beta/2 * ||w_head||^2

so AdamW's decoupled weight decay is switched off for the backbone (the head
keeps none either: beta is its L2). The starting point is taken when training
begins, before any resume restores later weights, so a resumed fit keeps the
same anchor. Everything else (freezing, discriminative LRs, caching) is ``finetune``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ...config import _opt
from ...errors import ConfigError
from ..protocol import FitContext
from ._base import register_strategy
from .finetune import FineTune

if TYPE_CHECKING:  # torch is imported where used: `headstart --help` and the registry do not load it
    import torch


@dataclass
class L2SPOptions:
    l2sp_alpha: float = _opt(0.01, "l2sp: strength of the pull of backbone weights towards their pretrained values.")
    l2sp_beta: float = _opt(0.01, "l2sp: L2 strength on the new head's weights.")

    def __post_init__(self) -> None:
        for name in ("l2sp_alpha", "l2sp_beta"):
            if getattr(self, name) < 0:
                raise ConfigError(f"option --{name.replace('_', '-')}: {getattr(self, name)} must be >= 0")


def _anchors(tensors: list[torch.Tensor]) -> torch.nn.Module:
    """w0 as non-persistent buffers of a module: they follow the model to its device, stay out of checkpoints."""
    import torch

    held = torch.nn.Module()
    for i, t in enumerate(tensors):
        held.register_buffer(f"w{i}", t.detach().clone(), persistent=False)
    return held


def l2sp_penalty(params: list[torch.Tensor], anchors: list[torch.Tensor]) -> torch.Tensor:
    """sum_i ||p_i - a_i||^2 over matching tensors (a scalar)."""
    import torch

    return torch.stack([(p - a).pow(2).sum() for p, a in zip(params, anchors)]).sum()


@register_strategy
class L2SP(FineTune):
    name = "l2sp"
    summary = "fine-tune with an L2 pull towards the pretrained weights instead of weight decay (L2-SP)"
    Options = L2SPOptions

    @classmethod
    def search_space(cls, trial: Any, cfg: Any) -> dict[str, Any]:
        return super().search_space(trial, cfg) | {"l2sp_alpha": trial.suggest_float("l2sp_alpha", 1e-4, 1.0, log=True)}

    def prepare(self, ctx: FitContext) -> None:
        super().prepare(ctx)
        self.pulled = [p for p in ctx.backbone.parameters() if p.requires_grad]
        self.anchors = _anchors(self.pulled)

    def extra_modules(self, ctx: FitContext) -> dict[str, torch.nn.Module]:
        return {"l2sp_anchors": self.anchors}

    def training_step(self, batch: tuple[Any, torch.Tensor], ctx: FitContext) -> dict[str, Any]:
        out = super().training_step(batch, ctx)
        sp = l2sp_penalty(self.pulled, list(self.anchors.buffers())) if self.pulled else out["loss"].new_zeros(())
        head_l2 = sum(p.pow(2).sum() for n, p in ctx.head.named_parameters() if n.endswith("weight"))
        reg = 0.5 * self.opts.l2sp_alpha * sp + 0.5 * self.opts.l2sp_beta * head_l2
        out["loss"] = out["loss"] + reg
        out["log"] = {"l2sp_distance": sp.detach().sqrt()}
        return out

    def param_groups(self, ctx: FitContext) -> list[dict[str, Any]]:
        groups = super().param_groups(ctx)
        for g in groups:
            g["weight_decay"] = 0.0  # the L2-SP terms replace weight decay
        return groups
