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


def test_multi_kernel_mmd2_edges() -> None:
    one, many = np.ones((1, 3)), np.random.default_rng(2).normal(size=(6, 3))
    for a, b in ((one, many), (many, one)):
        assert tr.multi_kernel_mmd2(a, b) == 0.0  # the unbiased estimate needs two examples a side
    t = torch.tensor(one, requires_grad=True)
    out = tr.multi_kernel_mmd2(t, torch.tensor(many))
    out.backward()  # still part of the graph (a batch with one target row must not break the step)
    assert float(out.detach()) == 0.0 and t.grad is not None and float(t.grad.abs().sum()) == 0.0
    same = np.zeros((4, 2))
    assert tr.multi_kernel_mmd2(same, same) == 0.0  # every distance 0: no bandwidth, no division by zero
    # two sides of two rows each: the smallest size it scores
    assert tr.multi_kernel_mmd2(many[:2], many[2:4] + 3.0) > 0.0


def test_importance_weights_are_a_standardised_logistic_regression_on_the_subsamples() -> None:
    """Spelled out with scikit-learn: the same draws (seed), standardisation, C = 1, the clip at 1e-6."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(3)
    source, target = rng.normal(0.0, 1.0, (300, 3)) * 1000, rng.normal(0.5, 1.0, (200, 3)) * 1000
    query = np.concatenate([rng.normal(0.0, 1.0, (20, 3)) * 1000, [[1e6, 1e6, 1e6]]])
    got = tr.importance_weights(source, target, query, max_points=150, seed=4)
    draw = np.random.default_rng(4)
    s = source[draw.choice(300, 150, replace=False)]
    t = target[draw.choice(200, 150, replace=False)]
    x = np.concatenate([s, t])
    scaler = StandardScaler().fit(x)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(scaler.transform(x), np.r_[np.zeros(150), np.ones(150)])
    p = np.clip(clf.predict_proba(scaler.transform(query))[:, 1], 1e-6, 1 - 1e-6)
    np.testing.assert_allclose(got, p / (1 - p), rtol=1e-6)
    assert got[-1] == pytest.approx((1 - 1e-6) / 1e-6)  # far out: the clip, not an infinite weight


def test_dev_risk_edges() -> None:
    losses = np.array([0.2, 0.4, 0.9])
    assert tr.dev_risk(losses, np.full(3, 2.0)) == pytest.approx(2 * losses.mean())  # no spread: no control variate
    assert tr.dev_risk(np.array([0.5]), np.array([2.0])) == pytest.approx(1.0)  # one example: its weighted loss
    assert tr.dev_risk(np.array([0.3, 0.3]), np.array([0.5, 2.5])) == pytest.approx(0.3)  # two examples corrected
    w = 0.5 * np.random.default_rng(5).exponential(1.0, 40) + 0.6  # a spread below 1
    assert np.var(w, ddof=1) < 1 and tr.dev_risk(np.full(40, 0.3), w) == pytest.approx(0.3)
