"""Each method's defining term, on one batch, against the formula written out here: drop the term and the test fails."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from headstart.backbones import build_backbone
from headstart.config import FitConfig
from headstart.heads import make_head
from headstart.training.strategies import FitContext


def _ctx(cfg: FitConfig, classes: int = 3) -> FitContext:
    torch.manual_seed(0)
    bb = build_backbone("scratch:cnn@32")
    head = make_head("multiclass", bb.num_features, classes, dropout=0.0)
    return FitContext(cfg=cfg, data=None, backbone=bb, head=head, run_dir=Path("."), cache_dir=Path("."))


def _batch(n: int = 6, classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.arange(n) % classes


def test_l2sp_adds_the_pull_to_the_start_and_the_head_penalty_and_drops_weight_decay() -> None:
    from headstart.training.strategies.l2sp import L2SP

    alpha, beta = 0.3, 0.7
    cfg = FitConfig(data="x", strategy="l2sp", lr=1e-3, layer_decay=0.8, label_smoothing=0.0, weight_decay=0.05,
                    options={"l2sp_alpha": alpha, "l2sp_beta": beta})
    ctx = _ctx(cfg)
    s = L2SP(cfg)
    s.prepare(ctx)
    moved = s.pulled[0]
    with torch.no_grad():
        moved.add_(0.5)  # the backbone moved away from its start by 0.5 in one tensor
    x, y = _batch()
    ctx.backbone.eval()
    out = s.training_step((x, y), ctx)
    ce = F.cross_entropy(ctx.head(ctx.backbone.forward_features(x)), y)
    sp = 0.25 * moved.numel()
    head_l2 = sum(p.detach().pow(2).sum().item() for n, p in ctx.head.named_parameters() if n.endswith("weight"))
    assert out["loss"].item() == pytest.approx(ce.item() + 0.5 * alpha * sp + 0.5 * beta * head_l2, rel=1e-5)
    assert float(out["log"]["l2sp_distance"]) == pytest.approx(math.sqrt(sp), rel=1e-5)
    assert all(g["weight_decay"] == 0.0 for g in s.param_groups(ctx))


def test_joint_loss_is_source_plus_lambda_times_target() -> None:
    from headstart.training.strategies.joint import Joint

    cfg = FitConfig(data="x", strategy="joint", label_smoothing=0.0, options={"source_data": "demo-text", "joint_lambda": 0.4})
    ctx = _ctx(cfg, classes=3)
    s = Joint(cfg)
    s.offset = 3  # rows >= 3 are the source's classes, shifted: what `prepare` sets from the two datasets
    s.source_head = make_head("multiclass", ctx.backbone.num_features, 2, dropout=0.0)
    s.lam = 0.4
    x, _ = _batch(8)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 3, 4])  # five target rows, three source rows (classes 0, 1, 1 of the source)
    ctx.backbone.eval()
    out = s.training_step((x, y), ctx)
    f = ctx.backbone.forward_features(x)
    src = y >= 3
    l_tgt = F.cross_entropy(ctx.head(f[~src]), y[~src])
    l_src = F.cross_entropy(s.source_head(f[src]), y[src] - 3)
    assert out["loss"].item() == pytest.approx((l_src + 0.4 * l_tgt).item(), rel=1e-5)
    assert out["y"].tolist() == [0, 1, 2, 0] and out["logits"].shape == (4, 3)
    # a batch of one side only keeps the other term at zero
    only_target = s.training_step((x[:3], y[:3]), ctx)
    assert only_target["loss"].item() == pytest.approx(0.4 * F.cross_entropy(ctx.head(f[:3]), y[:3]).item(), rel=1e-5)


def test_lp_ft_fine_tunes_at_its_own_rates() -> None:
    from headstart.training.strategies.lp_ft import LPFT

    ctx = _ctx(FitConfig(data="x"))
    default = LPFT(FitConfig(data="x", strategy="lp-ft", lr=0.02))
    assert default.base_lr(ctx) == pytest.approx(0.002) and default.head_lr_mult(ctx) == 1.0
    given = LPFT(FitConfig(data="x", strategy="lp-ft", lr=0.02, options={"ft_lr": 0.005, "ft_head_lr_mult": 3.0}))
    assert given.base_lr(ctx) == 0.005 and given.head_lr_mult(ctx) == 3.0


@pytest.mark.parametrize("start,epochs,expected", [(1, 10, [1, 2, 3, 3, 4, 4, 4]), (0, 8, [0, 1, 2, 3, 4, 4, 4]),
                                                    (0, 3, [0, 4, 4, 4, 4, 4, 4]), (1, 9, [1, 2, 3, 4, 4, 4, 4])])
def test_gradual_default_schedule_unfreezes_everything_by_half_way(start: int, epochs: int, expected: list[int]) -> None:
    """Without --unfreeze-every: ceil(epoch * (groups - start) / half) more groups, all of them from half-way
    (``epochs // 2``: for an odd count, the earlier epoch)."""
    from headstart.training.strategies.gradual import Gradual

    cfg = FitConfig(data="x", strategy="gradual", epochs=epochs, options={"start_unfrozen": start})
    ctx = _ctx(cfg)
    s = Gradual(cfg)
    s.prepare(ctx)
    n, half = len(s.movable), epochs // 2
    assert n == 4
    got = [s.scheduled(e) for e in range(7)]
    assert got == [min(n, start + math.ceil(e * (n - start) / half)) for e in range(7)] == expected
    every = Gradual(FitConfig(data="x", strategy="gradual", epochs=epochs, options={"start_unfrozen": start, "unfreeze_every": 2}))
    every.prepare(ctx)
    assert [every.scheduled(e) for e in range(9)] == [min(4, start + e // 2) for e in range(9)]
