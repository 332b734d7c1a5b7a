"""Transferability scores designed to predict *fine-tuned* accuracy, not the linear probe's.

LogME, H-score and the probes ask how well a frozen feature space separates the target classes. The scores here
were each proposed because that is the wrong question when the backbone will move: they ask how *close* the
feature space is to what fine-tuning would make of it (SFDA, NCTI), how much information a classifier could draw
from it under a penalty for its complexity (TransRate, PACTran), or how much the classes overlap once modelled
as Gaussians (GBC). All take the target examples' features ``[N, D]`` and class ids ``[N]`` and return one float
where **higher means a better expected transfer**; all run in well under a second on a few thousand examples.

NCTI and ETran add terms on different scales; their papers normalise each term over the candidate pool before
summing, so they come as ``*_parts`` (one dict per candidate) plus ``combine_parts`` for the pool.

Where a paper's code and its text differ, the text is followed and the difference named in the docstring.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..errors import HeadstartError
from ._scores import _as_2d, _labels


def _checked(features: np.ndarray, labels: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    f = _as_2d(features)
    y = _labels(labels, f.shape[0])
    counts = np.bincount(y)
    if len(counts) < 2 or counts.min() < 2:
        raise HeadstartError(f"{name}: needs at least 2 classes with at least 2 examples each (got counts {counts.tolist()})")
    return f, y


def _shrunk_lda(f: np.ndarray, y: np.ndarray, shrinkage: float) -> np.ndarray:
    """[N, C] class posteriors of a Gaussian classifier with a shared, shrunk within-class covariance.

    The covariance is ``(1 - s) S_w + s tr(S_w)/D I`` (S_w the prior-weighted class covariances); the posteriors
    are the softmax of ``x S^-1 mu_c - mu_c S^-1 mu_c / 2 + log pi_c``: scikit-learn's LDA with ``solver="lsqr"``.
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # collinear features are expected (D > N, ReLU zeros); the shrinkage handles them
        lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage=float(shrinkage)).fit(f, y)
        return lda.predict_proba(f)


