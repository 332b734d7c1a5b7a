"""Transferability scores: hand-checkable cases, invariances, and slow references written from the papers."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.errors import HeadstartError
from headstart.transferability import hscore, knn_accuracy, leep, linear_probe_accuracy, logme, nce


def clusters(n_per: int = 40, k: int = 3, d: int = 8, sep: float = 4.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, sep, (k, d))
    y = np.repeat(np.arange(k), n_per)
    return centers[y] + rng.normal(0, 1, (len(y), d)), y


def logme_reference(f: np.ndarray, y: np.ndarray, regression: bool = False, iters: int = 100) -> float:
    """Straight from You et al. (2021), Algorithm 1, with explicit D x D matrices (slow, clear)."""
    f = np.asarray(f, np.float64)
    n, d = f.shape
    targets = y[:, None].astype(np.float64) if regression else np.eye(y.max() + 1)[y]
    ftf = f.T @ f
    sigma = np.linalg.eigvalsh(ftf)
    out = []
    for t in targets.T:
        alpha, beta = 1.0, 1.0
        for _ in range(iters):
            a = alpha * np.eye(d) + beta * ftf
            m = beta * np.linalg.solve(a, f.T @ t)
            gamma = np.sum(beta * sigma / (alpha + beta * sigma))
            alpha = gamma / (m @ m)
            beta = (n - gamma) / np.sum((f @ m - t) ** 2)
        a = alpha * np.eye(d) + beta * ftf
        m = beta * np.linalg.solve(a, f.T @ t)
        ev = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
              - beta / 2 * np.sum((f @ m - t) ** 2) - alpha / 2 * m @ m - np.linalg.slogdet(a)[1] / 2)
        out.append(ev / n)
    return float(np.mean(out))


@pytest.mark.parametrize("n,d", [(120, 8), (30, 50)])
def test_logme_matches_reference(n: int, d: int) -> None:
    rng = np.random.default_rng(1)
    y = np.arange(n) % 3
    f = rng.normal(0, 1, (n, d)) + y[:, None] * 0.8
    assert logme(f, y) == pytest.approx(logme_reference(f, y), rel=1e-5, abs=1e-6)


def test_logme_regression_matches_reference_and_prefers_explained_targets() -> None:
    rng = np.random.default_rng(2)
    f = rng.normal(0, 1, (200, 6))
    explained = f @ rng.normal(0, 1, 6) + rng.normal(0, 0.1, 200)
    noise = rng.normal(0, 1, 200)
    assert logme(f, explained, regression=True) == pytest.approx(logme_reference(f, explained, True), rel=1e-5)
    assert logme(f, explained, regression=True) > logme(f, noise, regression=True) + 1.0


def test_logme_ranks_separable_features_first_and_is_invariant() -> None:
    good, y = clusters(sep=4.0)
    bad = np.random.default_rng(3).normal(0, 1, good.shape)
    assert logme(good, y) > logme(bad, y) + 0.1
    base = logme(good, y)
    assert logme(good * 1000.0, y) == pytest.approx(base, abs=1e-6)  # rescaled features
    assert logme(good * 1e-3, y) == pytest.approx(base, abs=1e-6)
    perm = np.array([2, 0, 1])[y]  # renamed classes
    assert logme(good, perm) == pytest.approx(base, abs=1e-9)
    assert logme(good.astype(np.float32), y) == pytest.approx(base, abs=1e-4)


def test_logme_is_finite_when_features_outnumber_examples() -> None:
    rng = np.random.default_rng(4)
    y = np.arange(20) % 2
    f = rng.normal(0, 1, (20, 2000)).astype(np.float32)
    f[:, :3] += y[:, None] * 5  # a few informative dimensions among many
    v = logme(f, y)
    assert np.isfinite(v)
    assert v > logme(rng.normal(0, 1, (20, 2000)), y)


def test_leep_and_nce_hand_checked() -> None:
    y = np.array([0, 0, 1, 1])
    # source predicts the target perfectly: the source class determines the target class
    perfect = np.eye(2)[y]
    assert leep(perfect, y) == pytest.approx(0.0, abs=1e-12)
    assert nce(perfect, y) == pytest.approx(0.0, abs=1e-12)
    # hard source labels z = [0, 1, 1, 1]: P(y,z) = {(0,0): .25, (0,1): .25, (1,1): .5}, P(z=1) = .75
    z = np.eye(2)[[0, 1, 1, 1]]
    expected_nce = 0.25 * np.log(1.0) + 0.25 * np.log(0.25 / 0.75) + 0.5 * np.log(0.5 / 0.75)
    assert nce(z, y) == pytest.approx(expected_nce)
    # for one-hot source outputs LEEP reduces to the mean log P(y_i | z_i)
    expected_leep = np.mean([np.log(1.0), np.log(1 / 3), np.log(2 / 3), np.log(2 / 3)])
    assert leep(z, y) == pytest.approx(expected_leep)


def leep_reference(p: np.ndarray, y: np.ndarray) -> float:
    """Nguyen et al. (2020), eq. 1-2, with explicit loops."""
    n, zc = p.shape
    k = y.max() + 1
    joint = np.zeros((k, zc))
    for i in range(n):
        for z in range(zc):
            joint[y[i], z] += p[i, z] / n
    cond = joint / joint.sum(0)
    return float(np.mean([np.log(sum(cond[y[i], z] * p[i, z] for z in range(zc))) for i in range(n)]))


def test_leep_matches_reference_and_is_permutation_invariant() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(0, 2, (60, 7))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (logits[:, 0] > 0).astype(int) + (logits[:, 1] > 1)
    assert leep(p, y) == pytest.approx(leep_reference(p, y), rel=1e-9)
    assert leep(p[:, ::-1], y) == pytest.approx(leep(p, y), rel=1e-9)  # source classes reordered
    assert leep(p, 2 - y) == pytest.approx(leep(p, y), rel=1e-9)  # target classes renamed
    informative = leep(p, y)
    shuffled = leep(p, rng.permutation(y))
    assert informative > shuffled


def test_source_probabilities_are_checked() -> None:
    with pytest.raises(HeadstartError, match="probabilities"):
        leep(np.ones((4, 3)), np.array([0, 1, 0, 1]))
    with pytest.raises(HeadstartError, match="rows"):
        nce(np.eye(3), np.array([0, 1, 0, 1]))


def test_hscore_hand_checked_and_matches_reference() -> None:
    y = np.array([0, 1] * 10)
    # the feature is the label itself: all of its variance is between classes -> H = 1
    assert hscore(y[:, None].astype(float), y, shrinkage=None) == pytest.approx(1.0)
    f, y = clusters(n_per=100, d=5)
    fc = f - f.mean(0)
    g = np.stack([fc[y == c].mean(0) for c in range(3)])[y]
    reference = np.trace(np.linalg.inv(np.cov(fc.T, bias=True)) @ np.cov(g.T, bias=True))
    assert hscore(f, y, shrinkage=None) == pytest.approx(reference, rel=1e-8)
    # invariant to an invertible linear map of the features, and bounded by K - 1
    a = np.random.default_rng(6).normal(0, 1, (5, 5))
    assert hscore(f @ a, y, shrinkage=None) == pytest.approx(reference, rel=1e-6)
    assert 0 < hscore(f, y) <= 2.0 + 1e-9


def test_hscore_shrinkage_keeps_high_dimensional_noise_low() -> None:
    rng = np.random.default_rng(7)
    y = np.arange(40) % 2
    noise = rng.normal(0, 1, (40, 200))
    signal = noise.copy()
    signal[:, 0] += 4 * y
    assert hscore(signal, y) > hscore(noise, y) + 0.3
    assert hscore(signal, y, shrinkage=0.5) > hscore(noise, y, shrinkage=0.5)
    with pytest.raises(HeadstartError, match="shrinkage"):
        hscore(signal, y, shrinkage=2.0)


def test_probe_accuracies_separate_good_from_bad_features() -> None:
    good, y = clusters(n_per=20)
    bad = np.random.default_rng(8).normal(0, 1, good.shape)
    assert knn_accuracy(good, y) == pytest.approx(1.0)
    assert linear_probe_accuracy(good, y) == pytest.approx(1.0)
    assert knn_accuracy(bad, y) < 0.7
    assert linear_probe_accuracy(bad, y) < 0.7


def test_bad_inputs_get_clear_errors() -> None:
    with pytest.raises(HeadstartError, match="NaN"):
        logme(np.array([[np.nan, 1.0], [0.0, 1.0]]), np.array([0, 1]))
    with pytest.raises(HeadstartError, match="shape"):
        logme(np.ones((5, 2)), np.array([0, 1]))
    with pytest.raises(HeadstartError, match="integer class ids"):
        hscore(np.ones((3, 2)), np.array([0.5, 1.0, 0.0]))
    with pytest.raises(HeadstartError, match="at least 2 examples"):
        knn_accuracy(np.ones((3, 2)), np.array([0, 0, 1]))
