"""Domain distances: how far apart two datasets lie in one model's feature space.

All functions take two feature matrices ``source`` [Ns, D] and ``target`` [Nt, D]
computed by the *same* backbone (different examples, same feature axes) and
return floats. Two samples of one distribution give ~0 (MMD, A-distance,
centroid distance) or ~1 (CKA).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np

from ..errors import HeadstartError
from ._scores import _as_2d


def _pair(source: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s, t = _as_2d(source, "source features"), _as_2d(target, "target features")
    if s.shape[1] != t.shape[1]:
        raise HeadstartError(f"source and target features differ in width ({s.shape[1]} vs {t.shape[1]}): "
                             "compute both with the same model")
    return s, t


def centroid_distance(source: np.ndarray, target: np.ndarray) -> float:
    """Euclidean distance between the two feature means, the simplest measure.

    Scale-dependent: compare it across dataset pairs for one model, not across models.
    """
    s, t = _pair(source, target)
    return float(np.linalg.norm(s.mean(0) - t.mean(0)))


def median_bandwidth(source: np.ndarray, target: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """The median heuristic: the median pairwise Euclidean distance of the pooled sample."""
    s, t = _pair(source, target)
    pooled = np.concatenate([s, t])
    if len(pooled) > max_points:
        pooled = pooled[np.random.default_rng(seed).choice(len(pooled), max_points, replace=False)]
    d2 = _sq_dists(pooled, pooled)
    med = float(np.sqrt(np.median(d2[np.triu_indices(len(pooled), 1)])))
    return med if med > 0 else 1.0


def _kernel(x: np.ndarray, kernel: str, bandwidth: float | None) -> np.ndarray:
    g = x @ x.T
    if kernel == "linear":
        return g
    if kernel == "rbf":
        sq = np.diag(g)
        d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * g, 0.0)
        return np.exp(-d2 / (2 * bandwidth**2))
    raise HeadstartError(f"mmd: unknown kernel {kernel!r}; use 'linear' or 'rbf'")


def _mmd2_from_gram(k: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3) for each source mask column of ``masks`` [n, P].

    Block sums come from one matrix product, so a permutation test costs one
    [n, n] x [n, P] product instead of P passes over sub-matrices.
    """
    s = masks.astype(np.float64)
    t = 1.0 - s
    ns, nt = s.sum(0), t.sum(0)
    diag = np.diag(k)
    ks, kt = k @ s, k @ t
    sum_ss = np.einsum("np,np->p", s, ks) - diag @ s
    sum_tt = np.einsum("np,np->p", t, kt) - diag @ t
    sum_st = np.einsum("np,np->p", s, kt)
    return sum_ss / (ns * (ns - 1)) + sum_tt / (nt * (nt - 1)) - 2 * sum_st / (ns * nt)


def mmd(source: np.ndarray, target: np.ndarray, *, kernel: str = "rbf", bandwidth: float | None = None,
        permutations: int = 200, max_points: int = 1500, seed: int = 0) -> dict[str, float]:
    """Maximum mean discrepancy with a permutation test.

    Gretton, Borgwardt, Rasch, Schölkopf & Smola, "A Kernel Two-Sample Test", JMLR 2012
    (https://jmlr.org/papers/v13/gretton12a.html). Returns ``{"mmd2": unbiased MMD^2,
    "p_value": ..., "bandwidth": ...}``. The p-value is the share of ``permutations``
    random relabellings of the pooled sample whose MMD^2 is at least the observed one
    (with the +1 correction); a high p-value means the two samples are indistinguishable.
    ``kernel="linear"`` gives |mean_s - mean_t|^2 (unbiased); ``"rbf"`` uses a Gaussian
    kernel whose bandwidth defaults to the median heuristic. Each domain is subsampled
    to ``max_points`` examples to bound the O(n^2) Gram matrix.
    """
    s, t = _pair(source, target)
    rng = np.random.default_rng(seed)
    if len(s) > max_points:
        s = s[rng.choice(len(s), max_points, replace=False)]
    if len(t) > max_points:
        t = t[rng.choice(len(t), max_points, replace=False)]
    if kernel == "rbf" and bandwidth is None:
        bandwidth = median_bandwidth(s, t, seed=seed)
    k = _kernel(np.concatenate([s, t]), kernel, bandwidth)
    is_s = np.zeros(len(k), bool)
    is_s[: len(s)] = True
    observed = float(_mmd2_from_gram(k, is_s[:, None])[0])
    perms = np.stack([rng.permutation(is_s) for _ in range(permutations)], 1) if permutations else is_s[:, None][:, :0]
    hits = int(np.sum(_mmd2_from_gram(k, perms) >= observed)) if permutations else 0
    return {"mmd2": observed, "p_value": (hits + 1) / (permutations + 1),
            "bandwidth": float(bandwidth) if bandwidth is not None else float("nan")}


