"""Transferability scores: how well will a source model serve a labelled target task?

Each function takes the target examples' features (or the source model's
predictions on them) and the target labels, and returns one float where
**higher means a better expected transfer**. All of them run in seconds on
cached features; none trains the backbone. Inputs may be float32: the
arithmetic is done in float64.

Shapes: ``features`` [N, D], ``labels`` [N] int class ids (or float targets
[N] / [N, T] for LogME regression), ``source_probs`` [N, Z] rows summing to 1.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import HeadstartError


def _as_2d(features: np.ndarray, name: str = "features") -> np.ndarray:
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise HeadstartError(f"{name}: expected a [N, D] array with N >= 2, got shape {f.shape}")
    if not np.isfinite(f).all():
        raise HeadstartError(f"{name}: contains NaN or inf values; check the backbone's output")
    return f


def _labels(labels: np.ndarray, n: int) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (n,):
        raise HeadstartError(f"labels: expected shape ({n},), got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise HeadstartError("labels: expected integer class ids for a classification score")
    _, y = np.unique(y, return_inverse=True)  # dense 0..K-1 whatever ids were used
    return y.astype(np.int64)


def _targets(labels: np.ndarray, n: int, regression: bool) -> np.ndarray:
    """[N, T] targets: one-hot columns for classes, the values themselves for regression."""
    if regression:
        t = np.asarray(labels, dtype=np.float64)
        t = t[:, None] if t.ndim == 1 else t
        if t.ndim != 2 or t.shape[0] != n:
            raise HeadstartError(f"labels: expected [N] or [N, T] regression targets with N={n}, got {t.shape}")
        if not np.isfinite(t).all():
            raise HeadstartError("labels: regression targets contain NaN or inf")
        return t
    y = _labels(labels, n)
    return np.eye(y.max() + 1)[y]


def logme(features: np.ndarray, labels: np.ndarray, *, regression: bool = False, max_iter: int = 100,
          tol: float = 1e-6) -> float:
    """LogME: the log marginal evidence of a Bayesian linear model on the features, per example.

    You, Liu, Wang & Long, "LogME: Practical Assessment of Pre-trained Models for
    Transfer Learning", ICML 2021 (https://arxiv.org/abs/2102.11005).

    ``features`` [N, D]; ``labels`` [N] class ids, or with ``regression=True`` float
    targets [N] or [N, T]. For each target column y (one-hot class indicator, or a regression target) the
    model y = F w + noise with prior w ~ N(0, 1/alpha I) and noise precision beta is
    fitted by evidence maximisation: the fixed point

        gamma = sum_i beta s_i^2 / (alpha + beta s_i^2)
        alpha = gamma / |m|^2,   beta = (N - gamma) / |F m - y|^2

    where s_i are the singular values of F and m the posterior mean. The score is
    the maximised log evidence divided by N, averaged over target columns.

    Everything is computed in the basis of F's thin SVD, so N < D costs the
    same as N > D (D - rank(F) directions only contribute the prior term).
    Invariant to a rescaling of the features and to a permutation of the classes.
    Typical values lie in [-2, 2]; only differences on the same target data mean anything.
    """
    f = _as_2d(features)
    n, d = f.shape
    t = _targets(labels, n, regression)
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > s.max() * max(n, d) * np.finfo(np.float64).eps if s.size and s.max() > 0 else np.zeros_like(s, bool)
    u, s2 = u[:, keep], s[keep] ** 2
    scores = []
    for col in t.T:
        z = u.T @ col  # y in the column space of F
        perp = max(float(col @ col - z @ z), 0.0)  # the part of y no weight vector can explain
        alpha, beta = 1.0, 1.0
        for _ in range(max_iter):
            denom = alpha + beta * s2
            gamma = float(np.sum(beta * s2 / denom))
            m2 = float(np.sum((beta * np.sqrt(s2) * z / denom) ** 2))  # |m|^2
            res2 = float(np.sum((alpha * z / denom) ** 2)) + perp  # |F m - y|^2
            new_alpha = gamma / max(m2, 1e-300)
            new_beta = max(n - gamma, 1e-12) / max(res2, 1e-300)
            done = abs(new_alpha / new_beta - alpha / beta) <= tol * abs(alpha / beta)
            alpha, beta = new_alpha, new_beta
            if done:
                break
        denom = alpha + beta * s2
        m2 = float(np.sum((beta * np.sqrt(s2) * z / denom) ** 2))
        res2 = float(np.sum((alpha * z / denom) ** 2)) + perp
        logdet_a = float(np.sum(np.log(denom))) + (d - s2.size) * np.log(alpha)
        evidence = (d / 2 * np.log(alpha) + n / 2 * np.log(beta) - n / 2 * np.log(2 * np.pi)
                    - beta / 2 * res2 - alpha / 2 * m2 - logdet_a / 2)
        scores.append(evidence / n)
    return float(np.mean(scores))


def _check_probs(source_probs: np.ndarray, n: int | None = None) -> np.ndarray:
    p = _as_2d(source_probs, "source_probs")
    if n is not None and p.shape[0] != n:
        raise HeadstartError(f"source_probs: {p.shape[0]} rows for {n} labels")
    if (p < -1e-6).any() or not np.allclose(p.sum(1), 1.0, atol=1e-3):
        raise HeadstartError("source_probs: rows must be probabilities (softmax of the source classifier's logits)")
    return np.clip(p, 0.0, None)


def leep(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """LEEP: log expected empirical prediction of the source classifier, per example.

    Nguyen, Hassner, Seeger & Archambeau, "LEEP: A New Measure to Evaluate
    Transferability of Learned Representations", ICML 2020 (https://arxiv.org/abs/2002.12462).

    ``source_probs`` [N, Z] are the source model's class probabilities on the target
    examples. With the empirical joint P(y, z) = 1/N sum_i theta_z(x_i) [y_i = y] and
    P(y | z) = P(y, z) / P(z), LEEP = 1/N sum_i log sum_z P(y_i | z) theta_z(x_i).
    Always <= 0; closer to 0 is better. Needs a source *classifier*: backbones
    without one (random init, sentence encoders) cannot be scored.
    """
    y = _labels(labels, np.asarray(labels).shape[0])
    p = _check_probs(source_probs, y.shape[0])
    joint = np.zeros((y.max() + 1, p.shape[1]))
    np.add.at(joint, y, p)
    joint /= y.shape[0]
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = np.einsum("nz,nz->n", p, cond[y])
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def nce(source_probs: np.ndarray, labels: np.ndarray) -> float:
    """NCE: negative conditional entropy -H(Y | Z) of target labels given source hard labels.

    Tran, Nguyen & Hassner, "Transferability and Hardness of Supervised
    Classification Tasks", ICCV 2019 (https://arxiv.org/abs/1908.08142).

    ``source_probs`` [N, Z], ``labels`` [N]. Z = argmax of the source classifier on each target example; the empirical joint of
    (Y, Z) gives NCE = sum_{y,z} P(y, z) log P(y | z). Always <= 0; 0 means the
    source labels determine the target labels.
    """
    y = _labels(labels, np.asarray(labels).shape[0])
    p = _check_probs(source_probs, y.shape[0])
    z = p.argmax(1)
    joint = np.zeros((y.max() + 1, p.shape[1]))
    np.add.at(joint, (y, z), 1.0)
    joint /= y.shape[0]
    pz = joint.sum(0, keepdims=True)
    nz = joint > 0
    return float(np.sum(joint[nz] * np.log((joint / np.maximum(pz, 1e-300))[nz])))


def hscore(features: np.ndarray, labels: np.ndarray, *, shrinkage: str | float | None = "ledoit-wolf") -> float:
    """H-score: tr(cov(f)^-1 cov(E[f | y])), the features' between-class variance in units of their total variance.

    Bao, Li, Huang, Zhao, Zheng & Zhang, "An Information-Theoretic Approach to
    Transferability in Task Transfer Learning", ICIP 2019.

    Plain H-score (``shrinkage=None``, a pseudo-inverse) is unstable when D is large
    compared with N: the covariance estimate is near singular and the score grows with
    noise. By default the covariance is shrunk (Ledoit-Wolf), as Ibrahim, Ponomareva &
    Mazumder recommend ("Newer is not always better", ICLR 2023,
    https://arxiv.org/abs/2210.07201); a float in [0, 1] fixes the shrinkage.
    ``features`` [N, D], ``labels`` [N]. Between 0 and min(D, K - 1); higher is better. Invariant to a permutation of the
    classes and (without shrinkage) to any invertible linear map of the features.
    """
    f = _as_2d(features)
    y = _labels(labels, f.shape[0])
    f = f - f.mean(0)
    if shrinkage is None:
        cov = f.T @ f / f.shape[0]
    elif shrinkage == "ledoit-wolf":
        from sklearn.covariance import LedoitWolf

        cov = LedoitWolf(assume_centered=True).fit(f).covariance_
    else:
        a = float(shrinkage)
        if not 0 <= a <= 1:
            raise HeadstartError(f"hscore: shrinkage must be in [0, 1], 'ledoit-wolf' or None, got {shrinkage!r}")
        emp = f.T @ f / f.shape[0]
        cov = (1 - a) * emp + a * np.trace(emp) / emp.shape[0] * np.eye(emp.shape[0])
    means = np.zeros((y.max() + 1, f.shape[1]))
    np.add.at(means, y, f)
    counts = np.bincount(y)[:, None]
    means /= counts
    g = means[y]  # E[f | y] for each example
    cov_g = g.T @ g / f.shape[0]
    return float(np.trace(np.linalg.pinv(cov, hermitian=True, rcond=1e-12) @ cov_g))


def _folds(y: np.ndarray, folds: int) -> int:
    k = int(min(folds, np.bincount(y).min()))
    if k < 2:
        raise HeadstartError("cross-validated score: every class needs at least 2 examples")
    return k


def knn_accuracy(features: np.ndarray, labels: np.ndarray, *, k: int = 5, folds: int = 5, seed: int = 0) -> float:
    """Cross-validated accuracy of a k-nearest-neighbour classifier (cosine distance).

    The direct, slow-ish baseline: no model assumption, just "are same-class examples
    close in this feature space?". ``features`` [N, D], ``labels`` [N]; stratified
    ``folds``-fold CV; in [0, 1], higher is better.
    """
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    f = _as_2d(features)
    y = _labels(labels, f.shape[0])
    cv = StratifiedKFold(_folds(y, folds), shuffle=True, random_state=seed)
    clf = KNeighborsClassifier(n_neighbors=min(k, int(np.bincount(y).min())), metric="cosine")
    return float(np.mean(cross_val_score(clf, f, y, cv=cv)))


def linear_probe_accuracy(features: np.ndarray, labels: np.ndarray, *, folds: int = 5, C: float = 1.0,
                          seed: int = 0) -> float:
    """Cross-validated accuracy of a logistic-regression probe on standardised features.

    What a frozen-feature probe reaches (without a search over C). ``features`` [N, D],
    ``labels`` [N]; stratified ``folds``-fold CV; in [0, 1], higher is better.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    f = _as_2d(features)
    y = _labels(labels, f.shape[0])
    cv = StratifiedKFold(_folds(y, folds), shuffle=True, random_state=seed)
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return float(np.mean(cross_val_score(clf, f, y, cv=cv)))


__all__ = ["hscore", "knn_accuracy", "leep", "linear_probe_accuracy", "logme", "nce"]
