"""Domain distances: references from the definitions, same-distribution nulls, shifted domains."""

from __future__ import annotations

import numpy as np
import pytest

from headstart.errors import HeadstartError
from headstart.transferability import centroid_distance, linear_cka, mmd, proxy_a_distance


def mmd2_reference(x: np.ndarray, y: np.ndarray, k) -> float:
    """Gretton et al. (2012), eq. 3, term by term."""
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return xx + yy - 2 * xy


def test_mmd_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    x, y = rng.normal(0, 1, (12, 3)), rng.normal(0.5, 1, (9, 3))
    lin = mmd(x, y, kernel="linear", permutations=0)
    assert lin["mmd2"] == pytest.approx(mmd2_reference(x, y, lambda a, b: a @ b), rel=1e-9)
    bw = 1.7
    rbf = mmd(x, y, kernel="rbf", bandwidth=bw, permutations=0)
    ref = mmd2_reference(x, y, lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * bw**2)))
    assert rbf["mmd2"] == pytest.approx(ref, rel=1e-9)


def test_same_distribution_is_near_zero_and_shift_is_detected() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(0, 1, (300, 10)), rng.normal(0, 1, (300, 10))
    shifted = rng.normal(0, 1, (300, 10)) + 0.6
    for kernel in ("linear", "rbf"):
        null = mmd(a, b, kernel=kernel)
        alt = mmd(a, shifted, kernel=kernel)
        assert null["p_value"] > 0.05
        assert abs(null["mmd2"]) < alt["mmd2"] / 10
        assert alt["p_value"] < 0.01
    assert proxy_a_distance(a, b)["a_distance"] < 0.4
    assert proxy_a_distance(a, shifted)["a_distance"] > 1.0
    assert centroid_distance(a, b) < centroid_distance(a, shifted)
    assert centroid_distance(np.zeros((2, 2)), np.full((3, 2), [3.0, 4.0])) == pytest.approx(5.0)


def test_linear_cka_reference_and_invariance() -> None:
    rng = np.random.default_rng(2)
    mix = rng.normal(0, 1, (6, 6))
    a, b = rng.normal(0, 1, (400, 6)) @ mix, rng.normal(0, 1, (400, 6)) @ mix
    other = rng.normal(0, 1, (400, 6)) * np.array([5, 1, 1, 1, 1, 0.1])
    assert linear_cka(a, b) > 0.9
    assert linear_cka(a, other) < linear_cka(a, b)
    assert linear_cka(a * 10, b + 3) == pytest.approx(linear_cka(a, b), rel=1e-9)  # scale and shift
    # reference: HSIC of the centred D x D Gram matrices
    ks, kt = np.cov(a.T, bias=True), np.cov(other.T, bias=True)
    h = np.eye(6) - 1 / 6

    def hsic(k, l):
        return np.trace(k @ h @ l @ h)

    assert linear_cka(a, other) == pytest.approx(hsic(ks, kt) / np.sqrt(hsic(ks, ks) * hsic(kt, kt)), rel=1e-9)


def test_width_mismatch_is_a_clear_error() -> None:
    with pytest.raises(HeadstartError, match="same model"):
        mmd(np.ones((4, 2)), np.ones((4, 3)))
