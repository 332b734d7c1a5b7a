"""Each score and distance against its stated definition, computed here another way (issue 28's mutation review):
the estimators, folds and seeds the docstrings promise, the subsampling, the p-value's correction, the
degenerate cases, and the messages that name what is wrong."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.spatial.distance import pdist
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from headstart.errors import HeadstartError
from headstart.transferability import (
    centroid_distance,
    hscore,
    knn_accuracy,
    leep,
    linear_cka,
    linear_probe_accuracy,
    logme,
    median_bandwidth,
    mmd,
    nce,
    proxy_a_distance,
)

from .test_distance import mmd2_reference


def _blobs(n: int = 60, d: int = 6, classes: int = 3, sep: float = 1.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    centres = rng.normal(0, sep, (classes, d))
    return centres[y] + rng.normal(0, 1, (n, d)) * np.linspace(0.2, 3, d), y


def _cv_accuracy(clf, f, y, folds, seed) -> float:
    k = int(min(folds, np.bincount(y).min()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(np.mean(cross_val_score(clf, f, y, cv=StratifiedKFold(k, shuffle=True, random_state=seed))))


@pytest.mark.parametrize("seed", [0, 3])
def test_knn_accuracy_is_cosine_knn_in_stratified_shuffled_folds(seed: int) -> None:
    f, y = _blobs(seed=seed)
    f[:, 0] *= 40  # cosine and Euclidean neighbours differ on such features
    ref = _cv_accuracy(KNeighborsClassifier(n_neighbors=5, metric="cosine"), f, y, 5, seed)
    assert knn_accuracy(f, y, seed=seed) == pytest.approx(ref, abs=1e-12)
    assert knn_accuracy(f, y, seed=seed) != pytest.approx(_cv_accuracy(KNeighborsClassifier(5), f, y, 5, seed), abs=1e-12)
    # k is capped by the smallest class; folds too
    small = np.r_[np.zeros(30, int), np.ones(3, int)]
    g = np.random.default_rng(seed).normal(0, 1, (33, 4)) + small[:, None]
    ref = _cv_accuracy(KNeighborsClassifier(n_neighbors=3, metric="cosine"), g, small, 5, seed)
    assert knn_accuracy(g, small, seed=seed) == pytest.approx(ref, abs=1e-12)


@pytest.mark.parametrize("C", [1.0, 0.01])
def test_linear_probe_is_standardised_logistic_regression_in_stratified_folds(C: float) -> None:
    f, y = _blobs(sep=0.5, seed=2)
    f *= np.logspace(-3, 3, f.shape[1])  # standardising matters
    ref = _cv_accuracy(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)), f, y, 5, 0)
    assert linear_probe_accuracy(f, y, C=C) == pytest.approx(ref, abs=1e-12)
    assert linear_probe_accuracy(f, y, C=C, seed=4) == pytest.approx(
        _cv_accuracy(make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000)), f, y, 5, 4), abs=1e-12)


def test_proxy_a_distance_is_a_domain_classifier_on_equal_subsamples() -> None:
    rng = np.random.default_rng(7)
    s = rng.normal(0, 1, (50, 5)) * np.logspace(-2, 2, 5)
    t = rng.normal(0.25, 1, (35, 5)) * np.logspace(-2, 2, 5)
    for max_points, seed in ((2000, 0), (20, 3)):
        got = proxy_a_distance(s, t, max_points=max_points, seed=seed)
        r = np.random.default_rng(seed)
        n = min(len(s), len(t), max_points)
        ss, tt = s[r.choice(len(s), n, replace=False)], t[r.choice(len(t), n, replace=False)]
        x, y = np.concatenate([ss, tt]), np.r_[np.zeros(n, int), np.ones(n, int)]
        acc = _cv_accuracy(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)), x, y, 5, seed)
        err = min(1.0 - acc, 0.5)
        assert got["domain_classifier_error"] == pytest.approx(err, abs=1e-12)
        assert got["a_distance"] == pytest.approx(2.0 * (1.0 - 2.0 * err), abs=1e-12)
    same = proxy_a_distance(s[:25], s[25:])  # worse than chance is capped: the distance is never negative
    assert 0.0 <= same["a_distance"] and same["domain_classifier_error"] <= 0.5


def test_median_bandwidth_is_the_median_pairwise_distance() -> None:
    rng = np.random.default_rng(1)
    s, t = rng.normal(0, 1, (15, 4)), rng.normal(1, 2, (12, 4))
    assert median_bandwidth(s, t) == pytest.approx(float(np.median(pdist(np.concatenate([s, t])))), rel=1e-9)
    # above max_points: the median of a seeded subsample without repeats
    for seed in (0, 5):
        pooled = np.concatenate([s, t])
        pick = np.random.default_rng(seed).choice(len(pooled), 10, replace=False)
        ref = float(np.median(pdist(pooled[pick])))
        assert median_bandwidth(s, t, max_points=10, seed=seed) == pytest.approx(ref, rel=1e-9)
    assert median_bandwidth(np.ones((3, 2)), np.ones((4, 2))) == 1.0  # all points equal: a usable bandwidth


def _mmd_reference(s, t, kernel, bandwidth, permutations, max_points, seed):
    """The permutation test spelled out: seeded subsamples, the median heuristic, eq. 3 per relabelling."""
    rng = np.random.default_rng(seed)
    if len(s) > max_points:
        s = s[rng.choice(len(s), max_points, replace=False)]
    if len(t) > max_points:
        t = t[rng.choice(len(t), max_points, replace=False)]
    if kernel == "rbf" and bandwidth is None:
        bandwidth = float(np.sqrt(np.median(pdist(np.concatenate([s, t])) ** 2)))  # (the middle pair's root mean square)
    k = (lambda a, b: a @ b) if kernel == "linear" else (lambda a, b: np.exp(-np.sum((a - b) ** 2) / (2 * bandwidth**2)))
    pooled = np.concatenate([s, t])
    is_s = np.zeros(len(pooled), bool)
    is_s[: len(s)] = True
    observed = mmd2_reference(s, t, k)
    hits = 0
    for _ in range(permutations):
        m = rng.permutation(is_s)
        hits += mmd2_reference(pooled[m], pooled[~m], k) >= observed - 1e-12
    return observed, (hits + 1) / (permutations + 1), bandwidth


@pytest.mark.parametrize("kernel,bandwidth,max_points,seed", [("rbf", None, 100, 0), ("rbf", None, 7, 4), ("linear", None, 8, 2),
                                                              ("rbf", 0.9, 100, 1), ("rbf", None, 9, 2)])  # 9 = all of s: kept as is
def test_mmd_permutation_test_follows_its_definition(kernel: str, bandwidth: float | None, max_points: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    s, t = rng.normal(0, 1, (9, 3)), rng.normal(0.4, 1, (8, 3))
    got = mmd(s, t, kernel=kernel, bandwidth=bandwidth, permutations=25, max_points=max_points, seed=seed)
    observed, p, bw = _mmd_reference(s, t, kernel, bandwidth, 25, max_points, seed)
    assert got["mmd2"] == pytest.approx(observed, rel=1e-9, abs=1e-12)
    assert got["p_value"] == pytest.approx(p, abs=1e-12)
    if kernel == "linear":
        assert np.isnan(got["bandwidth"])
    else:
        assert got["bandwidth"] == pytest.approx(bw, rel=1e-9)


def test_mmd_p_value_bounds() -> None:
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 1, (20, 2)), rng.normal(8, 1, (20, 2))
    assert mmd(s, t, permutations=99)["p_value"] == pytest.approx(1 / 100)  # nothing beats the observed: the +1 only
    assert mmd(s, t, permutations=0)["p_value"] == 1.0  # no test run: no evidence
    assert mmd(s, s.copy(), permutations=19)["p_value"] == 1.0  # every relabelling of one sample is at least as far


def test_linear_cka_degenerate_and_small_scale_cases() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.normal(0, 1, (50, 4)), rng.normal(0, 1, (50, 4))
    assert np.isnan(linear_cka(np.ones((10, 4)), b))  # no variance at all: undefined, not 0 or 1
    assert linear_cka(a * 1e-4, b * 1e-4) == pytest.approx(linear_cka(a, b), rel=1e-9)  # tiny features are fine


def test_leep_and_nce_check_their_inputs() -> None:
    p = np.full((4, 3), 1 / 3)
    y = np.array([0, 1, 0, 1])
    with pytest.raises(HeadstartError, match="source_probs: 3 rows for 4 labels"):
        leep(p[:3], y)
    with pytest.raises(HeadstartError, match="source_probs: 3 rows for 4 labels"):
        nce(p[:3], y)
    with pytest.raises(HeadstartError, match="source_probs: expected a"):
        leep(p[:, 0], y)
    assert leep(p, y.astype(float)) == leep(p, y)  # whole-number floats are class ids
    with pytest.raises(HeadstartError, match="integer class ids"):
        leep(p, y + 0.5)
    with pytest.raises(HeadstartError, match="rows must be probabilities"):
        leep(p * 1.01, y)  # rows summing to 1.01: off by more than the tolerance
    assert leep(p * 1.0005, y) == pytest.approx(leep(p, y), abs=1e-3)  # rounding within 1e-3 is accepted
    with pytest.raises(HeadstartError, match="rows must be probabilities"):
        leep(np.array([[1.2, -0.2, 0.0]] * 4), y)  # a negative probability, even though the row sums to 1


def test_feature_and_target_errors_name_the_input() -> None:
    with pytest.raises(HeadstartError, match=r"^source features: expected a \[N, D\] array"):
        mmd(np.ones(5), np.ones((4, 5)))
    with pytest.raises(HeadstartError, match=r"^target features: expected a \[N, D\] array"):
        mmd(np.ones((4, 5)), np.ones((1, 5)))
    with pytest.raises(HeadstartError, match=r"^features: expected a \[N, D\] array with N >= 2"):
        logme(np.ones(6), np.arange(6) % 2)
    with pytest.raises(HeadstartError, match=r"^labels: expected \[N\] or \[N, T\] regression targets with N=4"):
        logme(np.ones((4, 2)), np.ones((3,)), regression=True)
    with pytest.raises(HeadstartError, match=r"^labels: regression targets contain NaN or inf$"):
        logme(np.random.default_rng(0).normal(size=(4, 2)), np.array([0.0, np.nan, 1.0, 2.0]), regression=True)
    with pytest.raises(HeadstartError, match=r"^cross-validated score: every class needs at least 2 examples$"):
        knn_accuracy(np.random.default_rng(0).normal(size=(5, 2)), np.array([0, 0, 0, 0, 1]))
    # exactly two examples of a class is enough: two folds
    f = np.random.default_rng(1).normal(size=(8, 2))
    assert 0.0 <= knn_accuracy(f, np.array([0, 0, 0, 0, 0, 0, 1, 1])) <= 1.0
    assert 0.0 <= linear_probe_accuracy(f, np.array([0, 0, 0, 0, 0, 0, 1, 1])) <= 1.0


def test_logme_takes_float_features_and_targets_as_given() -> None:
    f, y = _blobs(n=40, d=5, seed=8)
    assert logme(f.astype(np.float32), y) == pytest.approx(logme(f, y), rel=1e-5)
    ints = np.round(f * 3).astype(np.int64)  # integer features: computed in float64, not integer arithmetic
    assert logme(ints, y) == pytest.approx(logme(ints.astype(np.float64), y), rel=1e-12)
    t = f @ np.arange(1, 6) + 0.1 * np.random.default_rng(0).normal(size=40)
    assert logme(f, t.reshape(-1, 1), regression=True) == pytest.approx(logme(f, t, regression=True), rel=1e-12)


def test_hscore_shrinkage_bounds_and_explicit_formula() -> None:
    f, y = _blobs(n=45, d=4, seed=9)
    c = f - f.mean(0)
    emp = c.T @ c / len(c)
    for a in (0.0, 0.3, 1.0):
        cov = (1 - a) * emp + a * np.trace(emp) / 4 * np.eye(4)
        means = np.stack([c[y == k].mean(0) for k in range(3)])
        g = means[y]
        ref = np.trace(np.linalg.inv(cov) @ (g.T @ g / len(c)))
        assert hscore(f, y, shrinkage=a) == pytest.approx(ref, rel=1e-9)
    with pytest.raises(HeadstartError, match="shrinkage must be in"):
        hscore(f, y, shrinkage=-0.1)
    with pytest.raises(HeadstartError, match="shrinkage must be in"):
        hscore(f, y, shrinkage=1.01)
    # Ledoit-Wolf on the centred features (the data's mean is removed once, not estimated again)
    from sklearn.covariance import LedoitWolf

    cov = LedoitWolf(assume_centered=True).fit(c).covariance_
    means = np.stack([c[y == k].mean(0) for k in range(3)])
    ref = np.trace(np.linalg.inv(cov) @ (means[y].T @ means[y] / len(c)))
    assert hscore(f + 50.0, y) == pytest.approx(ref, rel=1e-6)


def test_defaults_are_the_documented_ones() -> None:
    """C=1, seed 0, 5 folds, 200 permutations: what a caller gets without naming them (data where each matters)."""
    f, y = _blobs(n=40, d=30, sep=0.35, seed=2)
    assert linear_probe_accuracy(f, y) == linear_probe_accuracy(f, y, C=1.0, seed=0)
    assert linear_probe_accuracy(f, y) != linear_probe_accuracy(f, y, C=2.0)  # C matters on these features
    g, z = _blobs(n=45, d=8, sep=0.5, seed=3)
    assert knn_accuracy(g, z) == knn_accuracy(g, z, k=5, folds=5, seed=0)
    rng = np.random.default_rng(0)
    s, t = rng.normal(0, 1, (12, 2)), rng.normal(0.3, 1, (10, 2))
    assert mmd(s, t) == mmd(s, t, kernel="rbf", permutations=200, seed=0)
    assert proxy_a_distance(s, t) == proxy_a_distance(s, t, folds=5, seed=0)


def test_proxy_a_distance_takes_the_smaller_domain_and_its_folds() -> None:
    rng = np.random.default_rng(11)
    s, t = rng.normal(0, 1, (24, 4)), rng.normal(0.5, 1, (40, 4))  # the source is the smaller one
    got = proxy_a_distance(s, t, folds=3, seed=2)
    r = np.random.default_rng(2)
    ss, tt = s[r.choice(24, 24, replace=False)], t[r.choice(40, 24, replace=False)]
    x, y = np.concatenate([ss, tt]), np.r_[np.zeros(24, int), np.ones(24, int)]
    acc = _cv_accuracy(make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)), x, y, 3, 2)
    assert got["domain_classifier_error"] == pytest.approx(min(1.0 - acc, 0.5), abs=1e-12)


def test_centroid_distance_of_two_nonzero_means() -> None:
    assert centroid_distance(np.array([[0.0, 0.0], [2.0, 2.0]]), np.array([[4.0, 5.0], [4.0, 5.0]])) == pytest.approx(5.0)


def test_scores_compute_in_float64_whatever_comes_in() -> None:
    f, y = _blobs(n=40, d=5, seed=8)
    f32 = f.astype(np.float32)
    assert logme(f32, y) == pytest.approx(logme(f32.astype(np.float64), y), rel=1e-13)
    assert hscore(f32, y) == pytest.approx(hscore(f32.astype(np.float64), y), rel=1e-12)


def test_more_messages_name_the_problem() -> None:
    with pytest.raises(HeadstartError, match=r"^source and target features differ in width \(2 vs 3\): compute both with the same model$"):
        mmd(np.ones((4, 2)), np.ones((4, 3)))
    with pytest.raises(HeadstartError, match=r"^mmd: unknown kernel 'cosine'; use 'linear' or 'rbf'$"):
        mmd(np.ones((4, 2)), np.zeros((4, 2)), kernel="cosine")
    with pytest.raises(HeadstartError, match=r"^source_probs: 3 rows for 4 labels$"):
        leep(np.full((3, 2), 0.5), np.array([0, 1, 0, 1]))
    with pytest.raises(HeadstartError, match=r"^labels: expected integer class ids for a classification score$"):
        leep(np.full((4, 2), 0.5), np.array([0.5, 1, 0, 1]))
    with pytest.raises(HeadstartError, match=r"^source_probs: rows must be probabilities \(softmax of the source classifier's logits\)$"):
        nce(np.full((4, 2), 0.7), np.array([0, 1, 0, 1]))
