"""The fine-tuning-aware scores: small cases worked by hand from the papers' definitions, then behaviour."""

from __future__ import annotations

import math

import numpy as np
import pytest

from headstart.errors import HeadstartError
from headstart.transferability import (ETRAN, NCTI, bootstrap_interval, bootstrap_values, combine_parts, etran_parts,
                                       gbc, ncti_parts, pactran, percentile_interval, sfda, transrate)

from headstart.transferability._finetune import _coding_rate

from .test_scores import clusters


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _lda_posteriors(f: np.ndarray, y: np.ndarray, shrink: float) -> np.ndarray:
    """Shared-covariance Gaussian classifier written out: (1-s) S_w + s tr(S_w)/D I, priors from counts."""
    k, d = y.max() + 1, f.shape[1]
    mu = np.stack([f[y == c].mean(0) for c in range(k)])
    sw = sum((y == c).mean() * np.cov(f[y == c].T, bias=True).reshape(d, d) for c in range(k))
    cov = (1 - shrink) * sw + shrink * np.trace(sw) / d * np.eye(d)
    inv = np.linalg.inv(cov)
    logits = f @ inv @ mu.T - 0.5 * np.einsum("cd,de,ce->c", mu, inv, mu) + np.log(np.bincount(y) / len(y))
    return _softmax(logits)


def test_sfda_on_four_points_worked_by_hand() -> None:
    """1-D, classes {0, 2} and {4, 6}: S_w = 1, s = e^-5, discriminants x mu_c - mu_c^2/2 with mu = 1, 5."""
    f = np.array([[0.0], [2.0], [4.0], [6.0]])
    y = np.array([0, 0, 1, 1])
    # first pass: p(true class) = sigmoid of the discriminant gap 4x - 12 (class 1) or 12 - 4x (class 0)
    gap = np.array([12.0, 4.0, 4.0, 12.0])
    p_true = 1 / (1 + np.exp(-gap))
    # ConfMix: soften over (p, 1 - p), then pull towards the other class's mean (5 for class 0, 1 for class 1)
    q = np.exp(p_true) / (np.exp(p_true) + np.exp(1 - p_true))
    mixed = q * f[:, 0] + (1 - q) * np.array([5.0, 5.0, 1.0, 1.0])
    # second pass, same shrinkage (D = 1: the shrunk variance is the within-class variance itself)
    mu = np.array([mixed[:2].mean(), mixed[2:].mean()])
    var = 0.5 * mixed[:2].var() + 0.5 * mixed[2:].var()
    logits = mixed[:, None] * mu[None, :] / var - mu[None, :] ** 2 / (2 * var)
    expected = _softmax(logits)[np.arange(4), y].mean()
    assert sfda(f, y) == pytest.approx(expected, rel=1e-9)
    assert 0.5 < expected < 1.0


def test_sfda_matches_the_written_out_definition_in_many_dimensions() -> None:
    f, y = clusters(n_per=30, k=3, d=6, sep=1.0, seed=4)
    k = 3
    mu = np.stack([f[y == c].mean(0) for c in range(k)])
    sw = sum((y == c).mean() * np.cov(f[y == c].T, bias=True) for c in range(k))
    s = max(math.exp(-5 * np.linalg.eigvalsh(sw)[-1]), 1e-10)
    p = _lda_posteriors(f, y, s)
    q = _softmax(p)[np.arange(len(y)), y][:, None]
    others = np.stack([(mu.sum(0) - mu[c]) / (k - 1) for c in range(k)])
    mixed = q * f + (1 - q) * others[y]
    expected = _lda_posteriors(mixed, y, s)[np.arange(len(y)), y].mean()
    assert sfda(f, y) == pytest.approx(expected, rel=1e-7)


