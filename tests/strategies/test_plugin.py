"""A new method is one file plus its registration: the pipeline, CLI and report show it without knowing it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from headstart.cli import app
from headstart.features import extract
from headstart.training.strategies import FitContext, Outcome, Strategy, _base, register_strategy


class NearestMean(Strategy):
    """Nearest class mean on frozen features: ||f - m_c||^2 = -2 m_c.f + ||m_c||^2 + const, a linear head."""

    name = "test-nearest-mean"
    summary = "nearest class mean of frozen features (a test plug-in)"
    trains = False

    def prepare(self, ctx: FitContext) -> None:
        feats, _ = extract(ctx.backbone, ctx.data.items, ctx.data.fingerprint(), ctx.cache_dir)
        ctx.features = feats
        x, y = np.asarray(feats[ctx.data.train_idx], dtype=np.float64), ctx.data.y[ctx.data.train_idx]
        means = np.stack([x[y == c].mean(0) for c in range(ctx.data.num_classes)])
        w, b = 2 * means, -(means**2).sum(1)
        if ctx.head.task == "binary":  # one logit: class 1's score minus class 0's
            w, b = w[1:] - w[:1], b[1:] - b[:1]
        with torch.no_grad():
            ctx.head.fc.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
            ctx.head.fc.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
        ctx.info["class_means"] = len(means)

    def finish(self, ctx: FitContext) -> Outcome:
        counts = np.bincount(ctx.data.y[ctx.data.train_idx], minlength=ctx.data.num_classes)
        return Outcome(metrics={"nearest_mean": {"counts": counts.tolist()}},
                       summary=[("class means", str(ctx.info["class_means"]))],
                       sections=[{"title": "Examples per class mean", "columns": ["class", "examples"],
                                  "rows": [[c, int(n)] for c, n in zip(ctx.data.classes, counts)], "note": "from the training split"}])


@pytest.fixture
def plugged() -> Iterator[None]:
    register_strategy(NearestMean)
    try:
        yield
    finally:
        _base._STRATEGIES.pop(NearestMean.name)


def test_a_strategy_defined_outside_the_package_fits_and_reports(plugged: None, text_csv: Path) -> None:
    res = CliRunner().invoke(app, ["fit", str(text_csv), "--model", "minilm", "--strategy", "test-nearest-mean",
                                   "--out", "runs/nm"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(Path("runs/nm/metrics.json").read_text())
    assert metrics["test"]["accuracy"] >= 0.85  # the head the strategy set is the one evaluated and saved
    assert [r[1] for r in metrics["report"]["sections"][0]["rows"]] == metrics["nearest_mean"]["counts"]
    printed = " ".join(res.output.split())  # rich wraps a title wider than its table
    assert "class means" in printed and "Examples per class mean" in printed  # the summary row and the table
    assert "Examples per class mean" in Path("runs/nm/report.html").read_text()
    assert metrics["fit"]["class_means"] == len(metrics["nearest_mean"]["counts"]) == 2