def _class_means(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[C, D] mean of each class's features."""
    k = y.max() + 1
    means = np.zeros((k, f.shape[1]))
    np.add.at(means, y, f)
    return means / np.bincount(y, minlength=k)[:, None]


def _within_cov(f: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Prior-weighted within-class covariance (biased, as the class covariances of LDA)."""
    centred = f - _class_means(f, y)[y]
    return centred.T @ centred / len(f)


def _pca(f: np.ndarray, components: int) -> tuple[Any, np.ndarray]:
    """PCA to at most ``components`` dimensions (fewer when D or N - 1 is smaller): the fitted PCA, [N, k]."""
    from sklearn.decomposition import PCA

    pca = PCA(n_components=int(min(components, f.shape[1], f.shape[0] - 1)), random_state=0)
    return pca, pca.fit_transform(f)


def _sfda_shrinkage(f: np.ndarray, y: np.ndarray) -> float:
    """SFDA's adaptive regularisation: exp(-5 * largest eigenvalue of S_w), at least 1e-10."""
    top = float(np.linalg.eigvalsh(_within_cov(f, y))[-1])
    return max(float(np.exp(-5.0 * top)), 1e-10)


def sfda(features: np.ndarray, labels: np.ndarray) -> float:
    """SFDA: the mean posterior of the true class in a *self-challenging* Fisher space.

    Shao, Zhao, Ge, Liu, Feng & Wang, "Not All Models Are Equal: Predicting Model Transferability in a
    Self-challenging Fisher Space", ECCV 2022 (https://arxiv.org/abs/2207.03036).

    1. Regularised Fisher discriminant: within-class scatter shrunk by ``s = exp(-5 sigma_max(S_w))`` (less
       shrinkage for features that already spread), class posteriors ``p(y | x)`` of the Gaussian classifier in
       that space (`_shrunk_lda`).
    2. ConfMix, the self-challenge: each example moves towards the mean of the *other* classes' means, by how
       unsure the first classifier is of its class: ``x' = q x + (1 - q) mean_{c != y} mu_c`` with ``q`` the
       softened posterior of the true class (a softmax over the posteriors, as in the authors' code). A feature
       space whose classes stay apart under this push is one fine-tuning can still sharpen.
    3. The score: the mean posterior of the true class after refitting on ``x'`` with the same ``s``.

    Returns a value in (0, 1].
    """
    f, y = _checked(features, labels, "sfda")
    s = _sfda_shrinkage(f, y)
    p = _shrunk_lda(f, y, s)
    soft = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
    q = soft[np.arange(len(y)), y][:, None]
    means = _class_means(f, y)
    others = (means.sum(axis=0)[None, :] - means) / (len(means) - 1)  # [C, D] mean of the other classes' means
    mixed = q * f + (1.0 - q) * others[y]
    p2 = _shrunk_lda(mixed, y, s)
    return float(p2[np.arange(len(y)), y].mean())


def ncti_parts(features: np.ndarray, labels: np.ndarray, *, components: int = 64) -> dict[str, float]:
    """NCTI's three neural-collapse terms for one candidate; combine a pool's with `combine_parts(..., NCTI)`.

    Wang, Luo, Zheng, Huang & Baktashmotlagh, "How Far Pre-trained Models Are from Neural Collapse on the
    Target Dataset Informs their Transferability", ICCV 2023.

    Fine-tuning drives the last features towards neural collapse (classes shrink to their means, the means
    spread into a simplex, the nearest mean decides). NCTI measures how far the frozen features are from it,
    after PCA to ``components`` dimensions and a shrunk LDA (shrinkage ``exp(-sum of the top 32 PCA
    variances)``, the authors' choice):

    - ``seli``: nuclear norm of the centred LDA projection (the geometry fine-tuning converges to has full rank);
    - ``ncc``: mean LDA posterior of the true class (the nearest-centre classifier is already right);
    - ``vc``: log of the summed nuclear norms of each class's posterior matrix (within-class variability; it
      enters the total with a minus sign).
    """
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

    f, y = _checked(features, labels, "ncti")
    pca, z = _pca(f, components)
    shrink = max(float(np.exp(-pca.explained_variance_[:32].sum())), 1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lda = (LinearDiscriminantAnalysis(solver="svd") if shrink <= 1e-10 else
               LinearDiscriminantAnalysis(solver="eigen", shrinkage=shrink)).fit(z, y)
        low = lda.transform(z)
        post = lda.predict_proba(z)
    low = low - low.mean(axis=0, keepdims=True)
    vc = sum(np.linalg.norm(post[y == c], ord="nuc") for c in range(y.max() + 1))
    return {"seli": float(np.linalg.norm(low, ord="nuc")), "ncc": float(post[np.arange(len(y)), y].mean()),
            "vc": float(np.log(vc))}


def etran_parts(features: np.ndarray, labels: np.ndarray, *, energy_fraction: float = 0.5) -> dict[str, float]:
    """ETran's classification terms for one candidate; combine a pool's with `combine_parts(..., ETRAN)`.

    Gholami, Akbari, Wang & Zhang, "ETran: Energy-Based Transferability Estimation", ICCV 2023
    (https://arxiv.org/abs/2308.02027).

    - ``energy``: the features read as logits, ``logsumexp_d f_d(x)`` (minus the free energy): target data that
      looks in-distribution to the source model has low energy, i.e. a high value here. The mean over the
      ``energy_fraction`` of examples with the lowest values (the paper's "bottom" subset; its code keeps 0.5%
      of them, which on a few hundred examples is one or two: half is used here).
    - ``lda``: mean posterior of the true class under SFDA's regularised LDA (the paper's classification term).

    The paper's third term (an SVD score) is for regression and detection targets and is left out.
    """
    f, y = _checked(features, labels, "etran")
    if not 0.0 < energy_fraction <= 1.0:
        raise HeadstartError(f"etran: energy_fraction must be in (0, 1], got {energy_fraction}")
    top = f.max(axis=1, keepdims=True)
    energy = (top[:, 0] + np.log(np.exp(f - top).sum(axis=1)))
    keep = np.sort(energy)[: max(1, int(round(energy_fraction * len(energy))))]
    p = _shrunk_lda(f, y, _sfda_shrinkage(f, y))
    return {"energy": float(keep.mean()), "lda": float(p[np.arange(len(y)), y].mean())}


# Signs of each term in the pool's total (NCTI: seli + ncc - vc; ETran: energy + lda).
NCTI = {"seli": 1.0, "ncc": 1.0, "vc": -1.0}
ETRAN = {"energy": 1.0, "lda": 1.0}


def combine_parts(parts: Sequence[dict[str, float]], signs: dict[str, float]) -> np.ndarray:
    """One total per candidate: each term min-max normalised over the pool, then summed with its sign.

    This is how NCTI and ETran put terms of different scales on one footing; it makes the totals a ranking of
    *this* pool (adding a candidate can move the others' values, never their order within one term).
    A term equal for every candidate contributes 0.
    """
    if not parts:
        raise HeadstartError("combine_parts: no candidates")
    total = np.zeros(len(parts))
    for key, sign in signs.items():
        v = np.array([p[key] for p in parts], dtype=np.float64)
        span = v.max() - v.min()
        total += sign * ((v - v.min()) / span if span > 0 else np.zeros_like(v))
    return total


def _unit_scale(f: np.ndarray) -> np.ndarray:
    """Centre and scale so the mean squared norm is 1: coding rates compare across feature spaces."""
    c = f - f.mean(axis=0, keepdims=True)
    scale = np.sqrt((c**2).sum(axis=1).mean())
    return c / scale if scale > 0 else c


def _coding_rate(z: np.ndarray, eps2: float) -> float:
    """R(Z, eps) = 1/2 log det(I + D / (n eps^2) Z^T Z) (Ma et al. 2007; MCR^2)."""
    n, d = z.shape
    gram = z @ z.T if n < d else z.T @ z  # same non-zero spectrum: the smaller side
    sign, logdet = np.linalg.slogdet(np.eye(len(gram)) + d / (n * eps2) * gram)
    return 0.5 * float(logdet)


def transrate(features: np.ndarray, labels: np.ndarray, *, eps2: float = 1e-2) -> float:
    """TransRate: the coding rate of the features minus their rate given the class.

    Huang, Huang, Ma, Lin & Zhou, "Frustratingly Easy Transferability Estimation", ICML 2022
    (https://arxiv.org/abs/2106.09362). ``R(Z) - sum_c (n_c / n) R(Z_c)``: the mutual information between
    features and labels under a Gaussian code with distortion ``eps``; high when the features are rich overall
    (much to fine-tune) and compact within each class.

    Features are centred and scaled to a unit mean squared norm first, so ``eps`` means the same distortion
    for every candidate (the authors' code uses raw features; the paper's analysis assumes normalised ones).
    The class term is weighted by class frequency as in the paper, not divided by 2K as in the authors' code.
    """
    f, y = _checked(features, labels, "transrate")
    if eps2 <= 0:
        raise HeadstartError(f"transrate: eps2 must be > 0, got {eps2}")
    z = _unit_scale(f)
    n = len(y)
    within = sum((np.sum(y == c) / n) * _coding_rate(z[y == c], eps2) for c in range(y.max() + 1))
    return _coding_rate(z, eps2) - within


def gbc(features: np.ndarray, labels: np.ndarray, *, components: int = 64) -> float:
    """GBC: minus the summed Bhattacharyya coefficients between per-class Gaussians.

    Pandy, Agostinelli, Uijlings, Ferrari & Mensink, "Transferability Estimation using Bhattacharyya Class
    Separability", CVPR 2022 (https://arxiv.org/abs/2111.12780). The features are reduced by PCA to
    ``components`` dimensions; each class is a Gaussian with a diagonal covariance (the paper's better
    variant); for classes i != j, ``BC = exp(-D_B)`` with
    ``D_B = 1/8 (mu_i - mu_j)^T S^-1 (mu_i - mu_j) + 1/2 ln(det S / sqrt(det S_i det S_j))``, ``S = (S_i + S_j)/2``.
    The score is ``-sum_{i != j} BC``: 0 for classes that do not overlap, more negative the more they do.
    """
    f, y = _checked(features, labels, "gbc")
    z = _pca(f, components)[1]
    k = y.max() + 1
    mu = _class_means(z, y)
    var = np.stack([z[y == c].var(axis=0) for c in range(k)]) + 1e-8 * (z.var(axis=0).mean() + 1e-12)
    log_var = np.log(var)
    total = 0.0
    for i in range(k):
        for j in range(i + 1, k):
            s = 0.5 * (var[i] + var[j])
            d_b = 0.125 * float(((mu[i] - mu[j]) ** 2 / s).sum()) + \
                0.5 * float(np.log(s).sum() - 0.5 * (log_var[i].sum() + log_var[j].sum()))
            total += 2.0 * np.exp(-d_b)  # BC(i, j) + BC(j, i)
    return -total


def pactran(features: np.ndarray, labels: np.ndarray, *, prior_factor: float = 1.0, variance_factor: float = 100.0,
            max_iter: int = 10) -> float:
    """PACTran-Gaussian: minus a PAC-Bayesian bound for a softmax classifier on the features.

    Ding, Chen, Liu, Shi & Li, "PACTran: PAC-Bayesian Metrics for Estimating the Transferability of Pretrained
    Models to Classification Tasks", ECCV 2022 (https://arxiv.org/abs/2203.05126).
    A softmax regression on the centred features with a Gaussian prior (precision ``1 / (prior_factor N)`` on
    the weights) is fitted to its MAP point by ``max_iter`` L-BFGS steps (the paper's early stop); the bound is
    that loss plus ``kd / (2 lambda) s2 log(sigma^-2)`` with ``sigma^-2`` the mean diagonal of the Hessian,
    ``kd`` the number of weights, ``lambda = prior_factor N`` and ``s2 = variance_factor / D``. The score is
    the bound's negative: a space where a simple classifier fits with a flat optimum scores high.
    """
    from scipy.optimize import minimize
    from scipy.special import log_softmax, softmax

    f, y = _checked(features, labels, "pactran")
    f = f - f.mean(axis=0, keepdims=True)
    n, d = f.shape
    k = y.max() + 1
    onehot = np.eye(k)[y]
    lam = prior_factor * n

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = theta.reshape(d + 1, k)
        return t[:d], t[d:]

    def loss_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = unpack(theta)
        logits = f @ w + b
        loss = -float((onehot * log_softmax(logits, axis=1)).sum()) / n + 0.5 * float((w**2).sum()) / lam
        g = (softmax(logits, axis=1) - onehot) / n
        return loss, np.concatenate([f.T @ g + w / lam, g.sum(axis=0, keepdims=True)]).ravel()

    theta0 = np.zeros((d + 1) * k)  # deterministic start (the authors draw it at random, scale 0.03)
    res = minimize(loss_grad, theta0, jac=True, method="L-BFGS-B", options={"maxiter": max_iter}, tol=1e-6)
    w, b = unpack(res.x)
    p = softmax(f @ w + b, axis=1)
    h_w = (f**2).T @ (p - p**2) + 1.0 / lam
    h_b = (p - p**2).sum(axis=0, keepdims=True)
    kd = d * k
    sigma2_inv = float(np.concatenate([h_w, h_b]).sum()) * lam / kd + 1e-10
    bound = float(res.fun) + 0.5 * kd / lam * (variance_factor / d) * np.log(sigma2_inv)
    return -bound


def bootstrap_values(score: Callable[[np.ndarray, np.ndarray], Any], features: np.ndarray, labels: np.ndarray,
                     *, rounds: int = 30, seed: int = 0) -> list[Any]:
    """``score(features, labels)`` on ``rounds`` half-samples: half of each class, drawn without replacement.

    A half-sample bootstrap (the delete-half jackknife), not draws with replacement: a resample with repeated
    rows breaks the scores that fit a model to the examples (with N near D, LogME's evidence of a resample
    jumped from 0.06 to 26-126 on the 150-text demo, as repeated rows let the linear model interpolate). For a
    mean, the spread of half-samples without replacement equals the spread of the full-sample estimate
    (variance ``s^2/m (1 - m/n) = s^2/n`` at ``m = n/2``); `percentile_interval` re-centres it on the point
    estimate, since a score on fewer examples can be biased (an in-sample classifier fits half the data more
    easily).
    """
    if rounds < 2:
        raise HeadstartError(f"bootstrap: rounds must be at least 2, got {rounds}")
    f = np.asarray(features)
    y = np.asarray(labels)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == c) for c in np.unique(y)]
    out = []
    for _ in range(rounds):
        idx = np.sort(np.concatenate([rng.choice(g, size=max(2, len(g) // 2), replace=False) for g in groups]))
        out.append(score(f[idx], y[idx]))
    return out


def percentile_interval(point: float, values: Sequence[float], level: float = 0.9) -> tuple[float, float]:
    """The central ``level`` interval of the half-sample values, moved to sit around ``point``.

    ``point + quantiles(values - median(values))``: the spread is the half-samples', the centre the estimate
    on every example.
    """
    if not 0.0 < level < 1.0:
        raise HeadstartError(f"bootstrap: level must be in (0, 1), got {level}")
    v = np.asarray(values, dtype=np.float64)
    lo, hi = np.quantile(v - np.median(v), [(1.0 - level) / 2, (1.0 + level) / 2])
    return float(point + lo), float(point + hi)


def bootstrap_interval(score: Callable[[np.ndarray, np.ndarray], float], features: np.ndarray, labels: np.ndarray,
                       *, rounds: int = 30, level: float = 0.9, seed: int = 0) -> tuple[float, float]:
    """A ``level`` interval of ``score(features, labels)`` from `bootstrap_values` half-samples.

    ``rounds`` 20 to 30 is enough to say whether two candidates' 90% intervals overlap (the question `rank` asks
    of its top two); `rank` takes 20 by default, a third of its scoring time on small data.
    """
    point = score(features, labels)
    return percentile_interval(point, bootstrap_values(score, features, labels, rounds=rounds, seed=seed), level)
