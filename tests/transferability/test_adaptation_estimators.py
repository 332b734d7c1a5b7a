"""The estimators domain adaptation shares with `distance`: multi-kernel MMD^2 (the ``mmd`` strategy's term and
`distance`'s ``mmd2_multi``), the density ratio of a domain classifier and the DEV risk (the seed choice)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from headstart import transferability as tr


def test_multi_kernel_mmd2_is_the_unbiased_average_over_kernels() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(size=(5, 3)), rng.normal(size=(4, 3)) + 0.7
    pooled = np.concatenate([s, t])
    d2 = [[float(np.sum((a - b) ** 2)) for b in pooled] for a in pooled]
    m = sum(d2[i][j] for i in range(9) for j in range(9) if i != j) / (9 * 8)

    def k(i: int, j: int) -> float:
        return float(np.mean([math.exp(-d2[i][j] / (sc * m)) for sc in (0.25, 0.5, 1.0, 2.0, 4.0)]))

    want = (sum(k(i, j) for i in range(5) for j in range(5) if i != j) / 20
            + sum(k(i, j) for i in range(5, 9) for j in range(5, 9) if i != j) / 12
            - 2 * sum(k(i, j) for i in range(5) for j in range(5, 9)) / 20)
    assert tr.multi_kernel_mmd2(s, t) == pytest.approx(want, rel=1e-9)
    st = torch.tensor(s, requires_grad=True)
    got = tr.multi_kernel_mmd2(st, torch.tensor(t))
    assert float(got.detach()) == pytest.approx(want, rel=1e-9)
    got.backward()
    assert st.grad is not None and float(st.grad.abs().sum()) > 0
    same = rng.normal(size=(200, 3))
    assert abs(tr.multi_kernel_mmd2(same[:100], same[100:])) < 0.02 < tr.multi_kernel_mmd2(same[:100], same[100:] + 1.0)


def test_importance_weights_and_the_dev_risk() -> None:
    rng = np.random.default_rng(1)
    source, target = rng.normal(0.0, 1.0, (800, 2)), rng.normal(1.0, 1.0, (400, 2))  # unequal sizes: the ratio n_s / n_t counts
    w = tr.importance_weights(source, target, np.array([[-2.0, -2.0], [0.5, 0.5], [2.0, 2.0]]))
    assert w[0] < 0.2 < w[1] < 3.0 < w[2]  # the true ratio exp(x1 + x2 - 1): 0.007, 1, 20
    held = rng.normal(0.0, 1.0, (400, 2))
    assert np.mean(tr.importance_weights(source, target, held)) == pytest.approx(1.0, abs=0.25)  # E_source[w] = 1
    losses = rng.random(50)
    assert tr.dev_risk(losses, np.ones(50)) == pytest.approx(losses.mean())  # no shift: the plain validation loss
    # losses that grow with the weight: the weighted risk is above the plain one
    ws = rng.exponential(1.0, 50)
    assert tr.dev_risk(ws, ws) > ws.mean()
    # the control variate: a constant loss is the risk whatever the sample of weights sums to (mean(ws) != 1)
    assert tr.dev_risk(np.full(50, 0.3), 1.3 * ws) == pytest.approx(0.3)  # mean(1.3 ws) = 1.27