def test_ncti_terms_and_the_pool_combination() -> None:
    f, y = clusters(n_per=25, k=3, d=5, sep=1.5, seed=2)
    parts = ncti_parts(f, y)
    # with D = 5 < 64 the PCA keeps every direction; the shrinkage exp(-sum of variances) is then ~0 on this
    # scale, so the nearest-centre term is the plain LDA posterior of the true class
    centred = f - f.mean(0)
    shrink = max(math.exp(-np.linalg.eigvalsh(np.cov(centred.T))[::-1][:32].sum()), 1e-10)
    post = _lda_posteriors(centred, y, shrink)
    assert parts["ncc"] == pytest.approx(post[np.arange(len(y)), y].mean(), rel=1e-4)
    assert parts["vc"] == pytest.approx(math.log(sum(np.linalg.svd(post[y == c], compute_uv=False).sum()
                                                     for c in range(3))), rel=1e-4)
    assert parts["seli"] > 0
    # the pool's total: every term min-max normalised over the candidates, vc subtracted
    pool = [{"seli": 1.0, "ncc": 0.5, "vc": 2.0}, {"seli": 3.0, "ncc": 1.0, "vc": 1.0}, {"seli": 2.0, "ncc": 0.5, "vc": 1.5}]
    assert combine_parts(pool, NCTI).tolist() == pytest.approx([-1.0, 2.0, 0.0])
    # a term equal everywhere adds nothing
    assert combine_parts([{"energy": 1.0, "lda": 0.2}, {"energy": 1.0, "lda": 0.6}], ETRAN).tolist() == [0.0, 1.0]


def test_etran_energy_is_the_lowest_half_of_the_features_logsumexp() -> None:
    f = np.array([[0.0, 0.0], [math.log(3.0), 0.0], [0.1, 0.0], [math.log(3.0), 0.2]])
    y = np.array([0, 1, 0, 1])
    parts = etran_parts(f, y, energy_fraction=0.5)
    lse = np.log(np.exp(f).sum(1))  # log 2, log 4, ...
    assert parts["energy"] == pytest.approx(np.sort(lse)[:2].mean())
    assert parts["energy"] == pytest.approx((math.log(2.0) + math.log(math.exp(0.1) + 1)) / 2)
    assert 0 < parts["lda"] <= 1
    with pytest.raises(HeadstartError, match="energy_fraction"):
        etran_parts(f, y, energy_fraction=0.0)


def test_transrate_is_the_coding_rate_gain_worked_in_two_dimensions() -> None:
    """Two classes on the two axes: after centring and unit scaling, R(Z) and each R(Z_c) by 2x2 determinants."""
    f = np.array([[2.0, 0.0], [4.0, 0.0], [0.0, 2.0], [0.0, 4.0]])
    y = np.array([0, 0, 1, 1])
    z = f - f.mean(0)
    z /= math.sqrt((z**2).sum(1).mean())
    eps2 = 0.01
    rate = lambda m: 0.5 * math.log(np.linalg.det(np.eye(2) + 2 / (len(m) * eps2) * m.T @ m))  # noqa: E731
    expected = rate(z) - 0.5 * rate(z[:2]) - 0.5 * rate(z[2:])
    assert transrate(f, y, eps2=eps2) == pytest.approx(expected, rel=1e-9)
    # fewer examples than dimensions: the rate is taken on the N x N Gram matrix, same value
    z = np.random.default_rng(0).normal(size=(3, 5))
    direct = 0.5 * np.linalg.slogdet(np.eye(5) + 5 / (3 * eps2) * z.T @ z)[1]
    assert _coding_rate(z, eps2) == pytest.approx(direct, rel=1e-10)
    with pytest.raises(HeadstartError, match="eps2"):
        transrate(f, y, eps2=0)


def test_gbc_of_two_unit_gaussians_two_apart() -> None:
    """Means 0 and 2, variances 1: D_B = 4/8 = 0.5, so GBC = -2 exp(-0.5) (both orders of the pair)."""
    f = np.array([[-1.0], [1.0], [1.0], [3.0]])
    y = np.array([0, 0, 1, 1])
    assert gbc(f, y) == pytest.approx(-2 * math.exp(-0.5), rel=1e-6)
    # unequal variances: the log-determinant term; variances 1 and 4, means 0 and 3
    f2 = np.array([[-1.0], [1.0], [1.0], [5.0]])
    s = 2.5
    d_b = 9 / (8 * s) + 0.5 * math.log(s / math.sqrt(1 * 4))
    assert gbc(f2, y) == pytest.approx(-2 * math.exp(-d_b), rel=1e-6)