MMD_SCALES = (0.25, 0.5, 1.0, 2.0, 4.0)


def multi_kernel_mmd2(source: Any, target: Any, scales: tuple[float, ...] = MMD_SCALES) -> Any:
    """Unbiased MMD^2 under a family of Gaussian kernels, averaged: the multi-kernel MMD of DAN.

    Long, Cao, Wang & Jordan, "Learning Transferable Features with Deep Adaptation Networks", ICML 2015
    (https://arxiv.org/abs/1502.02791). Kernel ``i`` is ``exp(-|x - y|^2 / (s_i * m))`` with ``m`` the mean
    pairwise squared distance of the pooled sample and ``s_i`` in ``scales`` (equal kernel weights, as
    TLlib does). Written with operations NumPy arrays and torch tensors share: `distance` calls it on
    features, the ``mmd`` strategy on a batch of them, where it is differentiable (``m`` is taken as a constant).
    Needs at least two examples on each side (else 0).
    """
    ns, nt = len(source), len(target)
    if ns < 2 or nt < 2:
        return (source.sum() + target.sum()) * 0.0
    dss, dtt, dst = _sq_dists(source, source), _sq_dists(target, target), _sq_dists(source, target)
    n = ns + nt
    total = dss.sum() + dtt.sum() + 2.0 * dst.sum()
    m = float(total.detach() if hasattr(total, "detach") else total) / (n * (n - 1)) or 1.0
    kss, ktt, kst = ((sum(math.e ** (-d / (s * m)) for s in scales) / len(scales)) for d in (dss, dtt, dst))
    return ((kss.sum() - kss.diagonal().sum()) / (ns * (ns - 1)) + (ktt.sum() - ktt.diagonal().sum()) / (nt * (nt - 1))
            - 2.0 * kst.mean())