def test_pactran_is_the_bound_at_the_map_point() -> None:
    """The bound re-derived: a long gradient descent to the same (strictly convex) optimum, then the formula."""
    f, y = clusters(n_per=20, k=3, d=4, sep=1.0, seed=5)
    n, d, k = len(y), 4, 3
    x = f - f.mean(0)
    onehot = np.eye(k)[y]
    lam = 1.0 * n
    w, b = np.zeros((d, k)), np.zeros(k)
    for _ in range(20000):
        p = _softmax(x @ w + b)
        g = (p - onehot) / n
        w -= 0.5 * (x.T @ g + w / lam)
        b -= 0.5 * g.sum(0)
    p = _softmax(x @ w + b)
    loss = -(onehot * np.log(p)).sum() / n + 0.5 * (w**2).sum() / lam
    h = ((x**2).T @ (p - p**2) + 1 / lam).sum() + (p - p**2).sum()
    sigma2_inv = h * lam / (d * k) + 1e-10
    expected = -(loss + 0.5 * d * k / lam * (100.0 / d) * math.log(sigma2_inv))
    assert pactran(f, y, max_iter=500) == pytest.approx(expected, rel=1e-4)


SCORES = {"sfda": sfda, "transrate": transrate, "gbc": gbc, "pactran": pactran,
          "ncti": lambda f, y: combine_parts([ncti_parts(f, y), ncti_parts(*clusters(sep=0.2, seed=9))], NCTI)[0],
          "etran": lambda f, y: combine_parts([etran_parts(f, y), etran_parts(*clusters(sep=0.2, seed=9))], ETRAN)[0]}


@pytest.mark.parametrize("name", sorted(SCORES))
def test_each_score_prefers_separated_classes_and_ignores_class_names(name: str) -> None:
    score = SCORES[name]
    good, y = clusters(sep=4.0, seed=1)
    bad, _ = clusters(sep=0.2, seed=1)
    if name in ("ncti", "etran"):  # a pooled score: this candidate against a poor one is the top of the pool
        assert score(good, y) > 0
    else:
        assert score(good, y) > score(bad, y)
        relabel = np.array([2, 0, 1])[y]
        assert score(good, relabel) == pytest.approx(score(good, y), rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("fn", [sfda, transrate, gbc, pactran, ncti_parts, etran_parts])
def test_scores_name_their_bad_input(fn) -> None:
    f, y = clusters(n_per=3, k=2, d=3)
    with pytest.raises(HeadstartError, match="at least 2 classes"):
        fn(f, np.zeros(len(y), dtype=int))
    with pytest.raises(HeadstartError, match="at least 2 examples"):
        fn(f[:4], np.array([0, 0, 0, 1]))
    with pytest.raises(HeadstartError, match="NaN"):
        fn(np.full_like(f, np.nan), y)


def test_half_sample_interval_of_a_mean_matches_its_standard_error() -> None:
    rng = np.random.default_rng(0)
    f = rng.normal(3.0, 2.0, (400, 1))
    y = np.repeat([0, 1], 200)
    mean = lambda a, b: float(a.mean())  # noqa: E731
    lo, hi = bootstrap_interval(mean, f, y, rounds=400, level=0.9, seed=1)
    assert lo < f.mean() < hi
    half_width = 1.645 * f.std() / math.sqrt(len(f))
    assert (hi - lo) / 2 == pytest.approx(half_width, rel=0.2)
    # half of each class, without repeats, every round
    seen = bootstrap_values(lambda a, b: (len(a), len(np.unique(a)), int((b == 0).sum())), f, y, rounds=5)
    assert seen == [(200, 200, 100)] * 5
    assert percentile_interval(10.0, [1.0, 2.0, 3.0], level=0.5) == pytest.approx((9.5, 10.5))
    with pytest.raises(HeadstartError, match="rounds"):
        bootstrap_values(mean, f, y, rounds=1)
    with pytest.raises(HeadstartError, match="level"):
        percentile_interval(0.0, [1.0, 2.0], level=1.0)