def _sq_dists(a: Any, b: Any) -> Any:
    """Pairwise squared Euclidean distances [len(a), len(b)] (NumPy or torch)."""
    return ((a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * (a @ b.T)).clip(min=0.0)


def linear_cka(source: np.ndarray, target: np.ndarray) -> float:
    """Linear CKA between the two domains' feature covariance structures; 1 = identical shape.

    Kornblith, Norouzi, Lee & Hinton, "Similarity of Neural Network Representations
    Revisited", ICML 2019 (https://arxiv.org/abs/1905.00414) define CKA for two
    representations of the *same* examples. Two domains share no examples, but they
    share the feature axes: here the D feature dimensions are the paired observations,
    so CKA compares the two D x D Gram matrices of the centred features
    (HSIC(K_s, K_t) / sqrt(HSIC(K_s, K_s) HSIC(K_t, K_t)) with K = X^T X / N).
    It ignores where the domains sit (see the centroid distance and MMD) and tells
    whether their features vary along the same directions. Invariant to scaling either domain.
    """
    s, t = _pair(source, target)
    ks = np.cov(s, rowvar=False, bias=True)
    kt = np.cov(t, rowvar=False, bias=True)
    d = ks.shape[0]
    h = np.eye(d) - 1.0 / d
    ks, kt = h @ ks @ h, h @ kt @ h
    denom = np.linalg.norm(ks) * np.linalg.norm(kt)
    return float(np.sum(ks * kt) / denom) if denom > 0 else float("nan")


def proxy_a_distance(source: np.ndarray, target: np.ndarray, *, folds: int = 5, max_points: int = 2000,
                     seed: int = 0) -> dict[str, float]:
    """Proxy A-distance 2 (1 - 2 err) of a domain classifier (source vs target).

    Ben-David, Blitzer, Crammer & Pereira, "Analysis of Representations for Domain
    Adaptation", NeurIPS 2006. A logistic regression on standardised features is
    trained to tell the domains apart (equal-size subsamples, stratified ``folds``-fold
    CV); ``err`` is its held-out error. 0 = indistinguishable (err 0.5), 2 = perfectly
    separable. ``err`` is capped at 0.5, so the distance is in [0, 2].
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s, t = _pair(source, target)
    rng = np.random.default_rng(seed)
    n = min(len(s), len(t), max_points)
    s, t = s[rng.choice(len(s), n, replace=False)], t[rng.choice(len(t), n, replace=False)]
    x = np.concatenate([s, t])
    y = np.r_[np.zeros(n, int), np.ones(n, int)]
    cv = StratifiedKFold(min(folds, n), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        err = 1.0 - float(np.mean(cross_val_score(clf, x, y, cv=cv)))
    err = min(err, 0.5)
    return {"a_distance": 2.0 * (1.0 - 2.0 * err), "domain_classifier_error": err}


def importance_weights(source: np.ndarray, target: np.ndarray, query: np.ndarray, *, max_points: int = 2000,
                       seed: int = 0) -> np.ndarray:
    """Density ratio p_target(x) / p_source(x) at each ``query`` row, from a domain classifier.

    A logistic regression on standardised features learns P(target | x) from ``source`` vs ``target``
    (each subsampled to ``max_points``); the ratio is ``P(t|x) / P(s|x) * n_s / n_t`` (Bickel, Brückner &
    Scheffer, ICML 2007). ``query`` holds labeled source examples the classifier did not train on.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s, t = _pair(source, target)
    rng = np.random.default_rng(seed)
    s = s[rng.choice(len(s), min(len(s), max_points), replace=False)]
    t = t[rng.choice(len(t), min(len(t), max_points), replace=False)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    clf.fit(np.concatenate([s, t]), np.r_[np.zeros(len(s), int), np.ones(len(t), int)])
    p = np.clip(clf.predict_proba(_as_2d(query, "query features"))[:, 1], 1e-6, 1 - 1e-6)
    return p / (1.0 - p) * (len(s) / len(t))


def dev_risk(losses: np.ndarray, weights: np.ndarray) -> float:
    """Deep Embedded Validation: the importance-weighted validation loss with a control variate.

    You, Wang, Long & Jordan, "Towards Accurate Model Selection in Deep Unsupervised Domain Adaptation",
    ICML 2019 (https://proceedings.mlr.press/v97/you19a.html). ``losses``: each labeled source validation
    example's loss; ``weights``: its density ratio (`importance_weights`). The weighted mean estimates the
    target risk without target labels; since E[w] = 1, ``eta * (mean(w) - 1)`` with the variance-minimising
    ``eta = -Cov(w l, w) / Var(w)`` lowers its variance. Lower is better.
    """
    wl, w = np.asarray(losses, np.float64) * weights, np.asarray(weights, np.float64)
    var = float(np.var(w, ddof=1)) if len(w) > 1 else 0.0
    eta = -float(np.cov(np.stack([wl, w]))[0, 1]) / var if var > 0 else 0.0
    return float(np.mean(wl) + eta * np.mean(w) - eta)


__all__ = ["centroid_distance", "dev_risk", "importance_weights", "linear_cka", "median_bandwidth", "mmd",
           "multi_kernel_mmd2", "proxy_a_distance"]
